//! `mimi-conformance`: point it at any MIMI provider (ours or another vendor's) and get a
//! report of what conforms to the drafts. See conformance/TESTS.md for every test.
//!
//! ```text
//! mimi-conformance run --target https://HOST:PORT --target-domain D --role hub|follower \
//!     --our-domain D --cert C --key K --ca CA --listen ADDR --hook http://HOST:PORT \
//!     [--transport h3|https] [--suite PREFIX] [--junit FILE] [--json FILE]
//! mimi-conformance content FILES...
//! mimi-conformance vectors
//! ```

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use mimi_conformance::{content, report, suite};

/// Black-box conformance suite for MIMI providers and MIMI content.
#[derive(Debug, Parser)]
#[command(name = "mimi-conformance", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the protocol tests against a target provider
    Run(Box<RunArgs>),
    /// Check MIMI content encodings (files of deterministic CBOR)
    Content {
        /// The files (a FILE.id next to one holds its expected message ID)
        files: Vec<PathBuf>,
    },
    /// Print the test vectors the suite uses
    Vectors,
}

#[derive(Debug, clap::Args)]
struct RunArgs {
    /// The target's federation endpoint, https://HOST:PORT (HTTP/3 and HTTPS on that port)
    #[arg(long)]
    target: String,
    /// The target provider's domain (its certificate's name)
    #[arg(long)]
    target_domain: String,
    /// Which role the target plays
    /// (`security`: attacks on a hub, each checked for its refusal and its absence of effect)
    #[arg(long, value_parser = ["hub", "follower", "security"])]
    role: String,
    /// Our provider domain (the SAN of --cert); the target must list it as a peer
    #[arg(long)]
    our_domain: String,
    /// Our certificate (PEM), used as client and server certificate
    #[arg(long)]
    cert: PathBuf,
    /// Our key (PEM, PKCS#8)
    #[arg(long)]
    key: PathBuf,
    /// CA bundle that issued the target's certificate
    #[arg(long)]
    ca: PathBuf,
    /// Where our side listens (QUIC and HTTPS): the address the target has for our domain
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// The target's test hook: its client API (docs/client-api.md), http://HOST:PORT
    #[arg(long)]
    hook: String,
    /// A token that may register users on the hook when its registration is closed (the
    /// target's admin token)
    #[arg(long)]
    hook_token: Option<String>,
    /// h3 (default) or https (HTTP/2)
    #[arg(long, default_value = "h3", value_parser = ["h3", "https"])]
    transport: String,
    /// Only the tests whose ID starts with this (setup always runs)
    #[arg(long)]
    suite: Option<String>,
    /// Write a JUnit XML report here
    #[arg(long)]
    junit: Option<PathBuf>,
    /// Write a JSON report here
    #[arg(long)]
    json: Option<PathBuf>,
}

async fn addr(url: &str, scheme: &str) -> anyhow::Result<SocketAddr> {
    let hp = url
        .strip_prefix(scheme)
        .ok_or_else(|| anyhow::anyhow!("{url} must start with {scheme}"))?
        .trim_end_matches('/');
    tokio::net::lookup_host(hp)
        .await?
        .next()
        .ok_or_else(|| anyhow::anyhow!("{hp} does not resolve"))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("mimi-conformance: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Vectors => {
            println!(
                "# MIMI content vectors (draft-ietf-mimi-content-08 examples): name, message ID, CBOR hex"
            );
            for e in mimi_content::examples::ALL {
                println!("{}\t{}\t{}", e.name, e.message_id, hex::encode(e.cbor));
            }
            println!("\n# Malformed bodies sent to every endpoint (each must get a 4xx)");
            for (what, b) in suite::bad_bodies() {
                println!("{what}\t{}", hex::encode(b));
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Content { files } => {
            if files.is_empty() {
                anyhow::bail!("give at least one file");
            }
            let outcomes: Vec<_> = files.iter().flat_map(|f| content::check(f)).collect();
            print!("{}", report::table("MIMI content checks", &outcomes));
            Ok(if report::passed(&outcomes) {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
        Command::Run(a) => {
            let _ = tracing_subscriber::fmt()
                .with_env_filter(
                    tracing_subscriber::EnvFilter::try_from_default_env()
                        .unwrap_or_else(|_| "error".into()),
                )
                .with_writer(std::io::stderr)
                .try_init();
            let rt = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()?;
            rt.block_on(async move {
                let o = suite::Options {
                    target: addr(&a.target, "https://").await?,
                    target_domain: a.target_domain.clone(),
                    our_domain: a.our_domain.clone(),
                    cert: a.cert.clone(),
                    key: a.key.clone(),
                    ca: a.ca.clone(),
                    listen: a.listen,
                    hook: addr(&a.hook, "http://").await?,
                    hook_token: a.hook_token.clone(),
                    transport: a.transport.clone(),
                    only: a.suite.clone(),
                };
                let mut env = suite::Env::new(o).await?;
                let tests = if a.role == "hub" {
                    suite::hub_tests()
                } else if a.role == "security" {
                    suite::security_tests()
                } else {
                    suite::follower_tests()
                };
                let outcomes = suite::run(&mut env, tests).await;
                env.close().await;
                let name = format!(
                    "mimi-conformance {} ({} over {})",
                    a.role, a.target_domain, a.transport
                );
                print!("{}", report::table(&name, &outcomes));
                if let Some(p) = &a.junit {
                    std::fs::write(
                        p,
                        report::junit(&format!("{}-{}", a.role, a.transport), &outcomes),
                    )?;
                }
                if let Some(p) = &a.json {
                    std::fs::write(p, report::json(&name, &outcomes))?;
                }
                Ok(if report::passed(&outcomes) {
                    ExitCode::SUCCESS
                } else {
                    ExitCode::from(1)
                })
            })
        }
    }
}
