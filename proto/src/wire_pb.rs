//! Wire's `GenericMessage` protobuf (the chat-content subset, `schemas/wire.proto`), compiled
//! at build time with prost and protox.

#![allow(missing_docs, clippy::all, unreachable_pub)] // generated code

include!(concat!(env!("OUT_DIR"), "/wire.rs"));
