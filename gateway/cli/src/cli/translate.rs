//! `mimi translate`: one native payload to MIMI content, or MIMI content to a native payload.
//!
//! ```text
//! mimi translate --from matrix|xmpp|wire --sender URI --room URI [FILE|-] [--json]
//! mimi translate --to matrix|xmpp|wire --room URI [FILE|-]
//! ```
//!
//! `--from` reads a Matrix event (JSON), one XMPP `<message/>` stanza or a binary Wire
//! `GenericMessage`, and writes the MIMI content (deterministic CBOR; several messages, e.g.
//! an XMPP reaction set, are written as a CBOR sequence), or with `--json` the JSON of `mimi
//! content decode` (an array when there are several). `--to` reads MIMI CBOR and writes the
//! native payload(s). Without a mapping store, references to unknown messages degrade as the
//! adapters degrade them. Everything that could not be carried is listed on standard error as
//! `lost: FEATURE: DETAIL`. Invalid input exits 1 with a one-line reason.

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use mimi_adapters::matrix::Matrix;
use mimi_adapters::native::Native;
use mimi_adapters::wire::Wire;
use mimi_adapters::xmpp::Xmpp;
use mimi_adapters::{Adapter, Context, IdMap, Loss, Provider, UriScheme, random_salt};

use super::input::read;

/// `mimi translate`
#[derive(Debug, Args)]
pub(crate) struct TranslateArgs {
    /// Translate a native payload of this provider into MIMI content
    #[arg(long, value_parser = ["matrix", "xmpp", "wire"], conflicts_with = "to", required_unless_present = "to")]
    from: Option<String>,
    /// Translate MIMI content into this provider's payload
    #[arg(long, value_parser = ["matrix", "xmpp", "wire"])]
    to: Option<String>,
    /// The sender's MIMI user URI (with --from)
    #[arg(long, required_unless_present = "to")]
    sender: Option<String>,
    /// The MIMI room URI
    #[arg(long)]
    room: String,
    /// Print the MIMI content as JSON (with --from)
    #[arg(long)]
    json: bool,
    /// The gateway domain of bridged identities' URIs
    #[arg(long, default_value = "gw.example")]
    gateway_domain: String,
    /// Input file (standard input when absent or `-`)
    file: Option<PathBuf>,
}

fn report(lost: &[Loss]) {
    for l in lost {
        eprintln!("lost: {l}");
    }
}

fn fail(msg: impl std::fmt::Display) -> anyhow::Result<ExitCode> {
    eprintln!("mimi translate: {msg}");
    Ok(ExitCode::from(1))
}

/// Runs `mimi translate`.
pub(crate) fn run(a: TranslateArgs) -> anyhow::Result<ExitCode> {
    let input = read(a.file.as_deref())?;
    let uris = UriScheme::new(&a.gateway_domain);
    let mut ids = IdMap::new();
    let mut salt = random_salt;
    let mut ctx = Context {
        room: &a.room,
        native_room: &a.room,
        ids: &mut ids,
        uris: &uris,
        salt: &mut salt,
        media: None,
    };
    let mut out = std::io::stdout().lock();
    if let Some(from) = &a.from {
        let sender = a.sender.clone().unwrap_or_default();
        if !sender.starts_with("mimi://") {
            return fail(format!(
                "--sender must be a MIMI user URI (mimi://domain/u/name), not {sender:?}"
            ));
        }
        let result = match Provider::from_name(from) {
            Some(Provider::Matrix) => {
                translate_in(&Matrix::new(&a.gateway_domain), &mut ctx, &sender, &input)
            }
            Some(Provider::Xmpp) => {
                translate_in(&Xmpp::new(&a.gateway_domain), &mut ctx, &sender, &input)
            }
            _ => translate_in(&Wire::new(&a.gateway_domain), &mut ctx, &sender, &input),
        };
        let (msgs, lost) = match result {
            Ok(r) => r,
            Err(e) => return fail(e),
        };
        report(&lost);
        if a.json {
            let mut j: Vec<serde_json::Value> = msgs
                .iter()
                .map(mimi_content::json::message_to_json)
                .collect();
            let v = if j.len() == 1 {
                j.remove(0)
            } else {
                serde_json::Value::Array(j)
            };
            writeln!(out, "{}", serde_json::to_string_pretty(&v)?)?;
        } else {
            for m in &msgs {
                out.write_all(m.bytes())?;
            }
        }
        return Ok(ExitCode::SUCCESS);
    }
    let to = a.to.clone().unwrap_or_default();
    let msg = match Native.parse(&input) {
        Ok(m) => m,
        Err(e) => return fail(e),
    };
    let sender = msg
        .content()
        .extensions
        .sender_uri()
        .unwrap_or_default()
        .to_owned();
    let bytes: Result<(Vec<Vec<u8>>, Vec<Loss>), _> = match Provider::from_name(&to) {
        Some(Provider::Matrix) => {
            translate_out(&Matrix::new(&a.gateway_domain), &mut ctx, &sender, &msg)
        }
        Some(Provider::Xmpp) => {
            translate_out(&Xmpp::new(&a.gateway_domain), &mut ctx, &sender, &msg)
        }
        _ => translate_out(&Wire::new(&a.gateway_domain), &mut ctx, &sender, &msg),
    };
    let (items, lost) = match bytes {
        Ok(r) => r,
        Err(e) => return fail(e),
    };
    report(&lost);
    for (i, b) in items.iter().enumerate() {
        out.write_all(b)?;
        if to != "wire" && i + 1 < items.len() {
            out.write_all(b"\n")?;
        }
    }
    if to != "wire" && !items.is_empty() {
        out.write_all(b"\n")?;
    }
    Ok(ExitCode::SUCCESS)
}

fn translate_in<A: Adapter>(
    a: &A,
    ctx: &mut Context<'_>,
    sender: &str,
    input: &[u8],
) -> Result<(Vec<mimi_content::Message>, Vec<Loss>), mimi_adapters::AdapterError> {
    let native = a.parse(input)?;
    let t = a.to_mimi(ctx, sender, &native)?;
    Ok((t.items, t.lost))
}

fn translate_out<A: Adapter>(
    a: &A,
    ctx: &mut Context<'_>,
    sender: &str,
    msg: &mimi_content::Message,
) -> Result<(Vec<Vec<u8>>, Vec<Loss>), mimi_adapters::AdapterError> {
    let t = a.from_mimi(ctx, sender, msg)?;
    Ok((t.items.iter().map(|n| a.serialize(n)).collect(), t.lost))
}
