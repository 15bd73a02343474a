//! The HTTP/3 federation listener: quinn with mutual TLS (a client certificate is required by
//! the handshake), h3 on top, one task per connection and per request.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::{Buf, Bytes, BytesMut};
use h3::server::RequestResolver;
use http::Response;
use rustls::pki_types::CertificateDer;
use tracing::Instrument;

use crate::federation::{BodyError, Head};
use crate::serving::{Serving, content_length, header, stopping};
use mimi_proto::uri::Domain;

use crate::tls::PeerError;

/// The QUIC application error code sent when the gateway shuts down (H3_NO_ERROR).
pub const CLOSE_SHUTDOWN: u32 = 0x100;

/// Binds the QUIC endpoint.
///
/// # Errors
/// Invalid TLS material or an address in use.
pub fn bind(addr: SocketAddr, s: &Serving) -> anyhow::Result<quinn::Endpoint> {
    let tls = s.credentials.server_config(&[b"h3"])?;
    let q = quinn::crypto::rustls::QuicServerConfig::try_from(tls)?;
    let mut sc = quinn::ServerConfig::with_crypto(Arc::new(q));
    let mut t = quinn::TransportConfig::default();
    t.max_concurrent_bidi_streams(s.max_streams.into());
    t.max_idle_timeout(s.idle_timeout.try_into().ok());
    sc.transport_config(Arc::new(t));
    let ep = quinn::Endpoint::server(sc, addr)
        .map_err(|e| anyhow::anyhow!("cannot bind QUIC on {addr}: {e}"))?;
    Ok(ep)
}

/// Accepts connections until shutdown.
pub async fn serve(endpoint: quinn::Endpoint, s: Serving) {
    let mut stop = s.shutdown.clone();
    loop {
        tokio::select! {
            incoming = endpoint.accept() => match incoming {
                Some(i) => { tokio::spawn(connection(i, s.clone())); }
                None => break,
            },
            () = stopping(&mut stop) => break,
        }
    }
}

async fn connection(incoming: quinn::Incoming, s: Serving) {
    let remote = incoming.remote_address();
    let Some(_slot) = s.connections.admit(remote.ip()) else {
        tracing::debug!(%remote, "QUIC connection refused: over the connection cap");
        incoming.refuse();
        return;
    };
    let conn = match tokio::time::timeout(s.handshake_timeout, incoming).await {
        Err(_) => {
            s.metrics.handshake_failure("h3", "handshake timeout");
            return;
        }
        Ok(Ok(c)) => c,
        Ok(Err(e)) => {
            // A missing certificate (alert 116), an unknown CA (48), an expired certificate
            // (45): the handshake fails and no request is ever read.
            s.metrics.handshake_failure("h3", &e.to_string());
            tracing::info!(%remote, error = %e, "QUIC handshake refused");
            return;
        }
    };
    let chain = conn
        .peer_identity()
        .and_then(|a| a.downcast::<Vec<CertificateDer<'static>>>().ok());
    let peer = chain.map_or(Err(PeerError::NoCertificate), |c| {
        s.credentials.trust().identify(&c)
    });
    let mut h3c = match h3::server::builder()
        .max_field_section_size(16 * 1024)
        .build::<_, Bytes>(h3_quinn::Connection::new(conn))
        .await
    {
        Ok(c) => c,
        Err(e) => {
            tracing::debug!(%remote, error = %e, "HTTP/3 connection setup failed");
            return;
        }
    };
    let mut stop = s.shutdown.clone();
    loop {
        tokio::select! {
            r = h3c.accept() => match r {
                Ok(Some(resolver)) => { tokio::spawn(request(resolver, peer.clone(), s.clone())); }
                Ok(None) => break,
                Err(e) => {
                    if !e.is_h3_no_error() {
                        tracing::debug!(%remote, error = %e, "HTTP/3 connection ended");
                    }
                    break;
                }
            },
            () = stopping(&mut stop) => break,
        }
    }
}

async fn request(
    resolver: RequestResolver<h3_quinn::Connection, Bytes>,
    peer: Result<Domain, PeerError>,
    s: Serving,
) {
    let _guard = s.inflight.enter();
    // A stream that never sends its head is dropped after the handshake timeout.
    let (req, mut stream) =
        match tokio::time::timeout(s.handshake_timeout, resolver.resolve_request()).await {
            Ok(Ok(r)) => r,
            Ok(Err(e)) => {
                tracing::debug!(error = %e, "malformed HTTP/3 request");
                return;
            }
            Err(_) => {
                tracing::debug!("an HTTP/3 stream sent no request head in time");
                return;
            }
        };
    let path = req
        .uri()
        .path_and_query()
        .map_or_else(|| req.uri().path().to_owned(), |p| p.as_str().to_owned());
    let peer_name = peer
        .as_ref()
        .map_or("unauthenticated", Domain::as_str)
        .to_owned();
    let span = tracing::info_span!("request", peer = %peer_name, endpoint = %req.uri().path(), transport = "h3");
    let work = async {
        let head = Head {
            method: req.method().clone(),
            path,
            host: req
                .uri()
                .authority()
                .map(ToString::to_string)
                .or_else(|| header(req.headers(), http::header::HOST)),
            from: header(req.headers(), http::header::FROM),
            content_type: header(req.headers(), http::header::CONTENT_TYPE),
            content_length: content_length(req.headers()),
            peer,
            transport: "h3",
        };
        let out = match s.federation.admit(&head) {
            Err(out) => {
                // Refused before reading: tell the client to stop sending (RFC 9114 §4.1.2).
                stream.stop_sending(h3::error::Code::H3_NO_ERROR);
                out
            }
            Ok(admitted) => {
                let limit = admitted.limit;
                let body = tokio::time::timeout(s.request_timeout, read_body(&mut stream, limit))
                    .await
                    .unwrap_or_else(|_| {
                        Err(BodyError::Broken(
                            "the body did not arrive within the request timeout".into(),
                        ))
                    });
                if matches!(body, Err(BodyError::TooLarge(_))) {
                    stream.stop_sending(h3::error::Code::H3_NO_ERROR);
                }
                s.federation
                    .complete(admitted, body, s.request_timeout)
                    .await
            }
        };
        let mut resp = Response::builder()
            .status(out.status)
            .header(http::header::CONTENT_TYPE, out.content_type)
            .header(http::header::CONTENT_LENGTH, out.body.len());
        if let Some(r) = out.retry_after {
            resp = resp.header(http::header::RETRY_AFTER, r);
        }
        let Ok(resp) = resp.body(()) else { return };
        if stream.send_response(resp).await.is_err() {
            return;
        }
        if !out.body.is_empty() && stream.send_data(out.body).await.is_err() {
            return;
        }
        let _ = stream.finish().await;
    }
    .instrument(span);
    work.await;
}

async fn read_body(
    stream: &mut h3::server::RequestStream<h3_quinn::BidiStream<Bytes>, Bytes>,
    limit: usize,
) -> Result<Bytes, BodyError> {
    let mut buf = BytesMut::new();
    loop {
        match stream.recv_data().await {
            Ok(Some(mut chunk)) => {
                if buf.len() + chunk.remaining() > limit {
                    return Err(BodyError::TooLarge(limit));
                }
                buf.extend_from_slice(&chunk.copy_to_bytes(chunk.remaining()));
            }
            Ok(None) => return Ok(buf.freeze()),
            Err(e) => return Err(BodyError::Broken(e.to_string())),
        }
    }
}
