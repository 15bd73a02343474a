//! [`Message`]: a decoded message together with the exact bytes it came from, and the
//! message-ID computation of draft-ietf-mimi-content-08 §3.3.

use sha2::{Digest, Sha256};

use crate::codec;
use crate::error::{DecodeError, EncodeError, IdError};
use crate::model::{HASH_SHA_256, MessageId, MimiContent, Salt};

/// Computes a message ID from the exact encoded bytes of a message.
///
/// `SHA-256(u16(len sender) || sender || u16(len room) || room || encoded || salt)`, truncated
/// to 31 octets and prefixed with the hash-algorithm octet `0x01`.
///
/// # Errors
/// [`IdError::UriTooLong`] if a URI does not fit a 16-bit length.
pub fn message_id(
    sender_uri: &str,
    room_uri: &str,
    encoded: &[u8],
    salt: &Salt,
) -> Result<MessageId, IdError> {
    let sender_len = u16::try_from(sender_uri.len()).map_err(|_| IdError::UriTooLong {
        which: "senderUri",
        len: sender_uri.len(),
    })?;
    let room_len = u16::try_from(room_uri.len()).map_err(|_| IdError::UriTooLong {
        which: "roomUri",
        len: room_uri.len(),
    })?;
    let mut h = Sha256::new();
    h.update(sender_len.to_be_bytes());
    h.update(sender_uri.as_bytes());
    h.update(room_len.to_be_bytes());
    h.update(room_uri.as_bytes());
    h.update(encoded);
    h.update(salt);
    let digest = h.finalize();
    let mut id = [0u8; 32];
    id[0] = HASH_SHA_256;
    id[1..].copy_from_slice(&digest[..31]);
    Ok(MessageId(id))
}

/// A MIMI content message and the exact bytes it was decoded from (or encoded to).
///
/// The message ID is always computed over [`Message::bytes`], never over a re-encoding, so a
/// message relayed by a gateway keeps its identity.
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    bytes: Vec<u8>,
    content: MimiContent,
}

impl Message {
    /// Decodes strictly and keeps the input bytes.
    ///
    /// # Errors
    /// See [`codec::decode`].
    pub fn decode(bytes: impl Into<Vec<u8>>) -> Result<Self, DecodeError> {
        let bytes = bytes.into();
        let content = codec::decode(&bytes)?;
        Ok(Self { bytes, content })
    }

    /// Encodes `content` deterministically.
    ///
    /// # Errors
    /// See [`codec::encode`].
    pub fn encode(content: MimiContent) -> Result<Self, EncodeError> {
        let bytes = codec::encode(&content)?;
        Ok(Self { bytes, content })
    }

    /// The exact encoded bytes.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// The decoded content.
    pub fn content(&self) -> &MimiContent {
        &self.content
    }

    /// Both halves.
    pub fn into_parts(self) -> (Vec<u8>, MimiContent) {
        (self.bytes, self.content)
    }

    /// The message ID, using the senderUri and roomUri carried in the extensions.
    ///
    /// # Errors
    /// [`IdError::MissingSenderUri`] / [`IdError::MissingRoomUri`] when an extension is absent.
    pub fn id(&self) -> Result<MessageId, IdError> {
        let sender = self
            .content
            .extensions
            .sender_uri()
            .ok_or(IdError::MissingSenderUri)?;
        let room = self
            .content
            .extensions
            .room_uri()
            .ok_or(IdError::MissingRoomUri)?;
        message_id(sender, room, &self.bytes, &self.content.salt)
    }

    /// The message ID with the sender and room URIs known from context (e.g. the MLS
    /// credential and the group), for messages that do not carry them.
    ///
    /// # Errors
    /// [`IdError::UriTooLong`].
    pub fn id_with(&self, sender_uri: &str, room_uri: &str) -> Result<MessageId, IdError> {
        message_id(sender_uri, room_uri, &self.bytes, &self.content.salt)
    }
}
