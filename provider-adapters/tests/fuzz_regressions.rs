//! Inputs the fuzzers once found failing (`fuzz/regressions/`), replayed against the property
//! their target checks: an XMPP stanza that parses serializes to XML that parses to the same
//! tree.

use mimi_adapters::xml::Element;

#[test]
fn xmpp_stanza_regressions_round_trip() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz/regressions/adapters_xmpp_stanza");
    let mut n = 0;
    for f in std::fs::read_dir(&dir).expect("the regression inputs are in the repository") {
        let path = f.expect("a directory entry").path();
        let data = std::fs::read(&path).expect("readable");
        n += 1;
        if let Ok(s) = std::str::from_utf8(&data)
            && let Ok(e) = Element::parse(s, "jabber:client")
        {
            let back =
                Element::parse(&e.to_xml("jabber:client"), "jabber:client").unwrap_or_else(|err| {
                    panic!("{}: serialized XML does not parse: {err}", path.display())
                });
            assert_eq!(back, e, "{}: XML round trip", path.display());
        }
    }
    assert!(
        n >= 2,
        "expected the regression inputs under {}",
        dir.display()
    );
}
