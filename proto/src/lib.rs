//! Every byte format that crosses between MIMI providers, with one exact definition.
//!
//! - [`messages`]: the request and response bodies of draft-ietf-mimi-protocol-06
//!   (KeyMaterial, Update/HandshakeBundle, SubmitMessage, FanoutMessage, GroupInfo, consent,
//!   identifier query, abuse reports);
//! - [`mls`]: the RFC 9420 structures they embed (openmls parses PublicMessages);
//! - [`components`]: room state in the MLS app-data dictionary (participant list, metadata,
//!   roles, preauthorization, policies, franking) with all component IDs;
//! - [`directory`]: the directory document, endpoints and path encoding;
//! - [`head`]: the checks of a federation request head (identity, From, route, size);
//! - [`crypto`] and [`franking`]: labelled signatures and encryption, franks;
//! - [`wire_pb`]: Wire's GenericMessage protobuf (chat subset), compiled at build time;
//! - [`registry`]: every named type, for `mimi inspect`;
//! - [`uri`]: typed identifiers (domain, user, client, room) and the credential rule (D27);
//! - [`client_api`]: the local client API's requests, responses and deliveries;
//! - [`admin_api`]: the operator's API on the admin listener.
//!
//! What it does **not** do: no IO, no policy decisions (the engine decides), no clocks.
//!
//! Decoding is strict: minimal varints, bounded lengths (checked against the input before any
//! allocation), known enum values, no trailing bytes; every [`DecodeError`] names the path and
//! byte offset. Decisions where the draft is ambiguous are in `docs/protocol-decisions.md`.
//!
//! ```
//! use mimi_proto::codec::Wire;
//! use mimi_proto::messages::{Protocol, SubmitMessageResponse, SubmitOutcome};
//!
//! let r = SubmitMessageResponse { protocol: Protocol::Mls10, outcome: SubmitOutcome::EpochTooOld { current_epoch: 7 } };
//! let bytes = r.to_bytes();
//! assert_eq!(bytes, [1, 2, 0, 0, 0, 0, 0, 0, 0, 7]);
//! assert_eq!(SubmitMessageResponse::from_bytes(&bytes).unwrap(), r);
//! ```

pub mod admin_api;
pub mod client_api;
pub mod codec;
pub mod components;
pub mod crypto;
pub mod directory;
pub mod franking;
pub mod head;
pub mod media;
pub mod messages;
pub mod mls;
pub mod registry;
pub mod uri;
pub mod wire_pb;

pub use codec::{DecodeError, ErrorKind, Wire};
