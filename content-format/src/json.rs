//! The documented, stable JSON mapping of MIMI content (`docs/content-json.md`).
//!
//! Every field is named as in the draft's CDDL; byte strings are lowercase hex; extension
//! values use a tagged JSON form of CBOR so that `from_json(to_json(m)) == m` exactly.
//! Output-only fields (`messageId`, `partIndex`, `contentText`, extension `name`) are ignored
//! on input.

use serde_json::{Map, Value as Json, json};

use crate::cbor::Value;
use crate::message::Message;
use crate::model::{
    Disposition, Expiration, ExtensionKey, Extensions, ExternalPart, MessageId, MimiContent,
    MultiPart, NestedPart, PartBody, PartSemantics, SinglePart,
};

/// A JSON document does not describe a MIMI content message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {message}")]
pub struct JsonError {
    /// Where, as a JSON pointer-like path (`nestedPart.parts[1].content`).
    pub path: String,
    /// What is wrong.
    pub message: String,
}

fn err<T>(path: &str, message: impl Into<String>) -> Result<T, JsonError> {
    Err(JsonError {
        path: path.to_owned(),
        message: message.into(),
    })
}

/// The JSON of a decoded message, with its message ID (or why it has none) and part indices.
pub fn message_to_json(m: &Message) -> Json {
    let mut j = content_to_json(m.content());
    if let Json::Object(obj) = &mut j {
        let mut out = Map::new();
        match m.id() {
            Ok(id) => {
                out.insert("messageId".into(), json!(id.to_hex()));
            }
            Err(e) => {
                out.insert("messageId".into(), Json::Null);
                out.insert("messageIdError".into(), json!(e.to_string()));
            }
        }
        out.append(obj);
        return Json::Object(out);
    }
    j
}

/// The JSON of a message's content.
pub fn content_to_json(c: &MimiContent) -> Json {
    let id = |m: &Option<MessageId>| m.map_or(Json::Null, |id| json!(id.to_hex()));
    let mut index = 0;
    json!({
        "salt": hex::encode(c.salt),
        "replaces": id(&c.replaces),
        "topicId": hex::encode(&c.topic_id),
        "expires": c.expires.map_or(Json::Null, |e| json!({"relative": e.relative, "time": e.time})),
        "inReplyTo": id(&c.in_reply_to),
        "mimiExtensions": c.extensions.iter().map(|(k, v)| {
            let mut e = Map::new();
            e.insert("key".into(), match k { ExtensionKey::Int(i) => json!(i), ExtensionKey::Text(t) => json!(t) });
            match k {
                ExtensionKey::Int(1) => { e.insert("name".into(), json!("senderUri")); }
                ExtensionKey::Int(2) => { e.insert("name".into(), json!("roomUri")); }
                _ => {}
            }
            e.insert("value".into(), value_to_json(v));
            Json::Object(e)
        }).collect::<Vec<_>>(),
        "nestedPart": part_to_json(&c.nested_part, &mut index),
    })
}

fn part_to_json(p: &NestedPart, index: &mut usize) -> Json {
    let mut o = Map::new();
    o.insert("partIndex".into(), json!(*index));
    *index += 1;
    o.insert(
        "disposition".into(),
        p.disposition
            .name()
            .map_or_else(|| json!(p.disposition.code()), |n| json!(n)),
    );
    o.insert("language".into(), json!(p.language));
    o.insert("cardinality".into(), json!(p.body.cardinality_name()));
    match &p.body {
        PartBody::Null => {}
        PartBody::Single(s) => {
            o.insert("contentType".into(), json!(s.content_type));
            o.insert("content".into(), json!(hex::encode(&s.content)));
            if s.content_type.starts_with("text/")
                && let Ok(t) = std::str::from_utf8(&s.content)
            {
                o.insert("contentText".into(), json!(t));
            }
        }
        PartBody::External(e) => {
            o.insert("contentType".into(), json!(e.content_type));
            o.insert("url".into(), json!(e.url));
            o.insert("expires".into(), json!(e.expires));
            o.insert("size".into(), json!(e.size));
            o.insert("encAlg".into(), json!(e.enc_alg));
            o.insert("key".into(), json!(hex::encode(&e.key)));
            o.insert("nonce".into(), json!(hex::encode(&e.nonce)));
            o.insert("aad".into(), json!(hex::encode(&e.aad)));
            o.insert("hashAlg".into(), json!(e.hash_alg));
            o.insert("contentHash".into(), json!(hex::encode(&e.content_hash)));
            o.insert("description".into(), json!(e.description));
            o.insert("filename".into(), json!(e.filename));
        }
        PartBody::Multi(m) => {
            o.insert("partSemantics".into(), json!(m.semantics.name()));
            let parts: Vec<Json> = m.parts.iter().map(|c| part_to_json(c, index)).collect();
            o.insert("parts".into(), Json::Array(parts));
        }
    }
    Json::Object(o)
}

/// The tagged JSON form of a generic CBOR value.
pub fn value_to_json(v: &Value) -> Json {
    match v {
        Value::Integer(i) => json!(i),
        Value::Text(t) => json!(t),
        Value::Bool(b) => json!(b),
        Value::Null => Json::Null,
        Value::Bytes(b) => json!({"bytes": hex::encode(b)}),
        Value::Array(items) => Json::Array(items.iter().map(value_to_json).collect()),
        Value::Map(entries) => {
            json!({"map": entries.iter().map(|(k, v)| json!([value_to_json(k), value_to_json(v)])).collect::<Vec<_>>()})
        }
        Value::Tag(n, inner) => json!({"tag": n, "value": value_to_json(inner)}),
        Value::Float(f) if f.is_nan() => json!({"float": "NaN"}),
        Value::Float(f) if f.is_infinite() => {
            json!({"float": if *f > 0.0 { "Infinity" } else { "-Infinity" }})
        }
        Value::Float(f) => json!({"float": f}),
        Value::Undefined => json!({"undefined": true}),
        Value::Simple(n) => json!({"simple": n}),
    }
}

/// Parses the tagged JSON form of a CBOR value.
///
/// # Errors
/// [`JsonError`] for JSON that is not in the documented form.
pub fn value_from_json(j: &Json, path: &str) -> Result<Value, JsonError> {
    Ok(match j {
        Json::Null => Value::Null,
        Json::Bool(b) => Value::Bool(*b),
        Json::String(s) => Value::Text(s.clone()),
        Json::Number(n) => match n.as_i64() {
            Some(i) => Value::Integer(i),
            None => {
                return err(
                    path,
                    "JSON numbers must be integers; write floats as {\"float\": x}",
                );
            }
        },
        Json::Array(items) => Value::Array(
            items
                .iter()
                .enumerate()
                .map(|(i, x)| value_from_json(x, &format!("{path}[{i}]")))
                .collect::<Result<_, _>>()?,
        ),
        Json::Object(o) => {
            let one = |k: &str| o.get(k);
            if let Some(b) = one("bytes") {
                Value::Bytes(hex_field(b, &format!("{path}.bytes"))?)
            } else if let Some(m) = one("map") {
                let Json::Array(entries) = m else {
                    return err(path, "\"map\" must be an array of [key, value] pairs");
                };
                let mut out = Vec::with_capacity(entries.len());
                for (i, e) in entries.iter().enumerate() {
                    let p = format!("{path}.map[{i}]");
                    match e {
                        Json::Array(kv) if kv.len() == 2 => {
                            out.push((value_from_json(&kv[0], &p)?, value_from_json(&kv[1], &p)?))
                        }
                        _ => return err(&p, "each map entry must be a [key, value] pair"),
                    }
                }
                Value::Map(out)
            } else if let Some(t) = one("tag") {
                let Some(n) = t.as_u64() else {
                    return err(path, "\"tag\" must be an unsigned integer");
                };
                let Some(inner) = one("value") else {
                    return err(path, "a tag needs \"value\"");
                };
                Value::Tag(
                    n,
                    Box::new(value_from_json(inner, &format!("{path}.value"))?),
                )
            } else if let Some(f) = one("float") {
                Value::Float(match f {
                    Json::Number(n) => n.as_f64().unwrap_or(f64::NAN),
                    Json::String(s) if s == "NaN" => f64::NAN,
                    Json::String(s) if s == "Infinity" => f64::INFINITY,
                    Json::String(s) if s == "-Infinity" => f64::NEG_INFINITY,
                    _ => {
                        return err(
                            path,
                            "\"float\" must be a number, \"NaN\", \"Infinity\" or \"-Infinity\"",
                        );
                    }
                })
            } else if one("undefined").is_some() {
                Value::Undefined
            } else if let Some(s) = one("simple") {
                match s.as_u64().and_then(|n| u8::try_from(n).ok()) {
                    Some(n) => Value::Simple(n),
                    None => return err(path, "\"simple\" must be 0..255"),
                }
            } else {
                return err(
                    path,
                    "objects must have one of bytes, map, tag, float, undefined, simple",
                );
            }
        }
    })
}

fn obj<'a>(j: &'a Json, path: &str) -> Result<&'a Map<String, Json>, JsonError> {
    j.as_object()
        .map_or_else(|| err(path, "expected a JSON object"), Ok)
}

fn get<'a>(o: &'a Map<String, Json>, key: &str, path: &str) -> Result<&'a Json, JsonError> {
    o.get(key)
        .map_or_else(|| err(path, format!("missing field \"{key}\"")), Ok)
}

fn hex_field(j: &Json, path: &str) -> Result<Vec<u8>, JsonError> {
    let Some(s) = j.as_str() else {
        return err(path, "expected a hex string");
    };
    hex::decode(s).or_else(|_| err(path, "not valid hex"))
}

fn str_field(o: &Map<String, Json>, key: &str, path: &str) -> Result<String, JsonError> {
    let p = format!("{path}.{key}");
    match get(o, key, path)? {
        Json::String(s) => Ok(s.clone()),
        _ => err(&p, "expected a string"),
    }
}

fn uint_field(o: &Map<String, Json>, key: &str, path: &str, max: u64) -> Result<u64, JsonError> {
    let p = format!("{path}.{key}");
    match get(o, key, path)?.as_u64() {
        Some(n) if n <= max => Ok(n),
        _ => err(&p, format!("expected an unsigned integer up to {max}")),
    }
}

fn opt_id(o: &Map<String, Json>, key: &str, path: &str) -> Result<Option<MessageId>, JsonError> {
    let p = format!("{path}.{key}");
    match get(o, key, path)? {
        Json::Null => Ok(None),
        j => {
            let b = hex_field(j, &p)?;
            MessageId::try_from(b.as_slice())
                .map(Some)
                .or_else(|_| err(&p, "a message ID is 32 bytes (64 hex)"))
        }
    }
}

/// Parses the JSON mapping back into content (encode it with [`crate::codec::encode`]).
///
/// # Errors
/// [`JsonError`] naming the field.
pub fn content_from_json(j: &Json) -> Result<MimiContent, JsonError> {
    let o = obj(j, "message")?;
    let p = "message";
    let salt = hex_field(get(o, "salt", p)?, "salt")?;
    let Ok(salt) = <[u8; 16]>::try_from(salt.as_slice()) else {
        return err("salt", "the salt is 16 bytes (32 hex)");
    };
    let expires = match get(o, "expires", p)? {
        Json::Null => None,
        e => {
            let eo = obj(e, "expires")?;
            let Some(relative) = get(eo, "relative", "expires")?.as_bool() else {
                return err("expires.relative", "expected a bool");
            };
            Some(Expiration {
                relative,
                time: uint_field(eo, "time", "expires", u64::from(u32::MAX))? as u32,
            })
        }
    };
    let mut extensions = Extensions::new();
    let Json::Array(exts) = get(o, "mimiExtensions", p)? else {
        return err("mimiExtensions", "expected an array of {key, value}");
    };
    for (i, e) in exts.iter().enumerate() {
        let ep = format!("mimiExtensions[{i}]");
        let eo = obj(e, &ep)?;
        let key = match get(eo, "key", &ep)? {
            Json::Number(n) => match n.as_i64() {
                Some(k) => ExtensionKey::Int(k),
                None => return err(&ep, "integer keys must fit in 64 bits"),
            },
            Json::String(s) => ExtensionKey::Text(s.clone()),
            _ => return err(&ep, "key must be an integer or a string"),
        };
        let value = value_from_json(get(eo, "value", &ep)?, &format!("{ep}.value"))?;
        if extensions.insert(key, value).is_some() {
            return err(&ep, "duplicate extension key");
        }
    }
    Ok(MimiContent {
        salt,
        replaces: opt_id(o, "replaces", p)?,
        topic_id: hex_field(get(o, "topicId", p)?, "topicId")?,
        expires,
        in_reply_to: opt_id(o, "inReplyTo", p)?,
        extensions,
        nested_part: part_from_json(get(o, "nestedPart", p)?, "nestedPart")?,
    })
}

fn part_from_json(j: &Json, path: &str) -> Result<NestedPart, JsonError> {
    let o = obj(j, path)?;
    let disposition = match get(o, "disposition", path)? {
        Json::String(s) => match Disposition::from_name(s) {
            Some(d) => d,
            None => {
                return err(
                    &format!("{path}.disposition"),
                    format!("unknown disposition name {s:?}; use the number"),
                );
            }
        },
        Json::Number(n) => match n.as_u64().and_then(|n| u8::try_from(n).ok()) {
            Some(n) => Disposition::from_code(n),
            None => return err(&format!("{path}.disposition"), "disposition must be 0..255"),
        },
        _ => {
            return err(
                &format!("{path}.disposition"),
                "expected a name or a number",
            );
        }
    };
    let language = str_field(o, "language", path)?;
    let card = str_field(o, "cardinality", path)?;
    let bytes = |k: &str| hex_field(get(o, k, path)?, &format!("{path}.{k}"));
    let body = match card.as_str() {
        "nullpart" => PartBody::Null,
        "single" => PartBody::Single(SinglePart {
            content_type: str_field(o, "contentType", path)?,
            content: bytes("content")?,
        }),
        "external" => PartBody::External(ExternalPart {
            content_type: str_field(o, "contentType", path)?,
            url: str_field(o, "url", path)?,
            expires: uint_field(o, "expires", path, u64::from(u32::MAX))? as u32,
            size: uint_field(o, "size", path, u64::MAX)?,
            enc_alg: uint_field(o, "encAlg", path, u64::from(u16::MAX))? as u16,
            key: bytes("key")?,
            nonce: bytes("nonce")?,
            aad: bytes("aad")?,
            hash_alg: uint_field(o, "hashAlg", path, 255)? as u8,
            content_hash: bytes("contentHash")?,
            description: str_field(o, "description", path)?,
            filename: str_field(o, "filename", path)?,
        }),
        "multi" => {
            let sem = str_field(o, "partSemantics", path)?;
            let Some(semantics) = PartSemantics::from_name(&sem) else {
                return err(
                    &format!("{path}.partSemantics"),
                    "expected chooseOne, singleUnit or processAll",
                );
            };
            let Json::Array(items) = get(o, "parts", path)? else {
                return err(&format!("{path}.parts"), "expected an array");
            };
            let parts = items
                .iter()
                .enumerate()
                .map(|(i, x)| part_from_json(x, &format!("{path}.parts[{i}]")))
                .collect::<Result<Vec<_>, _>>()?;
            PartBody::Multi(MultiPart { semantics, parts })
        }
        other => {
            return err(
                &format!("{path}.cardinality"),
                format!(
                    "unknown cardinality {other:?}; expected nullpart, single, external or multi"
                ),
            );
        }
    };
    Ok(NestedPart {
        disposition,
        language,
        body,
    })
}
