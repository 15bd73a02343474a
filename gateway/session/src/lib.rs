//! The native MIMI client over a gateway's local client API (docs/client-api.md).
//!
//! [`api::ApiClient`] is the HTTP client of the client API; [`session::Session`] puts an MLS
//! member ([`mimi_client::Member`], which does no IO) on top of it, with a per-room timeline.
//! The demo, the tools, the bridges and the conformance suite use it.
//!
//! ```text
//!  Session ─┬─ Member (openmls, MIMI content; no IO)
//!           └─ ApiClient ──HTTP──► gateway client API ──► hub / followers
//! ```

pub mod api;
pub mod session;

pub use api::{Addrs, ApiClient, ApiError, ApiResponse};
pub use session::{Session, SessionError, Verdict};
