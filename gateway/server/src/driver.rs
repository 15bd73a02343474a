//! The task that owns the engine. Inputs arrive on a channel; the driver hands a batch of them
//! to the engine, commits the resulting writes in **one** redb transaction (group commit across
//! rooms and requests), and only then performs the outputs: responses, requests to peers
//! (whose replies come back as inputs), asset fetches and client wake-ups.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use mimi_engine::{ClientCall, Engine, Input, Output, RequestId, Response};
use mimi_proto::directory::Endpoint;
use tokio::sync::{Notify, mpsc, oneshot};

use crate::metrics::Metrics;
use crate::peers::PeerClient;
use crate::store::Store;

/// Inputs handled per storage transaction at most.
const MAX_BATCH: usize = 512;

enum Cmd {
    Peer {
        peer: String,
        endpoint: Endpoint,
        target: String,
        body: Vec<u8>,
        tx: oneshot::Sender<Response>,
    },
    Client {
        token_hash: Option<[u8; 32]>,
        call: ClientCall,
        tx: oneshot::Sender<Response>,
    },
    Reply {
        id: RequestId,
        result: Result<mimi_engine::Reply, String>,
    },
    Stop(oneshot::Sender<()>),
}

/// Wake-ups for clients waiting on new deliveries.
#[derive(Debug, Default)]
pub struct Wakes {
    by_client: Mutex<HashMap<String, Arc<Notify>>>,
}

impl Wakes {
    /// The notifier of a client (created on first use).
    pub fn get(&self, client_id: &str) -> Arc<Notify> {
        let mut m = self
            .by_client
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        Arc::clone(m.entry(client_id.to_owned()).or_default())
    }

    fn wake(&self, client_id: &str) {
        if let Ok(m) = self.by_client.lock()
            && let Some(n) = m.get(client_id)
        {
            n.notify_waiters();
        }
    }
}

/// A handle to the engine driver.
#[derive(Clone, Debug)]
pub struct EngineHandle {
    tx: mpsc::Sender<Cmd>,
    /// Client wake-ups.
    pub wakes: Arc<Wakes>,
}

impl std::fmt::Debug for Cmd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Cmd")
    }
}

fn unavailable() -> Response {
    Response {
        retry_after_s: Some(1),
        ..Response::text(503, "the gateway is shutting down")
    }
}

impl EngineHandle {
    /// A federation request from an authenticated peer.
    pub async fn peer(
        &self,
        peer: &str,
        endpoint: Endpoint,
        target: &str,
        body: Vec<u8>,
    ) -> Response {
        let (tx, rx) = oneshot::channel();
        if self
            .tx
            .send(Cmd::Peer {
                peer: peer.to_owned(),
                endpoint,
                target: target.to_owned(),
                body,
                tx,
            })
            .await
            .is_err()
        {
            return unavailable();
        }
        rx.await.unwrap_or_else(|_| unavailable())
    }

    /// Stops the driver after committing what it holds; later calls are answered 503.
    pub async fn stop(&self) {
        let (tx, rx) = oneshot::channel();
        if self.tx.send(Cmd::Stop(tx)).await.is_ok() {
            let _ = rx.await;
        }
    }

    /// A client API call.
    pub async fn client(&self, token_hash: Option<[u8; 32]>, call: ClientCall) -> Response {
        let (tx, rx) = oneshot::channel();
        if self
            .tx
            .send(Cmd::Client {
                token_hash,
                call,
                tx,
            })
            .await
            .is_err()
        {
            return unavailable();
        }
        rx.await.unwrap_or_else(|_| unavailable())
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Starts the driver; it stops when every handle is dropped (after a final commit).
pub fn spawn(
    engine: Engine,
    store: Arc<Store>,
    peers: Arc<PeerClient>,
    metrics: Arc<Metrics>,
) -> (EngineHandle, tokio::task::JoinHandle<()>) {
    let (tx, rx) = mpsc::channel(4096);
    let wakes = Arc::new(Wakes::default());
    let handle = EngineHandle {
        tx: tx.clone(),
        wakes: Arc::clone(&wakes),
    };
    let task = tokio::spawn(run(
        engine,
        store,
        peers,
        metrics,
        rx,
        tx.downgrade(),
        wakes,
    ));
    (handle, task)
}

async fn run(
    mut engine: Engine,
    store: Arc<Store>,
    peers: Arc<PeerClient>,
    metrics: Arc<Metrics>,
    mut rx: mpsc::Receiver<Cmd>,
    self_tx: mpsc::WeakSender<Cmd>,
    wakes: Arc<Wakes>,
) {
    let mut waiting: HashMap<RequestId, oneshot::Sender<Response>> = HashMap::new();
    let mut next_id: RequestId = 1;
    let mut last_gauges = std::time::Instant::now();
    let mut stopped: Option<oneshot::Sender<()>> = None;
    // Resume the outboxes restored from storage right away.
    let mut starting = true;
    loop {
        if stopped.is_some() {
            break;
        }
        let timeout = if std::mem::take(&mut starting) {
            Some(Duration::ZERO)
        } else {
            engine
                .poll_timeout()
                .map(|t| Duration::from_millis(t.saturating_sub(now_ms())))
        };
        let first = match timeout {
            Some(d) => match tokio::time::timeout(d, rx.recv()).await {
                Ok(Some(c)) => Some(c),
                Ok(None) => break,
                Err(_) => None,
            },
            None => match rx.recv().await {
                Some(c) => Some(c),
                None => break,
            },
        };
        let mut batch: Vec<Cmd> = first.into_iter().collect();
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(c) => batch.push(c),
                Err(_) => break,
            }
        }
        let now = now_ms();
        if batch.is_empty() || engine.poll_timeout().is_some_and(|t| t <= now) {
            engine.handle(now, Input::Tick);
        }
        for cmd in batch {
            let input = match cmd {
                Cmd::Peer {
                    peer,
                    endpoint,
                    target,
                    body,
                    tx,
                } => {
                    let id = next_id;
                    next_id += 1;
                    waiting.insert(id, tx);
                    Input::Peer {
                        id,
                        peer,
                        endpoint,
                        target,
                        body,
                    }
                }
                Cmd::Client {
                    token_hash,
                    call,
                    tx,
                } => {
                    let id = next_id;
                    next_id += 1;
                    waiting.insert(id, tx);
                    Input::Client {
                        id,
                        token_hash,
                        call,
                    }
                }
                Cmd::Reply { id, result } => Input::Reply { id, result },
                Cmd::Stop(tx) => {
                    stopped = Some(tx);
                    continue;
                }
            };
            engine.handle(now, input);
        }
        // Durable before visible: commit, then act.
        let writes = engine.take_writes();
        if !writes.is_empty() {
            let s = Arc::clone(&store);
            let committed = tokio::task::spawn_blocking(move || s.commit(&writes)).await;
            match committed {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    tracing::error!(error = %format!("{e:#}"), "storage commit failed; refusing to answer what is not durable");
                    for (_, tx) in waiting.drain() {
                        let _ = tx.send(Response::text(500, "storage failure"));
                    }
                    while engine.poll_output().is_some() {}
                    continue;
                }
                Err(e) => {
                    tracing::error!(error = %e, "storage task failed");
                    break;
                }
            }
        }
        while let Some(out) = engine.poll_output() {
            match out {
                Output::Respond { id, response } => {
                    if let Some(tx) = waiting.remove(&id) {
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
                    let peers = Arc::clone(&peers);
                    let back = self_tx.clone();
                    // The engine waits for exactly one reply per send: even if the request task
                    // fails in an unexpected way, a reply (an error) comes back.
                    let work =
                        tokio::spawn(async move { peers.mimi(&to, endpoint, &target, body).await });
                    tokio::spawn(async move {
                        let result = work
                            .await
                            .unwrap_or_else(|e| Err(format!("request task failed: {e}")));
                        if let Some(tx) = back.upgrade() {
                            let _ = tx.send(Cmd::Reply { id, result }).await;
                        }
                    });
                }
                Output::Fetch { id, url } => {
                    if let Some(tx) = waiting.remove(&id) {
                        let peers = Arc::clone(&peers);
                        tokio::spawn(async move {
                            let r = match peers.fetch(&url).await {
                                Ok(r) if r.status == 200 => Response {
                                    status: 200,
                                    content_type: "application/octet-stream",
                                    body: r.body.to_vec(),
                                    retry_after_s: None,
                                },
                                Ok(r) => Response::text(
                                    502,
                                    format!("the asset host answered {}", r.status),
                                ),
                                Err(e) => {
                                    Response::text(502, format!("cannot fetch the asset: {e}"))
                                }
                            };
                            let _ = tx.send(r);
                        });
                    }
                }
                Output::Wake { client_id } => wakes.wake(&client_id),
            }
        }
        if last_gauges.elapsed() > Duration::from_millis(500) {
            last_gauges = std::time::Instant::now();
            for (peer, depth) in engine.outbox_depths() {
                metrics.set_gauge("mimi_outbox_depth", &peer, depth as f64);
            }
            let s = engine.stats();
            metrics.set_gauge("mimi_hub_accepted_total", "", s.hub_accepted as f64);
            metrics.set_gauge("mimi_hub_refused_total", "", s.hub_refused as f64);
            metrics.set_gauge("mimi_notify_processed_total", "", s.notify_processed as f64);
            metrics.set_gauge(
                "mimi_notify_duplicates_total",
                "",
                s.notify_duplicates as f64,
            );
            metrics.set_gauge("mimi_deliveries_total", "", s.deliveries as f64);
            metrics.set_gauge("mimi_hosted_rooms", "", engine.hosted_rooms().len() as f64);
        }
    }
    // Stopped or every handle dropped: commit anything left.
    let writes = engine.take_writes();
    if let Err(e) = store.commit(&writes) {
        tracing::error!(error = %format!("{e:#}"), "final commit failed");
    }
    if let Some(tx) = stopped {
        let _ = tx.send(());
    }
}
