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

mod queries;
use queries::*;

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
