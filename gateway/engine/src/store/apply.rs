//! The meaning of the typed writes, written once for every backend: queue sequence numbers
//! and caps, body reference counts, dead letters.

use std::collections::BTreeSet;

use mimi_proto::client_api::{Delivery, DeliveryKind, EventsPage, Hex};

use super::rows::{self, DeadLetterRow, DeliveryRow, FollowerRow, OutboxMetaRow, QueueMeta};
use super::{BodyId, QueueCap, Store, StoreError, Table, Txn, Write, WriteBatch, keys};

/// What a commit tells the shell.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CommitReport {
    /// Clients with new deliveries (to wake their long-polls and streams).
    pub delivered: BTreeSet<String>,
    /// Per acknowledging client: deliveries dropped.
    pub acked: Vec<(String, usize)>,
}

fn get_row<T: for<'de> serde::Deserialize<'de>>(
    txn: &mut dyn Txn,
    table: Table,
    key: &[u8],
) -> Result<Option<T>, StoreError> {
    txn.get_for_update(table, key)?
        .map(|b| rows::decode(table, &b))
        .transpose()
}

fn ref_body(txn: &mut dyn Txn, id: &BodyId, bytes: &[u8]) -> Result<(), StoreError> {
    let n = txn
        .get_for_update(Table::BodyRefs, id)?
        .map_or(0, |b| u32::from_be_bytes(b.try_into().unwrap_or_default()));
    if n == 0 {
        txn.put(Table::Bodies, id, bytes)?;
    }
    txn.put(Table::BodyRefs, id, &(n + 1).to_be_bytes())
}

fn unref_body(txn: &mut dyn Txn, id: &BodyId) -> Result<(), StoreError> {
    let n = txn
        .get_for_update(Table::BodyRefs, id)?
        .map_or(0, |b| u32::from_be_bytes(b.try_into().unwrap_or_default()));
    if n <= 1 {
        txn.delete(Table::Bodies, id)?;
        txn.delete(Table::BodyRefs, id)
    } else {
        txn.put(Table::BodyRefs, id, &(n - 1).to_be_bytes())
    }
}

fn deliver(
    txn: &mut dyn Txn,
    client: &str,
    row: &DeliveryRow,
    body: &[u8],
    cap: QueueCap,
) -> Result<(), StoreError> {
    let mk = client.as_bytes();
    let mut meta: QueueMeta = get_row(txn, Table::DeliveryMeta, mk)?.unwrap_or_default();
    meta.last_seq += 1;
    let seq = meta.last_seq.max(meta.acked + 1);
    meta.last_seq = seq;
    ref_body(txn, &row.body, body)?;
    txn.put(
        Table::Deliveries,
        &keys::with_seq(&[mk], seq),
        &rows::encode(row),
    )?;
    meta.count += 1;
    meta.bytes += u64::from(row.bytes);
    let prefix = keys::prefix(&[mk]);
    while meta.count > cap.count.max(1) || (meta.bytes > cap.bytes && meta.count > 1) {
        let Some((k, v)) = txn.scan(Table::Deliveries, &prefix, None, 1)?.pop() else {
            break;
        };
        let old: DeliveryRow = rows::decode(Table::Deliveries, &v)?;
        txn.delete(Table::Deliveries, &k)?;
        unref_body(txn, &old.body)?;
        meta.count -= 1;
        meta.bytes = meta.bytes.saturating_sub(u64::from(old.bytes));
        meta.gap = true;
    }
    txn.put(Table::DeliveryMeta, mk, &rows::encode(&meta))
}

fn ack(txn: &mut dyn Txn, client: &str, upto: u64) -> Result<usize, StoreError> {
    let mk = client.as_bytes();
    let mut meta: QueueMeta = get_row(txn, Table::DeliveryMeta, mk)?.unwrap_or_default();
    let prefix = keys::prefix(&[mk]);
    let mut dropped = 0;
    'chunks: loop {
        let chunk = txn.scan(Table::Deliveries, &prefix, None, 256)?;
        if chunk.is_empty() {
            break;
        }
        for (k, v) in chunk {
            if keys::seq_of(&k).is_none_or(|s| s > upto) {
                break 'chunks;
            }
            let old: DeliveryRow = rows::decode(Table::Deliveries, &v)?;
            txn.delete(Table::Deliveries, &k)?;
            unref_body(txn, &old.body)?;
            meta.count = meta.count.saturating_sub(1);
            meta.bytes = meta.bytes.saturating_sub(u64::from(old.bytes));
            dropped += 1;
        }
    }
    meta.acked = meta.acked.max(upto.min(meta.last_seq));
    meta.gap = false;
    txn.put(Table::DeliveryMeta, mk, &rows::encode(&meta))?;
    Ok(dropped)
}

fn outbox_meta(
    txn: &mut dyn Txn,
    follower: &str,
    room: &str,
) -> Result<(Vec<u8>, OutboxMetaRow), StoreError> {
    let k = keys::join(&[follower.as_bytes(), room.as_bytes()]);
    let m = get_row(txn, Table::OutboxMeta, &k)?.unwrap_or_default();
    Ok((k, m))
}

fn save_outbox_meta(txn: &mut dyn Txn, k: &[u8], m: &OutboxMetaRow) -> Result<(), StoreError> {
    if m.count == 0 {
        txn.delete(Table::OutboxMeta, k)
    } else {
        txn.put(Table::OutboxMeta, k, &rows::encode(m))
    }
}

/// Removes outbox entries; returns the rows removed (their body references still held).
fn take_outbox(
    txn: &mut dyn Txn,
    follower: &str,
    room: &str,
    seqs: &[u64],
) -> Result<Vec<rows::OutboxRow>, StoreError> {
    let (mk, mut meta) = outbox_meta(txn, follower, room)?;
    let mut out = Vec::new();
    for s in seqs {
        let k = keys::with_seq(&[follower.as_bytes(), room.as_bytes()], *s);
        if let Some(row) = get_row::<rows::OutboxRow>(txn, Table::Outbox, &k)? {
            txn.delete(Table::Outbox, &k)?;
            meta.count = meta.count.saturating_sub(1);
            meta.bytes = meta.bytes.saturating_sub(u64::from(row.bytes));
            out.push(row);
        }
    }
    save_outbox_meta(txn, &mk, &meta)?;
    Ok(out)
}

fn apply_one(txn: &mut dyn Txn, w: &Write, report: &mut CommitReport) -> Result<(), StoreError> {
    match w {
        Write::Put { table, key, value } => txn.put(*table, key, value),
        Write::Delete { table, key } => txn.delete(*table, key),
        Write::Deliver {
            client,
            row,
            body,
            cap,
        } => {
            deliver(txn, client, row, body, *cap)?;
            report.delivered.insert(client.clone());
            Ok(())
        }
        Write::Ack { client, upto } => {
            let n = ack(txn, client, *upto)?;
            report.acked.push((client.clone(), n));
            Ok(())
        }
        Write::OutboxPush {
            follower,
            room,
            seq,
            row,
            body,
        } => {
            let (mk, mut meta) = outbox_meta(txn, follower, room)?;
            ref_body(txn, &row.body, body)?;
            txn.put(
                Table::Outbox,
                &keys::with_seq(&[follower.as_bytes(), room.as_bytes()], *seq),
                &rows::encode(row),
            )?;
            meta.last_seq = meta.last_seq.max(*seq);
            meta.count += 1;
            meta.bytes += u64::from(row.bytes);
            save_outbox_meta(txn, &mk, &meta)
        }
        Write::OutboxPop {
            follower,
            room,
            seqs,
        } => {
            for row in take_outbox(txn, follower, room, seqs)? {
                unref_body(txn, &row.body)?;
            }
            Ok(())
        }
        Write::DeadLetter {
            follower,
            room,
            seqs,
            status,
            reason,
            at_ms,
        } => {
            let fk = follower.as_bytes();
            let mut f: FollowerRow = get_row(txn, Table::Followers, fk)?.unwrap_or_default();
            for row in take_outbox(txn, follower, room, seqs)? {
                f.last_dead_letter += 1;
                let dl = DeadLetterRow {
                    room: room.clone(),
                    body: row.body,
                    bytes: row.bytes,
                    status: *status,
                    reason: reason.clone(),
                    at_ms: *at_ms,
                };
                txn.put(
                    Table::DeadLetters,
                    &keys::with_seq(&[fk], f.last_dead_letter),
                    &rows::encode(&dl),
                )?;
            }
            txn.put(Table::Followers, fk, &rows::encode(&f))
        }
        Write::Unref { id } => unref_body(txn, id),
        Write::Fence { room, token } => txn.check_fence(room, *token),
    }
}

/// Applies one batch inside `txn`.
///
/// # Errors
/// The backend's, a corrupt row, or a stale fencing token.
pub fn apply(
    txn: &mut dyn Txn,
    batch: &WriteBatch,
    report: &mut CommitReport,
) -> Result<(), StoreError> {
    for w in &batch.writes {
        apply_one(txn, w, report)?;
    }
    Ok(())
}

/// A client's committed deliveries after `after` (at most `limit`), with the gap flag.
///
/// # Errors
/// Backend failures or corrupt rows.
pub fn events(
    store: &dyn Store,
    client: &str,
    after: u64,
    limit: usize,
) -> Result<EventsPage, StoreError> {
    let mk = client.as_bytes();
    let gap = store
        .get(Table::DeliveryMeta, mk)?
        .map(|b| rows::decode::<QueueMeta>(Table::DeliveryMeta, &b))
        .transpose()?
        .is_some_and(|m| m.gap);
    let after_key = keys::with_seq(&[mk], after);
    let found = store.scan(
        Table::Deliveries,
        &keys::prefix(&[mk]),
        Some(&after_key),
        limit.clamp(1, 1000),
    )?;
    let mut events = Vec::with_capacity(found.len());
    for (k, v) in found {
        let row: DeliveryRow = rows::decode(Table::Deliveries, &v)?;
        let body = store
            .get(Table::Bodies, &row.body)?
            .ok_or_else(|| StoreError::Corrupt {
                table: Table::Bodies.name(),
                detail: format!("missing body {}", hex::encode(row.body)),
            })?;
        events.push(Delivery {
            seq: keys::seq_of(&k).unwrap_or_default(),
            room: row.room,
            timestamp: row.timestamp,
            kind: DeliveryKind::from_value(row.kind).unwrap_or(DeliveryKind::Application),
            body: Hex(body),
        });
    }
    Ok(EventsPage {
        client: client.to_owned(),
        events,
        gap,
    })
}
