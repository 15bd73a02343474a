//! Health and the committer thread: group commit of every shard's step in one transaction.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender};
use std::time::{Duration, Instant};

use mimi_engine::store::{CommitReport, Store, StoreError, Write, WriteBatch};
use tokio::sync::Notify;

/// How long readiness stays off after a failed storage commit, however many small commits
/// succeed meanwhile: on a nearly full disk a delivery acknowledgement may fit where a message
/// does not, and readiness must not flap with each.
pub(crate) const STORAGE_FAILURE_HOLD: Duration = Duration::from_secs(5);

/// Whether the engine can take requests: storage commits succeed and no shard died.
#[derive(Debug)]
pub struct Health {
    storage_failing: AtomicBool,
    failed_commits: AtomicU64,
    /// Milliseconds after `epoch` of the last failed commit.
    failed_at_ms: AtomicU64,
    epoch: Instant,
    fatal: AtomicBool,
    fatal_notify: Notify,
}

impl Default for Health {
    fn default() -> Self {
        Self {
            storage_failing: AtomicBool::new(false),
            failed_commits: AtomicU64::new(0),
            failed_at_ms: AtomicU64::new(0),
            epoch: Instant::now(),
            fatal: AtomicBool::new(false),
            fatal_notify: Notify::new(),
        }
    }
}

impl Health {
    /// Ready to serve.
    pub fn ok(&self) -> bool {
        !self.storage_failing() && !self.fatal.load(Ordering::Acquire)
    }

    /// Why not ready, if not.
    pub fn problem(&self) -> Option<&'static str> {
        if self.fatal.load(Ordering::Acquire) {
            Some("an engine shard stopped unexpectedly")
        } else if self.storage_failing() {
            Some("storage commits are failing")
        } else {
            None
        }
    }

    /// Commits that failed since start.
    pub fn failed_commits(&self) -> u64 {
        self.failed_commits.load(Ordering::Relaxed)
    }

    /// Resolves once a shard died.
    pub async fn fatal(&self) {
        loop {
            let n = self.fatal_notify.notified();
            if self.fatal.load(Ordering::Acquire) {
                return;
            }
            n.await;
        }
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// A storage commit failed: not ready for at least [`STORAGE_FAILURE_HOLD`].
    pub(super) fn commit_failed(&self) {
        self.failed_at_ms.store(self.now_ms(), Ordering::Release);
        self.storage_failing.store(true, Ordering::Release);
        self.failed_commits.fetch_add(1, Ordering::Relaxed);
    }

    /// Whether a storage commit failed within the last [`STORAGE_FAILURE_HOLD`]. After the
    /// hold the gateway reports ready again even with no commit since (an idle gateway taken
    /// out of a load balancer would otherwise never come back); if storage still fails, the
    /// next commit fails and the hold starts again.
    fn storage_failing(&self) -> bool {
        self.storage_failing.load(Ordering::Acquire)
            && self
                .now_ms()
                .saturating_sub(self.failed_at_ms.load(Ordering::Acquire))
                < STORAGE_FAILURE_HOLD.as_millis() as u64
    }

    pub(super) fn set_fatal(&self) {
        self.fatal.store(true, Ordering::Release);
        self.fatal_notify.notify_waiters();
    }
}

pub(super) type CommitReply = SyncSender<Result<CommitReport, StoreError>>;

/// The handle shards and the shell use to commit batches through the committer.
#[derive(Clone, Debug)]
pub struct Committer {
    tx: SyncSender<(WriteBatch, CommitReply)>,
}

impl Committer {
    pub(super) fn new(tx: SyncSender<(WriteBatch, CommitReply)>) -> Self {
        Self { tx }
    }

    /// Commits one batch (group-committed with whatever else waits). Blocking.
    ///
    /// # Errors
    /// The store's.
    pub fn commit(&self, batch: WriteBatch) -> Result<CommitReport, StoreError> {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        self.tx
            .send((batch, tx))
            .map_err(|_| StoreError::Backend("the committer stopped".into()))?;
        rx.recv()
            .map_err(|_| StoreError::Backend("the committer stopped".into()))?
    }

    /// Commits from async code.
    ///
    /// # Errors
    /// The store's.
    pub async fn commit_async(&self, batch: WriteBatch) -> Result<CommitReport, StoreError> {
        let c = self.clone();
        tokio::task::spawn_blocking(move || c.commit(batch))
            .await
            .map_err(|e| StoreError::Backend(e.to_string()))?
    }
}

/// The leases the batches depend on, sorted by room.
fn fences_of(jobs: &[(WriteBatch, CommitReply)]) -> Vec<(&str, u64)> {
    let mut f: Vec<(&str, u64)> = jobs
        .iter()
        .flat_map(|(b, _)| b.writes.iter())
        .filter_map(|w| match w {
            Write::Fence { room, token } => Some((room.as_str(), *token)),
            _ => None,
        })
        .collect();
    f.sort_unstable();
    f.dedup();
    f
}

/// Whether `b` is fenced by the lease of `room`.
fn fenced_by(b: &WriteBatch, room: &str) -> bool {
    b.writes
        .iter()
        .any(|w| matches!(w, Write::Fence { room: r, .. } if r == room))
}

pub(super) fn committer(
    store: Arc<dyn Store>,
    rx: Receiver<(WriteBatch, CommitReply)>,
    health: Arc<Health>,
) {
    while let Ok(first) = rx.recv() {
        let mut jobs = vec![first];
        while jobs.len() < 64 {
            match rx.try_recv() {
                Ok(j) => jobs.push(j),
                Err(_) => break,
            }
        }
        // A batch whose lease was lost fails alone: the others are committed without it.
        loop {
            let mut reports = vec![CommitReport::default(); jobs.len()];
            let r = store.transact(&mut |txn| {
                // Every lease this group commit depends on, locked in one order (the room's):
                // lease renewals lock in the same order, so the two never deadlock.
                for (room, token) in fences_of(&jobs) {
                    txn.check_fence(room, token)?;
                }
                // The shared rows (queue counters, body references) likewise, so that group
                // commits of several nodes touching the same clients never deadlock.
                let batches: Vec<&WriteBatch> = jobs.iter().map(|(b, _)| b).collect();
                for (table, keys) in mimi_engine::store::hot_rows(&batches) {
                    txn.lock_rows(table, &keys)?;
                }
                let mut delivered = std::collections::BTreeSet::new();
                for (i, (b, _)) in jobs.iter().enumerate() {
                    reports[i] = CommitReport::default();
                    mimi_engine::store::apply(txn, b, &mut reports[i])?;
                    delivered.extend(reports[i].delivered.iter().cloned());
                }
                if !delivered.is_empty() {
                    txn.notify(&delivered.into_iter().collect::<Vec<_>>())?;
                }
                Ok(())
            });
            if let Err(e @ StoreError::Fenced { room, .. }) = &r {
                let (lost, rest): (Vec<_>, Vec<_>) =
                    jobs.into_iter().partition(|(b, _)| fenced_by(b, room));
                if !lost.is_empty() {
                    tracing::warn!(%room, batches = lost.len(), "a step of a slot whose lease was lost is refused");
                    for (_, reply) in lost {
                        let _ = reply.send(Err(e.clone()));
                    }
                    jobs = rest;
                    if jobs.is_empty() {
                        break;
                    }
                    continue;
                }
                jobs = rest;
            }
            if let Err(e) = &r
                && !matches!(e, StoreError::Fenced { .. })
            {
                health.commit_failed();
                tracing::error!(error = %e, batches = jobs.len(), "storage commit failed; nothing of these steps leaves");
            }
            for ((_, reply), report) in jobs.into_iter().zip(reports) {
                let _ = reply.send(r.clone().map(|()| report));
            }
            break;
        }
    }
}
