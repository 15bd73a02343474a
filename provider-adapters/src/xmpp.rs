//! XMPP: `<message/>` stanzas to and from MIMI content.
//!
//! | XMPP | MIMI |
//! |---|---|
//! | `<body>` with XEP-0393 styling | plain, or chooseOne [markdown, plain] |
//! | XEP-0372 references `type='mention'` (code points) | links to user URIs |
//! | XEP-0461 reply (+ XEP-0428 fallback, stripped) | `inReplyTo` |
//! | XEP-0308 correction (`replace@id` = first message) | `replaces` = first version |
//! | XEP-0424 retraction | delete |
//! | XEP-0444 reactions (the sender's complete set) | diffed into reactions and un-reacts |
//! | XEP-0466 ephemeral `timer` | `expires` relative |
//! | `<thread>` | `topicId` (the thread ID's bytes) |
//! | XEP-0066 OOB / XEP-0447 file sharing / `aesgcm://` | ExternalPart (re-encrypted by a bridge) |
//! | XEP-0184 `<received>`, XEP-0333 `<displayed>` | message-status report (delivered, read) |
//! | XEP-0085 chat states | not carried (reported) |
//!
//! IDs: a message has up to three (stanza `id`, `origin-id`, MUC `stanza-id`); all are linked
//! to the same MIMI version, and references use the newest (the room's stanza-id once the MUC
//! reflected our message). MIMI users appear as `<escaped user URI>@<component domain>`.

use std::collections::BTreeSet;

use mimi_content::builder::{self, Builder};
use mimi_content::status::{MEDIA_TYPE as STATUS, MessageStatusReport, Status};
use mimi_content::{Message, MessageId, NestedPart, PartBody};

use crate::text::{self, Mention};
use crate::uris::{escape, unescape};
use crate::xml::{Element, Node};
use crate::{Adapter, AdapterError, Context, Provider, Translated, invalid};

const P: Provider = Provider::Xmpp;
/// The client namespace.
pub const NS_CLIENT: &str = "jabber:client";
const NS_SID: &str = "urn:xmpp:sid:0";
const NS_REPLY: &str = "urn:xmpp:reply:0";
const NS_FALLBACK: &str = "urn:xmpp:fallback:0";
const NS_CORRECT: &str = "urn:xmpp:message-correct:0";
const NS_RETRACT: &str = "urn:xmpp:message-retract:1";
const NS_REACTIONS: &str = "urn:xmpp:reactions:0";
const NS_REFERENCE: &str = "urn:xmpp:reference:0";
const NS_EPHEMERAL: &str = "urn:xmpp:ephemeral:0";
const NS_RECEIPTS: &str = "urn:xmpp:receipts";
const NS_MARKERS: &str = "urn:xmpp:chat-markers:0";
const NS_CHATSTATES: &str = "http://jabber.org/protocol/chatstates";
const NS_OOB: &str = "jabber:x:oob";
const NS_SFS: &str = "urn:xmpp:sfs:0";
const NS_HINTS: &str = "urn:xmpp:hints";

/// The XMPP adapter of one component.
#[derive(Debug, Clone)]
pub struct Xmpp {
    /// The component's domain (puppet JIDs live there).
    pub component: String,
    /// The namespace of stanzas produced (`jabber:client`, or `jabber:component:accept`).
    pub ns: String,
}

impl Xmpp {
    /// For component `component` (stanzas in `jabber:client`).
    pub fn new(component: &str) -> Self {
        Self {
            component: component.to_owned(),
            ns: NS_CLIENT.to_owned(),
        }
    }

    /// The bare JID that stands for a MIMI user (the bridged XMPP user, or its puppet).
    pub fn jid_of(&self, uris: &crate::UriScheme, uri: &str) -> String {
        match uris.native_user(uri) {
            Some((Provider::Xmpp, jid)) => jid,
            _ => format!("{}@{}", escape(uri), self.component),
        }
    }

    /// The MIMI user URI of a bare JID (puppets map back).
    pub fn user_of(&self, uris: &crate::UriScheme, jid: &str) -> String {
        let bare = jid.split('/').next().unwrap_or(jid);
        match bare.split_once('@') {
            Some((local, domain)) if domain == self.component => unescape(local)
                .filter(|u| u.starts_with("mimi://"))
                .unwrap_or_else(|| uris.user(P, bare)),
            _ => uris.user(P, bare),
        }
    }

    /// The message's IDs, the one references must use first: the room's stanza-id, then the
    /// origin-id, then the stanza `id`.
    fn all_ids(msg: &Element) -> Vec<String> {
        let mut ids = Vec::new();
        for name in ["stanza-id", "origin-id"] {
            if let Some(i) = msg
                .elements()
                .find(|e| e.name == name && e.ns == NS_SID)
                .and_then(|e| e.get("id"))
            {
                ids.push(i.to_owned());
            }
        }
        if let Some(i) = msg.get("id") {
            ids.push(i.to_owned());
        }
        let mut seen = std::collections::HashSet::new();
        ids.retain(|i| seen.insert(i.clone()));
        ids
    }

    fn resolve(ctx: &Context<'_>, id: &str) -> Option<MessageId> {
        ctx.ids.mimi_of(P, ctx.native_room, id)
    }

    fn native(ctx: &Context<'_>, id: &MessageId) -> Option<String> {
        ctx.ids.native_of(P, ctx.native_room, id)
    }

    fn link_all(ctx: &mut Context<'_>, ids: &[String], m: &Message) {
        if let Ok(id) = m.id() {
            // The preferred ID is linked last: it becomes the one references use.
            for n in ids.iter().rev() {
                ctx.ids.link(P, ctx.native_room, n, id);
            }
        }
    }

    /// The text of `<body>` with fallbacks for `for_ns` removed (code-point ranges).
    fn body_without_fallback(msg: &Element, body: &str) -> (String, Vec<(usize, usize)>) {
        let mut cut: Vec<(usize, usize)> = Vec::new();
        for f in msg
            .elements()
            .filter(|e| e.name == "fallback" && e.ns == NS_FALLBACK)
        {
            if f.get("for") == Some(NS_REPLY) {
                for b in f.elements().filter(|b| b.name == "body") {
                    let s = b.get("start").and_then(|v| v.parse().ok()).unwrap_or(0);
                    let e = b.get("end").and_then(|v| v.parse().ok()).unwrap_or(0);
                    if s < e {
                        cut.push((s, e));
                    }
                }
            }
        }
        cut.sort_unstable();
        let chars: Vec<char> = body.chars().collect();
        let kept: String = chars
            .iter()
            .enumerate()
            .filter(|(i, _)| !cut.iter().any(|(s, e)| i >= s && i < e))
            .map(|(_, c)| *c)
            .collect();
        (kept, cut)
    }

    fn text_body(
        &self,
        ctx: &Context<'_>,
        msg: &Element,
        body: &str,
        out: &mut Translated<Message>,
    ) -> NestedPart {
        let (plain, cut) = Self::body_without_fallback(msg, body);
        let shift = |p: usize| {
            p - cut
                .iter()
                .filter(|(s, e)| *e <= p && s < e)
                .map(|(s, e)| e - s)
                .sum::<usize>()
        };
        let mut mentions = Vec::new();
        for r in msg.elements().filter(|e| {
            e.name == "reference" && e.ns == NS_REFERENCE && e.get("type") == Some("mention")
        }) {
            let (Some(b), Some(e), Some(uri)) = (
                r.get("begin").and_then(|v| v.parse().ok()),
                r.get("end").and_then(|v| v.parse().ok()),
                r.get("uri"),
            ) else {
                out.lose("mention", "a reference without begin/end/uri");
                continue;
            };
            let jid = uri.strip_prefix("xmpp:").unwrap_or(uri);
            mentions.push(Mention {
                begin: shift(b),
                end: shift(e),
                uri: self.user_of(ctx.uris, jid),
            });
        }
        if msg.find("mention", "urn:xmpp:mentions:0").is_some() && mentions.is_empty() {
            out.lose(
                "mention",
                "XEP-0513 occupant mentions without a JID reference are kept as text",
            );
        }
        let styled = text::styling_to_markdown(&plain);
        let markdown = if mentions.is_empty() {
            (styled != text::escape_markdown(&plain)).then_some(styled)
        } else {
            Some(text::styled_with_mentions(&plain, &mentions))
        };
        text::body_for(markdown.as_deref(), &plain)
    }

    fn attachment_in(
        &self,
        ctx: &mut Context<'_>,
        msg: &Element,
        out: &mut Translated<Message>,
    ) -> Option<NestedPart> {
        let oob = msg
            .find("x", NS_OOB)
            .and_then(|x| x.find("url", NS_OOB))
            .map(Element::text);
        let sfs = msg.find("file-sharing", NS_SFS);
        if oob.is_none() && sfs.is_none() {
            return None;
        }
        let meta = sfs.and_then(|s| s.find("file", "urn:xmpp:file:metadata:0"));
        let field = |n: &str| {
            meta.and_then(|m| m.elements().find(|e| e.name == n))
                .map(Element::text)
        };
        let name = field("name").unwrap_or_else(|| "file".into());
        let mime = field("media-type").unwrap_or_else(|| "application/octet-stream".into());
        let url = oob.or_else(|| {
            sfs.and_then(|s| {
                fn find_url(e: &Element) -> Option<String> {
                    if e.name == "url-data" {
                        return e.get("target").map(str::to_owned);
                    }
                    e.elements().find_map(find_url)
                }
                find_url(s)
            })
        })?;
        let placeholder = |out: &mut Translated<Message>, why: String| {
            out.lose("attachment", why);
            Some(builder::plain_part(&format!("[file {name} ({mime})]")))
        };
        if sfs.is_some_and(|s| {
            s.elements()
                .any(|e| e.name == "sources" && e.elements().any(|x| x.name == "encrypted"))
        }) {
            return placeholder(
                out,
                format!("XEP-0448 encrypted file {url}: not supported by this bridge"),
            );
        }
        let Some(media) = ctx.media.as_deref_mut() else {
            return placeholder(
                out,
                format!("{url} must be fetched and re-encrypted by a bridge"),
            );
        };
        let plain = if let Some(rest) = url.strip_prefix("aesgcm://") {
            let (path, frag) = rest.split_once('#').unwrap_or((rest, ""));
            let fetched = media.fetch(&format!("https://{path}"));
            match fetched.and_then(|ct| aesgcm_decrypt(frag, &ct)) {
                Ok(p) => p,
                Err(e) => return placeholder(out, format!("{url}: {e}")),
            }
        } else {
            match media.fetch(&url) {
                Ok(p) => p,
                Err(e) => return placeholder(out, format!("{url}: {e}")),
            }
        };
        let sealed = crate::attachments::seal_for_mimi(&plain, &mime, &name);
        match media.store_mimi(&sealed.ciphertext) {
            Ok(u) => {
                let mut part = sealed.part;
                part.url = u;
                Some(NestedPart::new(
                    mimi_content::Disposition::Attachment,
                    PartBody::External(part),
                ))
            }
            Err(e) => placeholder(out, format!("upload failed: {e}")),
        }
    }

    fn stanza(&self, ctx: &Context<'_>, id: &str) -> Element {
        let groupchat = ctx.native_room.contains('@');
        let mut m = Element::new("message", &self.ns)
            .attr("id", id)
            .attr("type", if groupchat { "groupchat" } else { "chat" });
        if !ctx.native_room.is_empty() {
            m.set_attr("to", ctx.native_room);
        }
        m.child(Element::new("origin-id", NS_SID).attr("id", id))
    }
}

/// Decrypts an `aesgcm://` download (XEP-0454: fragment = 24 hex IV + 64 hex key).
fn aesgcm_decrypt(fragment: &str, ct: &[u8]) -> Result<Vec<u8>, crate::attachments::MediaError> {
    use crate::attachments::MediaError;
    use aes_gcm::aead::{Aead, KeyInit};
    let raw = hex::decode(fragment).map_err(|e| MediaError::Key(e.to_string()))?;
    if raw.len() != 44 {
        return Err(MediaError::Key(format!(
            "aesgcm fragment of {} bytes (want 12 IV + 32 key)",
            raw.len()
        )));
    }
    let (iv, key) = raw.split_at(12);
    let c = aes_gcm::Aes256Gcm::new_from_slice(key).map_err(|e| MediaError::Key(e.to_string()))?;
    c.decrypt(aes_gcm::Nonce::from_slice(iv), ct)
        .map_err(|_| MediaError::Decrypt)
}

impl Adapter for Xmpp {
    const PROVIDER: Provider = P;
    type Native = Element;

    fn parse(&self, bytes: &[u8]) -> Result<Element, AdapterError> {
        let s = std::str::from_utf8(bytes).map_err(|e| invalid(P, e.to_string()))?;
        let e = Element::parse(s, NS_CLIENT).map_err(|e| invalid(P, e.to_string()))?;
        if e.name != "message" {
            return Err(invalid(
                P,
                format!("expected a <message/> stanza, found <{}>", e.name),
            ));
        }
        Ok(e)
    }

    fn serialize(&self, native: &Element) -> Vec<u8> {
        native.to_xml("").into_bytes()
    }

    fn native_id(&self, native: &Element) -> Option<String> {
        Self::all_ids(native).into_iter().next()
    }

    fn to_mimi(
        &self,
        ctx: &mut Context<'_>,
        sender: &str,
        msg: &Element,
    ) -> Result<Translated<Message>, AdapterError> {
        let ids = Self::all_ids(msg);
        let mut out = Translated::none();
        // Receipts.
        for (name, ns, status) in [
            ("received", NS_RECEIPTS, Status::Delivered),
            ("displayed", NS_MARKERS, Status::Read),
        ] {
            if let Some(r) = msg.find(name, ns) {
                let target = r.get("id").unwrap_or("");
                match Self::resolve(ctx, target) {
                    Some(t) => {
                        let report = MessageStatusReport {
                            statuses: vec![(t, status)],
                        };
                        let part = NestedPart::new(
                            mimi_content::Disposition::Unspecified,
                            PartBody::Single(mimi_content::SinglePart {
                                content_type: STATUS.into(),
                                content: report.encode(),
                            }),
                        );
                        let salt = (ctx.salt)();
                        out.items.push(ctx.finish(
                            P,
                            None,
                            Builder::new(sender, ctx.room, salt, part),
                        )?);
                    }
                    None => out.lose("receipt", format!("receipt for unknown message {target}")),
                }
                return Ok(out);
            }
        }
        // Reactions: the complete set, diffed.
        if let Some(r) = msg.find("reactions", NS_REACTIONS) {
            let target = r.get("id").unwrap_or("");
            let Some(t) = Self::resolve(ctx, target) else {
                out.lose("reaction", format!("reactions to unknown message {target}"));
                return Ok(out);
            };
            let t = ctx.ids.first_of(&t);
            let now: BTreeSet<String> = r
                .elements()
                .filter(|e| e.name == "reaction")
                .map(Element::text)
                .filter(|s| !s.is_empty())
                .collect();
            let before = ctx.ids.reactions(ctx.room, sender, &t);
            for (emoji, rid) in &before {
                if !now.contains(emoji) {
                    let salt = (ctx.salt)();
                    out.items.push(ctx.finish(
                        P,
                        None,
                        builder::unreact(sender, ctx.room, salt, *rid, t),
                    )?);
                }
            }
            for emoji in now.iter().filter(|e| !before.contains_key(*e)) {
                let salt = (ctx.salt)();
                let m = ctx.finish(P, None, builder::reaction(sender, ctx.room, salt, t, emoji))?;
                Self::link_all(ctx, &ids, &m);
                out.items.push(m);
            }
            return Ok(out);
        }
        if let Some(r) = msg.find("retract", NS_RETRACT) {
            let target = r.get("id").unwrap_or("");
            match Self::resolve(ctx, target) {
                Some(t) => {
                    let salt = (ctx.salt)();
                    let first = ctx.ids.first_of(&t);
                    out.items.push(ctx.finish(
                        P,
                        ids.first().map(String::as_str),
                        builder::delete(sender, ctx.room, salt, first),
                    )?);
                }
                None => out.lose("delete", format!("retraction of unknown message {target}")),
            }
            return Ok(out);
        }
        let body = msg.find("body", &msg.ns).map(Element::text);
        let attachment = self.attachment_in(ctx, msg, &mut out);
        let part = match (attachment, body) {
            (Some(a), _) => a,
            (None, Some(b)) => self.text_body(ctx, msg, &b, &mut out),
            (None, None) => {
                if msg.elements().any(|e| e.ns == NS_CHATSTATES) {
                    out.lose("typing", "chat states are not carried");
                } else {
                    out.lose(
                        "message",
                        "a message without body, reactions, retraction or receipt",
                    );
                }
                return Ok(out);
            }
        };
        let salt = (ctx.salt)();
        let mut b = Builder::new(sender, ctx.room, salt, part);
        if let Some(r) = msg.find("replace", NS_CORRECT) {
            let target = r.get("id").unwrap_or("");
            match Self::resolve(ctx, target) {
                Some(t) => b = b.replaces(ctx.ids.first_of(&t)),
                None => out.lose(
                    "edit",
                    format!("correction of unknown message {target}; sent as a new message"),
                ),
            }
        } else if let Some(r) = msg.find("reply", NS_REPLY) {
            let target = r.get("id").unwrap_or("");
            match Self::resolve(ctx, target) {
                Some(t) => b = b.in_reply_to(t),
                None => out.lose(
                    "reply",
                    format!("reply to unknown message {target}; sent without the reference"),
                ),
            }
        }
        if let Some(t) = msg.find("thread", &msg.ns) {
            b = b.topic(t.text().into_bytes());
        }
        if let Some(e) = msg.find("ephemeral", NS_EPHEMERAL) {
            match e.get("timer").and_then(|t| t.parse::<u32>().ok()) {
                Some(s) => b = b.expires_after_read(s),
                None => out.lose("expires", "ephemeral timer is not a number of seconds"),
            }
        }
        if msg
            .elements()
            .any(|e| e.ns == NS_CHATSTATES && e.name != "active")
        {
            out.lose("typing", "chat state dropped");
        }
        let m = ctx.finish(P, None, b)?;
        Self::link_all(ctx, &ids, &m);
        out.items.push(m);
        Ok(out)
    }

    fn from_mimi(
        &self,
        ctx: &mut Context<'_>,
        sender: &str,
        msg: &Message,
    ) -> Result<Translated<Element>, AdapterError> {
        let c = msg.content();
        let id = msg.id().map_err(|e| AdapterError::Mimi(e.to_string()))?;
        let sid = format!("mimi-{}", &id.to_hex()[..32]);
        let mut out = Translated::none();
        let reaction = text::is_reaction(c);
        let null = matches!(c.nested_part.body, PartBody::Null);
        let _ = sender;
        // Status reports -> markers.
        if let PartBody::Single(s) = &c.nested_part.body
            && s.content_type.starts_with(STATUS)
        {
            ctx.record(P, None, msg)?;
            let report = MessageStatusReport::decode(&s.content)
                .map_err(|e| AdapterError::Mimi(e.to_string()))?;
            for (target, status) in report.statuses {
                let (name, ns) = match status {
                    Status::Delivered => ("received", NS_RECEIPTS),
                    Status::Read => ("displayed", NS_MARKERS),
                    other => {
                        out.lose("receipt", format!("status {:?} has no XMPP marker", other));
                        continue;
                    }
                };
                match Self::native(ctx, &target) {
                    Some(n) => out.items.push(
                        self.stanza(ctx, &format!("{sid}-{}", out.items.len()))
                            .child(Element::new(name, ns).attr("id", &n)),
                    ),
                    None => out.lose("receipt", format!("{target} was never sent to XMPP")),
                }
            }
            return Ok(out);
        }
        if reaction {
            let target = match (c.replaces, c.in_reply_to) {
                (Some(r), _) if null => ctx
                    .ids
                    .version(&r)
                    .and_then(|v| v.reaction)
                    .map(|(t, _)| t)
                    .or(c.in_reply_to),
                (_, t) => t,
            };
            ctx.record(P, None, msg)?;
            let Some(target) = target.map(|t| ctx.ids.first_of(&t)) else {
                out.lose("reaction", "a reaction without a target");
                return Ok(out);
            };
            let Some(native) = Self::native(ctx, &target) else {
                out.lose(
                    "reaction",
                    format!("the reacted-to message {target} was never sent to XMPP"),
                );
                return Ok(out);
            };
            let mut r = Element::new("reactions", NS_REACTIONS).attr("id", &native);
            for emoji in ctx
                .ids
                .reactions(
                    ctx.room,
                    c.extensions.sender_uri().unwrap_or_default(),
                    &target,
                )
                .keys()
            {
                r = r.child(Element::new("reaction", NS_REACTIONS).text_node(emoji));
            }
            out.items.push(
                self.stanza(ctx, &sid)
                    .child(r)
                    .child(Element::new("store", NS_HINTS)),
            );
            return Ok(out);
        }
        if null {
            let Some(r) = c.replaces else {
                out.lose(
                    "message",
                    "an empty message without a target has no XMPP form",
                );
                return Ok(out);
            };
            let first = ctx.ids.first_of(&r);
            let native = Self::native(ctx, &first);
            ctx.record(P, Some(&sid), msg)?;
            match native {
                Some(n) => out.items.push(
                    self.stanza(ctx, &sid)
                        .child(Element::new("retract", NS_RETRACT).attr("id", &n))
                        .child(Element::new("fallback", NS_FALLBACK).attr("for", NS_RETRACT))
                        .child(Element::new("body", &self.ns).text_node("/me retracted a previous message, but it's unsupported by your client."))
                        .child(Element::new("store", NS_HINTS)),
                ),
                None => out.lose("delete", format!("{first} was never sent to XMPP")),
            }
            return Ok(out);
        }
        let mut stanza = self.stanza(ctx, &sid);
        let mut body: String;
        let mut refs: Vec<Element> = Vec::new();
        if let Some(t) = text::text_of(&c.nested_part) {
            let uris = ctx.uris.clone();
            let (flat, mentions, lost) = match &t.markdown {
                Some(md) => text::markdown_to_flat(md, true, &|d: &str| {
                    d.starts_with("mimi://") && d.contains("/u/")
                }),
                None => (t.plain.clone(), Vec::new(), Vec::new()),
            };
            out.lost.extend(lost);
            body = flat;
            for m in mentions {
                refs.push(
                    Element::new("reference", NS_REFERENCE)
                        .attr("begin", &m.begin.to_string())
                        .attr("end", &m.end.to_string())
                        .attr("type", "mention")
                        .attr("uri", &format!("xmpp:{}", self.jid_of(&uris, &m.uri))),
                );
            }
        } else if let Some(x) = find_external(&c.nested_part) {
            match ctx.media.as_deref_mut() {
                Some(media) => {
                    let name = if x.filename.is_empty() {
                        "attachment"
                    } else {
                        x.filename.as_str()
                    };
                    match media
                        .fetch(&x.url)
                        .and_then(|ct| {
                            builder::open_attachment(x, &ct).map_err(|e| {
                                crate::attachments::MediaError::Transfer(e.to_string())
                            })
                        })
                        .and_then(|p| media.store_native(&p, &x.content_type, name))
                    {
                        Ok(url) => {
                            body = url.clone();
                            stanza = stanza.child(
                                Element::new("x", NS_OOB)
                                    .child(Element::new("url", NS_OOB).text_node(&url)),
                            );
                        }
                        Err(e) => {
                            out.lose("attachment", format!("{}: {e}", x.url));
                            body = format!("[attachment {name} ({})]", x.content_type);
                        }
                    }
                }
                None => {
                    out.lose(
                        "attachment",
                        format!("{} must be fetched and re-uploaded by a bridge", x.url),
                    );
                    body = format!("[attachment {} ({})]", x.filename, x.content_type);
                }
            }
        } else {
            out.lose(
                "content",
                "a body with neither text nor attachment; sent as its plain-text rendering",
            );
            body = mimi_content::render::part_text(&c.nested_part);
        }
        let mut extra: Vec<Element> = Vec::new();
        if let Some(r) = c.replaces {
            let first = ctx.ids.first_of(&r);
            match Self::native(ctx, &first) {
                // XEP-0308 names the original's stanza id / origin-id.
                Some(n) => extra.push(
                    Element::new("replace", NS_CORRECT)
                        .attr("id", &origin_of(ctx, &first).unwrap_or(n)),
                ),
                None => out.lose(
                    "edit",
                    format!("{first} was never sent to XMPP; sent as a new message"),
                ),
            }
        } else if let Some(p) = c.in_reply_to {
            match Self::native(ctx, &p) {
                Some(n) => {
                    let quoted = ctx.ids.version(&p).map(|v| v.excerpt).unwrap_or_default();
                    let fallback: String = quoted.lines().map(|l| format!("> {l}\n")).collect();
                    let n_cp = fallback.chars().count();
                    let shift = |e: &mut Element| {
                        for k in ["begin", "end"] {
                            if let Some(v) = e.get(k).and_then(|v| v.parse::<usize>().ok()) {
                                e.set_attr(k, &(v + n_cp).to_string());
                            }
                        }
                    };
                    refs.iter_mut().for_each(shift);
                    body = format!("{fallback}{body}");
                    extra.push(Element::new("reply", NS_REPLY).attr("id", &n));
                    if n_cp > 0 {
                        extra.push(
                            Element::new("fallback", NS_FALLBACK)
                                .attr("for", NS_REPLY)
                                .child(
                                    Element::new("body", NS_FALLBACK)
                                        .attr("start", "0")
                                        .attr("end", &n_cp.to_string()),
                                ),
                        );
                    }
                }
                None => out.lose(
                    "reply",
                    format!("the replied-to message {p} was never sent to XMPP"),
                ),
            }
        }
        if !c.topic_id.is_empty() {
            let thread =
                String::from_utf8(c.topic_id.clone()).unwrap_or_else(|_| hex::encode(&c.topic_id));
            extra.push(Element::new("thread", &self.ns).text_node(&thread));
        }
        if let Some(e) = c.expires {
            if e.relative {
                extra.push(
                    Element::new("ephemeral", NS_EPHEMERAL).attr("timer", &e.time.to_string()),
                );
            } else {
                out.lose(
                    "expires",
                    "absolute expiry has no XMPP form; delivered without it",
                );
            }
        }
        stanza.children.insert(
            0,
            Node::Element(Element::new("body", &self.ns).text_node(&body)),
        );
        stanza
            .children
            .extend(refs.into_iter().chain(extra).map(Node::Element));
        ctx.record(P, Some(&sid), msg)?;
        out.items.push(stanza);
        Ok(out)
    }
}

/// The XMPP origin-id we gave a MIMI message (XEP-0308 corrections must use it, not the
/// stanza-id), when we sent it.
fn origin_of(ctx: &Context<'_>, id: &MessageId) -> Option<String> {
    let sid = format!("mimi-{}", &id.to_hex()[..32]);
    (ctx.ids.mimi_of(P, ctx.native_room, &sid) == Some(*id)).then_some(sid)
}

fn find_external(p: &NestedPart) -> Option<&mimi_content::ExternalPart> {
    match &p.body {
        PartBody::External(x) => Some(x),
        PartBody::Multi(m) => m.parts.iter().find_map(find_external),
        _ => None,
    }
}
