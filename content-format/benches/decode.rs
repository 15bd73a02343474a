//! Strict decode + validation + message ID per message over the draft's 14 examples, against
//! a plain `ciborium` decode of the same bytes to `ciborium::Value` in the same run.
//!
//! `cargo bench -p mimi-content --bench decode` prints the ratio at the end (goal: ≤ 2x).

use std::hint::black_box;
use std::path::{Path, PathBuf};

use criterion::{Criterion, Throughput};
use mimi_content::{codec, examples, message_id};

fn mean_ns(dir: &Path, group: &str, bench: &str) -> Option<f64> {
    let raw =
        std::fs::read_to_string(dir.join(group).join(bench).join("new/estimates.json")).ok()?;
    let v: serde_json::Value = serde_json::from_str(&raw).ok()?;
    v["mean"]["point_estimate"].as_f64()
}

fn main() {
    let out: PathBuf = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/criterion");
    let mut c = Criterion::default()
        .output_directory(&out)
        .configure_from_args();
    let n = examples::ALL.len() as u64;

    let mut g = c.benchmark_group("content_decode");
    g.throughput(Throughput::Elements(n));
    g.bench_function("strict_decode_validate_id", |b| {
        b.iter(|| {
            for ex in examples::ALL {
                let bytes = black_box(ex.cbor);
                let content = codec::decode(bytes).expect("vector decodes");
                let e = &content.extensions;
                let id = message_id(
                    e.sender_uri().unwrap_or(""),
                    e.room_uri().unwrap_or(""),
                    bytes,
                    &content.salt,
                );
                black_box(id.expect("short URIs"));
            }
        });
    });
    g.bench_function("baseline_ciborium_value", |b| {
        b.iter(|| {
            for ex in examples::ALL {
                let v: ciborium::Value =
                    ciborium::from_reader(black_box(ex.cbor)).expect("vector parses");
                black_box(v);
            }
        });
    });
    g.finish();

    let contents: Vec<_> = examples::ALL
        .iter()
        .map(|e| codec::decode(e.cbor).expect("vector decodes"))
        .collect();
    let values: Vec<ciborium::Value> = examples::ALL
        .iter()
        .map(|e| ciborium::from_reader(e.cbor).expect("parses"))
        .collect();
    let mut g = c.benchmark_group("content_encode");
    g.throughput(Throughput::Elements(n));
    g.bench_function("deterministic_encode", |b| {
        b.iter(|| {
            for m in &contents {
                black_box(codec::encode(black_box(m)).expect("valid"));
            }
        });
    });
    g.bench_function("baseline_ciborium_value", |b| {
        b.iter(|| {
            for v in &values {
                let mut buf = Vec::with_capacity(256);
                ciborium::into_writer(black_box(v), &mut buf).expect("writes");
                black_box(buf);
            }
        });
    });
    g.finish();
    c.final_summary();

    for (group, ours, base) in [
        (
            "content_decode",
            "strict_decode_validate_id",
            "baseline_ciborium_value",
        ),
        (
            "content_encode",
            "deterministic_encode",
            "baseline_ciborium_value",
        ),
    ] {
        if let (Some(a), Some(b)) = (mean_ns(&out, group, ours), mean_ns(&out, group, base)) {
            println!(
                "RATIO {group}: {ours} {:.0} ns/msg, {base} {:.0} ns/msg, ratio {:.2}x",
                a / n as f64,
                b / n as f64,
                a / b
            );
        }
    }
}
