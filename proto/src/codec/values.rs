//! Value types with their own encoding: opaque bytes, fixed 32-byte values, URIs and UTF-8 text.

use super::*;
use std::fmt;

/// `opaque data<V>`: bytes, shown as lowercase hex in JSON.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Bytes(pub Vec<u8>);

impl fmt::Debug for Bytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "h'{}'", hex::encode(&self.0))
    }
}

impl From<Vec<u8>> for Bytes {
    fn from(v: Vec<u8>) -> Self {
        Self(v)
    }
}

impl From<&[u8]> for Bytes {
    fn from(v: &[u8]) -> Self {
        Self(v.to_vec())
    }
}

impl std::ops::Deref for Bytes {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.0
    }
}

impl Wire for Bytes {
    fn encode(&self, out: &mut Vec<u8>) {
        write_opaque(out, &self.0);
    }
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(Self(r.opaque(MAX_VECTOR_LEN)?.to_vec()))
    }
}

impl serde::Serialize for Bytes {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(&self.0))
    }
}

impl<'de> serde::Deserialize<'de> for Bytes {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        hex::decode(&s)
            .map(Self)
            .map_err(|e| serde::de::Error::custom(format!("invalid hex: {e}")))
    }
}

/// A fixed 32-octet value (`uint8 x[32]`), hex in JSON.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Fixed32(pub [u8; 32]);

impl fmt::Debug for Fixed32 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "h'{}'", hex::encode(self.0))
    }
}

impl Wire for Fixed32 {
    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.0);
    }
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        <[u8; 32]>::decode(r).map(Self)
    }
}

impl serde::Serialize for Fixed32 {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(self.0))
    }
}

impl<'de> serde::Deserialize<'de> for Fixed32 {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        let mut out = [0u8; 32];
        hex::decode_to_slice(&s, &mut out)
            .map_err(|e| serde::de::Error::custom(format!("expected 64 hex characters: {e}")))?;
        Ok(Self(out))
    }
}

/// Longest URI accepted anywhere (IdentifierUri, Uri): 4 KiB.
pub const MAX_URI_LEN: usize = 4096;

/// `opaque uri<V>` holding a UTF-8 URI (IdentifierUri, Uri). Empty means "none" where the draft
/// allows an absent URI.
#[derive(
    Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Default, serde::Serialize, serde::Deserialize,
)]
#[serde(transparent)]
pub struct Uri(pub String);

impl fmt::Debug for Uri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.0)
    }
}

impl fmt::Display for Uri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<&str> for Uri {
    fn from(s: &str) -> Self {
        Self(s.to_owned())
    }
}

impl From<String> for Uri {
    fn from(s: String) -> Self {
        Self(s)
    }
}

impl Uri {
    /// The URI text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The host (provider domain) of a `mimi://host/...` or `https://host/...` URI.
    pub fn domain(&self) -> Option<&str> {
        let rest = self.0.split_once("://")?.1;
        let host = rest.split(['/', '?', '#']).next()?;
        let host = host.rsplit_once('@').map_or(host, |(_, h)| h);
        let host = match host.rsplit_once(':') {
            Some((h, port)) if port.bytes().all(|b| b.is_ascii_digit()) => h,
            _ => host,
        };
        (!host.is_empty()).then_some(host)
    }
}

impl Wire for Uri {
    fn encode(&self, out: &mut Vec<u8>) {
        write_opaque(out, self.0.as_bytes());
    }
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let at = r.pos();
        let raw = r.opaque(MAX_URI_LEN)?;
        std::str::from_utf8(raw)
            .map(|s| Self(s.to_owned()))
            .map_err(|_| r.err(at, ErrorKind::InvalidUtf8))
    }
}

/// The draft's undefined `string` type: `opaque string<V>` holding UTF-8 (decision D8).
#[derive(Clone, PartialEq, Eq, Hash, Default, serde::Serialize, serde::Deserialize)]
#[serde(transparent)]
pub struct Utf8(pub String);

impl fmt::Debug for Utf8 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.0)
    }
}

impl From<&str> for Utf8 {
    fn from(s: &str) -> Self {
        Self(s.to_owned())
    }
}

impl Wire for Utf8 {
    fn encode(&self, out: &mut Vec<u8>) {
        write_opaque(out, self.0.as_bytes());
    }
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let at = r.pos();
        let raw = r.opaque(MAX_VECTOR_LEN)?;
        std::str::from_utf8(raw)
            .map(|s| Self(s.to_owned()))
            .map_err(|_| r.err(at, ErrorKind::InvalidUtf8))
    }
}
