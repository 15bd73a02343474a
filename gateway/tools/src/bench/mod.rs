//! `mimi bench`: measurements with their baseline taken in the same run, reported as ratios.
//!
//! - `links`: MIMI request round trips per second over HTTP/3 and HTTPS (1 KiB bodies, the
//!   gateway's own client and server, full peer checks and engine) at 1, 16 and 64 requests in
//!   flight, against a bare HTTP/3 request answered 201 (h3 + quinn, no MIMI) and a bare quinn
//!   bidirectional-stream echo, both on the same certificates with the same body.
//! - `fanout`: messages per second and p50/p99 delivery latency from one hub to 1, 4 and 16
//!   followers, closed loop at 1, 16 and 64 submissions in flight and open loop at half the
//!   saturation rate, against the same baselines.
//! - `commit`: the hub's acceptance of a commit in rooms of 10, 100 and 1000 members against a
//!   member's own openmls processing of the same commit.
//!
//! Every measurement is a [`Measurement`]: printed as one JSON object per line with `--json`,
//! or as the Markdown tables BENCHMARKS.md records.

mod baseline;
mod commit;
mod fanout;
mod links;

use std::fmt::Write as _;
use std::future::Future;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mimi_client::Member;
use mimi_gateway::config::Config;
use mimi_gateway::metrics::Metrics;
use mimi_gateway::peers::PeerClient;
use mimi_proto::directory::encode_path_value;
use serde::Serialize;

pub use commit::commit;
pub(crate) use commit::{Solo, accepted, body_text, mimi_body};
pub use fanout::fanout;
pub use links::links;

/// The in-flight counts every request-rate figure is measured at.
pub const IN_FLIGHT: [usize; 3] = [1, 16, 64];

/// Latency percentiles and throughput of one load run.
#[derive(Debug, Clone)]
pub struct Load {
    /// Completed operations.
    pub ops: usize,
    /// Operations per second.
    pub per_s: f64,
    /// Median latency.
    pub p50: Duration,
    /// 99th percentile latency.
    pub p99: Duration,
}

/// One measurement with the same run's baselines at the same in-flight count.
#[derive(Debug, Clone, Serialize)]
pub struct Measurement {
    /// `links`, `fanout`, or a baseline: `bare_h3`, `bare_echo`.
    pub bench: &'static str,
    /// `h3`, `https` or `quic` (the echo).
    pub transport: &'static str,
    /// `closed` (each of `in_flight` workers sends when its last request was answered),
    /// `open` (sends due at `rate`) or `lockstep` (fan-out: the next message when every
    /// follower has the last).
    pub mode: &'static str,
    /// Follower gateways (fan-out only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub followers: Option<usize>,
    /// Requests (or submissions) in flight; in open loop, the cap on outstanding submissions.
    pub in_flight: usize,
    /// Offered rate in messages per second; 0 = closed loop.
    pub rate: f64,
    /// Completed requests (links) or messages delivered to every follower (fan-out) per second.
    pub per_s: f64,
    /// Deliveries per second, all followers together (fan-out only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deliveries_per_s: Option<f64>,
    /// Median latency in µs (fan-out: from the submission, or its scheduled time in open
    /// loop, to a follower's client holding the message).
    pub p50_us: f64,
    /// 99th percentile latency in µs.
    pub p99_us: f64,
    /// Samples behind the percentiles.
    pub samples: usize,
    /// Open loop: submissions that started late because `in_flight` were outstanding.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub late: Option<usize>,
    /// The same run's bare HTTP/3 request rate at this in-flight count.
    pub bare_h3_per_s: f64,
    /// The same run's bare quinn echo rate at this in-flight count.
    pub bare_echo_per_s: f64,
    /// `per_s ÷ bare_h3_per_s`.
    pub ratio_bare_h3: f64,
    /// `per_s ÷ bare_echo_per_s`.
    pub ratio_bare_echo: f64,
}

impl Measurement {
    fn new(
        bench: &'static str,
        transport: &'static str,
        in_flight: usize,
        load: &Load,
        base: &baseline::Baselines,
    ) -> Self {
        let (h3, echo) = (base.h3.per_s, base.echo.per_s);
        Self {
            bench,
            transport,
            mode: "closed",
            followers: None,
            in_flight,
            rate: 0.0,
            per_s: load.per_s,
            deliveries_per_s: None,
            p50_us: micros(load.p50),
            p99_us: micros(load.p99),
            samples: load.ops,
            late: None,
            bare_h3_per_s: h3,
            bare_echo_per_s: echo,
            ratio_bare_h3: load.per_s / h3,
            ratio_bare_echo: load.per_s / echo,
        }
    }
}

fn micros(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e7).round() / 10.0
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn summarize(mut lat: Vec<Duration>, elapsed: Duration) -> Load {
    lat.sort_unstable();
    Load {
        ops: lat.len(),
        per_s: lat.len() as f64 / elapsed.as_secs_f64(),
        p50: percentile(&lat, 0.5),
        p99: percentile(&lat, 0.99),
    }
}

/// Runs `op` from `concurrency` workers for `duration` (after a short warm-up).
async fn load<F, Fut>(concurrency: usize, duration: Duration, op: F) -> anyhow::Result<Load>
where
    F: Fn() -> Fut + Clone + Send + 'static,
    Fut: Future<Output = anyhow::Result<()>> + Send,
{
    for _ in 0..20 {
        op().await?;
    }
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let op = op.clone();
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            while start.elapsed() < duration {
                let t = Instant::now();
                op().await?;
                lat.push(t.elapsed());
            }
            Ok::<_, anyhow::Error>(lat)
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await??);
    }
    Ok(summarize(all, start.elapsed()))
}

pub(crate) fn us(d: Duration) -> String {
    format!("{:.0} µs", d.as_secs_f64() * 1e6)
}

/// A signed KeyMaterialRequest of exactly `size` bytes from alice@a for an unknown b user
/// (the room URI is padded), and its path.
fn kmr(size: usize) -> (Vec<u8>, String) {
    let m = Member::new("a.example", "alice", "phone");
    let target = "mimi://b.example/u/nobody";
    let base = m.key_material_request(target, "mimi://a.example/r/").len();
    let pad = size.saturating_sub(base).saturating_sub(2);
    let mut body =
        m.key_material_request(target, &format!("mimi://a.example/r/{}", "x".repeat(pad)));
    // The room vector's length prefix may grow by a byte: trim the padding to land on `size`.
    let mut p = pad;
    while body.len() > size && p > 0 {
        p -= 1;
        body = m.key_material_request(target, &format!("mimi://a.example/r/{}", "x".repeat(p)));
    }
    (
        body,
        format!("/v1/keyMaterial/{}", encode_path_value(target)),
    )
}

fn peer_client(
    dir: &Path,
    transport: &str,
    b: mimi_gateway::gateway::Addrs,
) -> anyhow::Result<PeerClient> {
    let path = dir.join("a.example").join("config.toml");
    let mut cfg = Config::load(&path)?;
    for p in &mut cfg.peers {
        p.transport = transport.to_owned();
        if p.domain == "b.example" {
            p.quic = b.quic;
            p.https = b.https;
        }
    }
    let credentials = mimi_gateway::reload::Credentials::load(&cfg)?;
    PeerClient::new(&cfg, credentials, Arc::new(Metrics::default()))
}

fn unthrottled(c: &mut Config) {
    c.limits.rate_per_second = 1e9;
    c.limits.rate_burst = 1e9;
    c.limits.max_concurrent_requests_per_peer = 100_000;
    c.limits.max_streams_per_connection = 1024;
    c.log.level = "error".into();
}

/// The measurements as Markdown tables, one per bench, with their ratios to the baselines.
#[must_use]
pub fn markdown(ms: &[Measurement]) -> String {
    let mut out = String::new();
    for bench in ["bare_echo", "bare_h3", "links", "fanout"] {
        let rows: Vec<&Measurement> = ms.iter().filter(|m| m.bench == bench).collect();
        if rows.is_empty() {
            continue;
        }
        let _ = writeln!(
            out,
            "\n| bench | transport | followers | mode | in flight | offered rate | per s | deliveries/s | p50 | p99 | bare h3/s | bare echo/s | ÷ bare h3 | ÷ bare echo |\n|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
        );
        for m in rows {
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} | {} | {:.0} | {} | {:.0} µs | {:.0} µs | {:.0} | {:.0} | {:.2} | {:.2} |",
                m.bench,
                m.transport,
                m.followers.map_or_else(|| "–".into(), |f| f.to_string()),
                m.mode,
                m.in_flight,
                if m.rate > 0.0 {
                    format!("{:.0}/s", m.rate)
                } else {
                    "–".into()
                },
                m.per_s,
                m.deliveries_per_s
                    .map_or_else(|| "–".into(), |d| format!("{d:.0}")),
                m.p50_us,
                m.p99_us,
                m.bare_h3_per_s,
                m.bare_echo_per_s,
                m.ratio_bare_h3,
                m.ratio_bare_echo,
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_pick_ranked_samples() {
        let lat: Vec<Duration> = (1..=100).rev().map(Duration::from_millis).collect();
        let l = summarize(lat, Duration::from_secs(2));
        assert_eq!(l.ops, 100);
        assert!((l.per_s - 50.0).abs() < 1e-9);
        assert_eq!(l.p50, Duration::from_millis(51));
        assert_eq!(l.p99, Duration::from_millis(99));
        assert_eq!(
            summarize(Vec::new(), Duration::from_secs(1)).p99,
            Duration::ZERO
        );
    }

    #[test]
    fn a_measurement_is_one_json_object_with_its_ratios() {
        let load = Load {
            ops: 10,
            per_s: 500.0,
            p50: Duration::from_micros(1500),
            p99: Duration::from_micros(2500),
        };
        let base = baseline::Baselines {
            h3: Load {
                per_s: 1000.0,
                ..load
            },
            echo: Load {
                per_s: 2000.0,
                ..load
            },
        };
        let m = Measurement::new("links", "h3", 16, &load, &base);
        let v = serde_json::to_value(&m).expect("serializes");
        for key in [
            "bench",
            "in_flight",
            "rate",
            "per_s",
            "p50_us",
            "p99_us",
            "bare_h3_per_s",
            "bare_echo_per_s",
        ] {
            assert!(v.get(key).is_some(), "{key} missing from {v}");
        }
        assert_eq!(v["ratio_bare_h3"], 0.5);
        assert_eq!(v["ratio_bare_echo"], 0.25);
        assert_eq!(v["p50_us"], 1500.0);
        assert!(v.get("followers").is_none());
        assert!(markdown(&[m]).contains("| links | h3 | – | closed | 16 | – | 500 |"));
    }
}
