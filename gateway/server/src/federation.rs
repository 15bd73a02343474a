//! The one handler set for MIMI federation requests, whatever the transport (HTTP/3 or
//! HTTPS). It enforces, in order: a verified peer identity (the client certificate's domain),
//! `Host` naming us, `From: mimi@<domain>` equal to the certificate's domain, the endpoint and
//! method, the media type, the body size, and the peer's rate and concurrency; then hands the
//! request to the engine. Every refusal says which check failed.

use std::sync::Arc;

use bytes::Bytes;
use http::Method;
use mimi_proto::directory::{Directory, Endpoint};
use mimi_proto::uri::Domain;

use crate::driver::EngineHandle;
use crate::limits::{Admission, Permit, Refused};
use crate::metrics::Metrics;
use crate::store::assets::{AssetError, AssetStore};
use crate::tls::PeerError;

/// Why a body was not read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BodyError {
    /// Larger than the endpoint allows.
    TooLarge(usize),
    /// The transport failed while reading.
    Broken(String),
}

/// A request head as the transports hand it over (the body is read only once the head is
/// admitted, so an unauthenticated or over-limit peer never makes us buffer a body).
#[derive(Debug)]
pub struct Head {
    /// Method.
    pub method: Method,
    /// Path (and query).
    pub path: String,
    /// `Host` / `:authority`.
    pub host: Option<String>,
    /// `From`.
    pub from: Option<String>,
    /// `Content-Type`.
    pub content_type: Option<String>,
    /// `Content-Length`, when declared.
    pub content_length: Option<usize>,
    /// The peer's identity from its certificate.
    pub peer: Result<Domain, PeerError>,
    /// `h3`, `h2` or `http/1.1`.
    pub transport: &'static str,
}

enum Target {
    Directory,
    Asset(String),
    Mimi(Endpoint, String),
    /// A request another node of this cluster hands to the node ordering its slot.
    Forward,
}

/// Where the nodes of a cluster hand each other requests (only over a link whose client
/// certificate names this provider's own domain).
pub const FORWARD_PATH: &str = "/_mimi/cluster/v1/forward";

/// A head that passed every check; holds the peer's in-flight slot until answered.
pub struct Admitted {
    peer: Domain,
    label: String,
    transport: &'static str,
    target: Target,
    /// The most body bytes to read.
    pub limit: usize,
    _permit: Option<Permit>,
    started: std::time::Instant,
}

impl std::fmt::Debug for Admitted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Admitted")
            .field("peer", &self.peer)
            .field("endpoint", &self.label)
            .finish_non_exhaustive()
    }
}

/// A response for the transports to send.
#[derive(Debug, Clone)]
pub struct Outbound {
    /// Status.
    pub status: u16,
    /// Content-Type.
    pub content_type: String,
    /// Body.
    pub body: Bytes,
    /// Retry-After (s).
    pub retry_after: Option<u64>,
}

impl Outbound {
    /// A plain-text response.
    pub fn text(status: u16, msg: impl Into<String>) -> Self {
        let mut b = msg.into();
        b.push('\n');
        Self {
            status,
            content_type: "text/plain; charset=utf-8".into(),
            body: Bytes::from(b),
            retry_after: None,
        }
    }
}

/// The federation handler set.
#[derive(Debug)]
pub struct Federation {
    domain: String,
    prefix: String,
    directory: String,
    max_body: usize,
    notify_max_body: usize,
    engine: EngineHandle,
    admission: Arc<Admission>,
    metrics: Arc<Metrics>,
    assets: AssetStore,
}

impl Federation {
    /// A handler set for `domain`, advertising `public_base` (e.g. `https://a.example:4433/v1`).
    pub fn new(
        domain: &str,
        prefix: &str,
        public_base: &str,
        max_body: usize,
        notify_max_body: usize,
        engine: EngineHandle,
        admission: Arc<Admission>,
        metrics: Arc<Metrics>,
        assets: AssetStore,
    ) -> Self {
        Self {
            domain: domain.to_owned(),
            prefix: prefix.to_owned(),
            directory: Directory::for_base(public_base).to_json(),
            max_body,
            notify_max_body,
            engine,
            admission,
            metrics,
            assets,
        }
    }

    /// Checks a request head: identity, `Host`, `From`, route, method, media type, declared
    /// size, and the peer's rate and concurrency. A refusal is counted in the metrics.
    ///
    /// # Errors
    /// The response to send instead of reading the body.
    pub fn admit(&self, head: &Head) -> Result<Admitted, Outbound> {
        let peer_label = head
            .peer
            .as_ref()
            .map_or_else(|_| "unauthenticated".to_owned(), ToString::to_string);
        self.check(head)
            .inspect_err(|(label, out)| {
                self.metrics.request(
                    label,
                    out.status,
                    &peer_label,
                    head.transport,
                    std::time::Duration::ZERO,
                );
                tracing::debug!(status = out.status, endpoint = %label, "refused");
            })
            .map_err(|(_, out)| out)
    }

    fn check(&self, head: &Head) -> Result<Admitted, (String, Outbound)> {
        let path = head.path.split('?').next().unwrap_or("").to_owned();
        let peer = match &head.peer {
            Ok(p) => p.clone(),
            // A handshake without a certificate never gets here; a valid certificate that does
            // not name an acceptable peer does.
            Err(e) => {
                return Err((
                    "identity".into(),
                    Outbound::text(403, format!("client certificate rejected: {e}")),
                ));
            }
        };
        if peer.as_str() == self.domain {
            return self
                .node(head, &path, peer)
                .map_err(|o| ("identity".to_owned(), o));
        }
        let checked = mimi_proto::head::check(
            &mimi_proto::head::Head {
                method: head.method.as_str(),
                path: &path,
                host: head.host.as_deref(),
                from: head.from.as_deref(),
                content_type: head.content_type.as_deref(),
                content_length: head.content_length,
            },
            peer.as_str(),
            &mimi_proto::head::Limits {
                domain: &self.domain,
                prefix: &self.prefix,
                max_body: self.max_body,
                notify_max_body: self.notify_max_body,
            },
        )
        .map_err(|r| (r.label, Outbound::text(r.status, r.reason)))?;
        let (label, limit) = (checked.label, checked.limit);
        let target = match checked.target {
            mimi_proto::head::Target::Directory => Target::Directory,
            mimi_proto::head::Target::Asset(id) => Target::Asset(id),
            mimi_proto::head::Target::Mimi(e, v) => Target::Mimi(e, v),
        };
        let permit = match self.admission.admit(peer.as_str()) {
            Ok(p) => p,
            Err(Refused::Rate(s)) => {
                return Err((
                    label,
                    Outbound {
                        retry_after: Some(s),
                        ..Outbound::text(
                            429,
                            format!("{peer} exceeds its request rate; retry after {s} s"),
                        )
                    },
                ));
            }
            Err(Refused::Concurrency(n)) => {
                return Err((
                    label,
                    Outbound {
                        retry_after: Some(1),
                        ..Outbound::text(
                            429,
                            format!(
                                "{peer} already has {n} requests in flight, the most this gateway allows; retry after 1 s"
                            ),
                        )
                    },
                ));
            }
        };
        Ok(Admitted {
            peer,
            label,
            transport: head.transport,
            target,
            limit,
            _permit: Some(permit),
            started: std::time::Instant::now(),
        })
    }

    /// A request from another node of this cluster (its certificate names our own domain):
    /// only forwarded requests are taken from it.
    fn node(&self, head: &Head, path: &str, peer: Domain) -> Result<Admitted, Outbound> {
        if path != FORWARD_PATH || head.method != Method::POST {
            return Err(Outbound::text(
                403,
                "a certificate of this provider's own domain may only forward requests between the nodes of its cluster (POST /_mimi/cluster/v1/forward)",
            ));
        }
        let limit = self.max_body.max(self.notify_max_body) + (64 << 10);
        if head.content_length.is_some_and(|n| n > limit) {
            return Err(Outbound::text(
                413,
                format!("a forwarded request is at most {limit} bytes"),
            ));
        }
        Ok(Admitted {
            peer,
            label: "cluster_forward".into(),
            transport: head.transport,
            target: Target::Forward,
            limit,
            _permit: None,
            started: std::time::Instant::now(),
        })
    }

    /// Handles an admitted request with its body; answers 503 if the engine does not answer
    /// within `timeout` (the request may still take effect: MIMI requests are safe to retry).
    pub async fn complete(
        &self,
        a: Admitted,
        body: Result<Bytes, BodyError>,
        timeout: std::time::Duration,
    ) -> Outbound {
        let out = match body {
            Err(BodyError::TooLarge(limit)) => Outbound::text(
                413,
                format!("the body exceeds the {limit}-byte limit of {}", a.label),
            ),
            Err(BodyError::Broken(e)) => {
                Outbound::text(400, format!("could not read the body: {e}"))
            }
            Ok(body) => match tokio::time::timeout(timeout, self.run(&a, body)).await {
                Ok(o) => o,
                Err(_) => Outbound {
                    retry_after: Some(1),
                    ..Outbound::text(503, "the request timed out inside the gateway; retry")
                },
            },
        };
        self.metrics.request(
            &a.label,
            out.status,
            a.peer.as_str(),
            a.transport,
            a.started.elapsed(),
        );
        tracing::debug!(status = out.status, endpoint = %a.label, "answered");
        out
    }

    async fn run(&self, a: &Admitted, body: Bytes) -> Outbound {
        match &a.target {
            Target::Directory => Outbound {
                status: 200,
                content_type: "application/json".into(),
                body: Bytes::from(self.directory.clone()),
                retry_after: None,
            },
            Target::Asset(id) => self.asset(id).await,
            Target::Forward => match crate::cluster::wire::decode_input(&body) {
                Ok(input) => Outbound {
                    status: 200,
                    content_type: crate::cluster::wire::MEDIA_TYPE.into(),
                    body: Bytes::from(crate::cluster::wire::encode_response(
                        &self.engine.local(input).await,
                    )),
                    retry_after: None,
                },
                Err(e) => Outbound::text(400, e.to_string()),
            },
            Target::Mimi(endpoint, value) => {
                let r = self
                    .engine
                    .peer(a.peer.clone(), *endpoint, value.clone(), body)
                    .await;
                Outbound::from(r)
            }
        }
    }

    async fn asset(&self, id: &str) -> Outbound {
        let assets = self.assets.clone();
        let id = id.to_owned();
        match tokio::task::spawn_blocking(move || assets.get(&id)).await {
            Ok(Ok(b)) => Outbound {
                status: 200,
                content_type: "application/octet-stream".into(),
                body: Bytes::from(b),
                retry_after: None,
            },
            Ok(Err(AssetError::NotFound)) => Outbound::text(404, "no such asset"),
            _ => Outbound {
                retry_after: Some(1),
                ..Outbound::text(503, "asset storage failure; retry")
            },
        }
    }
}

impl From<mimi_engine::Response> for Outbound {
    fn from(r: mimi_engine::Response) -> Self {
        use mimi_engine::Body;
        let (content_type, body) = match r.body {
            Body::Empty => ("text/plain; charset=utf-8", Bytes::new()),
            Body::Mimi(b) => (mimi_proto::media::BODY, b),
            Body::Asset(b) => ("application/octet-stream", b),
            Body::Refused(x) => ("text/plain; charset=utf-8", Bytes::from(format!("{x}\n"))),
            Body::Client(_) => ("text/plain; charset=utf-8", Bytes::new()),
        };
        Self {
            status: r.status,
            content_type: content_type.into(),
            body,
            retry_after: r.retry_after_s,
        }
    }
}
