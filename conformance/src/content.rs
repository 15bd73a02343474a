//! `mimi-conformance content FILES...`: checks MIMI content encodings (any vendor's output)
//! against draft-ietf-mimi-content-08.

use std::path::Path;
use std::time::Instant;

use mimi_content::Message;

use crate::report::{Outcome, Status};

fn leak(s: String) -> &'static str {
    Box::leak(s.into_boxed_str())
}

/// Checks one encoding: strict decoding (deterministic CBOR, every limit), byte-exact
/// re-encoding, and the message ID recomputed from the bytes (compared with `FILE.id` when
/// that file exists).
pub fn check(path: &Path) -> Vec<Outcome> {
    let name = leak(path.display().to_string());
    let t = Instant::now();
    let mut out = Vec::new();
    let mut push = |id: &'static str, section: &'static str, r: Result<(), String>| {
        let (status, reason) = match r {
            Ok(()) => (Status::Pass, String::new()),
            Err(e) => (Status::Fail, e),
        };
        out.push(Outcome {
            id,
            section,
            required: true,
            status,
            reason,
            time: t.elapsed(),
        });
    };
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) => {
            push(leak(format!("{name}: read")), "-", Err(e.to_string()));
            return out;
        }
    };
    let msg = match Message::decode(bytes.clone()) {
        Ok(m) => {
            push(
                leak(format!("{name}: strict decode")),
                "content §4 (deterministic CBOR, limits)",
                Ok(()),
            );
            m
        }
        Err(e) => {
            push(
                leak(format!("{name}: strict decode")),
                "content §4 (deterministic CBOR, limits)",
                Err(e.to_string()),
            );
            return out;
        }
    };
    let re = Message::encode(msg.content().clone()).map(|m| m.bytes().to_vec());
    push(
        leak(format!("{name}: re-encoding")),
        "content §4 (one encoding per value)",
        match re {
            Ok(r) if r == bytes => Ok(()),
            Ok(r) => Err(format!(
                "re-encoding gives {} bytes that differ from the {} received",
                r.len(),
                bytes.len()
            )),
            Err(e) => Err(e.to_string()),
        },
    );
    let id = msg.id();
    let id_file = path.with_extension(format!(
        "{}.id",
        path.extension().and_then(|e| e.to_str()).unwrap_or("")
    ));
    let want = std::fs::read_to_string(&id_file)
        .ok()
        .or_else(|| std::fs::read_to_string(path.with_extension("id")).ok());
    push(
        leak(format!("{name}: message ID")),
        "content §5 (message ID)",
        match (id, want) {
            (Ok(id), Some(w)) if id.to_hex() == w.trim().to_lowercase() => Ok(()),
            (Ok(id), Some(w)) => Err(format!("computed {id}, the file says {}", w.trim())),
            (Ok(_), None) => Ok(()),
            (Err(e), _) => Err(e.to_string()),
        },
    );
    out
}
