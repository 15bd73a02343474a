//! The hub role: the target hosts the room, we are a follower provider.

use super::generic::*;
use super::*;
use mimi_client::{Event, Member, RoomSetup, role};
use mimi_content::builder;
use mimi_proto::codec::{Uri, Utf8, Wire};
use mimi_proto::components::AppDataDictionary;
use mimi_proto::directory::{Endpoint, encode_path_value};
use mimi_session::{Session, Verdict};
use std::time::{Duration, Instant};

pub(super) async fn hub_setup(e: &mut Env) -> Res {
    let mut admin = e.session(false, "confadmin", "d", 6).await?;
    let bob = e.session(true, "confbob", "d", 6).await?;
    let eve = e.session(true, "confeve", "d", 6).await?;
    e.room = format!("mimi://{}/r/conf{}", e.o.target_domain, e.run);
    s(admin
        .create_room(&e.room, &RoomSetup::named("conformance"))
        .await)?;
    let v = s(admin
        .add(&e.room, &[(bob.user().to_owned(), role::MEMBER)])
        .await)?;
    expect(
        v == Verdict::Accepted,
        format!("the hub refused to add our user: {v:?}"),
    )?;
    let mut bob = bob;
    wait_event(&mut bob, "the Welcome for our user", |ev| {
        matches!(ev, Event::Joined { .. })
    })
    .await?;
    e.admin = Some(admin);
    e.bob = Some(bob);
    e.eve = Some(eve);
    Ok(())
}

async fn keymaterial_happy(e: &mut Env) -> Res {
    let bob = e.bob.as_ref().ok_or("setup failed")?;
    let admin = e.admin.as_ref().ok_or("setup failed")?.user().to_owned();
    let g = s(e
        .post(
            Endpoint::KeyMaterial,
            &admin,
            bob.member.key_material_request(&admin, &e.room),
        )
        .await)?;
    expect(g.status == 200, format!("{} {}", g.status, g.text()))?;
    let r = s(KeyMaterialResponse::from_bytes(&g.body))?;
    expect(
        r.user_status == KeyMaterialUserCode::Success
            && matches!(r.clients.first(), Some(ClientKeyMaterial::Success { .. })),
        format!("{r:?}"),
    )
}

async fn commit(e: &Env, bob: &mut Session, bundle: Vec<u8>) -> Result<UpdateOutcome, String> {
    let g = s(e.post(Endpoint::Update, &e.room, bundle).await)?;
    expect(
        g.status == 200,
        format!("/update: {} {}", g.status, g.text()),
    )?;
    let r = s(UpdateRoomResponse::from_bytes(&g.body))?;
    if matches!(r.outcome, UpdateOutcome::Success { .. }) {
        s(bob.member.commit_accepted(&e.room))?;
    } else {
        let _ = bob.member.commit_refused(&e.room);
    }
    Ok(r.outcome)
}

async fn catch_up(sess: &mut Session) {
    let _ = sess
        .sync_until(3, |ev| matches!(ev, Event::Committed { .. }))
        .await;
}

async fn update_happy(e: &mut Env) -> Res {
    let mut bob = take(&mut e.bob, "our member")?;
    let r = async {
        let bundle = s(bob.member.commit_pending(&e.room))?;
        let o = commit(e, &mut bob, bundle).await?;
        expect(matches!(o, UpdateOutcome::Success { .. }), format!("{o:?}"))
    }
    .await;
    e.bob = Some(bob);
    if let Some(a) = e.admin.as_mut() {
        catch_up(a).await;
    }
    r
}

async fn submit_happy(e: &mut Env) -> Res {
    let bob = e.bob.as_mut().ok_or("setup failed")?;
    let (body, _) = s(bob.member.send(&e.room, |snd, r, salt| {
        builder::text(snd, r, salt, "conformance says hi")
    }))?;
    let g = s(e.post(Endpoint::SubmitMessage, &e.room, body).await)?;
    expect(g.status == 200, format!("{} {}", g.status, g.text()))?;
    let r = s(SubmitMessageResponse::from_bytes(&g.body))?;
    expect(
        matches!(r.outcome, SubmitOutcome::Accepted { .. }),
        format!("{r:?}"),
    )?;
    let admin = e.admin.as_mut().ok_or("setup failed")?;
    wait_message(admin, "our message at the hub's user", |m| {
        text_of(m) == "conformance says hi"
    })
    .await
    .map(|_| ())
}

async fn groupinfo_and_external_join(e: &mut Env) -> Res {
    let mut dev2 = s(e
        .bob
        .as_ref()
        .ok_or("setup failed")?
        .link_device("d2", 1)
        .await)?;
    let (req, key) = dev2.member.group_info_request();
    let g = s(e.post(Endpoint::GroupInfo, &e.room, req).await)?;
    expect(
        g.status == 200,
        format!("/groupInfo: {} {}", g.status, g.text()),
    )?;
    // Verifies the hub's signature and decrypts the GroupInfo and tree.
    let bundle = s(dev2.member.external_join(&e.room, &g.body, &key))?;
    let o = commit(e, &mut dev2, bundle).await?;
    expect(
        matches!(o, UpdateOutcome::Success { .. }),
        format!("the external commit of our user's new device: {o:?}"),
    )?;
    for sess in [e.bob.as_mut(), e.admin.as_mut()].into_iter().flatten() {
        catch_up(sess).await;
    }
    Ok(())
}

async fn wrong_epoch(e: &mut Env) -> Res {
    let mut bob = take(&mut e.bob, "our member")?;
    let r = async {
        let stale = s(bob.member.commit_pending(&e.room))?;
        let admin = e.admin.as_mut().ok_or("setup failed")?;
        let fresh = s(admin.member.commit_pending(&e.room))?;
        expect(
            s(admin.handshake(&e.room, fresh).await)? == Verdict::Accepted,
            "the hub's own user could not commit",
        )?;
        let current = admin.member.epoch(&e.room).unwrap_or(0);
        let o = commit(e, &mut bob, stale).await?;
        expect(
            o == UpdateOutcome::WrongEpoch {
                current_epoch: current,
            },
            format!("a stale commit: expected wrongEpoch {current}, got {o:?}"),
        )
    }
    .await;
    catch_up(&mut bob).await;
    e.bob = Some(bob);
    r
}

async fn epoch_too_old(e: &mut Env) -> Res {
    let bob = e.bob.as_mut().ok_or("setup failed")?;
    let (old, _) = s(bob.member.send(&e.room, |snd, r, salt| {
        builder::text(snd, r, salt, "from two epochs ago")
    }))?;
    let admin = e.admin.as_mut().ok_or("setup failed")?;
    for _ in 0..2 {
        let c = s(admin.member.commit_pending(&e.room))?;
        expect(
            s(admin.handshake(&e.room, c).await)? == Verdict::Accepted,
            "the hub's own user could not commit",
        )?;
    }
    let current = admin.member.epoch(&e.room).unwrap_or(0);
    let g = s(e.post(Endpoint::SubmitMessage, &e.room, old).await)?;
    let r = s(SubmitMessageResponse::from_bytes(&g.body))?;
    let bob = e.bob.as_mut().ok_or("setup failed")?;
    catch_up(bob).await;
    catch_up(bob).await;
    expect(
        r.outcome
            == SubmitOutcome::EpochTooOld {
                current_epoch: current,
            },
        format!("expected epochTooOld {current}, got {r:?}"),
    )
}

async fn report_abuse(e: &mut Env) -> Res {
    let bob = e.bob.as_mut().ok_or("setup failed")?;
    let (body, msg) = s(bob.member.send(&e.room, |snd, r, salt| {
        builder::text(snd, r, salt, "please report me")
    }))?;
    let me = bob.user().to_owned();
    let g = s(e.post(Endpoint::SubmitMessage, &e.room, body).await)?;
    let r = s(SubmitMessageResponse::from_bytes(&g.body))?;
    let SubmitOutcome::Accepted {
        accepted_timestamp,
        frank: Some(frank),
    } = r.outcome
    else {
        return Err(format!(
            "a message in a franked room should be accepted with a frank, got {r:?}"
        ));
    };
    let report = |content: Vec<u8>| AbuseReport {
        reporting_user: Uri::from(me.as_str()),
        alleged_abuser_uri: Uri::from(me.as_str()),
        reason_code: 1,
        note: Utf8("conformance".into()),
        messages: vec![AbusiveMessage {
            message_content: mimi_proto::codec::Bytes(content),
            frank: frank.clone(),
            accepted_timestamp,
        }],
        abuse_extensions: AppDataDictionary::default(),
    };
    let g = s(e
        .post(
            Endpoint::ReportAbuse,
            &e.room,
            report(msg.bytes().to_vec()).to_bytes(),
        )
        .await)?;
    expect(
        (200..300).contains(&g.status),
        format!(
            "a report with the hub's own frank: {} {}",
            g.status,
            g.text()
        ),
    )?;
    // The same frank over other content must not verify.
    let other = s(builder::text(&me, &e.room, [9; 16], "not what was franked").build())?;
    let g = s(e
        .post(
            Endpoint::ReportAbuse,
            &e.room,
            report(other.bytes().to_vec()).to_bytes(),
        )
        .await)?;
    not_5xx(&g, "a report whose frank does not match the content")?;
    if let Some(a) = e.admin.as_mut() {
        let _ = a.sync(1).await;
    }
    Ok(())
}

async fn proxy_download(e: &mut Env) -> Res {
    let bob = e.bob.as_ref().ok_or("setup failed")?;
    let blob: Vec<u8> = (0..4096u32).map(|i| (i * 7 % 251) as u8).collect();
    // Stored on our side; the URL names our domain, an asset domain of a peer of the target.
    let url = s(bob.api.upload(blob.clone()).await)?;
    let h = e.headers();
    let hv: Vec<(&str, &str)> = h.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let path = format!("{}/proxyDownload/{}", e.prefix, encode_path_value(&url));
    let g = s(e
        .raw
        .send(&e.o.transport, e.o.target, "GET", &path, &hv, Vec::new())
        .await)?;
    expect(
        g.status == 200,
        format!("/proxyDownload of {url}: {} {}", g.status, g.text()),
    )?;
    expect(g.body == blob, "the proxied bytes differ from the asset")?;
    // Not an open proxy: a host that is no peer's asset domain is refused.
    let path = format!(
        "{}/proxyDownload/{}",
        e.prefix,
        encode_path_value("https://elsewhere.invalid/x")
    );
    let g = s(e
        .raw
        .send(&e.o.transport, e.o.target, "GET", &path, &hv, Vec::new())
        .await)?;
    not_5xx(
        &g,
        "/proxyDownload of a host that is no peer's asset domain",
    )
}

async fn policy_non_participant(e: &mut Env) -> Res {
    let eve = e.eve.as_ref().ok_or("setup failed")?;
    let mut forged = Member::new(&e.o.our_domain, &format!("confeve{}", e.run), "x");
    let es = s(e
        .admin
        .as_ref()
        .ok_or("setup failed")?
        .api
        .external_sender()
        .await)?;
    s(forged.create_room(&e.room, &es, &RoomSetup::named("forged")))?;
    let (body, _) = s(forged.send(&e.room, |snd, r, salt| {
        builder::text(snd, r, salt, "let me in")
    }))?;
    let _ = eve;
    let g = s(e.post(Endpoint::SubmitMessage, &e.room, body).await)?;
    expect(
        g.status == 200 || (400..500).contains(&g.status),
        format!("{} {}", g.status, g.text()),
    )?;
    if g.status == 200 {
        let r = s(SubmitMessageResponse::from_bytes(&g.body))?;
        expect(
            r.outcome == SubmitOutcome::NotAllowed,
            format!("a non-participant's message: expected notAllowed, got {r:?}"),
        )?;
    }
    Ok(())
}

async fn policy_unauthorised_add(e: &mut Env) -> Res {
    let mut bob = take(&mut e.bob, "our member")?;
    let r = async {
        let eve = e.eve.as_ref().ok_or("setup failed")?.user().to_owned();
        let kps = s(bob.key_packages_of(&e.room, &eve).await)?;
        let bundle = s(bob
            .member
            .add_participants(&e.room, &[(eve, role::ADMIN)], &kps))?;
        let o = commit(e, &mut bob, bundle).await?;
        expect(
            o == UpdateOutcome::NotAllowed,
            format!("a member adding an admin: expected notAllowed, got {o:?}"),
        )
    }
    .await;
    e.bob = Some(bob);
    r
}

async fn policy_banned_commit(e: &mut Env) -> Res {
    let eve_uri = e.eve.as_ref().ok_or("setup failed")?.user().to_owned();
    let admin = e.admin.as_mut().ok_or("setup failed")?;
    expect(
        s(admin.add(&e.room, &[(eve_uri.clone(), role::MEMBER)]).await)? == Verdict::Accepted,
        "the hub's user could not add ours",
    )?;
    let ban = s(admin.member.change_role(&e.room, &eve_uri, role::BANNED))?;
    expect(
        s(admin.handshake(&e.room, ban).await)? == Verdict::Accepted,
        "the hub's user could not ban",
    )?;
    if let Some(b) = e.bob.as_mut() {
        catch_up(b).await;
        catch_up(b).await;
    }
    let mut dev = s(e
        .eve
        .as_ref()
        .ok_or("setup failed")?
        .link_device("d2", 1)
        .await)?;
    let (req, key) = dev.member.group_info_request();
    let g = s(e.post(Endpoint::GroupInfo, &e.room, req).await)?;
    let resp = s(GroupInfoResponse::from_bytes(&g.body));
    match resp {
        Ok(r) if r.status != GroupInfoCode::Success => Ok(()), // refused at /groupInfo already
        Ok(_) => {
            let bundle = s(dev.member.external_join(&e.room, &g.body, &key))?;
            let o = commit(e, &mut dev, bundle).await?;
            expect(
                o == UpdateOutcome::NotAllowed,
                format!("a banned user's external commit: expected notAllowed, got {o:?}"),
            )
        }
        Err(_) => expect(
            (400..500).contains(&g.status),
            format!("/groupInfo for a banned user: {} {}", g.status, g.text()),
        ),
    }
}

async fn policy_fixed_membership(e: &mut Env) -> Res {
    let bob_uri = e.bob.as_ref().ok_or("setup failed")?.user().to_owned();
    let eve_uri = e.eve.as_ref().ok_or("setup failed")?.user().to_owned();
    let room = format!("mimi://{}/r/conffixed{}", e.o.target_domain, e.run);
    let admin = e.admin.as_mut().ok_or("setup failed")?;
    let mut setup = RoomSetup::named("fixed");
    setup.fixed_membership = true;
    setup.initial_participants = vec![(bob_uri.clone(), role::MEMBER)];
    s(admin.create_room(&room, &setup).await)?;
    let kps = s(admin.key_packages_of(&room, &bob_uri).await)?;
    let add = s(admin.member.add_clients(&room, &kps))?;
    expect(
        s(admin.handshake(&room, add).await)? == Verdict::Accepted,
        "adding the fixed participant's clients was refused",
    )?;
    let mut bob = take(&mut e.bob, "our member")?;
    let r = async {
        wait_event(
            &mut bob,
            "the Welcome to the fixed room",
            |ev| matches!(ev, Event::Joined { room: r } if *r == room),
        )
        .await?;
        let kps = s(bob.key_packages_of(&room, &eve_uri).await)?;
        let bundle =
            s(bob
                .member
                .add_participants(&room, &[(eve_uri.clone(), role::MEMBER)], &kps))?;
        let g = s(e.post(Endpoint::Update, &room, bundle).await)?;
        let _ = bob.member.commit_refused(&room);
        let o = s(UpdateRoomResponse::from_bytes(&g.body))?.outcome;
        expect(
            o == UpdateOutcome::NotAllowed,
            format!("an add to a fixed-membership room: expected notAllowed, got {o:?}"),
        )
    }
    .await;
    e.bob = Some(bob);
    r
}

async fn fanout_in_order(e: &mut Env) -> Res {
    let admin = e.admin.as_mut().ok_or("setup failed")?;
    let mut sent = Vec::new();
    for i in 0..5 {
        let (id, o) = s(admin
            .send(&e.room, |snd, r, salt| {
                builder::text(snd, r, salt, &format!("fanout {i}"))
            })
            .await)?;
        expect(
            matches!(o, SubmitOutcome::Accepted { .. }),
            format!("{o:?}"),
        )?;
        sent.push(id);
    }
    let bob = e.bob.as_mut().ok_or("setup failed")?;
    let got = collect(bob, sent.len()).await?;
    expect(
        got == sent,
        format!(
            "our user got {} of {} messages, or out of order",
            got.len(),
            sent.len()
        ),
    )
}

pub(super) async fn collect(
    sess: &mut Session,
    n: usize,
) -> Result<Vec<mimi_content::MessageId>, String> {
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut got = Vec::new();
    while got.len() < n && Instant::now() < deadline {
        for ev in s(sess.sync(2).await)? {
            if let Event::Message { id, .. } = ev {
                got.push(id);
            }
        }
    }
    // Nothing more (no duplicates).
    for ev in s(sess.sync(1).await)? {
        if let Event::Message { id, .. } = ev {
            got.push(id);
        }
    }
    Ok(got)
}

async fn fanout_retry(e: &mut Env) -> Res {
    // Our side goes away; the hub must keep what it accepted and deliver it once we are back.
    e.stop_ours().await;
    let admin = e.admin.as_mut().ok_or("setup failed")?;
    let mut sent = Vec::new();
    for i in 0..3 {
        let (id, o) = s(admin
            .send(&e.room, |snd, r, salt| {
                builder::text(snd, r, salt, &format!("while you were away {i}"))
            })
            .await)?;
        expect(
            matches!(o, SubmitOutcome::Accepted { .. }),
            format!("{o:?}"),
        )?;
        sent.push(id);
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    s(e.start_ours().await)?;
    let bob = e.bob.as_mut().ok_or("setup failed")?;
    let got = collect(bob, sent.len()).await?;
    expect(
        got == sent,
        format!(
            "after our restart: got {} of {} messages, or out of order or twice",
            got.len(),
            sent.len()
        ),
    )
}

async fn hub_malformed_bodies(e: &mut Env) -> Res {
    let mut problems = Vec::new();
    for ep in [
        Endpoint::Update,
        Endpoint::SubmitMessage,
        Endpoint::GroupInfo,
        Endpoint::ReportAbuse,
    ] {
        for (what, body) in bad_bodies() {
            let g = s(e.post(ep, &e.room, body).await)?;
            if !(400..500).contains(&g.status) {
                problems.push(format!("{} with {what}: {}", ep.name(), g.status));
            }
        }
    }
    let admin = e.admin.as_ref().ok_or("setup failed")?.user().to_owned();
    for (what, body) in bad_bodies() {
        let g = s(e.post(Endpoint::KeyMaterial, &admin, body).await)?;
        if !(400..500).contains(&g.status) {
            problems.push(format!("keyMaterial with {what}: {}", g.status));
        }
    }
    expect(problems.is_empty(), problems.join("; "))
}

/// The malformed bodies every endpoint must refuse with a 4xx.
pub fn bad_bodies() -> Vec<(&'static str, Vec<u8>)> {
    vec![
        ("garbage", b"\xff\xfe\xfd garbage".to_vec()),
        ("a truncated vector", vec![0x01, 0x40]),
        (
            "an oversize length prefix",
            vec![0x01, 0xbf, 0xff, 0xff, 0xff],
        ),
        ("an unknown enum value", vec![0x7f; 8]),
    ]
}

/// Tests of the hub role, in order.
pub fn hub_tests() -> Vec<Test> {
    vec![
        test!("directory", "protocol §2 (directory)", true, directory),
        test!(
            "mtls-no-certificate",
            "protocol §3 (transport security)",
            true,
            mtls_no_certificate
        ),
        test!(
            "mtls-unknown-ca",
            "protocol §3 (transport security)",
            true,
            mtls_unknown_ca
        ),
        test!(
            "from-mismatch",
            "protocol §3 (peer identity)",
            true,
            from_mismatch
        ),
        test!(
            "hub-setup",
            "protocol §5.2 (room creation via hook)",
            true,
            hub_setup
        ),
        test!(
            "keymaterial-happy",
            "protocol §5.1 (keyMaterial)",
            true,
            keymaterial_happy
        ),
        test!("update-happy", "protocol §5.2 (update)", true, update_happy),
        test!(
            "submit-happy",
            "protocol §5.4 (submitMessage)",
            true,
            submit_happy
        ),
        test!(
            "groupinfo-external-join",
            "protocol §5.6 (groupInfo)",
            true,
            groupinfo_and_external_join
        ),
        test!(
            "report-abuse",
            "protocol §5.9 (reportAbuse, frank verification)",
            true,
            report_abuse
        ),
        test!(
            "proxy-download",
            "protocol §5.10 (proxyDownload)",
            true,
            proxy_download
        ),
        test!(
            "wrong-epoch",
            "protocol §5.2 (update: wrongEpoch)",
            true,
            wrong_epoch
        ),
        test!(
            "epoch-too-old",
            "protocol §5.4 (submitMessage: epochTooOld)",
            true,
            epoch_too_old
        ),
        test!(
            "policy-non-participant",
            "room-policy §4 (send requires participation)",
            true,
            policy_non_participant
        ),
        test!(
            "policy-unauthorised-add",
            "room-policy §4 (role changes by capability)",
            true,
            policy_unauthorised_add
        ),
        test!(
            "policy-banned-commit",
            "room-policy §4 (banned users)",
            true,
            policy_banned_commit
        ),
        test!(
            "policy-fixed-membership",
            "room-policy §5 (fixed membership)",
            true,
            policy_fixed_membership
        ),
        test!(
            "fanout-in-order",
            "protocol §5.3 (fan-out)",
            true,
            fanout_in_order
        ),
        test!(
            "fanout-retry",
            "protocol §5.3 (fan-out retries)",
            true,
            fanout_retry
        ),
        test!(
            "malformed-bodies",
            "protocol §5 (errors)",
            true,
            hub_malformed_bodies
        ),
        test!("oversize-body", "protocol §5 (errors)", true, oversize_body),
        test!(
            "rate-limit-retry-after",
            "protocol §5 (overload, Retry-After)",
            false,
            rate_limit_retry_after
        ),
    ]
}
