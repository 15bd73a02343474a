//! The local client API: how a provider's own native MIMI clients use the gateway (plain HTTP
//! on loopback, HTTP/1.1 or HTTP/2 with prior knowledge; put TLS in front to expose it).
//! Documented route by route in `docs/client-api.md`; the request and response types are
//! [`mimi_proto::client_api`].
//!
//! Clients authenticate with `Authorization: Bearer <token>`: a client token (returned once by
//! `POST /client/v1/register`, stored as its SHA-256), the admin token, or a provider-issued
//! token ([`crate::auth`]). Deliveries are read straight from the store with a long-poll
//! (`GET /events?after=N&wait=S`) or as Server-Sent Events (`GET /events/stream`), in JSON or
//! in the binary page format (`Accept: application/vnd.mimi.deliveries`), and acknowledged
//! with `POST /ack`.

// Handlers return `Result<Response, Response>`: the error is the refusal to send.
#![allow(clippy::result_large_err)]

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, Limited, StreamBody};
use hyper::body::{Frame, Incoming};
use mimi_engine::store::{Store, Write, WriteBatch};
use mimi_engine::{Auth, Body as EngineBody, ClientCall, ClientRecord, ClientReply};
use mimi_listen::Listener;
use mimi_proto::client_api::{
    AckRequest, Acked, AssetStored, CreateRoom, DELIVERIES_BINARY, DeliveryPage, EventsPage,
    PREFIX, PublishKeyPackages, RegisterRequest, Registered, SubscribeRequest,
};
use mimi_proto::codec::Wire;
use mimi_proto::directory::{Endpoint, decode_path_value};
use mimi_proto::uri::Domain;
use rand::RngCore;
use serde::Serialize;
use sha2::{Digest, Sha256};
use tokio::sync::watch;

use crate::auth::ProviderTokens;
use crate::driver::EngineHandle;
use crate::peers::{PeerClient, PeerError};
use crate::serving::stopping;
use crate::store::assets::{AssetError, AssetStore};

/// Longest long-poll wait.
const MAX_WAIT: Duration = Duration::from_secs(60);
/// SSE keep-alive comment interval.
const SSE_KEEPALIVE: Duration = Duration::from_secs(15);

type Body = BoxBody<Bytes, Infallible>;

/// The client API's state.
#[derive(Debug, Clone)]
pub struct ClientApi {
    /// This provider.
    pub domain: Domain,
    /// The engine.
    pub engine: EngineHandle,
    /// The store (deliveries, tokens).
    pub store: Arc<dyn Store>,
    /// Assets.
    pub assets: AssetStore,
    /// The admin token, if any.
    pub admin_token: Option<String>,
    /// Provider-issued tokens, if configured.
    pub provider_tokens: Option<Arc<ProviderTokens>>,
    /// Largest body.
    pub max_body: usize,
    /// Base URL of this provider's asset downloads (`https://domain:port/assets`).
    pub asset_base: String,
    /// Links to peers (downloads of their assets).
    pub peers: Arc<PeerClient>,
    /// Long-polls and streams one client may hold at once.
    pub streams_per_client: usize,
    /// Long-polls and streams held, per client.
    pub streams: Arc<std::sync::Mutex<std::collections::HashMap<String, usize>>>,
}

/// One long-poll or stream of a client; released when dropped.
#[derive(Debug)]
pub struct StreamSlot {
    streams: Arc<std::sync::Mutex<std::collections::HashMap<String, usize>>>,
    client: String,
}

impl Drop for StreamSlot {
    fn drop(&mut self) {
        if let Ok(mut m) = self.streams.lock()
            && let Some(n) = m.get_mut(&self.client)
        {
            *n -= 1;
            if *n == 0 {
                m.remove(&self.client);
            }
        }
    }
}

fn full(b: impl Into<Bytes>) -> Body {
    Full::new(b.into()).map_err(|e| match e {}).boxed()
}

/// A plain-text answer (refusals).
pub fn text(status: u16, msg: impl Into<String>) -> Response<Body> {
    let mut m = msg.into();
    m.push('\n');
    reply(status, "text/plain; charset=utf-8", Bytes::from(m), None)
}

fn reply(status: u16, ctype: &str, body: Bytes, retry: Option<u64>) -> Response<Body> {
    let mut r = Response::builder()
        .status(StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR))
        .header(http::header::CONTENT_TYPE, ctype);
    if let Some(s) = retry {
        r = r.header(http::header::RETRY_AFTER, s);
    }
    r.body(full(body))
        .unwrap_or_else(|_| Response::new(full(Bytes::new())))
}

fn json(status: u16, v: &impl Serialize) -> Response<Body> {
    reply(
        status,
        "application/json",
        Bytes::from(serde_json::to_vec(v).unwrap_or_default()),
        None,
    )
}

/// The HTTP form of an engine response.
pub fn engine_reply(r: mimi_engine::Response) -> Response<Body> {
    match r.body {
        EngineBody::Empty => reply(
            r.status,
            "text/plain; charset=utf-8",
            Bytes::new(),
            r.retry_after_s,
        ),
        EngineBody::Mimi(b) => reply(r.status, mimi_proto::media::BODY, b, r.retry_after_s),
        EngineBody::Asset(b) => reply(r.status, "application/octet-stream", b, r.retry_after_s),
        EngineBody::Refused(x) => {
            let mut t = x.to_string();
            t.push('\n');
            reply(
                r.status,
                "text/plain; charset=utf-8",
                Bytes::from(t),
                r.retry_after_s,
            )
        }
        EngineBody::Client(c) => match c {
            ClientReply::Registered(v) => json(r.status, &v),
            ClientReply::HubInfo(v) => json(r.status, &v),
            ClientReply::Published(v) => json(r.status, &v),
            ClientReply::RoomCreated(v) => json(r.status, &v),
            ClientReply::Subscribed(v) => json(r.status, &v),
            _ => text(500, "unknown client reply"),
        },
    }
}

/// SHA-256 of a bearer token, as the store keeps it.
pub fn token_hash(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

fn bearer(req: &http::request::Parts) -> Option<String> {
    let v = req
        .headers
        .get(http::header::AUTHORIZATION)?
        .to_str()
        .ok()?;
    v.strip_prefix("Bearer ").map(|t| t.trim().to_owned())
}

fn query(parts: &http::request::Parts, key: &str) -> Option<String> {
    parts.uri.query()?.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
        (k == key).then(|| decode_path_value(v).unwrap_or_default())
    })
}

fn wants_binary(parts: &http::request::Parts) -> bool {
    parts
        .headers
        .get(http::header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains(DELIVERIES_BINARY))
}

fn page_reply(page: &EventsPage, binary: bool) -> Response<Body> {
    if binary {
        reply(
            200,
            DELIVERIES_BINARY,
            Bytes::from(DeliveryPage::from(page).to_bytes()),
            None,
        )
    } else {
        json(200, page)
    }
}

impl ClientApi {
    /// Serves until shutdown, within the listener's bounds.
    pub async fn serve(self: Arc<Self>, listener: Listener, shutdown: watch::Receiver<bool>) {
        let api = Arc::clone(&self);
        listener
            .serve_http(shutdown, move |req, stop| {
                let api = Arc::clone(&api);
                async move { api.route(req, stop).await }
            })
            .await;
    }

    /// Who the request's bearer token is.
    fn auth(&self, parts: &http::request::Parts) -> Result<Auth, Response<Body>> {
        let Some(t) = bearer(parts) else {
            return Ok(Auth::Anonymous);
        };
        if let Some(a) = &self.admin_token {
            // Compare digests, so the comparison time does not depend on the token.
            if Sha256::digest(t.as_bytes()) == Sha256::digest(a.as_bytes()) {
                return Ok(Auth::Admin);
            }
        }
        if let Some(p) = &self.provider_tokens
            && p.looks_like(&t)
        {
            return p
                .verify(&t)
                .map(|user| Auth::Provider { user })
                .map_err(|e| text(401, format!("provider token refused: {e}")));
        }
        match mimi_engine::authenticate(self.store.as_ref(), &self.domain, &token_hash(&t)) {
            Ok(Some(c)) => Ok(Auth::Client(c)),
            Ok(None) => Ok(Auth::Anonymous),
            Err(e) => Err(text(503, format!("cannot check the token now: {e}"))),
        }
    }

    fn client(&self, parts: &http::request::Parts) -> Result<ClientRecord, Response<Body>> {
        match self.auth(parts)? {
            Auth::Client(c) => Ok(c),
            _ => Err(text(
                401,
                "missing or unknown client token; register with POST /client/v1/register",
            )),
        }
    }

    async fn body(&self, body: Incoming, limit: usize) -> Result<Bytes, Response<Body>> {
        match Limited::new(body, limit).collect().await {
            Ok(b) => Ok(b.to_bytes()),
            Err(e)
                if e.downcast_ref::<http_body_util::LengthLimitError>()
                    .is_some() =>
            {
                Err(text(413, format!("the body exceeds {limit} bytes")))
            }
            Err(e) => Err(text(400, format!("could not read the body: {e}"))),
        }
    }

    async fn json<T: serde::de::DeserializeOwned>(
        &self,
        body: Incoming,
    ) -> Result<T, Response<Body>> {
        let b = self.body(body, self.max_body).await?;
        serde_json::from_slice(&b)
            .map_err(|e| text(400, format!("the body is not the expected JSON: {e}")))
    }

    async fn call(&self, auth: Auth, call: ClientCall) -> Response<Body> {
        engine_reply(self.engine.client(auth, call).await)
    }

    async fn route(&self, req: Request<Incoming>, stop: watch::Receiver<bool>) -> Response<Body> {
        let (parts, body) = req.into_parts();
        let path = parts.uri.path().to_owned();
        let Some(rest) = path.strip_prefix(PREFIX) else {
            return text(
                404,
                format!("the client API lives under {PREFIX}/ (see docs/client-api.md)"),
            );
        };
        let segs: Vec<&str> = rest.trim_start_matches('/').split('/').collect();
        let m = parts.method.clone();
        let r = match (m.as_str(), segs.as_slice()) {
            ("POST", ["register"]) => self.register(&parts, body).await,
            ("GET", ["hub"]) => Ok(self.call(Auth::Anonymous, ClientCall::HubInfo).await),
            ("GET", ["whoami"]) => self.whoami(&parts),
            ("POST", ["key-packages"]) => self.publish(&parts, body).await,
            ("POST", ["rooms"]) => self.create_room(&parts, body).await,
            ("POST", ["rooms", room, action]) => self.room(&parts, room, action, body).await,
            ("POST", ["key-material", user]) => {
                self.binary_call(&parts, Endpoint::KeyMaterial, user, body)
                    .await
            }
            ("POST", ["consent"]) => self.opaque(&parts, body, ClientCall::Consent).await,
            ("POST", ["identifier-query", domain]) => {
                let domain = (*domain).to_owned();
                self.opaque(&parts, body, move |b| ClientCall::IdentifierQuery {
                    domain,
                    body: b,
                })
                .await
            }
            ("GET", ["events"]) => self.events(&parts).await,
            ("GET", ["events", "stream"]) => self.stream(&parts, stop),
            ("POST", ["ack"]) => self.ack(&parts, body).await,
            ("POST", ["subscribe"]) => self.subscribe(&parts, body).await,
            ("POST", ["assets"]) => self.upload(&parts, body).await,
            ("GET", ["assets", id]) => self.download(&parts, id).await,
            ("GET", ["download"]) => self.fetch(&parts).await,
            (
                _,
                [
                    "register" | "key-packages" | "rooms" | "consent" | "ack" | "subscribe"
                    | "assets",
                ],
            ) => Err(text(405, "use POST")),
            (_, ["hub" | "whoami" | "events"]) => Err(text(405, "use GET")),
            _ => Err(text(
                404,
                format!("no client API route {m} {path} (see docs/client-api.md)"),
            )),
        };
        r.unwrap_or_else(|e| e)
    }

    async fn register(
        &self,
        parts: &http::request::Parts,
        body: Incoming,
    ) -> Result<Response<Body>, Response<Body>> {
        let auth = self.auth(parts)?;
        let req: RegisterRequest = self.json(body).await?;
        let mut raw = [0u8; 32];
        rand::thread_rng().fill_bytes(&mut raw);
        let token = hex::encode(raw);
        let r = self
            .engine
            .client(
                auth,
                ClientCall::Register {
                    user: req.user,
                    device: req.device,
                    display_name: req.display_name,
                    new_token_hash: token_hash(&token),
                },
            )
            .await;
        match r.body {
            EngineBody::Client(ClientReply::Registered(mut reg)) if r.status == 201 => {
                reg.token = Some(token);
                Ok(json(201, &reg))
            }
            _ => Ok(engine_reply(r)),
        }
    }

    fn whoami(&self, parts: &http::request::Parts) -> Result<Response<Body>, Response<Body>> {
        let c = self.client(parts)?;
        Ok(json(
            200,
            &Registered {
                client_id: c.id,
                user: c.user,
                client_uri: c.uri,
                token: None,
            },
        ))
    }

    async fn publish(
        &self,
        parts: &http::request::Parts,
        body: Incoming,
    ) -> Result<Response<Body>, Response<Body>> {
        let c = self.client(parts)?;
        let req: PublishKeyPackages = self.json(body).await?;
        Ok(self
            .call(
                Auth::Client(c),
                ClientCall::PublishKeyPackages {
                    key_packages: req.key_packages.into_iter().map(|h| h.0).collect(),
                    last_resort: req.last_resort.map(|h| h.0),
                },
            )
            .await)
    }

    async fn create_room(
        &self,
        parts: &http::request::Parts,
        body: Incoming,
    ) -> Result<Response<Body>, Response<Body>> {
        let c = self.client(parts)?;
        let req: CreateRoom = self.json(body).await?;
        Ok(self
            .call(
                Auth::Client(c),
                ClientCall::CreateRoom {
                    room: req.room.to_string(),
                    group_info: req.group_info.0,
                    ratchet_tree: req.ratchet_tree.0,
                },
            )
            .await)
    }

    async fn room(
        &self,
        parts: &http::request::Parts,
        room: &str,
        action: &str,
        body: Incoming,
    ) -> Result<Response<Body>, Response<Body>> {
        let endpoint = match action {
            "update" => Endpoint::Update,
            "submit" => Endpoint::SubmitMessage,
            "group-info" => Endpoint::GroupInfo,
            "report-abuse" => Endpoint::ReportAbuse,
            other => {
                return Err(text(
                    404,
                    format!(
                        "no room action {other:?}: use update, submit, group-info or report-abuse"
                    ),
                ));
            }
        };
        self.binary_call(parts, endpoint, room, body).await
    }

    async fn binary_call(
        &self,
        parts: &http::request::Parts,
        endpoint: Endpoint,
        target: &str,
        body: Incoming,
    ) -> Result<Response<Body>, Response<Body>> {
        let c = self.client(parts)?;
        let target = decode_path_value(target)
            .ok_or_else(|| text(400, "the path variable is not valid percent-encoded UTF-8"))?;
        let b = self.body(body, self.max_body).await?;
        Ok(self
            .call(
                Auth::Client(c),
                ClientCall::Room {
                    endpoint,
                    target,
                    body: b,
                },
            )
            .await)
    }

    async fn opaque(
        &self,
        parts: &http::request::Parts,
        body: Incoming,
        f: impl FnOnce(Bytes) -> ClientCall,
    ) -> Result<Response<Body>, Response<Body>> {
        let c = self.client(parts)?;
        let b = self.body(body, self.max_body).await?;
        Ok(self.call(Auth::Client(c), f(b)).await)
    }

    /// A long-poll or stream slot of `client`, or 429 when it holds too many.
    fn stream_slot(&self, client: &str) -> Result<StreamSlot, Response<Body>> {
        let mut m = self
            .streams
            .lock()
            .map_err(|_| text(503, "stream accounting unavailable"))?;
        let n = m.entry(client.to_owned()).or_default();
        if *n >= self.streams_per_client {
            return Err(reply(
                429,
                "text/plain; charset=utf-8",
                Bytes::from(format!(
                    "{client} already holds {} long-polls or event streams, the most allowed; close one\n",
                    self.streams_per_client
                )),
                Some(1),
            ));
        }
        *n += 1;
        Ok(StreamSlot {
            streams: Arc::clone(&self.streams),
            client: client.to_owned(),
        })
    }

    fn page(&self, client: &str, after: u64, limit: usize) -> Result<EventsPage, Response<Body>> {
        mimi_engine::store::events(self.store.as_ref(), client, after, limit)
            .map_err(|e| text(503, format!("cannot read deliveries now: {e}")))
    }

    async fn events(&self, parts: &http::request::Parts) -> Result<Response<Body>, Response<Body>> {
        let c = self.client(parts)?;
        let after: u64 = query(parts, "after")
            .map_or(Ok(0), |v| v.parse())
            .map_err(|_| text(400, "after must be a sequence number"))?;
        let limit: usize = query(parts, "limit")
            .map_or(Ok(100), |v| v.parse())
            .map_err(|_| text(400, "limit must be a number"))?;
        let wait = query(parts, "wait")
            .map_or(Ok(0), |v| v.parse::<u64>())
            .map_err(|_| text(400, "wait must be seconds"))?;
        let binary = wants_binary(parts);
        let _slot = if wait > 0 {
            Some(self.stream_slot(&c.id)?)
        } else {
            None
        };
        let deadline = tokio::time::Instant::now() + Duration::from_secs(wait).min(MAX_WAIT);
        let notify = self.engine.wakes.get(&c.id);
        loop {
            let mut notified = Box::pin(notify.notified());
            notified.as_mut().enable();
            let page = self.page(&c.id, after, limit)?;
            if !page.events.is_empty() || tokio::time::Instant::now() >= deadline {
                return Ok(page_reply(&page, binary));
            }
            let _ = tokio::time::timeout_at(deadline, notified).await;
        }
    }

    fn stream(
        &self,
        parts: &http::request::Parts,
        stop: watch::Receiver<bool>,
    ) -> Result<Response<Body>, Response<Body>> {
        let after: u64 = query(parts, "after")
            .or_else(|| {
                parts
                    .headers
                    .get("last-event-id")
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned)
            })
            .map_or(Ok(0), |v| v.parse())
            .map_err(|_| text(400, "after (or Last-Event-ID) must be a sequence number"))?;
        // Authenticate before committing to a stream.
        let c = self.client(parts)?;
        let slot = self.stream_slot(&c.id)?;
        let state = (self.clone(), after, c.id, stop, slot);
        let s = futures_util::stream::unfold(
            state,
            |(api, after, client, mut stop, slot)| async move {
                if *stop.borrow() {
                    return None;
                }
                let notify = api.engine.wakes.get(&client);
                let mut notified = Box::pin(notify.notified());
                notified.as_mut().enable();
                let page = api.page(&client, after, 100).ok()?;
                let mut out = String::new();
                let mut cursor = after;
                for e in &page.events {
                    cursor = e.seq;
                    let data = serde_json::to_string(e).unwrap_or_default();
                    out.push_str(&format!("id: {cursor}\nevent: delivery\ndata: {data}\n\n"));
                }
                if page.events.is_empty() {
                    tokio::select! {
                        _ = tokio::time::timeout(SSE_KEEPALIVE, notified) => {}
                        () = stopping(&mut stop) => return None,
                    }
                    out.push_str(": keep-alive\n\n");
                }
                Some((
                    Ok::<_, Infallible>(Frame::data(Bytes::from(out))),
                    (api, cursor, client, stop, slot),
                ))
            },
        );
        let body = StreamBody::new(s).boxed();
        Ok(Response::builder()
            .status(200)
            .header(http::header::CONTENT_TYPE, "text/event-stream")
            .header(http::header::CACHE_CONTROL, "no-cache")
            .body(body)
            .unwrap_or_else(|_| Response::new(full(Bytes::new()))))
    }

    async fn ack(
        &self,
        parts: &http::request::Parts,
        body: Incoming,
    ) -> Result<Response<Body>, Response<Body>> {
        let c = self.client(parts)?;
        let req: AckRequest = self.json(body).await?;
        let batch = WriteBatch {
            writes: vec![Write::Ack {
                client: c.id.clone(),
                upto: req.upto,
            }],
        };
        match self.engine.committer.commit_async(batch).await {
            Ok(report) => {
                let dropped = report
                    .acked
                    .iter()
                    .find(|(id, _)| *id == c.id)
                    .map_or(0, |(_, n)| *n);
                Ok(json(
                    200,
                    &Acked {
                        acked: req.upto,
                        dropped,
                    },
                ))
            }
            Err(e) => Err(text(
                503,
                format!("cannot store the acknowledgement now ({e}); retry"),
            )),
        }
    }

    async fn subscribe(
        &self,
        parts: &http::request::Parts,
        body: Incoming,
    ) -> Result<Response<Body>, Response<Body>> {
        let c = self.client(parts)?;
        let req: SubscribeRequest = self.json(body).await?;
        Ok(self
            .call(
                Auth::Client(c),
                ClientCall::Subscribe {
                    room: req.room.to_string(),
                    on: req.on,
                },
            )
            .await)
    }

    async fn upload(
        &self,
        parts: &http::request::Parts,
        body: Incoming,
    ) -> Result<Response<Body>, Response<Body>> {
        let c = self.client(parts)?;
        let b = self.body(body, self.assets.max_bytes as usize).await?;
        let assets = self.assets.clone();
        let owner = c.id.clone();
        let r = tokio::task::spawn_blocking(move || assets.put(&owner, &b))
            .await
            .map_err(|e| text(503, e.to_string()))?;
        match r {
            Ok(id) => Ok(json(
                201,
                &AssetStored {
                    url: format!("{}/{id}", self.asset_base),
                    id,
                },
            )),
            Err(e @ AssetError::TooLarge { .. }) => Err(text(413, e.to_string())),
            Err(e @ AssetError::Quota { .. }) => Err(text(413, e.to_string())),
            Err(e) => Err(text(503, e.to_string())),
        }
    }

    async fn download(
        &self,
        parts: &http::request::Parts,
        id: &str,
    ) -> Result<Response<Body>, Response<Body>> {
        self.client(parts)?;
        let url = format!("{}/{id}", self.asset_base);
        let r = fetch_asset(&self.assets, &self.peers, &self.asset_base, &url).await;
        download_reply(r, &url)
    }

    async fn fetch(&self, parts: &http::request::Parts) -> Result<Response<Body>, Response<Body>> {
        self.client(parts)?;
        let url = query(parts, "url")
            .ok_or_else(|| text(400, "GET /download needs ?url=<percent-encoded asset URL>"))?;
        let r = fetch_asset(&self.assets, &self.peers, &self.asset_base, &url).await;
        download_reply(r, &url)
    }
}

/// A client's download: the bytes; 404 for no such asset; 400 for a URL this gateway does
/// not fetch (the client's mistake); 502 when the transfer failed.
fn download_reply(
    r: Result<Vec<u8>, FetchError>,
    url: &str,
) -> Result<Response<Body>, Response<Body>> {
    match r {
        Ok(b) => Ok(reply(200, "application/octet-stream", Bytes::from(b), None)),
        Err(FetchError::NotFound) => Err(text(404, "no such asset")),
        Err(FetchError::Refused(why)) => Err(text(400, why)),
        Err(e) => Err(text(502, format!("cannot download {url}: {e}"))),
    }
}

/// Why an asset could not be fetched.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FetchError {
    /// No such asset here.
    #[error("no such asset")]
    NotFound,
    /// The URL is not one this gateway fetches.
    #[error("{0}")]
    Refused(String),
    /// The transfer failed.
    #[error("{0}")]
    Transfer(String),
}

/// Downloads an asset URL: this provider's own assets from its store, a peer's over the
/// mutually authenticated link (the host must be a configured peer; the size is capped).
///
/// # Errors
/// [`FetchError`].
pub async fn fetch_asset(
    assets: &AssetStore,
    peers: &PeerClient,
    asset_base: &str,
    url: &str,
) -> Result<Vec<u8>, FetchError> {
    if let Some(id) = url
        .strip_prefix(asset_base)
        .and_then(|r| r.strip_prefix('/'))
    {
        let (assets, id) = (assets.clone(), id.to_owned());
        return match tokio::task::spawn_blocking(move || assets.get(&id)).await {
            Ok(Ok(b)) => Ok(b),
            Ok(Err(AssetError::NotFound)) => Err(FetchError::NotFound),
            Ok(Err(e)) => Err(FetchError::Transfer(e.to_string())),
            Err(e) => Err(FetchError::Transfer(e.to_string())),
        };
    }
    let Some((host, _, _)) = mimi_engine::parse_asset_url(url) else {
        return Err(FetchError::Refused(format!(
            "{url} is not an asset URL (https://<host>/assets/<id>)"
        )));
    };
    let r = peers
        .fetch(host, url, assets.max_bytes as usize)
        .await
        .map_err(|e| match e {
            // The caller named a URL this gateway does not fetch: its mistake, not a
            // failed transfer.
            PeerError::NotAssetHost(_) | PeerError::NotHttps(_) => {
                FetchError::Refused(e.to_string())
            }
            e => FetchError::Transfer(e.to_string()),
        })?;
    if r.status == 200 {
        Ok(r.body.to_vec())
    } else if r.status == 404 {
        Err(FetchError::NotFound)
    } else {
        Err(FetchError::Transfer(format!(
            "the asset host answered {}",
            r.status
        )))
    }
}
