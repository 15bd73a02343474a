//! `mimi bench links|fanout --json`: one JSON object per measurement, each with its same-run
//! baselines at the same in-flight count and ratios that are what they say (a short run; the
//! figures themselves are recorded in BENCHMARKS.md from release builds).

#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::process::Command;

use serde_json::Value;

fn bench(args: &[&str]) -> Vec<Value> {
    let out = Command::new(env!("CARGO_BIN_EXE_mimi"))
        .arg("bench")
        .args(args)
        .arg("--json")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "mimi bench {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

fn num(m: &Value, key: &str) -> f64 {
    m[key]
        .as_f64()
        .unwrap_or_else(|| panic!("{key} is not a number in {m}"))
}

fn check_common(m: &Value) {
    for key in [
        "per_s",
        "bare_h3_per_s",
        "bare_echo_per_s",
        "p50_us",
        "p99_us",
    ] {
        assert!(num(m, key) > 0.0, "{key} in {m}");
    }
    assert!(num(m, "p99_us") >= num(m, "p50_us"), "{m}");
    let ratio = num(m, "per_s") / num(m, "bare_h3_per_s");
    assert!((num(m, "ratio_bare_h3") - ratio).abs() < 1e-9, "{m}");
    let ratio = num(m, "per_s") / num(m, "bare_echo_per_s");
    assert!((num(m, "ratio_bare_echo") - ratio).abs() < 1e-9, "{m}");
}

#[test]
fn links_json_has_every_transport_and_baseline_at_1_16_64_in_flight() {
    let ms = bench(&["links", "--seconds", "1"]);
    let mut seen = BTreeSet::new();
    for m in &ms {
        check_common(m);
        assert_eq!(m["rate"], 0.0, "{m}");
        assert!(m.get("followers").is_none(), "{m}");
        seen.insert((
            m["bench"].as_str().unwrap().to_owned(),
            m["transport"].as_str().unwrap().to_owned(),
            m["in_flight"].as_u64().unwrap(),
        ));
    }
    for n in [1, 16, 64] {
        for (bench, transport) in [
            ("bare_echo", "quic"),
            ("bare_h3", "h3"),
            ("links", "h3"),
            ("links", "https"),
        ] {
            assert!(
                seen.contains(&(bench.to_owned(), transport.to_owned(), n)),
                "{bench} over {transport} at {n} in flight missing from {seen:?}"
            );
        }
    }
    // A baseline row is its own baseline.
    for m in ms.iter().filter(|m| m["bench"] == "bare_h3") {
        assert_eq!(num(m, "ratio_bare_h3"), 1.0, "{m}");
    }
}

#[test]
fn fanout_json_has_lockstep_closed_and_open_loop_runs() {
    let ms = bench(&["fanout", "--messages", "60", "--followers", "1"]);
    let modes: Vec<(String, u64)> = ms
        .iter()
        .map(|m| {
            check_common(m);
            assert_eq!(m["bench"], "fanout", "{m}");
            assert_eq!(m["followers"], 1, "{m}");
            assert_eq!(num(m, "deliveries_per_s"), num(m, "per_s"), "{m}");
            (
                m["mode"].as_str().unwrap().to_owned(),
                m["in_flight"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        modes,
        [
            ("lockstep".to_owned(), 1),
            ("closed".to_owned(), 1),
            ("closed".to_owned(), 16),
            ("closed".to_owned(), 64),
            ("open".to_owned(), 64),
        ]
    );
    let open = &ms[4];
    let saturation = ms[1..4].iter().map(|m| num(m, "per_s")).fold(0.0, f64::max);
    assert!(
        (num(open, "rate") - saturation / 2.0).abs() < 1e-6,
        "the open-loop rate is half the saturation: {open}"
    );
    assert!(open["late"].as_u64().is_some(), "{open}");
}
