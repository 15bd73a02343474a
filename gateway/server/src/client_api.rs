//! The local client API: how a provider's own native MIMI clients use the gateway (plain HTTP
//! on loopback, HTTP/1.1 or HTTP/2 with prior knowledge; put TLS in front to expose it).
//! Documented route by route in `docs/client-api.md`.
//!
//! Clients authenticate with `Authorization: Bearer <token>`; the token is returned once by
//! `POST /client/v1/register` and only its SHA-256 is stored. Deliveries are read with a
//! long-poll (`GET /events?after=N&wait=S`) or as Server-Sent Events (`GET /events/stream`),
//! and acknowledged with `POST /ack` (an acknowledged cursor: unacknowledged deliveries are
//! served again after a reconnect).

// Handlers return `Result<Response, Response>`: the error is the refusal to send, and its size
// does not matter on this path.
#![allow(clippy::result_large_err)]

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, Limited, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use mimi_engine::ClientCall;
use mimi_proto::directory::{Endpoint, decode_path_value};
use rand::RngCore;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::driver::EngineHandle;
use crate::serving::stopping;
use crate::store::Store;

/// The route prefix.
pub const PREFIX: &str = "/client/v1";
/// Longest long-poll wait.
const MAX_WAIT: Duration = Duration::from_secs(60);
/// SSE keep-alive comment interval.
const SSE_KEEPALIVE: Duration = Duration::from_secs(15);

type Body = BoxBody<Bytes, Infallible>;

/// Settings of the client API.
#[derive(Debug, Clone)]
pub struct ClientApi {
    /// The engine.
    pub engine: EngineHandle,
    /// Assets.
    pub store: Arc<Store>,
    /// Whether anyone may register.
    pub open_registration: bool,
    /// Token needed to register otherwise.
    pub admin_token: Option<String>,
    /// Largest MIMI body.
    pub max_body: usize,
    /// Largest asset.
    pub max_asset: usize,
    /// Base URL of this provider's asset downloads (`https://domain:port/assets`).
    pub asset_base: String,
    /// Links to peers (downloads of their assets).
    pub peers: Arc<crate::peers::PeerClient>,
}

/// Downloads an asset URL: this provider's own assets from the store, a peer's over the
/// mutually authenticated link (the host must be a configured peer).
///
/// # Errors
/// Unknown asset, unknown host or transfer failure, as text.
pub async fn fetch_asset(
    store: &Arc<Store>,
    peers: &crate::peers::PeerClient,
    asset_base: &str,
    url: &str,
) -> Result<Vec<u8>, String> {
    if let Some(id) = url
        .strip_prefix(asset_base)
        .and_then(|r| r.strip_prefix('/'))
    {
        if !id.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err("no such asset".into());
        }
        let (store, id) = (Arc::clone(store), id.to_owned());
        return match tokio::task::spawn_blocking(move || store.asset(&id)).await {
            Ok(Ok(Some(b))) => Ok(b),
            Ok(Ok(None)) => Err("no such asset".into()),
            _ => Err("storage failure".into()),
        };
    }
    let r = peers.fetch(url).await?;
    if r.status == 200 {
        Ok(r.body.to_vec())
    } else {
        Err(format!("{url}: the asset host answered {}", r.status))
    }
}

/// Stores an (encrypted) asset; returns its URL.
///
/// # Errors
/// Storage failures.
pub async fn store_asset(
    store: &Arc<Store>,
    asset_base: &str,
    bytes: Vec<u8>,
) -> Result<String, String> {
    let id = hex::encode(Sha256::digest(&bytes));
    let (s2, key) = (Arc::clone(store), id.clone());
    match tokio::task::spawn_blocking(move || s2.put_asset(&key, &bytes)).await {
        Ok(Ok(())) => Ok(format!("{asset_base}/{id}")),
        _ => Err("storage failure".into()),
    }
}

fn full(b: impl Into<Bytes>) -> Body {
    Full::new(b.into()).map_err(|e| match e {}).boxed()
}

fn text(status: u16, msg: impl Into<String>) -> Response<Body> {
    let mut m = msg.into();
    m.push('\n');
    reply(status, "text/plain; charset=utf-8", m.into_bytes(), None)
}

fn reply(status: u16, ctype: &str, body: Vec<u8>, retry: Option<u64>) -> Response<Body> {
    let mut r = Response::builder()
        .status(StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR))
        .header(http::header::CONTENT_TYPE, ctype);
    if let Some(s) = retry {
        r = r.header(http::header::RETRY_AFTER, s);
    }
    r.body(full(body))
        .unwrap_or_else(|_| Response::new(full(Bytes::new())))
}

fn engine_reply(r: mimi_engine::Response) -> Response<Body> {
    reply(r.status, r.content_type, r.body, r.retry_after_s)
}

/// SHA-256 of a bearer token, as the engine stores it.
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

fn json_field<'a>(v: &'a Value, key: &str) -> Result<&'a Value, Response<Body>> {
    v.get(key)
        .ok_or_else(|| text(400, format!("missing field {key:?}")))
}

fn str_field(v: &Value, key: &str) -> Result<String, Response<Body>> {
    json_field(v, key)?
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| text(400, format!("{key} must be a string")))
}

fn hex_field(v: &Value, key: &str) -> Result<Vec<u8>, Response<Body>> {
    let s = json_field(v, key)?
        .as_str()
        .ok_or_else(|| text(400, format!("{key} must be a hex string")))?;
    hex::decode(s).map_err(|e| text(400, format!("{key} is not hex: {e}")))
}

impl ClientApi {
    /// Serves until shutdown.
    pub async fn serve(
        self: Arc<Self>,
        listener: TcpListener,
        mut shutdown: watch::Receiver<bool>,
    ) {
        loop {
            tokio::select! {
                r = listener.accept() => {
                    let Ok((tcp, _)) = r else { continue };
                    let _ = tcp.set_nodelay(true);
                    let api = Arc::clone(&self);
                    let stop = shutdown.clone();
                    let mut end = shutdown.clone();
                    tokio::spawn(async move {
                        let svc = hyper::service::service_fn(move |req| {
                            let api = Arc::clone(&api);
                            let stop = stop.clone();
                            async move { Ok::<_, Infallible>(api.route(req, stop).await) }
                        });
                        // Keep-alive connections end with the gateway (they hold its storage).
                        let builder = auto::Builder::new(TokioExecutor::new());
                        let conn = builder.serve_connection(TokioIo::new(tcp), svc);
                        tokio::select! {
                            _ = conn => {}
                            () = stopping(&mut end) => {}
                        }
                    });
                }
                () = stopping(&mut shutdown) => break,
            }
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

    async fn json(&self, body: Incoming) -> Result<Value, Response<Body>> {
        let b = self.body(body, self.max_body).await?;
        serde_json::from_slice(&b)
            .map_err(|e| text(400, format!("the body is not valid JSON: {e}")))
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
        let token = bearer(&parts).map(|t| token_hash(&t));
        let m = parts.method.clone();
        let r = match (m.as_str(), segs.as_slice()) {
            ("POST", ["register"]) => self.register(&parts, body).await,
            ("GET", ["hub"]) => Ok(engine_reply(
                self.engine.client(token, ClientCall::HubInfo).await,
            )),
            ("GET", ["whoami"]) => Ok(engine_reply(
                self.engine.client(token, ClientCall::Whoami).await,
            )),
            ("POST", ["key-packages"]) => self.publish(token, body).await,
            ("POST", ["rooms"]) => self.create_room(token, body).await,
            ("POST", ["rooms", room, action]) => self.room(token, room, action, body).await,
            ("POST", ["key-material", user]) => {
                self.binary_call(token, Endpoint::KeyMaterial, user, body)
                    .await
            }
            ("POST", ["consent"]) => match self.body(body, self.max_body).await {
                Ok(b) => Ok(engine_reply(
                    self.engine
                        .client(token, ClientCall::Consent(b.to_vec()))
                        .await,
                )),
                Err(e) => Err(e),
            },
            ("POST", ["identifier-query", domain]) => match self.body(body, self.max_body).await {
                Ok(b) => Ok(engine_reply(
                    self.engine
                        .client(
                            token,
                            ClientCall::IdentifierQuery {
                                domain: (*domain).to_owned(),
                                body: b.to_vec(),
                            },
                        )
                        .await,
                )),
                Err(e) => Err(e),
            },
            ("GET", ["events"]) => self.events(token, &parts).await,
            ("GET", ["events", "stream"]) => self.stream(token, &parts, stop).await,
            ("POST", ["ack"]) => self.ack(token, body).await,
            ("POST", ["subscribe"]) => self.subscribe(token, body).await,
            ("POST", ["assets"]) => self.upload(token, body).await,
            ("GET", ["assets", id]) => self.download(token, id).await,
            ("GET", ["download"]) => self.fetch(token, &parts).await,
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
        if !self.open_registration {
            let ok = bearer(parts)
                .zip(self.admin_token.as_deref())
                .is_some_and(|(t, a)| {
                    // Compare digests, so the comparison time does not depend on the token.
                    Sha256::digest(t.as_bytes()) == Sha256::digest(a.as_bytes())
                });
            if !ok {
                return Err(text(
                    401,
                    "registration needs Authorization: Bearer <client_api.admin_token>",
                ));
            }
        }
        let v = self.json(body).await?;
        let user = str_field(&v, "user")?;
        let device = str_field(&v, "device")?;
        let display_name = v
            .get("display_name")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned();
        let mut raw = [0u8; 32];
        rand::thread_rng().fill_bytes(&mut raw);
        let token = hex::encode(raw);
        let r = self
            .engine
            .client(
                None,
                ClientCall::Register {
                    user,
                    device,
                    display_name,
                    new_token_hash: token_hash(&token),
                },
            )
            .await;
        if r.status != 201 {
            return Ok(engine_reply(r));
        }
        let mut v: Value = serde_json::from_slice(&r.body).unwrap_or_else(|_| json!({}));
        v["token"] = Value::String(token);
        Ok(reply(
            201,
            "application/json",
            v.to_string().into_bytes(),
            None,
        ))
    }

    async fn publish(
        &self,
        token: Option<[u8; 32]>,
        body: Incoming,
    ) -> Result<Response<Body>, Response<Body>> {
        let v = self.json(body).await?;
        let list = json_field(&v, "key_packages")?
            .as_array()
            .ok_or_else(|| text(400, "key_packages must be an array of hex strings"))?;
        let mut kps = Vec::with_capacity(list.len());
        for (i, k) in list.iter().enumerate() {
            let s = k
                .as_str()
                .ok_or_else(|| text(400, format!("key_packages[{i}] must be a hex string")))?;
            kps.push(
                hex::decode(s)
                    .map_err(|e| text(400, format!("key_packages[{i}] is not hex: {e}")))?,
            );
        }
        Ok(engine_reply(
            self.engine
                .client(token, ClientCall::PublishKeyPackages(kps))
                .await,
        ))
    }

    async fn create_room(
        &self,
        token: Option<[u8; 32]>,
        body: Incoming,
    ) -> Result<Response<Body>, Response<Body>> {
        let v = self.json(body).await?;
        let room = str_field(&v, "room")?;
        let group_info = hex_field(&v, "group_info")?;
        let ratchet_tree = hex_field(&v, "ratchet_tree")?;
        Ok(engine_reply(
            self.engine
                .client(
                    token,
                    ClientCall::CreateRoom {
                        room,
                        group_info,
                        ratchet_tree,
                    },
                )
                .await,
        ))
    }

    async fn room(
        &self,
        token: Option<[u8; 32]>,
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
        self.binary_call(token, endpoint, room, body).await
    }

    async fn binary_call(
        &self,
        token: Option<[u8; 32]>,
        endpoint: Endpoint,
        target: &str,
        body: Incoming,
    ) -> Result<Response<Body>, Response<Body>> {
        let target = decode_path_value(target)
            .ok_or_else(|| text(400, "the path variable is not valid percent-encoded UTF-8"))?;
        let b = self.body(body, self.max_body).await?;
        Ok(engine_reply(
            self.engine
                .client(
                    token,
                    ClientCall::Room {
                        endpoint,
                        target,
                        body: b.to_vec(),
                    },
                )
                .await,
        ))
    }

    async fn events(
        &self,
        token: Option<[u8; 32]>,
        parts: &http::request::Parts,
    ) -> Result<Response<Body>, Response<Body>> {
        let after: u64 = query(parts, "after")
            .map_or(Ok(0), |v| v.parse())
            .map_err(|_| text(400, "after must be a sequence number"))?;
        let limit: usize = query(parts, "limit")
            .map_or(Ok(100), |v| v.parse())
            .map_err(|_| text(400, "limit must be a number"))?;
        let wait = query(parts, "wait")
            .map_or(Ok(0), |v| v.parse::<u64>())
            .map_err(|_| text(400, "wait must be seconds"))?;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(wait).min(MAX_WAIT);
        let mut client: Option<String> = None;
        loop {
            let notify = client.as_deref().map(|c| self.engine.wakes.get(c));
            let notified = notify.as_ref().map(|n| {
                let mut f = Box::pin(n.notified());
                f.as_mut().enable();
                f
            });
            let r = self
                .engine
                .client(token, ClientCall::Events { after, limit })
                .await;
            if r.status != 200 {
                return Ok(engine_reply(r));
            }
            let v: Value = serde_json::from_slice(&r.body).unwrap_or_default();
            let empty = v["events"].as_array().is_none_or(Vec::is_empty);
            if !empty || tokio::time::Instant::now() >= deadline {
                return Ok(engine_reply(r));
            }
            match notified {
                Some(f) => {
                    let _ = tokio::time::timeout_at(deadline, f).await;
                }
                None => client = v["client"].as_str().map(str::to_owned),
            }
        }
    }

    async fn stream(
        &self,
        token: Option<[u8; 32]>,
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
        let who = self.engine.client(token, ClientCall::Whoami).await;
        if who.status != 200 {
            return Ok(engine_reply(who));
        }
        let client = serde_json::from_slice::<Value>(&who.body)
            .ok()
            .and_then(|v| v["client_id"].as_str().map(str::to_owned))
            .unwrap_or_default();
        let state = (self.engine.clone(), token, after, client, stop);
        let s = futures_util::stream::unfold(
            state,
            |(engine, token, after, client, mut stop)| async move {
                if *stop.borrow() {
                    return None;
                }
                let notify = engine.wakes.get(&client);
                let mut notified = Box::pin(notify.notified());
                notified.as_mut().enable();
                let r = engine
                    .client(token, ClientCall::Events { after, limit: 100 })
                    .await;
                if r.status != 200 {
                    return None;
                }
                let v: Value = serde_json::from_slice(&r.body).unwrap_or_default();
                let events = v["events"].as_array().cloned().unwrap_or_default();
                let mut out = String::new();
                let mut cursor = after;
                for e in &events {
                    cursor = e["seq"].as_u64().unwrap_or(cursor);
                    out.push_str(&format!("id: {cursor}\nevent: delivery\ndata: {e}\n\n"));
                }
                if events.is_empty() {
                    tokio::select! {
                        _ = tokio::time::timeout(SSE_KEEPALIVE, notified) => {}
                        () = stopping(&mut stop) => return None,
                    }
                    out.push_str(": keep-alive\n\n");
                }
                Some((
                    Ok::<_, Infallible>(Frame::data(Bytes::from(out))),
                    (engine, token, cursor, client, stop),
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
        token: Option<[u8; 32]>,
        body: Incoming,
    ) -> Result<Response<Body>, Response<Body>> {
        let v = self.json(body).await?;
        let upto = json_field(&v, "upto")?
            .as_u64()
            .ok_or_else(|| text(400, "upto must be a sequence number"))?;
        Ok(engine_reply(
            self.engine.client(token, ClientCall::Ack { upto }).await,
        ))
    }

    async fn subscribe(
        &self,
        token: Option<[u8; 32]>,
        body: Incoming,
    ) -> Result<Response<Body>, Response<Body>> {
        let v = self.json(body).await?;
        let room = str_field(&v, "room")?;
        let on = v.get("on").and_then(Value::as_bool).unwrap_or(true);
        Ok(engine_reply(
            self.engine
                .client(token, ClientCall::Subscribe { room, on })
                .await,
        ))
    }

    async fn authenticated(&self, token: Option<[u8; 32]>) -> Result<(), Response<Body>> {
        let who = self.engine.client(token, ClientCall::Whoami).await;
        if who.status == 200 {
            Ok(())
        } else {
            Err(engine_reply(who))
        }
    }

    async fn upload(
        &self,
        token: Option<[u8; 32]>,
        body: Incoming,
    ) -> Result<Response<Body>, Response<Body>> {
        self.authenticated(token).await?;
        let b = self.body(body, self.max_asset).await?;
        let url = store_asset(&self.store, &self.asset_base, b.to_vec())
            .await
            .map_err(|e| text(500, e))?;
        let id = url.rsplit('/').next().unwrap_or("").to_owned();
        let v = json!({"id": id, "url": url});
        Ok(reply(
            201,
            "application/json",
            v.to_string().into_bytes(),
            None,
        ))
    }

    async fn fetch(
        &self,
        token: Option<[u8; 32]>,
        parts: &http::request::Parts,
    ) -> Result<Response<Body>, Response<Body>> {
        self.authenticated(token).await?;
        let url = query(parts, "url")
            .ok_or_else(|| text(400, "GET /download needs ?url=<percent-encoded asset URL>"))?;
        match fetch_asset(&self.store, &self.peers, &self.asset_base, &url).await {
            Ok(b) => Ok(reply(200, "application/octet-stream", b, None)),
            Err(e) if e == "no such asset" => Err(text(404, e)),
            Err(e) => Err(text(502, format!("cannot download {url}: {e}"))),
        }
    }

    async fn download(
        &self,
        token: Option<[u8; 32]>,
        id: &str,
    ) -> Result<Response<Body>, Response<Body>> {
        self.authenticated(token).await?;
        if !id.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(text(404, "no such asset"));
        }
        let store = Arc::clone(&self.store);
        let key = id.to_owned();
        match tokio::task::spawn_blocking(move || store.asset(&key)).await {
            Ok(Ok(Some(b))) => Ok(reply(200, "application/octet-stream", b, None)),
            Ok(Ok(None)) => Err(text(404, "no such asset")),
            _ => Err(text(500, "storage failure")),
        }
    }
}
