//! Text conversions: Matrix HTML ⇄ GFM-MIMI markdown, XEP-0393 message styling ⇄ markdown,
//! plain text ⇄ markdown, mentions as links to user URIs, and the text of a MIMI body.

use mimi_content::builder;
use mimi_content::render::best_alternative;
use mimi_content::{Disposition, MimiContent, NestedPart, PartBody, PartSemantics};
use pulldown_cmark::{CodeBlockKind, Event, Options, Parser, Tag, TagEnd};

use crate::Loss;

mod html;

pub use html::{html_to_markdown, markdown_to_html};

/// The MIMI media type of GFM-MIMI markdown.
pub const MARKDOWN: &str = "text/markdown;variant=GFM-MIMI";

fn md_options() -> Options {
    Options::ENABLE_STRIKETHROUGH | Options::ENABLE_TABLES | Options::ENABLE_TASKLISTS
}

/// Escapes text so markdown renders it literally.
pub fn escape_markdown(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(
            c,
            '\\' | '`' | '*' | '_' | '[' | ']' | '<' | '>' | '#' | '~' | '|'
        ) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Whether plain text would read differently as markdown (then it is sent escaped).
pub fn has_markdown_syntax(s: &str) -> bool {
    s.chars().any(|c| {
        matches!(
            c,
            '\\' | '`' | '*' | '_' | '[' | ']' | '<' | '>' | '#' | '~' | '|'
        )
    })
}

/// The text of a MIMI message body: markdown (when the sender sent markdown) and plain text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Text {
    /// GFM-MIMI markdown, when present.
    pub markdown: Option<String>,
    /// Plain text (always).
    pub plain: String,
}

fn single_text(p: &NestedPart) -> Option<Text> {
    let PartBody::Single(s) = &p.body else {
        return None;
    };
    let ct = s.content_type.to_ascii_lowercase();
    let content = String::from_utf8(s.content.clone()).ok()?;
    if ct.starts_with("text/markdown") {
        Some(Text {
            plain: mimi_content::markdown::to_plain_text(&content),
            markdown: Some(content),
        })
    } else if ct.starts_with("text/plain") {
        Some(Text {
            markdown: None,
            plain: content,
        })
    } else {
        None
    }
}

/// The text of a part: a text SinglePart, or the best text alternative of a chooseOne, or the
/// text parts of a singleUnit/processAll joined.
pub fn text_of(p: &NestedPart) -> Option<Text> {
    match &p.body {
        PartBody::Single(_) => single_text(p),
        PartBody::Multi(m) if m.semantics == PartSemantics::ChooseOne => {
            let md = m
                .parts
                .iter()
                .find_map(|q| single_text(q).filter(|t| t.markdown.is_some()));
            let plain = m
                .parts
                .iter()
                .find_map(|q| single_text(q).filter(|t| t.markdown.is_none()));
            match (md, plain) {
                (Some(md), Some(plain)) => Some(Text {
                    markdown: md.markdown,
                    plain: plain.plain,
                }),
                (Some(t), None) | (None, Some(t)) => Some(t),
                (None, None) => best_alternative(&m.parts).and_then(text_of),
            }
        }
        PartBody::Multi(m) => {
            let texts: Vec<Text> = m.parts.iter().filter_map(text_of).collect();
            if texts.is_empty() {
                return None;
            }
            let plain = texts
                .iter()
                .map(|t| t.plain.clone())
                .collect::<Vec<_>>()
                .join("\n");
            let markdown = texts.iter().any(|t| t.markdown.is_some()).then(|| {
                texts
                    .iter()
                    .map(|t| {
                        t.markdown
                            .clone()
                            .unwrap_or_else(|| escape_markdown(&t.plain))
                    })
                    .collect::<Vec<_>>()
                    .join("\n\n")
            });
            Some(Text { markdown, plain })
        }
        _ => None,
    }
}

/// A MIMI body for text: plain when it has no markup, else markdown with a plain alternative.
pub fn body_for(markdown: Option<&str>, plain: &str) -> NestedPart {
    match markdown {
        Some(md) if md != escape_markdown(plain) || has_markdown_syntax(md) => {
            let md = mimi_content::markdown::escape_html(md).into_owned();
            NestedPart::new(
                Disposition::Render,
                PartBody::Multi(mimi_content::MultiPart {
                    semantics: PartSemantics::ChooseOne,
                    parts: vec![builder::markdown_part(&md), builder::plain_part(plain)],
                }),
            )
        }
        _ => builder::plain_part(plain),
    }
}

/// Whether the message is a reaction.
pub fn is_reaction(c: &MimiContent) -> bool {
    c.nested_part.disposition == Disposition::Reaction
}

// ---------------------------------------------------------------------------------------------
// XEP-0393 styling <-> markdown

/// Converts XEP-0393 message styling to markdown (`*b*` → `**b**`, `_i_` → `*i*`, `~s~` →
/// `~~s~~`, `` `m` `` and code blocks and `>` quotes kept); other text is escaped.
pub fn styling_to_markdown(body: &str) -> String {
    let mut out = Vec::new();
    let mut in_block = false;
    for line in body.split('\n') {
        if line.starts_with("```") {
            in_block = !in_block;
            out.push("```".to_owned());
            continue;
        }
        if in_block {
            out.push(line.to_owned());
            continue;
        }
        let (prefix, rest) = match line.strip_prefix('>') {
            Some(r) => ("> ", r.strip_prefix(' ').unwrap_or(r)),
            None => ("", line),
        };
        out.push(format!("{prefix}{}", style_spans(rest)));
    }
    out.join("\n")
}

fn style_spans(s: &str) -> String {
    let chars: Vec<char> = s.chars().collect();
    let mut out = String::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let opens = matches!(c, '*' | '_' | '~' | '`')
            && (i == 0 || chars[i - 1].is_whitespace())
            && chars.get(i + 1).is_some_and(|n| !n.is_whitespace());
        if opens
            && let Some(j) =
                (i + 2..chars.len()).find(|&j| chars[j] == c && !chars[j - 1].is_whitespace())
        {
            let inner: String = chars[i + 1..j].iter().collect();
            let md = match c {
                '*' => format!("**{}**", escape_markdown(&inner)),
                '_' => format!("*{}*", escape_markdown(&inner)),
                '~' => format!("~~{}~~", escape_markdown(&inner)),
                _ => format!("`{inner}`"),
            };
            out.push_str(&md);
            i = j + 1;
            continue;
        }
        out.push_str(&escape_markdown(&c.to_string()));
        i += 1;
    }
    out
}

/// A mention found while flattening markdown: `[begin, end)` in code points of the output,
/// and the user URI it links to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mention {
    /// Start (code points).
    pub begin: usize,
    /// End, exclusive (code points).
    pub end: usize,
    /// The linked user URI.
    pub uri: String,
}

/// Flattens markdown for providers without markdown: XEP-0393 styling when `styling`, plain
/// text otherwise. Links for which `is_user` holds become mentions (their text is kept);
/// other links become `text (url)`. Headings and tables are reported as lost.
pub fn markdown_to_flat(
    md: &str,
    styling: bool,
    is_user: &dyn Fn(&str) -> bool,
) -> (String, Vec<Mention>, Vec<Loss>) {
    let mut out = String::new();
    let mut mentions = Vec::new();
    let mut lost = Vec::new();
    let mut link: Vec<(String, usize, usize)> = Vec::new(); // (dest, start byte, start cp)
    let mut lists: Vec<Option<u64>> = Vec::new();
    let mut quote = 0usize;
    let cp = |s: &str| s.chars().count();
    let line_start = |out: &mut String, quote: usize| {
        if !out.is_empty() && !out.ends_with('\n') {
            out.push('\n');
        }
        for _ in 0..quote {
            out.push_str("> ");
        }
    };
    let mark = |out: &mut String, s: &str| {
        if styling {
            out.push_str(s);
        }
    };
    for e in Parser::new_ext(md, md_options()) {
        match e {
            Event::Text(t) => out.push_str(&t),
            Event::Code(t) => {
                mark(&mut out, "`");
                out.push_str(&t);
                mark(&mut out, "`");
            }
            Event::SoftBreak | Event::HardBreak => line_start(&mut out, quote),
            Event::Html(h) | Event::InlineHtml(h) => out.push_str(&h),
            Event::Start(Tag::Strong) | Event::End(TagEnd::Strong) => mark(&mut out, "*"),
            Event::Start(Tag::Emphasis) | Event::End(TagEnd::Emphasis) => mark(&mut out, "_"),
            Event::Start(Tag::Strikethrough) | Event::End(TagEnd::Strikethrough) => {
                mark(&mut out, "~")
            }
            Event::Start(Tag::Paragraph)
                if !out.is_empty() && lists.is_empty() && !out.ends_with("> ") =>
            {
                line_start(&mut out, quote);
                if quote == 0 {
                    out.push('\n');
                }
            }
            Event::Start(Tag::BlockQuote(_)) => {
                if !out.is_empty() && quote == 0 {
                    if !out.ends_with('\n') {
                        out.push('\n');
                    }
                    out.push('\n');
                }
                quote += 1;
                line_start(&mut out, quote);
            }
            Event::End(TagEnd::BlockQuote(_)) => quote = quote.saturating_sub(1),
            Event::Start(Tag::CodeBlock(kind)) => {
                line_start(&mut out, quote);
                mark(&mut out, "```");
                if let CodeBlockKind::Fenced(_) = kind {}
                if styling {
                    out.push('\n');
                }
            }
            Event::End(TagEnd::CodeBlock) if styling => {
                if !out.ends_with('\n') {
                    out.push('\n');
                }
                out.push_str("```");
            }
            Event::Start(Tag::Heading { .. }) => {
                line_start(&mut out, quote);
                lost.push(Loss {
                    feature: "formatting",
                    detail: "heading shown as a plain line".into(),
                });
            }
            Event::Start(Tag::List(start)) => lists.push(start),
            Event::End(TagEnd::List(_)) => {
                lists.pop();
            }
            Event::Start(Tag::Item) => {
                line_start(&mut out, quote);
                out.push_str(&"  ".repeat(lists.len().saturating_sub(1)));
                match lists.last_mut() {
                    Some(Some(n)) => {
                        out.push_str(&format!("{n}. "));
                        *n += 1;
                    }
                    _ => out.push_str("- "),
                }
            }
            Event::TaskListMarker(done) => out.push_str(if done { "[x] " } else { "[ ] " }),
            Event::Start(Tag::Table(_)) => lost.push(Loss {
                feature: "formatting",
                detail: "table flattened to lines".into(),
            }),
            Event::Start(Tag::TableRow | Tag::TableHead) => line_start(&mut out, quote),
            Event::End(TagEnd::TableCell) => out.push_str(" | "),
            Event::Start(Tag::Link { dest_url, .. }) => {
                link.push((dest_url.to_string(), out.len(), cp(&out)))
            }
            Event::End(TagEnd::Link) => {
                if let Some((dest, start_byte, start_cp)) = link.pop() {
                    let text = out[start_byte..].to_owned();
                    if is_user(&dest) {
                        mentions.push(Mention {
                            begin: start_cp,
                            end: cp(&out),
                            uri: dest,
                        });
                    } else if text != dest {
                        out.push_str(&format!(" ({dest})"));
                    }
                }
            }
            Event::Rule => {
                line_start(&mut out, quote);
                out.push_str("---");
            }
            _ => {}
        }
    }
    (out.trim_end().to_owned(), mentions, lost)
}

/// Converts code-point offsets into UTF-16 code-unit offsets of `s` (Wire mentions).
pub fn utf16_offset(s: &str, cp: usize) -> usize {
    s.chars().take(cp).map(char::len_utf16).sum()
}

/// Converts UTF-16 code-unit offsets of `s` into code-point offsets (None inside a pair).
pub fn cp_offset_from_utf16(s: &str, units: usize) -> Option<usize> {
    let mut u = 0;
    for (i, c) in s.chars().enumerate() {
        if u == units {
            return Some(i);
        }
        u += c.len_utf16();
        if u > units {
            return None;
        }
    }
    (u == units).then(|| s.chars().count())
}

/// Builds markdown from plain text with mention spans (code points) turned into links.
pub fn plain_with_mentions(text: &str, mentions: &[Mention]) -> String {
    with_mentions(text, mentions, &escape_markdown)
}

/// As [`plain_with_mentions`], the text between mentions being XEP-0393 styled.
pub fn styled_with_mentions(text: &str, mentions: &[Mention]) -> String {
    with_mentions(text, mentions, &styling_to_markdown)
}

fn with_mentions(text: &str, mentions: &[Mention], convert: &dyn Fn(&str) -> String) -> String {
    let chars: Vec<char> = text.chars().collect();
    let mut ms: Vec<&Mention> = mentions
        .iter()
        .filter(|m| m.begin < m.end && m.end <= chars.len())
        .collect();
    ms.sort_by_key(|m| m.begin);
    let mut out = String::new();
    let mut at = 0;
    for m in ms {
        if m.begin < at {
            continue;
        }
        out.push_str(&convert(&chars[at..m.begin].iter().collect::<String>()));
        out.push_str(&format!(
            "[{}]({})",
            escape_markdown(&chars[m.begin..m.end].iter().collect::<String>()),
            m.uri
        ));
        at = m.end;
    }
    out.push_str(&convert(&chars[at..].iter().collect::<String>()));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn html_to_markdown_and_back() {
        let map = |h: &str| {
            h.strip_prefix("https://matrix.to/#/")
                .map(|u| format!("mimi://gw/u/{u}"))
        };
        let (md, lost) = html_to_markdown(
            "Hello <a href=\"https://matrix.to/#/@bob:example.org\">Bob</a>! This is <strong>important</strong><br>and <em>this</em> &amp; <del>that</del>",
            &map,
        );
        assert_eq!(
            md,
            "Hello [Bob](mimi://gw/u/@bob:example.org)! This is **important**\nand *this* & ~~that~~"
        );
        assert!(lost.is_empty());
        let back = markdown_to_html(&md, &|d: &str| {
            d.strip_prefix("mimi://gw/u/")
                .map(|u| format!("https://matrix.to/#/{u}"))
        });
        assert_eq!(
            back,
            "Hello <a href=\"https://matrix.to/#/@bob:example.org\">Bob</a>! This is <strong>important</strong>\nand <em>this</em> &amp; <del>that</del>"
        );
        let (md, _) = html_to_markdown(
            "<mx-reply><blockquote>quoted</blockquote></mx-reply>real <code>x*y</code>",
            &map,
        );
        assert_eq!(md, "real `x*y`");
        let (_, lost) = html_to_markdown("<font color=\"red\">red</font>", &map);
        assert_eq!(lost.len(), 1);
    }

    #[test]
    fn styling() {
        assert_eq!(
            styling_to_markdown("a *bold* _it_ ~gone~ `x` 2*3"),
            "a **bold** *it* ~~gone~~ `x` 2\\*3"
        );
        let (flat, m, _) = markdown_to_flat(
            "**b** *i* [@Alice](mimi://a/u/alice) see [site](https://x.example)",
            true,
            &|d: &str| d.starts_with("mimi://"),
        );
        assert_eq!(flat, "*b* _i_ @Alice see site (https://x.example)");
        assert_eq!(
            m,
            vec![Mention {
                begin: 8,
                end: 14,
                uri: "mimi://a/u/alice".into()
            }]
        );
        let (plain, _, _) = markdown_to_flat("**b**\n\n> q", false, &|_: &str| false);
        assert_eq!(plain, "b\n\n> q");
    }

    #[test]
    fn offsets() {
        let s = "😀 @bob";
        assert_eq!(utf16_offset(s, 2), 3);
        assert_eq!(cp_offset_from_utf16(s, 3), Some(2));
        assert_eq!(cp_offset_from_utf16(s, 1), None);
        assert_eq!(
            plain_with_mentions(
                s,
                &[Mention {
                    begin: 2,
                    end: 6,
                    uri: "mimi://x/u/bob".into()
                }]
            ),
            "😀 [@bob](mimi://x/u/bob)"
        );
    }

    #[test]
    fn html_is_read_as_a_browser_reads_it() {
        let none = |_: &str| None;
        // The hand-written reader took `data-href=` for `href=`.
        let (md, _) = html_to_markdown(
            "<a data-href=\"https://evil.example/\" href='https://ok.example/'>x</a>",
            &none,
        );
        assert_eq!(md, "[x](https://ok.example/)");
        // A `>` inside a quoted attribute, named and numeric entities, unquoted attributes.
        let (md, _) = html_to_markdown(
            "<a title=\"a>b\" href=https://x.example/?a=1&amp;b=2>caf&eacute; &#x1F389;</a>",
            &none,
        );
        assert_eq!(md, "[café 🎉](https://x.example/?a=1&b=2)");
        // A stray end tag closes nothing; what is left open is closed at the end.
        let (md, _) = html_to_markdown("<b>bold</i> <em>it", &none);
        assert_eq!(
            md, "**bold *it***",
            "as a browser renders it: bold to the end"
        );
    }
}
