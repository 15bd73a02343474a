//! Per-peer admission: a token bucket for the request rate and a cap on requests in flight.
//! Over either limit a request is answered 429 with Retry-After, never queued unboundedly.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

#[derive(Debug)]
struct Bucket {
    tokens: f64,
    at: Instant,
    in_flight: usize,
}

/// Admission control for all peers.
#[derive(Debug)]
pub struct Admission {
    rate: f64,
    burst: f64,
    max_in_flight: usize,
    peers: Mutex<HashMap<String, Bucket>>,
}

/// Why a request was not admitted.
#[derive(Debug, Clone, PartialEq)]
pub enum Refused {
    /// Over the request rate; retry after this many seconds.
    Rate(u64),
    /// Too many requests in flight.
    Concurrency(usize),
}

/// Holds a peer's in-flight slot until dropped.
#[derive(Debug)]
pub struct Permit {
    admission: Arc<Admission>,
    peer: String,
}

impl Drop for Permit {
    fn drop(&mut self) {
        if let Ok(mut m) = self.admission.peers.lock()
            && let Some(b) = m.get_mut(&self.peer)
        {
            b.in_flight = b.in_flight.saturating_sub(1);
        }
    }
}

impl Admission {
    /// `rate` requests/s sustained, `burst` above it, `max_in_flight` concurrent.
    pub fn new(rate: f64, burst: f64, max_in_flight: usize) -> Arc<Self> {
        Arc::new(Self {
            rate,
            burst,
            max_in_flight,
            peers: Mutex::new(HashMap::new()),
        })
    }

    /// Admits one request of `peer`, or says why not.
    pub fn admit(self: &Arc<Self>, peer: &str) -> Result<Permit, Refused> {
        let now = Instant::now();
        let mut m = self
            .peers
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        // Bound the table: forget idle peers when it grows large.
        if m.len() > 10_000 {
            m.retain(|_, b| b.in_flight > 0 || now.duration_since(b.at).as_secs() < 60);
        }
        let b = m.entry(peer.to_owned()).or_insert(Bucket {
            tokens: self.burst,
            at: now,
            in_flight: 0,
        });
        b.tokens = (b.tokens + now.duration_since(b.at).as_secs_f64() * self.rate).min(self.burst);
        b.at = now;
        if b.in_flight >= self.max_in_flight {
            return Err(Refused::Concurrency(self.max_in_flight));
        }
        if b.tokens < 1.0 {
            let wait = ((1.0 - b.tokens) / self.rate).ceil().max(1.0) as u64;
            return Err(Refused::Rate(wait));
        }
        b.tokens -= 1.0;
        b.in_flight += 1;
        Ok(Permit {
            admission: Arc::clone(self),
            peer: peer.to_owned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_and_concurrency() {
        let a = Admission::new(1.0, 2.0, 10);
        let p1 = a.admit("b").unwrap();
        let _p2 = a.admit("b").unwrap();
        assert!(matches!(a.admit("b"), Err(Refused::Rate(s)) if s >= 1));
        assert!(a.admit("c").is_ok(), "peers are independent");
        drop(p1);
        let c = Admission::new(1000.0, 1000.0, 2);
        let _x = c.admit("b").unwrap();
        let _y = c.admit("b").unwrap();
        assert_eq!(c.admit("b").unwrap_err(), Refused::Concurrency(2));
    }
}
