//! `mimi run [--config FILE]`: runs a gateway until SIGTERM or Ctrl-C.
//!
//! Without `--config`, a single-provider development gateway (domain `localhost`) with a
//! generated development CA and certificate, storage under `./mimi-data` (created on first
//! run, reused after). Once every listener is bound it prints
//! `listening quic=ADDR https=ADDR admin=ADDR` and then `client_api=ADDR` on standard output.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;
use mimi_gateway::config::Config;
use mimi_gateway::gateway::Gateway;
use mimi_gateway::pki;

/// `mimi run`
#[derive(Debug, Args)]
pub(crate) struct RunArgs {
    /// The configuration file (docs/config.md); without it, a development gateway
    #[arg(long)]
    config: Option<PathBuf>,
    /// Where the development gateway keeps its PKI and storage
    #[arg(long, default_value = "mimi-data")]
    data: PathBuf,
}

/// Loads the configuration, generating the development one when none is given.
fn load(a: &RunArgs) -> anyhow::Result<Config> {
    let path = match &a.config {
        Some(p) => p.clone(),
        None => dev_config(&a.data)?,
    };
    Ok(Config::load(&path)?)
}

fn dev_config(data: &Path) -> anyhow::Result<PathBuf> {
    let path = data.join("localhost").join("config.toml");
    if !path.is_file() {
        pki::init(&["localhost".to_owned()], data, 4433).with_context(|| {
            format!(
                "cannot create the development gateway in {}",
                data.display()
            )
        })?;
        eprintln!(
            "mimi: created a development gateway (development PKI, not for production) in {}",
            data.display()
        );
    }
    Ok(path)
}

/// Installs the tracing subscriber: `RUST_LOG` wins over `log.level`; JSON when asked.
pub(crate) fn init_logging(format: &str, level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    use std::io::IsTerminal as _;
    let b = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    let _ = if format == "json" {
        b.json().try_init()
    } else {
        b.try_init()
    };
}

/// Runs `mimi run`.
pub(crate) fn run(a: RunArgs) -> anyhow::Result<ExitCode> {
    let cfg = match load(&a) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("mimi: {e:#}");
            return Ok(ExitCode::from(2));
        }
    };
    init_logging(&cfg.log.format, &cfg.log.level);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let signal = shutdown_signal()?;
        let gw = Gateway::start(cfg).await?;
        {
            let mut out = std::io::stdout().lock();
            writeln!(out, "{}", gw.addrs)?;
            writeln!(out, "client_api={}", gw.addrs.client_api)?;
            out.flush()?;
        }
        signal.await;
        tracing::info!("shutting down");
        gw.shutdown().await;
        Ok(ExitCode::SUCCESS)
    })
}

/// Resolves on SIGTERM or Ctrl-C. Created before the gateway announces itself, so a SIGTERM
/// sent right after the `listening` line is a graceful stop, not the default kill.
fn shutdown_signal() -> std::io::Result<impl Future<Output = ()>> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate())?;
        let mut int = signal(SignalKind::interrupt())?;
        Ok(async move {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
        })
    }
    #[cfg(not(unix))]
    {
        Ok(async move {
            let _ = tokio::signal::ctrl_c().await;
        })
    }
}
