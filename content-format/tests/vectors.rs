//! The content draft's example messages: decode strictly, re-encode byte-exact, and compute the
//! message IDs the draft states.

// Test helpers panic on purpose: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::path::Path;

use mimi_content::{Message, MessageId, PartBody, codec};

fn vectors() -> Vec<(String, Vec<u8>, MessageId)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/vectors");
    let ids: BTreeMap<String, String> =
        serde_json::from_str(&std::fs::read_to_string(dir.join("message-ids.json")).unwrap())
            .unwrap();
    assert_eq!(ids.len(), 14, "the draft has 14 example messages");
    ids.into_iter()
        .map(|(name, id)| {
            let bytes = std::fs::read(dir.join(format!("{name}.cbor"))).unwrap();
            (name, bytes, id.parse().unwrap())
        })
        .collect()
}

#[track_caller]
fn check(name: &str, bytes: &[u8], id: &MessageId) {
    let msg = Message::decode(bytes.to_vec()).unwrap_or_else(|e| panic!("{name}: {e}"));
    assert_eq!(
        codec::encode(msg.content()).unwrap(),
        bytes,
        "{name}: re-encoding differs"
    );
    assert_eq!(msg.id().unwrap(), *id, "{name}: message ID");
    let json = mimi_content::json::message_to_json(&msg);
    assert_eq!(json["messageId"], id.to_hex(), "{name}: JSON messageId");
    let back =
        mimi_content::json::content_from_json(&json).unwrap_or_else(|e| panic!("{name}: {e}"));
    assert_eq!(
        codec::encode(&back).unwrap(),
        bytes,
        "{name}: JSON round trip"
    );
    assert!(mimi_content::diag::diag(bytes).is_ok());
}

#[test]
fn every_draft_vector() {
    for (name, bytes, id) in vectors() {
        check(&name, &bytes, &id);
    }
}

#[test]
fn vectors_reference_each_other() {
    let v: BTreeMap<String, (Vec<u8>, MessageId)> =
        vectors().into_iter().map(|(n, b, i)| (n, (b, i))).collect();
    let content = |n: &str| Message::decode(v[n].0.clone()).unwrap().content().clone();
    let id = |n: &str| v[n].1;
    assert_eq!(content("reply").in_reply_to, Some(id("original")));
    assert_eq!(content("reaction").in_reply_to, Some(id("original")));
    assert_eq!(content("edit").replaces, Some(id("reply")));
    assert_eq!(content("delete").replaces, Some(id("reply")));
    assert_eq!(content("unlike").replaces, Some(id("reaction")));
    assert!(matches!(content("delete").nested_part.body, PartBody::Null));
}

#[test]
fn implied_part_indices_and_cid() {
    let v = vectors();
    let (_, bytes, _) = v.iter().find(|(n, ..)| n == "multipart-3").unwrap();
    let msg = Message::decode(bytes.clone()).unwrap();
    let root = &msg.content().nested_part;
    let parts = root.parts();
    assert_eq!(parts[0].0, 0);
    assert!(parts.len() > 3);
    assert!(root.depth() <= 4);
    // Every cid reference in an HTML or markdown part resolves to a Single or External part.
    for (_, p) in &parts {
        if let PartBody::Single(s) = &p.body {
            let text = String::from_utf8_lossy(&s.content);
            for (at, _) in text.match_indices("cid:") {
                let end = text[at..]
                    .find(['"', ')', '\'', ' '])
                    .map_or(text.len(), |e| at + e);
                let uri = &text[at..end];
                assert!(root.resolve_cid(uri).is_some(), "{uri} resolves");
            }
        }
    }
}
