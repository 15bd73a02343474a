//! Decoding a `GroupInfoRequest` body never panics; accepted input re-encodes byte-exact.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| mimi_fuzz::roundtrip::<
    mimi_proto::messages::GroupInfoRequest,
>(data));
