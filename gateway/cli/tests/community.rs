//! Bridges that serve a whole community, against real Synapse and Prosody: users who are in
//! no configuration file open direct conversations with a native MIMI user (both ways:
//! messages, replies, reactions), join a MIMI room through its Matrix alias and through the
//! component's MUC address, and removals on one side are seen on the other.
//!
//! Needs the peers of `scripts/peers.sh start` (`./scripts/test` starts and stops them), so it
//! is `#[ignore]`d in plain `cargo test` runs. It shares Synapse's application-service port
//! with tests/bridges.rs: nextest runs them one at a time (.config/nextest.toml).

#![allow(clippy::unwrap_used)]

mod common;

use std::time::Instant;

use common::Fed;
use common::peers::*;
use mimi_adapters::uris::escape;
use mimi_adapters::xml::Element;
use mimi_client::{Event, RoomSetup, role};
use mimi_content::builder;
use mimi_content::{Disposition, MessageId, PartBody};
use mimi_session::{Session, Verdict};
use serde_json::{Value, json};

const ALICE: &str = "mimi://a.example/u/alice";

async fn wait_joined(s: &mut Session, prefix: &str) -> String {
    let deadline = Instant::now() + WAIT;
    while Instant::now() < deadline {
        for e in s.sync(2).await.unwrap() {
            if let Event::Joined { room } = e
                && room.starts_with(prefix)
            {
                return room;
            }
        }
    }
    panic!("never joined a room under {prefix}");
}

async fn wait_participants(s: &mut Session, room: &str, pred: impl Fn(&[(String, u32)]) -> bool) {
    let deadline = Instant::now() + WAIT;
    while Instant::now() < deadline {
        let _ = s.sync(1).await.unwrap();
        if pred(&s.member.participants(room)) {
            return;
        }
    }
    panic!(
        "the participants of {room} never matched: {:?}",
        s.member.participants(room)
    );
}

fn is_reaction(m: &mimi_content::Message, target: MessageId, emoji: &str) -> bool {
    let c = m.content();
    c.nested_part.disposition == Disposition::Reaction
        && c.in_reply_to == Some(target)
        && text(m) == emoji
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Synapse and Prosody: scripts/peers.sh start (./scripts/test runs it)"]
async fn community_users_open_conversations_and_join_rooms_on_demand() {
    let run: u32 = rand::random::<u32>() % 1_000_000;
    let fed = Fed::new("community", &["a.example", "m.example", "x.example"]);
    fed.append(
        "m.example",
        &format!(
            "\n[bridge.matrix]\nhomeserver_url = \"http://127.0.0.1:{}\"\nserver_name = \"matrix.test\"\nlisten = \"127.0.0.1:{}\"\nas_token = \"as_token_mimi_test_0123456789\"\nhs_token = \"hs_token_mimi_test_0123456789\"\n",
            env("MIMI_PEERS_HS_PORT", "18008"),
            env("MIMI_PEERS_AS_PORT", "19009")
        ),
    );
    let upload = common::free_port();
    fed.append(
        "x.example",
        &format!(
            "\n[bridge.xmpp]\nserver = \"127.0.0.1:{}\"\ncomponent = \"mimi.xmpp.test\"\nsecret = \"mimi_component_secret\"\ndomain = \"xmpp.test\"\nupload_listen = \"127.0.0.1:{upload}\"\n[bridge.xmpp.policy]\ndeny = [\"frank@xmpp.test\"]\n",
            env("MIMI_PEERS_COMP_PORT", "15347")
        ),
    );
    let a = fed.start("a.example");
    let _m = fed.start("m.example");
    let xg = fed.start("x.example");
    let mut alice = Session::register(a.client_api, "a.example", "alice", "phone", 8)
        .await
        .unwrap();

    // --- a fresh Matrix user opens a direct conversation with alice's puppet ---------------
    let carol_local = format!("carol{run}");
    let carol_mx = format!("@{carol_local}:matrix.test");
    let carol = format!("mimi://m.example/u/mx-_40{carol_local}_3amatrix.test");
    let mut mx = Driver::start();
    mx.call(json!({"op": "mx_login", "user": carol_local, "password": "carolpw"}))
        .await;
    let alice_puppet = format!("@mimi_{}:matrix.test", escape(ALICE));
    let dm_mx = mx
        .call(json!({"op": "mx_create_dm", "invite": alice_puppet}))
        .await["room_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let dm = wait_joined(&mut alice, "mimi://m.example/r/dm-").await;
    let c1_mx = mx
        .call(json!({"op": "mx_send", "content": {"msgtype": "m.text", "body": "hello alice"}}))
        .await["event_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let (c1, _) = native_wait(&mut alice, "carol's direct message", |s, m| {
        s == carol && text(m) == "hello alice"
    })
    .await;
    let (a1, _) = alice
        .send(&dm, |s, r, salt| builder::reply(s, r, salt, c1, "hi carol"))
        .await
        .unwrap();
    let e = mx
        .mx_wait("alice's reply", |e| e["content"]["body"] == "hi carol")
        .await;
    assert_eq!(e["sender"], alice_puppet.as_str());
    assert_eq!(
        e["content"]["m.relates_to"]["m.in_reply_to"]["event_id"],
        c1_mx.as_str()
    );
    let a1_mx = e["event_id"].as_str().unwrap().to_owned();
    alice
        .send(&dm, |s, r, salt| builder::reaction(s, r, salt, c1, "👍"))
        .await
        .unwrap();
    let e = mx
        .mx_wait("alice's reaction", |e| e["type"] == "m.reaction")
        .await;
    assert_eq!(e["content"]["m.relates_to"]["event_id"], c1_mx.as_str());
    assert_eq!(e["content"]["m.relates_to"]["key"], "👍");
    mx.call(json!({"op": "mx_send", "type": "m.reaction", "content": {"m.relates_to": {"rel_type": "m.annotation", "event_id": a1_mx, "key": "❤️"}}}))
        .await;
    native_wait(&mut alice, "carol's reaction", |s, m| {
        s == carol && is_reaction(m, a1, "❤️")
    })
    .await;

    // Carol's read receipt is a MIMI message-status report for alice.
    mx.call(json!({"op": "mx_read", "event_id": a1_mx})).await;
    native_wait(&mut alice, "carol's read receipt", |s, m| {
        s == carol
            && matches!(&m.content().nested_part.body, PartBody::Single(p) if p.content_type.starts_with(mimi_content::status::MEDIA_TYPE))
    })
    .await;

    // --- an XMPP user writes to alice's puppet JID ----------------------------------------
    let erin = "mimi://x.example/u/xm-erin_40xmpp.test".to_owned();
    let alice_jid = format!("{}@mimi.xmpp.test", escape(ALICE));
    let mut xm = Driver::start();
    xm.call(json!({"op": "xm_login", "jid": "erin@xmpp.test", "password": "erinpw"}))
        .await;
    xm.call(json!({"op": "xm_send", "xml": format!("<message to='{alice_jid}' type='chat' id='e1'><body>hello from erin</body><origin-id xmlns='urn:xmpp:sid:0' id='e1'/></message>")}))
        .await;
    let xdm = wait_joined(&mut alice, "mimi://x.example/r/dm-").await;
    let (e1, _) = native_wait(&mut alice, "erin's direct message", |s, m| {
        s == erin && text(m) == "hello from erin"
    })
    .await;
    let (a2, _) = alice
        .send(&xdm, |s, r, salt| builder::reply(s, r, salt, e1, "hi erin"))
        .await
        .unwrap();
    let x = xm
        .xm_wait("alice's reply", |e| body(e).ends_with("hi erin"))
        .await;
    assert_eq!(x.get("type"), Some("chat"));
    assert_eq!(
        x.get("from").map(|f| f.split('/').next().unwrap_or(f)),
        Some(alice_jid.as_str())
    );
    assert_eq!(
        child_attr(&x, "reply", "urn:xmpp:reply:0", "id").as_deref(),
        Some("e1")
    );
    let a2_xm = origin_id(&x);
    alice
        .send(&xdm, |s, r, salt| builder::reaction(s, r, salt, e1, "🎉"))
        .await
        .unwrap();
    let x = xm
        .xm_wait("alice's reaction", |e| {
            e.find("reactions", "urn:xmpp:reactions:0").is_some()
        })
        .await;
    assert_eq!(
        child_attr(&x, "reactions", "urn:xmpp:reactions:0", "id").as_deref(),
        Some("e1")
    );
    xm.call(json!({"op": "xm_send", "xml": format!("<message to='{alice_jid}' type='chat' id='e2'><reactions xmlns='urn:xmpp:reactions:0' id='{a2_xm}'><reaction>👍</reaction></reactions><store xmlns='urn:xmpp:hints'/></message>")}))
        .await;
    native_wait(&mut alice, "erin's reaction", |s, m| {
        s == erin && is_reaction(m, a2, "👍")
    })
    .await;

    // Attachments both ways over XEP-0363: erin uploads to the component's service.
    let picture: Vec<u8> = (0..3000u32).map(|i| (i * 7 % 251) as u8).collect();
    let url = xm
        .call(json!({"op": "xm_upload", "service": "mimi.xmpp.test", "data": b64(&picture), "filename": "pic.png", "content_type": "image/png"}))
        .await["url"]
        .as_str()
        .unwrap()
        .to_owned();
    xm.call(json!({"op": "xm_send", "xml": format!("<message to='{alice_jid}' type='chat' id='e3'><body>{url}</body><x xmlns='jabber:x:oob'><url>{url}</url></x></message>")}))
        .await;
    let (_, m) = native_wait(&mut alice, "erin's picture", |s, m| {
        s == erin && matches!(m.content().nested_part.body, PartBody::External(_))
    })
    .await;
    let PartBody::External(x) = &m.content().nested_part.body else {
        unreachable!()
    };
    let ct = alice.api.download(&x.url).await.unwrap();
    assert_eq!(
        builder::open_attachment(x, &ct).unwrap(),
        picture,
        "alice decrypts what erin uploaded"
    );
    let doc: Vec<u8> = b"native attachment bytes".repeat(40);
    let sealed = builder::seal_attachment(
        &doc,
        "application/pdf",
        "native.pdf",
        rand::random(),
        rand::random(),
    );
    let mut part = sealed.part;
    part.url = alice.api.upload(sealed.ciphertext).await.unwrap();
    alice
        .send(&xdm, |s, r, salt| {
            builder::attachment(s, r, salt, part, false)
        })
        .await
        .unwrap();
    let x = xm
        .xm_wait("alice's attachment", |e| {
            e.find("x", "jabber:x:oob").is_some()
        })
        .await;
    let got = xm.call(json!({"op": "http_get", "url": body(&x)})).await;
    assert_eq!(
        unb64(got["data"].as_str().unwrap()),
        doc,
        "erin downloads what alice attached"
    );
    // A read marker from erin is a MIMI message-status report for alice.
    xm.call(json!({"op": "xm_send", "xml": format!("<message to='{alice_jid}' type='chat' id='e4'><displayed xmlns='urn:xmpp:chat-markers:0' id='{a2_xm}'/></message>")}))
        .await;
    native_wait(&mut alice, "erin's read marker", |s, m| {
        s == erin
            && matches!(&m.content().nested_part.body, PartBody::Single(p) if p.content_type.starts_with(mimi_content::status::MEDIA_TYPE))
    })
    .await;

    // A user the operator denied is told so, and nothing is bridged for them.
    let mut fx = Driver::start();
    fx.call(json!({"op": "xm_login", "jid": "frank@xmpp.test", "password": "frankpw"}))
        .await;
    fx.call(json!({"op": "xm_send", "xml": format!("<message to='{alice_jid}' type='chat' id='f1'><body>let me in</body></message>")}))
        .await;
    let refused = fx
        .xm_wait("frank's refusal", |e| e.get("type") == Some("error"))
        .await;
    assert!(
        refused
            .to_xml("")
            .contains("not allowed to use this bridge"),
        "{}",
        refused.to_xml("")
    );
    // Open registration of that name succeeds only if the bridge made no user for frank.
    let mut probe = mimi_session::ApiClient::new(xg.client_api);
    probe
        .register("xm-frank_40xmpp.test", "probe", "")
        .await
        .expect("no MIMI user exists for frank");

    // --- rooms on demand: an open MIMI room through its alias and the component's MUC -------
    let open = format!("mimi://a.example/r/open{run}");
    alice
        .create_room(
            &open,
            &RoomSetup {
                open_join: true,
                ..RoomSetup::named("Open")
            },
        )
        .await
        .unwrap();
    let alias = format!("#mimi_{}:matrix.test", escape(&open));
    let open_mx = mx.call(json!({"op": "mx_join", "alias": alias})).await["room_id"]
        .as_str()
        .unwrap()
        .to_owned();
    wait_participants(&mut alice, &open, |p| p.iter().any(|(u, _)| *u == carol)).await;
    mx.call(json!({"op": "mx_send", "content": {"msgtype": "m.text", "body": "carol in the open room"}}))
        .await;
    native_wait(&mut alice, "carol in the open room", |s, m| {
        s == carol && text(m) == "carol in the open room"
    })
    .await;
    let room_jid = format!("{}@mimi.xmpp.test", escape(&open));
    xm.call(json!({"op": "xm_join", "muc": room_jid, "nick": "erin"}))
        .await;
    wait_participants(&mut alice, &open, |p| p.iter().any(|(u, _)| *u == erin)).await;
    xm.call(json!({"op": "xm_send", "xml": format!("<message to='{room_jid}' type='groupchat' id='e3'><body>erin in the open room</body></message>")}))
        .await;
    native_wait(&mut alice, "erin in the open room", |s, m| {
        s == erin && text(m) == "erin in the open room"
    })
    .await;
    mx.mx_wait("erin's message, through MIMI", |e| {
        e["content"]["body"] == "erin in the open room"
    })
    .await;
    alice
        .send(&open, |s, r, salt| {
            builder::text(s, r, salt, "welcome both")
        })
        .await
        .unwrap();
    mx.mx_wait("alice's welcome", |e| {
        e["content"]["body"] == "welcome both"
    })
    .await;
    let x = xm
        .xm_wait("alice's welcome", |e| body(e) == "welcome both")
        .await;
    assert_eq!(x.get("type"), Some("groupchat"));
    assert_eq!(from_nick(&x), "alice (a.example)");

    // --- removals both ways --------------------------------------------------------------
    // Carol leaves the portal: her MIMI client proposes to leave (a Remove of her client and
    // her removal from the participant list, in one bundle), alice commits both.
    mx.call(json!({"op": "mx_leave"})).await;
    let deadline = Instant::now() + WAIT;
    let mut proposed = 0;
    while proposed < 2 {
        assert!(
            Instant::now() < deadline,
            "carol's leave never reached MIMI"
        );
        proposed += alice
            .sync(2)
            .await
            .unwrap()
            .iter()
            .filter(|e| matches!(e, Event::Proposed { room } if *room == open))
            .count();
    }
    let bundle = alice.member.commit_pending(&open).unwrap();
    assert_eq!(
        alice.handshake(&open, bundle).await.unwrap(),
        Verdict::Accepted
    );
    assert!(
        !alice
            .member
            .participants(&open)
            .iter()
            .any(|(u, _)| *u == carol)
    );
    // Alice removes erin: the MUC tells erin she was kicked.
    assert_eq!(
        alice
            .remove(&open, std::slice::from_ref(&erin))
            .await
            .unwrap(),
        Verdict::Accepted
    );
    let deadline = Instant::now() + WAIT;
    'kicked: loop {
        assert!(Instant::now() < deadline, "erin never saw her removal");
        let r = xm
            .call(json!({"op": "xm_presences", "timeout_ms": 1000}))
            .await;
        for s in r["stanzas"].as_array().unwrap() {
            let p = Element::parse(s.as_str().unwrap(), "jabber:client").unwrap();
            let kicked = p.get("type") == Some("unavailable")
                && p.get("from").is_some_and(|f| f.starts_with(&room_jid))
                && p.find("x", "http://jabber.org/protocol/muc#user")
                    .is_some_and(|x| {
                        x.elements()
                            .any(|c| c.name == "status" && c.get("code") == Some("307"))
                    });
            if kicked {
                break 'kicked;
            }
        }
    }
    // Carol joins again through the alias and alice removes her: the bot kicks her.
    mx.call(json!({"op": "mx_join", "alias": alias})).await;
    wait_participants(&mut alice, &open, |p| p.iter().any(|(u, _)| *u == carol)).await;
    assert_eq!(
        alice
            .remove(&open, std::slice::from_ref(&carol))
            .await
            .unwrap(),
        Verdict::Accepted
    );
    mx.call(json!({"op": "mx_use", "room_id": open_mx})).await;
    mx.mx_wait("carol's kick", |e: &Value| {
        e["type"] == "m.room.member"
            && e["state_key"] == carol_mx.as_str()
            && e["content"]["membership"] == "leave"
            && e["sender"] != carol_mx.as_str()
    })
    .await;
    let _ = (dm_mx, role::MEMBER);
}
