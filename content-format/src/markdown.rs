//! GFM-MIMI markdown helpers (draft-ietf-mimi-content-08 §7.1.1).
//!
//! GFM-MIMI is GitHub Flavored Markdown with tables, task lists and strikethrough, no autolink
//! extension, and the mandatory "No HTML" extension: a sender replaces the `<` of every HTML
//! tag (open and closing tags, comments, processing instructions, declarations, CDATA) with
//! `&lt;`. [`escape_html`] does exactly that, using a real GFM parser to find what the markdown
//! grammar treats as HTML (so `<` inside code spans, code blocks and autolinks is untouched).

use std::borrow::Cow;

use pulldown_cmark::{Event, Options, Parser, Tag, TagEnd};

fn options() -> Options {
    Options::ENABLE_TABLES | Options::ENABLE_TASKLISTS | Options::ENABLE_STRIKETHROUGH
}

/// Replaces the `<` of every raw HTML tag in `md` with `&lt;`. Idempotent.
pub fn escape_html(md: &str) -> Cow<'_, str> {
    let mut ranges: Vec<std::ops::Range<usize>> = Parser::new_ext(md, options())
        .into_offset_iter()
        .filter(|(ev, _)| matches!(ev, Event::Html(_) | Event::InlineHtml(_)))
        .map(|(_, r)| r)
        .collect();
    if ranges.is_empty() {
        return Cow::Borrowed(md);
    }
    ranges.sort_by_key(|r| r.start);
    let mut out = String::with_capacity(md.len() + 8 * ranges.len());
    let mut last = 0;
    for r in ranges {
        if r.start < last {
            continue;
        }
        out.push_str(&md[last..r.start]);
        out.push_str(&md[r.clone()].replace('<', "&lt;"));
        last = r.end;
    }
    out.push_str(&md[last..]);
    Cow::Owned(out)
}

/// Renders markdown as readable plain text (formatting dropped, link targets kept when they
/// differ from the link text, HTML shown as text).
pub fn to_plain_text(md: &str) -> String {
    let mut out = String::with_capacity(md.len());
    let mut links: Vec<(String, usize)> = Vec::new();
    let mut list_stack: Vec<Option<u64>> = Vec::new();
    for ev in Parser::new_ext(md, options()) {
        match ev {
            Event::Text(t) | Event::Code(t) | Event::Html(t) | Event::InlineHtml(t) => {
                out.push_str(&t)
            }
            Event::SoftBreak => out.push(' '),
            Event::HardBreak => out.push('\n'),
            Event::Rule => out.push_str("\n---\n"),
            Event::TaskListMarker(done) => out.push_str(if done { "[x] " } else { "[ ] " }),
            Event::Start(Tag::Link { dest_url, .. }) => {
                links.push((dest_url.to_string(), out.len()))
            }
            Event::End(TagEnd::Link) => {
                if let Some((dest, start)) = links.pop() {
                    let text = out[start..].to_owned();
                    let shown = text.trim_start_matches('@');
                    if dest != text && dest != shown && !dest.starts_with("mimi:") {
                        out.push_str(" (");
                        out.push_str(&dest);
                        out.push(')');
                    }
                }
            }
            Event::Start(Tag::List(first)) => {
                if !out.is_empty() && !out.ends_with('\n') {
                    out.push('\n');
                }
                list_stack.push(first);
            }
            Event::End(TagEnd::List(_)) => {
                list_stack.pop();
            }
            Event::Start(Tag::Item) => {
                let indent = "  ".repeat(list_stack.len().saturating_sub(1));
                out.push_str(&indent);
                match list_stack.last_mut() {
                    Some(Some(n)) => {
                        out.push_str(&format!("{n}. "));
                        *n += 1;
                    }
                    _ => out.push_str("- "),
                }
            }
            Event::End(
                TagEnd::Paragraph
                | TagEnd::Heading(_)
                | TagEnd::Item
                | TagEnd::CodeBlock
                | TagEnd::TableRow
                | TagEnd::TableHead,
            ) if !out.ends_with('\n') => {
                out.push('\n');
            }
            Event::End(TagEnd::TableCell) => out.push_str(" | "),
            _ => {}
        }
    }
    while out.ends_with('\n') || out.ends_with(' ') {
        out.pop();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_every_kind_of_html() {
        assert_eq!(escape_html("a <b>x</b> c"), "a &lt;b>x&lt;/b> c");
        assert_eq!(escape_html("<!-- hi --> text"), "&lt;!-- hi --> text");
        assert_eq!(escape_html("x <?php ?> y"), "x &lt;?php ?> y");
        assert_eq!(escape_html("x <![CDATA[ y ]]> z"), "x &lt;![CDATA[ y ]]> z");
        assert_eq!(
            escape_html("<div>\nblock\n</div>\n"),
            "&lt;div>\nblock\n&lt;/div>\n"
        );
    }

    #[test]
    fn leaves_non_html_alone() {
        for md in [
            "a < b",
            "`<b>`",
            "```\n<b>\n```",
            "<https://example.com>",
            "<mimi://a.example/u/x>",
            "[x](<a b>)",
        ] {
            assert_eq!(escape_html(md), md, "{md}");
        }
    }

    #[test]
    fn escaping_is_idempotent() {
        let once = escape_html("<i>x</i> and <!-- c -->").into_owned();
        assert_eq!(escape_html(&once), once);
    }

    #[test]
    fn plain_text_rendering() {
        assert_eq!(
            to_plain_text("Hi **all**, see [docs](https://d.example)"),
            "Hi all, see docs (https://d.example)"
        );
        assert_eq!(to_plain_text("[@Alice](mimi://a/u/alice) ok"), "@Alice ok");
        assert_eq!(to_plain_text("- a\n- b"), "- a\n- b");
        assert_eq!(to_plain_text("~~x~~ `y`"), "x y");
    }
}
