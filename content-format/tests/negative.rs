//! One rejection test per rule of the strict decoder (and of the encoder where it applies):
//! each checks the rule reported and the path it names.

// Test helpers panic on purpose: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use mimi_content::{
    Disposition, ExtensionKey, ExternalPart, Message, MimiContent, NestedPart, PartBody, Rule,
    Value, builder, codec,
};

/// A tiny CBOR writer able to produce non-deterministic forms on purpose.
#[derive(Default)]
struct W(Vec<u8>);

impl W {
    fn head(mut self, major: u8, arg: u64) -> Self {
        let m = major << 5;
        match arg {
            0..=23 => self.0.push(m | arg as u8),
            24..=0xff => self.0.extend([m | 24, arg as u8]),
            0x100..=0xffff => {
                self.0.push(m | 25);
                self.0.extend((arg as u16).to_be_bytes());
            }
            0x1_0000..=0xffff_ffff => {
                self.0.push(m | 26);
                self.0.extend((arg as u32).to_be_bytes());
            }
            _ => {
                self.0.push(m | 27);
                self.0.extend(arg.to_be_bytes());
            }
        }
        self
    }
    fn raw(mut self, b: &[u8]) -> Self {
        self.0.extend_from_slice(b);
        self
    }
    fn uint(self, v: u64) -> Self {
        self.head(0, v)
    }
    fn bytes(self, b: &[u8]) -> Self {
        self.head(2, b.len() as u64).raw(b)
    }
    fn text(self, s: &str) -> Self {
        self.head(3, s.len() as u64).raw(s.as_bytes())
    }
    fn done(self) -> Vec<u8> {
        self.0
    }
}

fn salt() -> Vec<u8> {
    W::default().bytes(&[7; 16]).done()
}
fn null() -> Vec<u8> {
    vec![0xf6]
}
fn empty_bstr() -> Vec<u8> {
    vec![0x40]
}
fn exts() -> Vec<u8> {
    W::default()
        .head(5, 2)
        .uint(1)
        .text("mimi://a.example/u/alice")
        .uint(2)
        .text("mimi://a.example/r/r")
        .done()
}
fn text_part() -> Vec<u8> {
    W::default()
        .head(4, 5)
        .uint(1)
        .text("")
        .uint(1)
        .text("text/plain;charset=utf-8")
        .bytes(b"hi")
        .done()
}

/// `[salt, replaces, topicId, expires, inReplyTo, extensions, nestedPart]` from encoded fields.
fn message(fields: [Vec<u8>; 7]) -> Vec<u8> {
    let mut out = vec![0x87];
    for f in fields {
        out.extend(f);
    }
    out
}

fn base() -> [Vec<u8>; 7] {
    [
        salt(),
        null(),
        empty_bstr(),
        null(),
        null(),
        exts(),
        text_part(),
    ]
}

fn with(i: usize, field: Vec<u8>) -> Vec<u8> {
    let mut f = base();
    f[i] = field;
    message(f)
}

fn ext_with(entries: &[(Vec<u8>, Vec<u8>)]) -> Vec<u8> {
    let mut w = W::default().head(5, entries.len() as u64);
    for (k, v) in entries {
        w = w.raw(k).raw(v);
    }
    with(5, w.done())
}

#[track_caller]
fn rejects(bytes: &[u8], rule: Rule, path: &str) {
    let e = codec::decode(bytes).expect_err("must be rejected");
    assert_eq!(e.rule, rule, "rule for {path}: {e}");
    assert_eq!(e.path.to_string(), path, "path: {e}");
}

#[track_caller]
fn rejects_matching(bytes: &[u8], pred: impl Fn(&Rule) -> bool, path: &str) {
    let e = codec::decode(bytes).expect_err("must be rejected");
    assert!(pred(&e.rule), "unexpected rule: {e}");
    assert_eq!(e.path.to_string(), path, "path: {e}");
}

#[test]
fn the_base_message_is_valid() {
    let m = Message::decode(message(base())).unwrap();
    assert_eq!(codec::encode(m.content()).unwrap(), message(base()));
}

#[test]
fn truncation_and_trailing_bytes() {
    let ok = message(base());
    for cut in 1..ok.len() {
        assert!(codec::decode(&ok[..cut]).is_err(), "cut at {cut}");
    }
    rejects_matching(
        &ok[..ok.len() - 1],
        |r| matches!(r, Rule::Truncated { .. }),
        "nestedPart.content",
    );
    let mut long = ok;
    long.extend([0, 0]);
    rejects(&long, Rule::TrailingBytes { count: 2 }, "message");
}

#[test]
fn non_shortest_heads() {
    rejects(
        &with(0, W::default().raw(&[0x58, 16]).raw(&[7; 16]).done()),
        Rule::NonShortestArgument { value: 16 },
        "salt",
    );
    rejects(
        &message([
            vec![0x98, 7],
            null(),
            empty_bstr(),
            null(),
            null(),
            exts(),
            text_part(),
        ])
        .into_iter()
        .skip(1)
        .collect::<Vec<_>>(),
        Rule::NonShortestArgument { value: 7 },
        "message",
    );
    rejects(
        &ext_with(&[(vec![0x18, 0x03], vec![0x00])]),
        Rule::NonShortestArgument { value: 3 },
        "mimiExtensions<key of entry 0>",
    );
}

#[test]
fn non_shortest_float_and_nan() {
    rejects_matching(
        &ext_with(&[(vec![0x03], vec![0xfa, 0x3f, 0xc0, 0, 0])]),
        |r| matches!(r, Rule::NonShortestFloat { .. }),
        "mimiExtensions[3]",
    );
    rejects(
        &ext_with(&[(vec![0x03], vec![0xf9, 0x7e, 0x01])]),
        Rule::NonCanonicalNan,
        "mimiExtensions[3]",
    );
    rejects(
        &ext_with(&[(vec![0x03], vec![0xfb, 0x7f, 0xf8, 0, 0, 0, 0, 0, 0])]),
        Rule::NonCanonicalNan,
        "mimiExtensions[3]",
    );
    assert!(codec::decode(&ext_with(&[(vec![0x03], vec![0xf9, 0x7e, 0x00])])).is_ok());
}

#[test]
fn indefinite_lengths_and_breaks() {
    rejects(
        &with(2, vec![0x5f, 0x41, 0x00, 0xff]),
        Rule::IndefiniteLength,
        "topicId",
    );
    rejects(
        &with(5, vec![0xbf, 0xff]),
        Rule::IndefiniteLength,
        "mimiExtensions",
    );
    rejects(
        &ext_with(&[(vec![0x03], vec![0xff])]),
        Rule::UnexpectedBreak,
        "mimiExtensions[3]",
    );
    rejects(
        &ext_with(&[(vec![0x03], vec![0x1d])]),
        Rule::ReservedAdditionalInfo(29),
        "mimiExtensions[3]",
    );
    rejects(
        &ext_with(&[(vec![0x03], vec![0xf8, 0x05])]),
        Rule::BadSimpleValue(5),
        "mimiExtensions[3]",
    );
}

#[test]
fn wrong_types_and_lengths() {
    rejects(
        &with(0, W::default().text("0123456789abcdef").done()),
        Rule::WrongType {
            expected: "byte string",
            found: "text string",
        },
        "salt",
    );
    rejects(
        &with(1, vec![0xf5]),
        Rule::WrongType {
            expected: "byte string",
            found: "bool",
        },
        "replaces",
    );
    rejects(
        &with(3, W::default().head(4, 2).uint(1).uint(5).done()),
        Rule::WrongType {
            expected: "bool",
            found: "unsigned integer",
        },
        "expires.relative",
    );
    let mut six = base().to_vec();
    six.pop();
    let mut bytes = vec![0x86];
    six.into_iter().for_each(|f| bytes.extend(f));
    rejects(
        &bytes,
        Rule::WrongArrayLength {
            expected: "7 (mimiContent)",
            found: 6,
        },
        "message",
    );
    let part = W::default()
        .head(4, 4)
        .uint(1)
        .text("")
        .uint(1)
        .text("text/plain")
        .done();
    rejects(
        &with(6, part),
        Rule::WrongArrayLength {
            expected: "5 (SinglePart)",
            found: 4,
        },
        "nestedPart",
    );
    rejects(
        &with(
            3,
            W::default().head(4, 3).raw(&[0xf4]).uint(1).uint(1).done(),
        ),
        Rule::WrongArrayLength {
            expected: "2 (Expiration)",
            found: 3,
        },
        "expires",
    );
}

#[test]
fn fixed_sizes_and_limits() {
    rejects(
        &with(0, W::default().bytes(&[1; 15]).done()),
        Rule::WrongSize {
            expected: 16,
            found: 15,
        },
        "salt",
    );
    rejects(
        &with(1, W::default().bytes(&[1; 31]).done()),
        Rule::WrongSize {
            expected: 32,
            found: 31,
        },
        "replaces",
    );
    rejects(
        &with(4, W::default().bytes(&[1; 33]).done()),
        Rule::WrongSize {
            expected: 32,
            found: 33,
        },
        "inReplyTo",
    );
    rejects(
        &with(2, W::default().bytes(&[1; 4097]).done()),
        Rule::TooLong {
            max: 4096,
            found: 4097,
        },
        "topicId",
    );
    assert!(codec::decode(&with(2, W::default().bytes(&[1; 4096]).done())).is_ok());
    rejects(
        &with(3, W::default().head(4, 2).raw(&[0xf5]).uint(1 << 32).done()),
        Rule::TooLarge {
            value: 1 << 32,
            bits: 32,
        },
        "expires.time",
    );
}

#[test]
fn utf8_is_required() {
    let part = W::default()
        .head(4, 5)
        .uint(1)
        .head(3, 1)
        .raw(&[0xff])
        .uint(1)
        .text("t")
        .bytes(b"")
        .done();
    rejects(&with(6, part), Rule::InvalidUtf8, "nestedPart.language");
    rejects(
        &ext_with(&[(vec![0x03], vec![0x62, 0xc3, 0x28])]),
        Rule::InvalidUtf8,
        "mimiExtensions[3]",
    );
}

#[test]
fn integer_range() {
    let big = W::default().uint(1 << 53).done();
    rejects(
        &ext_with(&[(vec![0x03], big.clone())]),
        Rule::IntegerOutOfRange { value: 1 << 53 },
        "mimiExtensions[3]",
    );
    rejects(
        &ext_with(&[(big, vec![0x00])]),
        Rule::IntegerOutOfRange { value: 1 << 53 },
        "mimiExtensions<key of entry 0>",
    );
    let neg = W::default().head(1, (1 << 53) - 1).done();
    rejects(
        &ext_with(&[(vec![0x03], neg)]),
        Rule::IntegerOutOfRange { value: -(1 << 53) },
        "mimiExtensions[3]",
    );
    rejects(
        &ext_with(&[(vec![0x03], vec![0xc2, 0x41, 0x01])]),
        Rule::Bignum { tag: 2 },
        "mimiExtensions[3]",
    );
}

#[test]
fn map_rules() {
    let one = W::default().uint(1).text("mimi://a/u/x").done();
    let two = W::default().uint(2).text("mimi://a/r/x").done();
    let mut unsorted = vec![0xa2];
    unsorted.extend(two);
    unsorted.extend(one.clone());
    rejects(&with(5, unsorted), Rule::UnsortedKeys, "mimiExtensions");
    let mut dup = vec![0xa2];
    dup.extend(one.clone());
    dup.extend(one);
    rejects(&with(5, dup), Rule::DuplicateKey, "mimiExtensions");
    rejects(
        &ext_with(&[(vec![0x41, 0x01], vec![0x00])]),
        Rule::BadKeyType {
            found: "byte string",
            allowed: "integer or text string",
        },
        "mimiExtensions<key of entry 0>",
    );
    rejects(
        &ext_with(&[(vec![0x60], vec![0x00])]),
        Rule::BadTextKeyLength { len: 0 },
        "mimiExtensions",
    );
    rejects(
        &ext_with(&[(W::default().text(&"k".repeat(256)).done(), vec![0x00])]),
        Rule::BadTextKeyLength { len: 256 },
        "mimiExtensions",
    );
    assert!(
        codec::decode(&ext_with(&[(
            W::default().text(&"k".repeat(255)).done(),
            vec![0x00]
        )]))
        .is_ok()
    );
    // Nested maps may use byte-string keys but not arrays.
    assert!(codec::decode(&ext_with(&[(vec![0x03], vec![0xa1, 0x41, 0x01, 0x00])])).is_ok());
    rejects(
        &ext_with(&[(vec![0x03], vec![0xa1, 0x80, 0x00])]),
        Rule::BadKeyType {
            found: "array",
            allowed: "integer, text string or byte string",
        },
        "mimiExtensions[3]<key of entry 0>",
    );
    // senderUri must be text.
    rejects(
        &ext_with(&[(vec![0x01], vec![0x00])]),
        Rule::UriNotText {
            key: 1,
            name: "senderUri",
        },
        "mimiExtensions[1]",
    );
}

#[test]
fn extension_depth() {
    // The map is level 1; [[[32(x)]]] inside reaches level 4 (the draft's own example depth).
    assert!(
        codec::decode(&ext_with(&[(
            vec![0x03],
            vec![0x81, 0x81, 0xd8, 0x20, 0x00]
        )]))
        .is_ok()
    );
    rejects(
        &ext_with(&[(vec![0x03], vec![0x81, 0x81, 0x81, 0x81, 0x00])]),
        Rule::ExtensionsTooDeep { max: 4 },
        "mimiExtensions[3][0][0][0]",
    );
}

fn multi(sem: u64, parts: &[Vec<u8>]) -> Vec<u8> {
    let mut w = W::default()
        .head(4, 5)
        .uint(1)
        .text("")
        .uint(3)
        .uint(sem)
        .head(4, parts.len() as u64);
    for p in parts {
        w = w.raw(p);
    }
    w.done()
}

#[test]
fn part_rules() {
    let leaf = text_part();
    let l2 = multi(2, &[leaf.clone(), leaf.clone()]);
    let l3 = multi(2, &[l2, leaf.clone()]);
    let l4 = multi(2, &[l3, leaf.clone()]);
    assert!(codec::decode(&with(6, l4.clone())).is_ok());
    let l5 = multi(2, &[l4, leaf.clone()]);
    rejects(
        &with(6, l5),
        Rule::PartsTooDeep { max: 4 },
        "nestedPart.parts[0].parts[0].parts[0].parts[0]",
    );
    rejects(
        &with(6, multi(2, std::slice::from_ref(&leaf))),
        Rule::TooFewParts { found: 1 },
        "nestedPart.parts",
    );
    rejects(
        &with(6, multi(3, &[leaf.clone(), leaf])),
        Rule::UnknownPartSemantics(3),
        "nestedPart.partSemantics",
    );
    let many: Vec<Vec<u8>> = (0..1024).map(|_| vec![0x83, 0x01, 0x60, 0x00]).collect();
    rejects(
        &with(6, multi(2, &many)),
        Rule::TooManyParts { max: 1024 },
        "nestedPart.parts[1023]",
    );
    assert!(codec::decode(&with(6, multi(2, &many[..1023]))).is_ok());
    rejects(
        &with(6, vec![0x83, 0x01, 0x60, 0x04]),
        Rule::UnknownCardinality(4),
        "nestedPart.cardinality",
    );
    rejects(
        &with(6, W::default().head(4, 3).uint(256).text("").uint(0).done()),
        Rule::DispositionOutOfRange(256),
        "nestedPart.disposition",
    );
    // Unknown dispositions below 256 are kept.
    let m = Message::decode(with(
        6,
        W::default().head(4, 3).uint(200).text("").uint(0).done(),
    ))
    .unwrap();
    assert_eq!(
        m.content().nested_part.disposition,
        Disposition::Unknown(200)
    );
    assert_eq!(
        m.content().nested_part.disposition.effective(),
        Disposition::Render
    );
}

fn external(enc_alg: u64, key: &[u8], nonce: &[u8], hash_alg: u64, hash: &[u8]) -> Vec<u8> {
    W::default()
        .head(4, 15)
        .uint(6)
        .text("")
        .uint(2)
        .text("image/png")
        .text("https://a.example/x")
        .uint(0)
        .uint(10)
        .uint(enc_alg)
        .bytes(key)
        .bytes(nonce)
        .bytes(b"")
        .uint(hash_alg)
        .bytes(hash)
        .text("")
        .text("")
        .done()
}

#[test]
fn external_part_rules() {
    assert!(codec::decode(&with(6, external(1, &[1; 16], &[2; 12], 1, &[3; 32]))).is_ok());
    assert!(codec::decode(&with(6, external(0, b"", b"", 0, b""))).is_ok());
    rejects(
        &with(6, external(0, &[1], b"", 0, b"")),
        Rule::KeyMaterialWithoutEncryption { field: "key" },
        "nestedPart.key",
    );
    rejects(
        &with(6, external(1, &[1; 15], &[2; 12], 1, &[3; 32])),
        Rule::AeadParameterSize {
            field: "key",
            alg: 1,
            expected: 16,
            found: 15,
        },
        "nestedPart.key",
    );
    rejects(
        &with(6, external(2, &[1; 32], &[2; 8], 1, &[3; 32])),
        Rule::AeadParameterSize {
            field: "nonce",
            alg: 2,
            expected: 12,
            found: 8,
        },
        "nestedPart.nonce",
    );
    rejects(
        &with(6, external(1, &[1; 16], &[2; 12], 1, &[3; 20])),
        Rule::HashSize {
            alg: 1,
            expected: 32,
            found: 20,
        },
        "nestedPart.contentHash",
    );
    rejects(
        &with(6, external(1 << 16, b"", b"", 0, b"")),
        Rule::TooLarge {
            value: 1 << 16,
            bits: 16,
        },
        "nestedPart.encAlg",
    );
    rejects(
        &with(6, external(7, &[1], &[1], 256, b"")),
        Rule::TooLarge {
            value: 256,
            bits: 8,
        },
        "nestedPart.hashAlg",
    );
}

#[test]
fn huge_declared_lengths_fail_fast() {
    for head in [
        vec![0x5b, 0, 0, 0, 1, 0, 0, 0, 0],
        vec![0x9a, 0x7f, 0xff, 0xff, 0xff],
        vec![0xba, 0x7f, 0xff, 0xff, 0xff],
    ] {
        assert!(codec::decode(&with(2, head.clone())).is_err());
        assert!(codec::decode(&ext_with(&[(vec![0x03], head)])).is_err());
    }
}

// ------------------------------------------------------------------ the encoder's checks

fn content() -> MimiContent {
    builder::text("mimi://a/u/x", "mimi://a/r/x", [1; 16], "hi")
        .build()
        .unwrap()
        .content()
        .clone()
}

#[test]
fn encoder_refuses_what_the_decoder_refuses() {
    let mut c = content();
    c.topic_id = vec![0; 4097];
    assert_eq!(
        codec::encode(&c).unwrap_err().rule,
        Rule::TooLong {
            max: 4096,
            found: 4097
        }
    );

    let mut c = content();
    c.extensions.insert(ExtensionKey::Int(1), Value::Integer(3));
    assert_eq!(
        codec::encode(&c).unwrap_err().rule,
        Rule::UriNotText {
            key: 1,
            name: "senderUri"
        }
    );

    let mut c = content();
    c.extensions
        .insert(ExtensionKey::Int(9), Value::Integer(1 << 60));
    assert!(matches!(
        codec::encode(&c).unwrap_err().rule,
        Rule::IntegerOutOfRange { .. }
    ));

    let mut c = content();
    c.extensions
        .insert(ExtensionKey::Text(String::new()), Value::Null);
    assert_eq!(
        codec::encode(&c).unwrap_err().rule,
        Rule::BadTextKeyLength { len: 0 }
    );

    let mut c = content();
    let deep = Value::Array(vec![Value::Array(vec![Value::Array(vec![Value::Array(
        vec![],
    )])])]);
    c.extensions.insert(ExtensionKey::Int(9), deep);
    assert_eq!(
        codec::encode(&c).unwrap_err().rule,
        Rule::ExtensionsTooDeep { max: 4 }
    );

    let mut c = content();
    c.extensions.insert(
        ExtensionKey::Int(9),
        Value::Map(vec![
            (Value::Integer(1), Value::Null),
            (Value::Integer(1), Value::Null),
        ]),
    );
    assert_eq!(codec::encode(&c).unwrap_err().rule, Rule::DuplicateKey);

    let mut c = content();
    let mut p = c.nested_part.clone();
    for _ in 0..4 {
        p = builder::multi(
            mimi_content::PartSemantics::ProcessAll,
            Disposition::Render,
            vec![p.clone(), p],
        );
    }
    c.nested_part = p;
    assert_eq!(
        codec::encode(&c).unwrap_err().rule,
        Rule::PartsTooDeep { max: 4 }
    );

    let mut c = content();
    c.nested_part = NestedPart::new(
        Disposition::Render,
        PartBody::External(ExternalPart {
            key: vec![1],
            ..ExternalPart::default()
        }),
    );
    let e = codec::encode(&c).unwrap_err();
    assert_eq!(e.rule, Rule::KeyMaterialWithoutEncryption { field: "key" });
    assert_eq!(e.path.to_string(), "nestedPart.key");
}

/// Regression (found by `mutated_vectors_never_panic`): a map head announcing 2^64 - 1 entries
/// made the "input ends early" arithmetic overflow.
#[test]
fn huge_map_length_is_truncation_not_overflow() {
    let b = with(
        5,
        vec![0xbb, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff],
    );
    let e = codec::decode(&b).expect_err("must be rejected");
    assert!(
        matches!(e.rule, Rule::Truncated { .. }),
        "unexpected rule: {e}"
    );
}
