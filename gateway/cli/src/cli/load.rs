//! `mimi load`: rooms spanning running gateways, messages at a rate, every delivery checked.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context as _, bail};
use clap::Args;
use mimi_tools::load::{LoadOptions, gateways_of_dir, run};

/// `mimi load`
#[derive(Debug, Args)]
pub(crate) struct LoadArgs {
    /// A gateway: DOMAIN=http://CLIENT_API (repeat for each provider); the nodes of a cluster
    /// as DOMAIN=http://NODE1,http://NODE2,...
    #[arg(long = "gateway")]
    gateways: Vec<String>,
    /// Or the gateways of a `mimi init` directory
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Rooms to create
    #[arg(long, default_value_t = 3)]
    rooms: usize,
    /// Users per room (spread over the gateways)
    #[arg(long, default_value_t = 3)]
    users: usize,
    /// Messages to send in all
    #[arg(long, default_value_t = 300)]
    messages: usize,
    /// Messages per second (0: as fast as the gateways take them)
    #[arg(long, default_value_t = 0.0)]
    rate: f64,
    /// Seconds to wait for a gateway to come back and for the last deliveries
    #[arg(long, default_value_t = 120)]
    patience: u64,
    /// Submissions in flight at most, whatever the rate. Messages waiting behind their
    /// sender's previous one hold no slot; at most 64 of them per slot wait, and past that
    /// sending pauses until one goes out
    #[arg(long, default_value_t = 16)]
    in_flight: usize,
    /// A token that may register users when registration is closed (the gateways' admin
    /// token; or the MIMI_ADMIN_TOKEN environment variable)
    #[arg(long)]
    token: Option<String>,
}

fn parse_gateway(s: &str) -> anyhow::Result<(String, Vec<SocketAddr>)> {
    let (domain, urls) = s
        .split_once('=')
        .with_context(|| format!("{s}: expected DOMAIN=http://HOST:PORT[,http://HOST:PORT]"))?;
    let addrs = urls
        .split(',')
        .map(|url| {
            let hostport = url.trim_start_matches("http://").trim_end_matches('/');
            hostport
                .parse()
                .with_context(|| format!("{url}: expected http://IP:PORT"))
        })
        .collect::<anyhow::Result<Vec<SocketAddr>>>()?;
    Ok((domain.to_owned(), addrs))
}

/// Runs `mimi load`; exits 1 when anything accepted was lost, duplicated or reordered.
pub(crate) fn run_load(a: LoadArgs) -> anyhow::Result<ExitCode> {
    let mut gateways = a
        .gateways
        .iter()
        .map(|g| parse_gateway(g))
        .collect::<anyhow::Result<Vec<_>>>()?;
    if let Some(d) = &a.dir {
        gateways.extend(gateways_of_dir(d)?);
    }
    if gateways.is_empty() {
        bail!("give --gateway DOMAIN=http://CLIENT_API (repeated) or --dir");
    }
    let o = LoadOptions {
        gateways,
        rooms: a.rooms,
        users: a.users,
        messages: a.messages,
        rate: a.rate,
        patience: Duration::from_secs(a.patience),
        in_flight: a.in_flight,
        run: rand::random::<u32>() % 1_000_000,
        ready: None,
        token: a.token.or_else(|| std::env::var("MIMI_ADMIN_TOKEN").ok()),
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let report = rt.block_on(run(&o))?;
    println!("{}", serde_json::to_string(&report)?);
    Ok(if report.clean() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
