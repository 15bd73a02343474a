//! The component's stream to the XMPP server (XEP-0114): connect, authenticate with the
//! shared secret, read stanzas with quick-xml's namespace-aware async reader (correct for any
//! chunking), write through one queue, and reconnect with backoff when the stream ends.
//!
//! The handshake digest and the header checks are pure functions; the socket work is a thin
//! loop around them.

use std::pin::Pin;
use std::task::{Context as TaskContext, Poll};
use std::time::Duration;

use mimi_adapters::xml::{Element, MAX_NS_BINDINGS, MAX_STANZA, StreamItem, TreeBuilder};
use quick_xml::events::Event;
use quick_xml::reader::NsReader;
use sha1_smol::Sha1;
use tokio::io::{AsyncRead, AsyncWriteExt, BufReader, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch};

use crate::stopping;

/// The component namespace.
pub const NS: &str = "jabber:component:accept";
/// Stanzas queued for writing at most; past it, senders wait.
const OUT_QUEUE: usize = 4096;

/// A stream failure.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StreamError {
    /// The server cannot be reached.
    #[error("cannot reach the XMPP server's component port: {0}")]
    Connect(String),
    /// The server refused the secret or closed the stream during the handshake.
    #[error("the XMPP server refused the component: {0}")]
    Refused(String),
    /// Bytes that are not a well-formed XMPP stream (or over a bound).
    #[error("unreadable XMPP stream: {0}")]
    Xml(String),
    /// The stream ended.
    #[error("the XMPP stream ended: {0}")]
    Closed(String),
}

/// The opening of the component's stream.
pub fn stream_header(component: &str) -> String {
    format!(
        "<?xml version='1.0'?><stream:stream xmlns='{NS}' xmlns:stream='http://etherx.jabber.org/streams' to='{}'>",
        mimi_adapters::xml::escape(component)
    )
}

/// The `<handshake>` digest: hex SHA-1 of the stream ID followed by the secret.
pub fn handshake_digest(stream_id: &str, secret: &str) -> String {
    let mut h = Sha1::new();
    h.update(stream_id.as_bytes());
    h.update(secret.as_bytes());
    h.digest().to_string()
}

/// A reader that fails once more than `MAX_STANZA` bytes arrived since the last reset:
/// quick-xml buffers a whole event, so without it one endless text node would grow without
/// bound.
struct Bounded<R> {
    inner: R,
    since_reset: usize,
}

impl<R: AsyncRead + Unpin> AsyncRead for Bounded<R> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        if self.since_reset > MAX_STANZA + 4096 {
            return Poll::Ready(Err(std::io::Error::other(format!(
                "more than {MAX_STANZA} bytes without a complete stanza"
            ))));
        }
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        let n = buf.filled().len() - before;
        self.since_reset += n;
        r
    }
}

/// Reads items of one stream.
pub struct Reader<R> {
    reader: NsReader<BufReader<Bounded<R>>>,
    builder: TreeBuilder,
    buf: Vec<u8>,
}

impl<R: AsyncRead + Unpin> Reader<R> {
    /// Reads `r` as a component stream.
    pub fn new(r: R) -> Self {
        let mut reader = NsReader::from_reader(BufReader::new(Bounded {
            inner: r,
            since_reset: 0,
        }));
        reader.config_mut().trim_text(false);
        reader
            .resolver_mut()
            .set_max_namespace_bindings(MAX_NS_BINDINGS);
        Self {
            reader,
            builder: TreeBuilder::stream(NS),
            buf: Vec::new(),
        }
    }

    /// The next item (`None` at the end of the connection).
    ///
    /// # Errors
    /// [`StreamError::Xml`].
    pub async fn next(&mut self) -> Result<Option<StreamItem>, StreamError> {
        loop {
            self.buf.clear();
            let ev = self
                .reader
                .read_event_into_async(&mut self.buf)
                .await
                .map_err(|e| StreamError::Xml(e.to_string()))?;
            if matches!(ev, Event::Eof) {
                return Ok(None);
            }
            let item = self
                .builder
                .handle(self.reader.resolver(), ev)
                .map_err(|e| StreamError::Xml(e.to_string()))?;
            if self.builder.depth() == 0 {
                self.reader.get_mut().get_mut().since_reset = 0;
            }
            if item.is_some() {
                return Ok(item);
            }
        }
    }
}

/// Connects and authenticates; returns the reader and the writing half.
///
/// # Errors
/// [`StreamError`].
pub async fn connect(
    server: std::net::SocketAddr,
    component: &str,
    secret: &str,
) -> Result<
    (
        Reader<tokio::net::tcp::OwnedReadHalf>,
        tokio::net::tcp::OwnedWriteHalf,
    ),
    StreamError,
> {
    let tcp = tokio::time::timeout(Duration::from_secs(10), TcpStream::connect(server))
        .await
        .map_err(|_| StreamError::Connect(format!("{server}: timed out")))?
        .map_err(|e| StreamError::Connect(format!("{server}: {e}")))?;
    let _ = tcp.set_nodelay(true);
    let (r, mut w) = tcp.into_split();
    let mut reader = Reader::new(r);
    let io = |e: std::io::Error| StreamError::Closed(e.to_string());
    w.write_all(stream_header(component).as_bytes())
        .await
        .map_err(io)?;
    let next = async |reader: &mut Reader<_>| {
        tokio::time::timeout(Duration::from_secs(10), reader.next())
            .await
            .map_err(|_| StreamError::Refused("no answer within 10 s".into()))?
    };
    let id = match next(&mut reader).await? {
        Some(StreamItem::Header(attrs)) => attrs
            .into_iter()
            .find(|(k, _)| k == "id")
            .map(|(_, v)| v)
            .ok_or_else(|| StreamError::Refused("stream header without id".into()))?,
        other => {
            return Err(StreamError::Refused(format!(
                "expected a stream header, got {other:?}"
            )));
        }
    };
    w.write_all(format!("<handshake>{}</handshake>", handshake_digest(&id, secret)).as_bytes())
        .await
        .map_err(io)?;
    match next(&mut reader).await? {
        Some(StreamItem::Stanza(e)) if e.name == "handshake" => Ok((reader, w)),
        Some(StreamItem::Stanza(e)) => Err(StreamError::Refused(format!(
            "wrong secret? the server answered {}",
            e.to_xml(NS)
        ))),
        other => Err(StreamError::Refused(format!("{other:?} (wrong secret?)"))),
    }
}

/// A component link that stays up: stanzas to write go through [`Link::send`]; stanzas read
/// arrive on the receiver; after each (re)connection `connected` ticks so the bridge can
/// re-join its rooms.
#[derive(Debug, Clone)]
pub struct Link {
    out: mpsc::Sender<String>,
    /// Changes on every successful connection (its count).
    pub connected: watch::Receiver<u64>,
}

impl Link {
    /// Queues a stanza.
    ///
    /// # Errors
    /// [`StreamError::Closed`] once the bridge stops.
    pub async fn send(&self, e: &Element) -> Result<(), StreamError> {
        self.out
            .send(e.to_xml(NS))
            .await
            .map_err(|_| StreamError::Closed("the bridge stopped".into()))
    }

    /// Connects (the first time synchronously, so a wrong secret fails the start) and keeps
    /// the link up until `stop`.
    ///
    /// # Errors
    /// The first connection's failure.
    pub async fn start(
        server: std::net::SocketAddr,
        component: String,
        secret: String,
        stop: watch::Receiver<bool>,
    ) -> Result<(Self, mpsc::Receiver<Element>), StreamError> {
        let first = connect(server, &component, &secret).await?;
        let (out_tx, out_rx) = mpsc::channel::<String>(OUT_QUEUE);
        let (in_tx, in_rx) = mpsc::channel::<Element>(OUT_QUEUE);
        let (conn_tx, conn_rx) = watch::channel(1u64);
        tokio::spawn(keep_up(
            first, server, component, secret, out_rx, in_tx, conn_tx, stop,
        ));
        Ok((
            Self {
                out: out_tx,
                connected: conn_rx,
            },
            in_rx,
        ))
    }
}

#[allow(clippy::too_many_arguments)]
async fn keep_up(
    first: (
        Reader<tokio::net::tcp::OwnedReadHalf>,
        tokio::net::tcp::OwnedWriteHalf,
    ),
    server: std::net::SocketAddr,
    component: String,
    secret: String,
    mut out: mpsc::Receiver<String>,
    stanzas: mpsc::Sender<Element>,
    connected: watch::Sender<u64>,
    mut stop: watch::Receiver<bool>,
) {
    let mut conn = Some(first);
    let mut backoff = Duration::from_millis(500);
    loop {
        let (mut reader, mut writer) = match conn.take() {
            Some(c) => c,
            None => {
                tokio::select! {
                    () = tokio::time::sleep(backoff) => {}
                    () = stopping(&mut stop) => return,
                }
                match connect(server, &component, &secret).await {
                    Ok(c) => {
                        tracing::info!(%component, "XMPP component reconnected");
                        connected.send_modify(|n| *n += 1);
                        backoff = Duration::from_millis(500);
                        c
                    }
                    Err(e) => {
                        tracing::warn!(%component, error = %e, retry_in = ?backoff, "XMPP component cannot connect");
                        backoff = (backoff * 2).min(Duration::from_secs(60));
                        continue;
                    }
                }
            }
        };
        let why = loop {
            tokio::select! {
                item = reader.next() => match item {
                    Ok(Some(StreamItem::Stanza(e))) => {
                        if stanzas.send(e).await.is_err() {
                            return;
                        }
                    }
                    Ok(Some(StreamItem::Header(_))) => {}
                    Ok(Some(StreamItem::End) | None) => break "closed by the server".to_owned(),
                    Err(e) => break e.to_string(),
                },
                s = out.recv() => match s {
                    Some(s) => {
                        if let Err(e) = writer.write_all(s.as_bytes()).await {
                            break e.to_string();
                        }
                    }
                    None => return,
                },
                () = stopping(&mut stop) => {
                    let _ = writer.write_all(b"</stream:stream>").await;
                    return;
                }
            }
        };
        tracing::warn!(%component, reason = %why, "XMPP component stream ended; reconnecting");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handshake_is_sha1_of_id_and_secret() {
        // SHA-1("3BF96D32" ‖ "Ue8h2Y"), computed independently.
        assert_eq!(
            handshake_digest("3BF96D32", "Ue8h2Y"),
            "4da3232cc648679b0177119460137873c5dc2de2"
        );
        assert_eq!(handshake_digest("a", "b").len(), 40);
        assert_ne!(handshake_digest("a", "b"), handshake_digest("a", "c"));
    }

    /// Delivers the stream one byte per read: a multi-byte character is always split.
    struct OneByte(Vec<u8>, usize);
    impl AsyncRead for OneByte {
        fn poll_read(
            mut self: Pin<&mut Self>,
            _: &mut TaskContext<'_>,
            buf: &mut ReadBuf<'_>,
        ) -> Poll<std::io::Result<()>> {
            if self.1 < self.0.len() {
                let b = self.0[self.1];
                buf.put_slice(&[b]);
                self.1 += 1;
            }
            Poll::Ready(Ok(()))
        }
    }

    #[tokio::test]
    async fn any_chunking_and_any_prefix() {
        let s = "<stream:stream xmlns='jabber:component:accept' xmlns:stream='http://etherx.jabber.org/streams' id='x'>\
                 <message from='a@b' to='c@d'><body>naïve 🎉</body></message>\
                 <c:message xmlns:c='jabber:component:accept' to='e@f'><c:body>two</c:body></c:message>\
                 </stream:stream>";
        let mut r = Reader::new(OneByte(s.as_bytes().to_vec(), 0));
        assert!(matches!(
            r.next().await.unwrap(),
            Some(StreamItem::Header(_))
        ));
        let Some(StreamItem::Stanza(m)) = r.next().await.unwrap() else {
            panic!()
        };
        assert_eq!(m.find("body", NS).unwrap().text(), "naïve 🎉");
        let Some(StreamItem::Stanza(m)) = r.next().await.unwrap() else {
            panic!()
        };
        assert_eq!((m.name.as_str(), m.ns.as_str()), ("message", NS));
        assert_eq!(m.find("body", NS).unwrap().text(), "two");
        assert_eq!(r.next().await.unwrap(), Some(StreamItem::End));
    }

    #[tokio::test]
    async fn an_endless_text_node_is_an_error_not_a_heap() {
        let mut s = b"<stream:stream xmlns='jabber:component:accept' xmlns:stream='http://etherx.jabber.org/streams'><message><body>".to_vec();
        s.extend(std::iter::repeat_n(b'x', MAX_STANZA + 100_000));
        let mut r = Reader::new(&s[..]);
        assert!(matches!(
            r.next().await.unwrap(),
            Some(StreamItem::Header(_))
        ));
        let got = r.next().await;
        assert!(got.is_err(), "{got:?}");
    }
}
