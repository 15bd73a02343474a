//! The MIMI content format, draft-ietf-mimi-content-08, as a strict and fast codec.
//!
//! A MIMI content message is the CBOR document end-to-end encrypted inside an MLS application
//! message. This crate provides:
//!
//! - the data model ([`MimiContent`], [`NestedPart`], [`ExternalPart`], ...),
//! - **strict decoding** ([`Message::decode`]): deterministic CBOR (RFC 8949 §4.2.1), valid
//!   UTF-8 and every limit of the draft, each rejection a [`DecodeError`] that names the path,
//!   byte offset and rule,
//! - **deterministic encoding** ([`Message::encode`]), byte-exact on round trips,
//! - **message IDs** computed over the bytes as received ([`Message::id`]),
//! - builders for the common operations ([`builder`]), a plain-text rendering ([`render`]),
//!   message-status reports ([`status`]) and the receiver sanity checks ([`receiver`]).
//!
//! What it does **not** do: no IO, no MLS, no clocks. Clock-dependent checks take the
//! receiver's context as an argument, so structural validation never depends on the time.
//!
//! ```text
//!  bytes ──► codec::decode ──► MimiContent ──► builder / render / receiver checks
//!    ▲              │
//!    └─ Message ────┴──► Message::id() = 0x01 || SHA-256(uris, bytes, salt)[..31]
//! ```
//!
//! ```
//! use mimi_content::{builder, Message};
//!
//! let msg = builder::text("mimi://a.example/u/alice", "mimi://a.example/r/lobby", [7; 16], "hello")
//!     .build()
//!     .unwrap();
//! let received = Message::decode(msg.bytes().to_vec()).unwrap();
//! assert_eq!(received.id().unwrap(), msg.id().unwrap());
//! ```

pub mod builder;
mod cbor;
pub mod codec;
#[cfg(feature = "json")]
pub mod diag;
mod error;
pub mod examples;
#[cfg(feature = "json")]
pub mod json;
pub mod markdown;
mod message;
mod model;
pub mod receiver;
pub mod render;
pub mod status;
#[cfg(feature = "proptest")]
pub mod testing;
pub mod timeline;

pub use cbor::{MAX_SAFE_INTEGER, Value};
pub use error::{DecodeError, EncodeError, IdError, Path, Rule, Segment};
pub use message::{Message, message_id};
pub use model::*;
