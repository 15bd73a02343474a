//! The operator's API (`/admin/v1/…`, types in `mimi_proto::admin_api`), authenticated with
//! the admin token: peers and their links, hosted rooms, queues and dead letters from the
//! store; retry and drop of dead letters, resync marks and certificate reload through the
//! engine and the TLS state like every other change.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use http::{Method, Request, Response};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use mimi_engine::store::rows::{self, DeadLetterRow, FollowerRow, OutboxMetaRow};
use mimi_engine::store::{Store, Table, keys};
use mimi_engine::{AdminCall, Auth, ClientCall, ClientReply, Shared};
use mimi_proto::admin_api as api;
use mimi_proto::uri::Domain;
use serde::Serialize;
use subtle::ConstantTimeEq as _;

use crate::driver::{EngineHandle, Health, SlotOwner};
use crate::peers::PeerClient;
use crate::reload::Credentials;

/// What the admin API reads and acts on.
pub struct AdminApi {
    /// This provider.
    pub domain: String,
    /// The admin token (no token: the API answers 403 to everything).
    pub token: Option<String>,
    /// The store.
    pub store: Arc<dyn Store>,
    /// The engine.
    pub engine: EngineHandle,
    /// What the shards share (out-of-sync marks).
    pub shared: Arc<Shared>,
    /// Links to peers.
    pub peers: Arc<PeerClient>,
    /// Health.
    pub health: Arc<Health>,
    /// Certificates (reload).
    pub credentials: Arc<Credentials>,
    /// Shards.
    pub shards: u16,
    /// Start time.
    pub started: Instant,
    /// Cluster membership (PostgreSQL storage).
    pub cluster: Option<Arc<crate::cluster::Cluster>>,
}

impl std::fmt::Debug for AdminApi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminApi")
            .field("domain", &self.domain)
            .finish_non_exhaustive()
    }
}

type Out = Response<Full<Bytes>>;

fn json(status: u16, v: &impl Serialize) -> Out {
    Response::builder()
        .status(status)
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::from(
            serde_json::to_vec(v).unwrap_or_default(),
        )))
        .unwrap_or_else(|_| Response::new(Full::new(Bytes::new())))
}

fn refused(status: u16, why: impl Into<String>) -> Out {
    json(status, &api::Refused { error: why.into() })
}

fn query<'a>(q: Option<&'a str>, key: &str) -> Option<&'a str> {
    q?.split('&')
        .find_map(|kv| kv.strip_prefix(key).and_then(|r| r.strip_prefix('=')))
}

/// Most rows a list answers (`limit` can lower it).
const MAX_LIST: usize = 10_000;

impl AdminApi {
    fn authorized(&self, req: &Request<Incoming>) -> bool {
        let given = req
            .headers()
            .get(http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        match (&self.token, given) {
            (Some(t), Some(g)) => bool::from(t.as_bytes().ct_eq(g.as_bytes())),
            _ => false,
        }
    }

    /// Answers one request under `/admin/v1`.
    pub async fn handle(&self, req: Request<Incoming>) -> Out {
        if self.token.is_none() {
            return refused(403, "the admin API is off: set client_api.admin_token");
        }
        if !self.authorized(&req) {
            return refused(
                401,
                "missing or wrong admin token (Authorization: Bearer <client_api.admin_token>)",
            );
        }
        let path = req.uri().path().trim_start_matches(api::PREFIX).to_owned();
        let q = req.uri().query().map(str::to_owned);
        let limit = query(q.as_deref(), "limit")
            .and_then(|l| l.parse().ok())
            .unwrap_or(MAX_LIST)
            .min(MAX_LIST);
        let method = req.method().clone();
        let r = match (method.clone(), path.as_str()) {
            (Method::GET, "/status") => self.status().map(|v| json(200, &v)),
            (Method::GET, "/cluster") => {
                return match self.cluster_status(query(q.as_deref(), "room")) {
                    Ok(v) => json(200, &v),
                    Err((status, why)) => refused(status, why),
                };
            }
            (Method::GET, "/peers") => self.peers().map(|v| json(200, &v)),
            (Method::GET, "/rooms") => self
                .rooms(query(q.as_deref(), "after"), limit)
                .map(|v| json(200, &v)),
            (Method::GET, "/queues") => self.queues(limit).map(|v| json(200, &v)),
            (Method::GET, "/dead-letters") => self
                .dead_letters(query(q.as_deref(), "follower"), limit)
                .map(|v| json(200, &v)),
            (Method::POST, "/dead-letters/retry" | "/dead-letters/drop") => {
                let retry = path.ends_with("retry");
                return match body::<api::DeadLetterAction>(req).await {
                    Ok(a) => self.dead_letter_action(a, retry).await,
                    Err(e) => e,
                };
            }
            (Method::POST, "/followers/resynced") => {
                return match body::<api::Resynced>(req).await {
                    Ok(a) => match a.follower.parse::<Domain>() {
                        Ok(follower) => self.act(AdminCall::Resynced { follower }).await,
                        Err(e) => refused(400, format!("follower: {e}")),
                    },
                    Err(e) => e,
                };
            }
            (Method::POST, "/reload") => {
                return match self.credentials.reload() {
                    Ok(v) => json(200, &v),
                    Err(e) => refused(400, format!("nothing changed: {e:#}")),
                };
            }
            _ => {
                return refused(
                    404,
                    format!("{method} {}{path} is not an admin endpoint", api::PREFIX),
                );
            }
        };
        r.unwrap_or_else(|e| refused(503, format!("storage: {e}")))
    }

    fn meta(
        &self,
        limit: usize,
    ) -> Result<Vec<(String, String, OutboxMetaRow)>, mimi_engine::store::StoreError> {
        let mut out = Vec::new();
        for (k, v) in self.store.scan(Table::OutboxMeta, b"", None, limit)? {
            let parts = keys::split_text(&k);
            if let [f, room] = parts.as_slice() {
                let m: OutboxMetaRow = rows::decode(Table::OutboxMeta, &v)?;
                if m.count > 0 {
                    out.push((f.clone(), room.clone(), m));
                }
            }
        }
        Ok(out)
    }

    fn dead_letter_counts(&self) -> Result<BTreeMap<String, u64>, mimi_engine::store::StoreError> {
        let mut out: BTreeMap<String, u64> = BTreeMap::new();
        for (k, _) in self
            .store
            .scan(Table::DeadLetters, b"", None, MAX_LIST * 10)?
        {
            if let Some(f) = keys::split_text(&k).into_iter().next() {
                *out.entry(f).or_default() += 1;
            }
        }
        Ok(out)
    }

    fn status(&self) -> Result<api::Status, mimi_engine::store::StoreError> {
        let meta = self.meta(MAX_LIST * 10)?;
        Ok(api::Status {
            domain: self.domain.clone(),
            ready: self.health.ok(),
            problem: self.health.problem().map(str::to_owned),
            shards: self.shards,
            uptime_s: self.started.elapsed().as_secs(),
            failed_commits: self.health.failed_commits(),
            rooms_hosted: mimi_engine::hosted_rooms(&*self.store, None, MAX_LIST)?.len() as u64,
            queued_entries: meta.iter().map(|(_, _, m)| m.count).sum(),
            queued_bytes: meta.iter().map(|(_, _, m)| m.bytes).sum(),
            dead_letters: self.dead_letter_counts()?.values().sum(),
            out_of_sync: self.shared.out_of_sync().into_keys().collect(),
        })
    }

    fn cluster_status(&self, room: Option<&str>) -> Result<api::ClusterStatus, (u16, String)> {
        let Some(c) = &self.cluster else {
            return Err((
                404,
                "this gateway is no cluster (storage.backend is redb)".to_owned(),
            ));
        };
        let room_slot = match room {
            None => None,
            Some(r) => {
                let r = percent_encoding::percent_decode_str(r).decode_utf8_lossy();
                let uri = r
                    .parse::<mimi_proto::uri::RoomUri>()
                    .map_err(|e| (400, format!("room: {e}")))?;
                Some(mimi_engine::room_shard(&uri, self.engine.slots()))
            }
        };
        let s = c.status();
        let owners = self
            .engine
            .owners()
            .into_iter()
            .map(|o| match o {
                SlotOwner::Local => Some(s.node.clone()),
                SlotOwner::Node(n) => Some(n),
                SlotOwner::Nobody => None,
            })
            .collect();
        Ok(api::ClusterStatus {
            node: s.node,
            slots: s.slots,
            held: s.held,
            owners,
            nodes: s.nodes,
            since_last_round_ms: s.since_last_round_ms,
            last_error: s.last_error,
            room_slot,
        })
    }

    fn peers(&self) -> Result<Vec<api::Peer>, mimi_engine::store::StoreError> {
        let meta = self.meta(MAX_LIST * 10)?;
        let dead = self.dead_letter_counts()?;
        let oos = self.shared.out_of_sync();
        Ok(self
            .peers
            .link_states()
            .into_iter()
            .map(|l| {
                let mine = meta.iter().filter(|(f, _, _)| *f == l.domain);
                api::Peer {
                    queued_entries: mine.clone().map(|(_, _, m)| m.count).sum(),
                    queued_bytes: mine.map(|(_, _, m)| m.bytes).sum(),
                    dead_letters: dead.get(&l.domain).copied().unwrap_or(0),
                    out_of_sync_since_ms: oos.get(&l.domain).copied(),
                    quic: l.quic.map(|a| a.to_string()),
                    https: l.https.to_string(),
                    transport: l.transport,
                    h3_open: l.h3_open,
                    https_open: l.https_open,
                    quic_backoff_s: l.quic_backoff.map(|d| d.as_secs()),
                    last_answer_s_ago: l.last_answer.map(|d| d.as_secs()),
                    last_error: l.last_error,
                    failures_in_a_row: l.failures,
                    domain: l.domain,
                }
            })
            .collect())
    }

    fn rooms(
        &self,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<api::Room>, mimi_engine::store::StoreError> {
        let domain = Domain::parse(&self.domain)
            .map_err(|e| mimi_engine::store::StoreError::Backend(e.to_string()))?;
        let after = after.and_then(mimi_proto::directory::decode_path_value);
        let mut out = Vec::new();
        for r in mimi_engine::hosted_rooms(&*self.store, after.as_deref(), limit)? {
            let Ok(uri) = r.parse() else { continue };
            if let Some(i) = mimi_engine::room_info(&*self.store, &domain, &uri)? {
                out.push(api::Room {
                    room: r,
                    epoch: i.epoch,
                    members: i.members as u64,
                    participants: i.participants as u64,
                    followers: i.followers.iter().map(ToString::to_string).collect(),
                    pending_proposals: i.pending_proposals as u64,
                });
            }
        }
        Ok(out)
    }

    fn queues(&self, limit: usize) -> Result<Vec<api::Queue>, mimi_engine::store::StoreError> {
        Ok(self
            .meta(limit)?
            .into_iter()
            .map(|(follower, room, m)| api::Queue {
                follower,
                room,
                entries: m.count,
                bytes: m.bytes,
            })
            .collect())
    }

    fn dead_letters(
        &self,
        follower: Option<&str>,
        limit: usize,
    ) -> Result<Vec<api::DeadLetter>, mimi_engine::store::StoreError> {
        let prefix = follower.map_or_else(Vec::new, |f| keys::prefix(&[f.as_bytes()]));
        let mut out = Vec::new();
        for (k, v) in self.store.scan(Table::DeadLetters, &prefix, None, limit)? {
            let dl: DeadLetterRow = rows::decode(Table::DeadLetters, &v)?;
            let f = keys::split_text(&k).into_iter().next().unwrap_or_default();
            out.push(api::DeadLetter {
                follower: f,
                seq: keys::seq_of(&k).unwrap_or(0),
                room: dl.room,
                bytes: u64::from(dl.bytes),
                status: dl.status,
                reason: dl.reason,
                at_ms: dl.at_ms,
            });
        }
        let _ = FollowerRow::default();
        Ok(out)
    }

    async fn dead_letter_action(&self, a: api::DeadLetterAction, retry: bool) -> Out {
        let (follower, room) = match (a.follower.parse::<Domain>(), a.room.parse()) {
            (Ok(f), Ok(r)) => (f, r),
            (Err(e), _) => return refused(400, format!("follower: {e}")),
            (_, Err(e)) => return refused(400, format!("room: {e}")),
        };
        self.act(if retry {
            AdminCall::RetryDeadLetters { follower, room }
        } else {
            AdminCall::DropDeadLetters { follower, room }
        })
        .await
    }

    async fn act(&self, call: AdminCall) -> Out {
        let r = self
            .engine
            .client(Auth::Admin, ClientCall::Admin(call))
            .await;
        match r.body {
            mimi_engine::Body::Client(ClientReply::Admin { affected }) => {
                json(200, &api::Done { affected })
            }
            mimi_engine::Body::Refused(x) => refused(r.status, x.to_string()),
            _ => refused(r.status, "the engine gave no answer"),
        }
    }
}

async fn body<T: serde::de::DeserializeOwned>(req: Request<Incoming>) -> Result<T, Out> {
    let b = Limited::new(req.into_body(), 64 << 10)
        .collect()
        .await
        .map_err(|_| refused(413, "admin requests are limited to 64 KiB"))?
        .to_bytes();
    serde_json::from_slice(&b).map_err(|e| refused(400, format!("not the expected JSON: {e}")))
}
