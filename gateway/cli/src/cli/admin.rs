//! `mimi admin`: peers, rooms, queues, dead letters, resync marks and certificate reload of
//! a running gateway, over its admin listener with the admin token.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context as _, bail};
use clap::{Args, Subcommand};
use mimi_gateway::config::Config;
use mimi_tools::admin::AdminClient;
use serde::Serialize;

/// `mimi admin`
#[derive(Debug, Args)]
pub(crate) struct AdminArgs {
    /// The gateway's configuration (its admin address and client_api.admin_token)
    #[arg(long)]
    config: Option<PathBuf>,
    /// The admin listener (instead of --config)
    #[arg(long)]
    admin: Option<SocketAddr>,
    /// The admin token (instead of --config; or the MIMI_ADMIN_TOKEN environment variable)
    #[arg(long)]
    token: Option<String>,
    #[command(subcommand)]
    command: AdminCommand,
}

#[derive(Debug, Subcommand)]
enum AdminCommand {
    /// Readiness summary: storage, queues, dead letters, out-of-sync followers
    Status,
    /// Cluster nodes, which node orders each slot, this node's leases (PostgreSQL storage)
    Cluster {
        /// Also say which slot this room is in
        #[arg(long)]
        room: Option<String>,
    },
    /// Configured peers and their links
    Peers,
    /// Rooms hosted here
    Rooms {
        /// At most this many
        #[arg(long, default_value_t = 1000)]
        limit: usize,
    },
    /// Outboxes that are not empty (follower, room, entries, bytes)
    Queues,
    /// Entries followers refused for good
    DeadLetters {
        /// Only this follower's
        #[arg(long)]
        follower: Option<String>,
    },
    /// Put a follower's dead letters of a room back in its outbox
    Retry {
        /// Follower domain
        #[arg(long)]
        follower: String,
        /// Room URI
        #[arg(long)]
        room: String,
    },
    /// Delete a follower's dead letters of a room
    Drop {
        /// Follower domain
        #[arg(long)]
        follower: String,
        /// Room URI
        #[arg(long)]
        room: String,
    },
    /// Clear a follower's out-of-sync mark once its users have resynced
    Resynced {
        /// Follower domain
        #[arg(long)]
        follower: String,
    },
    /// Reload the certificate, key and CAs (as SIGHUP does)
    Reload,
}

/// `mimi health`: whether the gateway is ready (for container health checks).
#[derive(Debug, Args)]
pub(crate) struct HealthArgs {
    /// The gateway's configuration (its admin address)
    #[arg(long)]
    config: Option<PathBuf>,
    /// The admin listener (default 127.0.0.1:9090)
    #[arg(long)]
    admin: Option<SocketAddr>,
}

/// Runs `mimi health`: exit 0 when `/readyz` answers 200, 1 otherwise.
pub(crate) fn health(a: HealthArgs) -> anyhow::Result<ExitCode> {
    let addr = match (a.admin, &a.config) {
        (Some(addr), _) => addr,
        (None, Some(p)) => {
            Config::load(p)
                .map_err(|e| anyhow::anyhow!("{}: {e}", p.display()))?
                .listen
                .admin
        }
        (None, None) => SocketAddr::from(([127, 0, 0, 1], 9090)),
    };
    let addr = if addr.ip().is_unspecified() {
        SocketAddr::from(([127, 0, 0, 1], addr.port()))
    } else {
        addr
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    match rt.block_on(mimi_tools::admin::readyz(addr)) {
        Ok((200, t)) => {
            println!("{t}");
            Ok(ExitCode::SUCCESS)
        }
        Ok((s, t)) => {
            eprintln!("mimi health: {s} {t}");
            Ok(ExitCode::from(1))
        }
        Err(e) => {
            eprintln!("mimi health: {e:#}");
            Ok(ExitCode::from(1))
        }
    }
}

fn client(a: &AdminArgs) -> anyhow::Result<AdminClient> {
    let cfg = a
        .config
        .as_ref()
        .map(|p| Config::load(p).map_err(|e| anyhow::anyhow!("{}: {e}", p.display())))
        .transpose()?;
    let addr = a
        .admin
        .or_else(|| cfg.as_ref().map(|c| c.listen.admin))
        .context("give --config FILE or --admin HOST:PORT")?;
    let token = a
        .token
        .clone()
        .or_else(|| std::env::var("MIMI_ADMIN_TOKEN").ok())
        .or_else(|| cfg.and_then(|c| c.client_api.admin_token))
        .context(
            "no admin token: --token, MIMI_ADMIN_TOKEN, or client_api.admin_token in --config",
        )?;
    if addr.ip().is_unspecified() {
        bail!("the admin listener is {addr}: give --admin with a reachable address");
    }
    Ok(AdminClient { addr, token })
}

fn lines<T: Serialize>(v: &[T]) -> anyhow::Result<()> {
    for x in v {
        println!("{}", serde_json::to_string(x)?);
    }
    Ok(())
}

/// Runs `mimi admin`; exits 1 when the gateway refuses.
pub(crate) fn run(a: AdminArgs) -> anyhow::Result<ExitCode> {
    let c = client(&a)?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let r: anyhow::Result<()> = rt.block_on(async {
        match &a.command {
            AdminCommand::Status => println!("{}", serde_json::to_string(&c.status().await?)?),
            AdminCommand::Cluster { room } => println!(
                "{}",
                serde_json::to_string(&c.cluster(room.as_deref()).await?)?
            ),
            AdminCommand::Peers => lines(&c.peers().await?)?,
            AdminCommand::Rooms { limit } => lines(&c.rooms(*limit).await?)?,
            AdminCommand::Queues => lines(&c.queues().await?)?,
            AdminCommand::DeadLetters { follower } => {
                lines(&c.dead_letters(follower.as_deref()).await?)?
            }
            AdminCommand::Retry { follower, room } => {
                println!(
                    "{}",
                    serde_json::to_string(&c.dead_letter_action(follower, room, true).await?)?
                );
            }
            AdminCommand::Drop { follower, room } => {
                println!(
                    "{}",
                    serde_json::to_string(&c.dead_letter_action(follower, room, false).await?)?
                );
            }
            AdminCommand::Resynced { follower } => {
                println!("{}", serde_json::to_string(&c.resynced(follower).await?)?);
            }
            AdminCommand::Reload => println!("{}", serde_json::to_string(&c.reload().await?)?),
        }
        Ok(())
    });
    match r {
        Ok(()) => Ok(ExitCode::SUCCESS),
        Err(e) => {
            eprintln!("mimi admin: {e:#}");
            Ok(ExitCode::from(1))
        }
    }
}
