//! The bridges' configuration (the `[bridge.matrix]` and `[bridge.xmpp]` tables of the
//! gateway's TOML, documented in docs/config.md and docs/bridges.md).

use std::net::SocketAddr;

use serde::Deserialize;

/// A MIMI room mirrored into a Matrix room with a fixed alias (rooms can also be reached on
/// demand through `#<prefix><escaped room URI>:<server>`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MatrixRoom {
    /// The MIMI room URI.
    pub mimi: String,
    /// Localpart of the Matrix alias (inside the application service's namespace).
    pub alias: String,
}

/// Who may use a bridge, and its bounds (`[bridge.matrix.policy]`, `[bridge.xmpp.policy]`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserPolicy {
    /// Who may use the bridge: native user IDs (`@bob:matrix.test`, `bob@xmpp.test`) or whole
    /// servers (`matrix.test`). Empty: every user of the bridge's own server.
    #[serde(default)]
    pub allow: Vec<String>,
    /// Users or servers refused even when `allow` matches.
    #[serde(default)]
    pub deny: Vec<String>,
    /// Bridged users at most (registered MIMI clients); past it, new users are told so.
    #[serde(default = "default_max_users")]
    pub max_users: usize,
    /// Bridged users kept loaded (their MLS state in memory); others are loaded on use.
    #[serde(default = "default_loaded_users")]
    pub loaded_users: usize,
    /// One-time KeyPackages kept published per bridged user (topped up at half).
    #[serde(default = "default_key_packages")]
    pub key_packages: usize,
    /// Days the ID map keeps a message's IDs (for later edits, replies, reactions, deletions).
    #[serde(default = "default_retention")]
    pub id_retention_days: u64,
}

impl Default for UserPolicy {
    fn default() -> Self {
        Self {
            allow: Vec::new(),
            deny: Vec::new(),
            max_users: default_max_users(),
            loaded_users: default_loaded_users(),
            key_packages: default_key_packages(),
            id_retention_days: default_retention(),
        }
    }
}

fn default_max_users() -> usize {
    10_000
}
fn default_loaded_users() -> usize {
    1_000
}
fn default_key_packages() -> usize {
    10
}
fn default_retention() -> u64 {
    30
}

/// The Matrix bridge.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MatrixBridge {
    /// The homeserver's client-server API base URL (`https://…`, or `http://` on loopback).
    pub homeserver_url: String,
    /// The homeserver's server name.
    pub server_name: String,
    /// Where the application service listens for transactions.
    pub listen: SocketAddr,
    /// Token the bridge presents to the homeserver.
    pub as_token: String,
    /// Token the homeserver presents to the bridge.
    pub hs_token: String,
    /// Localpart prefix of puppets and portal aliases (the exclusive namespaces).
    #[serde(default = "default_puppet_prefix")]
    pub puppet_prefix: String,
    /// The bot's localpart.
    #[serde(default = "default_bot")]
    pub bot_localpart: String,
    /// Matrix users provisioned at start (others are bridged on first use).
    #[serde(default)]
    pub users: Vec<String>,
    /// Rooms mirrored at start under a fixed alias.
    #[serde(default)]
    pub rooms: Vec<MatrixRoom>,
    /// Homeserver requests time out after this long (ms).
    #[serde(default = "default_timeout")]
    pub request_timeout_ms: u64,
    /// Who may use it, and bounds.
    #[serde(default)]
    pub policy: UserPolicy,
}

fn default_puppet_prefix() -> String {
    "mimi_".into()
}
fn default_bot() -> String {
    "mimi_bot".into()
}
fn default_timeout() -> u64 {
    10_000
}

/// A MIMI room mirrored into a MUC room of the XMPP server.
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
    /// The component's domain: puppets are `<escaped user URI>@<component>`, rooms on demand
    /// `<escaped room URI>@<component>` (the component hosts them as a MUC service).
    pub component: String,
    /// The shared component secret.
    pub secret: String,
    /// The XMPP server's domain (whose users the bridge serves by default).
    #[serde(default)]
    pub domain: Option<String>,
    /// XMPP users (bare JIDs) provisioned at start (others are bridged on first use).
    #[serde(default)]
    pub users: Vec<String>,
    /// Rooms mirrored into MUC rooms of the server at start.
    #[serde(default)]
    pub rooms: Vec<XmppRoom>,
    /// Where the component's XEP-0363 upload service listens (HTTP; put it behind the
    /// XMPP server's HTTPS proxy in production). None: no uploads.
    #[serde(default)]
    pub upload_listen: Option<SocketAddr>,
    /// The URL XMPP clients use for it (default `http://<upload_listen>`).
    #[serde(default)]
    pub upload_url: Option<String>,
    /// Largest upload (bytes).
    #[serde(default = "default_upload_max")]
    pub upload_max_bytes: u64,
    /// Upload bytes kept in total; the oldest are deleted past it.
    #[serde(default = "default_upload_quota")]
    pub upload_quota_bytes: u64,
    /// Who may use it, and bounds.
    #[serde(default)]
    pub policy: UserPolicy,
}

fn default_upload_max() -> u64 {
    25 << 20
}
fn default_upload_quota() -> u64 {
    1 << 30
}
