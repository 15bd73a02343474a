//! Matrix HTML (`org.matrix.custom.html`) to GFM-MIMI markdown, through html5ever's tokenizer,
//! and markdown back to HTML with pulldown-cmark.

use pulldown_cmark::{Event, Parser, Tag};

use super::{escape_markdown, md_options};
use crate::Loss;

/// One HTML token, as html5ever's tokenizer reports it (entities decoded, attributes parsed).
#[derive(Debug)]
enum Tok {
    Open(String, Vec<(String, String)>),
    Close(String),
    Text(String),
}

#[derive(Default)]
struct Sink(std::cell::RefCell<Vec<Tok>>);

impl html5ever::tokenizer::TokenSink for Sink {
    type Handle = ();

    fn process_token(
        &self,
        token: html5ever::tokenizer::Token,
        _line: u64,
    ) -> html5ever::tokenizer::TokenSinkResult<()> {
        use html5ever::tokenizer::{TagKind, Token};
        let mut out = self.0.borrow_mut();
        match token {
            Token::TagToken(t) => {
                let name = t.name.to_string().to_ascii_lowercase();
                match t.kind {
                    TagKind::StartTag => {
                        let attrs = t
                            .attrs
                            .iter()
                            .map(|a| {
                                (
                                    a.name.local.to_string().to_ascii_lowercase(),
                                    a.value.to_string(),
                                )
                            })
                            .collect();
                        out.push(Tok::Open(name.clone(), attrs));
                        if t.self_closing {
                            out.push(Tok::Close(name));
                        }
                    }
                    TagKind::EndTag => out.push(Tok::Close(name)),
                }
            }
            Token::CharacterTokens(t) => match out.last_mut() {
                Some(Tok::Text(s)) => s.push_str(&t),
                _ => out.push(Tok::Text(t.to_string())),
            },
            _ => {}
        }
        html5ever::tokenizer::TokenSinkResult::Continue
    }
}

/// Tokenizes HTML with html5ever (the WHATWG tokenizer: entities, attribute quoting and
/// malformed markup as browsers read them).
fn tokens(html: &str) -> Vec<Tok> {
    use html5ever::tendril::StrTendril;
    use html5ever::tokenizer::{BufferQueue, Tokenizer, TokenizerOpts};
    let tok = Tokenizer::new(Sink::default(), TokenizerOpts::default());
    let q = BufferQueue::default();
    q.push_back(StrTendril::from(html));
    let _ = tok.feed(&q);
    tok.end();
    tok.sink.0.take()
}

fn inline_marker(tag: &str) -> &'static str {
    match tag {
        "b" | "strong" => "**",
        "i" | "em" => "*",
        _ => "~~",
    }
}

fn attr(attrs: &[(String, String)], name: &str) -> Option<String> {
    attrs
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.clone())
}

/// Converts Matrix HTML to GFM-MIMI markdown. `link` maps an `href` (e.g. a matrix.to user
/// link) to the URI to use (e.g. the user's MIMI URI). Returns what could not be kept.
pub fn html_to_markdown(html: &str, link: &dyn Fn(&str) -> Option<String>) -> (String, Vec<Loss>) {
    let mut out = String::new();
    let mut lost = Vec::new();
    let mut links: Vec<String> = Vec::new();
    let mut lists: Vec<(bool, u32)> = Vec::new();
    let mut quote = 0usize;
    let mut skip = 0usize; // inside <mx-reply>
    let mut pre = false;
    let mut code = false;
    let mut inline: Vec<(String, &'static str)> = Vec::new();
    let newline = |out: &mut String, quote: usize| {
        out.push('\n');
        for _ in 0..quote {
            out.push_str("> ");
        }
    };
    for t in tokens(html) {
        let (name, closing, attrs) = match t {
            Tok::Open(n, a) => (n, false, a),
            Tok::Close(n) => (n, true, Vec::new()),
            Tok::Text(text) => {
                if skip == 0 {
                    if pre || code {
                        out.push_str(&text);
                    } else {
                        out.push_str(&escape_markdown(&text.replace('\n', " ")));
                    }
                }
                continue;
            }
        };
        let tag = attrs.as_slice();
        if name == "mx-reply" {
            if closing {
                skip = skip.saturating_sub(1);
            } else {
                skip += 1;
            }
            continue;
        }
        if skip > 0 {
            continue;
        }
        match (name.as_str(), closing) {
            ("b" | "strong" | "i" | "em" | "del" | "s" | "strike", false) => {
                let m = inline_marker(&name);
                inline.push((name.clone(), m));
                out.push_str(m);
            }
            ("b" | "strong" | "i" | "em" | "del" | "s" | "strike", true) => {
                // Closes what it opened (and anything left open inside); a stray end tag
                // closes nothing.
                if let Some(at) = inline.iter().rposition(|(n, _)| *n == name) {
                    for (_, m) in inline.drain(at..).rev() {
                        out.push_str(m);
                    }
                }
            }
            ("code", closing) if !pre => {
                code = !closing;
                out.push('`');
            }
            ("pre", false) => {
                pre = true;
                out.push_str("\n```\n");
            }
            ("pre", true) => {
                pre = false;
                out.push_str("\n```\n");
            }
            ("br", _) => newline(&mut out, quote),
            ("p" | "div", true) => {
                newline(&mut out, quote);
                newline(&mut out, quote);
            }
            ("blockquote", false) => {
                quote += 1;
                newline(&mut out, quote);
            }
            ("blockquote", true) => {
                quote = quote.saturating_sub(1);
                newline(&mut out, quote);
            }
            ("ul", false) => lists.push((false, 0)),
            ("ol", false) => lists.push((true, 0)),
            ("ul" | "ol", true) => {
                lists.pop();
                newline(&mut out, quote);
            }
            ("li", false) => {
                newline(&mut out, quote);
                let depth = lists.len().saturating_sub(1);
                out.push_str(&"  ".repeat(depth));
                match lists.last_mut() {
                    Some((true, n)) => {
                        *n += 1;
                        out.push_str(&format!("{n}. "));
                    }
                    _ => out.push_str("- "),
                }
            }
            ("h1" | "h2" | "h3" | "h4" | "h5" | "h6", false) => {
                newline(&mut out, quote);
                let n = name[1..].parse::<usize>().unwrap_or(1);
                out.push_str(&"#".repeat(n));
                out.push(' ');
            }
            ("h1" | "h2" | "h3" | "h4" | "h5" | "h6", true) => newline(&mut out, quote),
            ("a", false) => {
                let href = attr(tag, "href").unwrap_or_default();
                links.push(link(&href).unwrap_or(href));
                out.push('[');
            }
            ("a", true) => {
                let href = links.pop().unwrap_or_default();
                out.push_str(&format!("]({href})"));
            }
            ("img", _) => {
                let alt = attr(tag, "alt").unwrap_or_default();
                out.push_str(&escape_markdown(&alt));
                lost.push(Loss {
                    feature: "formatting",
                    detail: format!(
                        "inline image {:?} kept as its alt text",
                        attr(tag, "src").unwrap_or_default()
                    ),
                });
            }
            ("span" | "font", false)
                if attr(tag, "data-mx-color").is_some()
                    || attr(tag, "color").is_some()
                    || attr(tag, "data-mx-bg-color").is_some() =>
            {
                lost.push(Loss {
                    feature: "formatting",
                    detail: "text colour".into(),
                });
            }
            ("span", false) if attr(tag, "data-mx-spoiler").is_some() => {
                lost.push(Loss {
                    feature: "formatting",
                    detail: "spoiler (shown as plain text)".into(),
                });
            }
            ("table", false) => lost.push(Loss {
                feature: "formatting",
                detail: "table flattened to lines".into(),
            }),
            ("tr", true) => newline(&mut out, quote),
            ("td" | "th", true) => out.push_str(" | "),
            ("hr", _) => {
                newline(&mut out, quote);
                out.push_str("---");
                newline(&mut out, quote);
            }
            _ => {}
        }
    }
    for (_, m) in inline.drain(..).rev() {
        out.push_str(m);
    }
    // Tidy: no trailing spaces per line, no more than one blank line, trimmed.
    let mut tidy = String::new();
    let mut blank = 0;
    for line in out.split('\n') {
        let l = line.trim_end();
        if l.trim_start_matches('>').trim().is_empty() && !l.starts_with('>') {
            blank += 1;
            if blank > 1 {
                continue;
            }
        } else {
            blank = 0;
        }
        tidy.push_str(l);
        tidy.push('\n');
    }
    (tidy.trim().to_owned(), lost)
}

// ---------------------------------------------------------------------------------------------
// markdown -> HTML (Matrix)

/// Renders GFM-MIMI markdown as HTML for Matrix; `link` rewrites link destinations (user URIs
/// to matrix.to links). Raw HTML in the markdown is shown as text (GFM-MIMI has none).
pub fn markdown_to_html(md: &str, link: &dyn Fn(&str) -> Option<String>) -> String {
    let safe = mimi_content::markdown::escape_html(md);
    let events = Parser::new_ext(&safe, md_options()).map(|e| match e {
        Event::Start(Tag::Link {
            link_type,
            dest_url,
            title,
            id,
        }) => {
            let dest = link(&dest_url).map_or(dest_url, Into::into);
            Event::Start(Tag::Link {
                link_type,
                dest_url: dest,
                title,
                id,
            })
        }
        Event::Html(h) | Event::InlineHtml(h) => Event::Text(h),
        other => other,
    });
    let mut html = String::new();
    pulldown_cmark::html::push_html(&mut html, events);
    let html = html.trim_end().to_owned();
    // A single paragraph is sent without <p> (as Matrix clients do).
    match html
        .strip_prefix("<p>")
        .and_then(|h| h.strip_suffix("</p>"))
    {
        Some(inner) if !inner.contains("<p>") => inner.to_owned(),
        _ => html,
    }
}
