//! Strict MIMI content decoding: never panics, and whatever is accepted re-encodes to the same
//! bytes (deterministic CBOR has exactly one encoding per value).
#![no_main]

use libfuzzer_sys::fuzz_target;
use mimi_content::{Message, codec, status::MessageStatusReport};

fuzz_target!(|data: &[u8]| {
    if let Ok(m) = Message::decode(data.to_vec()) {
        assert_eq!(
            codec::encode(m.content()).expect("accepted messages encode"),
            data
        );
        let _ = m.id();
        let _ = mimi_content::render::plain_text(m.content());
        let j = mimi_content::json::content_to_json(m.content());
        let back = mimi_content::json::content_from_json(&j).expect("JSON mapping round-trips");
        assert_eq!(codec::encode(&back).expect("encodes"), data);
    }
    if let Ok(r) = MessageStatusReport::decode(data) {
        assert_eq!(r.encode(), data);
    }
    let _ = mimi_content::diag::diag(data);
});
