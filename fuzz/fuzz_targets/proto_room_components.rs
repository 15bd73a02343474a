//! Every type of the registry (first byte selects it): decoding never panics, accepted input
//! re-encodes byte-exact, and its JSON encodes back to the same bytes.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Some((&sel, rest)) = data.split_first() else {
        return;
    };
    let types = mimi_proto::registry::TYPES;
    let info = &types[usize::from(sel) % types.len()];
    if let Ok(json) = info.decode_json(rest) {
        assert_eq!(
            info.encode_json(&json)
                .expect("JSON of a decoded value encodes"),
            rest,
            "{}",
            info.name
        );
    }
});
