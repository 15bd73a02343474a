//! `mimi demo [--json] [--keep DIR]`: three providers on loopback, one room, a short
//! conversation, and what each provider's users see. Exits 1 if any view differs from the
//! expected one.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use mimi_tools::demo::{self, Format};

/// `mimi demo`
#[derive(Debug, Args)]
pub(crate) struct DemoArgs {
    /// Print machine-readable events (one JSON object per line)
    #[arg(long)]
    json: bool,
    /// Keep the federation (PKI, configs, databases) in DIR instead of a temporary directory
    #[arg(long)]
    keep: Option<PathBuf>,
}

/// Runs `mimi demo`.
pub(crate) fn run(a: DemoArgs) -> anyhow::Result<ExitCode> {
    let dir = a
        .keep
        .clone()
        .unwrap_or_else(|| std::env::temp_dir().join(format!("mimi-demo-{}", std::process::id())));
    if dir.exists() && a.keep.is_none() {
        std::fs::remove_dir_all(&dir)?;
    }
    super::run::init_logging("text", "warn");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let format = if a.json { Format::Json } else { Format::Text };
    let mut stdout = std::io::stdout();
    let outcome = rt.block_on(demo::run(&dir, format, &mut stdout));
    if a.keep.is_none() {
        let _ = std::fs::remove_dir_all(&dir);
    }
    let outcome = outcome?;
    if outcome.mismatches.is_empty() {
        Ok(ExitCode::SUCCESS)
    } else {
        for m in &outcome.mismatches {
            eprintln!("mimi demo: {m}");
        }
        Ok(ExitCode::from(1))
    }
}
