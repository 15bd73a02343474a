//! The gateway's TOML configuration (documented key by key in `docs/config.md`), environment
//! overrides, and validation with clear errors at start-up.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

mod validate;

/// A configuration problem, reported before anything starts.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file cannot be read.
    #[error("cannot read config {path}")]
    Read {
        /// The path.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The TOML does not match the schema.
    #[error("config {path} is invalid: {message}")]
    Parse {
        /// The path.
        path: PathBuf,
        /// toml's explanation (key and line).
        message: String,
    },
    /// An environment override does not parse.
    #[error("environment variable {var}={value:?} is invalid: {reason}")]
    Env {
        /// The variable.
        var: &'static str,
        /// Its value.
        value: String,
        /// Why.
        reason: String,
    },
    /// A value is out of range or inconsistent.
    #[error("{key}: {reason}")]
    Invalid {
        /// The key, e.g. `limits.max_body_bytes` or `peers[1].domain`.
        key: String,
        /// What is wrong and how to fix it.
        reason: String,
    },
}

fn invalid(key: impl Into<String>, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key: key.into(),
        reason: reason.into(),
    }
}

/// Listening addresses.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Listen {
    /// UDP address of the HTTP/3 (QUIC) federation listener; absent = no QUIC.
    pub quic: Option<SocketAddr>,
    /// TCP address of the HTTPS (HTTP/2 and HTTP/1.1) federation listener.
    pub https: SocketAddr,
    /// TCP address of the local admin listener (metrics, health).
    pub admin: SocketAddr,
    /// TCP address of the local client API (plain HTTP; keep it on loopback or behind a proxy).
    pub client_api: SocketAddr,
}

impl Default for Listen {
    fn default() -> Self {
        Self {
            quic: Some(SocketAddr::from(([127, 0, 0, 1], 4433))),
            https: SocketAddr::from(([127, 0, 0, 1], 4433)),
            admin: SocketAddr::from(([127, 0, 0, 1], 9100)),
            client_api: SocketAddr::from(([127, 0, 0, 1], 8080)),
        }
    }
}

/// Certificates.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tls {
    /// PEM certificate chain whose leaf names `domain` (SAN dNSName), used as TLS server and
    /// client certificate.
    pub cert: PathBuf,
    /// PEM private key (PKCS#8).
    pub key: PathBuf,
    /// PEM bundle of the federation CA(s) trusted for peers without their own `ca`.
    #[serde(default)]
    pub ca: Option<PathBuf>,
    /// Also trust the WebPKI (the Mozilla root store, `webpki-roots`) for peers without their
    /// own `ca`: peers with public certificates.
    #[serde(default)]
    pub webpki: bool,
}

/// Storage.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Storage {
    /// The redb file (default `mimi-data/<domain>.redb`); with PostgreSQL, the directory of
    /// this path holds asset files (shared by a cluster's nodes: a shared volume).
    pub path: Option<PathBuf>,
    /// `redb` (embedded, one machine; the default) or `postgres`.
    pub backend: StorageBackend,
    /// PostgreSQL connection URL (`postgres://user@host:port/db`), for `backend = "postgres"`.
    pub url: Option<String>,
    /// PostgreSQL connections per node.
    pub connections: usize,
}

/// A cluster of nodes serving one domain from one PostgreSQL database (docs/cluster.md).
/// Rooms and users are spread over `slots`; each slot is ordered by one node at a time,
/// under a lease with a fencing token.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Cluster {
    /// This node's name, unique among the domain's nodes (default: the host name).
    pub node: Option<String>,
    /// Where the other nodes reach this node's HTTPS federation listener (`ip:port`; default
    /// the listen address, which must then not be a wildcard).
    pub advertise_https: Option<SocketAddr>,
    /// Where the other nodes reach this node's HTTP/3 listener (default: the listen address).
    pub advertise_quic: Option<SocketAddr>,
    /// Slots rooms and users are spread over; fixed for the life of the database.
    pub slots: u16,
    /// A dead node's slots are ordered again by the others within this bound (ms).
    pub failover_ms: u64,
}

impl Default for Cluster {
    fn default() -> Self {
        Self {
            node: None,
            advertise_https: None,
            advertise_quic: None,
            slots: 12,
            failover_ms: 10_000,
        }
    }
}

/// Where the gateway keeps its state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StorageBackend {
    /// One redb file.
    #[default]
    Redb,
    /// A PostgreSQL database (required for a cluster of nodes).
    Postgres,
}

impl Default for Storage {
    fn default() -> Self {
        Self {
            path: None,
            backend: StorageBackend::Redb,
            url: None,
            connections: 8,
        }
    }
}

/// Bounds (docs/config.md lists each with its default and what happens past it).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// Largest request body for every endpoint but `/notify` (bytes).
    pub max_body_bytes: usize,
    /// Largest `/notify` body (several FanoutMessages).
    pub notify_max_body_bytes: usize,
    /// Requests one peer may have in flight at once; more get 429.
    pub max_concurrent_requests_per_peer: usize,
    /// QUIC bidirectional streams per connection.
    pub max_streams_per_connection: u32,
    /// Idle connections are closed after this long (ms).
    pub idle_timeout_ms: u64,
    /// A request must complete within this long (ms); outgoing requests time out after it too.
    pub request_timeout_ms: u64,
    /// Sustained requests per second per peer.
    pub rate_per_second: f64,
    /// Burst above the sustained rate.
    pub rate_burst: f64,
    /// Federation connections (QUIC and TLS) open at once; more are refused.
    pub federation_connections: usize,
    /// Federation connections from one address.
    pub federation_connections_per_address: usize,
    /// A TLS or QUIC handshake must finish within this long (ms).
    pub handshake_timeout_ms: u64,
    /// Local listeners (client API, admin, bridges): connections open at once.
    pub local_connections: usize,
    /// Local listeners: connections from one address.
    pub local_connections_per_address: usize,
    /// Local listeners: request headers must arrive within this long (ms).
    pub header_timeout_ms: u64,
    /// Long-polls and event streams one client may hold open at once.
    pub streams_per_client: usize,
    /// Largest uploaded asset (bytes).
    pub max_asset_bytes: usize,
    /// Asset bytes one client may hold.
    pub asset_quota_bytes: u64,
    /// Days an asset is kept (the gateway cannot see which encrypted messages use it).
    pub asset_retention_days: u64,
    /// Deliveries kept per local client; past it the oldest are dropped and the client resyncs.
    #[serde(alias = "max_deliveries_per_client")]
    pub delivery_queue_entries: u64,
    /// Bytes of deliveries kept per local client.
    pub delivery_queue_bytes: u64,
    /// Bytes queued for one follower over all rooms; past it new events for that follower are
    /// dropped and it is marked out of sync (the room never blocks).
    pub outbox_bytes_per_follower: u64,
    /// Deprecated and ignored: outboxes are capped in bytes (`outbox_bytes_per_follower`).
    pub max_outbox_per_follower: Option<u64>,
    /// `/notify` requests in flight per follower (rooms in parallel, one per room).
    pub notify_parallel_per_follower: usize,
    /// Rooms kept in memory per engine shard (the rest load on demand).
    pub room_cache_entries: usize,
    /// Engine shards (threads); 0: one per CPU.
    pub engine_shards: u16,
    /// KeyPackages one peer may claim per minute.
    pub claims_per_peer_per_minute: u32,
    /// KeyPackages of one user that may be claimed per minute.
    pub claims_per_user_per_minute: u32,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            max_body_bytes: 1 << 20,
            notify_max_body_bytes: 8 << 20,
            max_concurrent_requests_per_peer: 64,
            max_streams_per_connection: 128,
            idle_timeout_ms: 30_000,
            request_timeout_ms: 10_000,
            rate_per_second: 1000.0,
            rate_burst: 2000.0,
            federation_connections: 1024,
            federation_connections_per_address: 64,
            handshake_timeout_ms: 10_000,
            local_connections: 1024,
            local_connections_per_address: 256,
            header_timeout_ms: 10_000,
            streams_per_client: 8,
            max_asset_bytes: 25 << 20,
            asset_quota_bytes: 256 << 20,
            asset_retention_days: 30,
            delivery_queue_entries: 100_000,
            delivery_queue_bytes: 256 << 20,
            outbox_bytes_per_follower: 256 << 20,
            max_outbox_per_follower: None,
            notify_parallel_per_follower: 16,
            room_cache_entries: 1024,
            engine_shards: 0,
            claims_per_peer_per_minute: 600,
            claims_per_user_per_minute: 60,
        }
    }
}

/// Federation policy.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Federation {
    /// `open`: any authenticated provider may claim KeyPackages; `required`: only with the
    /// target user's consent.
    pub consent: String,
    /// Accept requests from providers authenticated by the federation CA but not listed in
    /// `[[peers]]` (they cannot be called back without an address).
    pub allow_unknown_peers: bool,
    /// How long a peer's directory document is cached (s).
    pub directory_ttl_s: u64,
    /// Path prefix of the MIMI endpoints.
    pub path_prefix: String,
    /// Identifier queries may search display names by substring (off: exact handles only).
    pub partial_name_search: bool,
}

impl Default for Federation {
    fn default() -> Self {
        Self {
            consent: "open".into(),
            allow_unknown_peers: false,
            directory_ttl_s: 600,
            path_prefix: "/v1".into(),
            partial_name_search: false,
        }
    }
}

/// The local client API.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClientApi {
    /// Anyone reaching the client API may create a **new** user (development; loopback
    /// addresses only). A new device of an existing user always needs one of its devices'
    /// tokens, the admin token or a provider token.
    pub open_registration: bool,
    /// The operator's token: registers any client, and authenticates `mimi admin`.
    pub admin_token: Option<String>,
    /// Provider-issued bearer tokens (JWT) that register clients of the user they name.
    pub provider_tokens: Option<crate::auth::ProviderTokensConfig>,
}

impl Default for ClientApi {
    fn default() -> Self {
        Self {
            open_registration: true,
            admin_token: None,
            provider_tokens: None,
        }
    }
}

/// Logging.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Log {
    /// `text` or `json`.
    pub format: String,
    /// Filter when RUST_LOG is not set.
    pub level: String,
}

impl Default for Log {
    fn default() -> Self {
        Self {
            format: "text".into(),
            level: "info".into(),
        }
    }
}

/// A peer provider.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Peer {
    /// Its domain (the SAN of its certificate).
    pub domain: String,
    /// Its QUIC (HTTP/3) address, if it has one.
    #[serde(default)]
    pub quic: Option<SocketAddr>,
    /// Its HTTPS address.
    pub https: SocketAddr,
    /// PEM bundle of the CA that issues its certificates (default: the federation CA).
    #[serde(default)]
    pub ca: Option<PathBuf>,
    /// `auto` (HTTP/3, falling back to HTTPS), `h3` or `https`.
    #[serde(default = "default_transport")]
    pub transport: String,
    /// Hosts of its asset servers (allowed for `/proxyDownload`).
    #[serde(default)]
    pub asset_domains: Vec<String>,
    /// More addresses of the same provider (the other nodes of a cluster), tried in turn when
    /// the one in use cannot be reached.
    #[serde(default)]
    pub addresses: Vec<PeerAddress>,
}

/// One more address of a peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PeerAddress {
    /// QUIC (HTTP/3), if any.
    #[serde(default)]
    pub quic: Option<SocketAddr>,
    /// HTTPS.
    pub https: SocketAddr,
}

fn default_transport() -> String {
    "auto".into()
}

/// The whole configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// This provider's domain.
    pub domain: String,
    /// Listeners.
    #[serde(default)]
    pub listen: Listen,
    /// Certificates.
    pub tls: Tls,
    /// Storage.
    #[serde(default)]
    pub storage: Storage,
    /// Cluster membership (with `storage.backend = "postgres"`).
    #[serde(default)]
    pub cluster: Cluster,
    /// Bounds.
    #[serde(default)]
    pub limits: LimitsConfig,
    /// Federation policy.
    #[serde(default)]
    pub federation: Federation,
    /// Client API.
    #[serde(default)]
    pub client_api: ClientApi,
    /// Logging.
    #[serde(default)]
    pub log: Log,
    /// Known peers.
    #[serde(default)]
    pub peers: Vec<Peer>,
    /// Bridges to other messaging systems (docs/bridges.md).
    #[serde(default)]
    pub bridge: Bridges,
}

/// The bridges this gateway runs.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Bridges {
    /// A Matrix application service.
    pub matrix: Option<mimi_bridges::config::MatrixBridge>,
    /// An XMPP external component (XEP-0114).
    pub xmpp: Option<mimi_bridges::config::XmppBridge>,
}

fn resolve(base: &Path, p: &Path) -> PathBuf {
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        base.join(p)
    }
}

use crate::pki::is_domain;

impl Config {
    /// Reads `path`, applies `MIMI_*` environment overrides, resolves relative paths against the
    /// file's directory, and validates.
    ///
    /// # Errors
    /// [`ConfigError`] naming the key and the fix.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        let mut cfg: Self = toml::from_str(&text).map_err(|e| ConfigError::Parse {
            path: path.to_owned(),
            message: e.to_string(),
        })?;
        cfg.apply_env(|k| std::env::var(k).ok())?;
        let base = path.parent().unwrap_or_else(|| Path::new("."));
        cfg.resolve_paths(base);
        cfg.validate()?;
        Ok(cfg)
    }

    /// Makes relative paths relative to `base`.
    pub fn resolve_paths(&mut self, base: &Path) {
        self.tls.cert = resolve(base, &self.tls.cert);
        self.tls.key = resolve(base, &self.tls.key);
        if let Some(ca) = &self.tls.ca {
            self.tls.ca = Some(resolve(base, ca));
        }
        if let Some(p) = &self.storage.path {
            self.storage.path = Some(resolve(base, p));
        }
        for p in &mut self.peers {
            if let Some(ca) = &p.ca {
                p.ca = Some(resolve(base, ca));
            }
        }
    }

    /// Environment overrides (`MIMI_DOMAIN`, `MIMI_LISTEN_QUIC`, ...; see docs/config.md).
    ///
    /// # Errors
    /// [`ConfigError::Env`] for a value that does not parse.
    pub fn apply_env(&mut self, get: impl Fn(&str) -> Option<String>) -> Result<(), ConfigError> {
        fn addr(var: &'static str, v: &str) -> Result<SocketAddr, ConfigError> {
            v.parse()
                .map_err(|e: std::net::AddrParseError| ConfigError::Env {
                    var,
                    value: v.to_owned(),
                    reason: e.to_string(),
                })
        }
        if let Some(v) = get("MIMI_DOMAIN") {
            self.domain = v;
        }
        if let Some(v) = get("MIMI_LISTEN_QUIC") {
            self.listen.quic = if v.is_empty() || v == "off" {
                None
            } else {
                Some(addr("MIMI_LISTEN_QUIC", &v)?)
            };
        }
        if let Some(v) = get("MIMI_LISTEN_HTTPS") {
            self.listen.https = addr("MIMI_LISTEN_HTTPS", &v)?;
        }
        if let Some(v) = get("MIMI_LISTEN_ADMIN") {
            self.listen.admin = addr("MIMI_LISTEN_ADMIN", &v)?;
        }
        if let Some(v) = get("MIMI_LISTEN_CLIENT_API") {
            self.listen.client_api = addr("MIMI_LISTEN_CLIENT_API", &v)?;
        }
        if let Some(v) = get("MIMI_STORAGE_URL") {
            self.storage.url = Some(v);
            self.storage.backend = StorageBackend::Postgres;
        }
        if let Some(v) = get("MIMI_NODE") {
            self.cluster.node = Some(v);
        }
        if let Some(v) = get("MIMI_STORAGE_PATH") {
            self.storage.path = Some(PathBuf::from(v));
        }
        if let Some(v) = get("MIMI_TLS_CERT") {
            self.tls.cert = PathBuf::from(v);
        }
        if let Some(v) = get("MIMI_TLS_KEY") {
            self.tls.key = PathBuf::from(v);
        }
        if let Some(v) = get("MIMI_TLS_CA") {
            self.tls.ca = Some(PathBuf::from(v));
        }
        if let Some(v) = get("MIMI_LOG_FORMAT") {
            self.log.format = v;
        }
        if let Some(v) = get("MIMI_CONSENT") {
            self.federation.consent = v;
        }
        Ok(())
    }

    /// The storage file.
    pub fn storage_path(&self) -> PathBuf {
        self.storage
            .path
            .clone()
            .unwrap_or_else(|| PathBuf::from("mimi-data").join(format!("{}.redb", self.domain)))
    }

    /// The peer entry for `domain`.
    pub fn peer(&self, domain: &str) -> Option<&Peer> {
        self.peers.iter().find(|p| p.domain == domain)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn minimal(dir: &Path) -> String {
        for f in ["cert.pem", "key.pem", "ca.pem"] {
            std::fs::write(dir.join(f), "x").unwrap();
        }
        "domain = \"a.example\"\n[tls]\ncert = \"cert.pem\"\nkey = \"key.pem\"\nca = \"ca.pem\"\n"
            .to_owned()
    }

    fn load(text: &str, dir: &Path) -> Result<Config, ConfigError> {
        let p = dir.join("config.toml");
        std::fs::write(&p, text).unwrap();
        Config::load(&p)
    }

    #[test]
    fn defaults_and_relative_paths() {
        let dir = std::env::temp_dir().join(format!("mimi-cfg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let c = load(&minimal(&dir), &dir).unwrap();
        assert_eq!(c.limits.max_body_bytes, 1 << 20);
        assert_eq!(c.listen.https.port(), 4433);
        assert_eq!(c.tls.cert, dir.join("cert.pem"));
        assert_eq!(c.storage_path(), PathBuf::from("mimi-data/a.example.redb"));
    }

    #[test]
    fn clear_errors() {
        let dir = std::env::temp_dir().join(format!("mimi-cfg-e-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let base = minimal(&dir);
        let e = load(&format!("{base}[limits]\nmax_body_bytes = 0\n"), &dir).unwrap_err();
        assert_eq!(
            e.to_string(),
            "limits.max_body_bytes: must be greater than 0"
        );
        let e = load(&format!("{base}[limits]\nmax_bodyy = 1\n"), &dir).unwrap_err();
        assert!(e.to_string().contains("unknown field `max_bodyy`"), "{e}");
        let e = load(
            &format!("{base}[[peers]]\ndomain = \"a.example\"\nhttps = \"127.0.0.1:1\"\n"),
            &dir,
        )
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "peers[0].domain: a gateway cannot list itself as a peer"
        );
        let e = load(&base.replace("key.pem", "nope.pem"), &dir).unwrap_err();
        assert!(e.to_string().starts_with("tls.key: "), "{e}");
    }

    #[test]
    fn environment_overrides() {
        let dir = std::env::temp_dir().join(format!("mimi-cfg-v-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut c = load(&minimal(&dir), &dir).unwrap();
        c.apply_env(|k| match k {
            "MIMI_LISTEN_QUIC" => Some("off".into()),
            "MIMI_LISTEN_HTTPS" => Some("127.0.0.1:9999".into()),
            _ => None,
        })
        .unwrap();
        assert_eq!(c.listen.quic, None);
        assert_eq!(c.listen.https.port(), 9999);
        let e = c
            .apply_env(|k| (k == "MIMI_LISTEN_ADMIN").then(|| "nope".into()))
            .unwrap_err();
        assert!(
            e.to_string()
                .starts_with("environment variable MIMI_LISTEN_ADMIN=\"nope\" is invalid"),
            "{e}"
        );
    }
}
