//! Requests to peer providers: HTTP/3 over QUIC preferred, HTTPS (HTTP/2) as fallback, one
//! cached connection per peer and transport, mutual TLS, and each peer's directory document
//! fetched and cached.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use bytes::Bytes;
use http::{Method, Request};
use mimi_engine::Reply;
use mimi_proto::directory::{Directory, Endpoint, WELL_KNOWN_PATH};

use crate::config::Config;
use crate::metrics::Metrics;

mod transport;
use transport::{H2Sender, H3Sender};

/// Largest response body read from a peer for a MIMI request (asset downloads have their
/// own cap, the asset size limit).
const MAX_RESPONSE: usize = 16 << 20;
/// How long a peer whose QUIC listener failed is reached over HTTPS only.
const NO_QUIC_BACKOFF: Duration = Duration::from_secs(60);

/// A peer's HTTP response.
#[derive(Debug, Clone)]
pub struct HttpReply {
    /// Status.
    pub status: u16,
    /// Body.
    pub body: Bytes,
    /// Retry-After, seconds.
    pub retry_after_s: Option<u64>,
    /// `h3` or `h2`.
    pub transport: &'static str,
}

/// Why a request to a peer produced no HTTP response.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PeerError {
    /// Not in `[[peers]]`.
    #[error("{0} is not a configured peer")]
    UnknownPeer(String),
    /// An asset URL whose host belongs to no configured peer.
    #[error("{0} is not an asset host of a configured peer")]
    NotAssetHost(String),
    /// An asset URL that is not `https://…`.
    #[error("{0} is not an https URL")]
    NotHttps(String),
    /// No answer within `limits.request_timeout_ms`.
    #[error("{peer} did not answer within {ms} ms")]
    Timeout {
        /// The peer.
        peer: String,
        /// The limit.
        ms: u128,
    },
    /// The transport could not be set up (socket, QUIC, TLS, HTTP handshake).
    #[error("{transport} connection to {peer}: {detail}")]
    Connect {
        /// The peer.
        peer: String,
        /// `h3` or `h2`.
        transport: &'static str,
        /// What failed.
        detail: String,
    },
    /// The connection broke during the exchange.
    #[error("{transport} exchange with {peer}: {detail}")]
    Exchange {
        /// The peer.
        peer: String,
        /// `h3` or `h2`.
        transport: &'static str,
        /// What failed.
        detail: String,
    },
    /// The response body is over the cap for this request.
    #[error("response from {peer} exceeds {max} bytes")]
    TooLarge {
        /// The peer.
        peer: String,
        /// The cap.
        max: usize,
    },
    /// The directory document could not be had.
    #[error("{peer}'s directory: {detail}")]
    Directory {
        /// The peer.
        peer: String,
        /// Status and body, or the parse error.
        detail: String,
    },
    /// The request task ended without a result.
    #[error("request task failed: {0}")]
    Task(String),
}

impl PeerError {
    fn connect(peer: &str, transport: &'static str, e: impl std::fmt::Display) -> Self {
        Self::Connect {
            peer: peer.to_owned(),
            transport,
            detail: e.to_string(),
        }
    }
    fn exchange(peer: &str, transport: &'static str, e: impl std::fmt::Display) -> Self {
        Self::Exchange {
            peer: peer.to_owned(),
            transport,
            detail: e.to_string(),
        }
    }
}

/// What the operator sees of a link.
#[derive(Debug, Clone, Default)]
struct LinkStats {
    last_answer: Option<Instant>,
    last_error: Option<String>,
    failures: u64,
}

/// A configured peer and its link, for the admin API.
#[derive(Debug, Clone)]
pub struct LinkState {
    /// Domain.
    pub domain: String,
    /// QUIC address.
    pub quic: Option<SocketAddr>,
    /// HTTPS address.
    pub https: SocketAddr,
    /// Configured transport.
    pub transport: String,
    /// An HTTP/3 connection is cached.
    pub h3_open: bool,
    /// An HTTPS connection is cached and open.
    pub https_open: bool,
    /// HTTP/3 skipped for this long.
    pub quic_backoff: Option<Duration>,
    /// Since the last answer.
    pub last_answer: Option<Duration>,
    /// The last error, if the last request failed.
    pub last_error: Option<String>,
    /// Failures in a row.
    pub failures: u64,
}

/// How long setting up one connection may take before the next address is tried.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// Where a peer (or another node of this cluster) is reached.
#[derive(Debug, Clone)]
struct PeerAddr {
    /// `(quic, https)` of each of its nodes; `at` is the one in use.
    addrs: Vec<(Option<SocketAddr>, SocketAddr)>,
    at: usize,
    transport: String,
    /// The name its certificate carries (the peer's domain; ours for a node of this cluster).
    server_name: String,
}

impl PeerAddr {
    fn quic(&self) -> Option<SocketAddr> {
        self.addrs.get(self.at).and_then(|a| a.0)
    }
    fn https(&self) -> SocketAddr {
        self.addrs[self.at.min(self.addrs.len() - 1)].1
    }
}

/// The client side of federation links.
pub struct PeerClient {
    our_domain: String,
    credentials: Arc<crate::reload::Credentials>,
    peers: Mutex<BTreeMap<String, PeerAddr>>,
    quic: Option<quinn::Endpoint>,
    h3: tokio::sync::Mutex<HashMap<String, H3Sender>>,
    h2: tokio::sync::Mutex<HashMap<String, H2Sender>>,
    no_quic_until: Mutex<HashMap<String, Instant>>,
    directories: Mutex<HashMap<String, (Directory, Instant)>>,
    /// Per peer: last answer, last error (for the operator).
    links: Mutex<HashMap<String, LinkStats>>,
    /// Asset host → the peer it belongs to.
    asset_hosts: BTreeMap<String, String>,
    timeout: Duration,
    idle_timeout: Duration,
    directory_ttl: Duration,
    prefix: String,
    metrics: Arc<Metrics>,
}

impl std::fmt::Debug for PeerClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PeerClient")
            .field("our_domain", &self.our_domain)
            .field(
                "peers",
                &self
                    .peers
                    .lock()
                    .map(|p| p.keys().cloned().collect::<Vec<_>>())
                    .unwrap_or_default(),
            )
            .finish_non_exhaustive()
    }
}

impl PeerClient {
    /// From the configuration.
    ///
    /// # Errors
    /// When the QUIC client endpoint cannot be bound.
    pub fn new(
        cfg: &Config,
        credentials: Arc<crate::reload::Credentials>,
        metrics: Arc<Metrics>,
    ) -> anyhow::Result<Self> {
        let quic = if cfg
            .peers
            .iter()
            .any(|p| p.quic.is_some() && p.transport != "https")
            || cfg.storage.backend == crate::config::StorageBackend::Postgres
        {
            let bind: SocketAddr = if cfg.peers.iter().filter_map(|p| p.quic).any(|a| a.is_ipv6()) {
                "[::]:0".parse()?
            } else {
                "0.0.0.0:0".parse()?
            };
            Some(quinn::Endpoint::client(bind).context("cannot bind the QUIC client endpoint")?)
        } else {
            None
        };
        Ok(Self {
            our_domain: cfg.domain.clone(),
            credentials,
            peers: Mutex::new(
                cfg.peers
                    .iter()
                    .map(|p| {
                        (
                            p.domain.clone(),
                            PeerAddr {
                                addrs: std::iter::once((p.quic, p.https))
                                    .chain(p.addresses.iter().map(|a| (a.quic, a.https)))
                                    .collect(),
                                at: 0,
                                transport: p.transport.clone(),
                                server_name: p.domain.clone(),
                            },
                        )
                    })
                    .collect(),
            ),
            quic,
            h3: tokio::sync::Mutex::new(HashMap::new()),
            h2: tokio::sync::Mutex::new(HashMap::new()),
            no_quic_until: Mutex::new(HashMap::new()),
            directories: Mutex::new(HashMap::new()),
            links: Mutex::new(HashMap::new()),
            asset_hosts: cfg
                .peers
                .iter()
                .flat_map(|p| {
                    p.asset_domains
                        .iter()
                        .map(|h| (h.to_ascii_lowercase(), p.domain.clone()))
                        .chain([(p.domain.to_ascii_lowercase(), p.domain.clone())])
                })
                .collect(),
            timeout: Duration::from_millis(cfg.limits.request_timeout_ms),
            idle_timeout: Duration::from_millis(cfg.limits.idle_timeout_ms),
            directory_ttl: Duration::from_secs(cfg.federation.directory_ttl_s),
            prefix: cfg.federation.path_prefix.clone(),
            metrics,
        })
    }

    /// Changes where a configured peer is reached (in-process federations whose gateways bind
    /// port 0 learn each other's addresses after starting). Cached connections are dropped.
    pub async fn set_address(&self, domain: &str, quic: Option<SocketAddr>, https: SocketAddr) {
        if let Ok(mut p) = self.peers.lock()
            && let Some(a) = p.get_mut(domain)
        {
            a.addrs[0] = (quic, https);
            a.at = 0;
        }
        self.h3.lock().await.remove(domain);
        self.h2.lock().await.remove(domain);
    }

    /// Sets where another node of this cluster is reached (`key` names the link; its
    /// certificate must name this gateway's own domain). Cached connections to an address
    /// that changed are dropped.
    pub async fn set_node(&self, key: &str, quic: Option<SocketAddr>, https: SocketAddr) {
        let changed = self.peers.lock().is_ok_and(|mut p| {
            let new = PeerAddr {
                addrs: vec![(quic, https)],
                at: 0,
                transport: "auto".into(),
                server_name: self.our_domain.clone(),
            };
            let changed = p.get(key).is_none_or(|a| a.addrs != new.addrs);
            p.insert(key.to_owned(), new);
            changed
        });
        if changed {
            self.h3.lock().await.remove(key);
            self.h2.lock().await.remove(key);
        }
    }

    /// Moves `peer` to its next address after `failed` could not be reached; whether there
    /// was another one.
    async fn next_address(&self, peer: &str, failed: usize) -> bool {
        let moved = self.peers.lock().is_ok_and(|mut p| {
            p.get_mut(peer).is_some_and(|a| {
                if a.addrs.len() < 2 {
                    return false;
                }
                if a.at == failed {
                    a.at = (a.at + 1) % a.addrs.len();
                }
                true
            })
        });
        if moved {
            self.h3.lock().await.remove(peer);
            self.h2.lock().await.remove(peer);
        }
        moved
    }

    /// Closes every cached connection (after a certificate reload, new connections present
    /// the new certificate).
    pub async fn drop_connections(&self) {
        self.h3.lock().await.clear();
        self.h2.lock().await.clear();
    }

    /// Whether `domain` is a configured peer.
    pub fn knows(&self, domain: &str) -> bool {
        self.peers.lock().is_ok_and(|p| p.contains_key(domain))
    }

    fn use_quic(&self, peer: &str, a: &PeerAddr) -> bool {
        if a.quic().is_none() || a.transport == "https" || self.quic.is_none() {
            return false;
        }
        if a.transport == "h3" {
            return true;
        }
        self.no_quic_until
            .lock()
            .map(|m| m.get(peer).is_none_or(|t| *t <= Instant::now()))
            .unwrap_or(true)
    }

    /// Sends one HTTP request to `peer` (`path` absolute, e.g. `/v1/notify/...`).
    ///
    /// # Errors
    /// Unknown peer, connection or TLS failure, timeout.
    pub async fn request(
        &self,
        peer: &str,
        method: Method,
        path: &str,
        body: Bytes,
    ) -> Result<HttpReply, PeerError> {
        self.request_capped(peer, method, path, body, MAX_RESPONSE)
            .await
    }

    /// [`PeerClient::request`] reading at most `max` response bytes.
    ///
    /// # Errors
    /// Unknown peer, connection or TLS failure, timeout, a response over `max`.
    pub async fn request_capped(
        &self,
        peer: &str,
        method: Method,
        path: &str,
        body: Bytes,
        max: usize,
    ) -> Result<HttpReply, PeerError> {
        let mut tries = 0;
        let r = loop {
            let a = self
                .peers
                .lock()
                .ok()
                .and_then(|p| p.get(peer).cloned())
                .ok_or_else(|| PeerError::UnknownPeer(peer.to_owned()))?;
            let r = self
                .attempt(peer, &a, method.clone(), path, body.clone(), max)
                .await;
            tries += 1;
            match r {
                Err(PeerError::Connect { .. })
                    if tries < a.addrs.len() && self.next_address(peer, a.at).await =>
                {
                    tracing::debug!(peer, "unreachable at one address; trying the next");
                }
                r => break r,
            }
        };
        if let Ok(mut l) = self.links.lock() {
            let s = l.entry(peer.to_owned()).or_default();
            match &r {
                Ok(_) => {
                    s.last_answer = Some(Instant::now());
                    s.last_error = None;
                    s.failures = 0;
                }
                Err(e) => {
                    s.last_error = Some(e.to_string());
                    s.failures += 1;
                }
            }
        }
        r
    }

    /// One request to the address in use, HTTP/3 first when allowed.
    async fn attempt(
        &self,
        peer: &str,
        a: &PeerAddr,
        method: Method,
        path: &str,
        body: Bytes,
        max: usize,
    ) -> Result<HttpReply, PeerError> {
        let fut = async {
            if self.use_quic(peer, a) {
                match self
                    .h3_request(peer, a, method.clone(), path, body.clone(), max)
                    .await
                {
                    Ok(r) => return Ok(r),
                    Err(e) if a.transport == "h3" => return Err(e),
                    Err(e) => {
                        tracing::debug!(peer, error = %e, "HTTP/3 failed; falling back to HTTPS");
                        if let Ok(mut m) = self.no_quic_until.lock() {
                            m.insert(peer.to_owned(), Instant::now() + NO_QUIC_BACKOFF);
                        }
                    }
                }
            }
            self.h2_request(peer, a, method, path, body, max).await
        };
        tokio::time::timeout(self.timeout, fut)
            .await
            .map_err(|_| PeerError::Timeout {
                peer: peer.to_owned(),
                ms: self.timeout.as_millis(),
            })
            .and_then(|r| r)
    }

    /// Every configured peer and its link (for the admin API).
    pub fn link_states(&self) -> Vec<LinkState> {
        let peers: Vec<(String, PeerAddr)> = self
            .peers
            .lock()
            .map(|p| p.iter().map(|(d, a)| (d.clone(), a.clone())).collect())
            .unwrap_or_default();
        let h3: Vec<String> = self
            .h3
            .try_lock()
            .map(|m| m.keys().cloned().collect())
            .unwrap_or_default();
        let h2: Vec<String> = self
            .h2
            .try_lock()
            .map(|m| {
                m.iter()
                    .filter(|(_, s)| !s.is_closed())
                    .map(|(k, _)| k.clone())
                    .collect()
            })
            .unwrap_or_default();
        let links = self.links.lock().map(|l| l.clone()).unwrap_or_default();
        let backoff = self
            .no_quic_until
            .lock()
            .map(|m| m.clone())
            .unwrap_or_default();
        let now = Instant::now();
        peers
            .into_iter()
            .map(|(domain, a)| {
                let s = links.get(&domain).cloned().unwrap_or_default();
                LinkState {
                    h3_open: h3.contains(&domain),
                    https_open: h2.contains(&domain),
                    quic_backoff: backoff
                        .get(&domain)
                        .and_then(|t| t.checked_duration_since(now)),
                    last_answer: s.last_answer.map(|t| t.elapsed()),
                    last_error: s.last_error,
                    failures: s.failures,
                    quic: a.quic(),
                    https: a.https(),
                    transport: a.transport,
                    domain,
                }
            })
            .collect()
    }

    fn request_head(
        &self,
        peer: &str,
        host: &str,
        method: Method,
        path: &str,
        len: usize,
    ) -> Result<Request<()>, PeerError> {
        Request::builder()
            .method(method)
            .uri(format!("https://{host}{path}"))
            .header(http::header::FROM, format!("mimi@{}", self.our_domain))
            .header(http::header::CONTENT_TYPE, mimi_proto::media::BODY)
            .header(http::header::CONTENT_LENGTH, len)
            .body(())
            .map_err(|e| PeerError::connect(peer, "h2", e))
    }

    /// The peer's directory (cached).
    ///
    /// # Errors
    /// Fetch or parse failures.
    pub async fn directory(&self, peer: &str) -> Result<Directory, PeerError> {
        if let Some((d, at)) = self
            .directories
            .lock()
            .ok()
            .and_then(|m| m.get(peer).cloned())
            && at.elapsed() < self.directory_ttl
        {
            return Ok(d);
        }
        let r = self
            .request(peer, Method::GET, WELL_KNOWN_PATH, Bytes::new())
            .await?;
        if r.status != 200 {
            return Err(PeerError::Directory {
                peer: peer.to_owned(),
                detail: format!(
                    "answered {}: {}",
                    r.status,
                    String::from_utf8_lossy(&r.body).trim()
                ),
            });
        }
        let d = Directory::parse(&r.body).map_err(|e| PeerError::Directory {
            peer: peer.to_owned(),
            detail: e.to_string(),
        })?;
        if let Ok(mut m) = self.directories.lock() {
            m.insert(peer.to_owned(), (d.clone(), Instant::now()));
        }
        Ok(d)
    }

    /// Sends a MIMI request, locating the endpoint through the peer's directory.
    ///
    /// # Errors
    /// Transport failures (the engine retries or reports them).
    pub async fn mimi(
        &self,
        peer: &str,
        endpoint: Endpoint,
        target: &str,
        body: Bytes,
    ) -> Result<Reply, PeerError> {
        let path = match self.directory(peer).await {
            Ok(d) => d.url(endpoint, target).and_then(|u| {
                u.split_once("://")
                    .and_then(|(_, rest)| rest.find('/').map(|i| rest[i..].to_owned()))
            }),
            Err(e) => {
                tracing::debug!(peer, error = %e, "no directory; using the canonical path");
                None
            }
        }
        .unwrap_or_else(|| {
            format!(
                "{}/{}/{}",
                self.prefix,
                endpoint.name(),
                mimi_proto::directory::encode_path_value(target)
            )
        });
        let method = if endpoint == Endpoint::ProxyDownload {
            Method::GET
        } else {
            Method::POST
        };
        let started = Instant::now();
        let r = self.request(peer, method, &path, body).await;
        self.metrics.outgoing(
            endpoint.name(),
            peer,
            &r.as_ref()
                .map_or_else(|_| "error".to_owned(), |r| r.status.to_string()),
            r.as_ref().map_or("none", |r| r.transport),
            started.elapsed(),
        );
        let r = r?;
        Ok(Reply {
            status: r.status,
            body: r.body,
            retry_after_ms: r.retry_after_s.map(|s| s * 1000),
        })
    }

    /// Downloads an asset (at most `max` bytes) from `host`, which must be a configured peer
    /// or one of its asset hosts; the request goes over that peer's mutually authenticated
    /// link (the gateways serve assets on their federation listeners).
    ///
    /// # Errors
    /// Unknown host, transport failure, or an asset over `max`.
    pub async fn fetch(&self, host: &str, url: &str, max: usize) -> Result<HttpReply, PeerError> {
        let peer = self
            .asset_hosts
            .get(&host.to_ascii_lowercase())
            .ok_or_else(|| PeerError::NotAssetHost(host.to_owned()))?
            .clone();
        let rest = url
            .strip_prefix("https://")
            .ok_or_else(|| PeerError::NotHttps(url.to_owned()))?;
        let path = rest.find('/').map_or("/", |i| &rest[i..]);
        self.request_capped(&peer, Method::GET, path, Bytes::new(), max)
            .await
    }
}

fn retry_after(h: &http::HeaderMap) -> Option<u64> {
    h.get(http::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}
