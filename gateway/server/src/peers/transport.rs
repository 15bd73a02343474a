//! The two transports of a peer link: HTTP/3 over QUIC and HTTPS (HTTP/2 over TLS), each
//! with one cached connection per peer that is dropped after a failed exchange.

use std::sync::Arc;

use bytes::{Buf, Bytes};
use http::{Method, Request};
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::ServerName;
use tokio::net::TcpStream;

use super::{CONNECT_TIMEOUT, HttpReply, PeerAddr, PeerClient, PeerError, retry_after};
use crate::tls::client_config;

/// A cached HTTP/3 connection to a peer.
pub(super) type H3Sender = h3::client::SendRequest<h3_quinn::OpenStreams, Bytes>;
/// A cached HTTP/2 connection to a peer.
pub(super) type H2Sender = hyper::client::conn::http2::SendRequest<Full<Bytes>>;

impl PeerClient {
    pub(super) async fn h3_sender(&self, peer: &str, a: &PeerAddr) -> Result<H3Sender, PeerError> {
        let mut cache = self.h3.lock().await;
        if let Some(s) = cache.get(peer) {
            return Ok(s.clone());
        }
        let fail = |e: &dyn std::fmt::Display| PeerError::connect(peer, "h3", e);
        let endpoint = self
            .quic
            .as_ref()
            .ok_or_else(|| fail(&"no QUIC endpoint"))?;
        let addr = a.quic().ok_or_else(|| fail(&"no QUIC address"))?;
        let tls = client_config(
            &self.credentials.identity(),
            self.credentials.trust().roots_for(&a.server_name),
            &[b"h3"],
        )
        .map_err(|e| fail(&e))?;
        let qc = quinn::crypto::rustls::QuicClientConfig::try_from(tls).map_err(|e| fail(&e))?;
        let mut cc = quinn::ClientConfig::new(Arc::new(qc));
        let mut transport = quinn::TransportConfig::default();
        transport.max_idle_timeout(self.idle_timeout.try_into().ok());
        transport.keep_alive_interval(Some(self.idle_timeout / 3));
        cc.transport_config(Arc::new(transport));
        let connecting = endpoint
            .connect_with(cc, addr, &a.server_name)
            .map_err(|e| fail(&e))?;
        let conn = tokio::time::timeout(CONNECT_TIMEOUT, connecting)
            .await
            .map_err(|_| {
                fail(&format_args!(
                    "no QUIC handshake with {addr} within {CONNECT_TIMEOUT:?}"
                ))
            })?
            .map_err(|e| fail(&format_args!("at {addr}: {e}")))?;
        let (mut driver, sender) = h3::client::new(h3_quinn::Connection::new(conn))
            .await
            .map_err(|e| fail(&e))?;
        tokio::spawn(async move {
            let _ = futures_util::future::poll_fn(|cx| driver.poll_close(cx)).await;
        });
        cache.insert(peer.to_owned(), sender.clone());
        Ok(sender)
    }

    pub(super) async fn h3_request(
        &self,
        peer: &str,
        a: &PeerAddr,
        method: Method,
        path: &str,
        body: Bytes,
        max: usize,
    ) -> Result<HttpReply, PeerError> {
        let mut sender = self.h3_sender(peer, a).await?;
        let head = self.request_head(peer, &a.server_name, method, path, body.len())?;
        let result = async {
            let x = |e: &dyn std::fmt::Display| PeerError::exchange(peer, "h3", e);
            let mut stream = sender.send_request(head).await.map_err(|e| x(&e))?;
            if !body.is_empty() {
                stream.send_data(body).await.map_err(|e| x(&e))?;
            }
            stream.finish().await.map_err(|e| x(&e))?;
            let resp = stream.recv_response().await.map_err(|e| x(&e))?;
            let mut out = bytes::BytesMut::new();
            while let Some(mut chunk) = stream.recv_data().await.map_err(|e| x(&e))? {
                if out.len() + chunk.remaining() > max {
                    return Err(PeerError::TooLarge {
                        peer: peer.to_owned(),
                        max,
                    });
                }
                out.extend_from_slice(&chunk.copy_to_bytes(chunk.remaining()));
            }
            Ok(HttpReply {
                status: resp.status().as_u16(),
                retry_after_s: retry_after(resp.headers()),
                body: out.freeze(),
                transport: "h3",
            })
        }
        .await;
        if result.is_err() {
            self.h3.lock().await.remove(peer);
        }
        result
    }

    pub(super) async fn h2_sender(&self, peer: &str, a: &PeerAddr) -> Result<H2Sender, PeerError> {
        let mut cache = self.h2.lock().await;
        if let Some(s) = cache.get(peer)
            && !s.is_closed()
        {
            return Ok(s.clone());
        }
        let fail = |e: &dyn std::fmt::Display| PeerError::connect(peer, "h2", e);
        let https = a.https();
        let tcp = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(https))
            .await
            .map_err(|_| {
                fail(&format_args!(
                    "no TCP connection to {https} within {CONNECT_TIMEOUT:?}"
                ))
            })?
            .map_err(|e| fail(&format_args!("TCP to {https}: {e}")))?;
        let _ = tcp.set_nodelay(true);
        let tls = client_config(
            &self.credentials.identity(),
            self.credentials.trust().roots_for(&a.server_name),
            &[b"h2"],
        )
        .map_err(|e| fail(&e))?;
        let name = ServerName::try_from(a.server_name.clone()).map_err(|e| fail(&e))?;
        let stream = tokio_rustls::TlsConnector::from(Arc::new(tls))
            .connect(name, tcp)
            .await
            .map_err(|e| fail(&format_args!("TLS: {e}")))?;
        let (sender, conn) = hyper::client::conn::http2::Builder::new(TokioExecutor::new())
            .timer(hyper_util::rt::TokioTimer::new())
            .keep_alive_interval(Some(self.idle_timeout / 3))
            .handshake(TokioIo::new(stream))
            .await
            .map_err(|e| fail(&e))?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        cache.insert(peer.to_owned(), sender.clone());
        Ok(sender)
    }

    pub(super) async fn h2_request(
        &self,
        peer: &str,
        a: &PeerAddr,
        method: Method,
        path: &str,
        body: Bytes,
        max: usize,
    ) -> Result<HttpReply, PeerError> {
        let mut sender = self.h2_sender(peer, a).await?;
        let (parts, ()) = self
            .request_head(peer, &a.server_name, method, path, body.len())?
            .into_parts();
        let req = Request::from_parts(parts, Full::new(body));
        let result = async {
            let x = |e: &dyn std::fmt::Display| PeerError::exchange(peer, "h2", e);
            sender.ready().await.map_err(|e| x(&e))?;
            let resp = sender.send_request(req).await.map_err(|e| x(&e))?;
            let status = resp.status().as_u16();
            let retry = retry_after(resp.headers());
            let body = match Limited::new(resp.into_body(), max).collect().await {
                Ok(b) => b.to_bytes(),
                Err(e) if e.is::<http_body_util::LengthLimitError>() => {
                    return Err(PeerError::TooLarge {
                        peer: peer.to_owned(),
                        max,
                    });
                }
                Err(e) => return Err(x(&e)),
            };
            Ok(HttpReply {
                status,
                body,
                retry_after_s: retry,
                transport: "h2",
            })
        }
        .await;
        if result.is_err() {
            self.h2.lock().await.remove(peer);
        }
        result
    }
}
