//! The baselines every figure is divided by, measured in the same run with `b.example`'s and
//! `a.example`'s certificates (TLS 1.3, mutual authentication) and the same 1 KiB body:
//!
//! - a bare HTTP/3 request: h3 over quinn, a POST whose body the server reads to the end and
//!   answers `201` with no body, no MIMI processing;
//! - a bare quinn echo: one bidirectional stream per request, the body written back.

use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf as _, Bytes};
use http::{Method, Request, Response, StatusCode};
use mimi_gateway::tls::{Identity, client_config, load_roots, server_config};

use super::{Load, kmr, load};

/// Both baselines at one in-flight count.
#[derive(Debug, Clone)]
pub(crate) struct Baselines {
    /// Bare HTTP/3 request → 201.
    pub(crate) h3: Load,
    /// Bare quinn stream echo.
    pub(crate) echo: Load,
}

/// Bare servers running for one benchmark, with a client connection to each.
pub(crate) struct Bare {
    _echo_server: quinn::Endpoint,
    _h3_server: quinn::Endpoint,
    echo: quinn::Connection,
    h3: h3::client::SendRequest<h3_quinn::OpenStreams, Bytes>,
    body: Bytes,
}

impl Bare {
    /// Starts both bare servers with the federation's certificates under `dir` and connects.
    ///
    /// # Errors
    /// Certificates, sockets or handshakes.
    pub(crate) async fn start(dir: &Path) -> anyhow::Result<Self> {
        let (echo_server, echo_addr) = server(dir, b"mimi-echo", serve_echo)?;
        let (h3_server, h3_addr) = server(dir, b"h3", serve_h3)?;
        let echo = connect(dir, echo_addr, b"mimi-echo").await?;
        let conn = connect(dir, h3_addr, b"h3").await?;
        let (mut driver, h3) = h3::client::new(h3_quinn::Connection::new(conn)).await?;
        tokio::spawn(async move {
            let _ = futures_util::future::poll_fn(|cx| driver.poll_close(cx)).await;
        });
        Ok(Self {
            _echo_server: echo_server,
            _h3_server: h3_server,
            echo,
            h3,
            body: Bytes::from(kmr(1024).0),
        })
    }

    /// Both baselines with `in_flight` requests outstanding for `duration` each.
    ///
    /// # Errors
    /// A failed request.
    pub(crate) async fn measure(
        &self,
        in_flight: usize,
        duration: Duration,
    ) -> anyhow::Result<Baselines> {
        let (conn, payload) = (self.echo.clone(), self.body.clone());
        let echo = load(in_flight, duration, move || {
            let (conn, payload) = (conn.clone(), payload.clone());
            async move {
                let (mut s, mut r) = conn.open_bi().await?;
                s.write_all(&payload).await?;
                s.finish()?;
                let back = r.read_to_end(1 << 20).await?;
                anyhow::ensure!(back.len() == payload.len(), "short echo");
                Ok(())
            }
        })
        .await?;
        let (sender, payload) = (self.h3.clone(), self.body.clone());
        let h3 = load(in_flight, duration, move || {
            let (mut sender, payload) = (sender.clone(), payload.clone());
            async move {
                let req = Request::builder()
                    .method(Method::POST)
                    .uri("https://b.example/bare")
                    .header(http::header::CONTENT_LENGTH, payload.len())
                    .body(())?;
                let mut stream = sender.send_request(req).await?;
                stream.send_data(payload).await?;
                stream.finish().await?;
                let resp = stream.recv_response().await?;
                anyhow::ensure!(resp.status() == StatusCode::CREATED, "{}", resp.status());
                while stream.recv_data().await?.is_some() {}
                Ok(())
            }
        })
        .await?;
        Ok(Baselines { h3, echo })
    }
}

/// A quinn server with `b.example`'s certificate speaking `alpn`; each connection is handed
/// to `serve`.
fn server<F, Fut>(
    dir: &Path,
    alpn: &[u8],
    serve: F,
) -> anyhow::Result<(quinn::Endpoint, SocketAddr)>
where
    F: Fn(quinn::Connection) -> Fut + Send + Copy + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let id = Identity::load(
        &dir.join("b.example/cert.pem"),
        &dir.join("b.example/key.pem"),
    )?;
    let tls = server_config(&id, load_roots(&dir.join("ca.pem"))?, &[alpn])?;
    let mut sc = quinn::ServerConfig::with_crypto(Arc::new(
        quinn::crypto::rustls::QuicServerConfig::try_from(tls)?,
    ));
    let mut t = quinn::TransportConfig::default();
    t.max_concurrent_bidi_streams(1024u32.into());
    sc.transport_config(Arc::new(t));
    let ep = quinn::Endpoint::server(sc, "127.0.0.1:0".parse()?)?;
    let addr = ep.local_addr()?;
    let accepting = ep.clone();
    tokio::spawn(async move {
        while let Some(inc) = accepting.accept().await {
            tokio::spawn(async move {
                if let Ok(conn) = inc.await {
                    serve(conn).await;
                }
            });
        }
    });
    Ok((ep, addr))
}

async fn serve_echo(conn: quinn::Connection) {
    while let Ok((mut send, mut recv)) = conn.accept_bi().await {
        tokio::spawn(async move {
            if let Ok(buf) = recv.read_to_end(1 << 20).await {
                let _ = send.write_all(&buf).await;
                let _ = send.finish();
            }
        });
    }
}

async fn serve_h3(conn: quinn::Connection) {
    let Ok(mut h3c) = h3::server::builder()
        .build::<_, Bytes>(h3_quinn::Connection::new(conn))
        .await
    else {
        return;
    };
    while let Ok(Some(resolver)) = h3c.accept().await {
        tokio::spawn(async move {
            let Ok((_req, mut stream)) = resolver.resolve_request().await else {
                return;
            };
            let mut read = 0usize;
            while let Ok(Some(mut chunk)) = stream.recv_data().await {
                read += chunk.remaining();
                chunk.advance(chunk.remaining());
            }
            let Ok(resp) = Response::builder()
                .status(StatusCode::CREATED)
                .header(http::header::CONTENT_LENGTH, 0)
                .body(())
            else {
                return;
            };
            if read > 0 && stream.send_response(resp).await.is_ok() {
                let _ = stream.finish().await;
            }
        });
    }
}

async fn connect(dir: &Path, addr: SocketAddr, alpn: &[u8]) -> anyhow::Result<quinn::Connection> {
    let id = Identity::load(
        &dir.join("a.example/cert.pem"),
        &dir.join("a.example/key.pem"),
    )?;
    let tls = client_config(&id, load_roots(&dir.join("ca.pem"))?, &[alpn])?;
    let mut ep = quinn::Endpoint::client("127.0.0.1:0".parse()?)?;
    ep.set_default_client_config(quinn::ClientConfig::new(Arc::new(
        quinn::crypto::rustls::QuicClientConfig::try_from(tls)?,
    )));
    Ok(ep.connect(addr, "b.example")?.await?)
}
