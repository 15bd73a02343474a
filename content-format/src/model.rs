//! The data model of draft-ietf-mimi-content-08 (`mimiContent`, `NestedPart` and friends).

use std::fmt;
use std::str::FromStr;

use crate::cbor::Value;

/// Maximum NestedPart nesting depth (the root part is level 1).
pub const MAX_PART_DEPTH: usize = 4;
/// Maximum number of NestedParts in one message (containers included).
pub const MAX_PARTS: usize = 1024;
/// Maximum topicId length in octets.
pub const MAX_TOPIC_ID_LEN: usize = 4096;
/// Maximum depth of tags, maps and arrays in the extensions (the map itself is level 1).
pub const MAX_EXTENSION_DEPTH: usize = 4;
/// Extension key of the sender's user URI.
pub const EXT_SENDER_URI: i64 = 1;
/// Extension key of the room URI.
pub const EXT_ROOM_URI: i64 = 2;
/// Media type of plain text.
pub const TEXT_PLAIN: &str = "text/plain;charset=utf-8";
/// Media type of MIMI's GitHub-flavoured markdown subset.
pub const TEXT_MARKDOWN_GFM_MIMI: &str = "text/markdown;variant=GFM-MIMI";
/// Media type of the MIMI content container itself.
pub const MEDIA_TYPE: &str = "application/mimi-content";

/// A 32-octet MIMI message ID: a hash-algorithm octet followed by 31 octets of hash.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MessageId(pub [u8; 32]);

impl MessageId {
    /// The IANA named-information hash algorithm of this ID (1 = SHA-256).
    pub fn hash_alg(&self) -> u8 {
        self.0[0]
    }

    /// The raw 32 octets.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// 64 lowercase hex characters.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
}

impl fmt::Debug for MessageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MessageId({})", self.to_hex())
    }
}

impl fmt::Display for MessageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

/// A string is not 64 hex characters.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a message ID is 64 hex characters (32 bytes)")]
pub struct ParseMessageIdError;

impl FromStr for MessageId {
    type Err = ParseMessageIdError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut out = [0u8; 32];
        hex::decode_to_slice(s, &mut out).map_err(|_| ParseMessageIdError)?;
        Ok(Self(out))
    }
}

impl TryFrom<&[u8]> for MessageId {
    type Error = ParseMessageIdError;

    fn try_from(b: &[u8]) -> Result<Self, Self::Error> {
        <[u8; 32]>::try_from(b)
            .map(Self)
            .map_err(|_| ParseMessageIdError)
    }
}

/// `Expiration = [relative: bool, time: uint .size 4]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Expiration {
    /// Seconds after the receiver reads the message (`true`) or UNIX seconds (`false`).
    pub relative: bool,
    /// Seconds.
    pub time: u32,
}

/// An extensions-map key: a (positive or negative) integer or a 1..255-octet text string.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ExtensionKey {
    /// Integer key (positive: IANA registry; negative: private use).
    Int(i64),
    /// Text key (private use).
    Text(String),
}

impl ExtensionKey {
    pub(crate) fn to_value(&self) -> Value {
        match self {
            Self::Int(i) => Value::Integer(*i),
            Self::Text(t) => Value::Text(t.clone()),
        }
    }
}

impl fmt::Display for ExtensionKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Int(i) => write!(f, "{i}"),
            Self::Text(t) => write!(f, "{t:?}"),
        }
    }
}

/// The `mimiExtensions` map, kept in deterministic key order, unknown keys preserved.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Extensions {
    /// Entries sorted bytewise by the encoding of their keys; keys unique.
    entries: Vec<(ExtensionKey, Value)>,
}

impl Extensions {
    /// An empty map.
    pub fn new() -> Self {
        Self::default()
    }

    /// Extensions with the sender and room URIs (keys 1 and 2), as the message ID needs.
    pub fn with_uris(sender_uri: &str, room_uri: &str) -> Self {
        let mut e = Self::new();
        e.insert(
            ExtensionKey::Int(EXT_SENDER_URI),
            Value::Text(sender_uri.to_owned()),
        );
        e.insert(
            ExtensionKey::Int(EXT_ROOM_URI),
            Value::Text(room_uri.to_owned()),
        );
        e
    }

    pub(crate) fn from_sorted(entries: Vec<(ExtensionKey, Value)>) -> Self {
        Self { entries }
    }

    /// The senderUri (key 1), if present and text.
    pub fn sender_uri(&self) -> Option<&str> {
        match self.get(&ExtensionKey::Int(EXT_SENDER_URI)) {
            Some(Value::Text(t)) => Some(t),
            _ => None,
        }
    }

    /// The roomUri (key 2), if present and text.
    pub fn room_uri(&self) -> Option<&str> {
        match self.get(&ExtensionKey::Int(EXT_ROOM_URI)) {
            Some(Value::Text(t)) => Some(t),
            _ => None,
        }
    }

    /// The value under `key`.
    pub fn get(&self, key: &ExtensionKey) -> Option<&Value> {
        self.entries.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    /// Sets `key` to `value`, returning the previous value. Keeps deterministic order.
    pub fn insert(&mut self, key: ExtensionKey, value: Value) -> Option<Value> {
        if let Some(slot) = self.entries.iter_mut().find(|(k, _)| *k == key) {
            return Some(std::mem::replace(&mut slot.1, value));
        }
        let enc = key.to_value().to_cbor();
        let at = self
            .entries
            .partition_point(|(k, _)| k.to_value().to_cbor() < enc);
        self.entries.insert(at, (key, value));
        None
    }

    /// Removes `key`.
    pub fn remove(&mut self, key: &ExtensionKey) -> Option<Value> {
        let at = self.entries.iter().position(|(k, _)| k == key)?;
        Some(self.entries.remove(at).1)
    }

    /// Entries in deterministic order.
    pub fn iter(&self) -> impl Iterator<Item = (&ExtensionKey, &Value)> {
        self.entries.iter().map(|(k, v)| (k, v))
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the map is empty.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// The disposition of a part (MIMI Content Disposition registry). Unknown values are kept and
/// treated as [`Disposition::Render`] by [`Disposition::effective`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Disposition {
    /// 0
    Unspecified,
    /// 1
    Render,
    /// 2
    Reaction,
    /// 3
    Profile,
    /// 4
    Inline,
    /// 5
    Icon,
    /// 6
    Attachment,
    /// 7
    Session,
    /// 8
    Preview,
    /// 9..255, kept as received.
    Unknown(u8),
}

impl Disposition {
    /// Names of the registered dispositions, indexed by code.
    pub const NAMES: [&'static str; 9] = [
        "unspecified",
        "render",
        "reaction",
        "profile",
        "inline",
        "icon",
        "attachment",
        "session",
        "preview",
    ];

    /// From the wire value.
    pub fn from_code(code: u8) -> Self {
        match code {
            0 => Self::Unspecified,
            1 => Self::Render,
            2 => Self::Reaction,
            3 => Self::Profile,
            4 => Self::Inline,
            5 => Self::Icon,
            6 => Self::Attachment,
            7 => Self::Session,
            8 => Self::Preview,
            n => Self::Unknown(n),
        }
    }

    /// The wire value.
    pub fn code(self) -> u8 {
        match self {
            Self::Unspecified => 0,
            Self::Render => 1,
            Self::Reaction => 2,
            Self::Profile => 3,
            Self::Inline => 4,
            Self::Icon => 5,
            Self::Attachment => 6,
            Self::Session => 7,
            Self::Preview => 8,
            Self::Unknown(n) => n,
        }
    }

    /// The registered name, if any.
    pub fn name(self) -> Option<&'static str> {
        Self::NAMES.get(usize::from(self.code())).copied()
    }

    /// From a registered name.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::NAMES
            .iter()
            .position(|n| *n == name)
            .map(|i| Self::from_code(i as u8))
    }

    /// How a receiver treats it: unknown values act as `render` (draft §9.1).
    pub fn effective(self) -> Self {
        match self {
            Self::Unknown(_) => Self::Render,
            d => d,
        }
    }
}

/// How the parts of a [`MultiPart`] relate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PartSemantics {
    /// 0: the receiver picks one (≈ multipart/alternative).
    ChooseOne,
    /// 1: all or nothing (≈ multipart/related).
    SingleUnit,
    /// 2: best effort, each part on its own (≈ multipart/mixed).
    ProcessAll,
}

impl PartSemantics {
    /// The wire value.
    pub fn code(self) -> u8 {
        match self {
            Self::ChooseOne => 0,
            Self::SingleUnit => 1,
            Self::ProcessAll => 2,
        }
    }

    /// From the wire value.
    pub fn from_code(code: u64) -> Option<Self> {
        match code {
            0 => Some(Self::ChooseOne),
            1 => Some(Self::SingleUnit),
            2 => Some(Self::ProcessAll),
            _ => None,
        }
    }

    /// The draft's name.
    pub fn name(self) -> &'static str {
        match self {
            Self::ChooseOne => "chooseOne",
            Self::SingleUnit => "singleUnit",
            Self::ProcessAll => "processAll",
        }
    }

    /// From the draft's name.
    pub fn from_name(s: &str) -> Option<Self> {
        [Self::ChooseOne, Self::SingleUnit, Self::ProcessAll]
            .into_iter()
            .find(|p| p.name() == s)
    }
}

/// `SinglePart`: inline content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SinglePart {
    /// IANA media type with parameters.
    pub content_type: String,
    /// The content octets.
    pub content: Vec<u8>,
}

/// IANA AEAD algorithm AES-128-GCM.
pub const AEAD_AES_128_GCM: u16 = 1;
/// IANA AEAD algorithm AES-256-GCM.
pub const AEAD_AES_256_GCM: u16 = 2;
/// IANA named-information hash algorithm SHA-256.
pub const HASH_SHA_256: u8 = 1;

/// `ExternalPart`: content fetched from a URL, usually AEAD-encrypted.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ExternalPart {
    /// IANA media type of the decrypted content.
    pub content_type: String,
    /// Where to fetch it.
    pub url: String,
    /// UNIX seconds after which the URL is invalid (0 = never).
    pub expires: u32,
    /// Size in octets (0 = unknown).
    pub size: u64,
    /// IANA AEAD algorithm (0 = unencrypted).
    pub enc_alg: u16,
    /// AEAD key.
    pub key: Vec<u8>,
    /// AEAD nonce.
    pub nonce: Vec<u8>,
    /// AEAD additional data (empty by default).
    pub aad: Vec<u8>,
    /// IANA named-information hash algorithm of `content_hash` (0 = none).
    pub hash_alg: u8,
    /// Hash of the object at `url`.
    pub content_hash: Vec<u8>,
    /// Optional description.
    pub description: String,
    /// Optional suggested file name.
    pub filename: String,
}

/// `MultiPart`: two or more nested parts.
#[derive(Debug, Clone, PartialEq)]
pub struct MultiPart {
    /// How the parts relate.
    pub semantics: PartSemantics,
    /// At least two parts.
    pub parts: Vec<NestedPart>,
}

/// The cardinality-specific body of a [`NestedPart`].
#[derive(Debug, Clone, PartialEq)]
pub enum PartBody {
    /// `NullPart` (delete, unlike).
    Null,
    /// `SinglePart`.
    Single(SinglePart),
    /// `ExternalPart`.
    External(ExternalPart),
    /// `MultiPart`.
    Multi(MultiPart),
}

impl PartBody {
    /// The wire cardinality (0..3).
    pub fn cardinality(&self) -> u8 {
        match self {
            Self::Null => 0,
            Self::Single(_) => 1,
            Self::External(_) => 2,
            Self::Multi(_) => 3,
        }
    }

    /// The draft's name for the cardinality.
    pub fn cardinality_name(&self) -> &'static str {
        match self {
            Self::Null => "nullpart",
            Self::Single(_) => "single",
            Self::External(_) => "external",
            Self::Multi(_) => "multi",
        }
    }
}

/// `NestedPart = [disposition, language, cardinality, ...]`.
#[derive(Debug, Clone, PartialEq)]
pub struct NestedPart {
    /// Intended semantics of the part.
    pub disposition: Disposition,
    /// "" or a comma-separated list of RFC 5646 language tags.
    pub language: String,
    /// The part itself.
    pub body: PartBody,
}

impl NestedPart {
    /// A part with no language.
    pub fn new(disposition: Disposition, body: PartBody) -> Self {
        Self {
            disposition,
            language: String::new(),
            body,
        }
    }

    /// Every part in implied-index order (depth first, this part = index 0), with its index.
    pub fn parts(&self) -> Vec<(usize, &Self)> {
        let mut out = Vec::new();
        self.walk(&mut out);
        out.into_iter().enumerate().collect()
    }

    fn walk<'a>(&'a self, out: &mut Vec<&'a Self>) {
        out.push(self);
        if let PartBody::Multi(m) = &self.body {
            for p in &m.parts {
                p.walk(out);
            }
        }
    }

    /// The part with implied index `index`.
    pub fn part(&self, index: usize) -> Option<&Self> {
        self.parts()
            .into_iter()
            .find(|(i, _)| *i == index)
            .map(|(_, p)| p)
    }

    /// Resolves `cid:N@local.invalid` to the SinglePart or ExternalPart it names.
    pub fn resolve_cid(&self, uri: &str) -> Option<&Self> {
        let n = uri.strip_prefix("cid:")?.strip_suffix("@local.invalid")?;
        if n.is_empty()
            || !n.bytes().all(|b| b.is_ascii_digit())
            || (n.len() > 1 && n.starts_with('0'))
        {
            return None;
        }
        let part = self.part(n.parse().ok()?)?;
        matches!(part.body, PartBody::Single(_) | PartBody::External(_)).then_some(part)
    }

    /// Nesting depth of this part (a part without children has depth 1).
    pub fn depth(&self) -> usize {
        match &self.body {
            PartBody::Multi(m) => 1 + m.parts.iter().map(Self::depth).max().unwrap_or(0),
            _ => 1,
        }
    }
}

/// A 16-octet random salt.
pub type Salt = [u8; 16];

/// `mimiContent`: one MIMI content message.
#[derive(Debug, Clone, PartialEq)]
pub struct MimiContent {
    /// Per-message random salt.
    pub salt: Salt,
    /// The message this one edits, deletes or un-reacts (first version for edits).
    pub replaces: Option<MessageId>,
    /// Opaque topic; empty = no topic.
    pub topic_id: Vec<u8>,
    /// Expiry hint.
    pub expires: Option<Expiration>,
    /// The specific version replied or reacted to.
    pub in_reply_to: Option<MessageId>,
    /// `mimiExtensions`.
    pub extensions: Extensions,
    /// The body.
    pub nested_part: NestedPart,
}
