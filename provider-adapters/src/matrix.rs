//! Matrix: client-server API events (`m.room.message`, `m.reaction`, `m.room.redaction`) to
//! and from MIMI content.
//!
//! | Matrix | MIMI |
//! |---|---|
//! | `m.text` `body` (+ `org.matrix.custom.html` `formatted_body`) | plain, or chooseOne [GFM-MIMI markdown, plain] |
//! | `m.notice`, `m.emote` | plain/markdown (`/me ` prefix for emotes; notice reported) |
//! | `m.relates_to.m.in_reply_to` | `inReplyTo` (reply fallbacks stripped) |
//! | `m.replace` + `m.new_content` | `replaces` = first version, new body |
//! | `m.reaction` `m.annotation` (several per user) | reaction per emoji |
//! | redaction of a reaction / of a message | un-react / delete (moderator redactions reported) |
//! | `m.thread` | `topicId` = the root's MIMI ID |
//! | matrix.to user links, `m.mentions` | links to user URIs |
//! | `m.image/file/audio/video` (`url` or encrypted `file`) | ExternalPart, re-encrypted with AES-128-GCM |
//!
//! MIMI users appear in Matrix as puppets `@<prefix><escaped MIMI URI>:<homeserver>`.

use mimi_content::builder::{self, Builder};
use mimi_content::{Disposition, Message, MessageId, NestedPart, PartBody};
use serde_json::{Value, json};

use crate::text::{self, Mention};
use crate::uris::{escape, unescape};
use crate::{Adapter, AdapterError, Context, Provider, Translated, invalid};

const P: Provider = Provider::Matrix;

/// The Matrix adapter of one homeserver.
#[derive(Debug, Clone)]
pub struct Matrix {
    /// The homeserver's server name (for puppet user IDs).
    pub homeserver: String,
    /// Localpart prefix of puppets (the application service's exclusive namespace).
    pub puppet_prefix: String,
}

impl Matrix {
    /// For `homeserver`, puppets `@mimi_…`.
    pub fn new(homeserver: &str) -> Self {
        Self {
            homeserver: homeserver.to_owned(),
            puppet_prefix: "mimi_".to_owned(),
        }
    }

    /// The Matrix user ID that stands for a MIMI user (the bridged Matrix user itself, or its
    /// puppet).
    pub fn mxid_of(&self, uris: &crate::UriScheme, uri: &str) -> String {
        match uris.native_user(uri) {
            Some((Provider::Matrix, mxid)) => mxid,
            _ => format!("@{}{}:{}", self.puppet_prefix, escape(uri), self.homeserver),
        }
    }

    /// The MIMI user URI of a Matrix user ID (puppets map back to the MIMI user).
    pub fn user_of(&self, uris: &crate::UriScheme, mxid: &str) -> String {
        let local = mxid
            .strip_prefix('@')
            .and_then(|m| m.split_once(':'))
            .filter(|(_, hs)| *hs == self.homeserver)
            .map(|(l, _)| l);
        match local
            .and_then(|l| l.strip_prefix(&self.puppet_prefix))
            .and_then(unescape)
        {
            Some(uri) if uri.starts_with("mimi://") => uri,
            _ => uris.user(P, mxid),
        }
    }

    /// Whether `mxid` is one of our puppets (its events are echoes to drop).
    pub fn is_puppet(&self, mxid: &str) -> bool {
        mxid.strip_prefix('@').is_some_and(|m| {
            m.starts_with(&self.puppet_prefix) && m.ends_with(&format!(":{}", self.homeserver))
        })
    }

    fn link_in(&self, ctx: &Context<'_>) -> impl Fn(&str) -> Option<String> {
        let uris = ctx.uris.clone();
        let me = self.clone();
        move |href: &str| {
            let mxid = href.strip_prefix("https://matrix.to/#/")?;
            let mxid =
                mimi_proto::directory::decode_path_value(mxid).unwrap_or_else(|| mxid.to_owned());
            if !mxid.starts_with('@') {
                return None;
            }
            Some(me.user_of(&uris, &mxid))
        }
    }

    fn resolve(ctx: &Context<'_>, event_id: &str) -> Option<MessageId> {
        ctx.ids.mimi_of(P, ctx.native_room, event_id)
    }

    fn native(ctx: &Context<'_>, id: &MessageId) -> Option<String> {
        ctx.ids
            .native_of(P, ctx.native_room, id)
            .or_else(|| ctx.ids.native_of(P, ctx.native_room, &ctx.ids.first_of(id)))
    }

    /// The body of a message content (text or attachment).
    fn body(
        &self,
        ctx: &mut Context<'_>,
        content: &Value,
        out: &mut Translated<Message>,
    ) -> NestedPart {
        let msgtype = content["msgtype"].as_str().unwrap_or("m.text");
        let mut plain = strip_reply_fallback(content["body"].as_str().unwrap_or(""));
        match msgtype {
            "m.image" | "m.file" | "m.audio" | "m.video" => {
                return self.attachment(ctx, content, msgtype, out);
            }
            "m.location" => {
                out.lose(
                    "location",
                    format!(
                        "m.location {} sent as text",
                        content["geo_uri"].as_str().unwrap_or("")
                    ),
                );
                return builder::plain_part(&format!(
                    "📍 {plain} {}",
                    content["geo_uri"].as_str().unwrap_or("")
                ));
            }
            "m.notice" => out.lose("notice", "m.notice sent as an ordinary message"),
            "m.emote" => plain = format!("/me {plain}"),
            "m.text" => {}
            other => out.lose("msgtype", format!("unknown msgtype {other} sent as text")),
        }
        let html = (content["format"].as_str() == Some("org.matrix.custom.html"))
            .then(|| content["formatted_body"].as_str())
            .flatten();
        let markdown = match html {
            Some(h) => {
                let (mut md, lost) = text::html_to_markdown(h, &self.link_in(ctx));
                out.lost.extend(lost);
                if msgtype == "m.emote" {
                    md = format!("/me {md}");
                }
                Some(md)
            }
            None => self.mentions_in_plain(ctx, content, &plain, out),
        };
        text::body_for(markdown.as_deref(), &plain)
    }

    /// `m.mentions` without HTML: link the first occurrence of each mentioned user's
    /// localpart in the plain body.
    fn mentions_in_plain(
        &self,
        ctx: &Context<'_>,
        content: &Value,
        plain: &str,
        out: &mut Translated<Message>,
    ) -> Option<String> {
        let ids = content["m.mentions"]["user_ids"].as_array()?;
        let mut mentions = Vec::new();
        for u in ids.iter().filter_map(Value::as_str) {
            let local = u.trim_start_matches('@').split(':').next().unwrap_or("");
            let found = [u.to_owned(), format!("@{local}"), local.to_owned()]
                .into_iter()
                .find_map(|needle| plain.find(&needle).map(|i| (i, needle)));
            match found.filter(|_| !local.is_empty()) {
                Some((i, needle)) => {
                    let begin = plain[..i].chars().count();
                    mentions.push(Mention {
                        begin,
                        end: begin + needle.chars().count(),
                        uri: self.user_of(ctx.uris, u),
                    });
                }
                None => out.lose(
                    "mention",
                    format!("{u} is mentioned but not named in the text"),
                ),
            }
        }
        if content["m.mentions"]["room"].as_bool() == Some(true) {
            out.lose("mention", "@room has no MIMI form");
        }
        (!mentions.is_empty()).then(|| text::plain_with_mentions(plain, &mentions))
    }

    fn attachment(
        &self,
        ctx: &mut Context<'_>,
        content: &Value,
        msgtype: &str,
        out: &mut Translated<Message>,
    ) -> NestedPart {
        let name = content["filename"]
            .as_str()
            .or_else(|| content["body"].as_str())
            .unwrap_or("file")
            .to_owned();
        let mime = content["info"]["mimetype"]
            .as_str()
            .unwrap_or("application/octet-stream")
            .to_owned();
        let url = content["file"]["url"]
            .as_str()
            .or_else(|| content["url"].as_str())
            .unwrap_or("")
            .to_owned();
        let fallback = |out: &mut Translated<Message>, why: String| {
            out.lose("attachment", why);
            builder::plain_part(&format!("[{msgtype} {name} ({mime})]"))
        };
        let Some(media) = ctx.media.as_deref_mut() else {
            return fallback(
                out,
                format!(
                    "{url} needs re-encryption to AES-GCM by a bridge; sent as a text placeholder"
                ),
            );
        };
        let plain = match media.fetch(&url).and_then(|b| {
            if content["file"].is_object() {
                crate::attachments::matrix_decrypt(&content["file"], &b)
            } else {
                Ok(b)
            }
        }) {
            Ok(p) => p,
            Err(e) => return fallback(out, format!("{url}: {e}")),
        };
        let sealed = crate::attachments::seal_for_mimi(&plain, &mime, &name);
        match media.store_mimi(&sealed.ciphertext) {
            Ok(u) => {
                let mut part = sealed.part;
                part.url = u;
                let inline = matches!(msgtype, "m.image" | "m.video");
                NestedPart::new(
                    if inline {
                        Disposition::Inline
                    } else {
                        Disposition::Attachment
                    },
                    PartBody::External(part),
                )
            }
            Err(e) => fallback(out, format!("upload failed: {e}")),
        }
    }
}

/// Strips a Matrix reply fallback (leading `> ` lines and the blank line after them).
pub fn strip_reply_fallback(body: &str) -> String {
    if !body.starts_with("> ") {
        return body.to_owned();
    }
    let mut lines = body.lines().skip_while(|l| l.starts_with('>'));
    let mut rest: Vec<&str> = Vec::new();
    if let Some(first) = lines.next()
        && !first.is_empty()
    {
        rest.push(first);
    }
    rest.extend(lines);
    rest.join("\n")
}

fn str_at<'a>(v: &'a Value, path: &[&str]) -> Option<&'a str> {
    path.iter()
        .try_fold(v, |v, k| v.get(*k))
        .and_then(Value::as_str)
}

impl Adapter for Matrix {
    const PROVIDER: Provider = P;
    type Native = Value;

    fn parse(&self, bytes: &[u8]) -> Result<Value, AdapterError> {
        let v: Value =
            serde_json::from_slice(bytes).map_err(|e| invalid(P, format!("not JSON: {e}")))?;
        if !v.is_object() || v["type"].as_str().is_none() {
            return Err(invalid(P, "an event needs a string \"type\""));
        }
        if !v["content"].is_object() {
            return Err(invalid(P, "an event needs an object \"content\""));
        }
        Ok(v)
    }

    fn serialize(&self, native: &Value) -> Vec<u8> {
        serde_json::to_vec_pretty(native).unwrap_or_default()
    }

    fn native_id(&self, native: &Value) -> Option<String> {
        native["event_id"]
            .as_str()
            .or_else(|| native["txn_id"].as_str())
            .map(str::to_owned)
    }

    fn to_mimi(
        &self,
        ctx: &mut Context<'_>,
        sender: &str,
        ev: &Value,
    ) -> Result<Translated<Message>, AdapterError> {
        let event_id = self.native_id(ev);
        let content = &ev["content"];
        let relates = &content["m.relates_to"];
        let mut out = Translated::none();
        let salt = (ctx.salt)();
        match ev["type"].as_str().unwrap_or("") {
            "m.room.message" => {
                if relates["rel_type"].as_str() == Some("m.replace") {
                    let target = relates["event_id"].as_str().unwrap_or("");
                    let new = if content["m.new_content"].is_object() {
                        &content["m.new_content"]
                    } else {
                        content
                    };
                    let body = self.body(ctx, new, &mut out);
                    let b = match Self::resolve(ctx, target) {
                        Some(t) => {
                            builder::edit(sender, ctx.room, salt, ctx.ids.first_of(&t), body)
                        }
                        None => {
                            out.lose(
                                "edit",
                                format!(
                                    "the edited event {target} is unknown; sent as a new message"
                                ),
                            );
                            Builder::new(sender, ctx.room, salt, body)
                        }
                    };
                    out.items.push(ctx.finish(P, event_id.as_deref(), b)?);
                    return Ok(out);
                }
                let body = self.body(ctx, content, &mut out);
                let mut b = Builder::new(sender, ctx.room, salt, body);
                let thread = (relates["rel_type"].as_str() == Some("m.thread"))
                    .then(|| relates["event_id"].as_str())
                    .flatten();
                if let Some(root) = thread {
                    match Self::resolve(ctx, root) {
                        Some(r) => b = b.topic(ctx.ids.first_of(&r).as_bytes().to_vec()),
                        None => out.lose(
                            "thread",
                            format!("thread root {root} is unknown; sent outside the thread"),
                        ),
                    }
                }
                let falling_back = relates["is_falling_back"].as_bool() == Some(true);
                if let Some(parent) =
                    str_at(relates, &["m.in_reply_to", "event_id"]).filter(|_| !falling_back)
                {
                    match Self::resolve(ctx, parent) {
                        Some(p) => b = b.in_reply_to(p),
                        None => out.lose("reply", format!("the replied-to event {parent} is unknown; sent without the reference")),
                    }
                }
                out.items.push(ctx.finish(P, event_id.as_deref(), b)?);
            }
            "m.reaction" => {
                let target = relates["event_id"].as_str().unwrap_or("");
                let key = relates["key"].as_str().unwrap_or("");
                if key.is_empty() {
                    return Err(invalid(P, "m.reaction without m.relates_to.key"));
                }
                match Self::resolve(ctx, target) {
                    Some(t) => {
                        let t = ctx.ids.first_of(&t);
                        if ctx.ids.reactions(ctx.room, sender, &t).contains_key(key) {
                            out.lose(
                                "reaction",
                                format!("{sender} already reacted {key}; Matrix counts it once"),
                            );
                            return Ok(out);
                        }
                        out.items.push(ctx.finish(
                            P,
                            event_id.as_deref(),
                            builder::reaction(sender, ctx.room, salt, t, key),
                        )?);
                    }
                    None => out.lose(
                        "reaction",
                        format!("the reacted-to event {target} is unknown"),
                    ),
                }
            }
            "m.room.redaction" => {
                let target = content["redacts"]
                    .as_str()
                    .or_else(|| ev["redacts"].as_str())
                    .unwrap_or("");
                let Some(t) = Self::resolve(ctx, target) else {
                    out.lose("delete", format!("the redacted event {target} is unknown"));
                    return Ok(out);
                };
                let v = ctx.ids.version(&t);
                if v.as_ref().is_some_and(|v| v.sender != sender) {
                    out.lose(
                        "delete",
                        format!(
                            "a redaction by {sender} of another user's message has no MIMI form"
                        ),
                    );
                    return Ok(out);
                }
                let b = match v.and_then(|v| v.reaction) {
                    Some((target, _)) => builder::unreact(sender, ctx.room, salt, t, target),
                    None => builder::delete(sender, ctx.room, salt, ctx.ids.first_of(&t)),
                };
                out.items.push(ctx.finish(P, event_id.as_deref(), b)?);
            }
            other => out.lose("event", format!("{other} events are not carried")),
        }
        Ok(out)
    }

    fn from_mimi(
        &self,
        ctx: &mut Context<'_>,
        sender: &str,
        msg: &Message,
    ) -> Result<Translated<Value>, AdapterError> {
        let c = msg.content();
        let id = msg.id().map_err(|e| AdapterError::Mimi(e.to_string()))?;
        let txn = id.to_hex()[..32].to_owned();
        let mut out = Translated::none();
        let null = matches!(c.nested_part.body, PartBody::Null);
        let reaction = text::is_reaction(c);
        let event = |t: &str, content: Value| json!({"type": t, "txn_id": txn, "content": content});
        // Un-react and delete: redactions.
        if null {
            let Some(r) = c.replaces else {
                out.lose(
                    "message",
                    "an empty message without a target has no Matrix form",
                );
                return Ok(out);
            };
            let target = if reaction { r } else { ctx.ids.first_of(&r) };
            ctx.record(P, Some(&txn), msg)?;
            match Self::native(ctx, &target) {
                Some(ev) => out.items.push(json!({"type": "m.room.redaction", "txn_id": txn, "redacts": ev, "content": {"redacts": ev}})),
                None => out.lose(if reaction { "un-react" } else { "delete" }, format!("{target} was never sent to Matrix")),
            }
            return Ok(out);
        }
        if reaction {
            let emoji = text::text_of(&c.nested_part)
                .map(|t| t.plain)
                .unwrap_or_default();
            let Some(target) = c.in_reply_to else {
                out.lose("reaction", "a reaction without a target");
                return Ok(out);
            };
            ctx.record(P, Some(&txn), msg)?;
            match Self::native(ctx, &ctx.ids.first_of(&target)) {
                Some(ev) => out.items.push(event("m.reaction", json!({"m.relates_to": {"rel_type": "m.annotation", "event_id": ev, "key": emoji}}))),
                None => out.lose("reaction", format!("the reacted-to message {target} was never sent to Matrix")),
            }
            return Ok(out);
        }
        let mut content = self.content_of(ctx, sender, &c.nested_part, &mut out);
        if let Some(status) = content.get("status_report") {
            out.lose("receipt", format!("message-status report {status} is sent as Matrix read receipts by the bridge, not as an event"));
            ctx.record(P, None, msg)?;
            return Ok(out);
        }
        if c.expires.is_some() {
            out.lose(
                "expires",
                "Matrix cannot honour expiring messages; delivered without expiry",
            );
        }
        let mut relates = serde_json::Map::new();
        if let Some(p) = c.in_reply_to {
            match Self::native(ctx, &p) {
                Some(ev) => {
                    relates.insert("m.in_reply_to".into(), json!({"event_id": ev}));
                }
                None => out.lose(
                    "reply",
                    format!("the replied-to message {p} was never sent to Matrix"),
                ),
            }
        }
        if !c.topic_id.is_empty() {
            match MessageId::try_from(c.topic_id.as_slice())
                .ok()
                .and_then(|t| Self::native(ctx, &t))
            {
                Some(root) => {
                    relates.insert("rel_type".into(), json!("m.thread"));
                    relates.insert("event_id".into(), json!(root));
                    relates.insert("is_falling_back".into(), json!(c.in_reply_to.is_none()));
                }
                None => out.lose(
                    "thread",
                    "the topic is not a message Matrix knows; sent outside a thread",
                ),
            }
        }
        if let Some(r) = c.replaces {
            let first = ctx.ids.first_of(&r);
            match Self::native(ctx, &first) {
                Some(ev) => {
                    let mut new = content.clone();
                    if let Some(o) = content.as_object_mut() {
                        o.insert(
                            "body".into(),
                            json!(format!("* {}", new["body"].as_str().unwrap_or(""))),
                        );
                        if let Some(f) = new["formatted_body"].as_str().map(|f| format!("* {f}")) {
                            o.insert("formatted_body".into(), json!(f));
                        }
                    }
                    if let Some(n) = new.as_object_mut() {
                        n.remove("m.mentions");
                    }
                    content["m.new_content"] = new;
                    relates = serde_json::Map::new();
                    relates.insert("rel_type".into(), json!("m.replace"));
                    relates.insert("event_id".into(), json!(ev));
                }
                None => out.lose(
                    "edit",
                    format!(
                        "the edited message {first} was never sent to Matrix; sent as a new message"
                    ),
                ),
            }
        }
        if !relates.is_empty() {
            content["m.relates_to"] = Value::Object(relates);
        }
        ctx.record(P, Some(&txn), msg)?;
        out.items.push(event("m.room.message", content));
        Ok(out)
    }
}

impl Matrix {
    /// The `m.room.message` content of a MIMI body.
    fn content_of(
        &self,
        ctx: &mut Context<'_>,
        _sender: &str,
        part: &NestedPart,
        out: &mut Translated<Value>,
    ) -> Value {
        if let PartBody::Single(s) = &part.body
            && s.content_type.starts_with(mimi_content::status::MEDIA_TYPE)
        {
            return json!({"status_report": hex::encode(&s.content)});
        }
        if let Some(t) = text::text_of(part) {
            let mut content = json!({"msgtype": "m.text", "body": t.plain});
            let mut mentioned = Vec::new();
            if let Some(md) = &t.markdown {
                let me = self.clone();
                let uris = ctx.uris.clone();
                let users = std::cell::RefCell::new(Vec::new());
                let html = text::markdown_to_html(md, &|dest: &str| {
                    if dest.starts_with("mimi://") && dest.contains("/u/") {
                        let mxid = me.mxid_of(&uris, dest);
                        users.borrow_mut().push(mxid.clone());
                        Some(format!("https://matrix.to/#/{mxid}"))
                    } else {
                        None
                    }
                });
                mentioned = users.into_inner();
                if md.trim() != text::escape_markdown(&t.plain).trim() {
                    content["format"] = json!("org.matrix.custom.html");
                    content["formatted_body"] = json!(html);
                }
            }
            content["m.mentions"] = json!({"user_ids": mentioned});
            return content;
        }
        if let PartBody::External(x) = &part.body {
            return self.attachment_out(ctx, x, part.disposition, out);
        }
        if let PartBody::Multi(m) = &part.body
            && let Some(x) = m.parts.iter().find_map(|p| {
                if let PartBody::External(x) = &p.body {
                    Some((x, p.disposition))
                } else {
                    None
                }
            })
        {
            out.lose(
                "attachment",
                "only the first attachment of a multipart message is carried",
            );
            return self.attachment_out(ctx, x.0, x.1, out);
        }
        out.lose(
            "content",
            "a body with neither text nor attachment; sent as its plain-text rendering",
        );
        json!({"msgtype": "m.text", "body": mimi_content::render::part_text(part)})
    }

    fn attachment_out(
        &self,
        ctx: &mut Context<'_>,
        x: &mimi_content::ExternalPart,
        d: Disposition,
        out: &mut Translated<Value>,
    ) -> Value {
        let msgtype = match x.content_type.split('/').next() {
            Some("image") => "m.image",
            Some("video") => "m.video",
            Some("audio") => "m.audio",
            _ => "m.file",
        };
        let _ = d;
        let name = if x.filename.is_empty() {
            "attachment".to_owned()
        } else {
            x.filename.clone()
        };
        let placeholder = |out: &mut Translated<Value>, why: String| {
            out.lose("attachment", why);
            json!({"msgtype": "m.text", "body": format!("[attachment {name} ({}, {} bytes)]", x.content_type, x.size)})
        };
        let Some(media) = ctx.media.as_deref_mut() else {
            return placeholder(
                out,
                format!(
                    "{} must be fetched and re-uploaded to Matrix by a bridge",
                    x.url
                ),
            );
        };
        let plain = match media.fetch(&x.url).and_then(|ct| {
            builder::open_attachment(x, &ct)
                .map_err(|e| crate::attachments::MediaError::Transfer(e.to_string()))
        }) {
            Ok(p) => p,
            Err(e) => return placeholder(out, format!("{}: {e}", x.url)),
        };
        match media.store_native(&plain, &x.content_type, &name) {
            Ok(mxc) => {
                json!({"msgtype": msgtype, "body": name, "filename": name, "url": mxc, "info": {"mimetype": x.content_type, "size": plain.len()}})
            }
            Err(e) => placeholder(out, format!("upload failed: {e}")),
        }
    }
}
