//! `mimi bench links|fanout|commit|state|all`: measurements with an in-run baseline, printed as
//! Markdown tables (BENCHMARKS.md records them) or, with `--json`, one JSON object per
//! measurement. Run a release build.

use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, ValueEnum};
use mimi_tools::bench;

/// Which measurement.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Which {
    /// Request round trips over HTTP/3 and HTTPS at 1/16/64 in flight vs a bare HTTP/3
    /// request and a bare quinn echo
    Links,
    /// Fan-out to 1, 4 and 16 followers, closed and open loop, vs the same baselines
    Fanout,
    /// Hub commit acceptance vs a member's processing, 10/100/1000 members
    Commit,
    /// State growth: a message's bytes and time with small and large history; disk, start-up
    /// and memory with many rooms; a bridged reply's time and bytes with a small and a large
    /// ID map (JSON lines)
    State,
    /// Everything
    All,
}

/// `mimi bench`
#[derive(Debug, Args)]
pub(crate) struct BenchArgs {
    /// What to measure
    which: Which,
    /// Seconds per load run (links)
    #[arg(long, default_value_t = 3)]
    seconds: u64,
    /// Messages per closed-loop run (fanout; the open-loop run sends at least two seconds'
    /// worth)
    #[arg(long, default_value_t = 1000)]
    messages: usize,
    /// Follower counts (fanout)
    #[arg(long, value_delimiter = ',', default_value = "1,4,16")]
    followers: Vec<usize>,
    /// One JSON object per measurement (links, fanout) instead of Markdown tables
    #[arg(long)]
    json: bool,
    /// Commits per group size (commit)
    #[arg(long, default_value_t = 30)]
    rounds: usize,
    /// Messages of history (and bridged messages in the ID map): the small size (state)
    #[arg(long, default_value_t = 1_000)]
    history_small: u64,
    /// Messages of history (and bridged messages in the ID map): the large size (state)
    #[arg(long, default_value_t = 100_000)]
    history_large: u64,
    /// Rooms of 5 members in the store for the start-up figures (state)
    #[arg(long, default_value_t = 10_000)]
    rooms: u64,
}

/// Runs `mimi bench`.
pub(crate) fn run(a: BenchArgs) -> anyhow::Result<ExitCode> {
    super::run::init_logging("text", "error");
    let dir = std::env::temp_dir().join(format!("mimi-bench-{}", std::process::id()));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let all = a.which == Which::All;
    let mut measured = Vec::new();
    if all || a.which == Which::Links {
        measured.extend(rt.block_on(bench::links(
            &dir.join("links"),
            Duration::from_secs(a.seconds),
        ))?);
    }
    if all || a.which == Which::Fanout {
        measured.extend(rt.block_on(bench::fanout(&dir, a.messages, &a.followers))?);
    }
    if a.json {
        for m in &measured {
            println!("{}", serde_json::to_string(m)?);
        }
    } else if !measured.is_empty() {
        println!("{}", bench::markdown(&measured));
    }
    if all || a.which == Which::Commit {
        println!("## commit ({} commits per size)\n", a.rounds);
        println!("{}", bench::commit(a.rounds)?);
    }
    if a.which == Which::State {
        let exe = std::env::current_exe()?;
        for g in mimi_tools::bench_state::state(
            &dir.join("state"),
            &exe,
            a.history_small,
            a.history_large,
            a.rooms,
        )?
        .into_iter()
        .chain(mimi_tools::bench_bridge::bridge(
            &dir.join("bridge"),
            a.history_small,
            a.history_large,
        )?) {
            println!("{}", serde_json::to_string(&g)?);
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    Ok(ExitCode::SUCCESS)
}
