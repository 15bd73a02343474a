//! A raw federation client for tests and the conformance suite: any client certificate (or
//! none), any headers, any body, over HTTP/3 or HTTPS (HTTP/2), one new connection per request,
//! so every refusal of a peer can be provoked and observed.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, Bytes};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::RootCertStore;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};

/// A certificate and key, PEM.
#[derive(Debug, Clone)]
pub struct Pem {
    /// Certificate chain.
    pub cert: String,
    /// PKCS#8 key.
    pub key: String,
}

impl From<mimi_gateway::pki::Pem> for Pem {
    fn from(p: mimi_gateway::pki::Pem) -> Self {
        Self {
            cert: p.cert,
            key: p.key,
        }
    }
}

/// What a raw request got back.
#[derive(Debug, Clone)]
pub struct Got {
    /// Status.
    pub status: u16,
    /// Retry-After (s).
    pub retry_after: Option<u64>,
    /// Content-Type.
    pub content_type: Option<String>,
    /// Body.
    pub body: Vec<u8>,
}

impl Got {
    /// The body as trimmed text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).trim().to_owned()
    }
}

/// A raw federation client.
#[derive(Debug, Clone)]
pub struct Raw {
    /// Client certificate (None: no certificate).
    pub cert: Option<Pem>,
    /// PEM bundle trusted for the server.
    pub ca_pem: String,
    /// TLS server name.
    pub server_name: String,
    /// The request authority (`Host`), when it differs from the TLS server name.
    pub authority: Option<String>,
}

/// Why a raw request produced no response.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RawError {
    /// The client's own TLS material (PEM, key, certificate) is unusable.
    #[error("client TLS configuration: {0}")]
    Config(String),
    /// No connection: socket, QUIC or TLS handshake (a refused certificate shows here).
    #[error("connection: {0}")]
    Connect(String),
    /// The connection broke during the request.
    #[error("exchange: {0}")]
    Exchange(String),
    /// No answer within the raw client's 20 s.
    #[error("timed out")]
    Timeout,
}

fn config(e: impl std::fmt::Display) -> RawError {
    RawError::Config(e.to_string())
}
fn connect(e: impl std::fmt::Display) -> RawError {
    RawError::Connect(e.to_string())
}
fn exchange(e: impl std::fmt::Display) -> RawError {
    RawError::Exchange(e.to_string())
}

fn roots(pem: &str) -> Result<RootCertStore, RawError> {
    let mut r = RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(pem.as_bytes()) {
        r.add(c.map_err(config)?).map_err(config)?;
    }
    Ok(r)
}

fn retry(h: &http::HeaderMap) -> Option<u64> {
    h.get("retry-after")?.to_str().ok()?.parse().ok()
}

fn ctype(h: &http::HeaderMap) -> Option<String> {
    h.get("content-type")?.to_str().ok().map(str::to_owned)
}

/// The longest a raw request may take.
const TIMEOUT: Duration = Duration::from_secs(20);

impl Raw {
    /// A client presenting `cert` to `server_name`.
    pub fn new(cert: Option<Pem>, ca_pem: &str, server_name: &str) -> Self {
        Self {
            cert,
            ca_pem: ca_pem.to_owned(),
            server_name: server_name.to_owned(),
            authority: None,
        }
    }

    /// The TLS client configuration of this client for `alpn` (for callers that drive their
    /// own connection).
    ///
    /// # Errors
    /// Unreadable PEM.
    pub fn tls(&self, alpn: &[u8]) -> Result<rustls::ClientConfig, RawError> {
        let b = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(config)?
        .with_root_certificates(roots(&self.ca_pem)?);
        let mut c = match &self.cert {
            Some(p) => {
                let chain: Vec<CertificateDer<'static>> =
                    CertificateDer::pem_slice_iter(p.cert.as_bytes())
                        .filter_map(Result::ok)
                        .collect();
                let key = PrivateKeyDer::from_pem_slice(p.key.as_bytes())
                    .map_err(|e| config(format_args!("client key: {e}")))?;
                b.with_client_auth_cert(chain, key)
                    .map_err(|e| config(format_args!("client certificate: {e}")))?
            }
            None => b.with_no_client_auth(),
        };
        c.alpn_protocols = vec![alpn.to_vec()];
        Ok(c)
    }

    fn request<B>(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: B,
    ) -> Result<http::Request<B>, RawError> {
        let mut req = http::Request::builder().method(method).uri(self.uri(path));
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        req.body(body).map_err(config)
    }

    fn uri(&self, path: &str) -> String {
        format!(
            "https://{}{path}",
            self.authority.as_deref().unwrap_or(&self.server_name)
        )
    }

    /// One HTTP/3 request on a new connection.
    ///
    /// # Errors
    /// Connection, TLS (e.g. a refused certificate) or stream failures.
    pub async fn h3(
        &self,
        addr: SocketAddr,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Vec<u8>,
    ) -> Result<Got, RawError> {
        tokio::time::timeout(TIMEOUT, self.h3_inner(addr, method, path, headers, body))
            .await
            .map_err(|_| RawError::Timeout)?
    }

    async fn h3_inner(
        &self,
        addr: SocketAddr,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Vec<u8>,
    ) -> Result<Got, RawError> {
        let q =
            quinn::crypto::rustls::QuicClientConfig::try_from(self.tls(b"h3")?).map_err(config)?;
        let bind: SocketAddr = if addr.is_ipv6() {
            "[::]:0"
        } else {
            "0.0.0.0:0"
        }
        .parse()
        .map_err(connect)?;
        let mut ep = quinn::Endpoint::client(bind).map_err(connect)?;
        ep.set_default_client_config(quinn::ClientConfig::new(Arc::new(q)));
        let conn = ep
            .connect(addr, &self.server_name)
            .map_err(connect)?
            .await
            .map_err(connect)?;
        let (mut driver, mut send) = h3::client::new(h3_quinn::Connection::new(conn))
            .await
            .map_err(connect)?;
        tokio::spawn(async move {
            let _ = futures_util::future::poll_fn(|cx| driver.poll_close(cx)).await;
        });
        let req = self.request(method, path, headers, ())?;
        let mut s = send.send_request(req).await.map_err(exchange)?;
        if !body.is_empty() {
            // The server may stop reading an oversized body; that is not an error here.
            let _ = s.send_data(Bytes::from(body)).await;
        }
        let _ = s.finish().await;
        let resp = s.recv_response().await.map_err(exchange)?;
        let mut out = Vec::new();
        while let Some(mut c) = s.recv_data().await.map_err(exchange)? {
            out.extend_from_slice(&c.copy_to_bytes(c.remaining()));
        }
        Ok(Got {
            status: resp.status().as_u16(),
            retry_after: retry(resp.headers()),
            content_type: ctype(resp.headers()),
            body: out,
        })
    }

    /// One HTTPS (HTTP/2) request on a new connection.
    ///
    /// # Errors
    /// Connection, TLS or stream failures, (with the TLS alert when the server
    /// refused the certificate).
    pub async fn h2(
        &self,
        addr: SocketAddr,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Vec<u8>,
    ) -> Result<Got, RawError> {
        tokio::time::timeout(TIMEOUT, self.h2_inner(addr, method, path, headers, body))
            .await
            .map_err(|_| RawError::Timeout)?
    }

    async fn h2_inner(
        &self,
        addr: SocketAddr,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Vec<u8>,
    ) -> Result<Got, RawError> {
        let tcp = tokio::net::TcpStream::connect(addr)
            .await
            .map_err(connect)?;
        let name = ServerName::try_from(self.server_name.clone()).map_err(config)?;
        let tls = tokio_rustls::TlsConnector::from(Arc::new(self.tls(b"h2")?))
            .connect(name, tcp)
            .await
            .map_err(connect)?;
        let (mut send, conn) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
                .await
                .map_err(connect)?;
        let conn = tokio::spawn(conn);
        let req = self.request(method, path, headers, Full::new(Bytes::from(body)))?;
        let resp = match send.send_request(req).await {
            Ok(r) => r,
            Err(e) => {
                // Under TLS 1.3 a refused client certificate shows up after the handshake, and
                // writing may fail before the alert is read: ask again, reading only.
                let why = match tokio::time::timeout(Duration::from_secs(5), conn).await {
                    Ok(Ok(Err(c))) => format!("{c}: {:?}", std::error::Error::source(&c)),
                    other => format!("{other:?}"),
                };
                let probe = self.probe(addr).await;
                return Err(exchange(format_args!("{e}; connection: {why}; {probe}")));
            }
        };
        let status = resp.status().as_u16();
        let (retry_after, content_type) = (retry(resp.headers()), ctype(resp.headers()));
        let body = resp
            .into_body()
            .collect()
            .await
            .map_err(exchange)?
            .to_bytes()
            .to_vec();
        Ok(Got {
            status,
            retry_after,
            content_type,
            body,
        })
    }

    /// Connects and only reads, to see how the server ends a refused connection.
    async fn probe(&self, addr: SocketAddr) -> String {
        use tokio::io::AsyncReadExt as _;
        let Ok(tcp) = tokio::net::TcpStream::connect(addr).await else {
            return "probe: no connection".into();
        };
        let (Ok(name), Ok(tls)) = (
            ServerName::try_from(self.server_name.clone()),
            self.tls(b"h2"),
        ) else {
            return "probe: no TLS".into();
        };
        match tokio_rustls::TlsConnector::from(Arc::new(tls))
            .connect(name, tcp)
            .await
        {
            Err(e) => format!("probe: {e}"),
            Ok(mut s) => {
                let mut buf = [0u8; 64];
                match tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf)).await {
                    Ok(Err(e)) => format!("probe: {e}"),
                    Ok(Ok(n)) => format!("probe: read {n} bytes"),
                    Err(_) => "probe: no answer".into(),
                }
            }
        }
    }

    /// A request over `transport` (`h3` or `https`).
    ///
    /// # Errors
    /// As [`Raw::h3`] and [`Raw::h2`].
    pub async fn send(
        &self,
        transport: &str,
        addr: SocketAddr,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Vec<u8>,
    ) -> Result<Got, RawError> {
        if transport == "https" {
            self.h2(addr, method, path, headers, body).await
        } else {
            self.h3(addr, method, path, headers, body).await
        }
    }
}
