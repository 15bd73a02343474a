//! Builders for the common operations of draft-ietf-mimi-content-08 §5.
//!
//! Every builder starts from the sender's user URI, the room URI and a 16-octet salt (which the
//! caller draws from a cryptographic RNG or derives as in draft §9.2; this crate does no IO),
//! and puts the URIs into extensions 1 and 2 so the message ID can always be computed.
//!
//! ```
//! use mimi_content::builder;
//! let alice = "mimi://a.example/u/alice";
//! let room = "mimi://a.example/r/lobby";
//! let hi = builder::markdown(alice, room, [1; 16], "hi **all** <b>").build().unwrap();
//! let like = builder::reaction(alice, room, [2; 16], hi.id().unwrap(), "👍").build().unwrap();
//! let unlike = builder::unreact(alice, room, [3; 16], like.id().unwrap(), hi.id().unwrap())
//!     .build()
//!     .unwrap();
//! assert_eq!(unlike.content().replaces, Some(like.id().unwrap()));
//! ```

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes128Gcm, Nonce};
use sha2::{Digest, Sha256};

use crate::cbor::Value;
use crate::error::EncodeError;
use crate::markdown;
use crate::message::Message;
use crate::model::{
    AEAD_AES_128_GCM, Disposition, Expiration, ExtensionKey, Extensions, ExternalPart,
    HASH_SHA_256, MessageId, MimiContent, MultiPart, NestedPart, PartBody, PartSemantics, Salt,
    SinglePart, TEXT_MARKDOWN_GFM_MIMI, TEXT_PLAIN,
};

/// A message under construction.
#[derive(Debug, Clone)]
#[must_use]
pub struct Builder {
    content: MimiContent,
}

impl Builder {
    /// A message with `body`, sender and room URIs in the extensions, and nothing else set.
    pub fn new(sender_uri: &str, room_uri: &str, salt: Salt, body: NestedPart) -> Self {
        Self {
            content: MimiContent {
                salt,
                replaces: None,
                topic_id: Vec::new(),
                expires: None,
                in_reply_to: None,
                extensions: Extensions::with_uris(sender_uri, room_uri),
                nested_part: body,
            },
        }
    }

    /// Sets `inReplyTo` (the specific version replied or reacted to).
    pub fn in_reply_to(mut self, id: MessageId) -> Self {
        self.content.in_reply_to = Some(id);
        self
    }

    /// Sets `replaces` (always the first version of the edited message).
    pub fn replaces(mut self, id: MessageId) -> Self {
        self.content.replaces = Some(id);
        self
    }

    /// Puts the message in a topic.
    pub fn topic(mut self, topic_id: impl Into<Vec<u8>>) -> Self {
        self.content.topic_id = topic_id.into();
        self
    }

    /// Expires `seconds` after the receiver reads it.
    pub fn expires_after_read(mut self, seconds: u32) -> Self {
        self.content.expires = Some(Expiration {
            relative: true,
            time: seconds,
        });
        self
    }

    /// Expires at an absolute UNIX time in seconds.
    pub fn expires_at(mut self, unix_seconds: u32) -> Self {
        self.content.expires = Some(Expiration {
            relative: false,
            time: unix_seconds,
        });
        self
    }

    /// Sets the language of the top-level part.
    pub fn language(mut self, tags: &str) -> Self {
        self.content.nested_part.language = tags.to_owned();
        self
    }

    /// Adds an extension (unknown keys are carried as they are).
    pub fn extension(mut self, key: ExtensionKey, value: Value) -> Self {
        self.content.extensions.insert(key, value);
        self
    }

    /// The content as built so far.
    pub fn content(&self) -> &MimiContent {
        &self.content
    }

    /// Encodes the message.
    ///
    /// # Errors
    /// [`EncodeError`] if a limit of the draft is broken (e.g. a topicId over 4096 octets).
    pub fn build(self) -> Result<Message, EncodeError> {
        Message::encode(self.content)
    }
}

/// A `SinglePart` with `render` disposition.
pub fn single(content_type: &str, content: impl Into<Vec<u8>>) -> NestedPart {
    NestedPart::new(
        Disposition::Render,
        PartBody::Single(SinglePart {
            content_type: content_type.to_owned(),
            content: content.into(),
        }),
    )
}

/// A `text/plain;charset=utf-8` part.
pub fn plain_part(text: &str) -> NestedPart {
    single(TEXT_PLAIN, text)
}

/// A `text/markdown;variant=GFM-MIMI` part; raw HTML is escaped as the draft's "No HTML"
/// extension requires.
pub fn markdown_part(md: &str) -> NestedPart {
    single(
        TEXT_MARKDOWN_GFM_MIMI,
        markdown::escape_html(md).into_owned(),
    )
}

/// A plain-text message.
pub fn text(sender_uri: &str, room_uri: &str, salt: Salt, text: &str) -> Builder {
    Builder::new(sender_uri, room_uri, salt, plain_part(text))
}

/// A GFM-MIMI markdown message.
pub fn markdown(sender_uri: &str, room_uri: &str, salt: Salt, md: &str) -> Builder {
    Builder::new(sender_uri, room_uri, salt, markdown_part(md))
}

/// A markdown message with a plain-text alternative (`chooseOne` of markdown, plain).
pub fn markdown_with_plain(sender_uri: &str, room_uri: &str, salt: Salt, md: &str) -> Builder {
    let plain = markdown::to_plain_text(md);
    alternatives(
        sender_uri,
        room_uri,
        salt,
        vec![markdown_part(md), plain_part(&plain)],
    )
}

/// A reply to one specific version of `parent`.
pub fn reply(
    sender_uri: &str,
    room_uri: &str,
    salt: Salt,
    parent: MessageId,
    text: &str,
) -> Builder {
    Builder::new(sender_uri, room_uri, salt, plain_part(text)).in_reply_to(parent)
}

/// A reaction (disposition `reaction`, one emoji sequence as plain text) to `target`.
pub fn reaction(
    sender_uri: &str,
    room_uri: &str,
    salt: Salt,
    target: MessageId,
    emoji: &str,
) -> Builder {
    let mut part = plain_part(emoji);
    part.disposition = Disposition::Reaction;
    Builder::new(sender_uri, room_uri, salt, part).in_reply_to(target)
}

/// Withdraws the reaction `reaction_id` on `target` (NullPart, disposition `reaction`).
pub fn unreact(
    sender_uri: &str,
    room_uri: &str,
    salt: Salt,
    reaction_id: MessageId,
    target: MessageId,
) -> Builder {
    Builder::new(
        sender_uri,
        room_uri,
        salt,
        NestedPart::new(Disposition::Reaction, PartBody::Null),
    )
    .replaces(reaction_id)
    .in_reply_to(target)
}

/// Replaces the body of the message whose **first** version is `first_version`.
pub fn edit(
    sender_uri: &str,
    room_uri: &str,
    salt: Salt,
    first_version: MessageId,
    body: NestedPart,
) -> Builder {
    Builder::new(sender_uri, room_uri, salt, body).replaces(first_version)
}

/// Deletes the message whose first version is `first_version` (NullPart, disposition render).
pub fn delete(sender_uri: &str, room_uri: &str, salt: Salt, first_version: MessageId) -> Builder {
    Builder::new(
        sender_uri,
        room_uri,
        salt,
        NestedPart::new(Disposition::Render, PartBody::Null),
    )
    .replaces(first_version)
}

/// Alternatives of the same content (`chooseOne`); the order is the sender's preference.
///
/// # Panics
/// If fewer than two parts are given (a MultiPart needs two).
pub fn alternatives(
    sender_uri: &str,
    room_uri: &str,
    salt: Salt,
    parts: Vec<NestedPart>,
) -> Builder {
    Builder::new(
        sender_uri,
        room_uri,
        salt,
        multi(PartSemantics::ChooseOne, Disposition::Render, parts),
    )
}

/// A MultiPart.
///
/// # Panics
/// If fewer than two parts are given.
pub fn multi(
    semantics: PartSemantics,
    disposition: Disposition,
    parts: Vec<NestedPart>,
) -> NestedPart {
    assert!(parts.len() >= 2, "a MultiPart needs at least two parts");
    NestedPart::new(disposition, PartBody::Multi(MultiPart { semantics, parts }))
}

/// Markdown for a mention: a link to the user's URI whose text is a rendering hint.
pub fn mention_link(display: &str, user_uri: &str) -> String {
    let mut text = String::with_capacity(display.len() + 1);
    text.push('@');
    for c in display.chars() {
        if matches!(c, '[' | ']' | '\\' | '<' | '`' | '*' | '_') {
            text.push('\\');
        }
        text.push(c);
    }
    if user_uri.contains(|c: char| c.is_whitespace() || "()<>".contains(c)) {
        format!("[{text}](<{user_uri}>)")
    } else {
        format!("[{text}]({user_uri})")
    }
}

/// An attachment encrypted with AES-128-GCM, ready to upload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SealedAttachment {
    /// What to upload.
    pub ciphertext: Vec<u8>,
    /// The ExternalPart to send (URL to be filled in with where `ciphertext` was uploaded).
    pub part: ExternalPart,
}

/// Encrypts `plaintext` with AES-128-GCM under `key`/`nonce` (empty AAD, the draft's default)
/// and describes it as an ExternalPart with a SHA-256 hash of the ciphertext.
pub fn seal_attachment(
    plaintext: &[u8],
    content_type: &str,
    filename: &str,
    key: [u8; 16],
    nonce: [u8; 12],
) -> SealedAttachment {
    let cipher = Aes128Gcm::new(&key.into());
    // Encryption with a valid key and nonce only fails for inputs over 2^36 bytes.
    let ciphertext = cipher
        .encrypt(
            Nonce::from_slice(&nonce),
            Payload {
                msg: plaintext,
                aad: b"",
            },
        )
        .unwrap_or_default();
    let part = ExternalPart {
        content_type: content_type.to_owned(),
        url: String::new(),
        expires: 0,
        size: plaintext.len() as u64,
        enc_alg: AEAD_AES_128_GCM,
        key: key.to_vec(),
        nonce: nonce.to_vec(),
        aad: Vec::new(),
        hash_alg: HASH_SHA_256,
        content_hash: Sha256::digest(&ciphertext).to_vec(),
        description: String::new(),
        filename: filename.to_owned(),
    };
    SealedAttachment { ciphertext, part }
}

/// Why an attachment could not be opened.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum OpenError {
    /// The downloaded object does not match `contentHash`.
    #[error("downloaded object does not match contentHash")]
    HashMismatch,
    /// encAlg or hashAlg is not one this crate implements.
    #[error("unsupported encAlg {enc_alg} / hashAlg {hash_alg}")]
    Unsupported {
        /// The part's encAlg.
        enc_alg: u16,
        /// The part's hashAlg.
        hash_alg: u8,
    },
    /// AEAD authentication failed.
    #[error("attachment failed AEAD authentication")]
    Decrypt,
}

/// Verifies and decrypts a downloaded attachment.
///
/// # Errors
/// [`OpenError`] on a hash mismatch, unsupported algorithm or failed authentication.
pub fn open_attachment(part: &ExternalPart, downloaded: &[u8]) -> Result<Vec<u8>, OpenError> {
    match part.hash_alg {
        0 => {}
        HASH_SHA_256 => {
            if Sha256::digest(downloaded).as_slice() != part.content_hash.as_slice() {
                return Err(OpenError::HashMismatch);
            }
        }
        h => {
            return Err(OpenError::Unsupported {
                enc_alg: part.enc_alg,
                hash_alg: h,
            });
        }
    }
    match part.enc_alg {
        0 => Ok(downloaded.to_vec()),
        AEAD_AES_128_GCM if part.key.len() == 16 && part.nonce.len() == 12 => {
            let cipher = Aes128Gcm::new_from_slice(&part.key).map_err(|_| OpenError::Decrypt)?;
            cipher
                .decrypt(
                    Nonce::from_slice(&part.nonce),
                    Payload {
                        msg: downloaded,
                        aad: &part.aad,
                    },
                )
                .map_err(|_| OpenError::Decrypt)
        }
        e => Err(OpenError::Unsupported {
            enc_alg: e,
            hash_alg: part.hash_alg,
        }),
    }
}

/// An attachment message: the sealed part (URL set) with `attachment` or `inline` disposition.
pub fn attachment(
    sender_uri: &str,
    room_uri: &str,
    salt: Salt,
    part: ExternalPart,
    inline: bool,
) -> Builder {
    let disposition = if inline {
        Disposition::Inline
    } else {
        Disposition::Attachment
    };
    Builder::new(
        sender_uri,
        room_uri,
        salt,
        NestedPart::new(disposition, PartBody::External(part)),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec;

    const A: &str = "mimi://a.example/u/alice";
    const R: &str = "mimi://a.example/r/lobby";

    #[test]
    fn every_builder_round_trips() {
        let first = text(A, R, [1; 16], "hi").build().unwrap();
        let id = first.id().unwrap();
        let sealed = seal_attachment(b"png bytes", "image/png", "a.png", [9; 16], [8; 12]);
        let mut part = sealed.part;
        part.url = "https://a.example/assets/1".into();
        let builders = [
            markdown(A, R, [2; 16], "**hi** <script>"),
            markdown_with_plain(A, R, [3; 16], "*hi*"),
            reply(A, R, [4; 16], id, "yes"),
            reaction(A, R, [5; 16], id, "👍"),
            unreact(A, R, [6; 16], id, id),
            edit(A, R, [7; 16], id, plain_part("hi!")),
            delete(A, R, [8; 16], id),
            attachment(A, R, [9; 16], part, true),
            text(A, R, [10; 16], "bye")
                .expires_after_read(60)
                .topic(b"t".to_vec())
                .language("en"),
        ];
        for b in builders {
            let m = b.build().unwrap();
            assert_eq!(codec::decode(m.bytes()).unwrap(), *m.content());
            assert_eq!(codec::encode(m.content()).unwrap(), m.bytes());
        }
    }

    #[test]
    fn markdown_builder_escapes_html() {
        let m = markdown(A, R, [2; 16], "a <b>bold</b> `<code>`")
            .build()
            .unwrap();
        let PartBody::Single(s) = &m.content().nested_part.body else {
            panic!()
        };
        assert_eq!(
            std::str::from_utf8(&s.content).unwrap(),
            "a &lt;b>bold&lt;/b> `<code>`"
        );
    }

    #[test]
    fn attachment_seal_open() {
        let sealed = seal_attachment(b"hello", "text/plain", "h.txt", [1; 16], [2; 12]);
        assert_eq!(
            open_attachment(&sealed.part, &sealed.ciphertext).unwrap(),
            b"hello"
        );
        let mut bad = sealed.ciphertext.clone();
        bad[0] ^= 1;
        assert_eq!(
            open_attachment(&sealed.part, &bad),
            Err(OpenError::HashMismatch)
        );
        let mut part = sealed.part;
        part.content_hash = Sha256::digest(&bad).to_vec();
        assert_eq!(open_attachment(&part, &bad), Err(OpenError::Decrypt));
    }

    #[test]
    fn mention_link_escapes_display() {
        assert_eq!(
            mention_link("Al]ice", "mimi://a/u/al"),
            "[@Al\\]ice](mimi://a/u/al)"
        );
        assert_eq!(
            mention_link("B", "mimi://a/u/b (x)"),
            "[@B](<mimi://a/u/b (x)>)"
        );
    }
}
