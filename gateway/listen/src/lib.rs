//! Bounded plain-HTTP listeners, for the gateway's local listeners (client API, admin) and the
//! bridges' (the Matrix application service): every bound is explicit and has a default.
//!
//! - at most [`Limits::max_connections`] connections, and [`Limits::max_per_address`] per remote
//!   address; past either, a new connection is closed at once (counted in
//!   [`Listener::refused`]);
//! - request headers must arrive within [`Limits::header_timeout`] (slowloris), and an idle
//!   keep-alive connection is closed after it too;
//! - HTTP/2 connections carry at most [`Limits::max_streams`] streams at once;
//! - accept errors (out of file descriptors) back off from 10 ms to 1 s instead of spinning;
//! - on shutdown the listener stops accepting and open connections end.

use std::collections::HashMap;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::{Request, Response};
use hyper::body::{Body, Incoming};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;
use tokio::sync::watch;

/// The bounds of one listener.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Connections open at once.
    pub max_connections: usize,
    /// Connections open at once from one address.
    pub max_per_address: usize,
    /// Time to receive a request's headers (and longest idle time between requests).
    pub header_timeout: Duration,
    /// HTTP/2 streams per connection.
    pub max_streams: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_connections: 1024,
            max_per_address: 256,
            header_timeout: Duration::from_secs(10),
            max_streams: 128,
        }
    }
}

/// Connection caps, total and per remote address, shareable between listeners (the gateway's
/// HTTP/3 and HTTPS federation listeners share one).
#[derive(Debug, Default)]
pub struct ConnectionCaps {
    total: AtomicUsize,
    per_address: Mutex<HashMap<IpAddr, usize>>,
    refused: AtomicU64,
    max_total: usize,
    max_per_address: usize,
}

type Counts = ConnectionCaps;

/// A connection slot; released when dropped.
#[derive(Debug)]
pub struct Slot {
    counts: Arc<Counts>,
    ip: IpAddr,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.counts.total.fetch_sub(1, Ordering::AcqRel);
        if let Ok(mut m) = self.counts.per_address.lock()
            && let Some(n) = m.get_mut(&self.ip)
        {
            *n -= 1;
            if *n == 0 {
                m.remove(&self.ip);
            }
        }
    }
}

impl ConnectionCaps {
    /// Caps of `max_total` connections, `max_per_address` from one address.
    pub fn new(max_total: usize, max_per_address: usize) -> Arc<Self> {
        Arc::new(Self {
            max_total,
            max_per_address,
            ..Self::default()
        })
    }

    /// Connections refused so far.
    pub fn refused(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }

    /// Connections open now.
    pub fn open(&self) -> usize {
        self.total.load(Ordering::Acquire)
    }

    /// A slot for a connection from `ip`, or `None` (counted) when over a cap.
    pub fn admit(self: &Arc<Self>, ip: IpAddr) -> Option<Slot> {
        let mut m = self.per_address.lock().ok()?;
        let n = m.entry(ip).or_default();
        if *n >= self.max_per_address || self.total.load(Ordering::Acquire) >= self.max_total {
            if *n == 0 {
                m.remove(&ip);
            }
            self.refused.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        *n += 1;
        self.total.fetch_add(1, Ordering::AcqRel);
        Some(Slot {
            counts: Arc::clone(self),
            ip,
        })
    }
}

/// A bound listener.
#[derive(Debug)]
pub struct Listener {
    tcp: TcpListener,
    limits: Limits,
    counts: Arc<Counts>,
}

/// Resolves once `rx` says stop (or its sender is gone).
pub async fn stopping(rx: &mut watch::Receiver<bool>) {
    while !*rx.borrow_and_update() {
        if rx.changed().await.is_err() {
            return;
        }
    }
}

impl Listener {
    /// Binds `addr`.
    ///
    /// # Errors
    /// The address is in use or not available.
    pub async fn bind(addr: SocketAddr, limits: Limits) -> std::io::Result<Self> {
        Ok(Self {
            tcp: TcpListener::bind(addr).await?,
            limits,
            counts: ConnectionCaps::new(limits.max_connections, limits.max_per_address),
        })
    }

    /// The bound address.
    ///
    /// # Errors
    /// The socket's error.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.tcp.local_addr()
    }

    /// Its connection caps (to read the counters while it serves).
    pub fn caps(&self) -> Arc<ConnectionCaps> {
        Arc::clone(&self.counts)
    }

    /// Serves HTTP/1.1 and HTTP/2 (prior knowledge) with `handler` until `shutdown`.
    pub async fn serve_http<F, Fut, B>(self, mut shutdown: watch::Receiver<bool>, handler: F)
    where
        F: Fn(Request<Incoming>, watch::Receiver<bool>) -> Fut + Clone + Send + Sync + 'static,
        Fut: Future<Output = Response<B>> + Send + 'static,
        B: Body + Send + 'static,
        B::Data: Send,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let mut backoff = Duration::from_millis(10);
        loop {
            let accepted = tokio::select! {
                r = self.tcp.accept() => r,
                () = stopping(&mut shutdown) => return,
            };
            let (tcp, remote) = match accepted {
                Ok(x) => {
                    backoff = Duration::from_millis(10);
                    x
                }
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed; backing off");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(1));
                    continue;
                }
            };
            let Some(slot) = self.counts.admit(remote.ip()) else {
                tracing::debug!(%remote, "connection refused: over the connection cap");
                drop(tcp);
                continue;
            };
            let _ = tcp.set_nodelay(true);
            let handler = handler.clone();
            let stop = shutdown.clone();
            let mut end = shutdown.clone();
            let limits = self.limits;
            tokio::spawn(async move {
                let _slot = slot;
                let svc = hyper::service::service_fn(move |req| {
                    let h = handler.clone();
                    let stop = stop.clone();
                    async move { Ok::<_, std::convert::Infallible>(h(req, stop).await) }
                });
                let mut b = auto::Builder::new(TokioExecutor::new());
                b.http1()
                    .timer(TokioTimer::new())
                    .header_read_timeout(limits.header_timeout)
                    .max_buf_size(64 * 1024);
                b.http2()
                    .timer(TokioTimer::new())
                    .max_concurrent_streams(limits.max_streams)
                    .keep_alive_interval(Some(limits.header_timeout))
                    .keep_alive_timeout(limits.header_timeout)
                    .max_header_list_size(16 * 1024);
                let conn = b.serve_connection(TokioIo::new(tcp), svc);
                tokio::select! {
                    r = conn => if let Err(e) = r { tracing::debug!(%remote, error = %e, "connection ended"); },
                    () = stopping(&mut end) => {}
                }
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use bytes::Bytes;
    use http_body_util::Full;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    async fn start(limits: Limits) -> (SocketAddr, watch::Sender<bool>, Arc<ConnectionCaps>) {
        let l = Listener::bind("127.0.0.1:0".parse().unwrap(), limits)
            .await
            .unwrap();
        let addr = l.local_addr().unwrap();
        let (tx, rx) = watch::channel(false);
        let caps = l.caps();
        tokio::spawn(l.serve_http(rx, |_req, _stop| async {
            Response::new(Full::new(Bytes::from_static(b"ok")))
        }));
        (addr, tx, caps)
    }

    #[tokio::test]
    async fn slow_headers_are_cut_and_caps_hold() {
        let limits = Limits {
            max_connections: 4,
            max_per_address: 2,
            header_timeout: Duration::from_millis(300),
            max_streams: 8,
        };
        let (addr, stop, caps) = start(limits).await;
        // A slowloris connection: one header byte, then nothing. It is closed.
        let mut slow = tokio::net::TcpStream::connect(addr).await.unwrap();
        slow.write_all(b"G").await.unwrap();
        let t = Instant::now();
        let mut buf = [0u8; 64];
        let closed = tokio::time::timeout(Duration::from_secs(5), slow.read(&mut buf))
            .await
            .expect("the server closes the slow connection");
        assert!(!matches!(closed, Ok(n) if n > 0 && buf.starts_with(b"HTTP/1.1 200")));
        assert!(t.elapsed() < Duration::from_secs(3));
        // Two connections from one address are fine; the third is closed at once.
        let a = tokio::net::TcpStream::connect(addr).await.unwrap();
        let b = tokio::net::TcpStream::connect(addr).await.unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        let mut c = tokio::net::TcpStream::connect(addr).await.unwrap();
        c.write_all(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n").await.ok();
        let got = tokio::time::timeout(Duration::from_secs(2), c.read(&mut buf)).await;
        assert!(
            matches!(got, Ok(Ok(0)) | Ok(Err(_))),
            "over the cap: closed without an answer"
        );
        assert!(caps.refused() >= 1);
        // A well-behaved request on an admitted connection is served.
        let mut a = a;
        a.write_all(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n")
            .await
            .unwrap();
        let n = a.read(&mut buf).await.unwrap();
        assert!(
            std::str::from_utf8(&buf[..n])
                .unwrap()
                .starts_with("HTTP/1.1 200")
        );
        drop(b);
        let _ = stop.send(true);
    }
}
