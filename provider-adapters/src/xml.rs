//! XML for XMPP: an element tree with resolved namespaces, built from quick-xml's
//! namespace-aware reader, serialized with escaping; and the pieces of an XMPP stream (the
//! `<stream:stream>` header, each top-level stanza, the end).
//!
//! Namespaces are resolved as XML Namespaces says: any prefix, declared anywhere in scope, and
//! the default namespace. Reading is event by event, so a stream may arrive in chunks of any
//! size, split anywhere, even inside a multi-byte character: [`StreamReader`] is fed through a
//! `BufRead` (tests, fuzzing) and the bridge feeds the same [`TreeBuilder`] from quick-xml's
//! async reader.
//!
//! Bounds: a stanza over [`MAX_STANZA`] bytes or [`MAX_DEPTH`] levels, and more than
//! [`MAX_NS_BINDINGS`] namespace declarations in scope, are errors (the stream is then closed
//! by the caller).

use std::io::BufRead;

use quick_xml::events::{BytesStart, Event};
use quick_xml::name::{NamespaceResolver, ResolveResult};
use quick_xml::reader::NsReader;

/// The XMPP streams namespace.
pub const NS_STREAMS: &str = "http://etherx.jabber.org/streams";
/// Largest stanza accepted (bytes of its serialization on the wire).
pub const MAX_STANZA: usize = 1 << 20;
/// Deepest element nesting accepted inside a stanza.
pub const MAX_DEPTH: usize = 64;
/// Most namespace declarations in scope.
pub const MAX_NS_BINDINGS: usize = 256;

/// A node: element or text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Node {
    /// A child element.
    Element(Element),
    /// Character data (unescaped).
    Text(String),
}

/// An element with its resolved namespace.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Element {
    /// Local name (prefix removed).
    pub name: String,
    /// Namespace URI.
    pub ns: String,
    /// Attributes except namespace declarations, in document order. Unprefixed attributes by
    /// local name; `xml:lang` as written; other prefixed attributes as `{namespace}local`.
    pub attrs: Vec<(String, String)>,
    /// Children.
    pub children: Vec<Node>,
}

/// XML that does not parse, or exceeds a bound.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("XML: {0}")]
pub struct XmlError(pub String);

fn xe(e: impl std::fmt::Display) -> XmlError {
    XmlError(e.to_string())
}

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
        self.children.iter().filter_map(|n| match n {
            Node::Element(e) => Some(e),
            Node::Text(_) => None,
        })
    }

    /// The concatenated text of direct text children.
    pub fn text(&self) -> String {
        self.children
            .iter()
            .filter_map(|n| match n {
                Node::Text(t) => Some(t.as_str()),
                Node::Element(_) => None,
            })
            .collect()
    }

    /// Parses one element (leading comments, declarations and whitespace are skipped).
    /// `default_ns` is the default namespace in scope (e.g. `jabber:component:accept` inside a
    /// component stream).
    ///
    /// # Errors
    /// Malformed XML, more than one root, or a bound exceeded.
    pub fn parse(xml: &str, default_ns: &str) -> Result<Self, XmlError> {
        if xml.len() > MAX_STANZA {
            return Err(XmlError(format!("more than {MAX_STANZA} bytes")));
        }
        let mut r = NsReader::from_str(xml);
        r.config_mut().trim_text(false);
        r.resolver_mut().set_max_namespace_bindings(MAX_NS_BINDINGS);
        let mut b = TreeBuilder::document(default_ns);
        let mut root = None;
        loop {
            let ev = r
                .read_event()
                .map_err(|e| XmlError(format!("at byte {}: {e}", r.buffer_position())))?;
            if matches!(ev, Event::Eof) {
                break;
            }
            if let Some(StreamItem::Stanza(e)) = b.handle(r.resolver(), ev)? {
                if root.is_some() {
                    return Err(XmlError("more than one root element".into()));
                }
                root = Some(e);
            }
        }
        b.finish()?;
        root.ok_or_else(|| XmlError("no element".into()))
    }

    /// Serializes; the namespace is declared where it differs from `parent_ns`.
    pub fn to_xml(&self, parent_ns: &str) -> String {
        let mut out = String::new();
        self.write(&mut out, parent_ns);
        out
    }

    fn write(&self, out: &mut String, parent_ns: &str) {
        out.push('<');
        out.push_str(&self.name);
        if self.ns != parent_ns {
            out.push_str(" xmlns=\"");
            out.push_str(&escape(&self.ns));
            out.push('"');
        }
        let mut n = 0;
        for (k, v) in &self.attrs {
            match k.strip_prefix('{').and_then(|r| r.split_once('}')) {
                Some((ns, local)) => {
                    n += 1;
                    out.push_str(&format!(
                        " xmlns:a{n}=\"{}\" a{n}:{local}=\"{}\"",
                        escape(ns),
                        escape(v)
                    ));
                }
                None => out.push_str(&format!(" {k}=\"{}\"", escape(v))),
            }
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
        out.push_str("</");
        out.push_str(&self.name);
        out.push('>');
    }
}

/// Whether `s` can be an XML name (the parser accepts some that cannot: `<\r/>`).
fn is_name(s: &str) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_alphanumeric() || matches!(c, '_' | ':' | '-' | '.'))
}

/// Escapes text and attribute values.
pub fn escape(s: &str) -> String {
    quick_xml::escape::escape(s).into_owned()
}

/// A piece of an XMPP stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StreamItem {
    /// The opening `<stream:stream ...>` tag (its attributes).
    Header(Vec<(String, String)>),
    /// One complete top-level stanza.
    Stanza(Element),
    /// `</stream:stream>`.
    End,
}

/// Builds elements from quick-xml events: in document mode the root element is the result;
/// in stream mode the root must be `<stream>` of [`NS_STREAMS`] and each of its children is a
/// stanza.
#[derive(Debug)]
pub struct TreeBuilder {
    stream: bool,
    default_ns: String,
    header_seen: bool,
    ended: bool,
    stack: Vec<Element>,
}

/// A namespace name as declared (the raw attribute value): unescaped, and refused unless it
/// can be a URI reference (no whitespace, control characters, `<`, `>`, `"`, `{` or `}`; the
/// last two would also make `{ns}local` attribute keys ambiguous). Without the unescaping a
/// declaration `xmlns='a&amp;b'` would name `a&amp;b` and not survive serialization.
fn namespace(raw: &str) -> Result<String, XmlError> {
    let ns = quick_xml::escape::unescape(raw).map_err(xe)?;
    if let Some(c) = ns
        .chars()
        .find(|c| c.is_whitespace() || c.is_control() || matches!(c, '<' | '>' | '"' | '{' | '}'))
    {
        return Err(XmlError(format!(
            "namespace name {ns:?} is not a URI reference (it contains {c:?})"
        )));
    }
    Ok(ns.into_owned())
}

fn ns_of(r: &ResolveResult<'_>, fallback: &str) -> Result<String, XmlError> {
    match r {
        ResolveResult::Bound(ns) => namespace(ns.into_inner()),
        ResolveResult::Unbound => Ok(fallback.to_owned()),
        ResolveResult::Unknown(p) => Err(XmlError(format!("undeclared namespace prefix {:?}", p))),
    }
}

impl TreeBuilder {
    /// For one element whose default namespace (when none is declared) is `default_ns`.
    pub fn document(default_ns: &str) -> Self {
        Self {
            stream: false,
            default_ns: default_ns.to_owned(),
            header_seen: true,
            ended: false,
            stack: Vec::new(),
        }
    }

    /// For an XMPP stream whose content namespace (when none is declared) is `default_ns`.
    pub fn stream(default_ns: &str) -> Self {
        Self {
            stream: true,
            default_ns: default_ns.to_owned(),
            header_seen: false,
            ended: false,
            stack: Vec::new(),
        }
    }

    /// Depth of the element being built (0 between stanzas).
    pub fn depth(&self) -> usize {
        self.stack.len()
    }

    fn open(&self, r: &NamespaceResolver, s: &BytesStart<'_>) -> Result<Element, XmlError> {
        let (ns, local) = r.resolve_element(s.name());
        if !is_name(local.into_inner()) {
            return Err(XmlError(format!(
                "{:?} is not an element name",
                local.into_inner()
            )));
        }
        let mut e = Element {
            name: local.into_inner().to_owned(),
            ns: ns_of(&ns, &self.default_ns)?,
            ..Element::default()
        };
        for a in s.attributes() {
            let a = a.map_err(xe)?;
            if a.key.as_namespace_binding().is_some() {
                continue;
            }
            let v = a
                .normalized_value(quick_xml::XmlVersion::Implicit1_0)
                .map_err(xe)?
                .into_owned();
            let raw = a.key.into_inner().to_owned();
            if !is_name(&raw) {
                return Err(XmlError(format!("{raw:?} is not an attribute name")));
            }
            let key = if raw.starts_with("xml:") {
                raw
            } else {
                match r.resolve_attribute(a.key) {
                    (ResolveResult::Unbound, local) => local.into_inner().to_owned(),
                    (ResolveResult::Bound(ns), local) => {
                        format!("{{{}}}{}", namespace(ns.into_inner())?, local.into_inner())
                    }
                    (ResolveResult::Unknown(p), _) => {
                        return Err(XmlError(format!("undeclared attribute prefix {:?}", p)));
                    }
                }
            };
            e.attrs.push((key, v));
        }
        Ok(e)
    }

    fn text(&mut self, t: &str) -> Result<(), XmlError> {
        match self.stack.last_mut() {
            Some(p) => {
                if let Some(Node::Text(last)) = p.children.last_mut() {
                    last.push_str(t);
                } else {
                    p.children.push(Node::Text(t.to_owned()));
                }
                Ok(())
            }
            None if t.trim().is_empty() => Ok(()),
            None => Err(XmlError("text outside an element".into())),
        }
    }

    fn close(&mut self, e: Element) -> Option<StreamItem> {
        match self.stack.last_mut() {
            Some(p) => {
                p.children.push(Node::Element(e));
                None
            }
            None => Some(StreamItem::Stanza(e)),
        }
    }

    /// Takes one event (read from a reader whose resolver is `r`); returns what it completes.
    ///
    /// # Errors
    /// A structure error, an undeclared prefix, a bound exceeded, or content after the end.
    pub fn handle(
        &mut self,
        r: &NamespaceResolver,
        ev: Event<'_>,
    ) -> Result<Option<StreamItem>, XmlError> {
        if self.ended && !matches!(ev, Event::Eof) {
            return Err(XmlError("content after the end of the stream".into()));
        }
        match ev {
            Event::Start(s) if !self.header_seen => {
                let e = self.open(r, &s)?;
                if e.name != "stream" || e.ns != NS_STREAMS {
                    return Err(XmlError(format!(
                        "expected <stream:stream>, got <{}> in {:?}",
                        e.name, e.ns
                    )));
                }
                self.header_seen = true;
                Ok(Some(StreamItem::Header(e.attrs)))
            }
            Event::Empty(s) if !self.header_seen => Err(XmlError(format!(
                "the stream header <{}/> closes the stream at once",
                s.name().into_inner()
            ))),
            Event::Start(s) => {
                if self.stack.len() >= MAX_DEPTH {
                    return Err(XmlError(format!("nesting deeper than {MAX_DEPTH}")));
                }
                let e = self.open(r, &s)?;
                self.stack.push(e);
                Ok(None)
            }
            Event::Empty(s) => {
                let e = self.open(r, &s)?;
                Ok(self.close(e))
            }
            Event::End(_) => match self.stack.pop() {
                Some(e) => Ok(self.close(e)),
                None if self.stream => {
                    self.ended = true;
                    Ok(Some(StreamItem::End))
                }
                None => Err(XmlError("unbalanced end tag".into())),
            },
            Event::Text(t) => {
                let s = t.xml10_content();
                self.text(&s).map(|()| None)
            }
            Event::CData(t) => {
                let s = t.xml10_content();
                self.text(&s).map(|()| None)
            }
            Event::GeneralRef(g) => {
                let s = match g.resolve_char_ref().map_err(xe)? {
                    Some(c) => c.to_string(),
                    None => quick_xml::escape::unescape(&format!("&{};", &*g))
                        .map_err(xe)?
                        .into_owned(),
                };
                self.text(&s).map(|()| None)
            }
            Event::DocType(_) => Err(XmlError("DTDs are not allowed".into())),
            Event::Decl(_) | Event::PI(_) | Event::Comment(_) | Event::Eof => Ok(None),
        }
    }

    /// Checks that nothing is left open (document mode).
    ///
    /// # Errors
    /// An unclosed element.
    pub fn finish(&self) -> Result<(), XmlError> {
        match self.stack.last() {
            Some(e) => Err(XmlError(format!("<{}> is not closed", e.name))),
            None => Ok(()),
        }
    }
}

/// An XMPP stream read through any `BufRead`, item by item (tests and fuzzing; the bridge
/// reads sockets asynchronously with the same [`TreeBuilder`]).
#[derive(Debug)]
pub struct StreamReader<R> {
    reader: NsReader<R>,
    builder: TreeBuilder,
    buf: Vec<u8>,
    stanza_start: u64,
}

impl<R: BufRead> StreamReader<R> {
    /// Reads an XMPP stream whose content namespace is `default_ns`.
    pub fn new(r: R, default_ns: &str) -> Self {
        let mut reader = NsReader::from_reader(r);
        reader.config_mut().trim_text(false);
        reader
            .resolver_mut()
            .set_max_namespace_bindings(MAX_NS_BINDINGS);
        Self {
            reader,
            builder: TreeBuilder::stream(default_ns),
            buf: Vec::new(),
            stanza_start: 0,
        }
    }

    /// The next item; `None` at the end of input.
    ///
    /// # Errors
    /// Malformed XML (including bytes that are not UTF-8) or a bound exceeded.
    pub fn next_item(&mut self) -> Result<Option<StreamItem>, XmlError> {
        loop {
            if self.builder.depth() == 0 {
                self.stanza_start = self.reader.buffer_position();
            }
            self.buf.clear();
            let ev = self
                .reader
                .read_event_into(&mut self.buf)
                .map_err(|e| XmlError(format!("at byte {}: {e}", self.reader.buffer_position())))?;
            if matches!(ev, Event::Eof) {
                return Ok(None);
            }
            let item = self.builder.handle(self.reader.resolver(), ev)?;
            let size = self.reader.buffer_position() - self.stanza_start;
            if size > MAX_STANZA as u64 {
                return Err(XmlError(format!("a stanza exceeds {MAX_STANZA} bytes")));
            }
            if item.is_some() {
                return Ok(item);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn namespace_names_are_unescaped_and_must_be_uri_references() {
        // Found by fuzzing: a raw `<` or `&lt;` in a namespace did not survive a round trip.
        let e = Element::parse("<a xmlns='urn:x?a&amp;b'/>", "jabber:client").unwrap();
        assert_eq!(e.ns, "urn:x?a&b");
        let back = Element::parse(&e.to_xml("jabber:client"), "jabber:client").unwrap();
        assert_eq!(back, e);
        for bad in [
            "<a xmlns=' <?xml'/>",
            "<a xmlns='x&lt;y'/>",
            "<a xmlns='x&#13;y'/>",
            "<a xmlns='x}y'/>",
            "<a xmlns:p='a b' p:k='v'/>",
        ] {
            let err = Element::parse(bad, "jabber:client").unwrap_err();
            assert!(err.0.contains("not a URI reference"), "{bad}: {err}");
        }
    }

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
        assert!(Element::parse("<a/><b/>", "").is_err());
        // Found by fuzzing: an element without a name parsed, and serialized as `</>`.
        assert!(Element::parse("<\r\r\r/>", "").is_err());
    }

    #[test]
    fn prefixes_resolve_to_namespaces() {
        // The hand-written splitter knew only `stream:`; any prefix must resolve.
        let x = "<c:message xmlns:c='jabber:client' xmlns:r='urn:xmpp:reply:0' c:id='1' id='2'>\
                 <c:body>hi</c:body><r:reply id='x'/></c:message>";
        let e = Element::parse(x, "").unwrap();
        assert_eq!(
            (e.name.as_str(), e.ns.as_str()),
            ("message", "jabber:client")
        );
        assert_eq!(e.find("body", "jabber:client").unwrap().text(), "hi");
        assert_eq!(
            e.find("reply", "urn:xmpp:reply:0").unwrap().get("id"),
            Some("x")
        );
        assert_eq!(e.get("id"), Some("2"));
        assert_eq!(e.get("{jabber:client}id"), Some("1"));
        assert_eq!(Element::parse(&e.to_xml(""), "").unwrap(), e);
        assert!(Element::parse("<x:a/>", "").is_err(), "undeclared prefix");
    }

    /// A reader that hands out one byte at a time: every possible split of the input.
    struct Dribble<'a>(&'a [u8]);
    impl std::io::Read for Dribble<'_> {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            match (self.0.split_first(), buf.first_mut()) {
                (Some((b, rest)), Some(slot)) => {
                    *slot = *b;
                    self.0 = rest;
                    Ok(1)
                }
                _ => Ok(0),
            }
        }
    }

    fn items(bytes: &[u8]) -> Result<Vec<StreamItem>, XmlError> {
        let mut r = StreamReader::new(
            std::io::BufReader::with_capacity(1, Dribble(bytes)),
            "jabber:component:accept",
        );
        let mut out = Vec::new();
        while let Some(i) = r.next_item()? {
            out.push(i);
        }
        Ok(out)
    }

    #[test]
    fn a_stream_in_one_byte_reads_with_multibyte_characters() {
        // `é` and `🎉` are split across reads: the hand-written splitter stopped for good.
        let s = "<?xml version='1.0'?><s:stream xmlns='jabber:component:accept' \
                 xmlns:s='http://etherx.jabber.org/streams' id='abc' from='c.example'>\
                 <handshake/><message to='x'><body>café 🎉</body></message></s:stream>";
        let items = items(s.as_bytes()).unwrap();
        assert!(
            matches!(&items[0], StreamItem::Header(a) if a.iter().any(|(k, v)| k == "id" && v == "abc"))
        );
        let StreamItem::Stanza(h) = &items[1] else {
            panic!("{items:?}")
        };
        assert_eq!(
            (h.name.as_str(), h.ns.as_str()),
            ("handshake", "jabber:component:accept")
        );
        let StreamItem::Stanza(m) = &items[2] else {
            panic!("{items:?}")
        };
        assert_eq!(
            m.find("body", "jabber:component:accept").unwrap().text(),
            "café 🎉"
        );
        assert_eq!(items[3], StreamItem::End);
    }

    #[test]
    fn bounds_and_garbage_are_errors() {
        let head = "<stream:stream xmlns='jabber:component:accept' xmlns:stream='http://etherx.jabber.org/streams'>";
        let deep = format!("{head}{}", "<a>".repeat(MAX_DEPTH + 1));
        assert!(items(deep.as_bytes()).is_err());
        let big = format!(
            "{head}<message><body>{}</body></message>",
            "x".repeat(MAX_STANZA)
        );
        assert!(items(big.as_bytes()).is_err());
        assert!(items(b"<notastream/>").is_err());
        let mut bad = format!("{head}<a>").into_bytes();
        bad.extend_from_slice(b"\xff</a>");
        assert!(items(&bad).is_err());
        assert!(items(format!("{head}<!DOCTYPE x><a/>").as_bytes()).is_err());
    }
}
