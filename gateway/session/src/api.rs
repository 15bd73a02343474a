//! An HTTP client for the local client API (used by the demo, the end-to-end tests and the
//! bridges; native clients in other languages speak the same HTTP, see docs/client-api.md).

use std::net::SocketAddr;

use bytes::Bytes;
use http::{Method, Request};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use mimi_proto::directory::encode_path_value;
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio::sync::Mutex;

/// The route prefix of the client API.
pub const PREFIX: &str = "/client/v1";

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

/// One delivery from `GET /events`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// Position in the client's queue.
    pub seq: u64,
    /// The room URI.
    pub room: String,
    /// Hub acceptance time (ms).
    pub timestamp: u64,
    /// `application`, `commit`, `proposal`, `welcome` or `consent`.
    pub kind: String,
    /// The FanoutMessage (or ConsentEntry) bytes.
    pub body: Vec<u8>,
}

/// A page of deliveries.
#[derive(Debug, Clone, Default)]
pub struct Events {
    /// In queue order.
    pub events: Vec<Delivery>,
    /// Deliveries were dropped because the queue overflowed.
    pub gap: bool,
}

/// A client of one gateway's client API, optionally authenticated.
#[derive(Debug)]
pub struct ApiClient {
    addr: SocketAddr,
    token: Option<String>,
    idle: Mutex<Vec<SendRequest<Full<Bytes>>>>,
}

impl ApiClient {
    /// A client of the API at `addr` without a token (register, hub info).
    pub fn new(addr: SocketAddr) -> Self {
        Self {
            addr,
            token: None,
            idle: Mutex::new(Vec::new()),
        }
    }

    /// A client presenting `token`.
    pub fn with_token(addr: SocketAddr, token: &str) -> Self {
        Self {
            addr,
            token: Some(token.to_owned()),
            idle: Mutex::new(Vec::new()),
        }
    }

    /// The token, once registered.
    pub fn token(&self) -> Option<&str> {
        self.token.as_deref()
    }

    fn transport(&self, reason: impl std::fmt::Display) -> ApiError {
        ApiError::Transport {
            addr: self.addr,
            reason: reason.to_string(),
        }
    }

    async fn connection(&self) -> Result<SendRequest<Full<Bytes>>, ApiError> {
        while let Some(mut s) = self.idle.lock().await.pop() {
            if s.ready().await.is_ok() {
                return Ok(s);
            }
        }
        let tcp = TcpStream::connect(self.addr)
            .await
            .map_err(|e| self.transport(e))?;
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
        let mut b = Request::builder()
            .method(method)
            .uri(format!("{PREFIX}{path}"))
            .header(http::header::HOST, self.addr.to_string());
        if !body.is_empty() {
            b = b.header(http::header::CONTENT_TYPE, content_type);
        }
        if let Some(t) = &self.token {
            b = b.header(http::header::AUTHORIZATION, format!("Bearer {t}"));
        }
        let req = b
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| self.transport(e))?;
        let mut conn = self.connection().await?;
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
        self.idle.lock().await.push(conn);
        Ok(ApiResponse {
            status,
            body,
            retry_after,
        })
    }

    async fn json_call(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
        expect: u16,
    ) -> Result<Value, ApiError> {
        let raw = body.map(|v| v.to_string().into_bytes()).unwrap_or_default();
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

    /// Registers a client and keeps its token; returns the registration (client_id, user,
    /// client_uri, token).
    ///
    /// # Errors
    /// Refusals (409 for a client that exists) and transport failures.
    pub async fn register(
        &mut self,
        user: &str,
        device: &str,
        display_name: &str,
    ) -> Result<Value, ApiError> {
        let v = self
            .json_call(
                Method::POST,
                "/register",
                Some(json!({"user": user, "device": device, "display_name": display_name})),
                201,
            )
            .await?;
        self.token = v["token"].as_str().map(str::to_owned);
        Ok(v)
    }

    /// The hub's external-sender entry (for new rooms).
    ///
    /// # Errors
    /// As for every call.
    pub async fn external_sender(&self) -> Result<Vec<u8>, ApiError> {
        let v = self.json_call(Method::GET, "/hub", None, 200).await?;
        v["external_sender"]
            .as_str()
            .and_then(|h| hex::decode(h).ok())
            .ok_or_else(|| ApiError::Unexpected {
                call: "GET /hub".into(),
                reason: "no external_sender".into(),
            })
    }

    /// Publishes KeyPackages.
    ///
    /// # Errors
    /// As for every call.
    pub async fn publish(&self, kps: &[Vec<u8>]) -> Result<(), ApiError> {
        let list: Vec<String> = kps.iter().map(hex::encode).collect();
        self.json_call(
            Method::POST,
            "/key-packages",
            Some(json!({"key_packages": list})),
            200,
        )
        .await
        .map(|_| ())
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
    ) -> Result<(), ApiError> {
        self.json_call(Method::POST, "/rooms", Some(json!({"room": room, "group_info": hex::encode(group_info), "ratchet_tree": hex::encode(ratchet_tree)})), 201).await.map(|_| ())
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

    /// Deliveries after `after`, waiting up to `wait_s` seconds for the first one.
    ///
    /// # Errors
    /// As for every call.
    pub async fn events(&self, after: u64, limit: usize, wait_s: u64) -> Result<Events, ApiError> {
        let v = self
            .json_call(
                Method::GET,
                &format!("/events?after={after}&limit={limit}&wait={wait_s}"),
                None,
                200,
            )
            .await?;
        let bad = |r: &str| ApiError::Unexpected {
            call: "GET /events".into(),
            reason: r.into(),
        };
        let mut out = Events {
            gap: v["gap"].as_bool().unwrap_or(false),
            events: Vec::new(),
        };
        for e in v["events"]
            .as_array()
            .ok_or_else(|| bad("no events array"))?
        {
            out.events.push(Delivery {
                seq: e["seq"].as_u64().ok_or_else(|| bad("seq"))?,
                room: e["room"].as_str().ok_or_else(|| bad("room"))?.to_owned(),
                timestamp: e["timestamp"].as_u64().unwrap_or(0),
                kind: e["kind"].as_str().unwrap_or("").to_owned(),
                body: e["body"]
                    .as_str()
                    .and_then(|h| hex::decode(h).ok())
                    .ok_or_else(|| bad("body"))?,
            });
        }
        Ok(out)
    }

    /// Acknowledges everything up to `upto`.
    ///
    /// # Errors
    /// As for every call.
    pub async fn ack(&self, upto: u64) -> Result<(), ApiError> {
        self.json_call(Method::POST, "/ack", Some(json!({"upto": upto})), 200)
            .await
            .map(|_| ())
    }

    /// Starts or stops deliveries of a room (after an external join, or leaving).
    ///
    /// # Errors
    /// As for every call.
    pub async fn subscribe(&self, room: &str, on: bool) -> Result<(), ApiError> {
        self.json_call(
            Method::POST,
            "/subscribe",
            Some(json!({"room": room, "on": on})),
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
        let v: Value = serde_json::from_slice(&r.body).map_err(|e| ApiError::Unexpected {
            call: "POST /assets".into(),
            reason: e.to_string(),
        })?;
        v["url"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| ApiError::Unexpected {
                call: "POST /assets".into(),
                reason: "no url".into(),
            })
    }
}
