//! Results and reports: the terminal table, JSON and JUnit XML.

use std::fmt::Write as _;
use std::time::Duration;

use serde_json::json;

/// How a test ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// It passed.
    Pass,
    /// It failed.
    Fail,
    /// It was not run (why is in the reason).
    Skip,
}

impl Status {
    fn name(self) -> &'static str {
        match self {
            Self::Pass => "pass",
            Self::Fail => "FAIL",
            Self::Skip => "skip",
        }
    }
}

/// One test's result.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// Test ID (see conformance/TESTS.md).
    pub id: &'static str,
    /// Draft section it checks.
    pub section: &'static str,
    /// Whether a failure fails the run.
    pub required: bool,
    /// Result.
    pub status: Status,
    /// Why it failed or was skipped (empty when it passed).
    pub reason: String,
    /// Duration.
    pub time: Duration,
}

/// Whether every required test passed.
pub fn passed(outcomes: &[Outcome]) -> bool {
    outcomes
        .iter()
        .all(|o| o.status != Status::Fail || !o.required)
}

/// The terminal table.
pub fn table(title: &str, outcomes: &[Outcome]) -> String {
    let w_id = outcomes
        .iter()
        .map(|o| o.id.len())
        .max()
        .unwrap_or(4)
        .max(4);
    let w_sec = outcomes
        .iter()
        .map(|o| o.section.len())
        .max()
        .unwrap_or(7)
        .max(7);
    let mut s = String::new();
    let _ = writeln!(s, "\n{title}\n");
    let _ = writeln!(
        s,
        "{:<w_id$}  {:<w_sec$}  {:<6}  reason",
        "test", "section", "result"
    );
    let _ = writeln!(
        s,
        "{}  {}  {}  {}",
        "-".repeat(w_id),
        "-".repeat(w_sec),
        "-".repeat(6),
        "-".repeat(30)
    );
    for o in outcomes {
        let result = if o.status == Status::Fail && !o.required {
            "fail*"
        } else {
            o.status.name()
        };
        let _ = writeln!(
            s,
            "{:<w_id$}  {:<w_sec$}  {:<6}  {}",
            o.id,
            o.section,
            result,
            o.reason.replace('\n', " ")
        );
    }
    let count = |st: Status| outcomes.iter().filter(|o| o.status == st).count();
    let _ = writeln!(
        s,
        "\n{} passed, {} failed, {} skipped{}",
        count(Status::Pass),
        count(Status::Fail),
        count(Status::Skip),
        if outcomes
            .iter()
            .any(|o| o.status == Status::Fail && !o.required)
        {
            " (fail* = optional test)"
        } else {
            ""
        }
    );
    s
}

/// The JSON report.
pub fn json(suite: &str, outcomes: &[Outcome]) -> String {
    let tests: Vec<_> = outcomes
        .iter()
        .map(|o| json!({"id": o.id, "section": o.section, "required": o.required, "result": o.status.name().to_lowercase(), "reason": o.reason, "seconds": o.time.as_secs_f64()}))
        .collect();
    serde_json::to_string_pretty(
        &json!({"suite": suite, "passed": passed(outcomes), "tests": tests}),
    )
    .unwrap_or_default()
}

fn xml(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The JUnit XML report.
pub fn junit(suite: &str, outcomes: &[Outcome]) -> String {
    let failures = outcomes.iter().filter(|o| o.status == Status::Fail).count();
    let skipped = outcomes.iter().filter(|o| o.status == Status::Skip).count();
    let total: f64 = outcomes.iter().map(|o| o.time.as_secs_f64()).sum();
    let mut s = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<testsuites>\n  <testsuite name=\"{}\" tests=\"{}\" failures=\"{failures}\" skipped=\"{skipped}\" time=\"{total:.3}\">\n",
        xml(suite),
        outcomes.len()
    );
    for o in outcomes {
        let _ = write!(
            s,
            "    <testcase classname=\"{}.{}\" name=\"{}\" time=\"{:.3}\"",
            xml(suite),
            xml(o.section),
            xml(o.id),
            o.time.as_secs_f64()
        );
        match o.status {
            Status::Pass => s.push_str("/>\n"),
            Status::Fail => {
                let _ = write!(
                    s,
                    ">\n      <failure message=\"{}\"/>\n    </testcase>\n",
                    xml(&o.reason)
                );
            }
            Status::Skip => {
                let _ = write!(
                    s,
                    ">\n      <skipped message=\"{}\"/>\n    </testcase>\n",
                    xml(&o.reason)
                );
            }
        }
    }
    s.push_str("  </testsuite>\n</testsuites>\n");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports() {
        let o = vec![
            Outcome {
                id: "a",
                section: "§1",
                required: true,
                status: Status::Pass,
                reason: String::new(),
                time: Duration::from_millis(5),
            },
            Outcome {
                id: "b",
                section: "§2",
                required: true,
                status: Status::Fail,
                reason: "got <500>".into(),
                time: Duration::ZERO,
            },
            Outcome {
                id: "c",
                section: "§3",
                required: false,
                status: Status::Skip,
                reason: "n/a".into(),
                time: Duration::ZERO,
            },
        ];
        assert!(!passed(&o));
        let j = junit("hub", &o);
        assert!(
            j.contains("failures=\"1\" skipped=\"1\"")
                && j.contains("<failure message=\"got &lt;500&gt;\"/>"),
            "{j}"
        );
        let v: serde_json::Value = serde_json::from_str(&json("hub", &o)).unwrap();
        assert_eq!(v["tests"][1]["result"], "fail");
        assert!(table("t", &o).contains("1 passed, 1 failed, 1 skipped"));
    }
}
