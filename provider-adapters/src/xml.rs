//! A small XML element tree for XMPP stanzas (quick-xml underneath): parse one element,
//! serialize with escaping, find children by local name and namespace, and split an XMPP
//! stream into its top-level stanzas.

use quick_xml::Reader;
use quick_xml::events::Event;

/// A node: element or text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Node {
    /// A child element.
    Element(Element),
    /// Character data (unescaped).
    Text(String),
}

/// An element with its namespace (the in-scope default namespace).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Element {
    /// Local name (prefix removed).
    pub name: String,
    /// Namespace URI (from `xmlns`, inherited).
    pub ns: String,
    /// Attributes except `xmlns`, in document order.
    pub attrs: Vec<(String, String)>,
    /// Children.
    pub children: Vec<Node>,
}

/// XML that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("XML: {0}")]
pub struct XmlError(pub String);

impl Element {
    /// A new element in `ns`.
    pub fn new(name: &str, ns: &str) -> Self {
        Self {
            name: name.to_owned(),
            ns: ns.to_owned(),
            ..Self::default()
        }
    }

    /// Builder: adds an attribute.
    #[must_use]
    pub fn attr(mut self, k: &str, v: &str) -> Self {
        self.set_attr(k, v);
        self
    }

    /// Sets an attribute.
    pub fn set_attr(&mut self, k: &str, v: &str) {
        match self.attrs.iter_mut().find(|(a, _)| a == k) {
            Some(slot) => slot.1 = v.to_owned(),
            None => self.attrs.push((k.to_owned(), v.to_owned())),
        }
    }

    /// Builder: adds a child.
    #[must_use]
    pub fn child(mut self, c: Self) -> Self {
        self.children.push(Node::Element(c));
        self
    }

    /// Builder: adds text.
    #[must_use]
    pub fn text_node(mut self, t: &str) -> Self {
        self.children.push(Node::Text(t.to_owned()));
        self
    }

    /// An attribute's value.
    pub fn get(&self, k: &str) -> Option<&str> {
        self.attrs
            .iter()
            .find(|(a, _)| a == k)
            .map(|(_, v)| v.as_str())
    }

    /// The first child element with this local name and namespace.
    pub fn find(&self, name: &str, ns: &str) -> Option<&Self> {
        self.elements().find(|e| e.name == name && e.ns == ns)
    }

    /// Child elements.
    pub fn elements(&self) -> impl Iterator<Item = &Self> {
        self.children.iter().filter_map(|n| {
            if let Node::Element(e) = n {
                Some(e)
            } else {
                None
            }
        })
    }

    /// The concatenated text of direct text children.
    pub fn text(&self) -> String {
        self.children
            .iter()
            .filter_map(|n| {
                if let Node::Text(t) = n {
                    Some(t.as_str())
                } else {
                    None
                }
            })
            .collect()
    }

    /// Parses one element (leading comments and whitespace are skipped). `default_ns` is the
    /// namespace in scope (e.g. `jabber:component:accept` inside a component stream).
    ///
    /// # Errors
    /// Malformed XML or more than one root.
    pub fn parse(xml: &str, default_ns: &str) -> Result<Self, XmlError> {
        let mut r = Reader::from_str(xml);
        r.config_mut().trim_text(false);
        let mut stack: Vec<Self> = Vec::new();
        let mut root: Option<Self> = None;
        loop {
            let ev = r
                .read_event()
                .map_err(|e| XmlError(format!("at byte {}: {e}", r.buffer_position())))?;
            match ev {
                Event::Start(s) | Event::Empty(s) if root.is_some() => {
                    let _ = s;
                    return Err(XmlError("more than one root element".into()));
                }
                Event::Start(s) => {
                    let parent_ns = stack
                        .last()
                        .map_or(default_ns, |p| p.ns.as_str())
                        .to_owned();
                    stack.push(open(&s, &parent_ns)?);
                }
                Event::Empty(s) => {
                    let parent_ns = stack
                        .last()
                        .map_or(default_ns, |p| p.ns.as_str())
                        .to_owned();
                    let e = open(&s, &parent_ns)?;
                    match stack.last_mut() {
                        Some(p) => p.children.push(Node::Element(e)),
                        None => root = Some(e),
                    }
                }
                Event::End(_) => {
                    let e = stack
                        .pop()
                        .ok_or_else(|| XmlError("unbalanced end tag".into()))?;
                    match stack.last_mut() {
                        Some(p) => p.children.push(Node::Element(e)),
                        None => root = Some(e),
                    }
                }
                Event::Text(t) => {
                    if let Some(p) = stack.last_mut() {
                        push_text(p, &t.xml10_content());
                    } else if !t.trim().is_empty() {
                        return Err(XmlError("text outside the root element".into()));
                    }
                }
                Event::CData(t) => {
                    if let Some(p) = stack.last_mut() {
                        push_text(p, &t.xml10_content());
                    }
                }
                Event::GeneralRef(g) => {
                    if let Some(p) = stack.last_mut() {
                        let s = match g.resolve_char_ref().map_err(|e| XmlError(e.to_string()))? {
                            Some(c) => c.to_string(),
                            None => quick_xml::escape::unescape(&format!("&{};", &*g))
                                .map_err(|e| XmlError(e.to_string()))?
                                .into_owned(),
                        };
                        push_text(p, &s);
                    }
                }
                Event::Eof => break,
                _ => {}
            }
        }
        if !stack.is_empty() {
            return Err(XmlError(format!(
                "<{}> is not closed",
                stack.last().map_or("", |e| e.name.as_str())
            )));
        }
        root.ok_or_else(|| XmlError("no element".into()))
    }

    /// Serializes (namespaces written where they change from `parent_ns`).
    pub fn to_xml(&self, parent_ns: &str) -> String {
        let mut out = String::new();
        self.write(&mut out, parent_ns);
        out
    }

    fn write(&self, out: &mut String, parent_ns: &str) {
        out.push('<');
        out.push_str(&self.name);
        if self.ns != parent_ns {
            out.push_str(&format!(" xmlns=\"{}\"", escape(&self.ns)));
        }
        for (k, v) in &self.attrs {
            out.push_str(&format!(" {k}=\"{}\"", escape(v)));
        }
        if self.children.is_empty() {
            out.push_str("/>");
            return;
        }
        out.push('>');
        for c in &self.children {
            match c {
                Node::Element(e) => e.write(out, &self.ns),
                Node::Text(t) => out.push_str(&escape(t)),
            }
        }
        out.push_str(&format!("</{}>", self.name));
    }
}

fn push_text(p: &mut Element, s: &str) {
    if let Some(Node::Text(last)) = p.children.last_mut() {
        last.push_str(s);
    } else {
        p.children.push(Node::Text(s.to_owned()));
    }
}

fn open(s: &quick_xml::events::BytesStart<'_>, parent_ns: &str) -> Result<Element, XmlError> {
    let qname = s.name().into_inner().to_owned();
    let name = qname.rsplit(':').next().unwrap_or(&qname).to_owned();
    let mut e = Element {
        name,
        ns: parent_ns.to_owned(),
        ..Element::default()
    };
    for a in s.attributes() {
        let a = a.map_err(|e| XmlError(e.to_string()))?;
        let k = a.key.into_inner().to_owned();
        let v = a
            .normalized_value(quick_xml::XmlVersion::Implicit1_0)
            .map_err(|e| XmlError(e.to_string()))?
            .into_owned();
        if k == "xmlns" {
            e.ns = v;
        } else if !k.starts_with("xmlns:") {
            e.attrs.push((k, v));
        }
    }
    if qname.starts_with("stream:") {
        e.ns = "http://etherx.jabber.org/streams".into();
    }
    Ok(e)
}

/// Escapes text and attribute values.
pub fn escape(s: &str) -> String {
    quick_xml::escape::escape(s).into_owned()
}

/// Splits an XMPP stream into top-level stanzas as bytes arrive: the stream header, then each
/// complete child of `<stream:stream>`.
#[derive(Debug, Default)]
pub struct StreamSplitter {
    buf: String,
    header_seen: bool,
}

/// A piece of an XMPP stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StreamItem {
    /// The opening `<stream:stream ...>` tag (its attributes).
    Header(Vec<(String, String)>),
    /// One complete stanza's XML.
    Stanza(String),
    /// `</stream:stream>`.
    End,
}

/// Largest stanza accepted (bytes).
pub const MAX_STANZA: usize = 1 << 20;

impl StreamSplitter {
    /// Feeds bytes; returns the items completed by them.
    ///
    /// # Errors
    /// A stanza larger than [`MAX_STANZA`] or invalid UTF-8.
    pub fn feed(&mut self, bytes: &[u8]) -> Result<Vec<StreamItem>, XmlError> {
        self.buf
            .push_str(std::str::from_utf8(bytes).map_err(|e| XmlError(e.to_string()))?);
        let mut out = Vec::new();
        loop {
            let trimmed = self.buf.trim_start();
            let skip = self.buf.len() - trimmed.len();
            self.buf.drain(..skip);
            if self.buf.starts_with("<?") {
                match self.buf.find("?>") {
                    Some(i) => {
                        self.buf.drain(..i + 2);
                        continue;
                    }
                    None => break,
                }
            }
            if !self.header_seen {
                let Some(i) = self.buf.find('>') else { break };
                let tag = self.buf[..=i].to_owned();
                self.buf.drain(..=i);
                let e = Element::parse(&format!("{}</stream:stream>", tag), "")
                    .map_err(|e| XmlError(format!("stream header: {e}")))?;
                self.header_seen = true;
                out.push(StreamItem::Header(e.attrs));
                continue;
            }
            if self.buf.starts_with("</stream:stream") {
                out.push(StreamItem::End);
                self.buf.clear();
                break;
            }
            match stanza_end(&self.buf) {
                Some(n) => {
                    let s: String = self.buf.drain(..n).collect();
                    out.push(StreamItem::Stanza(s));
                }
                None => {
                    if self.buf.len() > MAX_STANZA {
                        return Err(XmlError(format!("a stanza exceeds {MAX_STANZA} bytes")));
                    }
                    break;
                }
            }
        }
        Ok(out)
    }
}

/// The length of the first complete element in `s` (which starts with `<`), if complete.
fn stanza_end(s: &str) -> Option<usize> {
    let b = s.as_bytes();
    let mut depth = 0usize;
    let mut i = 0;
    while i < b.len() {
        if b[i] != b'<' {
            i += 1;
            continue;
        }
        let close = s[i..].find('>')? + i;
        let tag = &s[i..=close];
        if tag.starts_with("<!--") {
            i = s[i..].find("-->")? + i + 3;
            continue;
        }
        if tag.starts_with("</") {
            depth = depth.checked_sub(1)?;
        } else if !tag.ends_with("/>") && !tag.starts_with("<?") {
            depth += 1;
        }
        i = close + 1;
        if depth == 0 {
            return Some(i);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_serialize() {
        let x = "<message xmlns='jabber:client' id='a&amp;b'><body>1 &lt; 2</body><reply xmlns='urn:xmpp:reply:0' id='x'/></message>";
        let e = Element::parse(x, "").unwrap();
        assert_eq!(e.get("id"), Some("a&b"));
        assert_eq!(e.find("body", "jabber:client").unwrap().text(), "1 < 2");
        assert_eq!(
            e.find("reply", "urn:xmpp:reply:0").unwrap().get("id"),
            Some("x")
        );
        let back = e.to_xml("");
        assert_eq!(Element::parse(&back, "").unwrap(), e);
        assert!(Element::parse("<a><b></a>", "").is_err());
    }

    #[test]
    fn splits_a_stream() {
        let mut s = StreamSplitter::default();
        let mut items = s.feed(b"<?xml version='1.0'?><stream:stream xmlns='jabber:component:accept' xmlns:stream='http://etherx.jabber.org/streams' id='abc' from='c.example'>").unwrap();
        items.extend(s.feed(b"<handshake/><message to='x'><bo").unwrap());
        items.extend(s.feed(b"dy>hi</body></message></stream:stream>").unwrap());
        assert!(
            matches!(&items[0], StreamItem::Header(a) if a.iter().any(|(k, v)| k == "id" && v == "abc"))
        );
        assert_eq!(items[1], StreamItem::Stanza("<handshake/>".into()));
        assert_eq!(
            items[2],
            StreamItem::Stanza("<message to='x'><body>hi</body></message>".into())
        );
        assert_eq!(items[3], StreamItem::End);
    }
}
