//! Prometheus metrics (text exposition format 0.0.4), kept in memory.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;

/// endpoint, status, peer, transport.
type RequestKey = (String, u16, String, &'static str);

/// Counters and gauges of one gateway.
#[derive(Debug, Default)]
pub struct Metrics {
    requests: Mutex<BTreeMap<RequestKey, u64>>,
    handshake_failures: Mutex<BTreeMap<(&'static str, String), u64>>,
    outgoing: Mutex<BTreeMap<(String, String, String), u64>>,
    gauges: Mutex<BTreeMap<(String, String), f64>>,
}

fn label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

impl Metrics {
    /// A federation request was answered.
    pub fn request(&self, endpoint: &str, status: u16, peer: &str, transport: &'static str) {
        if let Ok(mut m) = self.requests.lock() {
            *m.entry((endpoint.to_owned(), status, peer.to_owned(), transport))
                .or_default() += 1;
        }
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
        if let Ok(mut m) = self.handshake_failures.lock() {
            *m.entry((transport, short)).or_default() += 1;
        }
    }

    /// An outgoing request finished (`outcome` = status code or `error`).
    pub fn outgoing(&self, endpoint: &str, peer: &str, outcome: &str) {
        if let Ok(mut m) = self.outgoing.lock() {
            *m.entry((endpoint.to_owned(), peer.to_owned(), outcome.to_owned()))
                .or_default() += 1;
        }
    }

    /// Sets a gauge `name{peer="..."}` (queue depths and engine counters).
    pub fn set_gauge(&self, name: &str, peer: &str, v: f64) {
        if let Ok(mut m) = self.gauges.lock() {
            m.insert((name.to_owned(), peer.to_owned()), v);
        }
    }

    /// The text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        out.push_str("# HELP mimi_requests_total Federation requests answered, by endpoint, status, peer and transport.\n# TYPE mimi_requests_total counter\n");
        if let Ok(m) = self.requests.lock() {
            for ((e, s, p, t), v) in m.iter() {
                let _ = writeln!(
                    out,
                    "mimi_requests_total{{endpoint=\"{}\",status=\"{s}\",peer=\"{}\",transport=\"{t}\"}} {v}",
                    label(e),
                    label(p)
                );
            }
        }
        out.push_str("# HELP mimi_handshake_failures_total Failed TLS handshakes, by transport and reason.\n# TYPE mimi_handshake_failures_total counter\n");
        if let Ok(m) = self.handshake_failures.lock() {
            for ((t, r), v) in m.iter() {
                let _ = writeln!(
                    out,
                    "mimi_handshake_failures_total{{transport=\"{t}\",reason=\"{}\"}} {v}",
                    label(r)
                );
            }
        }
        out.push_str("# HELP mimi_outgoing_requests_total Requests sent to peers, by endpoint, peer and outcome.\n# TYPE mimi_outgoing_requests_total counter\n");
        if let Ok(m) = self.outgoing.lock() {
            for ((e, p, o), v) in m.iter() {
                let _ = writeln!(
                    out,
                    "mimi_outgoing_requests_total{{endpoint=\"{}\",peer=\"{}\",outcome=\"{}\"}} {v}",
                    label(e),
                    label(p),
                    label(o)
                );
            }
        }
        if let Ok(m) = self.gauges.lock() {
            let mut last = String::new();
            for ((name, peer), v) in m.iter() {
                if *name != last {
                    let _ = writeln!(out, "# TYPE {name} gauge");
                    last.clone_from(name);
                }
                if peer.is_empty() {
                    let _ = writeln!(out, "{name} {v}");
                } else {
                    let _ = writeln!(out, "{name}{{peer=\"{}\"}} {v}", label(peer));
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposition() {
        let m = Metrics::default();
        m.request("notify", 201, "b.example", "h3");
        m.request("notify", 201, "b.example", "h3");
        m.handshake_failure("h3", "peer sent no certificates");
        m.set_gauge("mimi_outbox_depth", "b.example", 3.0);
        let t = m.render();
        assert!(t.contains("mimi_requests_total{endpoint=\"notify\",status=\"201\",peer=\"b.example\",transport=\"h3\"} 2"), "{t}");
        assert!(t.contains(
            "mimi_handshake_failures_total{transport=\"h3\",reason=\"peer sent no certificates\"} 1"
        ));
        assert!(t.contains("mimi_outbox_depth{peer=\"b.example\"} 3"));
    }
}
