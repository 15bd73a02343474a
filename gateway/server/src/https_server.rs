//! The HTTPS federation listener: TLS 1.3 with a required client certificate (tokio-rustls),
//! HTTP/2 and HTTP/1.1 (hyper-util `auto`), graceful shutdown of every connection.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tracing::Instrument;

use crate::federation::{BodyError, Head, Outbound};
use crate::serving::{Serving, content_length, header, stopping};
use mimi_proto::uri::Domain;

use crate::tls::PeerError;

/// How long open connections get to finish their requests at shutdown.
const DRAIN: Duration = Duration::from_secs(10);

/// The TLS acceptor (ALPN h2 and http/1.1).
///
/// # Errors
/// Invalid TLS material.
pub fn acceptor(s: &Serving) -> anyhow::Result<TlsAcceptor> {
    let tls = s.credentials.server_config(&[b"h2", b"http/1.1"])?;
    Ok(TlsAcceptor::from(Arc::new(tls)))
}

/// Accepts connections until shutdown, then lets open ones finish.
pub async fn serve(listener: TcpListener, acceptor: TlsAcceptor, s: Serving) {
    let graceful = GracefulShutdown::new();
    let mut stop = s.shutdown.clone();
    let mut backoff = Duration::from_millis(10);
    loop {
        tokio::select! {
            r = listener.accept() => {
                let (tcp, remote) = match r {
                    Ok(x) => { backoff = Duration::from_millis(10); x }
                    Err(e) => {
                        tracing::warn!(error = %e, "accept failed; backing off");
                        tokio::time::sleep(backoff).await;
                        backoff = (backoff * 2).min(Duration::from_secs(1));
                        continue;
                    }
                };
                let Some(slot) = s.connections.admit(remote.ip()) else {
                    tracing::debug!(%remote, "TLS connection refused: over the connection cap");
                    continue;
                };
                let _ = tcp.set_nodelay(true);
                let acceptor = acceptor.clone();
                let s = s.clone();
                let watcher = graceful.watcher();
                tokio::spawn(async move {
                    let _slot = slot;
                    let tls = match tokio::time::timeout(s.handshake_timeout, acceptor.accept(tcp)).await {
                        Ok(Ok(t)) => t,
                        Ok(Err(e)) => {
                            s.metrics.handshake_failure("https", &e.to_string());
                            tracing::info!(%remote, error = %e, "TLS handshake refused");
                            return;
                        }
                        Err(_) => {
                            s.metrics.handshake_failure("https", "handshake timeout");
                            return;
                        }
                    };
                    let (_, session) = tls.get_ref();
                    let peer = session.peer_certificates().map_or(Err(PeerError::NoCertificate), |c| s.credentials.trust().identify(c));
                    let transport: &'static str = if session.alpn_protocol() == Some(b"h2") { "h2" } else { "http/1.1" };
                    let svc_state = s.clone();
                    let svc = hyper::service::service_fn(move |req| {
                        let s = svc_state.clone();
                        let peer = peer.clone();
                        async move { Ok::<_, Infallible>(handle(req, peer, transport, s).await) }
                    });
                    let mut b = auto::Builder::new(TokioExecutor::new());
                    b.http1().timer(TokioTimer::new()).header_read_timeout(s.handshake_timeout).max_buf_size(64 * 1024);
                    b.http2()
                        .timer(TokioTimer::new())
                        .max_concurrent_streams(s.max_streams)
                        .keep_alive_interval(Some(s.idle_timeout / 2))
                        .max_header_list_size(16 * 1024);
                    let conn = b.serve_connection(TokioIo::new(tls), svc);
                    if let Err(e) = watcher.watch(conn.into_owned()).await {
                        tracing::debug!(%remote, error = %e, "HTTPS connection ended");
                    }
                });
            }
            () = stopping(&mut stop) => break,
        }
    }
    drop(listener);
    if tokio::time::timeout(DRAIN, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("HTTPS connections still open after the drain period");
    }
}

async fn handle(
    req: Request<Incoming>,
    peer: Result<Domain, PeerError>,
    transport: &'static str,
    s: Serving,
) -> Response<Full<Bytes>> {
    let _guard = s.inflight.enter();
    let peer_name = peer
        .as_ref()
        .map_or("unauthenticated", Domain::as_str)
        .to_owned();
    let span =
        tracing::info_span!("request", peer = %peer_name, endpoint = %req.uri().path(), transport);
    async move {
        let (parts, body) = req.into_parts();
        let head = Head {
            method: parts.method.clone(),
            path: parts
                .uri
                .path_and_query()
                .map_or_else(|| parts.uri.path().to_owned(), |p| p.as_str().to_owned()),
            host: parts
                .uri
                .authority()
                .map(ToString::to_string)
                .or_else(|| header(&parts.headers, http::header::HOST)),
            from: header(&parts.headers, http::header::FROM),
            content_type: header(&parts.headers, http::header::CONTENT_TYPE),
            content_length: content_length(&parts.headers),
            peer,
            transport,
        };
        let admitted = match s.federation.admit(&head) {
            Ok(a) => a,
            Err(out) => return to_response(out),
        };
        let limit = admitted.limit;
        let body = match tokio::time::timeout(
            s.request_timeout,
            Limited::new(body, limit).collect(),
        )
        .await
        {
            Ok(Ok(b)) => Ok(b.to_bytes()),
            Ok(Err(e))
                if e.downcast_ref::<http_body_util::LengthLimitError>()
                    .is_some() =>
            {
                Err(BodyError::TooLarge(limit))
            }
            Ok(Err(e)) => Err(BodyError::Broken(e.to_string())),
            Err(_) => Err(BodyError::Broken(
                "the body did not arrive within the request timeout".into(),
            )),
        };
        to_response(
            s.federation
                .complete(admitted, body, s.request_timeout)
                .await,
        )
    }
    .instrument(span)
    .await
}

/// Turns an [`Outbound`] into a hyper response.
pub fn to_response(out: Outbound) -> Response<Full<Bytes>> {
    let mut r = Response::builder()
        .status(out.status)
        .header(http::header::CONTENT_TYPE, out.content_type);
    if let Some(s) = out.retry_after {
        r = r.header(http::header::RETRY_AFTER, s);
    }
    r.body(Full::new(out.body))
        .unwrap_or_else(|_| Response::new(Full::new(Bytes::from_static(b"internal error\n"))))
}

/// Binds the HTTPS listener.
///
/// # Errors
/// Address in use.
pub async fn bind(addr: std::net::SocketAddr) -> anyhow::Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .map_err(|e| anyhow::anyhow!("cannot bind HTTPS on {addr}: {e}"))
}
