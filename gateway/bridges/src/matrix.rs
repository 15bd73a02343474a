//! The Matrix bridge: an application service of a Matrix homeserver.
//!
//! - The homeserver pushes room events to [`MatrixBridge::serve`] (`PUT
//!   /_matrix/app/v1/transactions/{txnId}`, authenticated with `hs_token`). Events of bridged
//!   users in mirrored rooms are translated into MIMI content and sent to the room's hub as
//!   those users; echoes of our own puppets are dropped.
//! - MIMI messages a bridged user receives are posted into the mirrored Matrix room by the
//!   puppet of their sender (`@<prefix><escaped MIMI URI>:<server>`), registered and joined on
//!   demand. Only one bridged user per room relays, so nothing is posted twice.
//! - Mirrored rooms are public rooms with an alias in the application service's namespace,
//!   created by the bot at start if they do not exist.
//!
//! `mimi bridge matrix registration` prints the registration YAML for the homeserver.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::convert::Infallible;
use std::sync::Arc;

use anyhow::{Context as _, bail};
use bytes::Bytes;
use http::{Method, Request, Response};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use mimi_adapters::matrix::Matrix;
use mimi_adapters::{Adapter, Provider};
use mimi_client::Event;
use mimi_proto::directory::encode_path_value;
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio::sync::{Mutex, mpsc, watch};

use mimi_adapters::attachments::{Media, MediaError};

use super::{Core, Delivered};
use crate::config::MatrixBridge as Config;
use crate::stopping;

/// Largest transaction body accepted from the homeserver.
const MAX_TXN: usize = 8 << 20;

/// The registration YAML of the application service.
pub fn registration(c: &Config) -> String {
    let server = c.server_name.replace('.', "\\\\.");
    format!(
        "# Application service registration for the MIMI gateway (mimi bridge matrix registration).\n\
         id: mimi-gateway\nurl: \"http://{}\"\nas_token: \"{}\"\nhs_token: \"{}\"\nsender_localpart: {}\nrate_limited: false\n\
         namespaces:\n  users:\n    - exclusive: true\n      regex: '@{}.*:{server}'\n  aliases:\n    - exclusive: true\n      regex: '#{}.*:{server}'\n  rooms: []\n",
        c.listen, c.as_token, c.hs_token, c.bot_localpart, c.puppet_prefix, c.puppet_prefix
    )
}

/// Puppets registered, and (puppet, room) pairs joined.
type Puppets = (BTreeSet<String>, BTreeSet<(String, String)>);

/// The running bridge.
pub struct MatrixBridge {
    cfg: Config,
    core: Arc<Core>,
    adapter: Matrix,
    /// MIMI room → Matrix room ID, and back.
    portals: Mutex<(HashMap<String, String>, HashMap<String, String>)>,
    /// Puppets registered / joined per room.
    puppets: Mutex<Puppets>,
    /// Which bridged user relays each room.
    relays: super::Relays,
    /// Transaction IDs already processed (bounded).
    seen_txns: Mutex<VecDeque<String>>,
    /// One translation at a time, in order.
    inbound: Mutex<()>,
    txn: std::sync::atomic::AtomicU64,
}

impl std::fmt::Debug for MatrixBridge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MatrixBridge")
            .field("server", &self.cfg.server_name)
            .finish_non_exhaustive()
    }
}

async fn http_bytes(
    base: &str,
    method: Method,
    path: &str,
    token: &str,
    content_type: &str,
    body: Vec<u8>,
) -> anyhow::Result<(u16, Bytes)> {
    let hostport = base.trim_start_matches("http://").trim_end_matches('/');
    let tcp = TcpStream::connect(hostport)
        .await
        .with_context(|| format!("cannot reach the homeserver at {base}"))?;
    let (mut s, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp)).await?;
    tokio::spawn(conn);
    let req = Request::builder()
        .method(method)
        .uri(path)
        .header(http::header::HOST, hostport)
        .header(http::header::AUTHORIZATION, format!("Bearer {token}"))
        .header(http::header::CONTENT_TYPE, content_type)
        .body(Full::new(Bytes::from(body)))?;
    let r = s.send_request(req).await?;
    let status = r.status().as_u16();
    let b = Limited::new(r.into_body(), 64 << 20)
        .collect()
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?
        .to_bytes();
    Ok((status, b))
}

async fn http(
    base: &str,
    method: Method,
    path: &str,
    token: &str,
    body: Option<&Value>,
) -> anyhow::Result<(u16, Value)> {
    let raw = body.map(|b| b.to_string().into_bytes()).unwrap_or_default();
    let (status, b) = http_bytes(base, method, path, token, "application/json", raw).await?;
    Ok((status, serde_json::from_slice(&b).unwrap_or(Value::Null)))
}

/// Attachments between the homeserver's media repository and MIMI assets: `mxc://` downloads
/// (authenticated media, with the application service's token) and uploads, MIMI assets
/// stored on this gateway or fetched from peers over the federation links.
struct MatrixMedia<'a> {
    b: &'a MatrixBridge,
}

impl Media for MatrixMedia<'_> {
    fn fetch(&mut self, url: &str) -> Result<Vec<u8>, MediaError> {
        let (base, token) = (
            self.b.cfg.homeserver_url.clone(),
            self.b.cfg.as_token.clone(),
        );
        if let Some(rest) = url.strip_prefix("mxc://") {
            let path = format!("/_matrix/client/v1/media/download/{rest}");
            return Core::block_on(async move {
                match http_bytes(
                    &base,
                    Method::GET,
                    &path,
                    &token,
                    "application/octet-stream",
                    Vec::new(),
                )
                .await
                {
                    Ok((200, b)) => Ok(b.to_vec()),
                    Ok((s, b)) => Err(format!("{path}: {s} {}", String::from_utf8_lossy(&b))),
                    Err(e) => Err(e.to_string()),
                }
            });
        }
        Core::block_on(self.b.core.assets.fetch(url))
    }

    fn store_mimi(&mut self, ciphertext: &[u8]) -> Result<String, MediaError> {
        Core::block_on(self.b.core.assets.store(ciphertext.to_vec()))
    }

    fn store_native(
        &mut self,
        bytes: &[u8],
        content_type: &str,
        filename: &str,
    ) -> Result<String, MediaError> {
        let (base, token) = (
            self.b.cfg.homeserver_url.clone(),
            self.b.cfg.as_token.clone(),
        );
        let path = format!(
            "/_matrix/media/v3/upload?filename={}",
            encode_path_value(filename)
        );
        let (ct, body) = (content_type.to_owned(), bytes.to_vec());
        Core::block_on(async move {
            match http_bytes(&base, Method::POST, &path, &token, &ct, body).await {
                Ok((200, b)) => serde_json::from_slice::<Value>(&b)
                    .ok()
                    .and_then(|v| v["content_uri"].as_str().map(str::to_owned))
                    .ok_or_else(|| "upload answered without content_uri".to_owned()),
                Ok((s, b)) => Err(format!("upload: {s} {}", String::from_utf8_lossy(&b))),
                Err(e) => Err(e.to_string()),
            }
        })
    }
}

impl MatrixBridge {
    /// Starts the bridge: provisions the configured users, creates or finds the mirrored
    /// rooms, and spawns the transaction listener and the outbound loop.
    ///
    /// # Errors
    /// The homeserver or the client API cannot be reached.
    pub async fn start(
        cfg: Config,
        core: Arc<Core>,
        deliveries: mpsc::Receiver<Delivered>,
        shutdown: watch::Receiver<bool>,
    ) -> anyhow::Result<Arc<Self>> {
        let adapter = Matrix {
            homeserver: cfg.server_name.clone(),
            puppet_prefix: cfg.puppet_prefix.clone(),
        };
        let listener = tokio::net::TcpListener::bind(cfg.listen)
            .await
            .with_context(|| format!("cannot bind the application service on {}", cfg.listen))?;
        let b = Arc::new(Self {
            cfg,
            core,
            adapter,
            portals: Mutex::new((HashMap::new(), HashMap::new())),
            puppets: Mutex::new((BTreeSet::new(), BTreeSet::new())),
            relays: super::Relays::default(),
            seen_txns: Mutex::new(VecDeque::new()),
            inbound: Mutex::new(()),
            txn: std::sync::atomic::AtomicU64::new(0),
        });
        tokio::spawn(Arc::clone(&b).serve(listener, shutdown.clone()));
        for r in b.cfg.rooms.clone() {
            let id = b
                .portal(&r.alias)
                .await
                .with_context(|| format!("mirrored room #{}:{}", r.alias, b.cfg.server_name))?;
            let mut p = b.portals.lock().await;
            p.0.insert(r.mimi.clone(), id.clone());
            p.1.insert(id, r.mimi);
        }
        for u in b.cfg.users.clone() {
            let user = b.core.provision(&u).await?;
            let rooms = user.lock().await.session.member.rooms();
            for r in rooms {
                b.relays.join(&r, &u).await;
            }
        }
        tokio::spawn(Arc::clone(&b).outbound(deliveries, shutdown));
        tracing::info!(server = %b.cfg.server_name, "Matrix bridge ready");
        Ok(b)
    }

    async fn cs(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> anyhow::Result<(u16, Value)> {
        http(
            &self.cfg.homeserver_url,
            method,
            path,
            &self.cfg.as_token,
            body,
        )
        .await
    }

    fn bot(&self) -> String {
        format!("@{}:{}", self.cfg.bot_localpart, self.cfg.server_name)
    }

    /// The room behind `#alias`, created (public, by the bot) if missing.
    async fn portal(&self, alias: &str) -> anyhow::Result<String> {
        let full = format!("#{alias}:{}", self.cfg.server_name);
        let (s, v) = self
            .cs(
                Method::GET,
                &format!(
                    "/_matrix/client/v3/directory/room/{}",
                    encode_path_value(&full)
                ),
                None,
            )
            .await?;
        if s == 200 {
            let id = v["room_id"].as_str().context("room_id")?.to_owned();
            let _ = self
                .cs(
                    Method::POST,
                    &format!(
                        "/_matrix/client/v3/join/{}?user_id={}",
                        encode_path_value(&id),
                        encode_path_value(&self.bot())
                    ),
                    Some(&json!({})),
                )
                .await;
            return Ok(id);
        }
        let (s, v) = self.cs(Method::POST, "/_matrix/client/v3/createRoom", Some(&json!({"room_alias_name": alias, "preset": "public_chat", "name": format!("MIMI {alias}"), "power_level_content_override": {"redact": 0}}))).await?;
        if s != 200 {
            bail!("createRoom answered {s}: {v}");
        }
        Ok(v["room_id"].as_str().context("room_id")?.to_owned())
    }

    /// Registers and joins the puppet of a MIMI user in a Matrix room.
    async fn puppet_in(&self, uri: &str, room_id: &str) -> anyhow::Result<String> {
        let mxid = self.adapter.mxid_of(&self.core.uris, uri);
        let mut p = self.puppets.lock().await;
        if !p.0.contains(&mxid) {
            let local = mxid
                .trim_start_matches('@')
                .split(':')
                .next()
                .unwrap_or("")
                .to_owned();
            let (s, v) = self.cs(Method::POST, "/_matrix/client/v3/register", Some(&json!({"type": "m.login.application_service", "username": local, "inhibit_login": true}))).await?;
            if s != 200 && v["errcode"] != "M_USER_IN_USE" {
                bail!("registering {mxid}: {s} {v}");
            }
            let _ = self
                .cs(
                    Method::PUT,
                    &format!(
                        "/_matrix/client/v3/profile/{0}/displayname?user_id={0}",
                        encode_path_value(&mxid)
                    ),
                    Some(&json!({"displayname": super::display(uri)})),
                )
                .await;
            p.0.insert(mxid.clone());
        }
        if p.1.insert((mxid.clone(), room_id.to_owned())) {
            let (s, v) = self
                .cs(
                    Method::POST,
                    &format!(
                        "/_matrix/client/v3/join/{}?user_id={}",
                        encode_path_value(room_id),
                        encode_path_value(&mxid)
                    ),
                    Some(&json!({})),
                )
                .await?;
            if s != 200 {
                p.1.remove(&(mxid.clone(), room_id.to_owned()));
                bail!("joining {mxid} to {room_id}: {s} {v}");
            }
        }
        Ok(mxid)
    }

    /// Posts MIMI deliveries into the mirrored rooms.
    async fn outbound(
        self: Arc<Self>,
        mut rx: mpsc::Receiver<Delivered>,
        mut shutdown: watch::Receiver<bool>,
    ) {
        loop {
            let d = tokio::select! {
                d = rx.recv() => match d { Some(d) => d, None => return },
                () = stopping(&mut shutdown) => return,
            };
            for ev in d.events {
                if let Err(e) = self.relay(&d.native, ev).await {
                    tracing::warn!(error = %format!("{e:#}"), "could not post into Matrix");
                }
            }
        }
    }

    async fn relay(&self, native: &str, ev: Event) -> anyhow::Result<()> {
        let Some((room, sender, message)) = self.relays.filter(&self.core, native, ev).await else {
            return Ok(());
        };
        let Some(room_id) = self.portals.lock().await.0.get(&room).cloned() else {
            tracing::debug!(%room, "no mirrored Matrix room");
            return Ok(());
        };
        let puppet = self.puppet_in(&sender, &room_id).await?;
        let out = {
            self.core
                .translate(&room, &room_id, Some(&mut MatrixMedia { b: self }), |ctx| {
                    self.adapter.from_mimi(ctx, &sender, &message)
                })??
        };
        for l in &out.lost {
            tracing::info!(%room, lost = %l, "not carried into Matrix");
        }
        for item in out.items {
            let txn = format!(
                "{}-{}",
                item["txn_id"].as_str().unwrap_or("t"),
                self.txn.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            );
            let user = encode_path_value(&puppet);
            let (path, body) = if item["type"] == "m.room.redaction" {
                (
                    format!(
                        "/_matrix/client/v3/rooms/{}/redact/{}/{txn}?user_id={user}",
                        encode_path_value(&room_id),
                        encode_path_value(item["redacts"].as_str().unwrap_or(""))
                    ),
                    json!({}),
                )
            } else {
                (
                    format!(
                        "/_matrix/client/v3/rooms/{}/send/{}/{txn}?user_id={user}",
                        encode_path_value(&room_id),
                        item["type"].as_str().unwrap_or("m.room.message")
                    ),
                    item["content"].clone(),
                )
            };
            let (s, v) = self.cs(Method::PUT, &path, Some(&body)).await?;
            if s != 200 {
                bail!("posting as {puppet}: {s} {v}");
            }
            if let (Some(event_id), Some(t)) = (v["event_id"].as_str(), item["txn_id"].as_str())
                && let Ok(mut ids) = self.core.ids.lock()
            {
                ids.alias(Provider::Matrix, &room_id, t, event_id);
            }
        }
        self.core.save_ids();
        Ok(())
    }

    /// Serves the application-service API until shutdown.
    pub async fn serve(
        self: Arc<Self>,
        listener: tokio::net::TcpListener,
        mut shutdown: watch::Receiver<bool>,
    ) {
        loop {
            tokio::select! {
                r = listener.accept() => {
                    let Ok((tcp, _)) = r else { continue };
                    let b = Arc::clone(&self);
                    tokio::spawn(async move {
                        let svc = hyper::service::service_fn(move |req| {
                            let b = Arc::clone(&b);
                            async move { Ok::<_, Infallible>(b.handle(req).await) }
                        });
                        let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new()).serve_connection(TokioIo::new(tcp), svc).await;
                    });
                }
                () = stopping(&mut shutdown) => return,
            }
        }
    }

    async fn handle(&self, req: Request<Incoming>) -> Response<Full<Bytes>> {
        let reply = |status: u16, v: Value| {
            Response::builder()
                .status(status)
                .header(http::header::CONTENT_TYPE, "application/json")
                .body(Full::new(Bytes::from(v.to_string())))
                .unwrap_or_else(|_| Response::new(Full::new(Bytes::new())))
        };
        let token = req
            .headers()
            .get(http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::to_owned)
            .or_else(|| {
                req.uri().query().and_then(|q| {
                    q.split('&')
                        .find_map(|kv| kv.strip_prefix("access_token=").map(str::to_owned))
                })
            });
        if token.as_deref() != Some(self.cfg.hs_token.as_str()) {
            return reply(
                403,
                json!({"errcode": "M_FORBIDDEN", "error": "bad or missing hs_token"}),
            );
        }
        let path = req.uri().path().to_owned();
        let method = req.method().clone();
        let body = match Limited::new(req.into_body(), MAX_TXN).collect().await {
            Ok(b) => b.to_bytes(),
            Err(_) => {
                return reply(
                    413,
                    json!({"errcode": "M_TOO_LARGE", "error": format!("transactions are limited to {MAX_TXN} bytes")}),
                );
            }
        };
        if method == Method::PUT
            && let Some(txn) = path.strip_prefix("/_matrix/app/v1/transactions/")
        {
            let v: Value = match serde_json::from_slice(&body) {
                Ok(v) => v,
                Err(e) => {
                    return reply(
                        400,
                        json!({"errcode": "M_NOT_JSON", "error": e.to_string()}),
                    );
                }
            };
            {
                let mut seen = self.seen_txns.lock().await;
                if seen.contains(&txn.to_owned()) {
                    return reply(200, json!({}));
                }
                seen.push_back(txn.to_owned());
                if seen.len() > 1000 {
                    seen.pop_front();
                }
            }
            let _one = self.inbound.lock().await;
            for ev in v["events"].as_array().cloned().unwrap_or_default() {
                if let Err(e) = self.inbound_event(&ev).await {
                    tracing::warn!(error = %format!("{e:#}"), "could not bridge a Matrix event");
                }
            }
            return reply(200, json!({}));
        }
        if path.starts_with("/_matrix/app/v1/users/") || path.starts_with("/_matrix/app/v1/rooms/")
        {
            return reply(404, json!({"errcode": "M_NOT_FOUND"}));
        }
        if path == "/_matrix/app/v1/ping" {
            return reply(200, json!({}));
        }
        reply(
            404,
            json!({"errcode": "M_UNRECOGNIZED", "error": format!("{method} {path}")}),
        )
    }

    /// One homeserver event into MIMI.
    async fn inbound_event(&self, ev: &Value) -> anyhow::Result<()> {
        let sender = ev["sender"].as_str().unwrap_or("");
        if self.adapter.is_puppet(sender) || sender == self.bot() {
            return Ok(()); // our own echo
        }
        let room_id = ev["room_id"].as_str().unwrap_or("");
        let Some(room) = self.portals.lock().await.1.get(room_id).cloned() else {
            return Ok(());
        };
        let Some(user) = self.core.user(sender).await else {
            tracing::info!(%sender, "a Matrix user who is not bridged wrote in a mirrored room; ignored");
            return Ok(());
        };
        let mut u = user.lock().await;
        if !u.session.member.rooms().contains(&room) {
            tracing::info!(%sender, %room, "the bridged user is not (yet) a member of the MIMI room");
            return Ok(());
        }
        let me = u.session.user().to_owned();
        let translated = {
            self.core
                .translate(&room, room_id, Some(&mut MatrixMedia { b: self }), |ctx| {
                    self.adapter.to_mimi(ctx, &me, ev)
                })??
        };
        for l in &translated.lost {
            tracing::info!(%sender, lost = %l, "not carried into MIMI");
        }
        for m in &translated.items {
            let outcome = u.session.send_message(&room, m).await?;
            tracing::debug!(%sender, ?outcome, "bridged into MIMI");
        }
        self.core.persist(&u);
        self.core.save_ids();
        Ok(())
    }
}
