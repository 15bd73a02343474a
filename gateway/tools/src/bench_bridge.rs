//! `mimi bench state`, the bridge part: what a bridged message costs as the bridge's ID map
//! grows. A Matrix bridge's rows live in a redb store as the gateway keeps them
//! (`mimi_bridges::db` over the store's bridge table); the map is filled with `small` or
//! `large` translated messages, then each sample is a Matrix reply to a random earlier message,
//! translated by the Matrix adapter (the reply target resolved through the map) and its map
//! rows committed in their own transaction, as the bridge does per event.

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context as _;
use mimi_adapters::matrix::Matrix;
use mimi_adapters::{Adapter as _, Context, IdMap, UriScheme};
use mimi_bridges::db::Db;
use mimi_gateway::bridge_io::StoreForBridges;
use serde_json::{Value, json};

use crate::bench_state::Growth;

const ROOM: &str = "mimi://a.example/r/bridged";
const NATIVE_ROOM: &str = "!bench:hs.example";
const SENDER: &str = "mimi://a.example/u/m_alice_hs.example";
/// A fixed clock: nothing expires during the run.
const NOW_S: u64 = 1_800_000_000;

fn event(i: u64, reply_to: Option<u64>) -> Value {
    let mut content = json!({"msgtype": "m.text", "body": format!("message {i}")});
    if let Some(t) = reply_to {
        content["m.relates_to"] = json!({"m.in_reply_to": {"event_id": format!("$e{t}")}});
    }
    json!({
        "type": "m.room.message",
        "event_id": format!("$e{i}"),
        "sender": "@alice:hs.example",
        "room_id": NATIVE_ROOM,
        "origin_server_ts": 1_800_000_000_000u64 + i,
        "content": content,
    })
}

struct Bridge {
    db: Db,
    adapter: Matrix,
    uris: UriScheme,
    salt: u64,
}

impl Bridge {
    /// Translates `events` into one ID map over the committed rows; returns the row changes'
    /// bytes after committing them in one transaction.
    fn translate(&mut self, events: &[Value], check_reply: bool) -> anyhow::Result<usize> {
        let mut ids = IdMap::over(self.db.id_rows(), NOW_S);
        for ev in events {
            let mut salt = || {
                self.salt += 1;
                let mut s = [0u8; 16];
                s[..8].copy_from_slice(&self.salt.to_be_bytes());
                s
            };
            let mut ctx = Context {
                room: ROOM,
                native_room: NATIVE_ROOM,
                ids: &mut ids,
                uris: &self.uris,
                salt: &mut salt,
                media: None,
            };
            let t = self.adapter.to_mimi(&mut ctx, SENDER, ev)?;
            if check_reply {
                let m = t.items.first().context("a reply translated to nothing")?;
                anyhow::ensure!(
                    m.content().in_reply_to.is_some(),
                    "the reply target was not found in the ID map"
                );
            }
        }
        if let Some(e) = ids.take_failure() {
            anyhow::bail!("{e}");
        }
        let changes = self.db.id_changes(ids.take_changes());
        let bytes = changes
            .iter()
            .map(|(k, v)| k.len() + v.as_ref().map_or(0, Vec::len))
            .sum();
        self.db.apply(&changes)?;
        Ok(bytes)
    }
}

/// Time (µs) and ID map bytes per bridged reply after `mapped` messages, over `samples`
/// replies; and the store's size per mapped message.
fn per_message(dir: &Path, mapped: u64, samples: u64) -> anyhow::Result<(f64, f64, f64)> {
    let path = dir.join(format!("bridge-{mapped}.redb"));
    let _ = std::fs::remove_file(&path);
    let store: Arc<dyn mimi_engine::store::Store> =
        Arc::new(mimi_gateway::store::RedbStore::open(&path)?);
    let mut b = Bridge {
        db: Db::new(Arc::new(StoreForBridges(store)), "matrix"),
        adapter: Matrix::new("hs.example"),
        uris: UriScheme::new("a.example"),
        salt: 0,
    };
    let mut i = 0;
    while i < mapped {
        let end = (i + 1000).min(mapped);
        let events: Vec<Value> = (i..end).map(|n| event(n, None)).collect();
        b.translate(&events, false)?;
        i = end;
    }
    let size = std::fs::metadata(&path)?.len() as f64 / mapped.max(1) as f64;
    // A fixed pseudo-random sequence of reply targets.
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let (mut bytes, t) = (0, Instant::now());
    for s in 0..samples {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        bytes += b.translate(&[event(mapped + s, Some(x % mapped.max(1)))], true)?;
    }
    let us = t.elapsed().as_secs_f64() * 1e6 / samples as f64;
    Ok((us, bytes as f64 / samples as f64, size))
}

/// The bridge figures with `small` and `large` mapped messages.
///
/// # Errors
/// Storage or translation failures.
pub fn bridge(dir: &Path, small: u64, large: u64) -> anyhow::Result<Vec<Growth>> {
    std::fs::create_dir_all(dir)?;
    let samples = 1000;
    let (t0, b0, d0) = per_message(dir, small, samples)?;
    let (t1, b1, d1) = per_message(dir, large, samples)?;
    Ok(vec![
        Growth::new("bridge_reply_time", "us", (small, t0), (large, t1)),
        Growth::new("bridge_reply_bytes", "bytes", (small, b0), (large, b1)),
        Growth::new("bridge_disk_per_mapped", "bytes", (small, d0), (large, d1)),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reply_resolves_its_target_through_the_committed_map() {
        let dir = std::env::temp_dir().join(format!("mimi-bench-bridge-{}", std::process::id()));
        let g = bridge(&dir, 20, 200).expect("bridge bench");
        let _ = std::fs::remove_dir_all(&dir);
        assert_eq!(g.len(), 3);
        let bytes = &g[1];
        assert!(bytes.at_small > 0.0 && bytes.at_large > 0.0, "{bytes:?}");
    }
}
