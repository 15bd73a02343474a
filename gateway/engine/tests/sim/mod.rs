//! A simulated federation: several providers, each a few engine shards over its own
//! [`MemStore`], virtual time, and a network that drops, duplicates, delays and reorders
//! requests and responses (quinn-proto's `Pair`, for N providers). A node can crash (losing
//! its memory and everything in flight) and restart from what it committed, and its store can
//! be told to fail commits.

#![allow(dead_code, clippy::unwrap_used, unreachable_pub)]

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};
use std::sync::Arc;

use bytes::Bytes;
use mimi_engine::store::{self, MemStore, Store, Write, WriteBatch};
use mimi_engine::{
    Auth, Body, ClientCall, ConsentPolicy, Engine, EngineConfig, Input, Limits, Output,
    Registration, Reply, RequestId, Response, SendError, Shared,
};
use mimi_proto::client_api::EventsPage;
use mimi_proto::directory::Endpoint;
use mimi_proto::uri::Domain;
use openmls::prelude::Ciphersuite;
use openmls::prelude::tls_codec::{Deserialize as _, Serialize as _};
use openmls_basic_credential::SignatureKeyPair;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// A request-response timeout of the simulated transport.
pub const TIMEOUT_MS: u64 = 3_000;
/// Engine shards per node.
pub const SHARDS: u16 = 2;

#[derive(Debug, Clone)]
enum Packet {
    Request {
        from: String,
        to: String,
        send_id: RequestId,
        endpoint: Endpoint,
        target: String,
        body: Bytes,
    },
    Response {
        to: String,
        send_id: RequestId,
        reply: Reply,
    },
    Timeout {
        to: String,
        send_id: RequestId,
    },
}

struct Node {
    shards: Vec<Engine>,
    store: Arc<MemStore>,
    cfg: Arc<EngineConfig>,
    signer_seed: Vec<u8>,
    /// Requests from peers being handled: our request id → (peer, their send id).
    inbound: BTreeMap<RequestId, (String, RequestId)>,
    up: bool,
    /// Commits that failed (and were rolled back).
    pub failed_commits: u64,
}

/// The simulated federation.
pub struct Sim {
    pub seed: u64,
    rng: ChaCha8Rng,
    pub now: u64,
    nodes: BTreeMap<String, Node>,
    wire: BinaryHeap<Reverse<(u64, u64, usize)>>,
    packets: Vec<Option<Packet>>,
    seq: u64,
    next_id: RequestId,
    /// Responses to client calls: (node, call id) → response.
    pub responses: BTreeMap<(String, RequestId), Response>,
    pub loss: f64,
    pub duplicate: f64,
    pub latency: (u64, u64),
    /// Sends for which a reply or timeout is still due: (node, send id).
    outstanding: BTreeMap<(String, RequestId), ()>,
}

pub fn config(domain: &str, signer: SignatureKeyPair) -> EngineConfig {
    EngineConfig {
        domain: Domain::parse(domain).unwrap(),
        hub_signer: signer,
        franking_key: vec![7u8; 32],
        consent: ConsentPolicy::Open,
        asset_domains: BTreeMap::new(),
        registration: Registration::OpenNewUsers,
        partial_name_search: false,
        limits: Limits {
            backoff_base_ms: 50,
            backoff_max_ms: 2_000,
            notify_batch_messages: 8,
            room_cache_entries: 2,
            ..Limits::default()
        },
    }
}

fn shards(cfg: &Arc<EngineConfig>, store: &Arc<MemStore>) -> Vec<Engine> {
    let shared = Arc::new(Shared::default());
    (0..SHARDS)
        .map(|i| {
            Engine::new(
                Arc::clone(cfg),
                openmls_rust_crypto::RustCrypto::default(),
                Arc::clone(store) as Arc<dyn Store>,
                i,
                SHARDS,
                Arc::clone(&shared),
            )
            .unwrap()
        })
        .collect()
}

/// The text of a refusal or body, for assertion messages.
pub fn text(r: &Response) -> String {
    match &r.body {
        Body::Refused(x) => x.to_string(),
        Body::Mimi(b) | Body::Asset(b) => format!("{} bytes", b.len()),
        Body::Client(c) => format!("{c:?}"),
        Body::Empty => String::new(),
    }
}

/// The bytes of a response body as a peer would receive them.
pub fn bytes(r: &Response) -> Bytes {
    match &r.body {
        Body::Mimi(b) | Body::Asset(b) => b.clone(),
        Body::Refused(x) => Bytes::from(x.to_string()),
        _ => Bytes::new(),
    }
}

impl Sim {
    pub fn new(seed: u64, domains: &[&str]) -> Self {
        let mut nodes = BTreeMap::new();
        for d in domains {
            let s = SignatureKeyPair::new(
                Ciphersuite::MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519.signature_algorithm(),
            )
            .unwrap();
            let seed = s.tls_serialize_detached().unwrap();
            let cfg = Arc::new(config(d, s));
            let store = Arc::new(MemStore::default());
            nodes.insert(
                d.to_string(),
                Node {
                    shards: shards(&cfg, &store),
                    store,
                    cfg,
                    signer_seed: seed,
                    inbound: BTreeMap::new(),
                    up: true,
                    failed_commits: 0,
                },
            );
        }
        Self {
            seed,
            rng: ChaCha8Rng::seed_from_u64(seed),
            now: 1_800_000_000_000,
            nodes,
            wire: BinaryHeap::new(),
            packets: Vec::new(),
            seq: 0,
            next_id: 1,
            responses: BTreeMap::new(),
            loss: 0.0,
            duplicate: 0.0,
            latency: (1, 20),
            outstanding: BTreeMap::new(),
        }
    }

    pub fn store(&self, node: &str) -> Arc<MemStore> {
        Arc::clone(&self.nodes[node].store)
    }

    pub fn failed_commits(&self, node: &str) -> u64 {
        self.nodes[node].failed_commits
    }

    /// Entries queued in `node`'s outboxes (all shards).
    pub fn outbox_entries(&self, node: &str) -> u64 {
        self.nodes[node]
            .shards
            .iter()
            .flat_map(|e| e.outbox_depths().into_values())
            .map(|(n, _)| n)
            .sum()
    }

    pub fn stats(&self, node: &str) -> Vec<mimi_engine::Stats> {
        self.nodes[node]
            .shards
            .iter()
            .map(|e| e.stats().clone())
            .collect()
    }

    fn schedule(&mut self, at: u64, p: Packet) {
        self.packets.push(Some(p));
        self.seq += 1;
        self.wire
            .push(Reverse((at, self.seq, self.packets.len() - 1)));
    }

    fn delay(&mut self) -> u64 {
        let (lo, hi) = self.latency;
        self.now + self.rng.gen_range(lo..=hi)
    }

    /// Feeds one input to the right shard of `node`, commits, and routes the outputs.
    fn input(&mut self, node: &str, input: Input) {
        let now = self.now;
        let n = self.nodes.get_mut(node).unwrap();
        let shard = mimi_engine::shard_of(&input, SHARDS) as usize;
        let targets: Vec<usize> = if matches!(input, Input::Tick) {
            (0..n.shards.len()).collect()
        } else {
            vec![shard]
        };
        let mut outs = Vec::new();
        for s in targets {
            let e = &mut n.shards[s];
            e.handle(now, input.clone());
            let ok = match e.take_writes() {
                Ok(w) => store::commit(n.store.as_ref(), &[&w]).is_ok(),
                Err(_) => false,
            };
            if ok {
                e.committed();
            } else {
                n.failed_commits += 1;
                e.reset();
            }
            while let Some(o) = e.poll_output() {
                outs.push(o);
            }
            if !ok {
                // The inputs of a failed step get a 503 from the shell.
                if let Input::Peer { id, .. } | Input::Client { id, .. } = &input {
                    outs.push(Output::Respond {
                        id: *id,
                        response: Response::refused(mimi_engine::Refusal::Unavailable(
                            "commit failed".into(),
                        )),
                    });
                }
                e.committed();
                while let Some(o) = e.poll_output() {
                    outs.push(o);
                }
            }
        }
        self.route(node, outs);
    }

    fn route(&mut self, node: &str, outs: Vec<Output>) {
        for o in outs {
            match o {
                Output::Respond { id, response } => {
                    let inbound = self.nodes.get_mut(node).unwrap().inbound.remove(&id);
                    match inbound {
                        Some((peer, send_id)) => {
                            let reply = Reply {
                                status: response.status,
                                body: bytes(&response),
                                retry_after_ms: response.retry_after_s.map(|s| s * 1000),
                            };
                            self.transmit(Packet::Response {
                                to: peer,
                                send_id,
                                reply,
                            });
                        }
                        None => {
                            self.responses.insert((node.to_owned(), id), response);
                        }
                    }
                }
                Output::Send {
                    id,
                    to,
                    endpoint,
                    target,
                    body,
                } => {
                    self.outstanding.insert((node.to_owned(), id), ());
                    let at = self.now + TIMEOUT_MS;
                    self.schedule(
                        at,
                        Packet::Timeout {
                            to: node.to_owned(),
                            send_id: id,
                        },
                    );
                    self.transmit(Packet::Request {
                        from: node.to_owned(),
                        to: to.to_string(),
                        send_id: id,
                        endpoint,
                        target,
                        body,
                    });
                }
                Output::Fetch { id, .. } => {
                    self.responses.insert(
                        (node.to_owned(), id),
                        Response::refused(mimi_engine::Refusal::NotFound(
                            "no asset servers in the simulation".into(),
                        )),
                    );
                }
                Output::Wake { .. } => {}
            }
        }
    }

    /// Puts a packet on the wire: maybe lost, maybe duplicated, each copy with its own delay.
    fn transmit(&mut self, p: Packet) {
        if self.rng.gen_bool(self.loss) {
            return;
        }
        let copies = if self.rng.gen_bool(self.duplicate) {
            2
        } else {
            1
        };
        for _ in 0..copies {
            let at = self.delay();
            self.schedule(at, p.clone());
        }
    }

    fn deliver(&mut self, p: Packet) {
        match p {
            Packet::Request {
                from,
                to,
                send_id,
                endpoint,
                target,
                body,
            } => {
                if !self.nodes[&to].up {
                    return;
                }
                let id = self.next_id;
                self.next_id += 1;
                self.nodes
                    .get_mut(&to)
                    .unwrap()
                    .inbound
                    .insert(id, (from.clone(), send_id));
                self.input(
                    &to,
                    Input::Peer {
                        id,
                        peer: Domain::parse(&from).unwrap(),
                        endpoint,
                        target,
                        body,
                    },
                );
            }
            Packet::Response { to, send_id, reply } => {
                if !self.nodes[&to].up || self.outstanding.remove(&(to.clone(), send_id)).is_none()
                {
                    return;
                }
                self.input(
                    &to,
                    Input::Reply {
                        id: send_id,
                        result: Ok(reply),
                    },
                );
            }
            Packet::Timeout { to, send_id } => {
                if !self.nodes[&to].up || self.outstanding.remove(&(to.clone(), send_id)).is_none()
                {
                    return;
                }
                self.input(
                    &to,
                    Input::Reply {
                        id: send_id,
                        result: Err(SendError("timeout".into())),
                    },
                );
            }
        }
    }

    /// Delivers the next packet or fires the next timer. False once nothing is left.
    pub fn step(&mut self) -> bool {
        let next_timer = self
            .nodes
            .iter()
            .filter(|(_, n)| n.up)
            .filter_map(|(d, n)| {
                n.shards
                    .iter()
                    .filter_map(Engine::poll_timeout)
                    .min()
                    .map(|t| (t, d.clone()))
            })
            .min();
        let next_packet = self.wire.peek().map(|Reverse((at, _, _))| *at);
        match (next_packet, next_timer) {
            (None, None) => false,
            (Some(at), t) if t.as_ref().is_none_or(|(tt, _)| at <= *tt) => {
                let Reverse((at, _, idx)) = self.wire.pop().unwrap();
                self.now = self.now.max(at);
                if let Some(p) = self.packets[idx].take() {
                    self.deliver(p);
                }
                true
            }
            (_, Some((t, d))) => {
                self.now = self.now.max(t);
                self.input(&d, Input::Tick);
                true
            }
            _ => false,
        }
    }

    pub fn run_until_idle(&mut self) {
        for _ in 0..200_000 {
            if !self.step() {
                return;
            }
        }
        panic!(
            "federation did not quiesce; rerun with SIM_SEED={}",
            self.seed
        );
    }

    /// Who a token authenticates on `node`.
    pub fn auth(&self, node: &str, token: Option<[u8; 32]>) -> Auth {
        let n = &self.nodes[node];
        token
            .and_then(|t| mimi_engine::authenticate(n.store.as_ref(), &n.cfg.domain, &t).unwrap())
            .map_or(Auth::Anonymous, Auth::Client)
    }

    /// A local client call; runs the network until the answer is there.
    pub fn call(&mut self, node: &str, token: Option<[u8; 32]>, call: ClientCall) -> Response {
        let auth = self.auth(node, token);
        self.call_as(node, auth, call)
    }

    /// A local client call with explicit credentials.
    pub fn call_as(&mut self, node: &str, auth: Auth, call: ClientCall) -> Response {
        let id = self.next_id;
        self.next_id += 1;
        self.input(node, Input::Client { id, auth, call });
        for _ in 0..200_000 {
            if let Some(r) = self.responses.remove(&(node.to_owned(), id)) {
                return r;
            }
            if !self.step() {
                break;
            }
        }
        self.responses
            .remove(&(node.to_owned(), id))
            .unwrap_or_else(|| panic!("no answer to call {id} on {node} (seed {})", self.seed))
    }

    /// A client's deliveries after `after` (what `GET /events` serves).
    pub fn events(&self, node: &str, client: &str, after: u64) -> EventsPage {
        store::events(self.nodes[node].store.as_ref(), client, after, 1000).unwrap()
    }

    /// Acknowledges a client's deliveries up to `upto` (what `POST /ack` does).
    pub fn ack(&self, node: &str, client: &str, upto: u64) {
        let b = WriteBatch {
            writes: vec![Write::Ack {
                client: client.into(),
                upto,
            }],
        };
        let _ = store::commit(self.nodes[node].store.as_ref(), &[&b]);
    }

    /// Crashes `node`: its memory and everything in flight to or from it are lost.
    pub fn crash(&mut self, node: &str) {
        self.nodes.get_mut(node).unwrap().up = false;
        self.outstanding.retain(|(n, _), _| n != node);
    }

    /// Restarts `node` from its store.
    pub fn restart(&mut self, node: &str) {
        let n = self.nodes.get_mut(node).unwrap();
        let signer = SignatureKeyPair::tls_deserialize_exact(&n.signer_seed).unwrap();
        n.cfg = Arc::new(config(node, signer));
        n.shards = shards(&n.cfg, &n.store);
        n.inbound.clear();
        n.up = true;
        // Resume the outboxes.
        self.input(node, Input::Tick);
    }
}
