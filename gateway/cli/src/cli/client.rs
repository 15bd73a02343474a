//! `mimi client`: a native MIMI client on a gateway's client API (state in one file).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Subcommand};
use mimi_tools::client::Client;

/// `mimi client`
#[derive(Debug, Args)]
pub(crate) struct ClientArgs {
    /// The client's state file (token, cursor, MLS state, messages not yet shown)
    #[arg(long, default_value = "mimi-client.json")]
    state: PathBuf,
    #[command(subcommand)]
    command: ClientCommand,
}

#[derive(Debug, Subcommand)]
enum ClientCommand {
    /// Register a user's device on a gateway and write the state file
    Register {
        /// The gateway's client API (host:port)
        #[arg(long)]
        api: SocketAddr,
        /// User name
        #[arg(long)]
        user: String,
        /// Device name
        #[arg(long, default_value = "cli")]
        device: String,
        /// An admin or provider token (when registration is closed)
        #[arg(long)]
        token: Option<String>,
    },
    /// The rooms this client is in, with their participants (JSON lines)
    Rooms,
    /// Create a room hosted by this client's gateway
    Create {
        /// Room URI (mimi://<this gateway's domain>/r/<name>)
        room: String,
        /// Display name
        #[arg(long, default_value = "room")]
        name: String,
        /// Anyone may join by external commit
        #[arg(long)]
        open: bool,
    },
    /// Add a user to a room
    Invite {
        /// Room URI
        room: String,
        /// User URI (mimi://provider/u/name)
        user: String,
    },
    /// Join an open room by external commit
    Join {
        /// Room URI
        room: String,
    },
    /// Send a text message
    Send {
        /// Room URI
        room: String,
        /// The text
        text: String,
    },
    /// Print received messages, one JSON object per line (sender, text, id, timestamp)
    Tail {
        /// Room URI
        room: String,
        /// Keep printing new messages until interrupted
        #[arg(long)]
        follow: bool,
        /// Seconds to wait for the first messages
        #[arg(long, default_value_t = 0)]
        wait: u64,
    },
}

/// Runs `mimi client`.
pub(crate) fn run(a: ClientArgs) -> anyhow::Result<ExitCode> {
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async move {
        match a.command {
            ClientCommand::Register {
                api,
                user,
                device,
                token,
            } => {
                let mut c =
                    Client::register(&a.state, api, &user, &device, token.as_deref()).await?;
                println!("{}", serde_json::json!({"user": c.session().user()}));
            }
            ClientCommand::Rooms => {
                let mut c = Client::load(&a.state)?;
                c.sync(0).await?;
                for (room, participants) in c.rooms() {
                    println!(
                        "{}",
                        serde_json::json!({"room": room, "participants": participants})
                    );
                }
            }
            ClientCommand::Create { room, name, open } => {
                Client::load(&a.state)?.create(&room, &name, open).await?;
            }
            ClientCommand::Invite { room, user } => {
                Client::load(&a.state)?.invite(&room, &user).await?;
            }
            ClientCommand::Join { room } => Client::load(&a.state)?.join(&room).await?,
            ClientCommand::Send { room, text } => {
                let id = Client::load(&a.state)?.send(&room, &text).await?;
                println!("{}", serde_json::json!({"id": id}));
            }
            ClientCommand::Tail { room, follow, wait } => {
                let mut c = Client::load(&a.state)?;
                let mut first = true;
                loop {
                    c.sync(if first { wait } else { 20 }).await?;
                    first = false;
                    for l in c.take(Some(&room)) {
                        println!("{}", serde_json::to_string(&l)?);
                    }
                    c.save()?;
                    if !follow {
                        break;
                    }
                }
            }
        }
        Ok(ExitCode::SUCCESS)
    })
}
