//! What the federation listeners share: the handler set, trust, metrics, the shutdown signal
//! and the count of requests in flight (drained on shutdown).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::{Notify, watch};

use crate::federation::Federation;
use crate::metrics::Metrics;

/// Requests being handled; shutdown waits for it to reach zero.
#[derive(Debug, Default)]
pub struct Inflight {
    n: AtomicUsize,
    idle: Notify,
}

/// Decrements [`Inflight`] when dropped.
#[derive(Debug)]
pub struct InflightGuard(Arc<Inflight>);

impl Drop for InflightGuard {
    fn drop(&mut self) {
        if self.0.n.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.idle.notify_waiters();
        }
    }
}

impl Inflight {
    /// Counts one request until the guard drops.
    pub fn enter(self: &Arc<Self>) -> InflightGuard {
        self.n.fetch_add(1, Ordering::AcqRel);
        InflightGuard(Arc::clone(self))
    }

    /// Requests in flight now.
    pub fn count(&self) -> usize {
        self.n.load(Ordering::Acquire)
    }

    /// Waits until no request is in flight, or `deadline` passes; returns how many remain.
    pub async fn drained(&self, deadline: Duration) -> usize {
        let wait = async {
            loop {
                let idle = self.idle.notified();
                if self.count() == 0 {
                    return;
                }
                idle.await;
            }
        };
        let _ = tokio::time::timeout(deadline, wait).await;
        self.count()
    }
}

/// Shared by the HTTP/3 and HTTPS listeners.
#[derive(Debug, Clone)]
pub struct Serving {
    /// The handler set.
    pub federation: Arc<Federation>,
    /// Our certificate and who we trust (reloadable).
    pub credentials: Arc<crate::reload::Credentials>,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// Requests in flight.
    pub inflight: Arc<Inflight>,
    /// Becomes true when the gateway stops accepting work.
    pub shutdown: watch::Receiver<bool>,
    /// Longest time one request may take, including reading its body.
    pub request_timeout: Duration,
    /// QUIC streams / HTTP/2 streams per connection.
    pub max_streams: u32,
    /// Idle connection timeout.
    pub idle_timeout: Duration,
    /// TLS/QUIC handshakes and request heads must complete within this long.
    pub handshake_timeout: Duration,
    /// Federation connections (both transports), total and per address.
    pub connections: Arc<mimi_listen::ConnectionCaps>,
}

/// Waits until `rx` says the gateway is shutting down.
pub async fn stopping(rx: &mut watch::Receiver<bool>) {
    while !*rx.borrow_and_update() {
        if rx.changed().await.is_err() {
            return;
        }
    }
}

/// The `Content-Length` of a request, if present and numeric.
pub fn content_length(h: &http::HeaderMap) -> Option<usize> {
    h.get(http::header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// A header as text.
pub fn header(h: &http::HeaderMap, name: http::header::HeaderName) -> Option<String> {
    h.get(name).and_then(|v| v.to_str().ok()).map(str::to_owned)
}
