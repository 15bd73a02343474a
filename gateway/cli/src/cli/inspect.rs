//! `mimi inspect`: decode any named MIMI protocol body to JSON, or encode JSON back.
//!
//! ```text
//! mimi inspect --list
//! mimi inspect TYPE [FILE|-] [--hex]          bytes -> JSON
//! mimi inspect encode TYPE [FILE|-] [--hex]   JSON -> bytes (hex with --hex)
//! ```
//!
//! Exit status 1 when the input does not decode; the one-line reason names the field and the
//! byte offset.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::bail;
use clap::Args;
use mimi_proto::registry;

use super::input::{read, read_maybe_hex, write_out};

/// `mimi inspect ...`
#[derive(Debug, Args)]
pub(crate) struct InspectArgs {
    /// List the type names
    #[arg(long)]
    list: bool,
    /// Input is hex (decode) / write hex (encode)
    #[arg(long)]
    hex: bool,
    /// `TYPE [FILE|-]` or `encode TYPE [FILE|-]`
    args: Vec<String>,
}

/// Runs `mimi inspect`.
pub(crate) fn run(a: InspectArgs) -> anyhow::Result<ExitCode> {
    if a.list {
        for t in registry::TYPES {
            println!("{:<26} {}", t.name, t.about);
        }
        return Ok(ExitCode::SUCCESS);
    }
    let (encode, rest) = match a.args.split_first() {
        Some((first, rest)) if first == "encode" => (true, rest),
        _ => (false, a.args.as_slice()),
    };
    let (name, file) = match rest {
        [name] => (name, None),
        [name, file] => (name, Some(PathBuf::from(file))),
        [] => bail!("give a type name (see `mimi inspect --list`)"),
        _ => bail!("too many arguments; usage: mimi inspect [encode] TYPE [FILE|-]"),
    };
    let Some(info) = registry::find(name) else {
        bail!("unknown type {name:?}; `mimi inspect --list` shows the names");
    };
    if encode {
        let raw = read(file.as_deref())?;
        let json: serde_json::Value = match serde_json::from_slice(&raw) {
            Ok(j) => j,
            Err(e) => return invalid(&format!("input is not JSON: {e}")),
        };
        return match info.encode_json(&json) {
            Ok(bytes) => {
                write_out(&bytes, a.hex)?;
                Ok(ExitCode::SUCCESS)
            }
            Err(e) => invalid(&e),
        };
    }
    let bytes = match read_maybe_hex(file.as_ref(), a.hex)? {
        Ok(b) => b,
        Err(e) => return invalid(&e),
    };
    match info.decode_json(&bytes) {
        Ok(json) => {
            println!("{}", serde_json::to_string_pretty(&json)?);
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => invalid(&format!("{} does not decode: {e}", info.name)),
    }
}

fn invalid(reason: &str) -> anyhow::Result<ExitCode> {
    println!("invalid: {reason}");
    Ok(ExitCode::from(1))
}
