//! proptest strategies producing arbitrary **valid** messages (feature `proptest`).

use proptest::collection::vec;
use proptest::prelude::*;

use crate::cbor::{MAX_SAFE_INTEGER, Value};
use crate::model::{
    Disposition, Expiration, ExtensionKey, Extensions, ExternalPart, MessageId, MimiContent,
    MultiPart, NestedPart, PartBody, PartSemantics, SinglePart,
};

fn message_id() -> impl Strategy<Value = MessageId> {
    any::<[u8; 32]>().prop_map(MessageId)
}

fn safe_int() -> impl Strategy<Value = i64> {
    prop_oneof![-30i64..30, -MAX_SAFE_INTEGER..=MAX_SAFE_INTEGER]
}

/// Arbitrary extension values whose containers stay within `levels` more levels.
pub fn value(levels: u32) -> BoxedStrategy<Value> {
    let leaf = prop_oneof![
        safe_int().prop_map(Value::Integer),
        vec(any::<u8>(), 0..8).prop_map(Value::Bytes),
        "[a-zé☃]{0,8}".prop_map(Value::Text),
        any::<bool>().prop_map(Value::Bool),
        Just(Value::Null),
        Just(Value::Undefined),
        prop_oneof![any::<f64>(), Just(f64::NAN), Just(1.5), Just(-0.0)].prop_map(Value::Float),
        prop_oneof![0u8..20, 32u8..=255].prop_map(Value::Simple),
    ];
    if levels == 0 {
        return leaf.boxed();
    }
    let inner = value(levels - 1);
    let key = prop_oneof![
        safe_int().prop_map(Value::Integer),
        "[a-z]{0,6}".prop_map(Value::Text),
        vec(any::<u8>(), 0..4).prop_map(Value::Bytes)
    ];
    prop_oneof![
        4 => leaf,
        1 => vec(inner.clone(), 0..4).prop_map(Value::Array),
        1 => vec((key, inner.clone()), 0..4).prop_map(|mut kv| {
            kv.sort_by_key(|(k, _)| k.to_cbor());
            kv.dedup_by_key(|(k, _)| k.to_cbor());
            Value::Map(kv)
        }),
        1 => ((0u64..1000).prop_filter("bignum tags", |t| *t != 2 && *t != 3), inner).prop_map(|(t, v)| Value::Tag(t, Box::new(v))),
    ]
    .boxed()
}

fn extensions() -> impl Strategy<Value = Extensions> {
    let key = prop_oneof![
        safe_int()
            .prop_filter("1 and 2 are URIs", |k| *k != 1 && *k != 2)
            .prop_map(ExtensionKey::Int),
        "[a-z]{1,12}".prop_map(ExtensionKey::Text)
    ];
    (
        proptest::option::of("mimi://[a-z]{1,8}\\.example/u/[a-z]{1,8}"),
        proptest::option::of("mimi://[a-z]{1,8}\\.example/r/[a-z]{1,8}"),
        vec((key, value(3)), 0..4),
    )
        .prop_map(|(s, r, rest)| {
            let mut e = Extensions::new();
            if let Some(s) = s {
                e.insert(ExtensionKey::Int(1), Value::Text(s));
            }
            if let Some(r) = r {
                e.insert(ExtensionKey::Int(2), Value::Text(r));
            }
            for (k, v) in rest {
                e.insert(k, v);
            }
            e
        })
}

fn external() -> impl Strategy<Value = ExternalPart> {
    (
        "[a-z]{1,6}/[a-z]{1,6}",
        "https://[a-z]{1,8}\\.example/[a-z0-9]{0,8}",
        any::<u32>(),
        0..=MAX_SAFE_INTEGER as u64,
        prop_oneof![
            Just((0u16, 0usize, 0usize)),
            Just((1, 16, 12)),
            Just((2, 32, 12)),
            (3u16..100).prop_map(|a| (a, 7, 5))
        ],
        any::<[u8; 32]>(),
        prop_oneof![Just(0u8), Just(1u8)],
        ".{0,10}",
        ".{0,10}",
    )
        .prop_map(
            |(
                content_type,
                url,
                expires,
                size,
                (enc_alg, kl, nl),
                key,
                hash_alg,
                description,
                filename,
            )| ExternalPart {
                content_type,
                url,
                expires,
                size,
                enc_alg,
                key: key[..kl].to_vec(),
                nonce: key[..nl].to_vec(),
                aad: Vec::new(),
                hash_alg,
                content_hash: if hash_alg == 1 {
                    key.to_vec()
                } else {
                    Vec::new()
                },
                description,
                filename,
            },
        )
}

/// Arbitrary NestedParts up to `levels` deep (1 = no MultiPart).
pub fn part(levels: u32) -> BoxedStrategy<NestedPart> {
    let disposition = (0u8..=255).prop_map(Disposition::from_code);
    let leaf_body = prop_oneof![
        Just(PartBody::Null),
        ("[a-z]{1,8}/[a-z]{1,8}", vec(any::<u8>(), 0..32)).prop_map(|(content_type, content)| {
            PartBody::Single(SinglePart {
                content_type,
                content,
            })
        }),
        external().prop_map(PartBody::External),
    ];
    let leaf = (disposition.clone(), "(en|fr|de-CH)?", leaf_body).prop_map(
        |(disposition, language, body)| NestedPart {
            disposition,
            language,
            body,
        },
    );
    if levels <= 1 {
        return leaf.boxed();
    }
    let multi = (
        disposition,
        prop_oneof![
            Just(PartSemantics::ChooseOne),
            Just(PartSemantics::SingleUnit),
            Just(PartSemantics::ProcessAll)
        ],
        vec(part(levels - 1), 2..4),
    )
        .prop_map(|(disposition, semantics, parts)| NestedPart {
            disposition,
            language: String::new(),
            body: PartBody::Multi(MultiPart { semantics, parts }),
        });
    prop_oneof![3 => leaf, 1 => multi].boxed()
}

/// Arbitrary valid messages.
pub fn any_content() -> impl Strategy<Value = MimiContent> {
    (
        any::<[u8; 16]>(),
        proptest::option::of(message_id()),
        vec(any::<u8>(), 0..40),
        proptest::option::of(
            (any::<bool>(), any::<u32>())
                .prop_map(|(relative, time)| Expiration { relative, time }),
        ),
        proptest::option::of(message_id()),
        extensions(),
        part(4),
    )
        .prop_map(
            |(salt, replaces, topic_id, expires, in_reply_to, extensions, nested_part)| {
                MimiContent {
                    salt,
                    replaces,
                    topic_id,
                    expires,
                    in_reply_to,
                    extensions,
                    nested_part,
                }
            },
        )
}
