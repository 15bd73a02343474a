//! The durable outbox of each follower: FanoutMessages in hub order, sent as `/notify` batches
//! (consecutive messages of one room per body), one request in flight per follower, exponential
//! backoff honouring Retry-After, resumed after restart from the stored entries.

use std::collections::BTreeMap;

use mimi_proto::directory::Endpoint;

use crate::state::{OutboxEntry, OutboxMeta, WriteBatch, decode, keys};
use crate::{Engine, Pending, Reply};

#[derive(Debug, Default)]
pub(crate) struct Queue {
    meta: OutboxMeta,
    entries: BTreeMap<u64, OutboxEntry>,
    in_flight: bool,
    attempts: u32,
    not_before_ms: u64,
}

/// All outboxes, by follower domain.
#[derive(Debug, Default)]
pub(crate) struct Outboxes {
    queues: BTreeMap<String, Queue>,
}

impl Outboxes {
    pub(crate) fn restore(&mut self, key: &str, v: &[u8]) -> bool {
        if let Some(domain) = key.strip_prefix(keys::OUTBOX_META) {
            let Some(m) = decode(v) else { return false };
            self.queues.entry(domain.to_owned()).or_default().meta = m;
        } else if let Some(rest) = key.strip_prefix(keys::OUTBOX) {
            let Some((domain, seq)) = rest.rsplit_once('/') else {
                return false;
            };
            let (Ok(seq), Some(e)) = (seq.parse::<u64>(), decode(v)) else {
                return false;
            };
            self.queues
                .entry(domain.to_owned())
                .or_default()
                .entries
                .insert(seq, e);
        }
        true
    }

    pub(crate) fn depths(&self) -> BTreeMap<String, usize> {
        self.queues
            .iter()
            .map(|(d, q)| (d.clone(), q.entries.len()))
            .collect()
    }

    pub(crate) fn depth(&self, domain: &str) -> usize {
        self.queues.get(domain).map_or(0, |q| q.entries.len())
    }

    /// Appends one FanoutMessage for `domain`.
    pub(crate) fn push(&mut self, domain: &str, room: &str, body: &[u8], writes: &mut WriteBatch) {
        let q = self.queues.entry(domain.to_owned()).or_default();
        q.meta.next_seq += 1;
        let seq = q.meta.next_seq;
        let e = OutboxEntry {
            room: room.to_owned(),
            body: hex::encode(body),
        };
        writes.put(format!("{}{domain}/{}", keys::OUTBOX, keys::seq(seq)), &e);
        writes.put(format!("{}{domain}", keys::OUTBOX_META), &q.meta);
        q.entries.insert(seq, e);
    }

    pub(crate) fn next_wakeup(&self) -> Option<u64> {
        self.queues
            .values()
            .filter(|q| !q.in_flight && !q.entries.is_empty())
            .map(|q| q.not_before_ms)
            .min()
    }
}

impl Engine {
    /// Starts a `/notify` for every follower that has entries, nothing in flight and no backoff
    /// pending.
    pub(crate) fn pump_outboxes(&mut self) {
        let now = self.now_ms;
        let max_n = self.cfg.limits.notify_batch_messages.max(1);
        let max_bytes = self.cfg.limits.notify_batch_bytes;
        let mut sends = Vec::new();
        for (domain, q) in &mut self.outboxes.queues {
            if q.in_flight || q.entries.is_empty() || q.not_before_ms > now {
                continue;
            }
            let mut seqs = Vec::new();
            let mut body = Vec::new();
            let mut room = None;
            for (seq, e) in &q.entries {
                let bytes = hex::decode(&e.body).unwrap_or_default();
                if room.as_ref().is_some_and(|r: &String| *r != e.room)
                    || seqs.len() >= max_n
                    || (!seqs.is_empty() && body.len() + bytes.len() > max_bytes)
                {
                    break;
                }
                room.get_or_insert_with(|| e.room.clone());
                body.extend_from_slice(&bytes);
                seqs.push(*seq);
            }
            q.in_flight = true;
            sends.push((domain.clone(), room.unwrap_or_default(), body, seqs));
        }
        for (domain, room, body, seqs) in sends {
            let why = Pending::Notify {
                follower: domain.clone(),
                seqs,
            };
            self.send(&domain, Endpoint::Notify, &room, body, why);
        }
    }

    pub(crate) fn notify_reply(
        &mut self,
        follower: &str,
        seqs: &[u64],
        result: Result<Reply, String>,
    ) {
        let now = self.now_ms;
        let (base, max) = (
            self.cfg.limits.backoff_base_ms,
            self.cfg.limits.backoff_max_ms,
        );
        let Some(q) = self.outboxes.queues.get_mut(follower) else {
            return;
        };
        q.in_flight = false;
        match result {
            Ok(r) if r.status == 201 => {
                for s in seqs {
                    q.entries.remove(s);
                    self.writes
                        .delete(format!("{}{follower}/{}", keys::OUTBOX, keys::seq(*s)));
                }
                q.attempts = 0;
                q.not_before_ms = 0;
            }
            Ok(r) if (400..500).contains(&r.status) && r.status != 408 && r.status != 429 => {
                // The follower refuses these messages for good (e.g. it rejects the room): retrying
                // cannot help, and it must not block the messages behind them. Keep a slow retry
                // anyway: a misconfigured follower may be fixed.
                q.attempts = q.attempts.saturating_add(1);
                q.not_before_ms = now + max;
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
