//! Errors of the content-format boundary.
//!
//! Every decoding failure is a [`DecodeError`]: *where* (a [`Path`] into the structure and the
//! byte offset at which the offending item starts) and *which rule* was broken ([`Rule`]).

use std::fmt;

/// One step of a [`Path`] into a MIMI content message.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Segment {
    /// A named field of the draft's CDDL (`salt`, `nestedPart`, `contentType`, ...).
    Field(&'static str),
    /// An element of an array.
    Index(usize),
    /// The value under an integer map key.
    IntKey(i64),
    /// The value under a text map key.
    TextKey(String),
    /// The value under a byte-string map key (only inside extension values).
    BytesKey(Vec<u8>),
    /// The key (not the value) of the n-th map entry.
    KeyOf(usize),
}

/// Where in the message a problem is, e.g. `nestedPart.parts[1].contentType`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Path(pub Vec<Segment>);

impl Path {
    /// The root of the message.
    pub fn root() -> Self {
        Self(Vec::new())
    }

    /// This path extended by one segment.
    #[must_use]
    pub fn join(&self, seg: Segment) -> Self {
        let mut v = self.0.clone();
        v.push(seg);
        Self(v)
    }
}

impl fmt::Display for Path {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            return f.write_str("message");
        }
        for (i, seg) in self.0.iter().enumerate() {
            match seg {
                Segment::Field(name) => {
                    if i > 0 {
                        f.write_str(".")?;
                    }
                    f.write_str(name)?;
                }
                Segment::Index(n) => write!(f, "[{n}]")?,
                Segment::IntKey(k) => write!(f, "[{k}]")?,
                Segment::TextKey(k) => write!(f, "[{k:?}]")?,
                Segment::BytesKey(k) => write!(f, "[h'{}']", hex::encode(k))?,
                Segment::KeyOf(n) => write!(f, "<key of entry {n}>")?,
            }
        }
        Ok(())
    }
}

/// The rule a rejected encoding breaks.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Rule {
    /// The input ended inside an item.
    #[error("input ends early: {needed} more byte(s) needed")]
    Truncated {
        /// How many more bytes the item announced.
        needed: u64,
    },
    /// Bytes follow the single top-level item.
    #[error("{count} trailing byte(s) after the message")]
    TrailingBytes {
        /// Number of extra bytes.
        count: usize,
    },
    /// An integer, length or tag argument is not in its shortest form (RFC 8949 §4.2.1).
    #[error("argument {value} is not encoded in its shortest form (deterministic CBOR)")]
    NonShortestArgument {
        /// The argument value.
        value: u64,
    },
    /// A float is wider than needed to represent its value exactly (RFC 8949 §4.2.1).
    #[error("float {value} is not encoded in its shortest exact form (deterministic CBOR)")]
    NonShortestFloat {
        /// The float value, as text.
        value: String,
    },
    /// An indefinite-length string, array or map (forbidden in deterministic CBOR).
    #[error("indefinite-length items are not allowed (deterministic CBOR)")]
    IndefiniteLength,
    /// A stray "break" stop code.
    #[error("unexpected break stop code")]
    UnexpectedBreak,
    /// Additional information 28..30, reserved by RFC 8949.
    #[error("reserved additional information value {0}")]
    ReservedAdditionalInfo(u8),
    /// A two-byte simple value below 32 (not well-formed per RFC 8949 §3.3).
    #[error("simple value {0} must use the one-byte form")]
    BadSimpleValue(u8),
    /// The item has the wrong CBOR type for this field.
    #[error("expected {expected}, found {found}")]
    WrongType {
        /// What the draft's CDDL allows here.
        expected: &'static str,
        /// What the input holds.
        found: &'static str,
    },
    /// An array has the wrong number of elements.
    #[error("expected an array of {expected} elements, found {found}")]
    WrongArrayLength {
        /// What the draft's CDDL allows here.
        expected: &'static str,
        /// The element count in the input.
        found: u64,
    },
    /// A text string is not valid UTF-8.
    #[error("text string is not valid UTF-8")]
    InvalidUtf8,
    /// An integer outside ±(2^53−1) (draft-ietf-mimi-content §6.2).
    #[error("integer {value} is outside the allowed range ±(2^53-1)")]
    IntegerOutOfRange {
        /// The integer (widened so negative 64-bit CBOR values fit).
        value: i128,
    },
    /// A bignum (tag 2 or 3): must be a plain integer when it fits, and integers are limited
    /// to ±(2^53−1).
    #[error("bignum tag {tag} is not allowed (integers are limited to ±(2^53-1))")]
    Bignum {
        /// 2 or 3.
        tag: u64,
    },
    /// An unsigned field is larger than its CDDL `.size` allows.
    #[error("value {value} does not fit in {bits} bits")]
    TooLarge {
        /// The value.
        value: u64,
        /// The field width.
        bits: u32,
    },
    /// A byte string has the wrong fixed size (salt 16, message ID 32, ...).
    #[error("expected exactly {expected} bytes, found {found}")]
    WrongSize {
        /// Required size.
        expected: usize,
        /// Size in the input.
        found: usize,
    },
    /// A string is longer than the draft allows.
    #[error("{found} bytes exceed the limit of {max}")]
    TooLong {
        /// The limit.
        max: usize,
        /// The length in the input.
        found: usize,
    },
    /// A NaN other than the canonical half-width quiet NaN `0xf97e00`.
    #[error("only the canonical NaN 0xf97e00 is allowed")]
    NonCanonicalNan,
    /// Map keys are not in bytewise order of their encodings (RFC 8949 §4.2.1).
    #[error("map keys are not sorted bytewise by their encoding (deterministic CBOR)")]
    UnsortedKeys,
    /// The same map key appears twice.
    #[error("duplicate map key")]
    DuplicateKey,
    /// A map key of a type the draft does not allow here.
    #[error("map key of type {found} is not allowed here (allowed: {allowed})")]
    BadKeyType {
        /// The key's type.
        found: &'static str,
        /// What is allowed.
        allowed: &'static str,
    },
    /// An extension text key outside 1..255 octets.
    #[error("extension text key of {len} bytes; must be 1..255")]
    BadTextKeyLength {
        /// Key length.
        len: usize,
    },
    /// NestedParts nested more than 4 levels deep.
    #[error("nested parts go deeper than {max} levels")]
    PartsTooDeep {
        /// The limit (4).
        max: usize,
    },
    /// Extension values with tags, maps or arrays more than 4 levels deep.
    #[error("extensions nest tags, maps or arrays deeper than {max} levels")]
    ExtensionsTooDeep {
        /// The limit (4).
        max: usize,
    },
    /// More than 1024 body parts.
    #[error("more than {max} body parts")]
    TooManyParts {
        /// The limit (1024).
        max: usize,
    },
    /// A cardinality other than 0..3.
    #[error("unknown cardinality {0}")]
    UnknownCardinality(u64),
    /// A partSemantics other than 0..2.
    #[error("unknown partSemantics {0}")]
    UnknownPartSemantics(u64),
    /// A disposition above 255.
    #[error("disposition {0} is outside 0..255")]
    DispositionOutOfRange(u64),
    /// A MultiPart with fewer than two parts.
    #[error("a MultiPart needs at least 2 parts, found {found}")]
    TooFewParts {
        /// Number of parts.
        found: usize,
    },
    /// An ExternalPart with encAlg 0 (unencrypted) whose key, nonce or aad is not empty.
    #[error("{field} must be empty when encAlg is 0 (unencrypted)")]
    KeyMaterialWithoutEncryption {
        /// `key`, `nonce` or `aad`.
        field: &'static str,
    },
    /// Key or nonce length does not match a known AEAD algorithm.
    #[error("{field} of {found} bytes does not match encAlg {alg} (expects {expected})")]
    AeadParameterSize {
        /// `key` or `nonce`.
        field: &'static str,
        /// The IANA AEAD algorithm.
        alg: u16,
        /// Expected length.
        expected: usize,
        /// Length in the input.
        found: usize,
    },
    /// contentHash length does not match the hash algorithm.
    #[error("contentHash of {found} bytes does not match hashAlg {alg} (expects {expected})")]
    HashSize {
        /// The IANA named-information hash algorithm.
        alg: u8,
        /// Expected length.
        expected: usize,
        /// Length in the input.
        found: usize,
    },
    /// senderUri or roomUri (extension keys 1 and 2) is not a text string.
    #[error("extension key {key} ({name}) must be a text string")]
    UriNotText {
        /// 1 or 2.
        key: i64,
        /// `senderUri` or `roomUri`.
        name: &'static str,
    },
    /// A message-status value above 255.
    #[error("status {0} is outside 0..255")]
    StatusOutOfRange(u64),
    /// More items than this decoder accepts (bounded before allocation).
    #[error("{found} items exceed the limit of {max}")]
    TooManyItems {
        /// The limit.
        max: usize,
        /// Count announced in the input.
        found: u64,
    },
}

/// A MIMI content message (or message-status report) failed strict decoding.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path} (byte {offset}): {rule}")]
pub struct DecodeError {
    /// Where in the structure.
    pub path: Path,
    /// Byte offset of the offending item in the input.
    pub offset: usize,
    /// What is wrong.
    pub rule: Rule,
}

/// A message could not be encoded because it breaks one of the draft's rules.
///
/// Types such as [`crate::MessageId`] make most invalid messages unrepresentable; this covers
/// the rest (limits, extension values).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot encode {path}: {rule}")]
pub struct EncodeError {
    /// Where in the structure.
    pub path: Path,
    /// What is wrong.
    pub rule: Rule,
}

/// The message ID cannot be computed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum IdError {
    /// The message carries no senderUri (extension key 1) and none was given.
    #[error("message has no senderUri (extension 1); the message ID needs it")]
    MissingSenderUri,
    /// The message carries no roomUri (extension key 2) and none was given.
    #[error("message has no roomUri (extension 2); the message ID needs it")]
    MissingRoomUri,
    /// A URI longer than 65535 bytes cannot be length-prefixed with 16 bits.
    #[error("{which} is {len} bytes; the message ID allows at most 65535")]
    UriTooLong {
        /// `senderUri` or `roomUri`.
        which: &'static str,
        /// Its length.
        len: usize,
    },
}
