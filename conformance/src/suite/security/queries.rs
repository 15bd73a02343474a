//! The `security` group's attacks on the queries a peer may make of a hub: key material,
//! group info, abuse reports, downloads, identifier search and the `From` header.

use super::*;

async fn key_material_with(e: &mut Env, requester: &Member, room: &str) -> Result<Got, String> {
    let (admin, _, _) = names(e)?;
    e.post(
        Endpoint::KeyMaterial,
        &admin,
        requester.key_material_request(&admin, room),
    )
    .await
}

pub(super) async fn keymaterial_foreign_requester(e: &mut Env) -> Res {
    let before = snap(e).await?;
    let (admin, _, _) = names(e)?;
    let room = e.room.clone();
    let g = s(key_material_with(e, &forged(&admin, "x"), &room).await)?;
    refused(&g, "requestingUser of the hub's own user")?;
    unchanged(e, &before, "a claim for another provider's user").await
}

pub(super) async fn keymaterial_third_requester(e: &mut Env) -> Res {
    let before = snap(e).await?;
    let room = e.room.clone();
    let g = s(key_material_with(e, &forged("mimi://third.example/u/mallory", "x"), &room).await)?;
    refused(&g, "requestingUser of a third provider")?;
    unchanged(e, &before, "a claim for a third provider's user").await
}

pub(super) async fn keymaterial_missing_room(e: &mut Env) -> Res {
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

pub(super) async fn keymaterial_room_without_requester(e: &mut Env) -> Res {
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

pub(super) async fn keymaterial_exhaustion(e: &mut Env) -> Res {
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

pub(super) async fn groupinfo_unknown_vs_forbidden(e: &mut Env) -> Res {
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

pub(super) async fn groupinfo_foreign_requester(e: &mut Env) -> Res {
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

pub(super) async fn notify_from_non_hub(e: &mut Env) -> Res {
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

pub(super) async fn report_anonymous_empty(e: &mut Env) -> Res {
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

pub(super) async fn report_foreign_reporter(e: &mut Env) -> Res {
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

pub(super) async fn report_unknown_room(e: &mut Env) -> Res {
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

pub(super) async fn report_oversize(e: &mut Env) -> Res {
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

pub(super) async fn proxy_download_escapes(e: &mut Env) -> Res {
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

pub(super) async fn identifier_partial_listing(e: &mut Env) -> Res {
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

pub(super) async fn from_mismatch_everywhere(e: &mut Env) -> Res {
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
