//! The `security` group: attacks a peer provider can mount with a valid certificate, each
//! checked for its refusal **and** for the absence of any effect (room epoch and participants
//! at the hub's own user, deliveries to both sides, the hub user's KeyPackages). The target
//! hosts the room (as in the hub role); our side is an authenticated but hostile provider.

use mimi_client::{Event, Member, role};
use mimi_content::builder;
use mimi_proto::codec::{Uri, Utf8, Wire};
use mimi_proto::components::AppDataDictionary;
use mimi_proto::directory::{Endpoint, WELL_KNOWN_PATH, encode_path_value};
use mimi_session::Verdict;

use super::hub::hub_setup;
use super::*;

/// What must not change.
#[derive(Debug, PartialEq, Eq)]
struct Snap {
    epoch: Option<u64>,
    participants: Vec<(String, u32)>,
    key_packages: usize,
}

async fn snap(e: &mut Env) -> Result<Snap, String> {
    let room = e.room.clone();
    let admin = e.admin.as_mut().ok_or("setup failed")?;
    let _ = s(admin.sync(0).await)?;
    Ok(Snap {
        epoch: admin.member.epoch(&room),
        participants: admin.member.participants(&room),
        key_packages: s(admin.api.key_packages_left().await)?,
    })
}

/// Checks that nothing arrived at either side (no message, no commit) and the hub's state is
/// what it was.
async fn unchanged(e: &mut Env, before: &Snap, what: &str) -> Res {
    for side in [e.admin.as_mut(), e.bob.as_mut()].into_iter().flatten() {
        let evs = s(side.sync(1).await)?;
        if let Some(ev) = evs.iter().find(|ev| {
            matches!(
                ev,
                Event::Message { .. } | Event::Committed { .. } | Event::Proposed { .. }
            )
        }) {
            return Err(format!("{what}: refused, yet {} saw {ev:?}", side.user()));
        }
    }
    let after = snap(e).await?;
    expect(
        after == *before,
        format!("{what}: refused, yet the room changed: {before:?} → {after:?}"),
    )
}

fn refused(g: &Got, what: &str) -> Res {
    expect(
        (400..500).contains(&g.status),
        format!(
            "{what}: expected a refusal (4xx), got {} {}",
            g.status,
            g.text()
        ),
    )
}

/// A refusal either as a 4xx or as a MIMI `notAllowed`-style outcome in a 200 body.
fn update_refused(g: &Got, what: &str) -> Res {
    if (400..500).contains(&g.status) {
        return Ok(());
    }
    expect(
        g.status == 200,
        format!("{what}: {} {}", g.status, g.text()),
    )?;
    let r = s(UpdateRoomResponse::from_bytes(&g.body))?;
    expect(
        !matches!(r.outcome, UpdateOutcome::Success { .. }),
        format!("{what}: the hub accepted it"),
    )
}

fn submit_refused(g: &Got, what: &str) -> Res {
    if (400..500).contains(&g.status) {
        return Ok(());
    }
    expect(
        g.status == 200,
        format!("{what}: {} {}", g.status, g.text()),
    )?;
    let r = s(SubmitMessageResponse::from_bytes(&g.body))?;
    expect(
        !matches!(r.outcome, SubmitOutcome::Accepted { .. }),
        format!("{what}: the hub accepted it"),
    )
}

fn names(e: &Env) -> Result<(String, String, String), String> {
    let admin = e.admin.as_ref().ok_or("setup failed")?.user().to_owned();
    let bob = e.bob.as_ref().ok_or("setup failed")?.user().to_owned();
    let eve = e.eve.as_ref().ok_or("setup failed")?.user().to_owned();
    Ok((admin, bob, eve))
}

/// A member with `user`'s identity (of any domain) and a key we hold.
fn forged(user: &str, device: &str) -> Member {
    let rest = user.strip_prefix("mimi://").unwrap_or(user);
    let (domain, name) = rest.split_once("/u/").unwrap_or((rest, "x"));
    Member::new(domain, name, device)
}

async fn submit_as(e: &mut Env, sender: &str, text: &str) -> Result<Got, String> {
    let room = e.room.clone();
    let bob = e.bob.as_mut().ok_or("setup failed")?;
    let (body, _) = s(bob
        .member
        .send(&room, |snd, r, salt| builder::text(snd, r, salt, text)))?;
    let mut req = s(SubmitMessageRequest::from_bytes(&body))?;
    req.sending_uri = Uri::from(sender);
    e.post(Endpoint::SubmitMessage, &room, req.to_bytes()).await
}

async fn submit_foreign_sender(e: &mut Env) -> Res {
    let before = snap(e).await?;
    let (admin, _, _) = names(e)?;
    let g = submit_as(e, &admin, "sent as the hub's own user").await?;
    submit_refused(&g, "sendingUri of the hub's own user")?;
    unchanged(e, &before, "sendingUri of the hub's own user").await
}

async fn submit_third_provider_sender(e: &mut Env) -> Res {
    let before = snap(e).await?;
    let g = submit_as(
        e,
        "mimi://third.example/u/mallory",
        "sent as a third provider's user",
    )
    .await?;
    submit_refused(&g, "sendingUri of a third provider's user")?;
    unchanged(e, &before, "sendingUri of a third provider's user").await
}

async fn submit_non_member(e: &mut Env) -> Res {
    let before = snap(e).await?;
    let (_, _, eve) = names(e)?;
    let g = submit_as(e, &eve, "sent as our non-member").await?;
    submit_refused(&g, "a message from our user who is not a participant")?;
    unchanged(e, &before, "a non-participant's message").await
}

async fn commit_as(e: &mut Env, bundle: Vec<u8>) -> Result<Got, String> {
    let room = e.room.clone();
    let g = e.post(Endpoint::Update, &room, bundle).await;
    if let Some(b) = e.bob.as_mut() {
        let _ = b.member.commit_refused(&room);
    }
    g
}

async fn add_device_of_third_provider(e: &mut Env) -> Res {
    let before = snap(e).await?;
    let room = e.room.clone();
    let mallory = "mimi://third.example/u/mallory";
    let kp = s(forged(mallory, "x").key_packages(1))?;
    let bundle = {
        let bob = e.bob.as_mut().ok_or("setup failed")?;
        s(bob
            .member
            .add_participants(&room, &[(mallory.to_owned(), role::MEMBER)], &kp))?
    };
    let g = commit_as(e, bundle).await?;
    update_refused(
        &g,
        "a device of a third provider with a KeyPackage that never came through the hub",
    )?;
    unchanged(e, &before, "an add of a forged third-provider device").await
}

async fn add_device_of_hub_user(e: &mut Env) -> Res {
    let before = snap(e).await?;
    let room = e.room.clone();
    let (admin, _, _) = names(e)?;
    let kp = s(forged(&admin, "evil").key_packages(1))?;
    let bundle = {
        let bob = e.bob.as_mut().ok_or("setup failed")?;
        s(bob.member.add_clients(&room, &kp))?
    };
    let g = commit_as(e, bundle).await?;
    update_refused(
        &g,
        "a device claiming the hub's own user, with a key we hold",
    )?;
    unchanged(e, &before, "an add of a forged device of the hub's user").await
}

async fn remove_without_right(e: &mut Env) -> Res {
    // A participant listed without clients: removing them is a participant-list change only,
    // which a member without canRemoveParticipant may not make.
    let room = e.room.clone();
    let ghost = format!("mimi://{}/u/ghost{}", e.o.target_domain, e.run);
    {
        let admin = e.admin.as_mut().ok_or("setup failed")?;
        let _ = s(admin.sync(0).await)?;
        let b = s(admin
            .member
            .add_participants(&room, &[(ghost.clone(), role::MEMBER)], &[]))?;
        let v = s(admin.handshake(&room, b).await)?;
        expect(
            v == Verdict::Accepted,
            format!("listing a participant without clients: {v:?}"),
        )?;
    }
    if let Some(b) = e.bob.as_mut() {
        let _ = b
            .sync_until(5, |ev| matches!(ev, Event::Committed { .. }))
            .await;
    }
    let before = snap(e).await?;
    let bundle = {
        let bob = e.bob.as_mut().ok_or("setup failed")?;
        s(bob.member.remove_participants(&room, &[ghost]))?
    };
    let g = commit_as(e, bundle).await?;
    update_refused(&g, "a member removing a participant")?;
    unchanged(e, &before, "a removal without the right").await
}

async fn external_join_closed_room(e: &mut Env) -> Res {
    let before = snap(e).await?;
    let room = e.room.clone();
    let (_, bob, eve) = names(e)?;
    // Our participant fetches the GroupInfo (encrypted to a key we hold); our non-participant
    // uses it to add itself by external commit. Only the room policy stands in the way.
    let (req, key) = forged(&bob, "x").group_info_request();
    let g = s(e.post(Endpoint::GroupInfo, &room, req).await)?;
    expect(
        g.status == 200,
        format!("our participant's GroupInfo: {} {}", g.status, g.text()),
    )?;
    let mut m = forged(&eve, "x");
    let bundle = s(m.open_join(&room, &g.body, &key, role::MEMBER))?;
    let g = s(e.post(Endpoint::Update, &room, bundle).await)?;
    update_refused(&g, "a non-participant joining a room that is not open")?;
    unchanged(e, &before, "an external join of a closed room").await
}

async fn replayed_commit(e: &mut Env) -> Res {
    // A commit the hub accepted, sent again: the epoch moved on.
    let room = e.room.clone();
    let bundle = {
        let bob = e.bob.as_mut().ok_or("setup failed")?;
        let _ = s(bob.sync(0).await)?;
        s(bob.member.commit_pending(&room))?
    };
    let g = s(e.post(Endpoint::Update, &room, bundle.clone()).await)?;
    expect(
        g.status == 200,
        format!("the first commit: {} {}", g.status, g.text()),
    )?;
    let r = s(UpdateRoomResponse::from_bytes(&g.body))?;
    let bob = e.bob.as_mut().ok_or("setup failed")?;
    if matches!(r.outcome, UpdateOutcome::Success { .. }) {
        s(bob.member.commit_accepted(&room))?;
    } else {
        let _ = bob.member.commit_refused(&room);
        return Err(format!("the first commit was refused: {r:?}"));
    }
    let before = snap(e).await?;
    let g = s(e.post(Endpoint::Update, &room, bundle).await)?;
    update_refused(&g, "the same commit again")?;
    unchanged(e, &before, "a replayed commit").await
}

async fn key_material_with(e: &mut Env, requester: &Member, room: &str) -> Result<Got, String> {
    let (admin, _, _) = names(e)?;
    e.post(
        Endpoint::KeyMaterial,
        &admin,
        requester.key_material_request(&admin, room),
    )
    .await
}

async fn keymaterial_foreign_requester(e: &mut Env) -> Res {
    let before = snap(e).await?;
    let (admin, _, _) = names(e)?;
    let room = e.room.clone();
    let g = s(key_material_with(e, &forged(&admin, "x"), &room).await)?;
    refused(&g, "requestingUser of the hub's own user")?;
    unchanged(e, &before, "a claim for another provider's user").await
}

async fn keymaterial_third_requester(e: &mut Env) -> Res {
    let before = snap(e).await?;
    let room = e.room.clone();
    let g = s(key_material_with(e, &forged("mimi://third.example/u/mallory", "x"), &room).await)?;
    refused(&g, "requestingUser of a third provider")?;
    unchanged(e, &before, "a claim for a third provider's user").await
}

async fn keymaterial_missing_room(e: &mut Env) -> Res {
    let before = snap(e).await?;
    let (_, bob, _) = names(e)?;
    // A room of the target itself (rooms of the caller's domain the target cannot check).
    let room = format!("mimi://{}/r/nowhere{}", e.o.target_domain, e.run);
    let g = s(key_material_with(e, &forged(&bob, "d"), &room).await)?;
    let consumed = (200..300).contains(&g.status)
        && KeyMaterialResponse::from_bytes(&g.body).is_ok_and(|r| {
            r.clients
                .iter()
                .any(|c| matches!(c, ClientKeyMaterial::Success { .. }))
        });
    expect(
        !consumed,
        "a claim naming a room that does not exist got a KeyPackage",
    )?;
    unchanged(e, &before, "a claim naming a room that does not exist").await
}

async fn keymaterial_room_without_requester(e: &mut Env) -> Res {
    let before = snap(e).await?;
    let (_, _, eve) = names(e)?;
    let room = e.room.clone();
    let g = s(key_material_with(e, &forged(&eve, "d"), &room).await)?;
    let consumed = (200..300).contains(&g.status)
        && KeyMaterialResponse::from_bytes(&g.body).is_ok_and(|r| {
            r.clients
                .iter()
                .any(|c| matches!(c, ClientKeyMaterial::Success { .. }))
        });
    expect(
        !consumed,
        "a claim by a non-participant of the named room got a KeyPackage",
    )?;
    unchanged(e, &before, "a claim for a room the requester is not in").await
}

async fn keymaterial_exhaustion(e: &mut Env) -> Res {
    // Claiming again and again never leaves the user unreachable: a quota stops the claims
    // or the last-resort KeyPackage keeps answering.
    let (admin, bob, _) = names(e)?;
    let room = e.room.clone();
    let requester = forged(&bob, "d");
    let mut last = None;
    for _ in 0..40 {
        let g = s(e
            .post(
                Endpoint::KeyMaterial,
                &admin,
                requester.key_material_request(&admin, &room),
            )
            .await)?;
        if g.status == 429 {
            return Ok(());
        }
        last = Some(g);
    }
    let g = last.ok_or("no answer")?;
    expect(g.status == 200, format!("{} {}", g.status, g.text()))?;
    let r = s(KeyMaterialResponse::from_bytes(&g.body))?;
    expect(
        r.clients
            .iter()
            .any(|c| matches!(c, ClientKeyMaterial::Success { .. })),
        format!("after 40 claims the user is unreachable: {r:?}"),
    )
}

async fn groupinfo_unknown_vs_forbidden(e: &mut Env) -> Res {
    let before = snap(e).await?;
    let (_, _, eve) = names(e)?;
    let (req, _) = forged(&eve, "x").group_info_request();
    let known = s(e
        .post(Endpoint::GroupInfo, &e.room.clone(), req.clone())
        .await)?;
    let unknown_room = format!("mimi://{}/r/nothing{}", e.o.target_domain, e.run);
    let unknown = s(e.post(Endpoint::GroupInfo, &unknown_room, req).await)?;
    // Alike: the same HTTP status and the same GroupInfo status (the body echoes the
    // requested room, which the caller knows anyway).
    let code = |g: &Got| {
        (
            g.status,
            GroupInfoResponse::from_bytes(&g.body)
                .ok()
                .map(|r| (r.status, r.success.is_some())),
        )
    };
    expect(
        code(&known) == code(&unknown),
        format!(
            "a forbidden room and a missing one must answer alike: {:?} vs {:?}",
            code(&known),
            code(&unknown)
        ),
    )?;
    expect(
        known.status != 200
            || GroupInfoResponse::from_bytes(&known.body)
                .is_ok_and(|r| r.status != GroupInfoCode::Success),
        "a non-participant got the GroupInfo",
    )?;
    unchanged(e, &before, "GroupInfo for a non-participant").await
}

async fn groupinfo_foreign_requester(e: &mut Env) -> Res {
    let before = snap(e).await?;
    let (admin, _, _) = names(e)?;
    let (req, _) = forged(&admin, "x").group_info_request();
    let g = s(e.post(Endpoint::GroupInfo, &e.room.clone(), req).await)?;
    let leaked = g.status == 200
        && GroupInfoResponse::from_bytes(&g.body).is_ok_and(|r| r.status == GroupInfoCode::Success);
    expect(
        !leaked,
        "a GroupInfo request with the hub's own user's credential succeeded",
    )?;
    unchanged(e, &before, "GroupInfo with another provider's credential").await
}

async fn notify_from_non_hub(e: &mut Env) -> Res {
    let before = snap(e).await?;
    let room = e.room.clone();
    // A FanoutMessage for the target's own room, from us (not its hub).
    let bob = e.bob.as_mut().ok_or("setup failed")?;
    let (body, _) = s(bob.member.send(&room, |snd, r, salt| {
        builder::text(snd, r, salt, "forged fan-out")
    }))?;
    let req = s(SubmitMessageRequest::from_bytes(&body))?;
    let fm = FanoutMessage {
        timestamp: now_ms(),
        message: req.app_message,
        extra: FanoutExtra::Application { frank: None },
    };
    let g = s(e.post(Endpoint::Notify, &room, fm.to_bytes()).await)?;
    refused(
        &g,
        "/notify for the target's room from a provider that is not its hub",
    )?;
    let third = "mimi://third.example/r/x";
    let g = s(e.post(Endpoint::Notify, third, fm.to_bytes()).await)?;
    refused(&g, "/notify for a third provider's room")?;
    unchanged(e, &before, "a forged /notify").await
}

fn abuse(reporter: &str, abuser: &str, messages: Vec<AbusiveMessage>, note: &str) -> Vec<u8> {
    AbuseReport {
        reporting_user: Uri::from(reporter),
        alleged_abuser_uri: Uri::from(abuser),
        reason_code: 1,
        note: Utf8(note.into()),
        messages,
        abuse_extensions: AppDataDictionary::default(),
    }
    .to_bytes()
}

async fn report_anonymous_empty(e: &mut Env) -> Res {
    let before = snap(e).await?;
    let (admin, _, _) = names(e)?;
    let g = s(e
        .post(
            Endpoint::ReportAbuse,
            &e.room.clone(),
            abuse("", &admin, vec![], "nothing"),
        )
        .await)?;
    refused(&g, "an anonymous report with no message")?;
    unchanged(e, &before, "an empty anonymous report").await
}

/// A message of ours the hub accepted and franked: valid evidence for a report.
async fn evidence(e: &mut Env) -> Result<AbusiveMessage, String> {
    let room = e.room.clone();
    let bob = e.bob.as_mut().ok_or("setup failed")?;
    let (body, msg) = s(bob.member.send(&room, |snd, r, salt| {
        builder::text(snd, r, salt, "evidence")
    }))?;
    let g = s(e.post(Endpoint::SubmitMessage, &room, body).await)?;
    let r = s(SubmitMessageResponse::from_bytes(&g.body))?;
    let SubmitOutcome::Accepted {
        accepted_timestamp,
        frank: Some(frank),
    } = r.outcome
    else {
        return Err(format!(
            "evidence: the hub did not frank our message: {r:?}"
        ));
    };
    // The hub's user receives it: consume it so the checks below see only the attack.
    if let Some(a) = e.admin.as_mut() {
        let _ = a
            .sync_until(5, |ev| matches!(ev, Event::Message { .. }))
            .await;
    }
    if let Some(b) = e.bob.as_mut() {
        let _ = b.sync(0).await;
    }
    Ok(AbusiveMessage {
        message_content: mimi_proto::codec::Bytes(msg.bytes().to_vec()),
        frank,
        accepted_timestamp,
    })
}

async fn report_foreign_reporter(e: &mut Env) -> Res {
    let proof = evidence(e).await?;
    let before = snap(e).await?;
    let (admin, bob, _) = names(e)?;
    let g = s(e
        .post(
            Endpoint::ReportAbuse,
            &e.room.clone(),
            abuse(&admin, &bob, vec![proof], "as the hub's user"),
        )
        .await)?;
    refused(&g, "a report made in the name of the hub's own user")?;
    unchanged(e, &before, "a report in another provider's user's name").await
}

async fn report_unknown_room(e: &mut Env) -> Res {
    let before = snap(e).await?;
    let (admin, bob, _) = names(e)?;
    let room = format!("mimi://{}/r/nothing{}", e.o.target_domain, e.run);
    let g = s(e
        .post(
            Endpoint::ReportAbuse,
            &room,
            abuse(&bob, &admin, vec![], "no such room"),
        )
        .await)?;
    refused(&g, "a report about a room that does not exist")?;
    unchanged(e, &before, "a report about a missing room").await
}

async fn report_oversize(e: &mut Env) -> Res {
    let (admin, bob, _) = names(e)?;
    // Over a hub's report cap (256 KiB here) yet under its body cap (1 MiB): the report's
    // own bound must refuse it.
    let proof = evidence(e).await?;
    let before = snap(e).await?;
    let note = "x".repeat(512 << 10);
    let g = s(e
        .post(
            Endpoint::ReportAbuse,
            &e.room.clone(),
            abuse(&bob, &admin, vec![proof], &note),
        )
        .await)?;
    refused(&g, "a 512 KiB report")?;
    unchanged(e, &before, "an oversized report").await
}

async fn proxy_download_escapes(e: &mut Env) -> Res {
    let h = e.headers();
    let hv: Vec<(&str, &str)> = h.iter().map(|(k, v)| (*k, v.as_str())).collect();
    for url in [
        "https://elsewhere.invalid/assets/x".to_owned(),
        format!("https://{}/v1/directory", e.o.our_domain),
        format!("https://{}/assets/../admin", e.o.our_domain),
        "http://127.0.0.1:1/assets/x".to_owned(),
    ] {
        let path = format!("{}/proxyDownload/{}", e.prefix, encode_path_value(&url));
        let g = s(e
            .raw
            .send(&e.o.transport, e.o.target, "GET", &path, &hv, Vec::new())
            .await)?;
        refused(&g, &format!("/proxyDownload of {url}"))?;
    }
    Ok(())
}

async fn identifier_partial_listing(e: &mut Env) -> Res {
    // One-letter partial searches must not list the provider's users.
    for letter in ['c', 'a', 'e'] {
        let req = IdentifierRequest {
            query_elements: vec![QueryElement {
                search_type: SearchIdentifierType::PartialName,
                field_name: None,
                search_value: Utf8(letter.to_string()),
            }],
            id_request_extensions: AppDataDictionary::default(),
        };
        let g = s(e
            .post(
                Endpoint::IdentifierQuery,
                &e.o.target_domain.clone(),
                req.to_bytes(),
            )
            .await)?;
        if g.status == 200 {
            let r = s(IdentifierResponse::from_bytes(&g.body))?;
            expect(
                r.uri.is_empty() && r.found_profiles.is_empty(),
                format!("a one-letter partial search listed users: {:?}", r.uri),
            )?;
        } else {
            refused(&g, "a partial-name search")?;
        }
    }
    Ok(())
}

async fn from_mismatch_everywhere(e: &mut Env) -> Res {
    let spoof = [
        ("from", "mimi@third.example".to_owned()),
        ("content-type", "application/octet-stream".to_owned()),
    ];
    let hv: Vec<(&str, &str)> = spoof.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let room = encode_path_value(&e.room);
    let mut paths = vec![("GET", WELL_KNOWN_PATH.to_owned())];
    for ep in [
        "keyMaterial",
        "update",
        "submitMessage",
        "groupInfo",
        "notify",
        "reportAbuse",
        "identifierQuery",
    ] {
        paths.push(("POST", format!("{}/{ep}/{room}", e.prefix)));
    }
    paths.push((
        "GET",
        format!(
            "{}/proxyDownload/{}",
            e.prefix,
            encode_path_value("https://x/assets/y")
        ),
    ));
    for (method, path) in paths {
        let g = s(e
            .raw
            .send(
                &e.o.transport,
                e.o.target,
                method,
                &path,
                &hv,
                vec![1, 2, 3],
            )
            .await)?;
        expect(
            g.status == 403,
            format!(
                "{method} {path} with a From that contradicts the certificate: {} {}",
                g.status,
                g.text()
            ),
        )?;
    }
    Ok(())
}

async fn proposal_from_non_member(e: &mut Env) -> Res {
    let before = snap(e).await?;
    let room = e.room.clone();
    let (_, _, eve) = names(e)?;
    let mut m = forged(&eve, "p");
    let es = s(e
        .admin
        .as_ref()
        .ok_or("setup failed")?
        .api
        .external_sender()
        .await)?;
    s(m.create_room(&room, &es, &mimi_client::RoomSetup::named("forged")))?;
    let bundle = s(m.leave(&room))?;
    let g = s(e.post(Endpoint::Update, &room, bundle).await)?;
    update_refused(&g, "a proposal signed by a non-member")?;
    unchanged(e, &before, "a proposal from outside the group").await
}

/// The security group (see conformance/TESTS.md).
pub fn security_tests() -> Vec<Test> {
    vec![
        test!(
            "security-setup",
            "protocol §5.2 (room creation via hook)",
            true,
            hub_setup
        ),
        test!(
            "sec-submit-foreign-sender",
            "protocol §5.4 (sendingUri belongs to the caller)",
            true,
            submit_foreign_sender
        ),
        test!(
            "sec-submit-third-sender",
            "protocol §5.4 (sendingUri belongs to the caller)",
            true,
            submit_third_provider_sender
        ),
        test!(
            "sec-submit-non-member",
            "room-policy §4 (send requires participation)",
            true,
            submit_non_member
        ),
        test!(
            "sec-add-third-provider-device",
            "protocol §5.1/§5.2 (KeyPackages through the hub)",
            true,
            add_device_of_third_provider
        ),
        test!(
            "sec-add-hub-user-device",
            "protocol §5.2 (a device claims its own provider's user)",
            true,
            add_device_of_hub_user
        ),
        test!(
            "sec-remove-without-right",
            "room-policy §4 (canRemoveParticipant)",
            true,
            remove_without_right
        ),
        test!(
            "sec-external-join-closed",
            "room-policy §4 (open join)",
            true,
            external_join_closed_room
        ),
        test!(
            "sec-proposal-non-member",
            "RFC 9420 §12.1 (proposals from members)",
            true,
            proposal_from_non_member
        ),
        test!(
            "sec-replayed-commit",
            "RFC 9420 §12.4 (epochs)",
            true,
            replayed_commit
        ),
        test!(
            "sec-km-foreign-requester",
            "protocol §5.1 (requestingUser belongs to the caller)",
            true,
            keymaterial_foreign_requester
        ),
        test!(
            "sec-km-third-requester",
            "protocol §5.1 (requestingUser belongs to the caller)",
            true,
            keymaterial_third_requester
        ),
        test!(
            "sec-km-missing-room",
            "protocol §5.1 (a named room must exist)",
            true,
            keymaterial_missing_room
        ),
        test!(
            "sec-km-room-without-requester",
            "protocol §5.1 (the named room holds the requester)",
            true,
            keymaterial_room_without_requester
        ),
        test!(
            "sec-km-exhaustion",
            "RFC 9420 last_resort; claim quotas",
            true,
            keymaterial_exhaustion
        ),
        test!(
            "sec-groupinfo-indistinguishable",
            "protocol §5.6 (unknown and forbidden alike)",
            true,
            groupinfo_unknown_vs_forbidden
        ),
        test!(
            "sec-groupinfo-foreign-requester",
            "protocol §5.6 (the requester belongs to the caller)",
            true,
            groupinfo_foreign_requester
        ),
        test!(
            "sec-notify-not-hub",
            "protocol §5.5 (only the hub notifies)",
            true,
            notify_from_non_hub
        ),
        test!(
            "sec-report-anonymous-empty",
            "protocol §5.9 (reports carry evidence)",
            true,
            report_anonymous_empty
        ),
        test!(
            "sec-report-foreign-reporter",
            "protocol §5.9 (the reporter belongs to the caller)",
            true,
            report_foreign_reporter
        ),
        test!(
            "sec-report-unknown-room",
            "protocol §5.9 (reports about a hosted room)",
            true,
            report_unknown_room
        ),
        test!(
            "sec-report-oversize",
            "protocol §5 (bounded bodies)",
            true,
            report_oversize
        ),
        test!(
            "sec-proxy-download-escapes",
            "protocol §5.10 (not an open proxy)",
            true,
            proxy_download_escapes
        ),
        test!(
            "sec-identifier-partial",
            "protocol §5.8 (no listing by partial names)",
            true,
            identifier_partial_listing
        ),
        test!(
            "sec-from-mismatch",
            "protocol §4 (From matches the certificate)",
            true,
            from_mismatch_everywhere
        ),
    ]
}
