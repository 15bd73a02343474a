//! The follower role: we host the room, the target follows it.

use super::generic::*;
use super::hub::collect;
use super::*;
use mimi_client::{Event, RoomSetup, role};
use mimi_content::builder;
use mimi_proto::codec::{Uri, Utf8, Wire};
use mimi_proto::components::AppDataDictionary;
use mimi_proto::directory::Endpoint;
use mimi_session::Verdict;

async fn follower_setup(e: &mut Env) -> Res {
    let mut admin = e.session(true, "confhub", "d", 4).await?;
    let tom = e.session(false, "conftom", "d", 6).await?;
    e.room = format!("mimi://{}/r/conff{}", e.o.our_domain, e.run);
    let mut setup = RoomSetup::named("conformance");
    setup.franking = false;
    s(admin.create_room(&e.room, &setup).await)?;
    e.admin = Some(admin);
    e.tom = Some(tom);
    Ok(())
}

async fn keymaterial_served(e: &mut Env) -> Res {
    let admin = e.admin.as_ref().ok_or("setup failed")?;
    let tom = e.tom.as_ref().ok_or("setup failed")?.user().to_owned();
    let mut kps = Vec::new();
    for _ in 0..2 {
        let g = s(e
            .post(
                Endpoint::KeyMaterial,
                &tom,
                admin.member.key_material_request(&tom, ""),
            )
            .await)?;
        expect(g.status == 200, format!("{} {}", g.status, g.text()))?;
        let r = s(KeyMaterialResponse::from_bytes(&g.body))?;
        match r.clients.first() {
            Some(ClientKeyMaterial::Success { key_package, .. })
                if r.user_status == KeyMaterialUserCode::Success =>
            {
                kps.push(key_package.to_bytes())
            }
            _ => return Err(format!("{r:?}")),
        }
    }
    expect(kps[0] != kps[1], "the same KeyPackage was handed out twice")
}

async fn welcome_routing(e: &mut Env) -> Res {
    let tom = e.tom.as_ref().ok_or("setup failed")?.user().to_owned();
    let admin = e.admin.as_mut().ok_or("setup failed")?;
    expect(
        s(admin.add(&e.room, &[(tom, role::MEMBER)]).await)? == Verdict::Accepted,
        "our hub could not add the target's user",
    )?;
    let tom = e.tom.as_mut().ok_or("setup failed")?;
    wait_event(tom, "the Welcome at the target's user", |ev| {
        matches!(ev, Event::Joined { .. })
    })
    .await
}

async fn notify_happy(e: &mut Env) -> Res {
    let admin = e.admin.as_mut().ok_or("setup failed")?;
    s(admin
        .send(&e.room, |snd, r, salt| {
            builder::text(snd, r, salt, "notify happy")
        })
        .await)?;
    let tom = e.tom.as_mut().ok_or("setup failed")?;
    wait_message(tom, "the fanned-out message", |m| {
        text_of(m) == "notify happy"
    })
    .await
    .map(|_| ())
}

fn fanout_of(submit: &[u8]) -> Result<FanoutMessage, String> {
    let req = s(SubmitMessageRequest::from_bytes(submit))?;
    Ok(FanoutMessage {
        timestamp: now_ms(),
        message: req.app_message,
        extra: FanoutExtra::Application { frank: None },
    })
}

async fn notify_duplicate(e: &mut Env) -> Res {
    let admin = e.admin.as_mut().ok_or("setup failed")?;
    let (body, msg) = s(admin.member.send(&e.room, |snd, r, salt| {
        builder::text(snd, r, salt, "sent twice")
    }))?;
    let id = s(msg.id())?;
    let fm = fanout_of(&body)?.to_bytes();
    for i in 0..2 {
        let g = s(e.post(Endpoint::Notify, &e.room, fm.clone()).await)?;
        expect(
            g.status == 201,
            format!(
                "/notify copy {}: expected 201, got {} {}",
                i + 1,
                g.status,
                g.text()
            ),
        )?;
    }
    let tom = e.tom.as_mut().ok_or("setup failed")?;
    let got = collect(tom, 1).await?;
    expect(
        got.iter().filter(|g| **g == id).count() == 1,
        format!(
            "the duplicated message was delivered {} times",
            got.iter().filter(|g| **g == id).count()
        ),
    )
}

async fn notify_batch(e: &mut Env) -> Res {
    let admin = e.admin.as_mut().ok_or("setup failed")?;
    let mut body = Vec::new();
    let mut ids = Vec::new();
    for t in ["batch one", "batch two"] {
        let (b, m) = s(admin
            .member
            .send(&e.room, |snd, r, salt| builder::text(snd, r, salt, t)))?;
        ids.push(s(m.id())?);
        body.extend(fanout_of(&b)?.to_bytes());
    }
    let g = s(e.post(Endpoint::Notify, &e.room, body).await)?;
    expect(
        g.status == 201,
        format!(
            "a /notify body of two FanoutMessages: {} {}",
            g.status,
            g.text()
        ),
    )?;
    let tom = e.tom.as_mut().ok_or("setup failed")?;
    let got = collect(tom, 2).await?;
    expect(
        got == ids,
        format!("expected both messages in order, got {got:?}"),
    )
}

async fn notify_not_from_hub(e: &mut Env) -> Res {
    let room = format!("mimi://{}/r/not-ours{}", e.o.target_domain, e.run);
    let admin = e.admin.as_mut().ok_or("setup failed")?;
    let (b, _) = s(admin.member.send(&e.room, |snd, r, salt| {
        builder::text(snd, r, salt, "forged")
    }))?;
    let g = s(e
        .post(Endpoint::Notify, &room, fanout_of(&b)?.to_bytes())
        .await)?;
    not_5xx(&g, "/notify for a room we do not host")
}

async fn follower_malformed_bodies(e: &mut Env) -> Res {
    let tom = e.tom.as_ref().ok_or("setup failed")?.user().to_owned();
    let mut problems = Vec::new();
    for (ep, value) in [
        (Endpoint::Notify, e.room.clone()),
        (Endpoint::KeyMaterial, tom.clone()),
        (Endpoint::RequestConsent, tom.clone()),
        (Endpoint::UpdateConsent, tom.clone()),
        (Endpoint::IdentifierQuery, e.o.target_domain.clone()),
    ] {
        for (what, body) in bad_bodies() {
            let g = s(e.post(ep, &value, body).await)?;
            if !(400..500).contains(&g.status) {
                problems.push(format!("{} with {what}: {}", ep.name(), g.status));
            }
        }
    }
    expect(problems.is_empty(), problems.join("; "))
}

async fn identifier_query(e: &mut Env) -> Res {
    let tom = e.tom.as_ref().ok_or("setup failed")?.user().to_owned();
    let req = IdentifierRequest {
        query_elements: vec![QueryElement {
            search_type: SearchIdentifierType::Handle,
            field_name: None,
            search_value: Utf8(tom.clone()),
        }],
        id_request_extensions: AppDataDictionary::default(),
    };
    let g = s(e
        .post(
            Endpoint::IdentifierQuery,
            &e.o.target_domain,
            req.to_bytes(),
        )
        .await)?;
    expect(g.status == 200, format!("{} {}", g.status, g.text()))?;
    let r = s(IdentifierResponse::from_bytes(&g.body))?;
    expect(
        r.response_code == IdentifierQueryCode::Success && r.uri.iter().any(|u| u.as_str() == tom),
        format!("{r:?}"),
    )
}

async fn request_consent(e: &mut Env) -> Res {
    let tom = e.tom.as_ref().ok_or("setup failed")?.user().to_owned();
    let admin = e.admin.as_ref().ok_or("setup failed")?.user().to_owned();
    let entry = ConsentEntry {
        consent_operation: ConsentOperation::Request,
        requester_uri: Uri::from(admin.as_str()),
        target_uri: Uri::from(tom.as_str()),
        room_id: None,
        client_key_packages: vec![],
        consent_extensions: AppDataDictionary::default(),
    };
    let g = s(e
        .post(Endpoint::RequestConsent, &tom, entry.to_bytes())
        .await)?;
    expect(
        (200..300).contains(&g.status),
        format!("{} {}", g.status, g.text()),
    )
}

async fn update_consent(e: &mut Env) -> Res {
    let tom = e.tom.as_ref().ok_or("setup failed")?.user().to_owned();
    let admin = e.admin.as_ref().ok_or("setup failed")?.user().to_owned();
    // Our user grants the target's user consent: sent to the requester's provider.
    let entry = ConsentEntry {
        consent_operation: ConsentOperation::Grant,
        requester_uri: Uri::from(tom.as_str()),
        target_uri: Uri::from(admin.as_str()),
        room_id: None,
        client_key_packages: vec![],
        consent_extensions: AppDataDictionary::default(),
    };
    let g = s(e
        .post(Endpoint::UpdateConsent, &tom, entry.to_bytes())
        .await)?;
    expect(
        (200..300).contains(&g.status),
        format!("{} {}", g.status, g.text()),
    )?;
    // A grant about a user of another provider than ours is refused.
    let forged = ConsentEntry {
        target_uri: Uri::from(tom.as_str()),
        requester_uri: Uri::from(admin.as_str()),
        ..entry
    };
    let g = s(e
        .post(Endpoint::UpdateConsent, &admin, forged.to_bytes())
        .await)?;
    not_5xx(&g, "updateConsent about a user we do not host")
}

/// Tests of the follower role, in order.
pub fn follower_tests() -> Vec<Test> {
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
            "follower-setup",
            "protocol §5.2 (room hosted by the suite)",
            true,
            follower_setup
        ),
        test!(
            "keymaterial-served",
            "protocol §5.1 (keyMaterial, never twice)",
            true,
            keymaterial_served
        ),
        test!(
            "welcome-routing",
            "protocol §5.3 (Welcome by KeyPackageRef)",
            true,
            welcome_routing
        ),
        test!("notify-happy", "protocol §5.3 (notify)", true, notify_happy),
        test!(
            "notify-duplicate",
            "protocol §5.3 (duplicate notify: 201, once)",
            true,
            notify_duplicate
        ),
        test!(
            "notify-batch",
            "protocol §5.3 (several FanoutMessages per body)",
            true,
            notify_batch
        ),
        test!(
            "notify-not-from-hub",
            "protocol §5.3 (notify only from the hub)",
            true,
            notify_not_from_hub
        ),
        test!(
            "identifier-query",
            "protocol §5.8 (identifierQuery)",
            true,
            identifier_query
        ),
        test!(
            "request-consent",
            "protocol §5.7 (requestConsent)",
            true,
            request_consent
        ),
        test!(
            "update-consent",
            "protocol §5.7 (updateConsent)",
            true,
            update_consent
        ),
        test!(
            "malformed-bodies",
            "protocol §5 (errors)",
            true,
            follower_malformed_bodies
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
