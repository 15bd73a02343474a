//! The durable outboxes: one ordered queue per (follower, room), its entries rows of the store
//! that reference bodies stored once. Each queue has at most one `/notify` in flight (so a
//! room's events arrive in hub order), rooms of one follower in parallel up to a cap; a batch
//! carries up to `notify_batch_messages` FanoutMessages of its room.
//!
//! Faults cost only the follower that causes them:
//! - a follower that refuses an entry for good (4xx other than 408/429) gets it dead-lettered
//!   (kept, counted, listed by the admin tools) and its queue moves on;
//! - a follower that is down only grows its own queues, which are capped in bytes per
//!   follower: past the cap, new events for it are dropped and it is marked out of sync (its
//!   users resync by external join), never blocking the room or anyone else;
//! - retries back off exponentially, honouring Retry-After.

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use mimi_proto::directory::Endpoint;
use mimi_proto::uri::{Domain, RoomUri};
use openmls_traits::crypto::OpenMlsCrypto;

use crate::store::rows::{self, FollowerRow, OutboxMetaRow, OutboxRow};
use crate::store::{StoreError, Table, Write, keys};
use crate::{Engine, Pending, Reply, SendError};

/// Per follower: bytes queued by each shard, and since when it is out of sync.
#[derive(Debug, Default)]
pub struct FollowerBudget {
    /// (follower, shard) → bytes queued.
    pub(crate) bytes: BTreeMap<(String, u16), u64>,
    /// follower → out of sync since (ms).
    pub(crate) out_of_sync: BTreeMap<String, u64>,
}

impl FollowerBudget {
    fn total(&self, follower: &str) -> u64 {
        self.bytes
            .range((follower.to_owned(), 0)..=(follower.to_owned(), u16::MAX))
            .map(|(_, b)| *b)
            .sum()
    }
}

#[derive(Debug, Default)]
struct Queue {
    last_seq: u64,
    count: u64,
    bytes: u64,
    in_flight: Option<(Vec<u64>, u64)>,
    attempts: u32,
    not_before_ms: u64,
}

/// This shard's outboxes.
#[derive(Debug, Default)]
pub(crate) struct Outboxes {
    queues: BTreeMap<(Domain, RoomUri), Queue>,
    /// `/notify` requests in flight per follower.
    in_flight: BTreeMap<Domain, usize>,
}

impl Outboxes {
    pub(crate) fn depths(&self) -> BTreeMap<String, (u64, u64)> {
        let mut out: BTreeMap<String, (u64, u64)> = BTreeMap::new();
        for ((f, _), q) in &self.queues {
            let e = out.entry(f.to_string()).or_default();
            e.0 += q.count;
            e.1 += q.bytes;
        }
        out
    }

    pub(crate) fn next_wakeup(&self) -> Option<u64> {
        self.queues
            .values()
            .filter(|q| q.in_flight.is_none() && q.count > 0)
            .map(|q| q.not_before_ms)
            .min()
    }

    fn in_flight(&self, f: &Domain) -> usize {
        self.in_flight.get(f).copied().unwrap_or(0)
    }
}

impl<C: OpenMlsCrypto> Engine<C> {
    fn budget(&self) -> std::sync::MutexGuard<'_, FollowerBudget> {
        self.shared
            .budget
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Rebuilds this shard's queue bookkeeping from the store (start-up, after a failed
    /// commit): one row per non-empty queue.
    pub(crate) fn load_outboxes(&mut self) -> Result<(), StoreError> {
        let metas = self.store.scan(Table::OutboxMeta, b"", None, usize::MAX)?;
        let mut mine: BTreeMap<(Domain, RoomUri), Queue> = BTreeMap::new();
        for (k, v) in metas {
            let parts = keys::split_text(&k);
            let [f, room] = parts.as_slice() else {
                continue;
            };
            let (Ok(f), Ok(room)) = (Domain::parse(f), room.parse::<RoomUri>()) else {
                continue;
            };
            if crate::room_shard(&room, self.shards) != self.shard {
                continue;
            }
            let m: OutboxMetaRow = rows::decode(Table::OutboxMeta, &v)?;
            mine.insert(
                (f, room),
                Queue {
                    last_seq: m.last_seq,
                    count: m.count,
                    bytes: m.bytes,
                    ..Queue::default()
                },
            );
        }
        let followers = self.store.scan(Table::Followers, b"", None, usize::MAX)?;
        let shard = self.shard;
        let mut b = self.budget();
        b.bytes.retain(|(_, s), _| *s != shard);
        for ((f, _), q) in &mine {
            *b.bytes.entry((f.to_string(), shard)).or_default() += q.bytes;
        }
        for (k, v) in followers {
            let row: FollowerRow = rows::decode(Table::Followers, &v)?;
            if row.out_of_sync_since_ms > 0 {
                b.out_of_sync.insert(
                    String::from_utf8_lossy(&k).into_owned(),
                    row.out_of_sync_since_ms,
                );
            }
        }
        drop(b);
        self.outboxes.queues = mine;
        Ok(())
    }

    /// Queues one body for `follower` in `room`, or drops it when the follower is over its
    /// byte cap (marking it out of sync).
    pub(crate) fn outbox_push(
        &mut self,
        follower: &Domain,
        room: &RoomUri,
        id: [u8; 32],
        body: &Arc<[u8]>,
    ) {
        let len = body.len() as u64;
        let cap = self.cfg.limits.outbox_bytes_per_follower;
        let (shard, now) = (self.shard, self.now_ms);
        let over = {
            let mut b = self.budget();
            if b.total(follower.as_str()) + len > cap {
                let newly = !b.out_of_sync.contains_key(follower.as_str());
                b.out_of_sync.entry(follower.to_string()).or_insert(now);
                Some(newly)
            } else {
                *b.bytes.entry((follower.to_string(), shard)).or_default() += len;
                None
            }
        };
        if let Some(newly) = over {
            self.stats.outbox_dropped += 1;
            if newly {
                self.writes.put(
                    Table::Followers,
                    follower.as_str().as_bytes().to_vec(),
                    &FollowerRow {
                        out_of_sync_since_ms: now,
                        ..FollowerRow::default()
                    },
                );
            }
            return;
        }
        let q = self
            .outboxes
            .queues
            .entry((follower.clone(), room.clone()))
            .or_default();
        q.last_seq += 1;
        q.count += 1;
        q.bytes += len;
        let seq = q.last_seq;
        self.writes.push(Write::OutboxPush {
            follower: follower.to_string(),
            room: room.to_string(),
            seq,
            row: OutboxRow {
                body: id,
                bytes: len as u32,
            },
            body: Arc::clone(body),
        });
    }

    /// Starts a `/notify` for every queue that has entries, nothing in flight and no backoff
    /// pending, within each follower's parallelism cap. Reads committed entries only.
    pub(crate) fn pump_outboxes(&mut self) {
        let now = self.now_ms;
        let max_n = self.cfg.limits.notify_batch_messages.max(1);
        let max_bytes = self.cfg.limits.notify_batch_bytes;
        let parallel = self.cfg.limits.notify_parallel_per_follower.max(1);
        let ready: Vec<(Domain, RoomUri)> = self
            .outboxes
            .queues
            .iter()
            .filter(|(_, q)| q.count > 0 && q.in_flight.is_none() && q.not_before_ms <= now)
            .map(|(k, _)| k.clone())
            .collect();
        for (f, room) in ready {
            if self.outboxes.in_flight(&f) >= parallel {
                continue;
            }
            let prefix = keys::prefix(&[f.as_str().as_bytes(), room.as_str().as_bytes()]);
            let entries = match self.store.scan(Table::Outbox, &prefix, None, max_n) {
                Ok(e) => e,
                Err(e) => return self.store_failed(None, e),
            };
            let mut seqs = Vec::new();
            let mut body = Vec::new();
            let mut bytes = 0;
            for (k, v) in entries {
                let (Some(seq), Ok(row)) = (
                    keys::seq_of(&k),
                    rows::decode::<OutboxRow>(Table::Outbox, &v),
                ) else {
                    continue;
                };
                if !seqs.is_empty() && body.len() + row.bytes as usize > max_bytes {
                    break;
                }
                match self.store.get(Table::Bodies, &row.body) {
                    Ok(Some(b)) => body.extend_from_slice(&b),
                    Ok(None) => continue,
                    Err(e) => return self.store_failed(None, e),
                }
                bytes += u64::from(row.bytes);
                seqs.push(seq);
            }
            let Some(q) = self.outboxes.queues.get_mut(&(f.clone(), room.clone())) else {
                continue;
            };
            if seqs.is_empty() {
                // The meta says non-empty but no entry is left: resynchronize.
                q.count = 0;
                q.bytes = 0;
                continue;
            }
            q.in_flight = Some((seqs.clone(), bytes));
            *self.outboxes.in_flight.entry(f.clone()).or_default() += 1;
            let why = Pending::Notify {
                follower: f.clone(),
                room: room.clone(),
                seqs,
            };
            self.send(&f, Endpoint::Notify, room.as_str(), Bytes::from(body), why);
        }
    }

    pub(crate) fn notify_reply(
        &mut self,
        follower: &Domain,
        room: &RoomUri,
        seqs: &[u64],
        result: Result<Reply, SendError>,
    ) {
        let now = self.now_ms;
        let (base, max) = (
            self.cfg.limits.backoff_base_ms,
            self.cfg.limits.backoff_max_ms,
        );
        let cap = self.cfg.limits.outbox_bytes_per_follower;
        let shard = self.shard;
        let Some(q) = self
            .outboxes
            .queues
            .get_mut(&(follower.clone(), room.clone()))
        else {
            return;
        };
        let sent_bytes = q.in_flight.take().map_or(0, |(_, b)| b);
        if let Some(n) = self.outboxes.in_flight.get_mut(follower) {
            *n = n.saturating_sub(1);
        }
        let Some(q) = self
            .outboxes
            .queues
            .get_mut(&(follower.clone(), room.clone()))
        else {
            return;
        };
        let permanent = |s: u16| (400..500).contains(&s) && s != 408 && s != 429;
        match result {
            Ok(r) if r.status == 201 || permanent(r.status) => {
                q.count = q.count.saturating_sub(seqs.len() as u64);
                q.bytes = q.bytes.saturating_sub(sent_bytes);
                q.attempts = 0;
                q.not_before_ms = 0;
                if q.count == 0 {
                    self.outboxes
                        .queues
                        .remove(&(follower.clone(), room.clone()));
                }
                let clear = {
                    let mut b = self.budget();
                    let e = b.bytes.entry((follower.to_string(), shard)).or_default();
                    *e = e.saturating_sub(sent_bytes);
                    r.status == 201
                        && b.total(follower.as_str()) < cap / 2
                        && b.out_of_sync.remove(follower.as_str()).is_some()
                };
                if clear {
                    self.writes
                        .delete(Table::Followers, follower.as_str().as_bytes().to_vec());
                }
                if r.status == 201 {
                    self.writes.push(Write::OutboxPop {
                        follower: follower.to_string(),
                        room: room.to_string(),
                        seqs: seqs.to_vec(),
                    });
                } else {
                    // Refused for good: keep it aside and move on (it must not block the room).
                    self.stats.dead_letters += seqs.len() as u64;
                    let mut reason = String::from_utf8_lossy(&r.body).trim().to_owned();
                    reason.truncate(300);
                    self.writes.push(Write::DeadLetter {
                        follower: follower.to_string(),
                        room: room.to_string(),
                        seqs: seqs.to_vec(),
                        status: r.status,
                        reason,
                        at_ms: now,
                    });
                }
            }
            Ok(r) => {
                q.attempts = q.attempts.saturating_add(1);
                let backoff = base.saturating_mul(1 << q.attempts.min(16)).min(max);
                q.not_before_ms = now + r.retry_after_ms.unwrap_or(backoff).max(backoff.min(base));
            }
            Err(_) => {
                q.attempts = q.attempts.saturating_add(1);
                q.not_before_ms = now + base.saturating_mul(1 << q.attempts.min(16)).min(max);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use crate::testing::{Harness, room_with_remote_member, room_with_remote_member_limited, text};
    use crate::{Limits, Output, Reply, SendError};

    const ROOM: &str = "mimi://a.example/r/t";

    fn notifies(h: &Harness) -> Vec<(u64, String)> {
        h.sent
            .iter()
            .filter(|(_, (_, e, _, _))| *e == mimi_proto::directory::Endpoint::Notify)
            .map(|(id, (_, _, room, body))| (*id, format!("{room}:{}", body.len())))
            .collect()
    }

    #[test]
    fn a_refused_entry_is_dead_lettered_and_the_queue_moves_on() {
        let (mut h, mut alice, auth, _) = room_with_remote_member();
        assert_eq!(h.say(&mut alice, &auth, ROOM, "one").status, 200);
        let first = notifies(&h);
        assert_eq!(first.len(), 1, "one /notify in flight per room");
        // b.example refuses it for good.
        h.reply(
            first[0].0,
            Ok(Reply {
                status: 400,
                body: Bytes::from_static(b"not for us"),
                retry_after_ms: None,
            }),
        );
        assert_eq!(h.engine.stats().dead_letters, 1);
        let dl = h.store.table(crate::store::Table::DeadLetters);
        assert_eq!(dl.len(), 1, "kept aside, not lost");
        // The next message goes out: the room is not blocked.
        assert_eq!(h.say(&mut alice, &auth, ROOM, "two").status, 200);
        assert_eq!(notifies(&h).len(), 1);
        assert_eq!(h.drain_notifies(201), 1);
        assert!(h.engine.outbox_depths().values().all(|(n, _)| *n == 0));
    }

    #[test]
    fn the_operator_retries_or_drops_dead_letters() {
        use crate::{AdminCall, Auth, ClientCall};
        let (mut h, mut alice, auth, _) = room_with_remote_member();
        let refuse = |h: &mut Harness| {
            let n = notifies(h);
            h.reply(
                n[0].0,
                Ok(Reply {
                    status: 400,
                    body: Bytes::from_static(b"not now"),
                    retry_after_ms: None,
                }),
            );
        };
        assert_eq!(h.say(&mut alice, &auth, ROOM, "one").status, 200);
        refuse(&mut h);
        let dl = crate::store::Table::DeadLetters;
        assert_eq!(h.store.table(dl).len(), 1);
        let call = |follower: &str, retry: bool| {
            let (follower, room) = (follower.parse().unwrap(), ROOM.parse().unwrap());
            ClientCall::Admin(if retry {
                AdminCall::RetryDeadLetters { follower, room }
            } else {
                AdminCall::DropDeadLetters { follower, room }
            })
        };
        // Only the operator: a client is refused and nothing moves.
        let before = h.store.dump();
        assert_eq!(h.call(auth.clone(), call("b.example", true)).status, 403);
        assert_eq!(h.store.dump(), before);
        // Retried: back in the outbox, sent again, delivered this time.
        let r = h.call(Auth::Admin, call("b.example", true));
        assert_eq!(
            (r.status, text(&r).contains("1")),
            (200, true),
            "{}",
            text(&r)
        );
        assert!(h.store.table(dl).is_empty());
        assert_eq!(h.drain_notifies(201), 1, "the retried entry went out");
        // Dropped: gone, with its body.
        assert_eq!(h.say(&mut alice, &auth, ROOM, "two").status, 200);
        refuse(&mut h);
        assert_eq!(h.store.table(dl).len(), 1);
        assert_eq!(h.call(Auth::Admin, call("b.example", false)).status, 200);
        assert!(h.store.table(dl).is_empty());
        assert!(notifies(&h).is_empty(), "a dropped entry is not sent");
    }

    #[test]
    fn a_follower_over_its_byte_cap_is_marked_out_of_sync_and_never_blocks_the_room() {
        let (mut h, mut alice, auth, _) = room_with_remote_member_limited(Limits {
            outbox_bytes_per_follower: 2_000,
            ..Limits::default()
        });
        // b.example is down: every message queues until the cap, then is dropped for it.
        for i in 0..20 {
            let r = h.say(
                &mut alice,
                &auth,
                ROOM,
                &format!("message {i} {}", "x".repeat(100)),
            );
            assert_eq!(r.status, 200, "the room keeps accepting: {}", text(&r));
            for (id, _) in notifies(&h) {
                h.reply(id, Err(SendError("connection refused".into())));
            }
        }
        assert!(h.engine.stats().outbox_dropped > 0);
        let (_, bytes) = h.engine.outbox_depths()["b.example"];
        assert!(bytes <= 2_000, "{bytes} bytes queued");
        assert!(h.engine.shared.out_of_sync().contains_key("b.example"));
        // It comes back: the queue drains and the mark goes.
        h.now += 60_000;
        let _ = h.step(crate::Input::Tick);
        assert!(h.drain_notifies(201) > 0);
        assert!(!h.engine.shared.out_of_sync().contains_key("b.example"));
    }

    #[test]
    fn transient_failures_back_off_and_keep_order() {
        let (mut h, mut alice, auth, _) = room_with_remote_member();
        for t in ["a", "b", "c"] {
            assert_eq!(h.say(&mut alice, &auth, ROOM, t).status, 200);
        }
        let first = notifies(&h);
        assert_eq!(first.len(), 1);
        let out = h.reply(
            first[0].0,
            Ok(Reply {
                status: 503,
                body: Bytes::new(),
                retry_after_ms: Some(5_000),
            }),
        );
        assert!(
            !out.iter().any(|o| matches!(o, Output::Send { .. })),
            "no retry before Retry-After"
        );
        let wake = h.engine.poll_timeout().unwrap();
        assert!(wake >= h.now + 4_000);
        h.now = wake;
        let _ = h.step(crate::Input::Tick);
        assert_eq!(
            notifies(&h).len(),
            1,
            "the batch goes again, whole and in order"
        );
        assert_eq!(h.drain_notifies(201), 1);
    }
}
