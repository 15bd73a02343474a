//! The MIMI federation gateway: the IO shell around [`mimi_engine`].
//!
//! [`gateway::Gateway`] starts a whole provider gateway from a [`config::Config`]: redb
//! storage ([`store`]), the engine driver ([`driver`]), federation listeners over HTTP/3
//! ([`h3_server`]) and HTTPS ([`https_server`]) sharing one handler set ([`federation`]),
//! mutual TLS and peer identity ([`tls`]), outgoing links ([`peers`]), admission control
//! ([`limits`]), the local client API ([`client_api`]) and the admin listener ([`admin`]);
//! [`pki`] generates development federations. The bridges (`mimi-bridges`) run inside the
//! gateway when configured; the command line is the `mimi` crate, the tools (demo,
//! benchmarks, harness) are `mimi-tools`.

pub mod admin;
pub mod auth;
pub mod bridge_io;
pub mod client_api;
pub mod cluster;
pub mod config;
pub mod driver;
pub mod federation;
pub mod gateway;
pub mod h3_server;
pub mod https_server;
pub mod limits;
pub mod metrics;
pub mod peers;
pub mod pki;
pub mod reload;
pub mod serving;
pub mod store;
pub mod tls;
