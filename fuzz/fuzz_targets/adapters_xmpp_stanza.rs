//! XMPP `<message/>` stanzas through the XMPP adapter (and back): never panics; what it
//! builds decodes strictly; what parses serializes to XML that parses to the same tree.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mimi_adapters::xml::Element;

fuzz_target!(|data: &[u8]| {
    if let Ok(s) = std::str::from_utf8(data)
        && let Ok(e) = Element::parse(s, "jabber:client")
    {
        let back = Element::parse(&e.to_xml("jabber:client"), "jabber:client")
            .expect("serialized XML parses");
        assert_eq!(back, e, "XML round trip");
    }
    mimi_fuzz::translate(&mimi_adapters::xmpp::Xmpp::new("mimi.xmpp.test"), data);
});
