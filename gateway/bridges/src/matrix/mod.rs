//! The Matrix bridge: an application service of a Matrix homeserver, serving every user the
//! bridge's policy allows.
//!
//! - The homeserver pushes transactions (`PUT /_matrix/app/v1/transactions/{txnId}`,
//!   `Authorization: Bearer <hs_token>`). Each event of a portal is translated into MIMI and
//!   sent to the room's hub as its sender, a bridged user provisioned on first use. The
//!   transaction is recorded as done only after every event was processed; a failure that a
//!   retry can cure (store, client API, homeserver unreachable) answers 503 so the homeserver
//!   retries, and events already sent are recognised by their IDs and not sent twice.
//! - Portals are made on demand: inviting a puppet (`@<prefix><escaped MIMI user URI>`)
//!   opens a direct conversation (a two-person MIMI room hosted here); a portal alias
//!   (`#<prefix><escaped MIMI room URI>`) is answered through the alias query and joined by
//!   external commit when the MIMI room is open; `!mimi join|dm|help` does the same for
//!   clients that cannot type aliases; a MIMI user adding a bridged user makes a portal and
//!   invites them.
//! - Membership follows both ways: joins, leaves, kicks and bans in a portal become
//!   participant-list changes (refusals come back as a notice); MIMI adds and removals make
//!   puppets join and leave.
//! - MIMI messages a bridged user receives are posted by the sender's puppet (once per room,
//!   whichever bridged member receives it first), with transaction IDs derived from the MIMI
//!   message ID so a retry never posts twice; read receipts both ways.
//!
//! `mimi bridge matrix registration` prints the registration YAML for the homeserver.

mod homeserver;
mod inbound;
mod outbound;
pub mod protocol;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, Response};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use mimi_adapters::Provider;
use mimi_adapters::attachments::{Media, MediaError};
use mimi_adapters::matrix::Matrix;
use serde_json::{Value, json};
use tokio::sync::Mutex;

pub use homeserver::{Homeserver, HsError};
pub use protocol::registration;
use protocol::{Names, Transaction};

use crate::access::Access;
use crate::config::MatrixBridge as Config;
use crate::users::{UserError, Users};
use crate::{Host, stopping};

/// The running bridge.
pub struct MatrixBridge {
    cfg: Config,
    names: Names,
    hs: Homeserver,
    users: Arc<Users>,
    adapter: Matrix,
    host: Host,
    /// (puppet, room) pairs joined, and puppets registered (a bounded memo).
    puppets: std::sync::Mutex<std::collections::HashSet<(String, String)>>,
    /// One transaction at a time, in order.
    txns: Mutex<()>,
    /// Per-room serialization of outbound posting.
    rooms: Vec<Mutex<()>>,
}

impl std::fmt::Debug for MatrixBridge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MatrixBridge")
            .field("server", &self.cfg.server_name)
            .finish_non_exhaustive()
    }
}

/// Whether a failure is worth a retry (the homeserver resends the transaction).
pub(crate) fn transient(e: &UserError) -> bool {
    match e {
        UserError::Store(_) => true,
        UserError::Api(a) => matches!(a, mimi_session::ApiError::Transport { .. }),
        UserError::Status { status, .. } => *status >= 500 || *status == 429,
        _ => false,
    }
}

/// The bridge's failures while handling one event.
#[derive(Debug, thiserror::Error)]
pub(crate) enum StepError {
    /// A bridged user's operation.
    #[error(transparent)]
    User(#[from] UserError),
    /// The homeserver.
    #[error(transparent)]
    Hs(#[from] HsError),
    /// The ID map could not be read.
    #[error(transparent)]
    Rows(#[from] mimi_adapters::ids::RowsError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] crate::StoreError),
    /// Translation.
    #[error(transparent)]
    Adapter(#[from] mimi_adapters::AdapterError),
}

impl StepError {
    pub(crate) fn transient(&self) -> bool {
        match self {
            Self::User(u) => transient(u),
            Self::Hs(HsError::Transport { .. }) | Self::Rows(_) | Self::Store(_) => true,
            Self::Hs(HsError::Status { status, .. }) => *status >= 500 || *status == 429,
            _ => false,
        }
    }
}

impl MatrixBridge {
    /// Starts the bridge: the transaction listener, the configured portals and users, the
    /// delivery runner and the retention sweeper.
    ///
    /// # Errors
    /// The listener cannot bind, or the homeserver refuses the configured portals.
    pub async fn start(cfg: Config, host: Host) -> anyhow::Result<Arc<Self>> {
        let hs = Homeserver::new(
            &cfg.homeserver_url,
            &cfg.as_token,
            Duration::from_millis(cfg.request_timeout_ms),
        )?;
        let access = Access::new(&cfg.server_name, &cfg.policy.allow, &cfg.policy.deny);
        let users = Arc::new(Users::new(
            &host,
            Provider::Matrix,
            access,
            cfg.policy.clone(),
        ));
        let listener = mimi_listen::Listener::bind(cfg.listen, mimi_listen::Limits::default())
            .await
            .map_err(|e| {
                anyhow::anyhow!("cannot bind the application service on {}: {e}", cfg.listen)
            })?;
        let b = Arc::new(Self {
            names: Names::new(&cfg),
            adapter: Matrix {
                homeserver: cfg.server_name.clone(),
                puppet_prefix: cfg.puppet_prefix.clone(),
            },
            cfg,
            hs,
            users,
            host: host.clone(),
            puppets: std::sync::Mutex::default(),
            txns: Mutex::new(()),
            rooms: (0..64).map(|_| Mutex::new(())).collect(),
        });
        let me = Arc::clone(&b);
        tokio::spawn(listener.serve_http(host.stop.clone(), move |req, _| {
            let me = Arc::clone(&me);
            async move { me.http(req).await }
        }));
        for r in b.cfg.rooms.clone() {
            b.configured_portal(&r.mimi, &r.alias).await.map_err(|e| {
                anyhow::anyhow!("mirrored room #{}:{}: {e}", r.alias, b.cfg.server_name)
            })?;
        }
        for u in b.cfg.users.clone() {
            b.users
                .get(&u)
                .await
                .map_err(|e| anyhow::anyhow!("bridged user {u}: {e}"))?;
        }
        tokio::spawn(crate::deliveries::run(
            Arc::clone(&b.users),
            Arc::clone(&b),
            host.wakes.subscribe(),
            host.stop.clone(),
        ));
        tokio::spawn(Arc::clone(&b).retention());
        tracing::info!(server = %b.cfg.server_name, "Matrix bridge ready");
        Ok(b)
    }

    /// The bridge's users.
    pub fn users(&self) -> &Arc<Users> {
        &self.users
    }

    fn room_lock(&self, room: &str) -> &Mutex<()> {
        let h = room.bytes().fold(0usize, |h, b| {
            h.wrapping_mul(31).wrapping_add(usize::from(b))
        });
        &self.rooms[h % self.rooms.len()]
    }

    /// Deletes ID map rows past the retention period and old transaction IDs, hourly.
    async fn retention(self: Arc<Self>) {
        let mut stop = self.host.stop.clone();
        let mut tick = tokio::time::interval(Duration::from_secs(3600));
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                () = stopping(&mut stop) => return,
            }
            let now = crate::now_s();
            let cutoff = now.saturating_sub(self.cfg.policy.id_retention_days * 86_400);
            loop {
                match self.users.db.expire_ids(cutoff, 1000) {
                    Ok((_, true)) => tokio::task::yield_now().await,
                    Ok(_) => break,
                    Err(e) => {
                        tracing::warn!(error = %e, "bridge: ID map retention failed");
                        break;
                    }
                }
            }
            if let Err(e) = self.users.db.expire_txns(now.saturating_sub(86_400), 1000) {
                tracing::warn!(error = %e, "bridge: transaction retention failed");
            }
        }
    }

    async fn http(&self, req: Request<Incoming>) -> Response<Full<Bytes>> {
        let reply = |status: u16, v: Value| {
            Response::builder()
                .status(status)
                .header(http::header::CONTENT_TYPE, "application/json")
                .body(Full::new(Bytes::from(v.to_string())))
                .unwrap_or_else(|_| Response::new(Full::new(Bytes::new())))
        };
        let auth = req
            .headers()
            .get(http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        if !protocol::authenticated(auth, &self.cfg.hs_token) {
            return reply(
                403,
                json!({"errcode": "M_FORBIDDEN", "error": "missing or wrong hs_token (send it as Authorization: Bearer)"}),
            );
        }
        let path = req.uri().path().to_owned();
        let method = req.method().clone();
        let body = match Limited::new(req.into_body(), protocol::MAX_TXN)
            .collect()
            .await
        {
            Ok(b) => b.to_bytes(),
            Err(_) => {
                return reply(
                    413,
                    json!({"errcode": "M_TOO_LARGE", "error": format!("requests are limited to {} bytes", protocol::MAX_TXN)}),
                );
            }
        };
        let decode =
            |p: &str| mimi_proto::directory::decode_path_value(p).unwrap_or_else(|| p.to_owned());
        if method == Method::PUT
            && let Some(txn) = path.strip_prefix("/_matrix/app/v1/transactions/")
        {
            return match self.transaction(&decode(txn), &body).await {
                Ok(()) => reply(200, json!({})),
                Err(TxnFailure::Malformed(e)) => {
                    reply(400, json!({"errcode": "M_NOT_JSON", "error": e}))
                }
                Err(TxnFailure::Retry(e)) => reply(
                    503,
                    json!({"errcode": "M_UNKNOWN", "error": format!("not processed, retry: {e}")}),
                ),
            };
        }
        if method == Method::GET
            && let Some(alias) = path.strip_prefix("/_matrix/app/v1/rooms/")
        {
            return match self.alias_query(&decode(alias)).await {
                Ok(true) => reply(200, json!({})),
                Ok(false) => reply(
                    404,
                    json!({"errcode": "M_NOT_FOUND", "error": "not a MIMI room alias"}),
                ),
                Err(e) => reply(503, json!({"errcode": "M_UNKNOWN", "error": e.to_string()})),
            };
        }
        if method == Method::GET
            && let Some(user) = path.strip_prefix("/_matrix/app/v1/users/")
        {
            return match self.user_query(&decode(user)).await {
                Ok(true) => reply(200, json!({})),
                Ok(false) => reply(
                    404,
                    json!({"errcode": "M_NOT_FOUND", "error": "not a MIMI user's puppet"}),
                ),
                Err(e) => reply(503, json!({"errcode": "M_UNKNOWN", "error": e.to_string()})),
            };
        }
        if path == "/_matrix/app/v1/ping" {
            return reply(200, json!({}));
        }
        reply(
            404,
            json!({"errcode": "M_UNRECOGNIZED", "error": format!("{method} {path} is not an application-service endpoint")}),
        )
    }

    async fn transaction(&self, txn: &str, body: &[u8]) -> Result<(), TxnFailure> {
        let t = Transaction::parse(body).map_err(|e| TxnFailure::Malformed(e.to_string()))?;
        let _one = self.txns.lock().await;
        let retry = |e: &dyn std::fmt::Display| TxnFailure::Retry(e.to_string());
        if self.users.db.txn_done(txn).map_err(|e| retry(&e))? {
            return Ok(());
        }
        for ev in &t.events {
            if let Err(e) = self.event(ev).await {
                if e.transient() {
                    tracing::info!(error = %e, %txn, "bridge: transaction not processed; the homeserver will retry");
                    return Err(retry(&e));
                }
                tracing::warn!(error = %e, event = %ev["event_id"], "bridge: a Matrix event could not be bridged");
            }
        }
        for ev in t.ephemeral() {
            for (room, event, user) in protocol::receipts(ev) {
                if let Err(e) = self.receipt(&room, &event, &user).await
                    && e.transient()
                {
                    return Err(retry(&e));
                }
            }
        }
        self.users
            .db
            .apply(&[self.users.db.put_txn(txn, crate::now_s())])
            .map_err(|e| retry(&e))
    }
}

enum TxnFailure {
    Malformed(String),
    Retry(String),
}

/// Attachments between the homeserver's media repository and MIMI assets, from the
/// adapters' synchronous calls (the gateway runs on tokio's multi-threaded runtime).
pub(crate) struct MatrixMedia<'a> {
    pub(crate) hs: &'a Homeserver,
    pub(crate) assets: &'a dyn crate::Assets,
}

pub(crate) fn block_on<T, E: std::fmt::Display>(
    fut: impl Future<Output = Result<T, E>>,
) -> Result<T, MediaError> {
    let h =
        tokio::runtime::Handle::try_current().map_err(|e| MediaError::Transfer(e.to_string()))?;
    if h.runtime_flavor() != tokio::runtime::RuntimeFlavor::MultiThread {
        return Err(MediaError::Transfer(
            "attachments need a multi-threaded runtime".into(),
        ));
    }
    tokio::task::block_in_place(|| h.block_on(fut)).map_err(|e| MediaError::Transfer(e.to_string()))
}

impl Media for MatrixMedia<'_> {
    fn fetch(&mut self, url: &str) -> Result<Vec<u8>, MediaError> {
        if url.starts_with("mxc://") {
            return block_on(self.hs.download(url));
        }
        block_on(self.assets.fetch(url))
    }

    fn store_mimi(&mut self, ciphertext: &[u8]) -> Result<String, MediaError> {
        block_on(self.assets.store(ciphertext.to_vec()))
    }

    fn store_native(
        &mut self,
        bytes: &[u8],
        content_type: &str,
        filename: &str,
    ) -> Result<String, MediaError> {
        block_on(self.hs.upload(bytes.to_vec(), content_type, filename))
    }
}
