//! Tools around the gateway, for tests, vendors and operators: a raw federation client that can
//! present any certificate and any header ([`raw`]), several gateways in one process
//! ([`local`]), the demo ([`demo`]) and the benchmarks ([`bench`]).
//!
//! Nothing here is part of a running gateway; the `mimi` command and the conformance suite use
//! it. It depends on the gateway's public API only.

pub mod admin;
pub mod bench;
pub mod bench_bridge;
pub mod bench_state;
pub mod client;
pub mod demo;
pub mod load;
pub mod local;
pub mod raw;
pub mod reference;
