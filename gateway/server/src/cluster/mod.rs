//! Several nodes serving one domain from one PostgreSQL database.
//!
//! Rooms and users are spread over a fixed number of **slots** (the engine's shards,
//! [`mimi_engine::shard_of`]). Each slot is ordered by exactly one node at a time, the holder
//! of its lease (`mimi_leases`, one row per slot). A lease lasts `ttl` (60 % of
//! `cluster.failover_ms`) unless renewed; every write batch of a slot's shard carries the
//! lease's fencing token, checked inside the committing transaction, so a node that lost a
//! lease can never commit for its slot. A node also stops its shards on its own once its
//! leases may have expired (80 % of `ttl` after the last renewal that succeeded), before any
//! other node can take them.
//!
//! Every `tick` (a quarter of `ttl`) each node: records its heartbeat and addresses
//! (`mimi_nodes`); renews its leases; counts the live nodes and takes free slots up to its
//! share (`FOR UPDATE SKIP LOCKED`, so nodes never wait for each other) or releases slots over
//! it; and learns who orders the others. A request for a slot ordered elsewhere is forwarded to
//! that node over the nodes' mutually authenticated federation link ([`forward`]). Wake-ups
//! of clients whose long-polls another node serves travel by `LISTEN/NOTIFY` ([`listen`]).
//!
//! A dead node's slots are free once its leases expire (at most `ttl` after its last
//! renewal) and are taken within one `tick`: the failover bound is `ttl + tick` plus the time
//! to restore a shard, within `cluster.failover_ms`.

pub mod forward;
mod listen;
pub mod wire;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::watch;
use tokio_postgres::{Client, NoTls};

use crate::driver::{EngineHandle, Slots, slot_key};
use crate::peers::PeerClient;

/// What a node needs to take part.
#[derive(Debug, Clone)]
pub struct Settings {
    /// PostgreSQL URL.
    pub url: String,
    /// This node's name.
    pub node: String,
    /// Slots in all.
    pub slots: u16,
    /// The failover bound.
    pub failover: Duration,
    /// Where the other nodes reach this one (HTTPS).
    pub https: SocketAddr,
    /// Where the other nodes reach this one (HTTP/3), if it listens on QUIC.
    pub quic: Option<SocketAddr>,
}

impl Settings {
    /// How long a lease lasts without renewal.
    pub fn ttl(&self) -> Duration {
        self.failover * 6 / 10
    }

    /// How often leases are renewed and free slots taken.
    pub fn tick(&self) -> Duration {
        self.ttl() / 4
    }

    /// How long after a renewal this node stops a slot it could not renew.
    fn self_fence(&self) -> Duration {
        self.ttl() * 8 / 10
    }
}

/// A slot held here.
#[derive(Debug, Clone, Copy)]
struct Held {
    token: u64,
    /// Until when this node may order it without another renewal.
    until: Instant,
}

/// One node's view, for the admin API.
#[derive(Debug, Clone, Default)]
pub struct Status {
    /// This node.
    pub node: String,
    /// Slots in all.
    pub slots: u16,
    /// Slots held here, with their fencing tokens.
    pub held: BTreeMap<u16, u64>,
    /// Live nodes (this one included) with their HTTPS addresses.
    pub nodes: BTreeMap<String, String>,
    /// Milliseconds since the last round that reached the database.
    pub since_last_round_ms: Option<u64>,
    /// The last database error.
    pub last_error: Option<String>,
}

/// This node's membership.
#[derive(Debug)]
pub struct Cluster {
    settings: Settings,
    slots: Arc<Slots>,
    engine: EngineHandle,
    peers: Arc<PeerClient>,
    held: Mutex<BTreeMap<u16, Held>>,
    db: tokio::sync::Mutex<Option<Client>>,
    status: Mutex<Status>,
    last_round: Mutex<Option<Instant>>,
    left: watch::Sender<bool>,
}

/// A database error with its cause (tokio-postgres says only "db error" at the top).
fn describe(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(d) => format!("{} ({})", d.message(), d.code().code()),
        None => {
            let mut s = e.to_string();
            let mut src = std::error::Error::source(e);
            while let Some(x) = src {
                s.push_str(": ");
                s.push_str(&x.to_string());
                src = x.source();
            }
            s
        }
    }
}

fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

fn slot_of(key: &str) -> Option<u16> {
    key.strip_prefix("slot/")?.parse().ok()
}

impl Cluster {
    /// Joins the cluster: creates the slots' lease rows if this is the first node, and starts
    /// the rounds, the watchdog and the wake-up listener (until `stop`).
    ///
    /// # Errors
    /// The database cannot be reached.
    pub async fn join(
        settings: Settings,
        slots: Arc<Slots>,
        engine: EngineHandle,
        peers: Arc<PeerClient>,
        stop: watch::Receiver<bool>,
    ) -> anyhow::Result<Arc<Self>> {
        let c = Arc::new(Self {
            slots,
            engine: engine.clone(),
            peers: Arc::clone(&peers),
            held: Mutex::default(),
            db: tokio::sync::Mutex::new(None),
            status: Mutex::new(Status {
                node: settings.node.clone(),
                slots: settings.slots,
                ..Status::default()
            }),
            last_round: Mutex::default(),
            left: watch::channel(false).0,
            settings,
        });
        {
            let mut db = c.db.lock().await;
            let client = c.connect().await?;
            client
                .execute(
                    "INSERT INTO mimi_leases (room, node, token, expires_at)
                     SELECT 'slot/' || g, '', 0, 'epoch'::timestamptz
                     FROM generate_series(0, $1 - 1) AS g ON CONFLICT DO NOTHING",
                    &[&i32::from(c.settings.slots)],
                )
                .await?;
            *db = Some(client);
        }
        engine.set_forward(Arc::new(forward::NodeForward::new(Arc::clone(&peers))));
        tokio::spawn(Arc::clone(&c).rounds(stop.clone()));
        tokio::spawn(Arc::clone(&c).watchdog(stop.clone()));
        tokio::spawn(listen::wakes(
            c.settings.url.clone(),
            Arc::clone(&engine.wakes),
            stop,
        ));
        Ok(c)
    }

    async fn connect(&self) -> Result<Client, tokio_postgres::Error> {
        let (client, conn) = crate::store::pg::pg_config(&self.settings.url)?
            .connect(NoTls)
            .await?;
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::warn!(error = %e, "the cluster's database connection ended");
            }
        });
        Ok(client)
    }

    /// This node's view.
    pub fn status(&self) -> Status {
        let mut s = self
            .status
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        s.held = self
            .held
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .iter()
            .map(|(k, h)| (*k, h.token))
            .collect();
        s.since_last_round_ms = self
            .last_round
            .lock()
            .ok()
            .and_then(|t| t.map(|t| t.elapsed().as_millis() as u64));
        s
    }

    async fn rounds(self: Arc<Self>, mut stop: watch::Receiver<bool>) {
        let tick = self.settings.tick();
        loop {
            let started = Instant::now();
            // A slow round is given until the leases would self-fence anyway (the watchdog
            // stops every slot whose renewal did not land by then, whatever the round does).
            match tokio::time::timeout(self.settings.self_fence(), self.round(started)).await {
                Ok(Ok(())) => {
                    if let Ok(mut t) = self.last_round.lock() {
                        *t = Some(started);
                    }
                    if let Ok(mut s) = self.status.lock() {
                        s.last_error = None;
                    }
                }
                Ok(Err(e)) => self.round_failed(&describe(&e)).await,
                Err(_) => {
                    self.round_failed("the database did not answer in time")
                        .await
                }
            }
            tokio::select! {
                () = tokio::time::sleep(tick.saturating_sub(started.elapsed())) => {}
                () = crate::serving::stopping(&mut stop) => break,
            }
        }
        self.leave().await;
        let _ = self.left.send(true);
    }

    /// Resolves once this node has left the cluster after the gateway's stop signal (its
    /// shards stopped, its leases freed), or after 10 s.
    pub async fn stopped(&self) {
        let mut rx = self.left.subscribe();
        let _ = tokio::time::timeout(Duration::from_secs(10), rx.wait_for(|l| *l)).await;
    }

    async fn round_failed(&self, e: &str) {
        tracing::warn!(error = %e, "a cluster round failed; leases are renewed at the next");
        if let Ok(mut s) = self.status.lock() {
            s.last_error = Some(e.to_owned());
        }
        // A broken connection is replaced at the next round.
        *self.db.lock().await = None;
    }

    /// Stops, on its own, every slot whose lease may have expired (the database is out of
    /// reach, or slow): before any other node can take it.
    async fn watchdog(self: Arc<Self>, mut stop: watch::Receiver<bool>) {
        loop {
            let now = Instant::now();
            let expired: Vec<u16> = self
                .held
                .lock()
                .map(|h| {
                    h.iter()
                        .filter(|(_, x)| x.until <= now)
                        .map(|(s, _)| *s)
                        .collect()
                })
                .unwrap_or_default();
            for s in expired {
                tracing::warn!(
                    slot = s,
                    "lease not renewed in time: this node stops ordering the slot"
                );
                self.let_go(s);
            }
            tokio::select! {
                () = tokio::time::sleep(Duration::from_millis(100)) => {}
                () = crate::serving::stopping(&mut stop) => return,
            }
        }
    }

    /// Stops ordering `slot` at once, without waiting for its shard: the slot is no longer
    /// held now, its route closes as soon as the stopping task runs, and the shard stops after
    /// its current step in the background (a step stuck on an unreachable database must not keep the watchdog from
    /// letting the other slots go).
    fn let_go(&self, slot: u16) {
        if let Ok(mut h) = self.held.lock() {
            h.remove(&slot);
        }
        let slots = Arc::clone(&self.slots);
        tokio::spawn(async move { slots.stop(slot).await });
    }

    async fn drop_slot(&self, slot: u16) {
        if let Ok(mut h) = self.held.lock() {
            h.remove(&slot);
        }
        self.slots.stop(slot).await;
    }

    /// One round: heartbeat, renew, share, take or release, learn the others.
    /// Starts the shard of a slot just taken; a slot that cannot be restored is let go (its
    /// lease is no longer renewed, another node takes it).
    async fn start_slot(&self, slot: u16, token: u64) {
        let slots = Arc::clone(&self.slots);
        match tokio::task::spawn_blocking(move || slots.start(slot, Some(token))).await {
            Ok(Ok(())) => {
                // Lost again while restoring (the watchdog let it go): stop it at once.
                let still = self
                    .held
                    .lock()
                    .is_ok_and(|h| h.get(&slot).is_some_and(|x| x.token == token));
                if still {
                    tracing::info!(slot, token, "this node orders the slot now");
                } else {
                    self.slots.stop(slot).await;
                }
            }
            other => {
                tracing::warn!(slot, error = ?other, "could not restore a slot; letting it go");
                self.drop_slot(slot).await;
            }
        }
    }

    async fn round(self: &Arc<Self>, started: Instant) -> Result<(), tokio_postgres::Error> {
        let mut guard = self.db.lock().await;
        if guard.is_none() {
            *guard = Some(self.connect().await?);
        }
        let Some(db) = guard.as_mut() else {
            return Ok(());
        };
        let s = &self.settings;
        let ttl = secs(s.ttl());
        db.execute(
            "INSERT INTO mimi_nodes (node, https, quic, seen_at) VALUES ($1, $2, $3, now())
             ON CONFLICT (node) DO UPDATE SET https = EXCLUDED.https, quic = EXCLUDED.quic,
             seen_at = now()",
            &[
                &s.node,
                &s.https.to_string(),
                &s.quic.map(|q| q.to_string()),
            ],
        )
        .await?;
        // Renew.
        let mine: Vec<String> = self
            .held
            .lock()
            .map(|h| h.keys().map(|k| slot_key(*k)).collect())
            .unwrap_or_default();
        let renewed: Vec<u16> = db
            .query(
                // NO KEY UPDATE: compatible with the KEY SHARE locks of commits in flight (a
                // renewal never waits for them), in slot order.
                "UPDATE mimi_leases SET expires_at = now() + make_interval(secs => $3)
                 WHERE room IN (SELECT room FROM mimi_leases
                                WHERE node = $1 AND room = ANY($2) AND expires_at > now()
                                ORDER BY room FOR NO KEY UPDATE)
                   AND node = $1 AND expires_at > now()
                 RETURNING room",
                &[&s.node, &mine, &ttl],
            )
            .await?
            .iter()
            .filter_map(|r| slot_of(r.get(0)))
            .collect();
        let until = started + s.self_fence();
        let lost: Vec<u16> = {
            let mut h = self
                .held
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            for slot in &renewed {
                if let Some(x) = h.get_mut(slot) {
                    x.until = until;
                }
            }
            h.keys().filter(|k| !renewed.contains(k)).copied().collect()
        };
        for slot in lost {
            tracing::warn!(slot, "lease lost: this node stops ordering the slot");
            self.let_go(slot);
        }
        // The live nodes and this node's share.
        let nodes: Vec<(String, String, Option<String>)> = db
            .query(
                "SELECT node, https, quic FROM mimi_nodes
                 WHERE seen_at > now() - make_interval(secs => $1) ORDER BY node",
                &[&ttl],
            )
            .await?
            .iter()
            .map(|r| (r.get(0), r.get(1), r.get(2)))
            .collect();
        for (n, https, quic) in &nodes {
            if *n != s.node
                && let Ok(https) = https.parse()
            {
                let quic = quic.as_deref().and_then(|q| q.parse().ok());
                self.peers.set_node(&forward::link(n), quic, https).await;
            }
        }
        let live = nodes.len().max(1);
        let share = usize::from(s.slots).div_ceil(live);
        let held = self.held.lock().map(|h| h.len()).unwrap_or_default();
        if held > share {
            let extra: Vec<u16> = self
                .held
                .lock()
                .map(|h| h.keys().rev().take(held - share).copied().collect())
                .unwrap_or_default();
            for slot in extra {
                self.drop_slot(slot).await;
                db.execute(
                    "UPDATE mimi_leases SET expires_at = now() WHERE room = $1 AND node = $2",
                    &[&slot_key(slot), &s.node],
                )
                .await?;
                tracing::info!(slot, "slot released to another node");
            }
        } else if held < share {
            let tx = db.transaction().await?;
            let free: Vec<String> = tx
                .query(
                    "SELECT room FROM mimi_leases WHERE room LIKE 'slot/%' AND expires_at <= now()
                     ORDER BY room LIMIT $1 FOR UPDATE SKIP LOCKED",
                    &[&((share - held) as i64)],
                )
                .await?
                .iter()
                .map(|r| r.get(0))
                .collect();
            let taken: Vec<(u16, u64)> = tx
                .query(
                    "UPDATE mimi_leases SET node = $1, token = token + 1,
                     expires_at = now() + make_interval(secs => $3)
                     WHERE room = ANY($2) RETURNING room, token",
                    &[&s.node, &free, &ttl],
                )
                .await?
                .iter()
                .filter_map(|r| Some((slot_of(r.get(0))?, r.get::<_, i64>(1) as u64)))
                .collect();
            tx.commit().await?;
            // Held (and renewed) from now; the shard restores the slot's rooms in the
            // background, so a slow restore never delays the renewal of the other leases.
            for (slot, token) in taken {
                if let Ok(mut h) = self.held.lock() {
                    h.insert(slot, Held { token, until });
                }
                let me = Arc::clone(self);
                tokio::spawn(async move { me.start_slot(slot, token).await });
            }
        }
        // Who orders the others.
        let owners: BTreeMap<u16, String> = db
            .query(
                "SELECT room, node FROM mimi_leases WHERE room LIKE 'slot/%' AND expires_at > now()",
                &[],
            )
            .await?
            .iter()
            .filter_map(|r| Some((slot_of(r.get(0))?, r.get::<_, String>(1))))
            .collect();
        for slot in 0..s.slots {
            let node = owners
                .get(&slot)
                .filter(|n| **n != s.node)
                .map(|n| Arc::<str>::from(n.as_str()));
            self.engine.set_remote(slot, node);
        }
        if let Ok(mut st) = self.status.lock() {
            st.nodes = nodes.into_iter().map(|(n, h, _)| (n, h)).collect();
        }
        Ok(())
    }

    /// Leaves on shutdown: stops this node's shards and frees their leases at once, so that
    /// the others take them at their next round rather than after the lease time.
    async fn leave(&self) {
        let mine: Vec<u16> = self
            .held
            .lock()
            .map(|h| h.keys().copied().collect())
            .unwrap_or_default();
        for s in &mine {
            self.drop_slot(*s).await;
        }
        let keys: Vec<String> = mine.iter().map(|s| slot_key(*s)).collect();
        let db = self.db.lock().await;
        if let Some(db) = db.as_ref() {
            let _ = db
                .execute(
                    "UPDATE mimi_leases SET expires_at = now() WHERE node = $1 AND room = ANY($2)",
                    &[&self.settings.node, &keys],
                )
                .await;
            let _ = db
                .execute(
                    "DELETE FROM mimi_nodes WHERE node = $1",
                    &[&self.settings.node],
                )
                .await;
        }
        tracing::info!(slots = mine.len(), "left the cluster");
    }
}
