//! Strict decoding and deterministic encoding of [`MimiContent`].
//!
//! The draft's limits are written once, as the `check_*` functions below, and applied both by
//! the decoder (with the byte offset of the offending item) and by the encoder (so that every
//! message this crate encodes is one it would accept).

use crate::cbor::{KeyPolicy, MAX_SAFE_INTEGER, Reader, Value, Writer, key_segment};
use crate::error::{DecodeError, EncodeError, Path, Rule, Segment};
use crate::model::{
    AEAD_AES_128_GCM, AEAD_AES_256_GCM, Disposition, EXT_ROOM_URI, EXT_SENDER_URI, Expiration,
    ExtensionKey, Extensions, ExternalPart, HASH_SHA_256, MAX_EXTENSION_DEPTH, MAX_PART_DEPTH,
    MAX_PARTS, MAX_TOPIC_ID_LEN, MessageId, MimiContent, MultiPart, NestedPart, PartBody,
    PartSemantics, SinglePart,
};

// ---------------------------------------------------------------------------------------------
// Rules shared by the decoder and the encoder.

fn check_topic_id(len: usize) -> Result<(), Rule> {
    if len > MAX_TOPIC_ID_LEN {
        return Err(Rule::TooLong {
            max: MAX_TOPIC_ID_LEN,
            found: len,
        });
    }
    Ok(())
}

fn check_part_depth(depth: usize) -> Result<(), Rule> {
    if depth > MAX_PART_DEPTH {
        return Err(Rule::PartsTooDeep {
            max: MAX_PART_DEPTH,
        });
    }
    Ok(())
}

fn check_part_count(count: usize) -> Result<(), Rule> {
    if count > MAX_PARTS {
        return Err(Rule::TooManyParts { max: MAX_PARTS });
    }
    Ok(())
}

fn check_multi_count(n: usize) -> Result<(), Rule> {
    if n < 2 {
        return Err(Rule::TooFewParts { found: n });
    }
    Ok(())
}

/// Key material must be empty without encryption; known AEADs and hashes have fixed sizes.
fn check_external(e: &ExternalPart) -> Result<(), (&'static str, Rule)> {
    if e.size > MAX_SAFE_INTEGER as u64 {
        return Err((
            "size",
            Rule::IntegerOutOfRange {
                value: i128::from(e.size),
            },
        ));
    }
    if e.enc_alg == 0 {
        for (field, v) in [("key", &e.key), ("nonce", &e.nonce), ("aad", &e.aad)] {
            if !v.is_empty() {
                return Err((field, Rule::KeyMaterialWithoutEncryption { field }));
            }
        }
    }
    let key_len = match e.enc_alg {
        AEAD_AES_128_GCM => Some(16),
        AEAD_AES_256_GCM => Some(32),
        _ => None,
    };
    if let Some(expected) = key_len {
        if e.key.len() != expected {
            let rule = Rule::AeadParameterSize {
                field: "key",
                alg: e.enc_alg,
                expected,
                found: e.key.len(),
            };
            return Err(("key", rule));
        }
        if e.nonce.len() != 12 {
            let rule = Rule::AeadParameterSize {
                field: "nonce",
                alg: e.enc_alg,
                expected: 12,
                found: e.nonce.len(),
            };
            return Err(("nonce", rule));
        }
    }
    let hash_len = match e.hash_alg {
        0 => Some(0),
        HASH_SHA_256 => Some(32),
        _ => None,
    };
    if let Some(expected) = hash_len
        && e.content_hash.len() != expected
    {
        let rule = Rule::HashSize {
            alg: e.hash_alg,
            expected,
            found: e.content_hash.len(),
        };
        return Err(("contentHash", rule));
    }
    Ok(())
}

fn check_uri_extension(key: &ExtensionKey, value: &Value) -> Result<(), Rule> {
    let name = match key {
        ExtensionKey::Int(EXT_SENDER_URI) => "senderUri",
        ExtensionKey::Int(EXT_ROOM_URI) => "roomUri",
        _ => return Ok(()),
    };
    match value {
        Value::Text(_) => Ok(()),
        _ => Err(Rule::UriNotText {
            key: if name == "senderUri" { 1 } else { 2 },
            name,
        }),
    }
}

fn check_bits(value: u64, bits: u32) -> Result<(), Rule> {
    if bits < 64 && value >> bits != 0 {
        return Err(Rule::TooLarge { value, bits });
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Decoding.

/// Decodes one MIMI content message strictly: deterministic CBOR, the draft's CDDL and limits,
/// and no trailing bytes.
///
/// # Errors
/// A [`DecodeError`] naming the path, byte offset and broken rule.
pub fn decode(bytes: &[u8]) -> Result<MimiContent, DecodeError> {
    let mut r = Reader::new(bytes);
    let content = read_content(&mut r)?;
    r.finish()?;
    Ok(content)
}

fn field<T>(
    r: &mut Reader<'_>,
    name: &'static str,
    f: impl FnOnce(&mut Reader<'_>) -> Result<T, DecodeError>,
) -> Result<T, DecodeError> {
    r.push(Segment::Field(name));
    let v = f(r)?;
    r.pop();
    Ok(v)
}

fn is_null(r: &mut Reader<'_>) -> Result<bool, DecodeError> {
    if r.peek() == Some(0xf6) {
        r.head()?;
        return Ok(true);
    }
    Ok(false)
}

fn fixed<const N: usize>(r: &mut Reader<'_>) -> Result<[u8; N], DecodeError> {
    let at = r.pos();
    let b = r.bytes("byte string")?;
    <[u8; N]>::try_from(b).map_err(|_| {
        r.err(
            at,
            Rule::WrongSize {
                expected: N,
                found: b.len(),
            },
        )
    })
}

fn opt_message_id(r: &mut Reader<'_>) -> Result<Option<MessageId>, DecodeError> {
    if is_null(r)? {
        return Ok(None);
    }
    Ok(Some(MessageId(fixed::<32>(r)?)))
}

fn uint_bits(r: &mut Reader<'_>, bits: u32) -> Result<u64, DecodeError> {
    let (v, at) = r.uint("unsigned integer")?;
    check_bits(v, bits).map_err(|rule| r.err(at, rule))?;
    Ok(v)
}

fn read_bool(r: &mut Reader<'_>) -> Result<bool, DecodeError> {
    let h = r.head()?;
    match (h.major, h.arg, h.info) {
        (7, 20, 20) => Ok(false),
        (7, 21, 21) => Ok(true),
        _ => Err(r.err(
            h.offset,
            Rule::WrongType {
                expected: "bool",
                found: h.type_name(),
            },
        )),
    }
}

fn read_content(r: &mut Reader<'_>) -> Result<MimiContent, DecodeError> {
    let (n, at) = r.array("mimiContent array")?;
    if n != 7 {
        return Err(r.err(
            at,
            Rule::WrongArrayLength {
                expected: "7 (mimiContent)",
                found: n,
            },
        ));
    }
    let salt = field(r, "salt", fixed::<16>)?;
    let replaces = field(r, "replaces", opt_message_id)?;
    let topic_id = field(r, "topicId", |r| {
        let at = r.pos();
        let b = r.bytes("byte string")?;
        check_topic_id(b.len()).map_err(|rule| r.err(at, rule))?;
        Ok(b.to_vec())
    })?;
    let expires = field(r, "expires", |r| {
        if is_null(r)? {
            return Ok(None);
        }
        let (n, at) = r.array("null or Expiration array")?;
        if n != 2 {
            return Err(r.err(
                at,
                Rule::WrongArrayLength {
                    expected: "2 (Expiration)",
                    found: n,
                },
            ));
        }
        let relative = field(r, "relative", read_bool)?;
        let time = field(r, "time", |r| uint_bits(r, 32))? as u32;
        Ok(Some(Expiration { relative, time }))
    })?;
    let in_reply_to = field(r, "inReplyTo", opt_message_id)?;
    let extensions = field(r, "mimiExtensions", read_extensions)?;
    let mut count = 0;
    let nested_part = field(r, "nestedPart", |r| read_part(r, 1, &mut count))?;
    Ok(MimiContent {
        salt,
        replaces,
        topic_id,
        expires,
        in_reply_to,
        extensions,
        nested_part,
    })
}

fn read_extensions(r: &mut Reader<'_>) -> Result<Extensions, DecodeError> {
    let h = r.expect(5, "map")?;
    let start = r.pos();
    let entries = r.map_entries(h, 1, MAX_EXTENSION_DEPTH, KeyPolicy::Extensions)?;
    let mut out = Vec::with_capacity(entries.len());
    for (key, value) in entries {
        let key = match key {
            Value::Integer(i) => ExtensionKey::Int(i),
            Value::Text(t) => ExtensionKey::Text(t),
            // `KeyPolicy::Extensions` admits nothing else.
            _ => {
                return Err(r.err(
                    start,
                    Rule::BadKeyType {
                        found: key.type_name(),
                        allowed: "integer or text string",
                    },
                ));
            }
        };
        if let Err(rule) = check_uri_extension(&key, &value) {
            r.push(key_segment(&key.to_value()));
            let e = r.err(start, rule);
            return Err(e);
        }
        out.push((key, value));
    }
    Ok(Extensions::from_sorted(out))
}

fn read_part(
    r: &mut Reader<'_>,
    depth: usize,
    count: &mut usize,
) -> Result<NestedPart, DecodeError> {
    let (n, at) = r.array("NestedPart array")?;
    check_part_depth(depth).map_err(|rule| r.err(at, rule))?;
    *count += 1;
    check_part_count(*count).map_err(|rule| r.err(at, rule))?;
    if n < 3 {
        return Err(r.err(
            at,
            Rule::WrongArrayLength {
                expected: "3, 5 or 15 (NestedPart)",
                found: n,
            },
        ));
    }
    let disposition = field(r, "disposition", |r| {
        let (v, at) = r.uint("unsigned integer")?;
        if v > 255 {
            return Err(r.err(at, Rule::DispositionOutOfRange(v)));
        }
        Ok(Disposition::from_code(v as u8))
    })?;
    let language = field(r, "language", |r| r.text("text string").map(str::to_owned))?;
    let (card, card_at) = field(r, "cardinality", |r| r.uint("unsigned integer"))?;
    let (expected, expected_desc) = match card {
        0 => (3, "3 (NullPart)"),
        1 => (5, "5 (SinglePart)"),
        2 => (15, "15 (ExternalPart)"),
        3 => (5, "5 (MultiPart)"),
        other => {
            r.push(Segment::Field("cardinality"));
            return Err(r.err(card_at, Rule::UnknownCardinality(other)));
        }
    };
    if n != expected {
        return Err(r.err(
            at,
            Rule::WrongArrayLength {
                expected: expected_desc,
                found: n,
            },
        ));
    }
    let text = |r: &mut Reader<'_>| r.text("text string").map(str::to_owned);
    let bytes = |r: &mut Reader<'_>| r.bytes("byte string").map(<[u8]>::to_vec);
    let body = match card {
        0 => PartBody::Null,
        1 => PartBody::Single(SinglePart {
            content_type: field(r, "contentType", text)?,
            content: field(r, "content", bytes)?,
        }),
        2 => {
            let start = r.pos();
            let e = ExternalPart {
                content_type: field(r, "contentType", text)?,
                url: field(r, "url", text)?,
                expires: field(r, "expires", |r| uint_bits(r, 32))? as u32,
                size: field(r, "size", |r| uint_bits(r, 64))?,
                enc_alg: field(r, "encAlg", |r| uint_bits(r, 16))? as u16,
                key: field(r, "key", bytes)?,
                nonce: field(r, "nonce", bytes)?,
                aad: field(r, "aad", bytes)?,
                hash_alg: field(r, "hashAlg", |r| uint_bits(r, 8))? as u8,
                content_hash: field(r, "contentHash", bytes)?,
                description: field(r, "description", text)?,
                filename: field(r, "filename", text)?,
            };
            if let Err((name, rule)) = check_external(&e) {
                r.push(Segment::Field(name));
                return Err(r.err(start, rule));
            }
            PartBody::External(e)
        }
        _ => {
            let (sem, sem_at) = field(r, "partSemantics", |r| r.uint("unsigned integer"))?;
            let Some(semantics) = PartSemantics::from_code(sem) else {
                r.push(Segment::Field("partSemantics"));
                return Err(r.err(sem_at, Rule::UnknownPartSemantics(sem)));
            };
            r.push(Segment::Field("parts"));
            let (k, k_at) = r.array("array of NestedParts")?;
            check_multi_count(k as usize).map_err(|rule| r.err(k_at, rule))?;
            let mut parts = Vec::with_capacity(k as usize);
            for i in 0..k as usize {
                r.push(Segment::Index(i));
                parts.push(read_part(r, depth + 1, count)?);
                r.pop();
            }
            r.pop();
            PartBody::Multi(MultiPart { semantics, parts })
        }
    };
    Ok(NestedPart {
        disposition,
        language,
        body,
    })
}

// ---------------------------------------------------------------------------------------------
// Encoding.

/// Encodes a message deterministically after checking the draft's limits.
///
/// # Errors
/// An [`EncodeError`] if the message breaks a limit (depth, part count, topicId length,
/// extension rules, ExternalPart key sizes).
pub fn encode(c: &MimiContent) -> Result<Vec<u8>, EncodeError> {
    validate(c)?;
    let mut w = Writer::with_capacity(256);
    write_content(&mut w, c);
    Ok(w.into_bytes())
}

fn validate(c: &MimiContent) -> Result<(), EncodeError> {
    let at = |segs: &[Segment], rule: Rule| EncodeError {
        path: Path(segs.to_vec()),
        rule,
    };
    check_topic_id(c.topic_id.len()).map_err(|rule| at(&[Segment::Field("topicId")], rule))?;
    let ext = Path(vec![Segment::Field("mimiExtensions")]);
    for (key, value) in c.extensions.iter() {
        let kv = key.to_value();
        let here = ext.join(key_segment(&kv));
        if let ExtensionKey::Text(t) = key
            && (t.is_empty() || t.len() > 255)
        {
            return Err(EncodeError {
                path: here,
                rule: Rule::BadTextKeyLength { len: t.len() },
            });
        }
        validate_value(&kv, 1, &here)?;
        check_uri_extension(key, value).map_err(|rule| EncodeError {
            path: here.clone(),
            rule,
        })?;
        validate_value(value, 1, &here)?;
    }
    let mut count = 0;
    validate_part(
        &c.nested_part,
        1,
        &mut count,
        &Path(vec![Segment::Field("nestedPart")]),
    )
}

fn validate_part(
    p: &NestedPart,
    depth: usize,
    count: &mut usize,
    path: &Path,
) -> Result<(), EncodeError> {
    let fail = |rule| EncodeError {
        path: path.clone(),
        rule,
    };
    check_part_depth(depth).map_err(fail)?;
    *count += 1;
    check_part_count(*count).map_err(fail)?;
    match &p.body {
        PartBody::External(e) => check_external(e).map_err(|(name, rule)| EncodeError {
            path: path.join(Segment::Field(name)),
            rule,
        })?,
        PartBody::Multi(m) => {
            let parts = path.join(Segment::Field("parts"));
            check_multi_count(m.parts.len()).map_err(|rule| EncodeError {
                path: parts.clone(),
                rule,
            })?;
            for (i, child) in m.parts.iter().enumerate() {
                validate_part(child, depth + 1, count, &parts.join(Segment::Index(i)))?;
            }
        }
        PartBody::Null | PartBody::Single(_) => {}
    }
    Ok(())
}

/// Checks what the reader enforces on generic values; `level` is that of the enclosing
/// container.
fn validate_value(v: &Value, level: usize, path: &Path) -> Result<(), EncodeError> {
    let fail = |rule| EncodeError {
        path: path.clone(),
        rule,
    };
    let enter = |l: usize| {
        if l > MAX_EXTENSION_DEPTH {
            return Err(fail(Rule::ExtensionsTooDeep {
                max: MAX_EXTENSION_DEPTH,
            }));
        }
        Ok(())
    };
    match v {
        Value::Integer(i) if i.unsigned_abs() > MAX_SAFE_INTEGER as u64 => {
            Err(fail(Rule::IntegerOutOfRange {
                value: i128::from(*i),
            }))
        }
        Value::Simple(n) if (20..=31).contains(n) => Err(fail(Rule::BadSimpleValue(*n))),
        Value::Array(items) => {
            enter(level + 1)?;
            for (i, item) in items.iter().enumerate() {
                validate_value(item, level + 1, &path.join(Segment::Index(i)))?;
            }
            Ok(())
        }
        Value::Map(entries) => {
            enter(level + 1)?;
            let mut keys: Vec<Vec<u8>> = Vec::with_capacity(entries.len());
            for (i, (k, val)) in entries.iter().enumerate() {
                if !matches!(k, Value::Integer(_) | Value::Text(_) | Value::Bytes(_)) {
                    return Err(EncodeError {
                        path: path.join(Segment::KeyOf(i)),
                        rule: Rule::BadKeyType {
                            found: k.type_name(),
                            allowed: "integer, text string or byte string",
                        },
                    });
                }
                validate_value(k, level + 1, &path.join(Segment::KeyOf(i)))?;
                validate_value(val, level + 1, &path.join(key_segment(k)))?;
                keys.push(k.to_cbor());
            }
            keys.sort();
            if keys.windows(2).any(|w| w[0] == w[1]) {
                return Err(fail(Rule::DuplicateKey));
            }
            Ok(())
        }
        Value::Tag(n, inner) => {
            enter(level + 1)?;
            if *n == 2 || *n == 3 {
                return Err(fail(Rule::Bignum { tag: *n }));
            }
            validate_value(inner, level + 1, path)
        }
        _ => Ok(()),
    }
}

fn write_opt_id(w: &mut Writer, id: Option<&MessageId>) {
    match id {
        Some(id) => w.bytes(&id.0),
        None => w.null(),
    }
}

fn write_content(w: &mut Writer, c: &MimiContent) {
    w.array(7);
    w.bytes(&c.salt);
    write_opt_id(w, c.replaces.as_ref());
    w.bytes(&c.topic_id);
    match c.expires {
        Some(e) => {
            w.array(2);
            w.bool(e.relative);
            w.uint(u64::from(e.time));
        }
        None => w.null(),
    }
    write_opt_id(w, c.in_reply_to.as_ref());
    w.map(
        c.extensions
            .iter()
            .map(|(k, v)| (k.to_value().to_cbor(), v)),
    );
    write_part(w, &c.nested_part);
}

fn write_part(w: &mut Writer, p: &NestedPart) {
    let n = match &p.body {
        PartBody::Null => 3,
        PartBody::Single(_) | PartBody::Multi(_) => 5,
        PartBody::External(_) => 15,
    };
    w.array(n);
    w.uint(u64::from(p.disposition.code()));
    w.text(&p.language);
    w.uint(u64::from(p.body.cardinality()));
    match &p.body {
        PartBody::Null => {}
        PartBody::Single(s) => {
            w.text(&s.content_type);
            w.bytes(&s.content);
        }
        PartBody::External(e) => {
            w.text(&e.content_type);
            w.text(&e.url);
            w.uint(u64::from(e.expires));
            w.uint(e.size);
            w.uint(u64::from(e.enc_alg));
            w.bytes(&e.key);
            w.bytes(&e.nonce);
            w.bytes(&e.aad);
            w.uint(u64::from(e.hash_alg));
            w.bytes(&e.content_hash);
            w.text(&e.description);
            w.text(&e.filename);
        }
        PartBody::Multi(m) => {
            w.uint(u64::from(m.semantics.code()));
            w.array(m.parts.len());
            for child in &m.parts {
                write_part(w, child);
            }
        }
    }
}
