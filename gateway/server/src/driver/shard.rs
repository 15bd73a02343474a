//! One engine shard on its own thread: take a batch, handle it, commit its writes, then act.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::time::Duration;

use mimi_engine::store::{CommitReport, StoreError, Write};
use mimi_engine::{Engine, Input, Output, RequestId, Response, SendError};
use mimi_proto::uri::Domain;
use tokio::sync::oneshot;

use super::{Cmd, Committer, FetchFuture, Route, Routes, Wakes, now_ms, slot_key, unavailable};
use crate::metrics::Metrics;
use crate::peers::{PeerClient, PeerError};

/// Inputs a shard takes per step at most.
const MAX_BATCH: usize = 512;

pub(super) struct Shard {
    pub(super) engine: Engine,
    pub(super) rx: Receiver<Cmd>,
    pub(super) self_tx: SyncSender<Cmd>,
    pub(super) committer: Committer,
    pub(super) peers: Arc<PeerClient>,
    pub(super) wakes: Arc<Wakes>,
    pub(super) metrics: Arc<Metrics>,
    pub(super) rt: tokio::runtime::Handle,
    pub(super) next_id: RequestId,
    pub(super) waiting: HashMap<RequestId, oneshot::Sender<Response>>,
    pub(super) fetch: Arc<dyn Fn(Domain, String) -> FetchFuture + Send + Sync>,
    pub(super) index: u16,
    pub(super) shared: Arc<mimi_engine::Shared>,
    pub(super) last_gauges: std::time::Instant,
    /// The slot this shard orders and, in a cluster, its lease's fencing token.
    pub(super) slot: u16,
    pub(super) fence: Option<u64>,
    pub(super) routes: Arc<Routes>,
}

impl Shard {
    pub(super) fn run(mut self) {
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
        let committed = self.engine.take_writes().and_then(|mut w| {
            if w.is_empty() {
                Ok(CommitReport::default())
            } else {
                if let Some(token) = self.fence {
                    w.writes.insert(
                        0,
                        Write::Fence {
                            room: slot_key(self.slot),
                            token,
                        },
                    );
                }
                self.committer.commit(w)
            }
        });
        match committed {
            Ok(_) => self.engine.committed(),
            Err(e) => {
                if matches!(e, StoreError::Fenced { .. }) {
                    // Another node orders this slot now: take no more requests for it.
                    self.routes.set(self.slot, Route::Nobody);
                }
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
