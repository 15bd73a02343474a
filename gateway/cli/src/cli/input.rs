//! Reading command input: a file, or standard input for `-` or no argument, as binary or hex.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use anyhow::Context;

/// Reads `path` (or standard input for `None` / `-`).
pub(crate) fn read(path: Option<&Path>) -> anyhow::Result<Vec<u8>> {
    match path {
        None => read_stdin(),
        Some(p) if p == Path::new("-") => read_stdin(),
        Some(p) => std::fs::read(p).with_context(|| format!("cannot read {}", p.display())),
    }
}

fn read_stdin() -> anyhow::Result<Vec<u8>> {
    let mut buf = Vec::new();
    std::io::stdin()
        .read_to_end(&mut buf)
        .context("cannot read standard input")?;
    Ok(buf)
}

/// Reads input that is binary, or hex text when `hex` is set (whitespace ignored).
pub(crate) fn read_maybe_hex(
    path: Option<&PathBuf>,
    hex: bool,
) -> anyhow::Result<Result<Vec<u8>, String>> {
    let raw = read(path.map(PathBuf::as_path))?;
    if !hex {
        return Ok(Ok(raw));
    }
    let text: String = String::from_utf8_lossy(&raw)
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect();
    Ok(hex::decode(&text).map_err(|e| format!("input is not valid hex: {e}")))
}

/// Writes bytes to standard output, as lowercase hex plus newline when `hex` is set.
pub(crate) fn write_out(bytes: &[u8], hex: bool) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    if hex {
        writeln!(out, "{}", hex::encode(bytes))?;
    } else {
        out.write_all(bytes)?;
    }
    out.flush()?;
    Ok(())
}
