//! A simulated federation: several engines, virtual time, and a network that drops, duplicates,
//! delays and reorders requests and responses (quinn-proto's `Pair`, for N providers). Every
//! engine's write batches are applied to its own key/value store, so a node can crash (lose its
//! memory and everything in flight) and restart from what it committed.

#![allow(dead_code, clippy::unwrap_used, unreachable_pub)]

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};

use mimi_engine::{
    ClientCall, ConsentPolicy, Engine, EngineConfig, Input, Limits, Output, Reply, RequestId,
    Response,
};
use mimi_proto::directory::Endpoint;
use openmls::prelude::Ciphersuite;
use openmls::prelude::tls_codec::{Deserialize as _, Serialize as _};
use openmls_basic_credential::SignatureKeyPair;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// A request-response timeout of the simulated transport.
pub const TIMEOUT_MS: u64 = 3_000;

#[derive(Debug, Clone)]
enum Packet {
    Request {
        from: String,
        to: String,
        send_id: RequestId,
        endpoint: Endpoint,
        target: String,
        body: Vec<u8>,
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
    engine: Engine,
    store: BTreeMap<Vec<u8>, Vec<u8>>,
    signer_seed: Vec<u8>,
    franking_key: Vec<u8>,
    /// Requests from peers being handled: our request id → (peer, their send id).
    inbound: BTreeMap<RequestId, (String, RequestId)>,
    up: bool,
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

fn config(domain: &str, signer: SignatureKeyPair, franking_key: Vec<u8>) -> EngineConfig {
    EngineConfig {
        domain: domain.to_owned(),
        hub_signer: signer,
        franking_key,
        consent: ConsentPolicy::Open,
        asset_domains: Default::default(),
        open_registration: true,
        limits: Limits {
            backoff_base_ms: 50,
            backoff_max_ms: 2_000,
            notify_batch_messages: 8,
            ..Limits::default()
        },
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
            let fk = vec![7u8; 32];
            nodes.insert(
                d.to_string(),
                Node {
                    engine: Engine::new(config(d, s, fk.clone())),
                    store: BTreeMap::new(),
                    signer_seed: seed,
                    franking_key: fk,
                    inbound: BTreeMap::new(),
                    up: true,
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

    pub fn engine(&self, node: &str) -> &Engine {
        &self.nodes[node].engine
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

    /// Applies a node's writes and routes its outputs onto the network.
    fn drain(&mut self, node: &str) {
        let n = self.nodes.get_mut(node).unwrap();
        for (k, v) in n.engine.take_writes().writes {
            match v {
                Some(v) => {
                    n.store.insert(k, v);
                }
                None => {
                    n.store.remove(&k);
                }
            }
        }
        let mut outs = Vec::new();
        while let Some(o) = n.engine.poll_output() {
            outs.push(o);
        }
        for o in outs {
            match o {
                Output::Respond { id, response } => {
                    let inbound = self.nodes.get_mut(node).unwrap().inbound.remove(&id);
                    match inbound {
                        Some((peer, send_id)) => {
                            let reply = Reply {
                                status: response.status,
                                body: response.body,
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
                        to,
                        send_id: id,
                        endpoint,
                        target,
                        body,
                    });
                }
                Output::Fetch { id, .. } => {
                    self.responses.insert(
                        (node.to_owned(), id),
                        Response::text(502, "no asset servers in the simulation"),
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
                let n = self.nodes.get_mut(&to).unwrap();
                n.inbound.insert(id, (from.clone(), send_id));
                n.engine.handle(
                    self.now,
                    Input::Peer {
                        id,
                        peer: from,
                        endpoint,
                        target,
                        body,
                    },
                );
                self.drain(&to);
            }
            Packet::Response { to, send_id, reply } => {
                if !self.nodes[&to].up || self.outstanding.remove(&(to.clone(), send_id)).is_none()
                {
                    return;
                }
                self.nodes.get_mut(&to).unwrap().engine.handle(
                    self.now,
                    Input::Reply {
                        id: send_id,
                        result: Ok(reply),
                    },
                );
                self.drain(&to);
            }
            Packet::Timeout { to, send_id } => {
                if !self.nodes[&to].up || self.outstanding.remove(&(to.clone(), send_id)).is_none()
                {
                    return;
                }
                self.nodes.get_mut(&to).unwrap().engine.handle(
                    self.now,
                    Input::Reply {
                        id: send_id,
                        result: Err("timeout".into()),
                    },
                );
                self.drain(&to);
            }
        }
    }

    /// Delivers the next packet or fires the next timer. False once nothing is left.
    pub fn step(&mut self) -> bool {
        let next_timer = self
            .nodes
            .iter()
            .filter(|(_, n)| n.up)
            .filter_map(|(d, n)| n.engine.poll_timeout().map(|t| (t, d.clone())))
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
                self.nodes
                    .get_mut(&d)
                    .unwrap()
                    .engine
                    .handle(self.now, Input::Tick);
                self.drain(&d);
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

    /// A local client call; runs the network until the answer is there.
    pub fn call(&mut self, node: &str, token: Option<[u8; 32]>, call: ClientCall) -> Response {
        let id = self.next_id;
        self.next_id += 1;
        self.nodes.get_mut(node).unwrap().engine.handle(
            self.now,
            Input::Client {
                id,
                token_hash: token,
                call,
            },
        );
        self.drain(node);
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

    /// Crashes `node`: its memory and everything in flight to or from it are lost.
    pub fn crash(&mut self, node: &str) {
        self.nodes.get_mut(node).unwrap().up = false;
        self.outstanding.retain(|(n, _), _| n != node);
    }

    /// Restarts `node` from its store.
    pub fn restart(&mut self, node: &str) {
        let n = self.nodes.get_mut(node).unwrap();
        let signer = SignatureKeyPair::tls_deserialize_exact(&n.signer_seed).unwrap();
        let (engine, broken) = Engine::restore(
            config(node, signer, n.franking_key.clone()),
            n.store.clone(),
        );
        assert!(broken.is_empty(), "unrestorable records: {broken:?}");
        n.engine = engine;
        n.inbound.clear();
        n.up = true;
        // Resume the outboxes.
        n.engine.handle(self.now, Input::Tick);
        self.drain(node);
    }
}
