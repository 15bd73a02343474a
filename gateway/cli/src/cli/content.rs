//! `mimi content`: decode, encode, identify and validate MIMI content messages.
//!
//! Exit status: 0 on success, 1 when the input is not a valid message (one line says what is
//! wrong and where), 2 when the input cannot be read.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{SystemTime, UNIX_EPOCH};

use clap::{Args, Subcommand};
use mimi_content::{Message, MessageId, codec, diag, examples, json, receiver, render};

use super::input::{read, read_maybe_hex, write_out};

/// `mimi content ...`
#[derive(Debug, Subcommand)]
pub(crate) enum ContentCommand {
    /// Print a message as JSON (docs/content-json.md) with its message ID and part indices
    Decode {
        #[command(flatten)]
        input: Input,
        /// Print CBOR diagnostic notation instead of JSON
        #[arg(long)]
        diag: bool,
    },
    /// Read the JSON of `decode` and write the deterministic CBOR bytes
    Encode {
        /// JSON file, or `-` / nothing for standard input
        file: Option<PathBuf>,
        /// Write hex instead of binary
        #[arg(long)]
        hex: bool,
    },
    /// Print the message ID as 64 lowercase hex characters
    Id {
        #[command(flatten)]
        input: Input,
        /// Sender user URI, when the message has no senderUri extension
        #[arg(long)]
        sender: Option<String>,
        /// Room URI, when the message has no roomUri extension
        #[arg(long)]
        room: Option<String>,
    },
    /// Check encoding and structure; print `ok` or one line saying what is wrong and where
    Validate {
        #[command(flatten)]
        input: Input,
        /// Also run the receiver checks of draft §9.1 (clock-dependent)
        #[arg(long)]
        receiver: bool,
        /// Hub accepted timestamp in ms for --receiver (default: now)
        #[arg(long, requires = "receiver")]
        accepted_ms: Option<u64>,
        /// Receiver clock in ms for --receiver (default: the system clock)
        #[arg(long, requires = "receiver")]
        now_ms: Option<u64>,
    },
    /// Decode every example message of the draft bundled in this binary and check its ID
    Examples {
        /// Print each example's JSON too
        #[arg(long)]
        json: bool,
    },
}

/// The input of a subcommand that reads a CBOR message.
#[derive(Debug, Args)]
pub(crate) struct Input {
    /// CBOR file, or `-` / nothing for standard input
    file: Option<PathBuf>,
    /// The input is hex text instead of binary
    #[arg(long)]
    hex: bool,
}

/// Runs a `mimi content` subcommand.
pub(crate) fn run(cmd: ContentCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        ContentCommand::Decode {
            input,
            diag: as_diag,
        } => {
            let bytes = match read_maybe_hex(input.file.as_ref(), input.hex)? {
                Ok(b) => b,
                Err(e) => return invalid(&e),
            };
            if as_diag {
                return match diag::diag(&bytes) {
                    Ok(text) => {
                        println!("{text}");
                        Ok(ExitCode::SUCCESS)
                    }
                    Err(e) => invalid(&e.to_string()),
                };
            }
            match Message::decode(bytes) {
                Ok(m) => {
                    println!(
                        "{}",
                        serde_json::to_string_pretty(&json::message_to_json(&m))?
                    );
                    Ok(ExitCode::SUCCESS)
                }
                Err(e) => invalid(&e.to_string()),
            }
        }
        ContentCommand::Encode { file, hex } => {
            let raw = read(file.as_deref())?;
            let j: serde_json::Value = match serde_json::from_slice(&raw) {
                Ok(j) => j,
                Err(e) => return invalid(&format!("input is not JSON: {e}")),
            };
            let content = match json::content_from_json(&j) {
                Ok(c) => c,
                Err(e) => return invalid(&e.to_string()),
            };
            match codec::encode(&content) {
                Ok(bytes) => {
                    write_out(&bytes, hex)?;
                    Ok(ExitCode::SUCCESS)
                }
                Err(e) => invalid(&e.to_string()),
            }
        }
        ContentCommand::Id {
            input,
            sender,
            room,
        } => {
            let m = match decode(&input)? {
                Ok(m) => m,
                Err(e) => return invalid(&e),
            };
            let id = match (sender, room) {
                (None, None) => m.id(),
                (s, r) => {
                    let s = s.or_else(|| m.content().extensions.sender_uri().map(str::to_owned));
                    let r = r.or_else(|| m.content().extensions.room_uri().map(str::to_owned));
                    match (s, r) {
                        (Some(s), Some(r)) => m.id_with(&s, &r),
                        (None, _) => Err(mimi_content::IdError::MissingSenderUri),
                        (_, None) => Err(mimi_content::IdError::MissingRoomUri),
                    }
                }
            };
            match id {
                Ok(id) => {
                    println!("{id}");
                    Ok(ExitCode::SUCCESS)
                }
                Err(e) => invalid(&e.to_string()),
            }
        }
        ContentCommand::Validate {
            input,
            receiver: with_receiver,
            accepted_ms,
            now_ms,
        } => {
            let m = match decode(&input)? {
                Ok(m) => m,
                Err(e) => return invalid(&e),
            };
            if with_receiver {
                let now = now_ms.unwrap_or_else(system_ms);
                let id = match m.id() {
                    Ok(id) => id,
                    Err(e) => return invalid(&e.to_string()),
                };
                let none = |_: &MessageId| false;
                let ctx = receiver::ReceiverContext {
                    now_ms: now,
                    max_future_skew_ms: receiver::DEFAULT_FUTURE_SKEW_MS,
                    room_created_ms: None,
                    is_known_id: &none,
                    is_member: None,
                };
                let found = receiver::check(m.content(), &id, accepted_ms.unwrap_or(now), &ctx);
                if let Some(first) = found.first() {
                    return invalid(&format!("receiver check: {first}"));
                }
            }
            println!("ok");
            Ok(ExitCode::SUCCESS)
        }
        ContentCommand::Examples { json: with_json } => run_examples(with_json),
    }
}

fn decode(input: &Input) -> anyhow::Result<Result<Message, String>> {
    Ok(match read_maybe_hex(input.file.as_ref(), input.hex)? {
        Ok(bytes) => Message::decode(bytes).map_err(|e| e.to_string()),
        Err(e) => Err(e),
    })
}

fn invalid(reason: &str) -> anyhow::Result<ExitCode> {
    println!("invalid: {reason}");
    Ok(ExitCode::from(1))
}

fn system_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn run_examples(with_json: bool) -> anyhow::Result<ExitCode> {
    let mut out = std::io::stdout().lock();
    let mut failures = 0;
    writeln!(
        out,
        "{:<13} {:<9} {:<5} rendering",
        "example", "bytes", "id"
    )?;
    for ex in examples::ALL {
        let (status, rendering, m) = match Message::decode(ex.cbor.to_vec()) {
            Ok(m) => {
                let ok_id = m
                    .id()
                    .map(|id| id.to_hex() == ex.message_id)
                    .unwrap_or(false);
                let ok_bytes = codec::encode(m.content())
                    .map(|b| b == ex.cbor)
                    .unwrap_or(false);
                let status = if ok_id && ok_bytes { "ok" } else { "FAIL" };
                (status, render::plain_text(m.content()), Some(m))
            }
            Err(e) => ("FAIL", e.to_string(), None),
        };
        if status != "ok" {
            failures += 1;
        }
        let one_line: String = rendering.replace('\n', " ⏎ ").chars().take(70).collect();
        writeln!(
            out,
            "{:<13} {:<9} {:<5} {one_line}",
            ex.name,
            ex.cbor.len(),
            status
        )?;
        if let (true, Some(m)) = (with_json, m) {
            writeln!(
                out,
                "{}",
                serde_json::to_string_pretty(&json::message_to_json(&m))?
            )?;
        }
    }
    writeln!(
        out,
        "{} examples, {} decoded byte-exact with the draft's message IDs",
        examples::ALL.len(),
        examples::ALL.len() - failures
    )?;
    Ok(if failures == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
