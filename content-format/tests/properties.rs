//! Property tests: arbitrary valid messages round-trip byte-exact through CBOR and JSON;
//! arbitrary or mutated bytes never panic, and whatever decodes re-encodes to the same bytes.

// Test helpers panic on purpose: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use mimi_content::{Message, codec, json, status::MessageStatusReport, testing};
use proptest::prelude::*;

fn vectors() -> Vec<Vec<u8>> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/vectors");
    let mut out: Vec<Vec<u8>> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.path().extension().is_some_and(|x| x == "cbor"))
        .map(|e| std::fs::read(e.path()).unwrap())
        .collect();
    out.sort();
    out
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn valid_messages_round_trip(c in testing::any_content()) {
        let bytes = codec::encode(&c).expect("generated messages are valid");
        let back = codec::decode(&bytes).expect("what we encode we decode");
        // NaN != NaN, so compare encodings rather than values.
        let again = codec::encode(&back).unwrap();
        prop_assert_eq!(&again, &bytes);
        let j = json::content_to_json(&back);
        let from_json = json::content_from_json(&j).unwrap();
        prop_assert_eq!(codec::encode(&from_json).unwrap(), bytes);
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        if let Ok(m) = Message::decode(bytes.clone()) {
            let again = codec::encode(m.content()).unwrap();
            prop_assert_eq!(&again, &bytes);
        }
        let _ = MessageStatusReport::decode(&bytes);
        let _ = mimi_content::diag::diag(&bytes);
    }

    #[test]
    fn mutated_vectors_never_panic(which in 0usize..14, edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>(), 0u8..3), 1..6)) {
        let mut bytes = vectors()[which].clone();
        for (at, byte, op) in edits {
            if bytes.is_empty() { break; }
            let i = at.index(bytes.len());
            match op {
                0 => bytes[i] = byte,
                1 => { bytes.remove(i); }
                _ => bytes.insert(i, byte),
            }
        }
        if let Ok(m) = Message::decode(bytes.clone()) {
            // Deterministic encoding is unique: anything accepted re-encodes identically.
            prop_assert_eq!(codec::encode(m.content()).unwrap(), bytes);
        }
    }
}
