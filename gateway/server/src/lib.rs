//! The MIMI federation gateway: the IO shell around [`mimi_engine`].
//!
//! [`gateway::Gateway`] starts a whole provider gateway from a [`config::Config`]: redb
//! storage ([`store`]), the engine driver ([`driver`]), federation listeners over HTTP/3
//! ([`h3_server`]) and HTTPS ([`https_server`]) sharing one handler set ([`federation`]),
//! mutual TLS and peer identity ([`tls`]), outgoing links ([`peers`]), admission control
//! ([`limits`]), the local client API ([`client_api`]) and the admin listener ([`admin`]).
//! [`api_client`] is the HTTP client of the client API that the demo, the tests and the
//! bridges use; [`pki`] generates development federations.

pub mod admin;
pub mod api_client;
pub mod bench;
pub mod bridge;
pub mod client_api;
pub mod config;
pub mod demo;
pub mod driver;
pub mod federation;
pub mod gateway;
pub mod h3_server;
pub mod https_server;
pub mod limits;
pub mod local;
pub mod metrics;
pub mod peers;
pub mod pki;
pub mod raw;
pub mod serving;
pub mod session;
pub mod store;
pub mod tls;
