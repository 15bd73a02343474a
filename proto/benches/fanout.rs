//! FanoutMessage encode and decode with a real 1 KiB application message (openmls
//! PrivateMessage), against openmls decoding the same MLSMessage alone, in the same run.
//!
//! `cargo bench -p mimi-proto --bench fanout` prints the ratios last (prefixed `RATIO`).

#[path = "../tests/support/mod.rs"]
mod support;

use std::hint::black_box;
use std::path::{Path, PathBuf};

use criterion::{Criterion, Throughput};
use mimi_proto::codec::Wire;
use mimi_proto::messages::{FanoutExtra, FanoutMessage, Frank};
use mimi_proto::mls::MlsMessage;
use openmls::prelude::tls_codec::Deserialize as _;

fn mean_ns(dir: &Path, group: &str, bench: &str) -> Option<f64> {
    let raw =
        std::fs::read_to_string(dir.join(group).join(bench).join("new/estimates.json")).ok()?;
    let v: serde_json::Value = serde_json::from_str(&raw).ok()?;
    v["mean"]["point_estimate"].as_f64()
}

fn application_message(len: usize) -> Vec<u8> {
    use openmls::prelude::*;
    let alice = support::Member::new("mimi://a.example/u/alice");
    let config = MlsGroupCreateConfig::builder()
        .ciphersuite(support::CS)
        .wire_format_policy(MIXED_PLAINTEXT_WIRE_FORMAT_POLICY)
        .capabilities(support::capabilities())
        .with_group_context_extensions(support::group_context_extensions())
        .build();
    let mut group =
        MlsGroup::new(&alice.provider, &alice.signer, &config, alice.cwk.clone()).expect("group");
    group
        .set_safe_aad(vec![SafeAadItem::new(0x0020, vec![0x5a; 32])])
        .expect("safe aad");
    group
        .create_message(&alice.provider, &alice.signer, &vec![0x42; len])
        .expect("message")
        .to_bytes()
        .expect("bytes")
}

fn main() {
    let out: PathBuf = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/criterion");
    let mut c = Criterion::default()
        .output_directory(&out)
        .configure_from_args();
    let app = application_message(1024);
    let msg = FanoutMessage {
        timestamp: 1_790_000_000_000,
        message: MlsMessage::from_bytes(&app).expect("application message"),
        extra: FanoutExtra::Application {
            frank: Some(Frank {
                server_frank: mimi_proto::codec::Fixed32([1; 32]),
                franking_signature_ciphersuite: 1,
                franking_integrity_signature: vec![2; 64].into(),
            }),
        },
    };
    let body = msg.to_bytes();

    let mut g = c.benchmark_group("fanout_1k");
    g.throughput(Throughput::Bytes(body.len() as u64));
    g.bench_function("decode_fanout_message", |b| {
        b.iter(|| black_box(FanoutMessage::from_bytes(black_box(&body)).expect("decodes")))
    });
    g.bench_function("encode_fanout_message", |b| {
        b.iter(|| black_box(black_box(&msg).to_bytes()))
    });
    g.bench_function("baseline_openmls_decode_mlsmessage", |b| {
        b.iter(|| {
            black_box(
                openmls::prelude::MlsMessageIn::tls_deserialize_exact(black_box(&app))
                    .expect("decodes"),
            )
        })
    });
    g.finish();
    c.final_summary();

    println!(
        "body: {} bytes (application message {} bytes)",
        body.len(),
        app.len()
    );
    let base = mean_ns(&out, "fanout_1k", "baseline_openmls_decode_mlsmessage");
    for ours in ["decode_fanout_message", "encode_fanout_message"] {
        if let (Some(a), Some(b)) = (mean_ns(&out, "fanout_1k", ours), base) {
            println!(
                "RATIO fanout_1k: {ours} {a:.0} ns, baseline openmls MLSMessage decode {b:.0} ns, ratio {:.2}x",
                a / b
            );
        }
    }
}
