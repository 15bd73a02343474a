//! Shared checks for the fuzz targets.

use mimi_proto::codec::Wire;

/// Decodes `data` as `T`; whatever is accepted must re-encode to exactly `data`.
pub fn roundtrip<T: Wire>(data: &[u8]) {
    if let Ok(v) = T::from_bytes(data) {
        assert_eq!(v.to_bytes(), data, "{} re-encoding differs", std::any::type_name::<T>());
    }
}
