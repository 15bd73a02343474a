//! A plain-text rendering of any message, for logs, notifications and fallbacks.
//!
//! The rendering is one human-readable string: the body's text (markdown and HTML reduced to
//! text, attachments described), prefixed by what the message does to others (reply, reaction,
//! edit, delete).

use crate::markdown;
use crate::model::{Disposition, MessageId, MimiContent, NestedPart, PartBody, PartSemantics};

/// The first 12 hex characters of an ID, enough to tell messages apart in a transcript.
pub fn short_id(id: &MessageId) -> String {
    id.to_hex()[..12].to_owned()
}

/// Renders a whole message as plain text.
pub fn plain_text(c: &MimiContent) -> String {
    let body = part_text(&c.nested_part);
    let reaction = c.nested_part.disposition == Disposition::Reaction;
    let mut out = match (c.replaces, c.in_reply_to, &c.nested_part.body) {
        (Some(r), _, PartBody::Null) if reaction => format!("[un-react {}]", short_id(&r)),
        (Some(r), _, PartBody::Null) => format!("[delete {}]", short_id(&r)),
        (Some(r), _, _) => format!("[edit {}] {body}", short_id(&r)),
        (None, Some(t), _) if reaction => format!("[react {}] {body}", short_id(&t)),
        (None, Some(t), _) => format!("[reply {}] {body}", short_id(&t)),
        _ => body,
    };
    if let Some(e) = c.expires {
        out.push_str(&if e.relative {
            format!(" [expires {}s after read]", e.time)
        } else {
            format!(" [expires at {}]", e.time)
        });
    }
    out
}

/// Renders one part (and its children) as plain text.
pub fn part_text(p: &NestedPart) -> String {
    match &p.body {
        PartBody::Null => String::new(),
        PartBody::Single(s) => {
            let media = s.content_type.to_ascii_lowercase();
            let text = String::from_utf8_lossy(&s.content);
            if media.starts_with("text/markdown") {
                markdown::to_plain_text(&text)
            } else if media.starts_with("text/html") {
                strip_tags(&text)
            } else if media.starts_with("text/") {
                text.into_owned()
            } else {
                format!("[{} part, {} bytes]", s.content_type, s.content.len())
            }
        }
        PartBody::External(e) => {
            let name = [&e.filename, &e.description, &e.url]
                .into_iter()
                .find(|s| !s.is_empty())
                .cloned()
                .unwrap_or_default();
            let kind = if p.disposition.effective() == Disposition::Session {
                "session"
            } else {
                "attachment"
            };
            match (e.content_type.is_empty(), e.size) {
                (true, 0) => format!("[{kind}: {name}]"),
                (true, n) => format!("[{kind}: {name} ({n} bytes)]"),
                (false, 0) => format!("[{kind}: {name} ({})]", e.content_type),
                (false, n) => format!("[{kind}: {name} ({}, {n} bytes)]", e.content_type),
            }
        }
        PartBody::Multi(m) => match m.semantics {
            PartSemantics::ChooseOne => best_alternative(&m.parts)
                .map(part_text)
                .unwrap_or_default(),
            PartSemantics::SingleUnit | PartSemantics::ProcessAll => m
                .parts
                .iter()
                .map(part_text)
                .map(|s| s.trim().to_owned())
                .filter(|s| !s.is_empty())
                .collect::<Vec<_>>()
                .join("\n"),
        },
    }
}

/// The alternative a text renderer prefers: plain text, then markdown, then HTML, then the
/// sender's first choice.
pub fn best_alternative(parts: &[NestedPart]) -> Option<&NestedPart> {
    let rank = |p: &NestedPart| match &p.body {
        PartBody::Single(s) if s.content_type.starts_with("text/plain") => 0,
        PartBody::Single(s) if s.content_type.starts_with("text/markdown") => 1,
        PartBody::Single(s) if s.content_type.starts_with("text/html") => 2,
        _ => 3,
    };
    parts.iter().min_by_key(|p| rank(p))
}

/// Removes HTML tags and decodes the five basic entities (good enough for a text fallback).
pub fn strip_tags(html: &str) -> String {
    let mut out = String::with_capacity(html.len());
    let mut in_tag = false;
    for c in html.chars() {
        match c {
            '<' => in_tag = true,
            '>' if in_tag => in_tag = false,
            c if !in_tag => out.push(c),
            _ => {}
        }
    }
    out.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&amp;", "&")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::builder;

    const A: &str = "mimi://a.example/u/alice";
    const R: &str = "mimi://a.example/r/lobby";

    #[test]
    fn renders_operations() {
        let m = builder::markdown_with_plain(A, R, [1; 16], "**hi**")
            .build()
            .unwrap();
        assert_eq!(plain_text(m.content()), "hi");
        let id = m.id().unwrap();
        let s = short_id(&id);
        let r = builder::reaction(A, R, [2; 16], id, "👍").build().unwrap();
        assert_eq!(plain_text(r.content()), format!("[react {s}] 👍"));
        let d = builder::delete(A, R, [3; 16], id).build().unwrap();
        assert_eq!(plain_text(d.content()), format!("[delete {s}]"));
        let u = builder::unreact(A, R, [3; 16], id, id).build().unwrap();
        assert_eq!(plain_text(u.content()), format!("[un-react {s}]"));
        let e = builder::edit(A, R, [4; 16], id, builder::plain_part("hey"))
            .build()
            .unwrap();
        assert_eq!(plain_text(e.content()), format!("[edit {s}] hey"));
    }

    #[test]
    fn html_fallback() {
        assert_eq!(strip_tags("<p>a &amp; <b>b</b></p>"), "a & b");
    }
}
