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

use std::collections::HashMap;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use mimi_engine::store::{CommitReport, Store, StoreError, WriteBatch};
use mimi_engine::{
    Auth, ClientCall, Engine, Input, Output, Refusal, RequestId, Response, SendError,
};
use mimi_proto::directory::Endpoint;
use mimi_proto::uri::Domain;
use tokio::sync::{Notify, oneshot};

use crate::metrics::Metrics;
use crate::peers::{PeerClient, PeerError};

/// Inputs a shard takes per step at most.
const MAX_BATCH: usize = 512;
/// Inputs waiting per shard at most; more are refused with 503 (backpressure).
const QUEUE: usize = 8192;

enum Cmd {
    Input(Box<Input>, Option<oneshot::Sender<Response>>),
    Stop(oneshot::Sender<()>),
}

/// Wake-ups for clients waiting on new deliveries, and the announcements the in-process
/// bridges follow (client IDs of bridged users, on a broadcast of bounded capacity: a bridge
/// that lags sweeps its users).
#[derive(Debug)]
pub struct Wakes {
    by_client: Mutex<HashMap<String, Arc<Notify>>>,
    bridges: tokio::sync::broadcast::Sender<String>,
}

/// Announcements held for a slow bridge before it lags.
const BRIDGE_ANNOUNCEMENTS: usize = 4096;

impl Default for Wakes {
    fn default() -> Self {
        Self {
            by_client: Mutex::default(),
            bridges: tokio::sync::broadcast::channel(BRIDGE_ANNOUNCEMENTS).0,
        }
    }
}

impl Wakes {
    /// The announcements of bridged clients' deliveries.
    pub fn bridges(&self) -> tokio::sync::broadcast::Sender<String> {
        self.bridges.clone()
    }

    /// The notifier of a client (created on first use).
    pub fn get(&self, client: &str) -> Arc<Notify> {
        let mut m = self
            .by_client
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        Arc::clone(m.entry(client.to_owned()).or_default())
    }

    /// Wakes a client's readers.
    pub fn wake(&self, client: &str) {
        if client.contains("/bridge") && self.bridges.receiver_count() > 0 {
            let _ = self.bridges.send(client.to_owned());
        }
        if let Ok(m) = self.by_client.lock()
            && let Some(n) = m.get(client)
        {
            n.notify_waiters();
        }
    }
}

/// Whether the engine can take requests: storage commits succeed and no shard died.
#[derive(Debug, Default)]
pub struct Health {
    storage_failing: AtomicBool,
    failed_commits: AtomicU64,
    fatal: AtomicBool,
    fatal_notify: Notify,
}

impl Health {
    /// Ready to serve.
    pub fn ok(&self) -> bool {
        !self.storage_failing.load(Ordering::Acquire) && !self.fatal.load(Ordering::Acquire)
    }

    /// Why not ready, if not.
    pub fn problem(&self) -> Option<&'static str> {
        if self.fatal.load(Ordering::Acquire) {
            Some("an engine shard stopped unexpectedly")
        } else if self.storage_failing.load(Ordering::Acquire) {
            Some("storage commits are failing")
        } else {
            None
        }
    }

    /// Commits that failed since start.
    pub fn failed_commits(&self) -> u64 {
        self.failed_commits.load(Ordering::Relaxed)
    }

    /// Resolves once a shard died.
    pub async fn fatal(&self) {
        loop {
            let n = self.fatal_notify.notified();
            if self.fatal.load(Ordering::Acquire) {
                return;
            }
            n.await;
        }
    }

    fn set_fatal(&self) {
        self.fatal.store(true, Ordering::Release);
        self.fatal_notify.notify_waiters();
    }
}

type CommitReply = SyncSender<Result<CommitReport, StoreError>>;

/// The handle shards and the shell use to commit batches through the committer.
#[derive(Clone, Debug)]
pub struct Committer {
    tx: SyncSender<(WriteBatch, CommitReply)>,
}

impl Committer {
    /// Commits one batch (group-committed with whatever else waits). Blocking.
    ///
    /// # Errors
    /// The store's.
    pub fn commit(&self, batch: WriteBatch) -> Result<CommitReport, StoreError> {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        self.tx
            .send((batch, tx))
            .map_err(|_| StoreError::Backend("the committer stopped".into()))?;
        rx.recv()
            .map_err(|_| StoreError::Backend("the committer stopped".into()))?
    }

    /// Commits from async code.
    ///
    /// # Errors
    /// The store's.
    pub async fn commit_async(&self, batch: WriteBatch) -> Result<CommitReport, StoreError> {
        let c = self.clone();
        tokio::task::spawn_blocking(move || c.commit(batch))
            .await
            .map_err(|e| StoreError::Backend(e.to_string()))?
    }
}

fn committer(store: Arc<dyn Store>, rx: Receiver<(WriteBatch, CommitReply)>, health: Arc<Health>) {
    while let Ok(first) = rx.recv() {
        let mut jobs = vec![first];
        while jobs.len() < 64 {
            match rx.try_recv() {
                Ok(j) => jobs.push(j),
                Err(_) => break,
            }
        }
        let mut reports = vec![CommitReport::default(); jobs.len()];
        let r = store.transact(&mut |txn| {
            for (i, (b, _)) in jobs.iter().enumerate() {
                reports[i] = CommitReport::default();
                mimi_engine::store::apply(txn, b, &mut reports[i])?;
            }
            Ok(())
        });
        match &r {
            Ok(()) => health.storage_failing.store(false, Ordering::Release),
            Err(e) => {
                health.storage_failing.store(true, Ordering::Release);
                health.failed_commits.fetch_add(1, Ordering::Relaxed);
                tracing::error!(error = %e, batches = jobs.len(), "storage commit failed; nothing of these steps leaves");
            }
        }
        for ((_, reply), report) in jobs.into_iter().zip(reports) {
            let _ = reply.send(r.clone().map(|()| report));
        }
    }
}

/// A handle to the engine shards.
#[derive(Clone, Debug)]
pub struct EngineHandle {
    shards: Vec<SyncSender<Cmd>>,
    /// Client wake-ups.
    pub wakes: Arc<Wakes>,
    /// Readiness.
    pub health: Arc<Health>,
    /// The committer (acknowledgements, administrative writes).
    pub committer: Committer,
}

impl std::fmt::Debug for Cmd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Cmd")
    }
}

fn unavailable(why: &str) -> Response {
    Response::refused(Refusal::Unavailable(why.to_owned()))
}

impl EngineHandle {
    async fn call(&self, input: Input) -> Response {
        let shard = mimi_engine::shard_of(&input, self.shards.len() as u16) as usize;
        let (tx, rx) = oneshot::channel();
        match self.shards[shard].try_send(Cmd::Input(Box::new(input), Some(tx))) {
            Ok(()) => rx
                .await
                .unwrap_or_else(|_| unavailable("the gateway is shutting down")),
            Err(TrySendError::Full(_)) => unavailable("the gateway is overloaded"),
            Err(TrySendError::Disconnected(_)) => unavailable("the gateway is shutting down"),
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

    /// Stops every shard after its current step; later calls are answered 503.
    pub async fn stop(&self) {
        for s in &self.shards {
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

struct Shard {
    engine: Engine,
    rx: Receiver<Cmd>,
    self_tx: SyncSender<Cmd>,
    committer: Committer,
    peers: Arc<PeerClient>,
    wakes: Arc<Wakes>,
    metrics: Arc<Metrics>,
    rt: tokio::runtime::Handle,
    next_id: RequestId,
    waiting: HashMap<RequestId, oneshot::Sender<Response>>,
    fetch: Arc<dyn Fn(Domain, String) -> FetchFuture + Send + Sync>,
    index: u16,
    shared: Arc<mimi_engine::Shared>,
    last_gauges: std::time::Instant,
}

/// What a `/proxyDownload` fetch returns.
pub type FetchFuture = std::pin::Pin<Box<dyn Future<Output = Response> + Send + 'static>>;

impl Shard {
    fn run(mut self) {
        // Resume the outboxes restored from the store.
        self.step(vec![Cmd::Input(Box::new(Input::Tick), None)]);
        loop {
            let timeout = self
                .engine
                .poll_timeout()
                .map(|t| Duration::from_millis(t.saturating_sub(now_ms())));
            let first = match timeout {
                Some(d) => match self.rx.recv_timeout(d) {
                    Ok(c) => Some(c),
                    Err(RecvTimeoutError::Timeout) => None,
                    Err(RecvTimeoutError::Disconnected) => return,
                },
                None => match self.rx.recv() {
                    Ok(c) => Some(c),
                    Err(_) => return,
                },
            };
            let mut batch: Vec<Cmd> = first.into_iter().collect();
            while batch.len() < MAX_BATCH {
                match self.rx.try_recv() {
                    Ok(c) => batch.push(c),
                    Err(_) => break,
                }
            }
            if batch.is_empty() {
                batch.push(Cmd::Input(Box::new(Input::Tick), None));
            }
            if let Some(stop) = self.step(batch) {
                let _ = stop.send(());
                return;
            }
        }
    }

    /// One step: handle, commit, then act. Returns a stop request, if any came.
    fn step(&mut self, batch: Vec<Cmd>) -> Option<oneshot::Sender<()>> {
        let now = now_ms();
        let mut stop = None;
        let mut ids = Vec::new();
        if self.engine.poll_timeout().is_some_and(|t| t <= now) {
            self.engine.handle(now, Input::Tick);
        }
        for cmd in batch {
            let input = match cmd {
                Cmd::Stop(tx) => {
                    stop = Some(tx);
                    continue;
                }
                Cmd::Input(input, reply) => {
                    let mut input = *input;
                    if let Some(tx) = reply {
                        let id = self.next_id;
                        self.next_id += 1;
                        match &mut input {
                            Input::Peer { id: i, .. } | Input::Client { id: i, .. } => *i = id,
                            _ => {}
                        }
                        self.waiting.insert(id, tx);
                        ids.push(id);
                    }
                    input
                }
            };
            self.engine.handle(now, input);
        }
        let committed = self.engine.take_writes().and_then(|w| {
            if w.is_empty() {
                Ok(CommitReport::default())
            } else {
                self.committer.commit(w)
            }
        });
        match committed {
            Ok(_) => self.engine.committed(),
            Err(e) => {
                tracing::warn!(error = %e, "a step was abandoned; its requests get 503 and the engine reloads from the store");
                self.engine.reset();
                for id in ids {
                    if let Some(tx) = self.waiting.remove(&id) {
                        let _ = tx.send(unavailable(&e.to_string()));
                    }
                }
                self.engine.committed();
            }
        }
        self.perform();
        stop
    }

    fn perform(&mut self) {
        while let Some(out) = self.engine.poll_output() {
            match out {
                Output::Respond { id, response } => {
                    if let Some(tx) = self.waiting.remove(&id) {
                        let _ = tx.send(response);
                    }
                }
                Output::Send {
                    id,
                    to,
                    endpoint,
                    target,
                    body,
                } => {
                    let peers = Arc::clone(&self.peers);
                    let back = self.self_tx.clone();
                    // Exactly one reply comes back per send, even if the request task fails.
                    self.rt.spawn(async move {
                        let work = tokio::spawn(async move {
                            peers.mimi(to.as_str(), endpoint, &target, body).await
                        });
                        let result = work
                            .await
                            .unwrap_or_else(|e| Err(PeerError::Task(e.to_string())))
                            .map_err(|e| SendError(e.to_string()));
                        let reply = Cmd::Input(Box::new(Input::Reply { id, result }), None);
                        // The queue may be full: wait for room rather than lose a reply.
                        let mut cmd = reply;
                        loop {
                            match back.try_send(cmd) {
                                Ok(()) | Err(TrySendError::Disconnected(_)) => break,
                                Err(TrySendError::Full(c)) => {
                                    cmd = c;
                                    tokio::time::sleep(Duration::from_millis(5)).await;
                                }
                            }
                        }
                    });
                }
                Output::Fetch { id, peer, url } => {
                    if let Some(tx) = self.waiting.remove(&id) {
                        let fut = (self.fetch)(peer, url);
                        self.rt.spawn(async move {
                            let _ = tx.send(fut.await);
                        });
                    }
                }
                Output::Wake { client } => self.wakes.wake(&client),
            }
        }
        self.metrics.engine_stats(self.index, self.engine.stats());
        if self.last_gauges.elapsed() > Duration::from_millis(500) {
            self.last_gauges = std::time::Instant::now();
            self.metrics.queues(
                self.index,
                self.engine.outbox_depths(),
                &self.shared.out_of_sync(),
                self.engine.cached_rooms(),
            );
        }
    }
}

/// The running shards.
#[derive(Debug)]
pub struct Driver {
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Driver {
    /// Waits for every shard thread to end (after [`EngineHandle::stop`]).
    pub fn join(self) {
        for t in self.threads {
            let _ = t.join();
        }
    }
}

/// Starts the committer and one thread per engine shard.
pub fn spawn(
    engines: Vec<Engine>,
    shared: Arc<mimi_engine::Shared>,
    store: Arc<dyn Store>,
    peers: Arc<PeerClient>,
    metrics: Arc<Metrics>,
    fetch: Arc<dyn Fn(Domain, String) -> FetchFuture + Send + Sync>,
) -> (EngineHandle, Driver) {
    let health = Arc::new(Health::default());
    let (ctx, crx) = std::sync::mpsc::sync_channel(1024);
    {
        let (store, health) = (Arc::clone(&store), Arc::clone(&health));
        std::thread::Builder::new()
            .name("mimi-committer".into())
            .spawn(move || committer(store, crx, health))
            .ok();
    }
    let committer = Committer { tx: ctx };
    let wakes = Arc::new(Wakes::default());
    let rt = tokio::runtime::Handle::current();
    let mut senders = Vec::new();
    let mut threads = Vec::new();
    for (i, engine) in engines.into_iter().enumerate() {
        let (tx, rx) = std::sync::mpsc::sync_channel(QUEUE);
        senders.push(tx.clone());
        let shard = Shard {
            engine,
            rx,
            self_tx: tx,
            committer: committer.clone(),
            peers: Arc::clone(&peers),
            wakes: Arc::clone(&wakes),
            metrics: Arc::clone(&metrics),
            rt: rt.clone(),
            next_id: 1,
            waiting: HashMap::new(),
            fetch: Arc::clone(&fetch),
            index: i as u16,
            shared: Arc::clone(&shared),
            last_gauges: std::time::Instant::now(),
        };
        let h = Arc::clone(&health);
        let t = std::thread::Builder::new()
            .name(format!("mimi-shard-{i}"))
            .spawn(move || {
                if std::panic::catch_unwind(AssertUnwindSafe(|| shard.run())).is_err() {
                    tracing::error!(
                        shard = i,
                        "an engine shard panicked; the gateway must be restarted"
                    );
                    h.set_fatal();
                }
            });
        if let Ok(t) = t {
            threads.push(t);
        }
    }
    (
        EngineHandle {
            shards: senders,
            wakes,
            health,
            committer,
        },
        Driver { threads },
    )
}
