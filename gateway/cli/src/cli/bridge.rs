//! `mimi bridge matrix registration --config FILE`: the application-service registration YAML
//! for the homeserver (add its path to the homeserver's `app_service_config_files`).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Subcommand};
use mimi_gateway::config::Config;

/// `mimi bridge`
#[derive(Debug, Subcommand)]
pub(crate) enum BridgeCommand {
    /// The Matrix bridge
    #[command(subcommand)]
    Matrix(MatrixCommand),
}

/// `mimi bridge matrix`
#[derive(Debug, Subcommand)]
pub(crate) enum MatrixCommand {
    /// Print the application-service registration YAML
    Registration(RegistrationArgs),
}

/// Arguments of `registration`.
#[derive(Debug, Args)]
pub(crate) struct RegistrationArgs {
    /// The gateway configuration with a [bridge.matrix] section
    #[arg(long)]
    config: PathBuf,
}

/// Runs `mimi bridge`.
pub(crate) fn run(c: BridgeCommand) -> anyhow::Result<ExitCode> {
    let BridgeCommand::Matrix(MatrixCommand::Registration(a)) = c;
    let cfg = match Config::load(&a.config) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("mimi: {e}");
            return Ok(ExitCode::from(2));
        }
    };
    let Some(m) = cfg.bridge.matrix else {
        eprintln!(
            "mimi: {} has no [bridge.matrix] section",
            a.config.display()
        );
        return Ok(ExitCode::from(2));
    };
    print!("{}", mimi_bridges::matrix::registration(&m));
    Ok(ExitCode::SUCCESS)
}
