//! Shared checks for the fuzz targets.

use mimi_proto::codec::Wire;

/// Decodes `data` as `T`; whatever is accepted must re-encode to exactly `data`.
pub fn roundtrip<T: Wire>(data: &[u8]) {
    if let Ok(v) = T::from_bytes(data) {
        assert_eq!(
            v.to_bytes(),
            data,
            "{} re-encoding differs",
            std::any::type_name::<T>()
        );
    }
}

/// Runs an adapter over fuzzed bytes: whatever parses is translated to MIMI (every message
/// produced must decode strictly) and back; nothing may panic.
pub fn translate<A: mimi_adapters::Adapter>(adapter: &A, data: &[u8]) {
    use mimi_adapters::{Context, IdMap, UriScheme};
    let Ok(native) = adapter.parse(data) else {
        return;
    };
    let _ = adapter.parse(&adapter.serialize(&native));
    let uris = UriScheme::new("gw.example");
    let mut ids = IdMap::new();
    let mut n = 0u8;
    let mut salt = move || {
        n = n.wrapping_add(1);
        [n; 16]
    };
    let mut ctx = Context {
        room: "mimi://gw.example/r/fuzz",
        native_room: "!fuzz:matrix.test",
        ids: &mut ids,
        uris: &uris,
        salt: &mut salt,
        media: None,
    };
    let Ok(out) = adapter.to_mimi(&mut ctx, "mimi://gw.example/u/fuzzer", &native) else {
        return;
    };
    for m in &out.items {
        let again = mimi_content::Message::decode(m.bytes().to_vec())
            .expect("a message the adapter built decodes strictly");
        let _ = adapter.from_mimi(&mut ctx, "mimi://gw.example/u/fuzzer", &again);
    }
}
