//! The XMPP bridge: an external component (XEP-0114) of an XMPP server, serving every user
//! of the server's domain that the bridge's policy allows.
//!
//! - **Direct messages**: an XMPP user writes to `<escaped MIMI user URI>@<component>`; the
//!   bridge opens a two-person MIMI room hosted here and carries the conversation both ways.
//! - **Rooms on demand**: the component is a MUC service; joining
//!   `<escaped MIMI room URI>@<component>/<nick>` joins the MIMI room by external commit when
//!   the room is open (a refusal comes back as a presence error with the reason); messages
//!   are carried both ways, each occupant getting its copy with the room's stanza-id.
//! - **Mirrored rooms** (configured): the bot joins a MUC of the server and mirrors a MIMI
//!   room into it, as before.
//! - **Uploads**: XEP-0363 slots on the gateway's upload service; attachments both ways.
//! - The link reconnects with backoff and re-joins its rooms; stanzas are read with
//!   quick-xml's namespace-aware reader.
//!
//! Occupancy of hosted rooms is kept in memory: after a restart of the gateway, XMPP clients
//! re-join (as they do after any MUC service restart).

mod outbound;
mod rooms;
pub mod stream;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use mimi_adapters::Provider;
use mimi_adapters::attachments::{Media, MediaError};
use mimi_adapters::uris::unescape;
use mimi_adapters::xml::Element;
use mimi_adapters::xmpp::Xmpp;
use tokio::sync::{Mutex, mpsc};

use crate::access::Access;
use crate::config::XmppBridge as Config;
use crate::db::{PortalKind, PortalRow};
use crate::uploads::Uploads;
use crate::users::{UserError, Users};
use crate::{Host, stopping};
pub use stream::{Link, NS, StreamError};

const NS_MUC: &str = "http://jabber.org/protocol/muc";
const NS_MUC_USER: &str = "http://jabber.org/protocol/muc#user";
const NS_SID: &str = "urn:xmpp:sid:0";
const NS_DISCO_INFO: &str = "http://jabber.org/protocol/disco#info";
const NS_UPLOAD: &str = "urn:xmpp:http:upload:0";
const NS_PING: &str = "urn:xmpp:ping";
const NS_STANZAS: &str = "urn:ietf:params:xml:ns:xmpp-stanzas";
const NS_CONFERENCE: &str = "jabber:x:conference";
const BOT_NICK: &str = "mimi-bridge";

type PairSet = HashSet<(String, String)>;

/// The bare JID of a full one.
pub fn bare(jid: &str) -> &str {
    jid.split('/').next().unwrap_or(jid)
}

/// What an address of the component is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Address {
    /// The component itself (or its bot).
    Component,
    /// A MIMI user's puppet.
    Puppet(String),
    /// A MIMI room hosted by the component's MUC service.
    Room(String),
    /// Anything else of the component's domain.
    Unknown,
}

/// Classifies a JID of the component's domain.
pub fn address(component: &str, jid: &str) -> Address {
    let bare = bare(jid);
    if bare == component || bare == format!("bot@{component}") {
        return Address::Component;
    }
    let Some(local) = bare.strip_suffix(&format!("@{component}")) else {
        return Address::Unknown;
    };
    match unescape(local) {
        Some(u) if u.starts_with("mimi://") && u.contains("/u/") => Address::Puppet(u),
        Some(u) if u.starts_with("mimi://") && u.contains("/r/") => Address::Room(u),
        _ => Address::Unknown,
    }
}

/// The running bridge.
pub struct XmppBridge {
    cfg: Config,
    host: Host,
    users: Arc<Users>,
    adapter: Xmpp,
    link: Link,
    uploads: Option<Arc<Uploads>>,
    /// Mirrored MUCs: (MUC, nick) → real bare JID, from presence.
    occupants: std::sync::Mutex<HashMap<(String, String), String>>,
    /// Mirrored MUCs: (puppet JID, MUC) joined, and (MUC, nick) of our puppets.
    puppets: std::sync::Mutex<(PairSet, PairSet)>,
    /// Hosted rooms: room JID → occupant full JID → nick.
    hosted: std::sync::Mutex<HashMap<String, BTreeMap<String, String>>>,
    /// Per-room serialization of outbound posting.
    rooms: Vec<Mutex<()>>,
}

impl std::fmt::Debug for XmppBridge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("XmppBridge")
            .field("component", &self.cfg.component)
            .finish_non_exhaustive()
    }
}

/// A failure handling one stanza or delivery.
#[derive(Debug, thiserror::Error)]
pub(crate) enum StepError {
    /// A bridged user's operation.
    #[error(transparent)]
    User(#[from] UserError),
    /// The link.
    #[error(transparent)]
    Stream(#[from] StreamError),
    /// The ID map could not be read.
    #[error(transparent)]
    Rows(#[from] mimi_adapters::ids::RowsError),
    /// The store.
    #[error(transparent)]
    Store(#[from] crate::StoreError),
    /// Translation.
    #[error(transparent)]
    Adapter(#[from] mimi_adapters::AdapterError),
}

impl StepError {
    pub(crate) fn transient(&self) -> bool {
        match self {
            Self::User(u) => crate::matrix::transient(u),
            Self::Stream(_) | Self::Rows(_) | Self::Store(_) => true,
            Self::Adapter(_) => false,
        }
    }
}

impl XmppBridge {
    /// Connects the component (a wrong secret fails the start), starts the upload service,
    /// joins the mirrored MUCs, provisions the configured users, and spawns the stanza loop,
    /// the delivery runner and the retention sweeper.
    ///
    /// # Errors
    /// The server cannot be reached or refuses the secret; the upload listener cannot bind.
    pub async fn start(cfg: Config, host: Host) -> anyhow::Result<Arc<Self>> {
        let (link, stanzas) = Link::start(
            cfg.server,
            cfg.component.clone(),
            cfg.secret.clone(),
            host.stop.clone(),
        )
        .await?;
        let home = cfg.domain.clone().unwrap_or_else(|| {
            cfg.component
                .split_once('.')
                .map_or_else(|| cfg.component.clone(), |(_, d)| d.to_owned())
        });
        let access = Access::new(&home, &cfg.policy.allow, &cfg.policy.deny);
        let users = Arc::new(Users::new(
            &host,
            Provider::Xmpp,
            access,
            cfg.policy.clone(),
        ));
        let uploads = match cfg.upload_listen {
            Some(addr) => {
                let listener = mimi_listen::Listener::bind(addr, mimi_listen::Limits::default())
                    .await
                    .map_err(|e| {
                        anyhow::anyhow!("cannot bind the upload service on {addr}: {e}")
                    })?;
                let base = cfg
                    .upload_url
                    .clone()
                    .unwrap_or_else(|| format!("http://{}", listener.local_addr().unwrap_or(addr)));
                let u = Arc::new(Uploads::new(
                    host.data_dir.join("xmpp-uploads"),
                    &base,
                    cfg.upload_max_bytes,
                    cfg.upload_quota_bytes,
                )?);
                let served = Arc::clone(&u);
                tokio::spawn(listener.serve_http(host.stop.clone(), move |req, _| {
                    let u = Arc::clone(&served);
                    async move { u.http(req).await }
                }));
                Some(u)
            }
            None => None,
        };
        let b = Arc::new(Self {
            adapter: Xmpp {
                component: cfg.component.clone(),
                ns: NS.to_owned(),
            },
            cfg,
            host: host.clone(),
            users,
            link,
            uploads,
            occupants: std::sync::Mutex::default(),
            puppets: std::sync::Mutex::default(),
            hosted: std::sync::Mutex::default(),
            rooms: (0..64).map(|_| Mutex::new(())).collect(),
        });
        for r in &b.cfg.rooms {
            b.users.db.apply(&b.users.db.put_portal(
                &r.muc,
                &PortalRow {
                    mimi: r.mimi.clone(),
                    kind: PortalKind::Configured,
                    peer: None,
                },
            ))?;
        }
        b.join_mirrors().await?;
        tokio::spawn(Arc::clone(&b).read(stanzas));
        tokio::spawn(Arc::clone(&b).rejoin_on_reconnect());
        for u in b.cfg.users.clone() {
            b.users
                .get(&u)
                .await
                .map_err(|e| anyhow::anyhow!("bridged user {u}: {e}"))?;
        }
        tokio::spawn(crate::deliveries::run(
            Arc::clone(&b.users),
            Arc::clone(&b),
            host.wakes.subscribe(),
            host.stop.clone(),
        ));
        tracing::info!(component = %b.cfg.component, "XMPP bridge ready");
        Ok(b)
    }

    /// The bridge's users.
    pub fn users(&self) -> &Arc<Users> {
        &self.users
    }

    fn room_lock(&self, room: &str) -> &Mutex<()> {
        let h = room.bytes().fold(0usize, |h, b| {
            h.wrapping_mul(31).wrapping_add(usize::from(b))
        });
        &self.rooms[h % self.rooms.len()]
    }

    /// The bot's presence in each mirrored MUC.
    async fn join_mirrors(&self) -> Result<(), StreamError> {
        for r in &self.cfg.rooms {
            let p = Element::new("presence", NS)
                .attr("from", &format!("bot@{}/gw", self.cfg.component))
                .attr("to", &format!("{}/{BOT_NICK}", r.muc))
                .child(
                    Element::new("x", NS_MUC)
                        .child(Element::new("history", NS_MUC).attr("maxstanzas", "0")),
                );
            self.link.send(&p).await?;
        }
        Ok(())
    }

    async fn rejoin_on_reconnect(self: Arc<Self>) {
        let mut c = self.link.connected.clone();
        let mut stop = self.host.stop.clone();
        loop {
            tokio::select! {
                r = c.changed() => if r.is_err() { return },
                () = stopping(&mut stop) => return,
            }
            self.puppets
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .0
                .clear();
            if let Err(e) = self.join_mirrors().await {
                tracing::warn!(error = %e, "XMPP bridge: cannot re-join the mirrored rooms");
            }
        }
    }

    async fn read(self: Arc<Self>, mut stanzas: mpsc::Receiver<Element>) {
        while let Some(st) = stanzas.recv().await {
            let r = match st.name.as_str() {
                "presence" => self.presence(&st).await,
                "message" => self.message(&st).await,
                "iq" => self.iq(&st).await,
                _ => Ok(()),
            };
            if let Err(e) = r {
                tracing::warn!(error = %e, stanza = %st.name, "could not bridge an XMPP stanza");
            }
        }
    }

    /// An error reply to `st` (`<error type=…><condition/><text/></error>`).
    pub(crate) async fn error_reply(
        &self,
        st: &Element,
        kind: &str,
        condition: &str,
        text: &str,
    ) -> Result<(), StreamError> {
        let mut e = Element::new(&st.name, NS).attr("type", "error");
        if let Some(f) = st.get("to") {
            e.set_attr("from", f);
        }
        if let Some(t) = st.get("from") {
            e.set_attr("to", t);
        }
        if let Some(id) = st.get("id") {
            e.set_attr("id", id);
        }
        let e = e.child(
            Element::new("error", NS)
                .attr("type", kind)
                .child(Element::new(condition, NS_STANZAS))
                .child(Element::new("text", NS_STANZAS).text_node(text)),
        );
        self.link.send(&e).await
    }

    async fn iq(&self, st: &Element) -> Result<(), StepError> {
        let kind = st.get("type").unwrap_or("");
        if kind != "get" && kind != "set" {
            return Ok(());
        }
        let to = st.get("to").unwrap_or("");
        let result = |children: Vec<Element>| {
            let mut r = Element::new("iq", NS)
                .attr("type", "result")
                .attr("from", to)
                .attr("to", st.get("from").unwrap_or(""))
                .attr("id", st.get("id").unwrap_or(""));
            for c in children {
                r = r.child(c);
            }
            r
        };
        if st.find("ping", NS_PING).is_some() {
            return Ok(self.link.send(&result(vec![])).await?);
        }
        if kind == "get" && st.find("query", NS_DISCO_INFO).is_some() {
            let mut q = Element::new("query", NS_DISCO_INFO);
            match address(&self.cfg.component, to) {
                Address::Component => {
                    q = q
                        .child(
                            Element::new("identity", NS_DISCO_INFO)
                                .attr("category", "conference")
                                .attr("type", "text")
                                .attr("name", "MIMI rooms"),
                        )
                        .child(Element::new("feature", NS_DISCO_INFO).attr("var", NS_MUC));
                    if let Some(u) = &self.uploads {
                        let _ = u;
                        q = q
                            .child(
                                Element::new("identity", NS_DISCO_INFO)
                                    .attr("category", "store")
                                    .attr("type", "file")
                                    .attr("name", "MIMI uploads"),
                            )
                            .child(Element::new("feature", NS_DISCO_INFO).attr("var", NS_UPLOAD))
                            .child(upload_form(self.cfg.upload_max_bytes));
                    }
                }
                Address::Room(uri) => {
                    q = q
                        .child(
                            Element::new("identity", NS_DISCO_INFO)
                                .attr("category", "conference")
                                .attr("type", "text")
                                .attr("name", &crate::display_room(&uri)),
                        )
                        .child(Element::new("feature", NS_DISCO_INFO).attr("var", NS_MUC))
                        .child(
                            Element::new("feature", NS_DISCO_INFO).attr("var", "muc_nonanonymous"),
                        )
                        .child(
                            Element::new("feature", NS_DISCO_INFO).attr("var", "muc_persistent"),
                        );
                }
                Address::Puppet(_) => {
                    q = q.child(
                        Element::new("identity", NS_DISCO_INFO)
                            .attr("category", "client")
                            .attr("type", "pc")
                            .attr("name", "MIMI user"),
                    );
                }
                Address::Unknown => {
                    return Ok(self
                        .error_reply(st, "cancel", "item-not-found", "no such address")
                        .await?);
                }
            }
            q = q.child(Element::new("feature", NS_DISCO_INFO).attr("var", NS_DISCO_INFO));
            return Ok(self.link.send(&result(vec![q])).await?);
        }
        if let Some(req) = st.find("request", NS_UPLOAD) {
            let Some(u) = &self.uploads else {
                return Ok(self
                    .error_reply(
                        st,
                        "cancel",
                        "feature-not-implemented",
                        "uploads are not configured on this bridge",
                    )
                    .await?);
            };
            if let Err(e) = self.users.access.check(st.get("from").unwrap_or("")) {
                return Ok(self
                    .error_reply(st, "auth", "forbidden", &e.to_string())
                    .await?);
            }
            let size = req
                .get("size")
                .and_then(|s| s.parse::<u64>().ok())
                .unwrap_or(u64::MAX);
            return match u.slot(
                req.get("filename").unwrap_or("file"),
                size,
                req.get("content-type")
                    .unwrap_or("application/octet-stream"),
            ) {
                Ok((put, get)) => Ok(self
                    .link
                    .send(&result(vec![
                        Element::new("slot", NS_UPLOAD)
                            .child(Element::new("put", NS_UPLOAD).attr("url", &put))
                            .child(Element::new("get", NS_UPLOAD).attr("url", &get)),
                    ]))
                    .await?),
                Err(e) => Ok(self
                    .error_reply(st, "modify", "not-acceptable", &e.to_string())
                    .await?),
            };
        }
        Ok(self
            .error_reply(
                st,
                "cancel",
                "service-unavailable",
                "not supported by the MIMI bridge",
            )
            .await?)
    }
}

fn upload_form(max: u64) -> Element {
    const NS_DATA: &str = "jabber:x:data";
    Element::new("x", NS_DATA)
        .attr("type", "result")
        .child(
            Element::new("field", NS_DATA)
                .attr("var", "FORM_TYPE")
                .attr("type", "hidden")
                .child(Element::new("value", NS_DATA).text_node(NS_UPLOAD)),
        )
        .child(
            Element::new("field", NS_DATA)
                .attr("var", "max-file-size")
                .child(Element::new("value", NS_DATA).text_node(&max.to_string())),
        )
}

/// Attachments: this bridge's upload service on the XMPP side, MIMI assets on the other.
pub(crate) struct XmppMedia<'a> {
    pub(crate) uploads: Option<&'a Uploads>,
    pub(crate) assets: &'a dyn crate::Assets,
}

impl Media for XmppMedia<'_> {
    fn fetch(&mut self, url: &str) -> Result<Vec<u8>, MediaError> {
        if let Some(b) = self.uploads.and_then(|u| u.read(url)) {
            return Ok(b);
        }
        if url.starts_with("https://") && url.contains("/assets/") {
            return crate::matrix::block_on(self.assets.fetch(url));
        }
        Err(MediaError::Transfer(format!(
            "{url} is not a file of this bridge's upload service (other URLs are not fetched)"
        )))
    }

    fn store_mimi(&mut self, ciphertext: &[u8]) -> Result<String, MediaError> {
        crate::matrix::block_on(self.assets.store(ciphertext.to_vec()))
    }

    fn store_native(
        &mut self,
        bytes: &[u8],
        content_type: &str,
        filename: &str,
    ) -> Result<String, MediaError> {
        match self.uploads {
            Some(u) => u
                .store(bytes, content_type, filename)
                .map_err(|e| MediaError::Transfer(e.to_string())),
            None => Err(MediaError::Transfer(
                "uploads are not configured on this bridge".into(),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mimi_adapters::uris::escape;

    #[test]
    fn addresses() {
        let c = "mimi.xmpp.test";
        assert_eq!(address(c, "mimi.xmpp.test"), Address::Component);
        assert_eq!(address(c, "bot@mimi.xmpp.test/gw"), Address::Component);
        let u = format!("{}@{c}", escape("mimi://a.example/u/alice"));
        assert_eq!(
            address(c, &u),
            Address::Puppet("mimi://a.example/u/alice".into())
        );
        let r = format!("{}@{c}/nick", escape("mimi://a.example/r/x"));
        assert_eq!(address(c, &r), Address::Room("mimi://a.example/r/x".into()));
        assert_eq!(address(c, "dave@xmpp.test"), Address::Unknown);
        assert_eq!(address(c, "zz@mimi.xmpp.test"), Address::Unknown);
    }
}
