//! Wire GenericMessage samples (binary protobuf, with their text-format originals beside
//! them): each decodes with our schema to the values of its `.txtpb`, and re-encodes to the
//! same bytes (so no field of the samples falls outside the schema).

// Test helpers panic on purpose: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use mimi_proto::wire_pb::{self as pb, generic_message::Content};
use prost::Message as _;

fn sample(name: &str) -> (Vec<u8>, pb::GenericMessage) {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/vectors/wire")
        .join(format!("{name}.bin"));
    let bytes = std::fs::read(path).unwrap();
    let msg = pb::GenericMessage::decode(bytes.as_slice()).unwrap();
    (bytes, msg)
}

#[test]
fn every_sample_round_trips_byte_exact() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/vectors/wire");
    let mut n = 0;
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "bin") {
            let bytes = std::fs::read(&p).unwrap();
            let msg = pb::GenericMessage::decode(bytes.as_slice()).unwrap();
            assert_eq!(msg.encode_to_vec(), bytes, "{}", p.display());
            assert!(
                msg.content.is_some(),
                "{}: content outside the schema",
                p.display()
            );
            n += 1;
        }
    }
    assert_eq!(n, 10);
}

#[test]
fn values_match_the_text_format() {
    let (_, m) = sample("01-text-mention-quote");
    assert_eq!(m.message_id, "8f5a3c1e-2b7d-4e9a-9c1f-0d3b6a7e5f21");
    let Some(Content::Text(t)) = m.content else {
        panic!()
    };
    assert_eq!(t.content, "@Bob see above 👆");
    assert_eq!((t.mentions[0].start, t.mentions[0].length), (0, 4));
    let Some(pb::mention::MentionType::QualifiedUserId(q)) = &t.mentions[0].mention_type else {
        panic!()
    };
    assert_eq!(
        (q.id.as_str(), q.domain.as_str()),
        ("6b0a3f2e-1c4d-4b8e-9a7f-2e5d1c3b4a60", "wire.example.com")
    );
    let quote = t.quote.unwrap();
    assert_eq!(
        quote.quoted_message_id,
        "3d2c1b0a-9f8e-4d7c-6b5a-493827161504"
    );
    assert_eq!(quote.quoted_message_sha256.unwrap()[..2], [0x9a, 0xb1]);
    assert_eq!(t.expects_read_confirmation, Some(true));
    assert_eq!(
        t.legal_hold_status,
        Some(pb::LegalHoldStatus::Disabled as i32)
    );

    let (_, m) = sample("02-reaction");
    let Some(Content::Reaction(r)) = m.content else {
        panic!()
    };
    assert_eq!(r.emoji.as_deref(), Some("❤️"));
    let (_, m) = sample("03-unreact");
    let Some(Content::Reaction(r)) = m.content else {
        panic!()
    };
    assert_eq!(r.emoji.as_deref(), Some(""));
    let (_, m) = sample("04-edit");
    let Some(Content::Edited(e)) = m.content else {
        panic!()
    };
    assert_eq!(
        e.replacing_message_id,
        "3d2c1b0a-9f8e-4d7c-6b5a-493827161504"
    );
    assert!(
        matches!(e.content, Some(pb::message_edit::Content::Text(ref t)) if t.content.starts_with("But soft"))
    );
    let (_, m) = sample("05-delete-and-hide");
    assert!(
        matches!(m.content, Some(Content::Deleted(ref d)) if d.message_id == "3d2c1b0a-9f8e-4d7c-6b5a-493827161504")
    );
    let (_, m) = sample("06-asset-uploaded");
    let Some(Content::Asset(a)) = m.content else {
        panic!()
    };
    let o = a.original.unwrap();
    assert_eq!(
        (o.mime_type.as_str(), o.size, o.name.as_deref()),
        ("image/jpeg", 3_032_449, Some("summit.jpg"))
    );
    assert!(
        matches!(o.meta_data, Some(pb::asset::original::MetaData::Image(ref i)) if i.width == 4096 && i.height == 2160)
    );
    let Some(pb::asset::Status::Uploaded(up)) = a.status else {
        panic!()
    };
    assert_eq!(up.otr_key.len(), 32);
    assert_eq!(up.asset_domain.as_deref(), Some("wire.example.com"));
    assert_eq!(up.encryption, Some(pb::EncryptionAlgorithm::AesGcm as i32));
    let (_, m) = sample("07-ephemeral-text");
    let Some(Content::Ephemeral(e)) = m.content else {
        panic!()
    };
    assert_eq!(e.expire_after_millis, 30_000);
    let (_, m) = sample("08-confirmation-read");
    let Some(Content::Confirmation(c)) = m.content else {
        panic!()
    };
    assert_eq!(c.r#type, pb::confirmation::Type::Read as i32);
    assert_eq!(
        c.more_message_ids,
        vec!["a1b2c3d4-0000-4000-8000-000000000004".to_owned()]
    );
    let (_, m) = sample("09-knock-and-location");
    assert!(matches!(m.content, Some(Content::Knock(ref k)) if !k.hot_knock));
    let (_, m) = sample("10-composite-buttons");
    let Some(Content::Composite(c)) = m.content else {
        panic!()
    };
    assert_eq!(c.items.len(), 3);
    assert!(
        matches!(c.items[1].content, Some(pb::composite::item::Content::Button(ref b)) if b.id == "btn-yes")
    );
}
