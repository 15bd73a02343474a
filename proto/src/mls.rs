//! RFC 9420 structures that MIMI bodies embed.
//!
//! Most are parsed here, field by field, so errors carry exact paths and offsets and the hub
//! can read what it routes on (a Welcome's KeyPackageRefs, a PrivateMessage's epoch) without
//! group secrets. A `PublicMessage` (proposals and commits) is parsed by openmls itself, whose
//! result and exact bytes are kept; [`MlsMessage::to_openmls`] hands any message to openmls.
//!
//! Encodings here are canonical (minimal varints are enforced on input), so decoding then
//! encoding reproduces the input bytes.

use openmls::prelude::tls_codec::Deserialize as _;
/// The TLS codec's error, which openmls parsing returns.
pub use openmls::prelude::tls_codec::Error as TlsError;
use openmls::prelude::{MlsMessageBodyIn, MlsMessageIn, Sender};
use sha2::Digest;

use crate::codec::{Bytes, DecodeError, ErrorKind, Reader, Seg, Wire, write_opaque};
use crate::{wire_enum, wire_struct};

/// `CipherSuite` (RFC 9420 §17.1).
pub type CipherSuite = u16;
/// MLS 1.0 protocol version.
pub const MLS10: u16 = 1;

/// `ProposalRef` / `KeyPackageRef`: `opaque HashReference<V>`.
pub type HashReference = Bytes;

wire_struct! {
    /// `Credential`: a type and its content (`identity<V>` for basic, `certificates<V>` for
    /// X.509; every type is one varint-prefixed blob on the wire).
    pub struct Credential as "Credential" {
        /// `CredentialType` (1 = basic, 2 = x509).
        pub credential_type: u16 as "credential_type",
        /// The type-specific content.
        pub content: Bytes as "content",
    }
}

impl Credential {
    /// A basic credential with `identity`.
    pub fn basic(identity: &[u8]) -> Self {
        Self {
            credential_type: 1,
            content: Bytes(identity.to_vec()),
        }
    }

    /// The identity of a basic credential.
    pub fn basic_identity(&self) -> Option<&[u8]> {
        (self.credential_type == 1).then_some(&self.content.0)
    }
}

wire_struct! {
    /// `Capabilities` (RFC 9420 §7.2).
    pub struct Capabilities as "Capabilities" {
        /// `ProtocolVersion versions<V>`.
        pub versions: Vec<u16> as "versions",
        /// `CipherSuite cipher_suites<V>`.
        pub cipher_suites: Vec<u16> as "cipher_suites",
        /// `ExtensionType extensions<V>`.
        pub extensions: Vec<u16> as "extensions",
        /// `ProposalType proposals<V>`.
        pub proposals: Vec<u16> as "proposals",
        /// `CredentialType credentials<V>`.
        pub credentials: Vec<u16> as "credentials",
    }
}

wire_struct! {
    /// `RequiredCapabilities` (RFC 9420 §11.1).
    pub struct RequiredCapabilities as "RequiredCapabilities" {
        /// `ExtensionType extension_types<V>`.
        pub extension_types: Vec<u16> as "extension_types",
        /// `ProposalType proposal_types<V>`.
        pub proposal_types: Vec<u16> as "proposal_types",
        /// `CredentialType credential_types<V>`.
        pub credential_types: Vec<u16> as "credential_types",
    }
}

wire_struct! {
    /// `Extension` (RFC 9420 §13).
    pub struct Extension as "Extension" {
        /// `ExtensionType`.
        pub extension_type: u16 as "extension_type",
        /// `opaque extension_data<V>`.
        pub extension_data: Bytes as "extension_data",
    }
}

wire_struct! {
    /// `ExternalSender` (RFC 9420 §12.1.8.1).
    pub struct ExternalSender as "ExternalSender" {
        /// `SignaturePublicKey`.
        pub signature_key: Bytes as "signature_key",
        /// `Credential`.
        pub credential: Credential as "credential",
    }
}

wire_struct! {
    /// `HPKECiphertext` (RFC 9420 §12.4.3.1).
    pub struct HpkeCiphertext as "HPKECiphertext" {
        /// `opaque kem_output<V>`.
        pub kem_output: Bytes as "kem_output",
        /// `opaque ciphertext<V>`.
        pub ciphertext: Bytes as "ciphertext",
    }
}

wire_struct! {
    /// `Lifetime` (RFC 9420 §7.2).
    pub struct Lifetime as "Lifetime" {
        /// Seconds since the UNIX epoch.
        pub not_before: u64 as "not_before",
        /// Seconds since the UNIX epoch.
        pub not_after: u64 as "not_after",
    }
}

/// `LeafNodeSource` and its selected fields.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "source", content = "value", rename_all = "snake_case")]
pub enum LeafNodeSource {
    /// 1: in a KeyPackage, with its lifetime.
    KeyPackage(Lifetime),
    /// 2: in an Update proposal.
    Update,
    /// 3: in a Commit's UpdatePath, with the parent hash.
    Commit(Bytes),
}

impl Wire for LeafNodeSource {
    fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Self::KeyPackage(l) => {
                out.push(1);
                l.encode(out);
            }
            Self::Update => out.push(2),
            Self::Commit(h) => {
                out.push(3);
                h.encode(out);
            }
        }
    }
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let at = r.pos();
        match u8::decode(r)? {
            1 => Ok(Self::KeyPackage(r.field("lifetime")?)),
            2 => Ok(Self::Update),
            3 => Ok(Self::Commit(r.field("parent_hash")?)),
            0 => Err(r.err(
                at,
                ErrorKind::Reserved {
                    name: "LeafNodeSource",
                    value: 0,
                },
            )),
            v => Err(r.err(
                at,
                ErrorKind::UnknownValue {
                    name: "LeafNodeSource",
                    value: u64::from(v),
                },
            )),
        }
    }
}

wire_struct! {
    /// `LeafNode` (RFC 9420 §7.2).
    pub struct LeafNode as "LeafNode" {
        /// `HPKEPublicKey encryption_key`.
        pub encryption_key: Bytes as "encryption_key",
        /// `SignaturePublicKey signature_key`.
        pub signature_key: Bytes as "signature_key",
        /// The member's credential.
        pub credential: Credential as "credential",
        /// What the client supports.
        pub capabilities: Capabilities as "capabilities",
        /// Where the leaf node comes from.
        pub leaf_node_source: LeafNodeSource as "leaf_node_source",
        /// Leaf extensions.
        pub extensions: Vec<Extension> as "extensions",
        /// Signature over LeafNodeTBS.
        pub signature: Bytes as "signature",
    }
}

wire_struct! {
    /// `KeyPackage` (RFC 9420 §10). Its signature is checked by openmls
    /// ([`KeyPackage::to_openmls`]); this type carries and routes it.
    pub struct KeyPackage as "KeyPackage" {
        /// `ProtocolVersion`.
        pub version: u16 as "version",
        /// `CipherSuite`.
        pub cipher_suite: u16 as "cipher_suite",
        /// `HPKEPublicKey init_key`.
        pub init_key: Bytes as "init_key",
        /// The leaf the client will occupy.
        pub leaf_node: LeafNode as "leaf_node",
        /// KeyPackage extensions.
        pub extensions: Vec<Extension> as "extensions",
        /// Signature over KeyPackageTBS.
        pub signature: Bytes as "signature",
    }
}

/// The hash function of a cipher suite, for reference hashes (RFC 9420 §5.2).
fn ref_hash(cipher_suite: u16, label: &[u8], value: &[u8]) -> Option<Vec<u8>> {
    let mut input = Vec::with_capacity(value.len() + label.len() + 8);
    write_opaque(&mut input, label);
    write_opaque(&mut input, value);
    Some(match cipher_suite {
        1..=3 => sha2::Sha256::digest(&input).to_vec(),
        4..=6 => sha2::Sha512::digest(&input).to_vec(),
        7 => sha2::Sha384::digest(&input).to_vec(),
        _ => return None,
    })
}

impl KeyPackage {
    /// The `KeyPackageRef` (RFC 9420 §5.2) for the RFC 9420 cipher suites (1..7); `None` for
    /// others.
    pub fn reference(&self) -> Option<HashReference> {
        ref_hash(
            self.cipher_suite,
            b"MLS 1.0 KeyPackage Reference",
            &self.to_bytes(),
        )
        .map(Bytes)
    }

    /// The openmls view (for signature and lifetime validation).
    ///
    /// # Errors
    /// The TLS codec's error when openmls does not parse it.
    pub fn to_openmls(&self) -> Result<openmls::prelude::KeyPackageIn, TlsError> {
        openmls::prelude::KeyPackageIn::tls_deserialize_exact(self.to_bytes())
    }
}

wire_struct! {
    /// `GroupContext` (RFC 9420 §8.1).
    pub struct GroupContext as "GroupContext" {
        /// `ProtocolVersion`.
        pub version: u16 as "version",
        /// `CipherSuite`.
        pub cipher_suite: u16 as "cipher_suite",
        /// `opaque group_id<V>`.
        pub group_id: Bytes as "group_id",
        /// The epoch.
        pub epoch: u64 as "epoch",
        /// `opaque tree_hash<V>`.
        pub tree_hash: Bytes as "tree_hash",
        /// `opaque confirmed_transcript_hash<V>`.
        pub confirmed_transcript_hash: Bytes as "confirmed_transcript_hash",
        /// GroupContext extensions.
        pub extensions: Vec<Extension> as "extensions",
    }
}

wire_struct! {
    /// `GroupInfo` (RFC 9420 §12.4.3).
    pub struct GroupInfo as "GroupInfo" {
        /// The group context.
        pub group_context: GroupContext as "group_context",
        /// GroupInfo extensions (ratchet_tree, external_pub, ...).
        pub extensions: Vec<Extension> as "extensions",
        /// `MAC confirmation_tag`.
        pub confirmation_tag: Bytes as "confirmation_tag",
        /// Leaf index of the signer.
        pub signer: u32 as "signer",
        /// Signature over GroupInfoTBS.
        pub signature: Bytes as "signature",
    }
}

wire_struct! {
    /// `EncryptedGroupSecrets` (RFC 9420 §12.4.3.1).
    pub struct EncryptedGroupSecrets as "EncryptedGroupSecrets" {
        /// `KeyPackageRef new_member`: who this entry is for.
        pub new_member: HashReference as "new_member",
        /// The encrypted GroupSecrets.
        pub encrypted_group_secrets: HpkeCiphertext as "encrypted_group_secrets",
    }
}

wire_struct! {
    /// `Welcome` (RFC 9420 §12.4.3.1).
    pub struct Welcome as "Welcome" {
        /// `CipherSuite`.
        pub cipher_suite: u16 as "cipher_suite",
        /// One entry per new member, keyed by KeyPackageRef.
        pub secrets: Vec<EncryptedGroupSecrets> as "secrets",
        /// `opaque encrypted_group_info<V>`.
        pub encrypted_group_info: Bytes as "encrypted_group_info",
    }
}

impl Welcome {
    /// The KeyPackageRefs of the new members (what a hub routes Welcomes by).
    pub fn new_members(&self) -> impl Iterator<Item = &HashReference> {
        self.secrets.iter().map(|s| &s.new_member)
    }
}

wire_enum! {
    /// `ContentType` (RFC 9420 §6).
    pub enum ContentType: u8 as "ContentType" {
        /// 1
        Application = 1 as "application",
        /// 2
        Proposal = 2 as "proposal",
        /// 3
        Commit = 3 as "commit",
    }
    reserved [0]
}

wire_struct! {
    /// `PrivateMessage` (RFC 9420 §6.3): everything the hub can see of an encrypted message.
    pub struct PrivateMessage as "PrivateMessage" {
        /// `opaque group_id<V>`.
        pub group_id: Bytes as "group_id",
        /// The epoch.
        pub epoch: u64 as "epoch",
        /// The content type (in the clear).
        pub content_type: ContentType as "content_type",
        /// `opaque authenticated_data<V>` (carries SafeAAD, e.g. the frank_aad).
        pub authenticated_data: Bytes as "authenticated_data",
        /// `opaque encrypted_sender_data<V>`.
        pub encrypted_sender_data: Bytes as "encrypted_sender_data",
        /// `opaque ciphertext<V>`.
        pub ciphertext: Bytes as "ciphertext",
    }
}

/// A `PublicMessage` (a signed proposal or commit) as parsed by openmls, kept with the exact
/// bytes of the whole `MLSMessage`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicMessage {
    bytes: Vec<u8>,
    content_type: ContentType,
    epoch: u64,
    group_id: Vec<u8>,
    sender: String,
}

impl PublicMessage {
    /// The complete `MLSMessage` encoding.
    pub fn mls_message_bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// Proposal or commit.
    pub fn content_type(&self) -> ContentType {
        self.content_type
    }

    /// The epoch it was sent in.
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// The MLS group ID.
    pub fn group_id(&self) -> &[u8] {
        &self.group_id
    }

    /// Who sent it: `member N`, `external N`, `new_member_proposal` or `new_member_commit`.
    pub fn sender(&self) -> &str {
        &self.sender
    }

    /// Parses a complete `MLSMessage` that must be a PublicMessage; returns it and the number of
    /// bytes it spans.
    fn parse(input: &[u8]) -> Result<(Self, usize), String> {
        let mut rest = input;
        let msg = MlsMessageIn::tls_deserialize(&mut rest).map_err(|e| e.to_string())?;
        let used = input.len() - rest.len();
        let MlsMessageBodyIn::PublicMessage(pm) = msg.extract() else {
            return Err("not a PublicMessage".to_owned());
        };
        let content_type = match pm.content_type() {
            openmls::prelude::ContentType::Application => ContentType::Application,
            openmls::prelude::ContentType::Proposal => ContentType::Proposal,
            openmls::prelude::ContentType::Commit => ContentType::Commit,
        };
        let sender = match pm.sender() {
            Sender::Member(i) => format!("member {}", i.u32()),
            Sender::External(i) => {
                use openmls::prelude::tls_codec::Serialize as _;
                let b = i.tls_serialize_detached().unwrap_or_default();
                format!(
                    "external {}",
                    b.iter().fold(0u32, |a, x| (a << 8) | u32::from(*x))
                )
            }
            Sender::NewMemberProposal => "new_member_proposal".to_owned(),
            Sender::NewMemberCommit => "new_member_commit".to_owned(),
        };
        let pm = Self {
            bytes: input[..used].to_vec(),
            content_type,
            epoch: pm.epoch().as_u64(),
            group_id: pm.group_id().as_slice().to_vec(),
            sender,
        };
        Ok((pm, used))
    }
}

/// JSON form of a [`PublicMessage`]: `bytes` is authoritative; the rest is shown for reading.
#[derive(serde::Serialize, serde::Deserialize)]
struct PublicMessageJson {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    content_type: Option<ContentType>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    epoch: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    group_id: Option<Bytes>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    sender: Option<String>,
    bytes: Bytes,
}

impl serde::Serialize for PublicMessage {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        PublicMessageJson {
            content_type: Some(self.content_type),
            epoch: Some(self.epoch),
            group_id: Some(Bytes(self.group_id.clone())),
            sender: Some(self.sender.clone()),
            bytes: Bytes(self.bytes.clone()),
        }
        .serialize(s)
    }
}

impl<'de> serde::Deserialize<'de> for PublicMessage {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let j = PublicMessageJson::deserialize(d)?;
        let (pm, used) = Self::parse(&j.bytes).map_err(serde::de::Error::custom)?;
        if used != j.bytes.len() {
            return Err(serde::de::Error::custom(
                "trailing bytes after the PublicMessage",
            ));
        }
        Ok(pm)
    }
}

/// The body of an `MLSMessage`, by wire format.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "wire_format", content = "message", rename_all = "snake_case")]
pub enum MlsMessageBody {
    /// 1: a signed handshake message.
    PublicMessage(PublicMessage),
    /// 2: an encrypted message.
    PrivateMessage(PrivateMessage),
    /// 3: a Welcome.
    Welcome(Welcome),
    /// 4: a GroupInfo.
    GroupInfo(GroupInfo),
    /// 5: a KeyPackage.
    KeyPackage(KeyPackage),
}

/// `MLSMessage` (RFC 9420 §6), version mls10.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(transparent)]
pub struct MlsMessage {
    /// The message.
    pub body: MlsMessageBody,
}

impl MlsMessage {
    /// The wire format value (1..5).
    pub fn wire_format(&self) -> u16 {
        match self.body {
            MlsMessageBody::PublicMessage(_) => 1,
            MlsMessageBody::PrivateMessage(_) => 2,
            MlsMessageBody::Welcome(_) => 3,
            MlsMessageBody::GroupInfo(_) => 4,
            MlsMessageBody::KeyPackage(_) => 5,
        }
    }

    /// The content type of a Public or PrivateMessage.
    pub fn content_type(&self) -> Option<ContentType> {
        match &self.body {
            MlsMessageBody::PublicMessage(p) => Some(p.content_type),
            MlsMessageBody::PrivateMessage(p) => Some(p.content_type),
            _ => None,
        }
    }

    /// The epoch of a Public or PrivateMessage.
    pub fn epoch(&self) -> Option<u64> {
        match &self.body {
            MlsMessageBody::PublicMessage(p) => Some(p.epoch),
            MlsMessageBody::PrivateMessage(p) => Some(p.epoch),
            _ => None,
        }
    }

    /// The group ID of a Public or PrivateMessage.
    pub fn group_id(&self) -> Option<&[u8]> {
        match &self.body {
            MlsMessageBody::PublicMessage(p) => Some(&p.group_id),
            MlsMessageBody::PrivateMessage(p) => Some(&p.group_id),
            _ => None,
        }
    }

    /// The openmls view of this message.
    ///
    /// # Errors
    /// The TLS codec's error when openmls does not parse it.
    pub fn to_openmls(&self) -> Result<MlsMessageIn, TlsError> {
        MlsMessageIn::tls_deserialize_exact(self.to_bytes())
    }

    /// Wraps openmls's serialized output (`MlsMessageOut::to_bytes()`).
    ///
    /// # Errors
    /// [`DecodeError`] if the bytes are not one MLSMessage.
    pub fn from_openmls_bytes(bytes: &[u8]) -> Result<Self, DecodeError> {
        Self::from_bytes(bytes)
    }

    /// Decodes and checks the wire format and, for handshakes and application messages, the
    /// content type.
    ///
    /// # Errors
    /// [`ErrorKind::WrongWireFormat`] / [`ErrorKind::WrongContentType`].
    pub fn decode_expecting(r: &mut Reader<'_>, expect: Expect) -> Result<Self, DecodeError> {
        let at = r.pos();
        let m = Self::decode(r)?;
        let ok = match expect {
            Expect::Handshake => {
                matches!(m.body, MlsMessageBody::PublicMessage(_))
                    && m.content_type() != Some(ContentType::Application)
            }
            Expect::Application => {
                matches!(&m.body, MlsMessageBody::PrivateMessage(p) if p.content_type == ContentType::Application)
            }
            Expect::Any => true,
        };
        if ok {
            return Ok(m);
        }
        match (expect, m.content_type()) {
            (Expect::Handshake, Some(ContentType::Application)) => Err(r.err(
                at,
                ErrorKind::WrongContentType {
                    expected: "a proposal or commit",
                    found: 1,
                },
            )),
            (Expect::Application, Some(ct)) if m.wire_format() == 2 => Err(r.err(
                at,
                ErrorKind::WrongContentType {
                    expected: "application",
                    found: ct.value(),
                },
            )),
            (Expect::Handshake, _) => Err(r.err(
                at,
                ErrorKind::WrongWireFormat {
                    expected: "a PublicMessage (proposal or commit)",
                    found: m.wire_format(),
                },
            )),
            _ => Err(r.err(
                at,
                ErrorKind::WrongWireFormat {
                    expected: "a PrivateMessage",
                    found: m.wire_format(),
                },
            )),
        }
    }
}

/// What kind of MLSMessage a field requires.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    /// A PublicMessage carrying a proposal or commit.
    Handshake,
    /// A PrivateMessage carrying application data.
    Application,
    /// Anything.
    Any,
}

impl Wire for MlsMessage {
    fn encode(&self, out: &mut Vec<u8>) {
        if let MlsMessageBody::PublicMessage(p) = &self.body {
            out.extend_from_slice(&p.bytes);
            return;
        }
        MLS10.encode(out);
        self.wire_format().encode(out);
        match &self.body {
            MlsMessageBody::PrivateMessage(m) => m.encode(out),
            MlsMessageBody::Welcome(m) => m.encode(out),
            MlsMessageBody::GroupInfo(m) => m.encode(out),
            MlsMessageBody::KeyPackage(m) => m.encode(out),
            MlsMessageBody::PublicMessage(_) => {}
        }
    }

    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        r.at(Seg::Struct("MLSMessage"), |r| {
            let start = r.pos();
            let version = r.field::<u16>("version")?;
            if version != MLS10 {
                return Err(r.err(
                    start,
                    ErrorKind::UnknownValue {
                        name: "ProtocolVersion",
                        value: u64::from(version),
                    },
                ));
            }
            let wf_at = r.pos();
            let wire_format = r.field::<u16>("wire_format")?;
            let body = match wire_format {
                // Hand the whole MLSMessage (from its version field) to openmls, then keep exactly
                // the bytes it read.
                1 => r.at(Seg::Field("public_message"), |r| {
                    let input = r.slice_from(start);
                    let (pm, used) =
                        PublicMessage::parse(input).map_err(|e| r.err(start, ErrorKind::Mls(e)))?;
                    let header = r.pos() - start;
                    r.advance(used.saturating_sub(header));
                    Ok(MlsMessageBody::PublicMessage(pm))
                })?,
                2 => MlsMessageBody::PrivateMessage(r.field("private_message")?),
                3 => MlsMessageBody::Welcome(r.field("welcome")?),
                4 => MlsMessageBody::GroupInfo(r.field("group_info")?),
                5 => MlsMessageBody::KeyPackage(r.field("key_package")?),
                0 => {
                    return Err(r.err(
                        wf_at,
                        ErrorKind::Reserved {
                            name: "WireFormat",
                            value: 0,
                        },
                    ));
                }
                other => {
                    return Err(r.err(
                        wf_at,
                        ErrorKind::UnknownValue {
                            name: "WireFormat",
                            value: u64::from(other),
                        },
                    ));
                }
            };
            Ok(Self { body })
        })
    }
}

/// `optional<Node> ratchet_tree<V>` (RFC 9420 §12.4.3.3), validated by openmls and kept as
/// bytes (the vector's content).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(transparent)]
pub struct RatchetTree(pub Bytes);

impl Wire for RatchetTree {
    fn encode(&self, out: &mut Vec<u8>) {
        self.0.encode(out);
    }
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let at = r.pos();
        let bytes = Bytes::decode(r)?;
        let mut whole = Vec::with_capacity(bytes.len() + 4);
        write_opaque(&mut whole, &bytes);
        openmls::prelude::RatchetTreeIn::tls_deserialize_exact(&whole)
            .map_err(|e| r.err(at, ErrorKind::Mls(e.to_string())))?;
        Ok(Self(bytes))
    }
}

impl RatchetTree {
    /// The openmls view.
    ///
    /// # Errors
    /// The TLS codec's error when openmls does not parse it.
    pub fn to_openmls(&self) -> Result<openmls::prelude::RatchetTreeIn, TlsError> {
        let mut whole = Vec::with_capacity(self.0.len() + 4);
        write_opaque(&mut whole, &self.0);
        openmls::prelude::RatchetTreeIn::tls_deserialize_exact(&whole)
    }

    /// From openmls's `RatchetTree` serialization (which includes the vector length).
    ///
    /// # Errors
    /// [`DecodeError`] if it is not one vector.
    pub fn from_openmls_bytes(bytes: &[u8]) -> Result<Self, DecodeError> {
        Self::from_bytes(bytes)
    }
}

crate::impl_tls_codec!(
    Credential,
    Capabilities,
    RequiredCapabilities,
    Extension,
    ExternalSender,
    HpkeCiphertext,
    KeyPackage,
    GroupInfo,
    Welcome,
    PrivateMessage,
    MlsMessage,
    RatchetTree
);
