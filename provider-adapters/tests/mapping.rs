//! Every row of the mapping table, both directions, on the provider samples in `samples/` and
//! on messages written here; round trips where the mapping is lossless.

#![allow(clippy::unwrap_used, clippy::wrong_self_convention)]

use std::collections::HashMap;

use mimi_adapters::attachments::{Media, MediaError, matrix_encrypt, wire_encrypt};
use mimi_adapters::matrix::Matrix;
use mimi_adapters::text::text_of;
use mimi_adapters::wire::Wire;
use mimi_adapters::xmpp::Xmpp;
use mimi_adapters::{Adapter, Context, IdMap, Provider, Translated, UriScheme};
use mimi_content::builder;
use mimi_content::status::{MessageStatusReport, Status};
use mimi_content::{Disposition, Message, MessageId, PartBody};
use mimi_proto::wire_pb as pb;
use serde_json::json;

const ROOM: &str = "mimi://gw.example/r/lobby";
const ALICE: &str = "mimi://a.example/u/alice";

fn sample(path: &str) -> Vec<u8> {
    std::fs::read(format!(
        "{}/tests/samples/{path}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
}

/// In-memory media: URL → bytes.
#[derive(Default)]
struct Mem {
    files: HashMap<String, Vec<u8>>,
    n: usize,
}

impl Media for Mem {
    fn fetch(&mut self, url: &str) -> Result<Vec<u8>, MediaError> {
        self.files
            .get(url)
            .cloned()
            .ok_or_else(|| MediaError::Transfer(format!("404 {url}")))
    }
    fn store_mimi(&mut self, ct: &[u8]) -> Result<String, MediaError> {
        self.n += 1;
        let u = format!("https://gw.example/assets/{}", self.n);
        self.files.insert(u.clone(), ct.to_vec());
        Ok(u)
    }
    fn store_native(&mut self, b: &[u8], _: &str, _: &str) -> Result<String, MediaError> {
        self.n += 1;
        let u = format!("mxc://hs.test/{}", self.n);
        self.files.insert(u.clone(), b.to_vec());
        Ok(u)
    }
}

struct World {
    ids: IdMap,
    uris: UriScheme,
    salt: u8,
    media: Option<Mem>,
    native_room: String,
}

impl World {
    fn new(native_room: &str) -> Self {
        Self {
            ids: IdMap::new(),
            uris: UriScheme::new("gw.example"),
            salt: 0,
            media: None,
            native_room: native_room.into(),
        }
    }

    fn with<R>(&mut self, f: impl FnOnce(&mut Context<'_>) -> R) -> R {
        let mut n = self.salt;
        let mut salt = || {
            n = n.wrapping_add(1);
            [n; 16]
        };
        let media: Option<&mut dyn Media> = self.media.as_mut().map(|m| m as &mut dyn Media);
        let mut ctx = Context {
            room: ROOM,
            native_room: &self.native_room,
            ids: &mut self.ids,
            uris: &self.uris,
            salt: &mut salt,
            media,
        };
        let r = f(&mut ctx);
        self.salt = n;
        r
    }

    fn to_mimi<A: Adapter>(
        &mut self,
        a: &A,
        sender: &str,
        native: &A::Native,
    ) -> Translated<Message> {
        self.with(|c| a.to_mimi(c, sender, native).unwrap())
    }

    fn from_mimi<A: Adapter>(&mut self, a: &A, msg: &Message) -> Translated<A::Native> {
        let sender = msg.content().extensions.sender_uri().unwrap().to_owned();
        self.with(|c| a.from_mimi(c, &sender, msg).unwrap())
    }
}

fn one(t: &Translated<Message>) -> &Message {
    assert_eq!(
        t.items.len(),
        1,
        "expected one message, got {:?} (lost {:?})",
        t.items.len(),
        t.lost
    );
    &t.items[0]
}

fn plain(m: &Message) -> String {
    text_of(&m.content().nested_part).unwrap().plain
}

fn markdown(m: &Message) -> Option<String> {
    text_of(&m.content().nested_part).unwrap().markdown
}

fn id(m: &Message) -> MessageId {
    m.id().unwrap()
}

// ------------------------------------------------------------------------------------------
// Matrix

fn mx() -> Matrix {
    Matrix::new("hs.test")
}

fn mx_event(w: &mut World, path: &str) -> Translated<Message> {
    let ev = mx().parse(&sample(path)).unwrap();
    let sender = mx().user_of(&w.uris, ev["sender"].as_str().unwrap());
    w.to_mimi(&mx(), &sender, &ev)
}

#[test]
fn matrix_samples_into_mimi() {
    let mut w = World::new("!jEsUZKDJdhlrceRyVU:example.org");
    // Text + HTML + mention.
    let t = mx_event(&mut w, "matrix/01-text-html.json");
    let hello = one(&t).clone();
    assert_eq!(plain(&hello), "Hello Bob! This is **important**");
    assert_eq!(
        markdown(&hello).unwrap(),
        "Hello [Bob](mimi://gw.example/u/mx-_40bob_3aexample.org)! This is **important**"
    );
    assert_eq!(
        hello.content().extensions.sender_uri(),
        Some("mimi://gw.example/u/mx-_40alice_3aexample.org")
    );
    // Notice and emote.
    let arr: Vec<serde_json::Value> =
        serde_json::from_slice(&sample("matrix/02-notice-and-emote.json")).unwrap();
    let notice = w.to_mimi(&mx(), ALICE, &arr[0]);
    assert!(notice.lost.iter().any(|l| l.feature == "notice"));
    let emote = w.to_mimi(&mx(), ALICE, &arr[1]);
    assert!(plain(one(&emote)).starts_with("/me "));
    // Reaction, then its redaction = un-react.
    let r = mx_event(&mut w, "matrix/06-reaction.json");
    let reaction = one(&r).clone();
    assert_eq!(
        reaction.content().nested_part.disposition,
        Disposition::Reaction
    );
    assert_eq!(reaction.content().in_reply_to, Some(id(&hello)));
    let un = mx_event(&mut w, "matrix/10-redaction.json");
    let un = one(&un);
    assert_eq!(un.content().replaces, Some(id(&reaction)));
    assert_eq!(un.content().in_reply_to, Some(id(&hello)));
    assert!(matches!(un.content().nested_part.body, PartBody::Null));
    // Edit: replaces the first version.
    let e = mx_event(&mut w, "matrix/07-edit-replace.json");
    let edit = one(&e);
    assert_eq!(edit.content().replaces, Some(id(&hello)));
    assert_eq!(plain(edit), "I really like *chocolate* cake");
    assert_eq!(markdown(edit).unwrap(), "I really like *chocolate* cake");
    // Reply with a mention in m.mentions only.
    let rp = mx_event(&mut w, "matrix/08-reply-with-mention.json");
    assert_eq!(one(&rp).content().in_reply_to, Some(id(&hello)));
    // A thread: the root's ID is the topic; the falling-back reply is not a reply.
    let arr: Vec<serde_json::Value> =
        serde_json::from_slice(&sample("matrix/09-thread.json")).unwrap();
    let root = w.to_mimi(&mx(), ALICE, &arr[0]);
    let root = one(&root).clone();
    let inner = w.to_mimi(&mx(), ALICE, &arr[1]);
    let inner = one(&inner);
    assert_eq!(inner.content().topic_id, id(&root).as_bytes().to_vec());
    assert_eq!(inner.content().in_reply_to, None);
    // Attachments without a bridge's media access: placeholder + reported.
    for f in [
        "matrix/03-image-unencrypted.json",
        "matrix/04-image-encrypted-file.json",
    ] {
        let t = mx_event(&mut w, f);
        assert!(plain(one(&t)).starts_with("[m.image"), "{f}");
        assert!(t.lost.iter().any(|l| l.feature == "attachment"), "{f}");
    }
}

#[test]
fn matrix_encrypted_attachment_is_reencrypted_to_aes_gcm() {
    let mut w = World::new("!r:hs.test");
    let mut media = Mem::default();
    let (ct, mut file) = matrix_encrypt(b"picture bytes");
    file["url"] = json!("mxc://hs.test/pic");
    media.files.insert("mxc://hs.test/pic".into(), ct);
    w.media = Some(media);
    let ev = json!({"type": "m.room.message", "event_id": "$img", "content": {"msgtype": "m.image", "body": "pic.png", "file": file, "info": {"mimetype": "image/png"}}});
    let t = w.to_mimi(&mx(), ALICE, &ev);
    let m = one(&t);
    let PartBody::External(x) = &m.content().nested_part.body else {
        panic!("{:?}", m.content())
    };
    assert_eq!(
        (x.enc_alg, x.content_type.as_str(), x.filename.as_str()),
        (1, "image/png", "pic.png")
    );
    let stored = w.media.as_mut().unwrap().fetch(&x.url).unwrap();
    assert_eq!(
        builder::open_attachment(x, &stored).unwrap(),
        b"picture bytes"
    );
    // And back to Matrix: fetched, opened and uploaded to the media repository.
    let back = w.from_mimi(&mx(), m);
    let content = &back.items[0]["content"];
    assert_eq!(content["msgtype"], "m.image");
    let mxc = content["url"].as_str().unwrap();
    assert_eq!(
        w.media.as_mut().unwrap().fetch(mxc).unwrap(),
        b"picture bytes"
    );
}

#[test]
fn mimi_into_matrix_and_back() {
    let mut w = World::new("!r:hs.test");
    let m = mx();
    let bob = w.uris.user(Provider::Matrix, "@bob:hs.test");
    let hello = builder::markdown(ALICE, ROOM, [1; 16], &format!("hi [@Bob]({bob}) **now**"))
        .build()
        .unwrap();
    let out = w.from_mimi(&m, &hello);
    let ev = &out.items[0];
    assert_eq!(ev["type"], "m.room.message");
    assert_eq!(
        ev["content"]["formatted_body"],
        "hi <a href=\"https://matrix.to/#/@bob:hs.test\">@Bob</a> <strong>now</strong>"
    );
    assert_eq!(ev["content"]["body"], "hi @Bob now");
    assert_eq!(
        ev["content"]["m.mentions"]["user_ids"],
        json!(["@bob:hs.test"])
    );
    // The homeserver assigns the event ID; the bridge records it.
    let txn = ev["txn_id"].as_str().unwrap().to_owned();
    assert!(w.ids.alias(Provider::Matrix, "!r:hs.test", &txn, "$hello"));
    // Reply, edit, reaction, un-react, delete reference $hello.
    let reply = builder::reply(ALICE, ROOM, [2; 16], id(&hello), "again")
        .build()
        .unwrap();
    assert_eq!(
        w.from_mimi(&m, &reply).items[0]["content"]["m.relates_to"]["m.in_reply_to"]["event_id"],
        "$hello"
    );
    let edit = builder::edit(
        ALICE,
        ROOM,
        [3; 16],
        id(&hello),
        builder::plain_part("hi all"),
    )
    .build()
    .unwrap();
    let e = &w.from_mimi(&m, &edit).items[0];
    assert_eq!(
        e["content"]["m.relates_to"],
        json!({"rel_type": "m.replace", "event_id": "$hello"})
    );
    assert_eq!(e["content"]["m.new_content"]["body"], "hi all");
    assert_eq!(e["content"]["body"], "* hi all");
    let like = builder::reaction(ALICE, ROOM, [4; 16], id(&hello), "👍")
        .build()
        .unwrap();
    let r = w.from_mimi(&m, &like);
    assert_eq!(
        r.items[0]["content"]["m.relates_to"],
        json!({"rel_type": "m.annotation", "event_id": "$hello", "key": "👍"})
    );
    w.ids.alias(
        Provider::Matrix,
        "!r:hs.test",
        r.items[0]["txn_id"].as_str().unwrap(),
        "$like",
    );
    let unlike = builder::unreact(ALICE, ROOM, [5; 16], id(&like), id(&hello))
        .build()
        .unwrap();
    assert_eq!(
        w.from_mimi(&m, &unlike).items[0],
        json!({"type": "m.room.redaction", "txn_id": &id(&unlike).to_hex()[..32], "redacts": "$like", "content": {"redacts": "$like"}})
    );
    let del = builder::delete(ALICE, ROOM, [6; 16], id(&hello))
        .build()
        .unwrap();
    assert_eq!(w.from_mimi(&m, &del).items[0]["redacts"], "$hello");
    // Expiry cannot be honoured: reported.
    let exp = builder::text(ALICE, ROOM, [7; 16], "soon gone")
        .expires_after_read(60)
        .build()
        .unwrap();
    assert!(
        w.from_mimi(&m, &exp)
            .lost
            .iter()
            .any(|l| l.feature == "expires")
    );
    // Round trip: the Matrix event of a MIMI text back into MIMI keeps the text and mention.
    let again = w.to_mimi(&m, ALICE, &out.items[0]);
    assert_eq!(
        markdown(one(&again)).unwrap(),
        format!("hi [@Bob]({bob}) **now**")
    );
}

// ------------------------------------------------------------------------------------------
// XMPP

fn xm() -> Xmpp {
    Xmpp::new("mimi.xmpp.test")
}

fn xml(w: &mut World, sender: &str, s: &str) -> Translated<Message> {
    let st = xm().parse(s.as_bytes()).unwrap();
    w.to_mimi(&xm(), sender, &st)
}

#[test]
fn xmpp_samples_into_mimi() {
    let mut w = World::new("engineering@muc.example.com");
    let alice = w.uris.user(Provider::Xmpp, "alice@example.com");
    let t = xml(
        &mut w,
        &alice,
        &String::from_utf8(sample("xmpp/01-groupchat-body-styling-ids.xml")).unwrap(),
    );
    let first = one(&t).clone();
    assert_eq!(
        markdown(&first).unwrap(),
        "Hi everyone, we just shipped release 2.0. **Good work**! Run `make deploy` and see *notes*"
    );
    // All three IDs name it.
    for i in [
        "de305d54-75b4-431b-adb2-eb6b9e546013",
        "5f3dbc5e-e1d3-4077-a492-693f3769c7ad",
    ] {
        assert_eq!(
            w.ids
                .mimi_of(Provider::Xmpp, "engineering@muc.example.com", i),
            Some(id(&first))
        );
    }
    // Reactions: the complete set is diffed; then an empty set withdraws both.
    let bob = w.uris.user(Provider::Xmpp, "bob@example.com");
    let r = xml(
        &mut w,
        &bob,
        &String::from_utf8(sample("xmpp/02-reaction.xml")).unwrap(),
    );
    assert_eq!(r.items.len(), 2);
    assert!(
        r.items
            .iter()
            .all(|m| m.content().in_reply_to == Some(id(&first)))
    );
    let r2 = xml(
        &mut w,
        &bob,
        "<message type='groupchat' id='x2'><reactions xmlns='urn:xmpp:reactions:0' id='5f3dbc5e-e1d3-4077-a492-693f3769c7ad'><reaction>🐢</reaction></reactions></message>",
    );
    assert_eq!(r2.items.len(), 1, "only 👋 is withdrawn");
    assert!(matches!(
        r2.items[0].content().nested_part.body,
        PartBody::Null
    ));
    let r3 = xml(
        &mut w,
        &bob,
        "<message type='groupchat' id='x3'><reactions xmlns='urn:xmpp:reactions:0' id='5f3dbc5e-e1d3-4077-a492-693f3769c7ad'/></message>",
    );
    assert_eq!(r3.items.len(), 1, "🐢 is withdrawn");
    // Reply with fallback: the quote is stripped.
    let mut w1 = World::new("anna@example.com");
    let anna = w1.uris.user(Provider::Xmpp, "anna@example.com");
    let orig = one(&xml(
        &mut w1,
        &anna,
        "<message type='chat' id='message-id1'><body>We should bake a cake</body></message>",
    ))
    .clone();
    let rep = xml(
        &mut w1,
        &anna,
        &String::from_utf8(sample("xmpp/05-reply-with-fallback.xml")).unwrap(),
    );
    assert_eq!(plain(one(&rep)), "Great idea!");
    assert_eq!(one(&rep).content().in_reply_to, Some(id(&orig)));
    // Correction and retraction.
    let bad = one(&xml(
        &mut w1,
        &anna,
        "<message type='chat' id='bad1'><body>typo</body></message>",
    ))
    .clone();
    let corr = xml(
        &mut w1,
        &anna,
        &String::from_utf8(sample("xmpp/04-correction.xml")).unwrap(),
    );
    assert_eq!(one(&corr).content().replaces, Some(id(&bad)));
    let gone = one(&xml(
        &mut w1,
        &anna,
        "<message type='chat' id='wrong-recipient-1'><body>oops</body></message>",
    ))
    .clone();
    let ret = xml(
        &mut w1,
        &anna,
        &String::from_utf8(sample("xmpp/06-retraction.xml")).unwrap(),
    );
    assert_eq!(one(&ret).content().replaces, Some(id(&gone)));
    // Mentions (XEP-0372) become links.
    let men = xml(
        &mut w1,
        &anna,
        &String::from_utf8(sample("xmpp/09-mentions.xml")).unwrap(),
    );
    assert_eq!(
        markdown(one(&men)).unwrap(),
        "Kudos to [@Alice Smith](mimi://gw.example/u/xm-alice_40example.com) for making the release happen!"
    );
    // Attachments without media: placeholders, reported.
    for f in [
        "xmpp/07-encrypted-file-sharing.xml",
        "xmpp/08-oob-and-omemo-aesgcm.xml",
    ] {
        let t = xml(&mut w1, &anna, &String::from_utf8(sample(f)).unwrap());
        assert!(t.lost.iter().any(|l| l.feature == "attachment"), "{f}");
    }
    // Receipts, chat states, ephemeral, thread.
    let all = mimi_adapters::xml::Element::parse(
        &String::from_utf8(sample("xmpp/10-receipts-chatstate-ephemeral.xml")).unwrap(),
        "jabber:client",
    )
    .unwrap();
    let st: Vec<_> = all.elements().cloned().collect();
    let mut w2 = World::new("romeo@montague.example");
    let m1 = one(&xml(
        &mut w2,
        &anna,
        "<message id='the-msg-1'><body>x</body></message>",
    ))
    .clone();
    let rd = w2.to_mimi(&xm(), &anna, &st[1]);
    let PartBody::Single(s) = &one(&rd).content().nested_part.body else {
        panic!()
    };
    assert_eq!(
        MessageStatusReport::decode(&s.content).unwrap().statuses,
        vec![(id(&m1), Status::Read)]
    );
    let typing = w2.to_mimi(&xm(), &anna, &st[2]);
    assert!(typing.items.is_empty() && typing.lost[0].feature == "typing");
    let eph = w2.to_mimi(&xm(), &anna, &st[3]);
    assert_eq!(
        one(&eph).content().expires.map(|e| (e.relative, e.time)),
        Some((true, 604_800))
    );
    let thr = w2.to_mimi(&xm(), &anna, &st[4]);
    assert_eq!(
        one(&thr).content().topic_id,
        b"0e3141cd80894871a68e6fe6b1ec56fa".to_vec()
    );
}

#[test]
fn mimi_into_xmpp_and_back() {
    let mut w = World::new("room@conference.xmpp.test");
    let x = xm();
    let carol = w.uris.user(Provider::Xmpp, "carol@xmpp.test");
    let hello = builder::markdown(
        ALICE,
        ROOM,
        [1; 16],
        &format!("hey [@carol]({carol}), **look**"),
    )
    .build()
    .unwrap();
    let st = &w.from_mimi(&x, &hello).items[0];
    let xmls = st.to_xml("");
    assert!(xmls.contains("<body>hey @carol, *look*</body>"), "{xmls}");
    assert!(xmls.contains("<reference xmlns=\"urn:xmpp:reference:0\" begin=\"4\" end=\"10\" type=\"mention\" uri=\"xmpp:carol@xmpp.test\"/>"), "{xmls}");
    // The MUC reflects it with a stanza-id: references then use it.
    let origin = st.get("id").unwrap().to_owned();
    w.ids.alias(
        Provider::Xmpp,
        "room@conference.xmpp.test",
        &origin,
        "muc-1",
    );
    let reply = builder::reply(ALICE, ROOM, [2; 16], id(&hello), "and")
        .build()
        .unwrap();
    let rs = w.from_mimi(&x, &reply).items[0].to_xml("");
    assert!(
        rs.contains("<reply xmlns=\"urn:xmpp:reply:0\" id=\"muc-1\"/>")
            && rs.contains("&gt; hey @carol, look\nand"),
        "{rs}"
    );
    let edit = builder::edit(
        ALICE,
        ROOM,
        [3; 16],
        id(&hello),
        builder::plain_part("fixed"),
    )
    .build()
    .unwrap();
    let es = w.from_mimi(&x, &edit).items[0].to_xml("");
    assert!(
        es.contains(&format!(
            "<replace xmlns=\"urn:xmpp:message-correct:0\" id=\"{origin}\"/>"
        )),
        "XEP-0308 uses the origin-id: {es}"
    );
    let like = builder::reaction(ALICE, ROOM, [4; 16], id(&hello), "👍")
        .build()
        .unwrap();
    let heart = builder::reaction(ALICE, ROOM, [5; 16], id(&hello), "❤️")
        .build()
        .unwrap();
    w.from_mimi(&x, &like);
    let hs = w.from_mimi(&x, &heart).items[0].to_xml("");
    assert!(
        hs.contains("<reaction>❤️</reaction>") && hs.contains("<reaction>👍</reaction>"),
        "the full set: {hs}"
    );
    let unlike = builder::unreact(ALICE, ROOM, [6; 16], id(&like), id(&hello))
        .build()
        .unwrap();
    let us = w.from_mimi(&x, &unlike).items[0].to_xml("");
    assert!(
        us.contains("<reaction>❤️</reaction>") && !us.contains("👍"),
        "{us}"
    );
    let del = builder::delete(ALICE, ROOM, [7; 16], id(&hello))
        .build()
        .unwrap();
    assert!(
        w.from_mimi(&x, &del).items[0]
            .to_xml("")
            .contains("<retract xmlns=\"urn:xmpp:message-retract:1\" id=\"muc-1\"/>")
    );
    let eph = builder::text(ALICE, ROOM, [8; 16], "brief")
        .expires_after_read(30)
        .build()
        .unwrap();
    assert!(
        w.from_mimi(&x, &eph).items[0]
            .to_xml("")
            .contains("timer=\"30\"")
    );
    // Round trip of the first stanza: same markdown and mention.
    let mut back = World::new("room@conference.xmpp.test");
    let t = back.to_mimi(&x, ALICE, st);
    assert_eq!(
        markdown(one(&t)).unwrap(),
        format!("hey [@carol]({carol}), **look**")
    );
}

// ------------------------------------------------------------------------------------------
// Wire

fn wr() -> Wire {
    Wire::new("wire.example.com")
}

#[test]
fn wire_samples_into_mimi() {
    let mut w = World::new("conv@wire.example.com");
    let w_ = wr();
    let bob = w.uris.user(Provider::Wire, "bob@wire.example.com");
    // The quoted original.
    let orig = pb::GenericMessage {
        message_id: "3d2c1b0a-9f8e-4d7c-6b5a-493827161504".into(),
        content: Some(pb::generic_message::Content::Text(pb::Text {
            content: "hello".into(),
            ..Default::default()
        })),
        unknown_strategy: None,
    };
    let orig = one(&w.to_mimi(&w_, &bob, &orig)).clone();
    let m = w_.parse(&sample("wire/01-text-mention-quote.bin")).unwrap();
    let t = w.to_mimi(&w_, &bob, &m);
    let msg = one(&t);
    assert_eq!(
        markdown(msg).unwrap(),
        "[@Bob](mimi://gw.example/u/wr-6b0a3f2e-1c4d-4b8e-9a7f-2e5d1c3b4a60_40wire.example.com) see above 👆"
    );
    assert_eq!(msg.content().in_reply_to, Some(id(&orig)));
    // Reaction (one slot), then un-react.
    let r = w.to_mimi(
        &w_,
        &bob,
        &w_.parse(&sample("wire/02-reaction.bin")).unwrap(),
    );
    let heart = one(&r).clone();
    assert_eq!(plain(&heart), "❤️");
    let again = pb::GenericMessage {
        message_id: "x".into(),
        content: Some(pb::generic_message::Content::Reaction(pb::Reaction {
            emoji: Some("👍".into()),
            message_id: "3d2c1b0a-9f8e-4d7c-6b5a-493827161504".into(),
            legal_hold_status: None,
        })),
        unknown_strategy: None,
    };
    let swap = w.to_mimi(&w_, &bob, &again);
    assert_eq!(swap.items.len(), 2, "un-react ❤️, react 👍");
    assert_eq!(swap.items[0].content().replaces, Some(id(&heart)));
    let un = w.to_mimi(
        &w_,
        &bob,
        &w_.parse(&sample("wire/03-unreact.bin")).unwrap(),
    );
    assert_eq!(un.items.len(), 1);
    assert!(matches!(
        un.items[0].content().nested_part.body,
        PartBody::Null
    ));
    // Edit and delete target the first version.
    let e = w.to_mimi(&w_, &bob, &w_.parse(&sample("wire/04-edit.bin")).unwrap());
    assert_eq!(one(&e).content().replaces, Some(id(&orig)));
    let d = w.to_mimi(
        &w_,
        &bob,
        &w_.parse(&sample("wire/05-delete-and-hide.bin")).unwrap(),
    );
    assert_eq!(one(&d).content().replaces, Some(id(&orig)));
    // Ephemeral text: relative expiry in seconds, rounded up.
    let eph = w.to_mimi(
        &w_,
        &bob,
        &w_.parse(&sample("wire/07-ephemeral-text.bin")).unwrap(),
    );
    assert!(one(&eph).content().expires.is_some_and(|e| e.relative));
    // Receipts, knock + location fallbacks, composite.
    let rc = w.to_mimi(
        &w_,
        &bob,
        &w_.parse(&sample("wire/08-confirmation-read.bin")).unwrap(),
    );
    assert!(rc.items.len() <= 1);
    let kl = w.to_mimi(
        &w_,
        &bob,
        &w_.parse(&sample("wire/09-knock-and-location.bin")).unwrap(),
    );
    assert!(!kl.lost.is_empty());
    let cb = w.to_mimi(
        &w_,
        &bob,
        &w_.parse(&sample("wire/10-composite-buttons.bin")).unwrap(),
    );
    assert!(cb.lost.iter().any(|l| l.feature == "buttons"));
    // An uploaded asset without media access is a placeholder; with it, re-encrypted.
    let a = w.to_mimi(
        &w_,
        &bob,
        &w_.parse(&sample("wire/06-asset-uploaded.bin")).unwrap(),
    );
    assert!(a.lost.iter().any(|l| l.feature == "attachment"));
}

#[test]
fn wire_asset_is_reencrypted() {
    let mut w = World::new("conv@wire.example.com");
    let (blob, key, sha) = wire_encrypt(b"doc bytes");
    let mut media = Mem::default();
    media
        .files
        .insert("wire-asset://wire.example.com/asset-1".into(), blob);
    w.media = Some(media);
    let a = pb::Asset {
        original: Some(pb::asset::Original {
            mime_type: "application/pdf".into(),
            size: 9,
            name: Some("doc.pdf".into()),
            ..Default::default()
        }),
        status: Some(pb::asset::Status::Uploaded(pb::asset::RemoteData {
            otr_key: key.to_vec(),
            sha256: sha.to_vec(),
            asset_id: Some("asset-1".into()),
            asset_domain: Some("wire.example.com".into()),
            ..Default::default()
        })),
        ..Default::default()
    };
    let gm = pb::GenericMessage {
        message_id: "u1".into(),
        content: Some(pb::generic_message::Content::Asset(a)),
        unknown_strategy: None,
    };
    let t = w.to_mimi(&wr(), ALICE, &gm);
    let PartBody::External(x) = &one(&t).content().nested_part.body else {
        panic!()
    };
    let ct = w.media.as_mut().unwrap().fetch(&x.url).unwrap();
    assert_eq!(builder::open_attachment(x, &ct).unwrap(), b"doc bytes");
}

#[test]
fn mimi_into_wire_and_back() {
    let mut w = World::new("conv@wire.example.com");
    let w_ = wr();
    let bob = w.uris.user(Provider::Wire, "b0b@wire.example.com");
    let hello = builder::markdown(ALICE, ROOM, [1; 16], &format!("😀 [@Bob]({bob}) hi"))
        .build()
        .unwrap();
    let gm = w.from_mimi(&w_, &hello).items[0].clone();
    let Some(pb::generic_message::Content::Text(t)) = &gm.content else {
        panic!()
    };
    assert_eq!(t.content, "😀 @Bob hi");
    assert_eq!(
        (t.mentions[0].start, t.mentions[0].length),
        (3, 4),
        "UTF-16 offsets"
    );
    assert_eq!(gm.message_id, mimi_adapters::wire::uuid_of(&id(&hello)));
    let reply = builder::reply(ALICE, ROOM, [2; 16], id(&hello), "re")
        .build()
        .unwrap();
    let Some(pb::generic_message::Content::Text(rt)) = &w.from_mimi(&w_, &reply).items[0].content
    else {
        panic!()
    };
    assert_eq!(rt.quote.as_ref().unwrap().quoted_message_id, gm.message_id);
    let edit = builder::edit(ALICE, ROOM, [3; 16], id(&hello), builder::plain_part("bye"))
        .build()
        .unwrap();
    assert!(
        matches!(&w.from_mimi(&w_, &edit).items[0].content, Some(pb::generic_message::Content::Edited(e)) if e.replacing_message_id == gm.message_id)
    );
    let like = builder::reaction(ALICE, ROOM, [4; 16], id(&hello), "👍")
        .build()
        .unwrap();
    assert!(
        matches!(&w.from_mimi(&w_, &like).items[0].content, Some(pb::generic_message::Content::Reaction(r)) if r.emoji.as_deref() == Some("👍"))
    );
    let unlike = builder::unreact(ALICE, ROOM, [5; 16], id(&like), id(&hello))
        .build()
        .unwrap();
    assert!(
        matches!(&w.from_mimi(&w_, &unlike).items[0].content, Some(pb::generic_message::Content::Reaction(r)) if r.emoji.as_deref() == Some(""))
    );
    let eph = builder::text(ALICE, ROOM, [6; 16], "brief")
        .expires_after_read(2)
        .build()
        .unwrap();
    assert!(
        matches!(&w.from_mimi(&w_, &eph).items[0].content, Some(pb::generic_message::Content::Ephemeral(e)) if e.expire_after_millis == 2000)
    );
    let del = builder::delete(ALICE, ROOM, [7; 16], id(&hello))
        .build()
        .unwrap();
    assert!(
        matches!(&w.from_mimi(&w_, &del).items[0].content, Some(pb::generic_message::Content::Deleted(d)) if d.message_id == gm.message_id)
    );
    // Round trip: Wire text back into MIMI keeps the mention.
    let mut back = World::new("conv@wire.example.com");
    let t = back.to_mimi(&w_, ALICE, &gm);
    assert_eq!(plain(one(&t)), "😀 @Bob hi");
    assert!(
        markdown(one(&t))
            .unwrap()
            .contains("wr-b0b_40wire.example.com")
    );
}

#[test]
fn unknown_targets_degrade_and_are_reported() {
    let mut w = World::new("!r:hs.test");
    let ev = json!({"type": "m.room.message", "event_id": "$e", "content": {"msgtype": "m.text", "body": "edited", "m.new_content": {"msgtype": "m.text", "body": "edited"}, "m.relates_to": {"rel_type": "m.replace", "event_id": "$never"}}});
    let t = w.to_mimi(&mx(), ALICE, &ev);
    assert_eq!(one(&t).content().replaces, None, "sent as a new message");
    assert!(t.lost.iter().any(|l| l.feature == "edit"));
    let r = json!({"type": "m.reaction", "event_id": "$r", "content": {"m.relates_to": {"rel_type": "m.annotation", "event_id": "$never", "key": "x"}}});
    let t = w.to_mimi(&mx(), ALICE, &r);
    assert!(t.items.is_empty() && t.lost[0].feature == "reaction");
}

#[test]
fn invalid_payloads_are_refused_with_a_reason() {
    assert_eq!(
        mx().parse(b"{}").unwrap_err().to_string(),
        "invalid matrix payload: an event needs a string \"type\""
    );
    assert!(
        xm().parse(b"<presence/>")
            .unwrap_err()
            .to_string()
            .contains("expected a <message/> stanza")
    );
    assert!(
        wr().parse(b"\xff\xff")
            .unwrap_err()
            .to_string()
            .starts_with("invalid wire payload")
    );
}

mod roundtrip {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        /// Plain text and replies are lossless through every provider and back.
        #[test]
        fn plain_text_and_replies_survive_every_provider(text in "[a-zA-Z0-9 ,.!?'()\u{e9}\u{1F600}-\u{1F64F}]{1,60}") {
            let text = text.trim().to_owned();
            prop_assume!(!text.is_empty());
            for p in [Provider::Matrix, Provider::Xmpp, Provider::Wire] {
                let mut w = World::new("room@conference.xmpp.test");
                let first = builder::text(ALICE, ROOM, [9; 16], "first").build().unwrap();
                let msg = builder::reply(ALICE, ROOM, [1; 16], id(&first), &text).build().unwrap();
                let back = match p {
                    Provider::Matrix => {
                        let a = w.from_mimi(&mx(), &first).items[0].clone();
                        let mut other = World::new("room@conference.xmpp.test");
                        other.to_mimi(&mx(), ALICE, &json!({"type": "m.room.message", "event_id": a["txn_id"], "content": a["content"]}));
                        let n = w.from_mimi(&mx(), &msg).items[0].clone();
                        let ev = json!({"type": "m.room.message", "event_id": "$x", "content": n["content"]});
                        other.to_mimi(&mx(), ALICE, &ev)
                    }
                    Provider::Xmpp => {
                        let a = w.from_mimi(&xm(), &first).items[0].clone();
                        let mut other = World::new("room@conference.xmpp.test");
                        other.to_mimi(&xm(), ALICE, &a);
                        let n = w.from_mimi(&xm(), &msg).items[0].clone();
                        other.to_mimi(&xm(), ALICE, &n)
                    }
                    _ => {
                        let a = w.from_mimi(&wr(), &first).items[0].clone();
                        let mut other = World::new("room@conference.xmpp.test");
                        other.to_mimi(&wr(), ALICE, &a);
                        let n = w.from_mimi(&wr(), &msg).items[0].clone();
                        other.to_mimi(&wr(), ALICE, &n)
                    }
                };
                prop_assert_eq!(back.items.len(), 1);
                prop_assert!(back.lost.is_empty(), "{:?}: {:?}", p, back.lost);
                prop_assert_eq!(plain(&back.items[0]), text.clone(), "{:?}", p);
                prop_assert!(back.items[0].content().in_reply_to.is_some(), "{:?}: the reply keeps its target", p);
            }
        }
    }
}
