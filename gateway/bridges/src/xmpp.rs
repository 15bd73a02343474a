//! The XMPP bridge: an external component (XEP-0114) of an XMPP server.
//!
//! The component connects to the server's component port, authenticates with the shared
//! secret (`<handshake>` = SHA-1 of stream ID and secret), and mirrors MIMI rooms into MUC
//! rooms: its bot occupant joins each mirrored room (creating it, as owner, so that it sees
//! occupants' real JIDs); groupchat messages of bridged users are translated into MIMI
//! content and sent as those users; MIMI messages are posted by puppets
//! (`<escaped MIMI URI>@<component>`), each joining with its display name as nick. The MUC's
//! reflection of a puppet's message gives the room's stanza-id, linked to the same MIMI
//! message so that XMPP replies and reactions find it.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use anyhow::{Context as _, bail};
use mimi_adapters::xml::{Element, StreamItem, StreamSplitter};
use mimi_adapters::xmpp::Xmpp;
use mimi_adapters::{Adapter, Provider};
use mimi_client::Event;
use sha1_smol::Sha1;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{Mutex, mpsc, watch};

use super::{Core, Delivered};
use crate::config::XmppBridge as Config;
use crate::stopping;

const NS: &str = "jabber:component:accept";
const NS_MUC: &str = "http://jabber.org/protocol/muc";
const NS_MUC_USER: &str = "http://jabber.org/protocol/muc#user";
const NS_SID: &str = "urn:xmpp:sid:0";
const BOT_NICK: &str = "mimi-bridge";

/// (puppet JID, MUC) joined, and (MUC, nick) of our puppets.
type Puppets = (BTreeSet<(String, String)>, BTreeSet<(String, String)>);

/// The running bridge.
pub struct XmppBridge {
    cfg: Config,
    core: Arc<Core>,
    adapter: Xmpp,
    out: mpsc::Sender<String>,
    /// MIMI room → MUC JID, and back.
    rooms: HashMap<String, String>,
    mucs: HashMap<String, String>,
    /// (MUC, nick) → real bare JID, from presence.
    occupants: Mutex<HashMap<(String, String), String>>,
    /// (puppet JID, MUC) joined, and puppets' nicks per MUC.
    puppets: Mutex<Puppets>,
    /// Which bridged user relays each room.
    relays: super::Relays,
    inbound: Mutex<()>,
}

impl std::fmt::Debug for XmppBridge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("XmppBridge")
            .field("component", &self.cfg.component)
            .finish_non_exhaustive()
    }
}

fn bare(jid: &str) -> &str {
    jid.split('/').next().unwrap_or(jid)
}

impl XmppBridge {
    /// Connects and authenticates the component, joins the mirrored rooms, provisions the
    /// configured users, and spawns the stanza reader and the outbound loop.
    ///
    /// # Errors
    /// The server cannot be reached or refuses the secret; the client API fails.
    pub async fn start(
        cfg: Config,
        core: Arc<Core>,
        deliveries: mpsc::Receiver<Delivered>,
        shutdown: watch::Receiver<bool>,
    ) -> anyhow::Result<Arc<Self>> {
        let mut tcp = TcpStream::connect(cfg.server).await.with_context(|| {
            format!(
                "cannot reach the XMPP server's component port {}",
                cfg.server
            )
        })?;
        tcp.write_all(format!("<?xml version='1.0'?><stream:stream xmlns='{NS}' xmlns:stream='http://etherx.jabber.org/streams' to='{}'>", cfg.component).as_bytes()).await?;
        let mut splitter = StreamSplitter::default();
        let mut buf = vec![0u8; 64 << 10];
        let mut pending: Vec<StreamItem> = Vec::new();
        let stream_id = loop {
            let n = tokio::time::timeout(std::time::Duration::from_secs(10), tcp.read(&mut buf))
                .await
                .context("no stream header from the XMPP server")??;
            if n == 0 {
                bail!("the XMPP server closed the component stream");
            }
            pending.extend(splitter.feed(&buf[..n])?);
            if let Some(StreamItem::Header(attrs)) = pending.first() {
                break attrs
                    .iter()
                    .find(|(k, _)| k == "id")
                    .map(|(_, v)| v.clone())
                    .context("stream header without id")?;
            }
        };
        pending.remove(0);
        let mut h = Sha1::new();
        h.update(stream_id.as_bytes());
        h.update(cfg.secret.as_bytes());
        tcp.write_all(format!("<handshake>{}</handshake>", h.digest()).as_bytes())
            .await?;
        loop {
            if let Some(item) = pending.first() {
                match item {
                    StreamItem::Stanza(s) if s.starts_with("<handshake") => break,
                    StreamItem::Stanza(s) => {
                        bail!("the XMPP server refused the component secret: {s}")
                    }
                    StreamItem::End => {
                        bail!("the XMPP server closed the stream during the handshake")
                    }
                    StreamItem::Header(_) => {
                        pending.remove(0);
                        continue;
                    }
                }
            }
            let n = tokio::time::timeout(std::time::Duration::from_secs(10), tcp.read(&mut buf))
                .await
                .context("no handshake answer")??;
            if n == 0 {
                bail!("the XMPP server closed the stream during the handshake (wrong secret?)");
            }
            pending.extend(splitter.feed(&buf[..n])?);
        }
        pending.remove(0);
        let (reader, mut writer) = tcp.into_split();
        let (tx, mut rx) = mpsc::channel::<String>(1024);
        tokio::spawn(async move {
            while let Some(s) = rx.recv().await {
                if writer.write_all(s.as_bytes()).await.is_err() {
                    return;
                }
            }
        });
        let rooms: HashMap<String, String> = cfg
            .rooms
            .iter()
            .map(|r| (r.mimi.clone(), r.muc.clone()))
            .collect();
        let mucs = rooms.iter().map(|(k, v)| (v.clone(), k.clone())).collect();
        let adapter = Xmpp {
            component: cfg.component.clone(),
            ns: NS.to_owned(),
        };
        let b = Arc::new(Self {
            cfg,
            core,
            adapter,
            out: tx,
            rooms,
            mucs,
            occupants: Mutex::new(HashMap::new()),
            puppets: Mutex::new((BTreeSet::new(), BTreeSet::new())),
            relays: super::Relays::default(),
            inbound: Mutex::new(()),
        });
        tokio::spawn(Arc::clone(&b).read(reader, splitter, pending, shutdown.clone()));
        for muc in b.rooms.values() {
            let p = Element::new("presence", NS)
                .attr("from", &format!("bot@{}/gw", b.cfg.component))
                .attr("to", &format!("{muc}/{BOT_NICK}"))
                .child(
                    Element::new("x", NS_MUC)
                        .child(Element::new("history", NS_MUC).attr("maxstanzas", "0")),
                );
            b.send(&p).await?;
        }
        for u in b.cfg.users.clone() {
            let user = b.core.provision(&u).await?;
            let rooms = user.lock().await.session.member.rooms();
            for r in rooms {
                b.relays.join(&r, &u).await;
            }
        }
        tokio::spawn(Arc::clone(&b).outbound(deliveries, shutdown));
        tracing::info!(component = %b.cfg.component, "XMPP bridge ready");
        Ok(b)
    }

    async fn send(&self, e: &Element) -> anyhow::Result<()> {
        self.out
            .send(e.to_xml(NS))
            .await
            .map_err(|_| anyhow::anyhow!("the XMPP stream is closed"))
    }

    async fn read(
        self: Arc<Self>,
        mut reader: tokio::net::tcp::OwnedReadHalf,
        mut splitter: StreamSplitter,
        pending: Vec<StreamItem>,
        mut shutdown: watch::Receiver<bool>,
    ) {
        for item in pending {
            self.item(item).await;
        }
        let mut buf = vec![0u8; 64 << 10];
        loop {
            let n = tokio::select! {
                r = reader.read(&mut buf) => match r { Ok(0) | Err(_) => { tracing::warn!("the XMPP component stream ended"); return } Ok(n) => n },
                () = stopping(&mut shutdown) => return,
            };
            match splitter.feed(&buf[..n]) {
                Ok(items) => {
                    for i in items {
                        self.item(i).await;
                    }
                }
                Err(e) => {
                    tracing::error!(error = %e, "unreadable XMPP stream");
                    return;
                }
            }
        }
    }

    async fn item(&self, item: StreamItem) {
        let StreamItem::Stanza(s) = item else { return };
        let st = match Element::parse(&s, NS) {
            Ok(e) => e,
            Err(e) => {
                tracing::warn!(error = %e, "unparsable stanza");
                return;
            }
        };
        let r = match st.name.as_str() {
            "presence" => {
                self.presence(&st).await;
                Ok(())
            }
            "message" => self.message(&st).await,
            _ => Ok(()),
        };
        if let Err(e) = r {
            tracing::warn!(error = %format!("{e:#}"), "could not bridge an XMPP stanza");
        }
    }

    async fn presence(&self, p: &Element) {
        let from = p.get("from").unwrap_or("");
        let Some((muc, nick)) = from.split_once('/') else {
            return;
        };
        if !self.mucs.contains_key(muc) {
            return;
        }
        let jid = p
            .find("x", NS_MUC_USER)
            .and_then(|x| x.find("item", NS_MUC_USER))
            .and_then(|i| i.get("jid"))
            .map(|j| bare(j).to_owned());
        let mut occ = self.occupants.lock().await;
        if p.get("type") == Some("unavailable") {
            occ.remove(&(muc.to_owned(), nick.to_owned()));
        } else if let Some(j) = jid {
            occ.insert((muc.to_owned(), nick.to_owned()), j);
        }
    }

    async fn message(&self, m: &Element) -> anyhow::Result<()> {
        // Each occupant gets its own copy: only the bot's copy is processed.
        if m.get("to").map(bare) != Some(&format!("bot@{}", self.cfg.component))
            || m.get("type") != Some("groupchat")
        {
            return Ok(());
        }
        let from = m.get("from").unwrap_or("");
        let Some((muc, nick)) = from.split_once('/') else {
            return Ok(());
        };
        let Some(room) = self.mucs.get(muc).cloned() else {
            return Ok(());
        };
        let ours = nick == BOT_NICK
            || self
                .puppets
                .lock()
                .await
                .1
                .contains(&(muc.to_owned(), nick.to_owned()));
        if ours {
            // The reflection of our own message: learn the room's stanza-id for it.
            let origin = m
                .find("origin-id", NS_SID)
                .and_then(|o| o.get("id"))
                .or_else(|| m.get("id"));
            let sid = m
                .elements()
                .find(|e| e.name == "stanza-id" && e.ns == NS_SID && e.get("by") == Some(muc))
                .and_then(|e| e.get("id"));
            if let (Some(o), Some(s)) = (origin, sid) {
                if let Ok(mut ids) = self.core.ids.lock() {
                    ids.alias(Provider::Xmpp, muc, o, s);
                }
                self.core.save_ids();
            }
            return Ok(());
        }
        let Some(jid) = self
            .occupants
            .lock()
            .await
            .get(&(muc.to_owned(), nick.to_owned()))
            .cloned()
        else {
            tracing::info!(%muc, %nick, "message from an occupant whose JID is unknown; ignored");
            return Ok(());
        };
        let Some(user) = self.core.user(&jid).await else {
            tracing::info!(%jid, "an XMPP user who is not bridged wrote in a mirrored room; ignored");
            return Ok(());
        };
        let _one = self.inbound.lock().await;
        let mut u = user.lock().await;
        if !u.session.member.rooms().contains(&room) {
            tracing::info!(%jid, %room, "the bridged user is not (yet) a member of the MIMI room");
            return Ok(());
        }
        let me = u.session.user().to_owned();
        let translated = {
            self.core
                .translate(&room, muc, None, |ctx| self.adapter.to_mimi(ctx, &me, m))??
        };
        for l in &translated.lost {
            tracing::info!(%jid, lost = %l, "not carried into MIMI");
        }
        for msg in &translated.items {
            u.session.send_message(&room, msg).await?;
        }
        self.core.persist(&u);
        self.core.save_ids();
        Ok(())
    }

    async fn puppet_in(&self, uri: &str, muc: &str) -> anyhow::Result<String> {
        let jid = self.adapter.jid_of(&self.core.uris, uri);
        let nick = super::display(uri);
        let mut p = self.puppets.lock().await;
        if p.0.insert((jid.clone(), muc.to_owned())) {
            let pres = Element::new("presence", NS)
                .attr("from", &format!("{jid}/gw"))
                .attr("to", &format!("{muc}/{nick}"))
                .child(
                    Element::new("x", NS_MUC)
                        .child(Element::new("history", NS_MUC).attr("maxstanzas", "0")),
                );
            self.send(&pres).await?;
            p.1.insert((muc.to_owned(), nick));
        }
        Ok(jid)
    }

    async fn outbound(
        self: Arc<Self>,
        mut rx: mpsc::Receiver<Delivered>,
        mut shutdown: watch::Receiver<bool>,
    ) {
        loop {
            let d = tokio::select! {
                d = rx.recv() => match d { Some(d) => d, None => return },
                () = stopping(&mut shutdown) => return,
            };
            for ev in d.events {
                if let Err(e) = self.relay(&d.native, ev).await {
                    tracing::warn!(error = %format!("{e:#}"), "could not post into XMPP");
                }
            }
        }
    }

    async fn relay(&self, native: &str, ev: Event) -> anyhow::Result<()> {
        let Some((room, sender, message)) = self.relays.filter(&self.core, native, ev).await else {
            return Ok(());
        };
        let Some(muc) = self.rooms.get(&room).cloned() else {
            return Ok(());
        };
        let puppet = self.puppet_in(&sender, &muc).await?;
        let out = {
            self.core.translate(&room, &muc, None, |ctx| {
                self.adapter.from_mimi(ctx, &sender, &message)
            })??
        };
        for l in &out.lost {
            tracing::info!(%room, lost = %l, "not carried into XMPP");
        }
        for mut st in out.items {
            st.set_attr("from", &format!("{puppet}/gw"));
            self.send(&st).await?;
        }
        self.core.save_ids();
        Ok(())
    }
}
