//! The threads that own the engine. Each shard of the engine runs on its own OS thread (rooms
//! across cores): it takes a batch of inputs from its bounded queue, hands it to the engine,
//! sends the step's writes to the committer and waits; only once they are durable does it
//! perform the outputs (responses, requests to peers, asset fetches, client wake-ups).
//!
//! The committer thread applies the batches of every shard that are waiting in **one** store
//! transaction (group commit). When a commit fails, no output of those steps leaves: each
//! shard answers 503 to the step's requests and rebuilds its caches from the store, and
//! `/readyz` says not ready until a commit succeeds again. A shard that panics marks the
//! gateway failed, so `mimi run` exits non-zero for its supervisor.
//!
//! Rooms and users are spread over a fixed number of **slots** (the engine's shards). On one
//! machine every slot runs here. In a cluster each slot runs on the node holding its lease
//! ([`crate::cluster`]): [`EngineHandle::call`] routes an input to the local shard of its
//! slot, or forwards it to the node that orders the slot, or answers 503 while nobody does
//! (during a failover).

mod committer;
mod shard;
mod wakes;

use std::collections::HashMap;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::mpsc::{SyncSender, TrySendError};
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use mimi_engine::store::{Store, StoreError};
use mimi_engine::{Auth, ClientCall, Engine, EngineConfig, Input, Refusal, Response, Shared};
use mimi_proto::directory::Endpoint;
use mimi_proto::uri::Domain;
use tokio::sync::oneshot;

pub use committer::{Committer, Health};
pub use wakes::Wakes;

use crate::metrics::Metrics;
use crate::peers::PeerClient;

/// Inputs waiting per shard at most; more are refused with 503 (backpressure).
const QUEUE: usize = 8192;

enum Cmd {
    Input(Box<Input>, Option<oneshot::Sender<Response>>),
    Stop(oneshot::Sender<()>),
}

impl std::fmt::Debug for Cmd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Cmd")
    }
}

/// The lease name of a slot (the `room` column of the lease table).
pub fn slot_key(slot: u16) -> String {
    format!("slot/{slot}")
}

/// What a `/proxyDownload` fetch returns.
pub type FetchFuture = std::pin::Pin<Box<dyn Future<Output = Response> + Send + 'static>>;

/// Hands a request to the node of this cluster that orders its slot.
pub trait Forward: Send + Sync + std::fmt::Debug {
    /// Sends `input` to `node` and returns its response (503 when it cannot be reached).
    fn forward(&self, node: Arc<str>, input: Input) -> FetchFuture;
}

/// Where a slot's inputs go.
#[derive(Debug, Clone)]
enum Route {
    /// The shard running here.
    Local(SyncSender<Cmd>),
    /// The node of the cluster holding the slot's lease.
    Remote(Arc<str>),
    /// Nobody holds it (a failover is under way).
    Nobody,
}

/// The route of every slot.
#[derive(Debug)]
pub struct Routes {
    table: RwLock<Vec<Route>>,
    forward: OnceLock<Arc<dyn Forward>>,
}

impl Routes {
    fn get(&self, slot: u16) -> Route {
        self.table
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(usize::from(slot))
            .cloned()
            .unwrap_or(Route::Nobody)
    }

    fn set(&self, slot: u16, r: Route) {
        if let Some(x) = self
            .table
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get_mut(usize::from(slot))
        {
            *x = r;
        }
    }
}

/// Where each slot is ordered, for the admin API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SlotOwner {
    /// Here.
    Local,
    /// On another node.
    Node(String),
    /// Nowhere at the moment.
    Nobody,
}

fn unavailable(why: &str) -> Response {
    Response::refused(Refusal::Unavailable(why.to_owned()))
}

/// A handle to the engine shards.
#[derive(Clone, Debug)]
pub struct EngineHandle {
    routes: Arc<Routes>,
    slots: u16,
    /// Client wake-ups.
    pub wakes: Arc<Wakes>,
    /// Readiness.
    pub health: Arc<Health>,
    /// The committer (acknowledgements, administrative writes).
    pub committer: Committer,
}

impl EngineHandle {
    /// Routes an input to the shard of its slot, here or on the node that orders it.
    async fn call(&self, input: Input) -> Response {
        let slot = mimi_engine::shard_of(&input, self.slots);
        match self.routes.get(slot) {
            Route::Local(tx) => Self::send(&tx, input).await,
            Route::Remote(node) => match self.routes.forward.get() {
                Some(f) => f.forward(node, input).await,
                None => unavailable("this node cannot reach the node that orders the room"),
            },
            Route::Nobody => unavailable(
                "no node of this cluster orders this room at the moment (a failover is under way)",
            ),
        }
    }

    async fn send(tx: &SyncSender<Cmd>, input: Input) -> Response {
        let (reply, rx) = oneshot::channel();
        match tx.try_send(Cmd::Input(Box::new(input), Some(reply))) {
            Ok(()) => rx.await.unwrap_or_else(|_| {
                unavailable("the node stopped ordering this room (shutdown or failover)")
            }),
            Err(TrySendError::Full(_)) => unavailable("the gateway is overloaded"),
            Err(TrySendError::Disconnected(_)) => unavailable("the gateway is shutting down"),
        }
    }

    /// An input forwarded by another node: served only if its slot runs here (never
    /// forwarded again, so that two nodes with stale views cannot pass a request around).
    pub async fn local(&self, input: Input) -> Response {
        let slot = mimi_engine::shard_of(&input, self.slots);
        match self.routes.get(slot) {
            Route::Local(tx) => Self::send(&tx, input).await,
            _ => unavailable("this node does not order this room (any more); retry"),
        }
    }

    /// A federation request from an authenticated peer.
    pub async fn peer(
        &self,
        peer: Domain,
        endpoint: Endpoint,
        target: String,
        body: Bytes,
    ) -> Response {
        self.call(Input::Peer {
            id: 0,
            peer,
            endpoint,
            target,
            body,
        })
        .await
    }

    /// A client API call.
    pub async fn client(&self, auth: Auth, call: ClientCall) -> Response {
        self.call(Input::Client { id: 0, auth, call }).await
    }

    /// Installs the forwarder to other nodes (once; a cluster node does at start).
    pub fn set_forward(&self, f: Arc<dyn Forward>) {
        let _ = self.routes.forward.set(f);
    }

    /// Sets where a slot not running here is ordered (`None`: nowhere). Slots running here are
    /// changed only by [`Slots::stop`].
    pub fn set_remote(&self, slot: u16, node: Option<Arc<str>>) {
        let mut t = self
            .routes
            .table
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(r) = t.get_mut(usize::from(slot))
            && !matches!(r, Route::Local(_))
        {
            *r = node.map_or(Route::Nobody, Route::Remote);
        }
    }

    /// The number of slots.
    pub fn slots(&self) -> u16 {
        self.slots
    }

    /// Where each slot is ordered.
    pub fn owners(&self) -> Vec<SlotOwner> {
        self.routes
            .table
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .iter()
            .map(|r| match r {
                Route::Local(_) => SlotOwner::Local,
                Route::Remote(n) => SlotOwner::Node(n.to_string()),
                Route::Nobody => SlotOwner::Nobody,
            })
            .collect()
    }

    /// Stops every shard running here after its current step; later calls are answered 503.
    pub async fn stop(&self) {
        let local: Vec<SyncSender<Cmd>> = self
            .routes
            .table
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .iter_mut()
            .filter_map(|r| match std::mem::replace(r, Route::Nobody) {
                Route::Local(tx) => Some(tx),
                _ => None,
            })
            .collect();
        for s in local {
            let (tx, rx) = oneshot::channel();
            if s.try_send(Cmd::Stop(tx)).is_ok() {
                let _ = rx.await;
            }
        }
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// What it takes to start the shard of a slot.
struct Factory {
    cfg: Arc<EngineConfig>,
    store: Arc<dyn Store>,
    shared: Arc<Shared>,
    peers: Arc<PeerClient>,
    metrics: Arc<Metrics>,
    fetch: Arc<dyn Fn(Domain, String) -> FetchFuture + Send + Sync>,
    rt: tokio::runtime::Handle,
}

impl std::fmt::Debug for Factory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Factory")
    }
}

/// The shards running here, started and stopped per slot.
#[derive(Debug)]
pub struct Slots {
    factory: Factory,
    handle: EngineHandle,
    threads: Mutex<HashMap<u16, std::thread::JoinHandle<()>>>,
}

impl Slots {
    /// Starts the shard of `slot` (restoring its outboxes from the store); `fence` is the
    /// lease's token that every commit of the shard must still carry. Blocking (reads the
    /// store).
    ///
    /// # Errors
    /// The store's.
    pub fn start(&self, slot: u16, fence: Option<u64>) -> Result<(), StoreError> {
        let f = &self.factory;
        let engine = Engine::new(
            Arc::clone(&f.cfg),
            openmls_rust_crypto::RustCrypto::default(),
            Arc::clone(&f.store),
            slot,
            self.handle.slots,
            Arc::clone(&f.shared),
        )?;
        let (tx, rx) = std::sync::mpsc::sync_channel(QUEUE);
        let shard = shard::Shard {
            engine,
            rx,
            self_tx: tx.clone(),
            committer: self.handle.committer.clone(),
            peers: Arc::clone(&f.peers),
            wakes: Arc::clone(&self.handle.wakes),
            metrics: Arc::clone(&f.metrics),
            rt: f.rt.clone(),
            next_id: 1,
            waiting: HashMap::new(),
            fetch: Arc::clone(&f.fetch),
            index: slot,
            shared: Arc::clone(&f.shared),
            last_gauges: std::time::Instant::now(),
            slot,
            fence,
            routes: Arc::clone(&self.handle.routes),
        };
        let health = Arc::clone(&self.handle.health);
        let t = std::thread::Builder::new()
            .name(format!("mimi-shard-{slot}"))
            .spawn(move || {
                if std::panic::catch_unwind(AssertUnwindSafe(|| shard.run())).is_err() {
                    tracing::error!(
                        shard = slot,
                        "an engine shard panicked; the gateway must be restarted"
                    );
                    health.set_fatal();
                }
            })
            .map_err(|e| StoreError::Backend(format!("cannot start a shard thread: {e}")))?;
        self.handle.routes.set(slot, Route::Local(tx));
        if let Some(old) = self
            .threads
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(slot, t)
        {
            let _ = old.join();
        }
        Ok(())
    }

    /// Stops the shard of `slot` after its current step: nothing of it commits afterwards.
    /// Requests queued for it are answered 503.
    pub async fn stop(&self, slot: u16) {
        let route = self.handle.routes.get(slot);
        self.handle.routes.set(slot, Route::Nobody);
        if let Route::Local(tx) = route {
            let (done, rx) = oneshot::channel();
            if tx.try_send(Cmd::Stop(done)).is_ok() {
                let _ = rx.await;
            }
        }
        let t = self
            .threads
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(&slot);
        if let Some(t) = t {
            let _ = tokio::task::spawn_blocking(move || t.join()).await;
        }
    }

    /// The slots running here.
    pub fn running(&self) -> Vec<u16> {
        let mut v: Vec<u16> = self
            .threads
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .keys()
            .copied()
            .collect();
        v.sort_unstable();
        v
    }

    /// Waits for every shard thread to end (after [`EngineHandle::stop`]).
    pub fn join(&self) {
        let threads: Vec<_> = self
            .threads
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .drain()
            .map(|(_, t)| t)
            .collect();
        for t in threads {
            let _ = t.join();
        }
    }
}

/// What [`spawn`] needs.
pub struct Parts {
    /// The engine's configuration.
    pub cfg: Arc<EngineConfig>,
    /// Slots in all (shards here, or the cluster's slots).
    pub slots: u16,
    /// What the shards of this process share.
    pub shared: Arc<Shared>,
    /// The store.
    pub store: Arc<dyn Store>,
    /// Links to peers.
    pub peers: Arc<PeerClient>,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// `/proxyDownload` fetches.
    pub fetch: Arc<dyn Fn(Domain, String) -> FetchFuture + Send + Sync>,
}

/// Starts the committer; shards are started per slot with [`Slots::start`].
pub fn spawn(p: Parts) -> (EngineHandle, Arc<Slots>) {
    let health = Arc::new(Health::default());
    let (ctx, crx) = std::sync::mpsc::sync_channel(1024);
    {
        let (store, health) = (Arc::clone(&p.store), Arc::clone(&health));
        std::thread::Builder::new()
            .name("mimi-committer".into())
            .spawn(move || committer::committer(store, crx, health))
            .ok();
    }
    let handle = EngineHandle {
        routes: Arc::new(Routes {
            table: RwLock::new(vec![Route::Nobody; usize::from(p.slots.max(1))]),
            forward: OnceLock::new(),
        }),
        slots: p.slots.max(1),
        wakes: Arc::new(Wakes::default()),
        health,
        committer: Committer::new(ctx),
    };
    let slots = Arc::new(Slots {
        factory: Factory {
            cfg: p.cfg,
            store: p.store,
            shared: p.shared,
            peers: p.peers,
            metrics: p.metrics,
            fetch: p.fetch,
            rt: tokio::runtime::Handle::current(),
        },
        handle: handle.clone(),
        threads: Mutex::default(),
    });
    (handle, slots)
}
