//! An HTTP client for the local client API (used by the demo, the end-to-end tests and the
//! bridges; native clients in other languages speak the same HTTP, see docs/client-api.md).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use mimi_proto::client_api::{
    AckRequest, Acked, AssetStored, CreateRoom, DELIVERIES_BINARY, DeliveryPage, Hex, HubInfo,
    PREFIX, PublishKeyPackages, Published, RegisterRequest, Registered, RoomCreated,
    SubscribeRequest, Subscribed,
};
use mimi_proto::codec::Wire;
use mimi_proto::directory::encode_path_value;
use tokio::net::TcpStream;
use tokio::sync::Mutex;

/// Why a client API call failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ApiError {
    /// No connection or a broken one.
    #[error("client API at {addr}: {reason}")]
    Transport {
        /// The API address.
        addr: SocketAddr,
        /// What failed.
        reason: String,
    },
    /// The gateway refused the call.
    #[error("{call} answered {status}: {body}")]
    Status {
        /// Which call.
        call: String,
        /// HTTP status.
        status: u16,
        /// The explanation.
        body: String,
    },
    /// The answer is not what the API documents.
    #[error("{call}: unexpected answer: {reason}")]
    Unexpected {
        /// Which call.
        call: String,
        /// What was wrong.
        reason: String,
    },
}

/// A raw answer.
#[derive(Debug, Clone)]
pub struct ApiResponse {
    /// HTTP status.
    pub status: u16,
    /// Body.
    pub body: Bytes,
    /// Retry-After, seconds.
    pub retry_after: Option<u64>,
}

impl ApiResponse {
    /// The body as lossy text (for error messages).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).trim().to_owned()
    }
}

pub use mimi_proto::client_api::{Delivery, DeliveryKind, EventsPage as Events};

/// The client-API addresses of one provider: one gateway, or the nodes of a cluster (any
/// node serves any request; a client moves to the next address when one cannot be reached).
#[derive(Debug, Clone)]
pub struct Addrs(Arc<[SocketAddr]>);

impl Addrs {
    /// The addresses, in the order they are tried.
    pub fn as_slice(&self) -> &[SocketAddr] {
        &self.0
    }
}

impl From<SocketAddr> for Addrs {
    fn from(a: SocketAddr) -> Self {
        Self(Arc::from([a]))
    }
}

impl From<Vec<SocketAddr>> for Addrs {
    /// # Panics
    /// Never for a non-empty list; an empty one is a programming error.
    fn from(v: Vec<SocketAddr>) -> Self {
        assert!(!v.is_empty(), "a client needs at least one address");
        Self(Arc::from(v))
    }
}

impl From<&[SocketAddr]> for Addrs {
    fn from(v: &[SocketAddr]) -> Self {
        Self::from(v.to_vec())
    }
}

/// A client of one provider's client API, optionally authenticated.
#[derive(Debug)]
pub struct ApiClient {
    addrs: Addrs,
    /// Index into `addrs` of the address in use, shared with clients made by
    /// [`ApiClient::for_token`].
    current: Arc<AtomicUsize>,
    token: Option<String>,
    /// Idle keep-alive connections, shared by the clients made with [`ApiClient::for_token`]
    /// (a bridge acting for many users keeps few connections).
    idle: Arc<Mutex<Vec<SendRequest<Full<Bytes>>>>>,
}

/// Idle connections kept per pool; more are closed after use.
const MAX_IDLE: usize = 32;

/// How long a TCP connection to one address may take before the next address is tried.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// How long a request may wait for its answer (a long-poll: this plus its wait).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

impl ApiClient {
    /// A client of the API at `addr` (or at any of several addresses) without a token
    /// (register, hub info).
    pub fn new(addr: impl Into<Addrs>) -> Self {
        Self {
            addrs: addr.into(),
            current: Arc::default(),
            token: None,
            idle: Arc::default(),
        }
    }

    /// A client presenting `token`.
    pub fn with_token(addr: impl Into<Addrs>, token: &str) -> Self {
        Self {
            token: Some(token.to_owned()),
            ..Self::new(addr)
        }
    }

    /// A client presenting `token` that shares this client's connections.
    pub fn for_token(&self, token: &str) -> Self {
        Self {
            addrs: self.addrs.clone(),
            current: Arc::clone(&self.current),
            token: Some(token.to_owned()),
            idle: Arc::clone(&self.idle),
        }
    }

    /// The client API's address in use.
    pub fn addr(&self) -> SocketAddr {
        let a = self.addrs.as_slice();
        a[self.current.load(Ordering::Relaxed) % a.len()]
    }

    /// Every address this client may use.
    pub fn addrs(&self) -> &Addrs {
        &self.addrs
    }

    /// The token, once registered.
    pub fn token(&self) -> Option<&str> {
        self.token.as_deref()
    }

    fn transport(&self, reason: impl std::fmt::Display) -> ApiError {
        ApiError::Transport {
            addr: self.addr(),
            reason: reason.to_string(),
        }
    }

    /// A new connection: the address in use, else the next ones in turn (the one that
    /// answers becomes the address in use).
    async fn connect(&self) -> Result<TcpStream, ApiError> {
        let n = self.addrs.as_slice().len();
        let start = self.current.load(Ordering::Relaxed);
        let mut last = None;
        for i in 0..n {
            let at = (start + i) % n;
            let addr = self.addrs.as_slice()[at];
            match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr)).await {
                Ok(Ok(tcp)) => {
                    if i > 0 {
                        self.current.store(at, Ordering::Relaxed);
                    }
                    return Ok(tcp);
                }
                Ok(Err(e)) => {
                    last = Some(ApiError::Transport {
                        addr,
                        reason: e.to_string(),
                    })
                }
                Err(_) => {
                    last = Some(ApiError::Transport {
                        addr,
                        reason: format!("no connection within {CONNECT_TIMEOUT:?}"),
                    });
                }
            }
        }
        Err(last.unwrap_or_else(|| self.transport("no address")))
    }

    async fn connection(&self) -> Result<SendRequest<Full<Bytes>>, ApiError> {
        while let Some(mut s) = self.idle.lock().await.pop() {
            if s.ready().await.is_ok() {
                return Ok(s);
            }
        }
        let tcp = self.connect().await?;
        let _ = tcp.set_nodelay(true);
        let (s, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
            .await
            .map_err(|e| self.transport(e))?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(s)
    }

    /// Sends one request (`path` under `/client/v1`).
    ///
    /// # Errors
    /// [`ApiError::Transport`] only; HTTP errors are in the response.
    pub async fn request(
        &self,
        method: Method,
        path: &str,
        content_type: &str,
        body: Vec<u8>,
    ) -> Result<ApiResponse, ApiError> {
        self.send(method, path, content_type, None, body, Duration::ZERO)
            .await
    }

    async fn request_accept(
        &self,
        method: Method,
        path: &str,
        accept: &str,
        wait: Duration,
    ) -> Result<ApiResponse, ApiError> {
        self.send(method, path, "", Some(accept), Vec::new(), wait)
            .await
    }

    async fn send(
        &self,
        method: Method,
        path: &str,
        content_type: &str,
        accept: Option<&str>,
        body: Vec<u8>,
        wait: Duration,
    ) -> Result<ApiResponse, ApiError> {
        let mut b = Request::builder()
            .method(method)
            .uri(format!("{PREFIX}{path}"))
            .header(http::header::HOST, self.addr().to_string());
        if !body.is_empty() {
            b = b.header(http::header::CONTENT_TYPE, content_type);
        }
        if let Some(a) = accept {
            b = b.header(http::header::ACCEPT, a);
        }
        if let Some(t) = &self.token {
            b = b.header(http::header::AUTHORIZATION, format!("Bearer {t}"));
        }
        let req = b
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| self.transport(e))?;
        let mut conn = self.connection().await?;
        // A gateway cut off by a partition never answers (no reset): give up after the
        // request timeout (plus the long-poll's wait), so the caller retries elsewhere.
        let exchange = async {
            let resp = conn
                .send_request(req)
                .await
                .map_err(|e| self.transport(e))?;
            let status = resp.status().as_u16();
            let retry_after = resp
                .headers()
                .get(http::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse().ok());
            let body = resp
                .into_body()
                .collect()
                .await
                .map_err(|e| self.transport(e))?
                .to_bytes();
            Ok::<_, ApiError>((status, retry_after, body))
        };
        let (status, retry_after, body) = tokio::time::timeout(REQUEST_TIMEOUT + wait, exchange)
            .await
            .map_err(|_| {
                self.transport(format!("no answer within {:?}", REQUEST_TIMEOUT + wait))
            })??;
        {
            let mut idle = self.idle.lock().await;
            if idle.len() < MAX_IDLE {
                idle.push(conn);
            }
        }
        Ok(ApiResponse {
            status,
            body,
            retry_after,
        })
    }

    async fn json_call<T: serde::de::DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&impl serde::Serialize>,
        expect: u16,
    ) -> Result<T, ApiError> {
        let raw = body
            .map(|v| serde_json::to_vec(v).unwrap_or_default())
            .unwrap_or_default();
        let r = self
            .request(method.clone(), path, "application/json", raw)
            .await?;
        let call = format!("{method} {path}");
        if r.status != expect {
            return Err(ApiError::Status {
                call,
                status: r.status,
                body: r.text(),
            });
        }
        serde_json::from_slice(&r.body).map_err(|e| ApiError::Unexpected {
            call,
            reason: e.to_string(),
        })
    }

    /// Registers a client and keeps its token. A new user needs open registration (or an
    /// admin or provider token in this client); a new device of an existing user needs the
    /// token of one of its devices ([`ApiClient::link_device`]).
    ///
    /// # Errors
    /// Refusals (409 for a client that exists) and transport failures.
    pub async fn register(
        &mut self,
        user: &str,
        device: &str,
        display_name: &str,
    ) -> Result<Registered, ApiError> {
        let reg: Registered = self
            .json_call(
                Method::POST,
                "/register",
                Some(&RegisterRequest {
                    user: user.to_owned(),
                    device: device.to_owned(),
                    display_name: display_name.to_owned(),
                }),
                201,
            )
            .await?;
        self.token.clone_from(&reg.token);
        Ok(reg)
    }

    /// Registers a new device of this client's own user (device linking): the request is
    /// authenticated with this client's token; the new client's API client is returned.
    ///
    /// # Errors
    /// Refusals and transport failures.
    pub async fn link_device(&self, device: &str) -> Result<(Self, Registered), ApiError> {
        let who = self.whoami().await?;
        let linker = Self {
            addrs: self.addrs.clone(),
            current: Arc::clone(&self.current),
            token: self.token.clone(),
            idle: Arc::default(),
        };
        let reg: Registered = linker
            .json_call(
                Method::POST,
                "/register",
                Some(&RegisterRequest {
                    user: who.user.name().to_owned(),
                    device: device.to_owned(),
                    display_name: String::new(),
                }),
                201,
            )
            .await?;
        let token = reg.token.clone().unwrap_or_default();
        Ok((Self::with_token(self.addrs.clone(), &token), reg))
    }

    /// Who this client's token is.
    ///
    /// # Errors
    /// As for every call.
    pub async fn whoami(&self) -> Result<Registered, ApiError> {
        self.json_call(Method::GET, "/whoami", None::<&()>, 200)
            .await
    }

    /// The hub's external-sender entry (for new rooms).
    ///
    /// # Errors
    /// As for every call.
    pub async fn external_sender(&self) -> Result<Vec<u8>, ApiError> {
        let h: HubInfo = self
            .json_call(Method::GET, "/hub", None::<&()>, 200)
            .await?;
        Ok(h.external_sender.0)
    }

    /// Publishes KeyPackages (and optionally a last-resort one).
    ///
    /// # Errors
    /// As for every call.
    pub async fn publish_with(
        &self,
        kps: &[Vec<u8>],
        last_resort: Option<Vec<u8>>,
    ) -> Result<usize, ApiError> {
        let p: Published = self
            .json_call(
                Method::POST,
                "/key-packages",
                Some(&PublishKeyPackages {
                    key_packages: kps.iter().cloned().map(Hex).collect(),
                    last_resort: last_resort.map(Hex),
                }),
                200,
            )
            .await?;
        Ok(p.published)
    }

    /// Publishes KeyPackages.
    ///
    /// # Errors
    /// As for every call.
    pub async fn publish(&self, kps: &[Vec<u8>]) -> Result<(), ApiError> {
        self.publish_with(kps, None).await.map(|_| ())
    }

    /// How many unused one-time KeyPackages this client has left on its gateway.
    ///
    /// # Errors
    /// As for every call.
    pub async fn key_packages_left(&self) -> Result<usize, ApiError> {
        let p: Published = self
            .json_call(
                Method::POST,
                "/key-packages",
                Some(&PublishKeyPackages {
                    key_packages: vec![],
                    last_resort: None,
                }),
                200,
            )
            .await?;
        Ok(p.available)
    }

    /// Creates a room hosted by this gateway.
    ///
    /// # Errors
    /// As for every call.
    pub async fn create_room(
        &self,
        room: &str,
        group_info: &[u8],
        ratchet_tree: &[u8],
    ) -> Result<RoomCreated, ApiError> {
        let room = room
            .parse()
            .map_err(|e: mimi_proto::uri::UriError| ApiError::Unexpected {
                call: "POST /rooms".into(),
                reason: e.to_string(),
            })?;
        self.json_call(
            Method::POST,
            "/rooms",
            Some(&CreateRoom {
                room,
                group_info: Hex(group_info.to_vec()),
                ratchet_tree: Hex(ratchet_tree.to_vec()),
            }),
            201,
        )
        .await
    }

    /// A room request (`update`, `submit`, `group-info`, `report-abuse`) relayed to its hub.
    ///
    /// # Errors
    /// Transport failures only; the hub's answer is returned as is.
    pub async fn room(
        &self,
        action: &str,
        room: &str,
        body: Vec<u8>,
    ) -> Result<ApiResponse, ApiError> {
        self.request(
            Method::POST,
            &format!("/rooms/{}/{action}", encode_path_value(room)),
            mimi_proto::media::BODY,
            body,
        )
        .await
    }

    /// A KeyMaterialRequest for `user`, through the room's hub.
    ///
    /// # Errors
    /// Transport failures only.
    pub async fn key_material(&self, user: &str, body: Vec<u8>) -> Result<ApiResponse, ApiError> {
        self.request(
            Method::POST,
            &format!("/key-material/{}", encode_path_value(user)),
            mimi_proto::media::BODY,
            body,
        )
        .await
    }

    /// Deliveries after `after`, waiting up to `wait_s` seconds for the first one (the binary
    /// page format).
    ///
    /// # Errors
    /// As for every call.
    pub async fn events(&self, after: u64, limit: usize, wait_s: u64) -> Result<Events, ApiError> {
        let path = format!("/events?after={after}&limit={limit}&wait={wait_s}");
        let r = self
            .request_accept(
                Method::GET,
                &path,
                DELIVERIES_BINARY,
                Duration::from_secs(wait_s),
            )
            .await?;
        let call = format!("GET {path}");
        if r.status != 200 {
            return Err(ApiError::Status {
                call,
                status: r.status,
                body: r.text(),
            });
        }
        DeliveryPage::from_bytes(&r.body)
            .and_then(|p| p.into_events(""))
            .map_err(|e| ApiError::Unexpected {
                call,
                reason: e.to_string(),
            })
    }

    /// Acknowledges everything up to `upto`.
    ///
    /// # Errors
    /// As for every call.
    pub async fn ack(&self, upto: u64) -> Result<Acked, ApiError> {
        self.json_call(Method::POST, "/ack", Some(&AckRequest { upto }), 200)
            .await
    }

    /// Starts or stops deliveries of a room (only a member may start them).
    ///
    /// # Errors
    /// As for every call.
    pub async fn subscribe(&self, room: &str, on: bool) -> Result<(), ApiError> {
        let room = room
            .parse()
            .map_err(|e: mimi_proto::uri::UriError| ApiError::Unexpected {
                call: "POST /subscribe".into(),
                reason: e.to_string(),
            })?;
        self.json_call::<Subscribed>(
            Method::POST,
            "/subscribe",
            Some(&SubscribeRequest { room, on }),
            200,
        )
        .await
        .map(|_| ())
    }

    /// Downloads an asset by URL (this provider's, or a peer's through this gateway).
    ///
    /// # Errors
    /// As for every call.
    pub async fn download(&self, url: &str) -> Result<Vec<u8>, ApiError> {
        let r = self
            .request(
                Method::GET,
                &format!("/download?url={}", encode_path_value(url)),
                "",
                Vec::new(),
            )
            .await?;
        if r.status != 200 {
            return Err(ApiError::Status {
                call: "GET /download".into(),
                status: r.status,
                body: r.text(),
            });
        }
        Ok(r.body.to_vec())
    }

    /// Uploads an (encrypted) asset; returns its download URL.
    ///
    /// # Errors
    /// As for every call.
    pub async fn upload(&self, bytes: Vec<u8>) -> Result<String, ApiError> {
        let r = self
            .request(Method::POST, "/assets", "application/octet-stream", bytes)
            .await?;
        if r.status != 201 {
            return Err(ApiError::Status {
                call: "POST /assets".into(),
                status: r.status,
                body: r.text(),
            });
        }
        let a: AssetStored = serde_json::from_slice(&r.body).map_err(|e| ApiError::Unexpected {
            call: "POST /assets".into(),
            reason: e.to_string(),
        })?;
        Ok(a.url)
    }
}
