//! The bridges' configuration (the `[bridge.matrix]` and `[bridge.xmpp]` tables of the
//! gateway's TOML, documented in docs/config.md and docs/bridges.md).

use std::net::SocketAddr;

use serde::Deserialize;

/// A MIMI room mirrored into a Matrix room.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MatrixRoom {
    /// The MIMI room URI.
    pub mimi: String,
    /// Localpart of the Matrix alias (inside the application service's namespace).
    pub alias: String,
}

/// The Matrix bridge.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MatrixBridge {
    /// The homeserver's client-server API base URL (plain HTTP on loopback).
    pub homeserver_url: String,
    /// The homeserver's server name.
    pub server_name: String,
    /// Where the application service listens for transactions.
    pub listen: SocketAddr,
    /// Token the bridge presents to the homeserver.
    pub as_token: String,
    /// Token the homeserver presents to the bridge.
    pub hs_token: String,
    /// Localpart prefix of puppets (the exclusive user namespace).
    #[serde(default = "default_puppet_prefix")]
    pub puppet_prefix: String,
    /// The bot's localpart.
    #[serde(default = "default_bot")]
    pub bot_localpart: String,
    /// Matrix users bridged as MIMI clients of this provider (provisioned at start).
    #[serde(default)]
    pub users: Vec<String>,
    /// Mirrored rooms.
    #[serde(default)]
    pub rooms: Vec<MatrixRoom>,
}

fn default_puppet_prefix() -> String {
    "mimi_".into()
}

fn default_bot() -> String {
    "mimi_bot".into()
}

/// A MIMI room mirrored into a MUC room.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct XmppRoom {
    /// The MIMI room URI.
    pub mimi: String,
    /// The MUC room JID.
    pub muc: String,
}

/// The XMPP bridge.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct XmppBridge {
    /// The XMPP server's component port.
    pub server: SocketAddr,
    /// The component's domain.
    pub component: String,
    /// The shared component secret.
    pub secret: String,
    /// XMPP users (bare JIDs) bridged as MIMI clients of this provider.
    #[serde(default)]
    pub users: Vec<String>,
    /// Mirrored rooms.
    #[serde(default)]
    pub rooms: Vec<XmppRoom>,
}
