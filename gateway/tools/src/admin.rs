//! `mimi admin`: the operator's API of a running gateway (`mimi_proto::admin_api`), over its
//! admin listener (plain HTTP on loopback), with the admin token.

use std::net::SocketAddr;

use anyhow::{Context as _, bail};
use bytes::Bytes;
use http::{Method, Request};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use mimi_proto::admin_api as api;
use serde::Serialize;
use serde::de::DeserializeOwned;

/// A client of one gateway's admin API.
#[derive(Debug, Clone)]
pub struct AdminClient {
    /// The admin listener.
    pub addr: SocketAddr,
    /// The admin token.
    pub token: String,
}

/// Most bytes read from an answer.
const MAX: usize = 64 << 20;

impl AdminClient {
    async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> anyhow::Result<(u16, Bytes)> {
        let tcp = tokio::net::TcpStream::connect(self.addr)
            .await
            .with_context(|| format!("cannot reach the admin listener at {}", self.addr))?;
        let (mut s, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp)).await?;
        tokio::spawn(conn);
        let mut req = Request::builder()
            .method(method)
            .uri(format!("{}{path}", api::PREFIX))
            .header(http::header::HOST, self.addr.to_string())
            .header(
                http::header::AUTHORIZATION,
                format!("Bearer {}", self.token),
            );
        if body.is_some() {
            req = req.header(http::header::CONTENT_TYPE, "application/json");
        }
        let r = s
            .send_request(req.body(Full::new(Bytes::from(body.unwrap_or_default())))?)
            .await?;
        let status = r.status().as_u16();
        let b = http_body_util::Limited::new(r.into_body(), MAX)
            .collect()
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?
            .to_bytes();
        Ok((status, b))
    }

    async fn get<T: DeserializeOwned>(&self, path: &str) -> anyhow::Result<T> {
        let (status, b) = self.call(Method::GET, path, None).await?;
        decode(status, &b)
    }

    async fn post<T: DeserializeOwned>(
        &self,
        path: &str,
        body: &impl Serialize,
    ) -> anyhow::Result<T> {
        let (status, b) = self
            .call(Method::POST, path, Some(serde_json::to_vec(body)?))
            .await?;
        decode(status, &b)
    }

    /// `GET /status`.
    ///
    /// # Errors
    /// Unreachable, refused.
    pub async fn status(&self) -> anyhow::Result<api::Status> {
        self.get("/status").await
    }

    /// `GET /cluster[?room=]`: this node's view of its cluster, and the slot of `room`.
    ///
    /// # Errors
    /// Unreachable, refused (404 on a gateway that is no cluster).
    pub async fn cluster(&self, room: Option<&str>) -> anyhow::Result<api::ClusterStatus> {
        match room {
            Some(r) => {
                let q =
                    percent_encoding::utf8_percent_encode(r, percent_encoding::NON_ALPHANUMERIC);
                self.get(&format!("/cluster?room={q}")).await
            }
            None => self.get("/cluster").await,
        }
    }

    /// `GET /peers`.
    ///
    /// # Errors
    /// Unreachable, refused.
    pub async fn peers(&self) -> anyhow::Result<Vec<api::Peer>> {
        self.get("/peers").await
    }

    /// `GET /rooms`.
    ///
    /// # Errors
    /// Unreachable, refused.
    pub async fn rooms(&self, limit: usize) -> anyhow::Result<Vec<api::Room>> {
        self.get(&format!("/rooms?limit={limit}")).await
    }

    /// `GET /queues`.
    ///
    /// # Errors
    /// Unreachable, refused.
    pub async fn queues(&self) -> anyhow::Result<Vec<api::Queue>> {
        self.get("/queues").await
    }

    /// `GET /dead-letters`.
    ///
    /// # Errors
    /// Unreachable, refused.
    pub async fn dead_letters(
        &self,
        follower: Option<&str>,
    ) -> anyhow::Result<Vec<api::DeadLetter>> {
        match follower {
            Some(f) => self.get(&format!("/dead-letters?follower={f}")).await,
            None => self.get("/dead-letters").await,
        }
    }

    /// `POST /dead-letters/retry` or `/drop`.
    ///
    /// # Errors
    /// Unreachable, refused.
    pub async fn dead_letter_action(
        &self,
        follower: &str,
        room: &str,
        retry: bool,
    ) -> anyhow::Result<api::Done> {
        let a = api::DeadLetterAction {
            follower: follower.to_owned(),
            room: room.to_owned(),
        };
        self.post(
            if retry {
                "/dead-letters/retry"
            } else {
                "/dead-letters/drop"
            },
            &a,
        )
        .await
    }

    /// `POST /followers/resynced`.
    ///
    /// # Errors
    /// Unreachable, refused.
    pub async fn resynced(&self, follower: &str) -> anyhow::Result<api::Done> {
        self.post(
            "/followers/resynced",
            &api::Resynced {
                follower: follower.to_owned(),
            },
        )
        .await
    }

    /// `POST /reload`.
    ///
    /// # Errors
    /// Unreachable, refused (nothing changed).
    pub async fn reload(&self) -> anyhow::Result<api::Reloaded> {
        self.post("/reload", &serde_json::json!({})).await
    }
}

/// `GET /readyz` of the admin listener at `addr` (no token needed): status and text.
///
/// # Errors
/// The listener cannot be reached.
pub async fn readyz(addr: SocketAddr) -> anyhow::Result<(u16, String)> {
    let tcp = tokio::net::TcpStream::connect(addr)
        .await
        .with_context(|| format!("cannot reach the admin listener at {addr}"))?;
    let (mut s, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp)).await?;
    tokio::spawn(conn);
    let r = s
        .send_request(
            Request::get("/readyz")
                .header(http::header::HOST, addr.to_string())
                .body(Full::new(Bytes::new()))?,
        )
        .await?;
    let status = r.status().as_u16();
    let b = http_body_util::Limited::new(r.into_body(), 4096)
        .collect()
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?
        .to_bytes();
    Ok((status, String::from_utf8_lossy(&b).trim().to_owned()))
}

fn decode<T: DeserializeOwned>(status: u16, b: &[u8]) -> anyhow::Result<T> {
    if status != 200 {
        let why = serde_json::from_slice::<api::Refused>(b)
            .map(|r| r.error)
            .unwrap_or_else(|_| String::from_utf8_lossy(b).into_owned());
        bail!("the gateway answered {status}: {why}");
    }
    serde_json::from_slice(b).context("unexpected answer")
}
