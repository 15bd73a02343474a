//! The local admin listener (plain HTTP on loopback): `/metrics` (Prometheus), `/healthz`
//! (the process is alive), `/readyz` (listeners bound, not shutting down, storage commits
//! succeeding and every engine shard alive), and the operator's API under `/admin/v1`
//! ([`api`], admin token required).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::Full;
use hyper::body::Incoming;
use mimi_listen::Listener;
use tokio::sync::watch;

use crate::driver::Health;
use crate::metrics::Metrics;

pub mod api;

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

fn respond(
    req: &Request<Incoming>,
    metrics: &Metrics,
    ready: &Ready,
    health: &Health,
) -> Response<Full<Bytes>> {
    let (status, ctype, body) = match (req.method().as_str(), req.uri().path()) {
        ("GET", "/metrics") => (
            200,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
            metrics.render(),
        ),
        ("GET", "/healthz") => (200, "text/plain", "ok\n".to_owned()),
        ("GET", "/readyz") => match (ready.get(), health.problem()) {
            (true, None) => (200, "text/plain", "ready\n".to_owned()),
            (false, _) => (
                503,
                "text/plain",
                "not ready: starting or stopping\n".to_owned(),
            ),
            (true, Some(p)) => (503, "text/plain", format!("not ready: {p}\n")),
        },
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
    listener: Listener,
    metrics: Arc<Metrics>,
    ready: Arc<Ready>,
    health: Arc<Health>,
    api: Arc<api::AdminApi>,
    shutdown: watch::Receiver<bool>,
) {
    listener
        .serve_http(shutdown, move |req, _stop| {
            let api = Arc::clone(&api);
            let plain = (!req.uri().path().starts_with(mimi_proto::admin_api::PREFIX))
                .then(|| respond(&req, &metrics, &ready, &health));
            async move {
                match plain {
                    Some(r) => r,
                    None => api.handle(req).await,
                }
            }
        })
        .await;
}
