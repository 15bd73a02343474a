//! Translation throughput per adapter: native → MIMI CBOR and MIMI → native, against parsing
//! the native payload alone (the baseline, in the same run). Ratios are printed last as
//! `RATIO` lines (BENCHMARKS.md records them).

#![allow(missing_docs, clippy::unwrap_used)]

use std::time::{Duration, Instant};

use criterion::{Criterion, black_box, criterion_group, criterion_main};
use mimi_adapters::matrix::Matrix;
use mimi_adapters::wire::Wire;
use mimi_adapters::xmpp::Xmpp;
use mimi_adapters::{Adapter, Context, IdMap, UriScheme};

const ROOM: &str = "mimi://gw.example/r/lobby";
const ALICE: &str = "mimi://gw.example/u/alice";

fn data(n: &str) -> Vec<u8> {
    std::fs::read(format!("{}/benches/data/{n}", env!("CARGO_MANIFEST_DIR"))).unwrap()
}

fn per_iter(f: &mut dyn FnMut()) -> Duration {
    for _ in 0..2_000 {
        f();
    }
    let n = 20_000;
    let t = Instant::now();
    for _ in 0..n {
        f();
    }
    t.elapsed() / n
}

fn bench_adapter<A: Adapter>(
    c: &mut Criterion,
    name: &str,
    a: &A,
    raw: &[u8],
    baseline: &mut dyn FnMut(&[u8]),
    ratios: &mut Vec<String>,
) {
    let uris = UriScheme::new("gw.example");
    let mut salt = || [7u8; 16];
    let mut ids = IdMap::new();
    let native = a.parse(raw).unwrap();
    let mut ctx = Context {
        room: ROOM,
        native_room: "room",
        ids: &mut ids,
        uris: &uris,
        salt: &mut salt,
        media: None,
    };
    let msg = a.to_mimi(&mut ctx, ALICE, &native).unwrap().items.remove(0);
    let mut in_ = || {
        let mut ids = IdMap::new();
        let mut salt = || [7u8; 16];
        let mut ctx = Context {
            room: ROOM,
            native_room: "room",
            ids: &mut ids,
            uris: &uris,
            salt: &mut salt,
            media: None,
        };
        let n = a.parse(black_box(raw)).unwrap();
        black_box(
            a.to_mimi(&mut ctx, ALICE, &n).unwrap().items[0]
                .bytes()
                .len(),
        );
    };
    let mut out = || {
        let mut ids = IdMap::new();
        let mut salt = || [7u8; 16];
        let mut ctx = Context {
            room: ROOM,
            native_room: "room",
            ids: &mut ids,
            uris: &uris,
            salt: &mut salt,
            media: None,
        };
        let m = mimi_content::Message::decode(black_box(msg.bytes()).to_vec()).unwrap();
        let t = a.from_mimi(&mut ctx, ALICE, &m).unwrap();
        black_box(a.serialize(&t.items[0]).len());
    };
    let mut base = || baseline(black_box(raw));
    c.bench_function(&format!("{name}: native -> MIMI CBOR"), |b| {
        b.iter(&mut in_)
    });
    c.bench_function(&format!("{name}: MIMI CBOR -> native"), |b| {
        b.iter(&mut out)
    });
    c.bench_function(&format!("{name}: baseline parse native only"), |b| {
        b.iter(&mut base)
    });
    let (ti, to, tb) = (per_iter(&mut in_), per_iter(&mut out), per_iter(&mut base));
    ratios.push(format!(
        "RATIO {name}: native->MIMI {:.1} µs ({:.2}x baseline), MIMI->native {:.1} µs ({:.2}x), baseline parse {:.2} µs; {} bytes native, {} bytes MIMI",
        ti.as_secs_f64() * 1e6,
        ti.as_secs_f64() / tb.as_secs_f64(),
        to.as_secs_f64() * 1e6,
        to.as_secs_f64() / tb.as_secs_f64(),
        tb.as_secs_f64() * 1e6,
        raw.len(),
        msg.bytes().len()
    ));
}

fn translate(c: &mut Criterion) {
    let mut ratios = Vec::new();
    bench_adapter(
        c,
        "matrix (text + HTML + mention)",
        &Matrix::new("hs.test"),
        &data("01-text-html.json"),
        &mut |b| {
            black_box(serde_json::from_slice::<serde_json::Value>(b).unwrap());
        },
        &mut ratios,
    );
    bench_adapter(
        c,
        "xmpp (groupchat, styling, ids)",
        &Xmpp::new("mimi.xmpp.test"),
        &data("01-groupchat-body-styling-ids.xml"),
        &mut |b| {
            black_box(
                mimi_adapters::xml::Element::parse(
                    std::str::from_utf8(b).unwrap(),
                    "jabber:client",
                )
                .unwrap(),
            );
        },
        &mut ratios,
    );
    bench_adapter(
        c,
        "wire (text + mention + quote)",
        &Wire::new("wire.example.com"),
        &data("01-text-mention-quote.bin"),
        &mut |b| {
            black_box(<mimi_proto::wire_pb::GenericMessage as prost::Message>::decode(b).unwrap());
        },
        &mut ratios,
    );
    for r in ratios {
        println!("{r}");
    }
}

criterion_group! { name = benches; config = Criterion::default().sample_size(30).measurement_time(Duration::from_secs(2)); targets = translate }
criterion_main!(benches);
