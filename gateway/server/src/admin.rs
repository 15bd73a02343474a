//! The local admin listener (plain HTTP on loopback): `/metrics` (Prometheus), `/healthz`
//! (the process is alive) and `/readyz` (listeners bound and not shutting down).

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::metrics::Metrics;
use crate::serving::stopping;

/// Whether the gateway takes traffic.
#[derive(Debug, Default)]
pub struct Ready(AtomicBool);

impl Ready {
    /// Sets readiness.
    pub fn set(&self, v: bool) {
        self.0.store(v, Ordering::Release);
    }

    /// Reads readiness.
    pub fn get(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }
}

fn respond(req: &Request<Incoming>, metrics: &Metrics, ready: &Ready) -> Response<Full<Bytes>> {
    let (status, ctype, body) = match (req.method().as_str(), req.uri().path()) {
        ("GET", "/metrics") => (200, "text/plain; version=0.0.4", metrics.render()),
        ("GET", "/healthz") => (200, "text/plain", "ok\n".to_owned()),
        ("GET", "/readyz") if ready.get() => (200, "text/plain", "ready\n".to_owned()),
        ("GET", "/readyz") => (503, "text/plain", "not ready\n".to_owned()),
        (_, "/metrics" | "/healthz" | "/readyz") => (405, "text/plain", "use GET\n".to_owned()),
        _ => (
            404,
            "text/plain",
            "not found: try /metrics, /healthz or /readyz\n".to_owned(),
        ),
    };
    Response::builder()
        .status(status)
        .header(http::header::CONTENT_TYPE, ctype)
        .body(Full::new(Bytes::from(body)))
        .unwrap_or_else(|_| Response::new(Full::new(Bytes::new())))
}

/// Serves the admin endpoints until shutdown.
pub async fn serve(
    listener: TcpListener,
    metrics: Arc<Metrics>,
    ready: Arc<Ready>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            r = listener.accept() => {
                let Ok((tcp, _)) = r else { continue };
                let metrics = Arc::clone(&metrics);
                let ready = Arc::clone(&ready);
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(move |req| {
                        let r = respond(&req, &metrics, &ready);
                        async move { Ok::<_, Infallible>(r) }
                    });
                    let _ = auto::Builder::new(TokioExecutor::new()).serve_connection(TokioIo::new(tcp), svc).await;
                });
            }
            () = stopping(&mut shutdown) => break,
        }
    }
}
