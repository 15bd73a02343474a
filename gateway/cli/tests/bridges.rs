//! The bridges against real servers: a Matrix user on Synapse (matrix-nio), an XMPP user on
//! Prosody (slixmpp) and a native MIMI client share one MIMI room hosted by the native
//! provider's gateway. Each sends a message, a reply, an edit, a reaction, an un-react and a
//! delete, and each sees the others' actions with the right targets.
//!
//! Needs the peers of `scripts/peers.sh start` (`./scripts/test` starts and stops them), so it
//! is `#[ignore]`d in plain `cargo test` runs.

#![allow(clippy::unwrap_used)]

mod common;

use common::Fed;
use common::peers::*;
use mimi_adapters::xml::Element;
use mimi_client::{RoomSetup, role};
use mimi_content::PartBody;
use mimi_content::builder;
use mimi_session::{Session, Verdict};
use serde_json::json;

const ROOM: &str = "mimi://a.example/r/interop";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Synapse and Prosody: scripts/peers.sh start (./scripts/test runs it)"]
async fn real_peers_matrix_xmpp_and_native_share_a_room() {
    let run: u32 = rand::random::<u32>() % 1_000_000;
    let bob_mx = format!("@bob{run}:matrix.test");
    let muc = format!("interop{run}@conference.xmpp.test");
    let alias = format!("mimi_interop{run}");
    let fed = Fed::new("bridges", &["a.example", "m.example", "x.example"]);
    fed.append(
        "m.example",
        &format!(
            "\n[bridge.matrix]\nhomeserver_url = \"http://127.0.0.1:{}\"\nserver_name = \"matrix.test\"\nlisten = \"127.0.0.1:{}\"\nas_token = \"as_token_mimi_test_0123456789\"\nhs_token = \"hs_token_mimi_test_0123456789\"\nusers = [\"{bob_mx}\"]\n[[bridge.matrix.rooms]]\nmimi = \"{ROOM}\"\nalias = \"{alias}\"\n",
            env("MIMI_PEERS_HS_PORT", "18008"),
            env("MIMI_PEERS_AS_PORT", "19009")
        ),
    );
    fed.append(
        "x.example",
        &format!(
            "\n[bridge.xmpp]\nserver = \"127.0.0.1:{}\"\ncomponent = \"mimi.xmpp.test\"\nsecret = \"mimi_component_secret\"\nusers = [\"dave@xmpp.test\"]\n[[bridge.xmpp.rooms]]\nmimi = \"{ROOM}\"\nmuc = \"{muc}\"\n",
            env("MIMI_PEERS_COMP_PORT", "15347")
        ),
    );
    // The registration the homeserver was configured with is the one the gateway prints.
    let reg = std::process::Command::new(env!("CARGO_BIN_EXE_mimi"))
        .args(["bridge", "matrix", "registration", "--config"])
        .arg(fed.config("m.example"))
        .output()
        .unwrap();
    let reg = String::from_utf8(reg.stdout).unwrap();
    assert!(
        reg.contains("hs_token: \"hs_token_mimi_test_0123456789\"")
            && reg.contains("regex: '@mimi_.*:matrix\\\\.test'"),
        "{reg}"
    );

    let mut d = Driver::start();
    d.call(json!({"op": "mx_login", "user": format!("bob{run}"), "password": "bobpw"}))
        .await;
    d.call(json!({"op": "xm_login", "jid": "dave@xmpp.test", "password": "davepw"}))
        .await;
    let a = fed.start("a.example");
    let _m = fed.start("m.example");
    let _x = fed.start("x.example");
    d.call(json!({"op": "mx_join", "alias": format!("#{alias}:matrix.test")}))
        .await;
    d.call(json!({"op": "xm_join", "muc": muc, "nick": "dave"}))
        .await;

    let mut alice = Session::register(a.client_api, "a.example", "alice", "phone", 2)
        .await
        .unwrap();
    let bob = "mimi://m.example/u/mx-_40bob".to_owned() + &run.to_string() + "_3amatrix.test";
    let dave = "mimi://x.example/u/xm-dave_40xmpp.test".to_owned();
    alice
        .create_room(ROOM, &RoomSetup::named("Interop"))
        .await
        .unwrap();
    assert_eq!(
        alice
            .add(
                ROOM,
                &[(bob.clone(), role::MEMBER), (dave.clone(), role::MEMBER)]
            )
            .await
            .unwrap(),
        Verdict::Accepted
    );

    // --- messages ------------------------------------------------------------------------
    let (a1, _) = alice
        .send(ROOM, |s, r, salt| {
            builder::text(s, r, salt, "hello from native")
        })
        .await
        .unwrap();
    let a1_mx = d
        .mx_wait("alice's message", |e| {
            e["content"]["body"] == "hello from native"
                && e["sender"].as_str().unwrap().starts_with("@mimi_")
        })
        .await;
    let a1_mx = a1_mx["event_id"].as_str().unwrap().to_owned();
    let a1_xm = d
        .xm_wait("alice's message", |e| body(e) == "hello from native")
        .await;
    assert_eq!(from_nick(&a1_xm), "alice (a.example)");
    let (a1_xm_sid, a1_xm_origin) = (stanza_id(&a1_xm), origin_id(&a1_xm));

    let b1_mx = d
        .call(json!({"op": "mx_send", "content": {"msgtype": "m.text", "body": "hi from matrix"}}))
        .await["event_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let (b1, _) = native_wait(&mut alice, "bob's message", |s, m| {
        s == bob && text(m) == "hi from matrix"
    })
    .await;
    let b1_xm = d
        .xm_wait("bob's message", |e| body(e) == "hi from matrix")
        .await;
    assert_eq!(from_nick(&b1_xm), format!("{bob_mx}"));
    let (b1_xm_sid, b1_xm_origin) = (stanza_id(&b1_xm), origin_id(&b1_xm));

    d.call(json!({"op": "xm_send", "xml": format!("<message to='{muc}' type='groupchat' id='d1'><body>hi from xmpp</body><origin-id xmlns='urn:xmpp:sid:0' id='d1'/></message>")})).await;
    let d1_own = d
        .xm_wait("dave's own reflection", |e| body(e) == "hi from xmpp")
        .await;
    let d1_sid = stanza_id(&d1_own);
    let (d1, _) = native_wait(&mut alice, "dave's message", |s, m| {
        s == dave && text(m) == "hi from xmpp"
    })
    .await;
    let d1_mx = d
        .mx_wait("dave's message", |e| e["content"]["body"] == "hi from xmpp")
        .await["event_id"]
        .as_str()
        .unwrap()
        .to_owned();

    // --- replies ---------------------------------------------------------------------------
    alice
        .send(ROOM, |s, r, salt| {
            builder::reply(s, r, salt, b1, "native replies to matrix")
        })
        .await
        .unwrap();
    let e = d
        .mx_wait("alice's reply", |e| {
            e["content"]["body"] == "native replies to matrix"
        })
        .await;
    assert_eq!(
        e["content"]["m.relates_to"]["m.in_reply_to"]["event_id"],
        b1_mx.as_str(),
        "the reply targets bob's own event"
    );
    let x = d
        .xm_wait("alice's reply", |e| {
            body(e).ends_with("native replies to matrix")
        })
        .await;
    assert_eq!(
        child_attr(&x, "reply", "urn:xmpp:reply:0", "id").unwrap(),
        b1_xm_sid
    );

    d.call(json!({"op": "mx_send", "content": {"msgtype": "m.text", "body": "matrix replies to xmpp", "m.relates_to": {"m.in_reply_to": {"event_id": d1_mx}}}})).await;
    let (_, m) = native_wait(&mut alice, "bob's reply", |_, m| {
        text(m) == "matrix replies to xmpp"
    })
    .await;
    assert_eq!(m.content().in_reply_to, Some(d1));
    let x = d
        .xm_wait("bob's reply", |e| {
            body(e).ends_with("matrix replies to xmpp")
        })
        .await;
    assert_eq!(
        child_attr(&x, "reply", "urn:xmpp:reply:0", "id").unwrap(),
        d1_sid,
        "the reply targets dave's own message"
    );

    d.call(json!({"op": "xm_send", "xml": format!("<message to='{muc}' type='groupchat' id='d2'><body>xmpp replies to native</body><reply xmlns='urn:xmpp:reply:0' id='{a1_xm_sid}'/><origin-id xmlns='urn:xmpp:sid:0' id='d2'/></message>")})).await;
    let (_, m) = native_wait(&mut alice, "dave's reply", |_, m| {
        text(m) == "xmpp replies to native"
    })
    .await;
    assert_eq!(m.content().in_reply_to, Some(a1));
    let e = d
        .mx_wait("dave's reply", |e| {
            e["content"]["body"] == "xmpp replies to native"
        })
        .await;
    assert_eq!(
        e["content"]["m.relates_to"]["m.in_reply_to"]["event_id"],
        a1_mx.as_str()
    );

    // --- edits -----------------------------------------------------------------------------
    alice
        .send(ROOM, |s, r, salt| {
            builder::edit(
                s,
                r,
                salt,
                a1,
                builder::plain_part("hello from native (edited)"),
            )
        })
        .await
        .unwrap();
    let e = d
        .mx_wait("alice's edit", |e| {
            e["content"]["m.new_content"]["body"] == "hello from native (edited)"
        })
        .await;
    assert_eq!(
        e["content"]["m.relates_to"],
        json!({"rel_type": "m.replace", "event_id": a1_mx})
    );
    let x = d
        .xm_wait("alice's edit", |e| body(e) == "hello from native (edited)")
        .await;
    assert_eq!(
        child_attr(&x, "replace", "urn:xmpp:message-correct:0", "id").unwrap(),
        a1_xm_origin
    );

    d.call(json!({"op": "mx_send", "content": {"msgtype": "m.text", "body": "* hi from matrix (edited)", "m.new_content": {"msgtype": "m.text", "body": "hi from matrix (edited)"}, "m.relates_to": {"rel_type": "m.replace", "event_id": b1_mx}}})).await;
    let (_, m) = native_wait(&mut alice, "bob's edit", |_, m| {
        text(m) == "hi from matrix (edited)"
    })
    .await;
    assert_eq!(m.content().replaces, Some(b1));
    let x = d
        .xm_wait("bob's edit", |e| body(e) == "hi from matrix (edited)")
        .await;
    assert_eq!(
        child_attr(&x, "replace", "urn:xmpp:message-correct:0", "id").unwrap(),
        b1_xm_origin
    );

    d.call(json!({"op": "xm_send", "xml": format!("<message to='{muc}' type='groupchat' id='d3'><body>hi from xmpp (edited)</body><replace xmlns='urn:xmpp:message-correct:0' id='d1'/><origin-id xmlns='urn:xmpp:sid:0' id='d3'/></message>")})).await;
    let (_, m) = native_wait(&mut alice, "dave's edit", |_, m| {
        text(m) == "hi from xmpp (edited)"
    })
    .await;
    assert_eq!(m.content().replaces, Some(d1));
    let e = d
        .mx_wait("dave's edit", |e| {
            e["content"]["m.new_content"]["body"] == "hi from xmpp (edited)"
        })
        .await;
    assert_eq!(e["content"]["m.relates_to"]["event_id"], d1_mx.as_str());

    // --- reactions -------------------------------------------------------------------------
    let (ra, _) = alice
        .send(ROOM, |s, r, salt| builder::reaction(s, r, salt, b1, "👍"))
        .await
        .unwrap();
    let e = d
        .mx_wait("alice's reaction", |e| e["type"] == "m.reaction")
        .await;
    assert_eq!(
        e["content"]["m.relates_to"],
        json!({"rel_type": "m.annotation", "event_id": b1_mx, "key": "👍"})
    );
    let ra_mx = e["event_id"].as_str().unwrap().to_owned();
    let x = d
        .xm_wait("alice's reaction", |e| {
            e.find("reactions", "urn:xmpp:reactions:0").is_some()
        })
        .await;
    let r = x.find("reactions", "urn:xmpp:reactions:0").unwrap();
    assert_eq!(
        (
            r.get("id").unwrap(),
            r.elements().map(Element::text).collect::<Vec<_>>()
        ),
        (b1_xm_sid.as_str(), vec!["👍".to_owned()])
    );

    let rb_mx = d.call(json!({"op": "mx_send", "type": "m.reaction", "content": {"m.relates_to": {"rel_type": "m.annotation", "event_id": d1_mx, "key": "🎉"}}})).await["event_id"].as_str().unwrap().to_owned();
    let (rb, m) = native_wait(&mut alice, "bob's reaction", |_, m| text(m) == "🎉").await;
    assert_eq!(m.content().in_reply_to, Some(d1));
    let x = d
        .xm_wait("bob's reaction", |e| {
            e.find("reactions", "urn:xmpp:reactions:0")
                .is_some_and(|r| r.elements().any(|c| c.text() == "🎉"))
        })
        .await;
    assert_eq!(
        child_attr(&x, "reactions", "urn:xmpp:reactions:0", "id").unwrap(),
        d1_sid
    );

    d.call(json!({"op": "xm_send", "xml": format!("<message to='{muc}' type='groupchat' id='d4'><reactions xmlns='urn:xmpp:reactions:0' id='{a1_xm_sid}'><reaction>❤️</reaction></reactions><store xmlns='urn:xmpp:hints'/></message>")})).await;
    let (rd, m) = native_wait(&mut alice, "dave's reaction", |_, m| text(m) == "❤️").await;
    assert_eq!(m.content().in_reply_to, Some(a1));
    let e = d
        .mx_wait("dave's reaction", |e| {
            e["type"] == "m.reaction" && e["content"]["m.relates_to"]["key"] == "❤️"
        })
        .await;
    assert_eq!(e["content"]["m.relates_to"]["event_id"], a1_mx.as_str());
    let rd_mx = e["event_id"].as_str().unwrap().to_owned();

    // --- un-reacts -------------------------------------------------------------------------
    alice
        .send(ROOM, |s, r, salt| builder::unreact(s, r, salt, ra, b1))
        .await
        .unwrap();
    let e = d
        .mx_wait("alice's un-react", |e| {
            e["type"] == "m.room.redaction"
                && (e["redacts"] == ra_mx.as_str() || e["content"]["redacts"] == ra_mx.as_str())
        })
        .await;
    assert!(e["sender"].as_str().unwrap().starts_with("@mimi_"));
    d.xm_wait("alice's un-react", |e| {
        e.find("reactions", "urn:xmpp:reactions:0")
            .is_some_and(|r| r.get("id") == Some(b1_xm_sid.as_str()) && r.elements().count() == 0)
    })
    .await;

    d.call(json!({"op": "mx_redact", "event_id": rb_mx})).await;
    let (_, m) = native_wait(&mut alice, "bob's un-react", |_, m| {
        m.content().replaces == Some(rb)
    })
    .await;
    assert!(
        matches!(m.content().nested_part.body, PartBody::Null)
            && m.content().in_reply_to == Some(d1)
    );
    d.xm_wait("bob's un-react", |e| {
        e.find("reactions", "urn:xmpp:reactions:0")
            .is_some_and(|r| r.get("id") == Some(d1_sid.as_str()) && r.elements().count() == 0)
    })
    .await;

    d.call(json!({"op": "xm_send", "xml": format!("<message to='{muc}' type='groupchat' id='d5'><reactions xmlns='urn:xmpp:reactions:0' id='{a1_xm_sid}'/><store xmlns='urn:xmpp:hints'/></message>")})).await;
    let (_, m) = native_wait(&mut alice, "dave's un-react", |_, m| {
        m.content().replaces == Some(rd)
    })
    .await;
    assert_eq!(m.content().in_reply_to, Some(a1));
    d.mx_wait("dave's un-react", |e| {
        e["type"] == "m.room.redaction"
            && (e["redacts"] == rd_mx.as_str() || e["content"]["redacts"] == rd_mx.as_str())
    })
    .await;

    // --- attachments -----------------------------------------------------------------------
    // Matrix → MIMI: the bridge downloads the upload, re-encrypts it with AES-128-GCM and
    // stores it as an asset of m.example; the native client fetches it through its gateway.
    let picture: Vec<u8> = (0..3000u32).map(|i| (i * 31 % 256) as u8).collect();
    let mxc = d.call(json!({"op": "mx_upload", "data": b64(&picture), "content_type": "image/png", "filename": "pic.png"})).await["content_uri"].as_str().unwrap().to_owned();
    d.call(json!({"op": "mx_send", "content": {"msgtype": "m.image", "body": "pic.png", "url": mxc, "info": {"mimetype": "image/png", "size": picture.len()}}})).await;
    let (_, m) = native_wait(&mut alice, "bob's picture", |_, m| {
        matches!(m.content().nested_part.body, PartBody::External(_))
    })
    .await;
    let PartBody::External(x) = &m.content().nested_part.body else {
        unreachable!()
    };
    assert_eq!(
        (x.content_type.as_str(), x.filename.as_str(), x.enc_alg),
        ("image/png", "pic.png", 1)
    );
    let ct = alice.api.download(&x.url).await.unwrap();
    assert_eq!(
        builder::open_attachment(x, &ct).unwrap(),
        picture,
        "the native client decrypts bob's picture"
    );
    let x = d
        .xm_wait("bob's picture", |e| body(e).contains("pic.png"))
        .await;
    assert!(
        body(&x).starts_with("[attachment"),
        "XMPP gets a placeholder (its bridge has no upload service): {}",
        body(&x)
    );
    // MIMI → Matrix: the bridge fetches the native client's asset from a.example, opens it
    // and uploads it to the homeserver.
    let doc: Vec<u8> = b"native attachment bytes".repeat(50);
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
        .send(ROOM, |s, r, salt| {
            builder::attachment(s, r, salt, part, false)
        })
        .await
        .unwrap();
    let e = d
        .mx_wait("alice's attachment", |e| {
            e["content"]["msgtype"] == "m.file" && e["content"]["body"] == "native.pdf"
        })
        .await;
    let got = d
        .call(json!({"op": "mx_download", "mxc": e["content"]["url"]}))
        .await;
    assert_eq!(
        unb64(got["data"].as_str().unwrap()),
        doc,
        "Matrix downloads what the native client attached"
    );

    // --- deletes ---------------------------------------------------------------------------
    alice
        .send(ROOM, |s, r, salt| builder::delete(s, r, salt, a1))
        .await
        .unwrap();
    d.mx_wait("alice's delete", |e| {
        e["type"] == "m.room.redaction"
            && (e["redacts"] == a1_mx.as_str() || e["content"]["redacts"] == a1_mx.as_str())
    })
    .await;
    d.xm_wait("alice's delete", |e| {
        child_attr(e, "retract", "urn:xmpp:message-retract:1", "id").as_deref()
            == Some(a1_xm_sid.as_str())
    })
    .await;

    d.call(json!({"op": "mx_redact", "event_id": b1_mx})).await;
    let (_, m) = native_wait(&mut alice, "bob's delete", |_, m| {
        m.content().replaces == Some(b1) && matches!(m.content().nested_part.body, PartBody::Null)
    })
    .await;
    assert_eq!(m.content().extensions.sender_uri(), Some(bob.as_str()));
    d.xm_wait("bob's delete", |e| {
        child_attr(e, "retract", "urn:xmpp:message-retract:1", "id").as_deref()
            == Some(b1_xm_sid.as_str())
    })
    .await;

    d.call(json!({"op": "xm_send", "xml": format!("<message to='{muc}' type='groupchat' id='d6'><retract xmlns='urn:xmpp:message-retract:1' id='{d1_sid}'/><fallback xmlns='urn:xmpp:fallback:0' for='urn:xmpp:message-retract:1'/><body>retracted</body><store xmlns='urn:xmpp:hints'/></message>")})).await;
    native_wait(&mut alice, "dave's delete", |_, m| {
        m.content().replaces == Some(d1) && matches!(m.content().nested_part.body, PartBody::Null)
    })
    .await;
    d.mx_wait("dave's delete", |e| {
        e["type"] == "m.room.redaction"
            && (e["redacts"] == d1_mx.as_str() || e["content"]["redacts"] == d1_mx.as_str())
    })
    .await;

    // The native view agrees: the three first messages are deleted, no reaction is left.
    let view = alice.views.get(ROOM).unwrap();
    for first in [a1, b1, d1] {
        let e = view.get(&first).unwrap();
        assert!(e.deleted && e.reactions.is_empty(), "{e:?}");
    }
}
