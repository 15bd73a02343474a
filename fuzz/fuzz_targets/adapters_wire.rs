//! Wire GenericMessage protobuf through the Wire adapter (and back): never panics; what it
//! builds decodes strictly.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    mimi_fuzz::translate(&mimi_adapters::wire::Wire::new("wire.example"), data);
});
