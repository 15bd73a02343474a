//! Wire: `GenericMessage` (protobuf, from `mimi-proto`) to and from MIMI content, as a library
//! a Wire client or bridge embeds.
//!
//! | Wire | MIMI |
//! |---|---|
//! | `text.content` + `mentions` (UTF-16 offsets, qualified user IDs) | plain, or markdown with user-URI links |
//! | `text.quote.quoted_message_id` | `inReplyTo` (`quoted_message_sha256` is not computed) |
//! | `edited{replacing_message_id, text}` | `replaces` = first version |
//! | `deleted{message_id}` | delete |
//! | `reaction{emoji, message_id}` (one slot per user; `""` clears) | un-react of the previous + react |
//! | `ephemeral{expire_after_millis, …}` | `expires` relative (seconds, rounded up) |
//! | `asset` (AES-256-CBC, IV prepended) | ExternalPart, re-encrypted to AES-128-GCM by a bridge |
//! | `confirmation{DELIVERED/READ}` | message-status report |
//! | `hidden`, `knock`, `location`, `composite`, `buttonAction` | reported; text fallbacks where readable |
//!
//! Wire message IDs for MIMI messages are UUIDs derived from the MIMI ID (version 8).

use mimi_content::builder::{self, Builder};
use mimi_content::status::{MEDIA_TYPE as STATUS, MessageStatusReport, Status};
use mimi_content::{Message, MessageId, NestedPart, PartBody};
use mimi_proto::wire_pb::{self as pb, generic_message::Content};
use prost::Message as _;

use crate::text::{self, Mention};
use crate::{Adapter, AdapterError, Context, Provider, Translated, invalid};

const P: Provider = Provider::Wire;

/// The Wire adapter.
#[derive(Debug, Clone)]
pub struct Wire {
    /// The backend domain of qualified IDs minted for MIMI users.
    pub domain: String,
}

/// A UUID (version 8, RFC 9562) derived from a MIMI message ID.
pub fn uuid_of(id: &MessageId) -> String {
    let mut b = [0u8; 16];
    b.copy_from_slice(&id.as_bytes()[1..17]);
    b[6] = (b[6] & 0x0f) | 0x80;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h = hex::encode(b);
    format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    )
}

impl Wire {
    /// For MIMI users shown in Wire under `domain`.
    pub fn new(domain: &str) -> Self {
        Self {
            domain: domain.to_owned(),
        }
    }

    /// The qualified Wire user ID standing for a MIMI user.
    pub fn qualified_of(&self, uris: &crate::UriScheme, uri: &str) -> pb::QualifiedUserId {
        if let Some((Provider::Wire, q)) = uris.native_user(uri)
            && let Some((id, domain)) = q.split_once('@')
        {
            return pb::QualifiedUserId {
                id: id.to_owned(),
                domain: domain.to_owned(),
            };
        }
        let digest = <sha2::Sha256 as sha2::Digest>::digest(uri.as_bytes());
        let mut fake = [0u8; 32];
        fake[1..].copy_from_slice(&digest[..31]);
        pb::QualifiedUserId {
            id: uuid_of(&MessageId(fake)),
            domain: self.domain.clone(),
        }
    }

    fn resolve(ctx: &Context<'_>, id: &str) -> Option<MessageId> {
        ctx.ids.mimi_of(P, ctx.native_room, id)
    }

    fn native(ctx: &Context<'_>, id: &MessageId) -> Option<String> {
        ctx.ids
            .native_of(P, ctx.native_room, id)
            .or_else(|| ctx.ids.native_of(P, ctx.native_room, &ctx.ids.first_of(id)))
    }

    fn text_part(
        &self,
        ctx: &Context<'_>,
        t: &pb::Text,
        out: &mut Translated<Message>,
    ) -> NestedPart {
        if !t.link_preview.is_empty() {
            out.lose(
                "link preview",
                format!(
                    "{} link preview(s) not carried (receivers can render their own)",
                    t.link_preview.len()
                ),
            );
        }
        let mut mentions = Vec::new();
        for m in &t.mentions {
            let (Ok(s), Ok(l)) = (usize::try_from(m.start), usize::try_from(m.length)) else {
                continue;
            };
            let (Some(b), Some(e)) = (
                text::cp_offset_from_utf16(&t.content, s),
                text::cp_offset_from_utf16(&t.content, s + l),
            ) else {
                out.lose(
                    "mention",
                    format!("mention at UTF-16 offset {s} splits a character"),
                );
                continue;
            };
            let who = match &m.mention_type {
                Some(pb::mention::MentionType::QualifiedUserId(q)) => {
                    format!("{}@{}", q.id, q.domain)
                }
                Some(pb::mention::MentionType::UserId(u)) => u.clone(),
                None => {
                    out.lose("mention", "a mention without a user");
                    continue;
                }
            };
            mentions.push(Mention {
                begin: b,
                end: e,
                uri: ctx.uris.user(P, &who),
            });
        }
        let md = (!mentions.is_empty()).then(|| text::plain_with_mentions(&t.content, &mentions));
        text::body_for(md.as_deref(), &t.content)
    }

    fn asset_part(
        &self,
        ctx: &mut Context<'_>,
        a: &pb::Asset,
        out: &mut Translated<Message>,
    ) -> Option<NestedPart> {
        let orig = a.original.clone().unwrap_or_default();
        let name = orig.name.clone().unwrap_or_else(|| "file".into());
        let placeholder = |out: &mut Translated<Message>, why: String| {
            out.lose("attachment", why);
            Some(builder::plain_part(&format!(
                "[file {name} ({}, {} bytes)]",
                orig.mime_type, orig.size
            )))
        };
        let Some(pb::asset::Status::Uploaded(r)) = &a.status else {
            out.lose("attachment", "asset announced but not uploaded yet (the uploaded version follows under the same ID)");
            return None;
        };
        let url = format!(
            "wire-asset://{}/{}",
            r.asset_domain.clone().unwrap_or_default(),
            r.asset_id.clone().unwrap_or_default()
        );
        let Some(media) = ctx.media.as_deref_mut() else {
            return placeholder(
                out,
                format!("{url} (AES-CBC) must be fetched and re-encrypted to AES-GCM by a bridge"),
            );
        };
        if r.encryption == Some(pb::EncryptionAlgorithm::AesGcm as i32) {
            return placeholder(
                out,
                "AES-GCM Wire assets are not supported by this bridge".into(),
            );
        }
        let plain = match media
            .fetch(&url)
            .and_then(|blob| crate::attachments::wire_decrypt(&r.otr_key, &r.sha256, &blob))
        {
            Ok(p) => p,
            Err(e) => return placeholder(out, format!("{url}: {e}")),
        };
        let sealed = crate::attachments::seal_for_mimi(&plain, &orig.mime_type, &name);
        match media.store_mimi(&sealed.ciphertext) {
            Ok(u) => {
                let mut part = sealed.part;
                part.url = u;
                if let Some(c) = &orig.caption {
                    part.description.clone_from(c);
                }
                Some(NestedPart::new(
                    mimi_content::Disposition::Attachment,
                    PartBody::External(part),
                ))
            }
            Err(e) => placeholder(out, format!("upload failed: {e}")),
        }
    }

    fn content_to_mimi(
        &self,
        ctx: &mut Context<'_>,
        sender: &str,
        id: &str,
        content: &Content,
        expires_ms: Option<i64>,
        out: &mut Translated<Message>,
    ) -> Result<(), AdapterError> {
        let salt = (ctx.salt)();
        let with_expiry = |b: Builder| match expires_ms {
            Some(ms) => b.expires_after_read(
                u32::try_from((ms.max(0) as u64).div_ceil(1000)).unwrap_or(u32::MAX),
            ),
            None => b,
        };
        match content {
            Content::Text(t) => {
                let body = self.text_part(ctx, t, out);
                let mut b = Builder::new(sender, ctx.room, salt, body);
                if let Some(q) = &t.quote {
                    match Self::resolve(ctx, &q.quoted_message_id) {
                        Some(p) => b = b.in_reply_to(p),
                        None => out.lose(
                            "reply",
                            format!(
                                "quoted message {} is unknown; sent without the reference",
                                q.quoted_message_id
                            ),
                        ),
                    }
                }
                out.items.push(ctx.finish(P, Some(id), with_expiry(b))?);
            }
            Content::Edited(e) => {
                let Some(pb::message_edit::Content::Text(t)) = &e.content else {
                    out.lose("edit", "only text edits are carried");
                    return Ok(());
                };
                let body = self.text_part(ctx, t, out);
                let b = match Self::resolve(ctx, &e.replacing_message_id) {
                    Some(target) => {
                        builder::edit(sender, ctx.room, salt, ctx.ids.first_of(&target), body)
                    }
                    None => {
                        out.lose(
                            "edit",
                            format!(
                                "edited message {} is unknown; sent as a new message",
                                e.replacing_message_id
                            ),
                        );
                        Builder::new(sender, ctx.room, salt, body)
                    }
                };
                out.items.push(ctx.finish(P, Some(id), b)?);
            }
            Content::Deleted(d) => match Self::resolve(ctx, &d.message_id) {
                Some(t) => {
                    let first = ctx.ids.first_of(&t);
                    out.items.push(ctx.finish(
                        P,
                        Some(id),
                        builder::delete(sender, ctx.room, salt, first),
                    )?);
                }
                None => out.lose(
                    "delete",
                    format!("deleted message {} is unknown", d.message_id),
                ),
            },
            Content::Reaction(r) => {
                let Some(t) = Self::resolve(ctx, &r.message_id) else {
                    out.lose(
                        "reaction",
                        format!("reacted-to message {} is unknown", r.message_id),
                    );
                    return Ok(());
                };
                let t = ctx.ids.first_of(&t);
                let emoji = r.emoji.clone().unwrap_or_default();
                let before = ctx.ids.reactions(ctx.room, sender, &t);
                if before.contains_key(&emoji) && before.len() == 1 {
                    return Ok(()); // the same single slot again
                }
                // One slot: withdraw what was there, then react.
                for rid in before.values() {
                    let salt = (ctx.salt)();
                    out.items.push(ctx.finish(
                        P,
                        None,
                        builder::unreact(sender, ctx.room, salt, *rid, t),
                    )?);
                }
                if !emoji.is_empty() {
                    out.items.push(ctx.finish(
                        P,
                        Some(id),
                        builder::reaction(sender, ctx.room, salt, t, &emoji),
                    )?);
                }
            }
            Content::Asset(a) => {
                if let Some(part) = self.asset_part(ctx, a, out) {
                    out.items.push(ctx.finish(
                        P,
                        Some(id),
                        with_expiry(Builder::new(sender, ctx.room, salt, part)),
                    )?);
                }
            }
            Content::Confirmation(c) => {
                let status = if c.r#type == pb::confirmation::Type::Read as i32 {
                    Status::Read
                } else {
                    Status::Delivered
                };
                let mut statuses = Vec::new();
                for m in std::iter::once(&c.first_message_id).chain(&c.more_message_ids) {
                    match Self::resolve(ctx, m) {
                        Some(t) => statuses.push((t, status)),
                        None => out.lose("receipt", format!("receipt for unknown message {m}")),
                    }
                }
                if !statuses.is_empty() {
                    let part = NestedPart::new(
                        mimi_content::Disposition::Unspecified,
                        PartBody::Single(mimi_content::SinglePart {
                            content_type: STATUS.into(),
                            content: MessageStatusReport { statuses }.encode(),
                        }),
                    );
                    out.items.push(ctx.finish(
                        P,
                        None,
                        Builder::new(sender, ctx.room, salt, part),
                    )?);
                }
            }
            Content::Knock(_) => {
                out.lose("knock", "knock sent as a text fallback");
                out.items.push(ctx.finish(
                    P,
                    Some(id),
                    with_expiry(builder::text(sender, ctx.room, salt, "🔔 (knock)")),
                )?);
            }
            Content::Location(l) => {
                out.lose(
                    "location",
                    "location sent as text with a geo: URI (zoom dropped)",
                );
                let t = format!(
                    "📍 {} geo:{},{}",
                    l.name.clone().unwrap_or_default(),
                    l.latitude,
                    l.longitude
                );
                out.items.push(ctx.finish(
                    P,
                    Some(id),
                    with_expiry(builder::text(sender, ctx.room, salt, t.trim())),
                )?);
            }
            Content::Composite(c) => {
                let mut lines = Vec::new();
                for i in &c.items {
                    match &i.content {
                        Some(pb::composite::item::Content::Text(t)) => {
                            lines.push(t.content.clone())
                        }
                        Some(pb::composite::item::Content::Button(b)) => {
                            lines.push(format!("[{}]", b.text))
                        }
                        None => {}
                    }
                }
                out.lose(
                    "buttons",
                    "composite message sent as text; buttons cannot be pressed from MIMI",
                );
                out.items.push(ctx.finish(
                    P,
                    Some(id),
                    builder::text(sender, ctx.room, salt, &lines.join("\n")),
                )?);
            }
            Content::Ephemeral(e) => {
                let inner = match &e.content {
                    Some(pb::ephemeral::Content::Text(t)) => Content::Text(t.clone()),
                    Some(pb::ephemeral::Content::Knock(k)) => Content::Knock(*k),
                    Some(pb::ephemeral::Content::Asset(a)) => Content::Asset(a.clone()),
                    Some(pb::ephemeral::Content::Location(l)) => Content::Location(l.clone()),
                    None => return Ok(()),
                };
                self.content_to_mimi(ctx, sender, id, &inner, Some(e.expire_after_millis), out)?;
            }
            Content::Hidden(_) => out.lose(
                "hide",
                "\"delete for me\" concerns only the sender's own devices",
            ),
            Content::Multipart(m) => {
                if let Some(t) = &m.text {
                    self.content_to_mimi(
                        ctx,
                        sender,
                        id,
                        &Content::Text(t.clone()),
                        expires_ms,
                        out,
                    )?;
                }
                if !m.attachments.is_empty() {
                    out.lose(
                        "attachment",
                        "multipart attachments (cells) are not carried",
                    );
                }
            }
            Content::ButtonAction(_) | Content::ButtonActionConfirmation(_) => {
                out.lose("buttons", "button actions are not carried")
            }
        }
        Ok(())
    }
}

impl Adapter for Wire {
    const PROVIDER: Provider = P;
    type Native = pb::GenericMessage;

    fn parse(&self, bytes: &[u8]) -> Result<pb::GenericMessage, AdapterError> {
        pb::GenericMessage::decode(bytes)
            .map_err(|e| invalid(P, format!("not a GenericMessage: {e}")))
    }

    fn serialize(&self, native: &pb::GenericMessage) -> Vec<u8> {
        native.encode_to_vec()
    }

    fn native_id(&self, native: &pb::GenericMessage) -> Option<String> {
        Some(native.message_id.clone())
    }

    fn to_mimi(
        &self,
        ctx: &mut Context<'_>,
        sender: &str,
        m: &pb::GenericMessage,
    ) -> Result<Translated<Message>, AdapterError> {
        let mut out = Translated::none();
        let Some(content) = &m.content else {
            out.lose(
                "message",
                "a GenericMessage without content (an unknown type)",
            );
            return Ok(out);
        };
        self.content_to_mimi(ctx, sender, &m.message_id, content, None, &mut out)?;
        Ok(out)
    }

    fn from_mimi(
        &self,
        ctx: &mut Context<'_>,
        _sender: &str,
        msg: &Message,
    ) -> Result<Translated<pb::GenericMessage>, AdapterError> {
        let c = msg.content();
        let id = msg.id().map_err(|e| AdapterError::Mimi(e.to_string()))?;
        let uuid = uuid_of(&id);
        let mut out = Translated::none();
        let gm = |content: Content| pb::GenericMessage {
            message_id: uuid.clone(),
            content: Some(content),
            unknown_strategy: None,
        };
        let null = matches!(c.nested_part.body, PartBody::Null);
        let sender = c.extensions.sender_uri().unwrap_or_default().to_owned();
        if let PartBody::Single(s) = &c.nested_part.body
            && s.content_type.starts_with(STATUS)
        {
            ctx.record(P, None, msg)?;
            let report = MessageStatusReport::decode(&s.content)
                .map_err(|e| AdapterError::Mimi(e.to_string()))?;
            for kind in [Status::Delivered, Status::Read] {
                let ids: Vec<String> = report
                    .statuses
                    .iter()
                    .filter(|(_, st)| *st == kind)
                    .filter_map(|(t, _)| Self::native(ctx, t))
                    .collect();
                if let Some((first, more)) = ids.split_first() {
                    let t = if kind == Status::Read {
                        pb::confirmation::Type::Read
                    } else {
                        pb::confirmation::Type::Delivered
                    };
                    out.items.push(gm(Content::Confirmation(pb::Confirmation {
                        r#type: t as i32,
                        first_message_id: first.clone(),
                        more_message_ids: more.to_vec(),
                    })));
                }
            }
            if report
                .statuses
                .iter()
                .any(|(_, s)| !matches!(s, Status::Delivered | Status::Read))
            {
                out.lose("receipt", "only delivered and read statuses exist in Wire");
            }
            return Ok(out);
        }
        if text::is_reaction(c) {
            let target = match c.replaces {
                Some(r) if null => ctx
                    .ids
                    .version(&r)
                    .and_then(|v| v.reaction)
                    .map(|(t, _)| t)
                    .or(c.in_reply_to),
                _ => c.in_reply_to,
            };
            ctx.record(P, Some(&uuid), msg)?;
            let Some(target) = target.map(|t| ctx.ids.first_of(&t)) else {
                out.lose("reaction", "a reaction without a target");
                return Ok(out);
            };
            let Some(native) = Self::native(ctx, &target) else {
                out.lose(
                    "reaction",
                    format!("the reacted-to message {target} was never sent to Wire"),
                );
                return Ok(out);
            };
            let current = ctx.ids.reactions(ctx.room, &sender, &target);
            if current.len() > 1 {
                out.lose(
                    "reaction",
                    "Wire keeps one reaction per user; only the latest is shown",
                );
            }
            let emoji = if null {
                current.keys().next_back().cloned().unwrap_or_default()
            } else {
                text::text_of(&c.nested_part)
                    .map(|t| t.plain)
                    .unwrap_or_default()
            };
            out.items.push(gm(Content::Reaction(pb::Reaction {
                emoji: Some(emoji),
                message_id: native,
                legal_hold_status: None,
            })));
            return Ok(out);
        }
        if null {
            let Some(r) = c.replaces else {
                out.lose(
                    "message",
                    "an empty message without a target has no Wire form",
                );
                return Ok(out);
            };
            let first = ctx.ids.first_of(&r);
            let native = Self::native(ctx, &first);
            ctx.record(P, Some(&uuid), msg)?;
            match native {
                Some(n) => out
                    .items
                    .push(gm(Content::Deleted(pb::MessageDelete { message_id: n }))),
                None => out.lose("delete", format!("{first} was never sent to Wire")),
            }
            return Ok(out);
        }
        let Some(t) = text::text_of(&c.nested_part) else {
            out.lose("attachment", "MIMI attachments are uploaded to Wire by a bridge (not in this library); sent as a text placeholder");
            let t = pb::Text {
                content: mimi_content::render::part_text(&c.nested_part),
                ..Default::default()
            };
            ctx.record(P, Some(&uuid), msg)?;
            out.items.push(gm(Content::Text(t)));
            return Ok(out);
        };
        let uris = ctx.uris.clone();
        let (content, mentions, lost) = match &t.markdown {
            Some(md) => text::markdown_to_flat(md, false, &|d: &str| {
                d.starts_with("mimi://") && d.contains("/u/")
            }),
            None => (t.plain.clone(), Vec::new(), Vec::new()),
        };
        out.lost.extend(lost);
        if t.markdown.as_deref().is_some_and(|md| {
            md.contains("**") || md.contains('`') || md.contains("~~") || md.contains('*')
        }) {
            out.lose("formatting", "markdown formatting sent as plain text");
        }
        let mut text = pb::Text {
            mentions: mentions
                .iter()
                .map(|m| pb::Mention {
                    start: i32::try_from(text::utf16_offset(&content, m.begin)).unwrap_or(i32::MAX),
                    length: i32::try_from(
                        text::utf16_offset(&content, m.end) - text::utf16_offset(&content, m.begin),
                    )
                    .unwrap_or(0),
                    mention_type: Some(pb::mention::MentionType::QualifiedUserId(
                        self.qualified_of(&uris, &m.uri),
                    )),
                })
                .collect(),
            content,
            ..Default::default()
        };
        if let Some(p) = c.in_reply_to {
            match Self::native(ctx, &p) {
                Some(n) => {
                    text.quote = Some(pb::Quote {
                        quoted_message_id: n,
                        quoted_message_sha256: None,
                    })
                }
                None => out.lose(
                    "reply",
                    format!("the replied-to message {p} was never sent to Wire"),
                ),
            }
        }
        if !c.topic_id.is_empty() {
            out.lose(
                "thread",
                "Wire has no threads; sent in the main conversation",
            );
        }
        let content = match c.replaces {
            Some(r) => {
                let first = ctx.ids.first_of(&r);
                match Self::native(ctx, &first) {
                    Some(n) => Content::Edited(pb::MessageEdit {
                        replacing_message_id: n,
                        content: Some(pb::message_edit::Content::Text(text)),
                    }),
                    None => {
                        out.lose(
                            "edit",
                            format!("{first} was never sent to Wire; sent as a new message"),
                        );
                        Content::Text(text)
                    }
                }
            }
            None => Content::Text(text),
        };
        let content = match (c.expires, content) {
            (Some(e), Content::Text(t)) if e.relative => Content::Ephemeral(pb::Ephemeral {
                expire_after_millis: i64::from(e.time) * 1000,
                content: Some(pb::ephemeral::Content::Text(t)),
            }),
            (Some(_), other) => {
                out.lose(
                    "expires",
                    "only relative expiry of new text messages exists in Wire",
                );
                other
            }
            (None, other) => other,
        };
        ctx.record(P, Some(&uuid), msg)?;
        out.items.push(gm(content));
        Ok(out)
    }
}
