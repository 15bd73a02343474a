//! `mimi`: the MIMI federation gateway command.
//!
//! Each subcommand lives in its own module under `cli/`; this file only parses arguments,
//! runs the chosen command and turns errors into exit codes (1: the input is invalid,
//! 2: usage or environment errors such as an unreadable file).

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod cli;

/// The MIMI federation gateway.
#[derive(Debug, Parser)]
#[command(name = "mimi", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Decode, encode, identify and validate MIMI content messages (draft-ietf-mimi-content-08)
    #[command(subcommand)]
    Content(cli::content::ContentCommand),
    /// Decode MIMI protocol bodies to JSON, or encode JSON back to bytes (draft-ietf-mimi-protocol-06)
    Inspect(cli::inspect::InspectArgs),
    /// Benchmarks with an in-run baseline (links, fanout, commit)
    Bench(cli::bench::BenchArgs),
    /// Three providers on loopback share one room; prints what each provider's users see
    Demo(cli::demo::DemoArgs),
    /// Translate a Matrix/XMPP/Wire payload into MIMI content, or MIMI content into one
    Translate(cli::translate::TranslateArgs),
    /// Bridges: `mimi bridge matrix registration --config FILE`
    #[command(subcommand)]
    Bridge(cli::bridge::BridgeCommand),
    /// Write a development federation: one CA, a certificate and a config per domain
    Init(cli::init::InitArgs),
    /// Run a gateway (a development gateway under ./mimi-data without --config)
    Run(cli::run::RunArgs),
    /// A native MIMI client on a gateway's client API: register, rooms, create, invite, join, send, tail
    Client(cli::client::ClientArgs),
    /// Drive running gateways: rooms spanning them, messages at a rate, every delivery checked
    Load(cli::load::LoadArgs),
    /// Operate a running gateway: status, peers, rooms, queues, dead letters, reload
    Admin(cli::admin::AdminArgs),
    /// Exit 0 when the gateway is ready (/readyz), 1 otherwise (container health checks)
    Health(cli::admin::HealthArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Content(c) => cli::content::run(c),
        Command::Inspect(a) => cli::inspect::run(a),
        Command::Init(a) => cli::init::run(a),
        Command::Bridge(c) => cli::bridge::run(c),
        Command::Translate(a) => cli::translate::run(a),
        Command::Demo(a) => cli::demo::run(a),
        Command::Bench(a) => cli::bench::run(a),
        Command::Run(a) => cli::run::run(a),
        Command::Client(a) => cli::client::run(a),
        Command::Load(a) => cli::load::run_load(a),
        Command::Admin(a) => cli::admin::run(a),
        Command::Health(a) => cli::admin::health(a),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            if is_broken_pipe(&e) {
                return ExitCode::SUCCESS;
            }
            eprintln!("mimi: {e:#}");
            ExitCode::from(2)
        }
    }
}

/// `mimi ... | head` must not report an error (ripgrep does the same).
fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}
