//! Prometheus metrics with `prometheus-client` (OpenMetrics text on `/metrics`): counters as
//! counters, request latency as histograms, queue depths as gauges. Label values are bounded:
//! peers are configured domains (or `unauthenticated`), endpoints and reasons come from fixed
//! sets.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    endpoint: String,
    status: u16,
    peer: String,
    transport: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EndpointLabels {
    endpoint: String,
    transport: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HandshakeLabels {
    transport: String,
    reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutgoingLabels {
    endpoint: String,
    peer: String,
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PeerLabels {
    peer: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabels {
    kind: String,
}

fn latency() -> Histogram {
    // 100 µs .. ~3.3 s.
    Histogram::new(exponential_buckets(0.0001, 2.0, 16))
}

/// Engine counters, monotonic per shard (exported as deltas into the counters).
#[derive(Debug, Default)]
struct EngineCounters {
    hub_accepted: Counter,
    hub_refused: Counter,
    notify_processed: Counter,
    notify_duplicates: Counter,
    hub_duplicates: Counter,
    deliveries: Counter,
    dead_letters: Counter,
    outbox_dropped: Counter,
}

/// Every metric of one gateway.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    request_seconds: Family<EndpointLabels, Histogram, fn() -> Histogram>,
    handshake_failures: Family<HandshakeLabels, Counter>,
    outgoing: Family<OutgoingLabels, Counter>,
    outgoing_seconds: Family<EndpointLabels, Histogram, fn() -> Histogram>,
    engine: EngineCounters,
    refusals: Family<KindLabels, Counter>,
    outbox_entries: Family<PeerLabels, Gauge>,
    outbox_bytes: Family<PeerLabels, Gauge>,
    out_of_sync: Family<PeerLabels, Gauge>,
    cached_rooms: Gauge,
    failed_commits: Counter,
    last: Mutex<BTreeMap<u16, mimi_engine::Stats>>,
    shard_queues: Mutex<BTreeMap<u16, ShardQueues>>,
}

/// One shard's (entries, bytes) per follower, and its cached rooms.
type ShardQueues = (BTreeMap<String, (u64, u64)>, usize);

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("mimi");
        let requests = Family::<RequestLabels, Counter>::default();
        let request_seconds =
            Family::<EndpointLabels, Histogram, fn() -> Histogram>::new_with_constructor(latency);
        let handshake_failures = Family::<HandshakeLabels, Counter>::default();
        let outgoing = Family::<OutgoingLabels, Counter>::default();
        let outgoing_seconds =
            Family::<EndpointLabels, Histogram, fn() -> Histogram>::new_with_constructor(latency);
        let engine = EngineCounters::default();
        let refusals = Family::<KindLabels, Counter>::default();
        let outbox_entries = Family::<PeerLabels, Gauge>::default();
        let outbox_bytes = Family::<PeerLabels, Gauge>::default();
        let out_of_sync = Family::<PeerLabels, Gauge>::default();
        let cached_rooms = Gauge::default();
        let failed_commits = Counter::default();
        registry.register(
            "requests",
            "Federation requests answered, by endpoint, status, peer and transport",
            requests.clone(),
        );
        registry.register(
            "request_duration_seconds",
            "Time to answer a federation request",
            request_seconds.clone(),
        );
        registry.register(
            "handshake_failures",
            "Failed TLS handshakes, by transport and reason",
            handshake_failures.clone(),
        );
        registry.register(
            "outgoing_requests",
            "Requests sent to peers, by endpoint, peer and outcome",
            outgoing.clone(),
        );
        registry.register(
            "outgoing_request_duration_seconds",
            "Time for a peer to answer a request",
            outgoing_seconds.clone(),
        );
        registry.register(
            "hub_accepted",
            "Events accepted as hub",
            engine.hub_accepted.clone(),
        );
        registry.register(
            "hub_refused",
            "Handshakes or messages refused as hub",
            engine.hub_refused.clone(),
        );
        registry.register(
            "hub_duplicates",
            "Submissions retried with the same bytes, answered again without a second fan-out",
            engine.hub_duplicates.clone(),
        );
        registry.register(
            "notify_processed",
            "/notify bodies processed as follower",
            engine.notify_processed.clone(),
        );
        registry.register(
            "notify_duplicates",
            "Duplicate FanoutMessages ignored",
            engine.notify_duplicates.clone(),
        );
        registry.register(
            "deliveries",
            "Deliveries queued for local clients",
            engine.deliveries.clone(),
        );
        registry.register(
            "dead_letters",
            "Outbox entries a follower refused for good (set aside, see mimi admin dead-letters)",
            engine.dead_letters.clone(),
        );
        registry.register(
            "outbox_dropped",
            "Events dropped for followers over their outbox byte cap (they are marked out of sync)",
            engine.outbox_dropped.clone(),
        );
        registry.register(
            "refusals",
            "Requests and calls refused, by kind",
            refusals.clone(),
        );
        registry.register(
            "outbox_entries",
            "Entries queued per follower",
            outbox_entries.clone(),
        );
        registry.register(
            "outbox_bytes",
            "Bytes queued per follower",
            outbox_bytes.clone(),
        );
        registry.register(
            "follower_out_of_sync",
            "1 when a follower's queue overflowed and its users must resync",
            out_of_sync.clone(),
        );
        registry.register("cached_rooms", "Rooms held in memory", cached_rooms.clone());
        registry.register(
            "storage_failed_commits",
            "Storage commits that failed",
            failed_commits.clone(),
        );
        Self {
            registry,
            requests,
            request_seconds,
            handshake_failures,
            outgoing,
            outgoing_seconds,
            engine,
            refusals,
            outbox_entries,
            outbox_bytes,
            out_of_sync,
            cached_rooms,
            failed_commits,
            last: Mutex::new(BTreeMap::new()),
            shard_queues: Mutex::new(BTreeMap::new()),
        }
    }
}

impl Metrics {
    /// A federation request was answered after `took`.
    pub fn request(
        &self,
        endpoint: &str,
        status: u16,
        peer: &str,
        transport: &'static str,
        took: Duration,
    ) {
        self.requests
            .get_or_create(&RequestLabels {
                endpoint: endpoint.to_owned(),
                status,
                peer: peer.to_owned(),
                transport: transport.to_owned(),
            })
            .inc();
        self.request_seconds
            .get_or_create(&EndpointLabels {
                endpoint: endpoint.to_owned(),
                transport: transport.to_owned(),
            })
            .observe(took.as_secs_f64());
    }

    /// A TLS handshake failed.
    pub fn handshake_failure(&self, transport: &'static str, reason: &str) {
        // Keep label cardinality bounded: the first words of the error only.
        let short: String = reason
            .split(':')
            .next()
            .unwrap_or(reason)
            .chars()
            .take(60)
            .collect();
        self.handshake_failures
            .get_or_create(&HandshakeLabels {
                transport: transport.to_owned(),
                reason: short,
            })
            .inc();
    }

    /// An outgoing request finished (`outcome` = status code or `error`) after `took`.
    pub fn outgoing(
        &self,
        endpoint: &str,
        peer: &str,
        outcome: &str,
        transport: &str,
        took: Duration,
    ) {
        self.outgoing
            .get_or_create(&OutgoingLabels {
                endpoint: endpoint.to_owned(),
                peer: peer.to_owned(),
                outcome: outcome.to_owned(),
            })
            .inc();
        self.outgoing_seconds
            .get_or_create(&EndpointLabels {
                endpoint: endpoint.to_owned(),
                transport: transport.to_owned(),
            })
            .observe(took.as_secs_f64());
    }

    /// A storage commit failed.
    pub fn failed_commit(&self) {
        self.failed_commits.inc();
    }

    /// The counters of engine shard `shard` (cumulative): adds what changed since last time.
    pub fn engine_stats(&self, shard: u16, s: &mimi_engine::Stats) {
        let Ok(mut last) = self.last.lock() else {
            return;
        };
        let prev = last.entry(shard).or_default();
        let d = |new: u64, old: u64| new.saturating_sub(old);
        let e = &self.engine;
        e.hub_accepted.inc_by(d(s.hub_accepted, prev.hub_accepted));
        e.hub_refused.inc_by(d(s.hub_refused, prev.hub_refused));
        e.notify_processed
            .inc_by(d(s.notify_processed, prev.notify_processed));
        e.notify_duplicates
            .inc_by(d(s.notify_duplicates, prev.notify_duplicates));
        e.hub_duplicates
            .inc_by(d(s.hub_duplicates, prev.hub_duplicates));
        e.deliveries.inc_by(d(s.deliveries, prev.deliveries));
        e.dead_letters.inc_by(d(s.dead_letters, prev.dead_letters));
        e.outbox_dropped
            .inc_by(d(s.outbox_dropped, prev.outbox_dropped));
        for (kind, n) in &s.refusals {
            let before = prev.refusals.get(kind).copied().unwrap_or(0);
            if *n > before {
                self.refusals
                    .get_or_create(&KindLabels {
                        kind: (*kind).to_owned(),
                    })
                    .inc_by(n - before);
            }
        }
        *prev = s.clone();
    }

    /// Queue gauges of shard `shard`: (entries, bytes) per follower, followers out of sync
    /// (shared), rooms cached.
    pub fn queues(
        &self,
        shard: u16,
        depths: BTreeMap<String, (u64, u64)>,
        out_of_sync: &BTreeMap<String, u64>,
        cached_rooms: usize,
    ) {
        let (depths, cached_rooms) = {
            let Ok(mut q) = self.shard_queues.lock() else {
                return;
            };
            q.insert(shard, (depths, cached_rooms));
            let mut sum: BTreeMap<String, (u64, u64)> = BTreeMap::new();
            let mut cached = 0;
            for (d, c) in q.values() {
                cached += c;
                for (p, (n, b)) in d {
                    let e = sum.entry(p.clone()).or_default();
                    e.0 += n;
                    e.1 += b;
                }
            }
            (sum, cached)
        };
        self.outbox_entries.clear();
        self.outbox_bytes.clear();
        for (peer, (n, b)) in &depths {
            let l = PeerLabels { peer: peer.clone() };
            self.outbox_entries.get_or_create(&l).set(*n as i64);
            self.outbox_bytes.get_or_create(&l).set(*b as i64);
        }
        self.out_of_sync.clear();
        for peer in out_of_sync.keys() {
            self.out_of_sync
                .get_or_create(&PeerLabels { peer: peer.clone() })
                .set(1);
        }
        self.cached_rooms.set(cached_rooms as i64);
    }

    /// (entries, bytes) queued per follower over every shard.
    pub fn queue_depths(&self) -> BTreeMap<String, (u64, u64)> {
        let mut sum: BTreeMap<String, (u64, u64)> = BTreeMap::new();
        if let Ok(q) = self.shard_queues.lock() {
            for (d, _) in q.values() {
                for (p, (n, b)) in d {
                    let e = sum.entry(p.clone()).or_default();
                    e.0 += n;
                    e.1 += b;
                }
            }
        }
        sum
    }

    /// The OpenMetrics text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposition() {
        let m = Metrics::default();
        m.request("notify", 201, "b.example", "h3", Duration::from_millis(2));
        m.request("notify", 201, "b.example", "h3", Duration::from_millis(3));
        m.handshake_failure("h3", "peer sent no certificates");
        let mut s = mimi_engine::Stats {
            dead_letters: 2,
            ..Default::default()
        };
        m.engine_stats(0, &s);
        s.dead_letters = 5;
        m.engine_stats(0, &s);
        m.queues(
            0,
            [("b.example".to_owned(), (3, 300))].into(),
            &BTreeMap::new(),
            1,
        );
        m.queues(
            1,
            [("b.example".to_owned(), (1, 100))].into(),
            &BTreeMap::new(),
            1,
        );
        let t = m.render();
        assert!(t.contains("mimi_requests_total{endpoint=\"notify\",status=\"201\",peer=\"b.example\",transport=\"h3\"} 2"), "{t}");
        assert!(
            t.contains("# TYPE mimi_request_duration_seconds histogram"),
            "{t}"
        );
        assert!(t.contains(
            "mimi_handshake_failures_total{transport=\"h3\",reason=\"peer sent no certificates\"} 1"
        ));
        assert!(
            t.contains("mimi_dead_letters_total 5"),
            "deltas add up: {t}"
        );
        assert!(
            t.contains("mimi_outbox_bytes{peer=\"b.example\"} 400"),
            "shards add up: {t}"
        );
    }
}
