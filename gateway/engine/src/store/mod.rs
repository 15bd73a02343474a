//! The storage boundary: what the engine reads, the typed writes a step produces, and the
//! trait every storage backend implements.
//!
//! State lives in tables of binary rows keyed at the granularity of change (a client, one
//! delivery, one outbox entry, one openmls row of one room). The engine reads committed rows
//! through [`Store`] (synchronously: reads are local and fast, as openmls' own storage
//! provider is), keeps what it works on in bounded caches, and describes every change of a
//! step as a [`WriteBatch`]. The shell applies each batch atomically with [`apply`] inside
//! [`Store::transact`] **before** any output of that step leaves ("durable before visible").
//!
//! A backend implements only the primitives of [`Txn`] and [`Store`]; the meaning of the
//! typed writes (queue sequence numbers, body reference counts, queue caps) is written once,
//! in [`apply`], so every backend behaves the same. [`suite`] is the test suite every backend
//! must pass ([`MemStore`] here, redb and PostgreSQL in the gateway).

mod apply;
pub mod keys;
mod mem;
pub mod rows;
pub mod suite;

use std::collections::BTreeSet;
use std::sync::Arc;

pub use apply::{CommitReport, apply, events};
pub use mem::MemStore;

/// The tables. Keys are byte strings built with [`keys`]; values are [`rows`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum Table {
    /// `name` → bytes: schema version, the hub's keys.
    Meta,
    /// `client id` → [`rows::ClientRow`].
    Clients,
    /// token SHA-256 → client id.
    Tokens,
    /// `user name` → [`rows::UserRow`].
    Users,
    /// `user ‖ client id` → `()`: the clients of a user.
    UserClients,
    /// `client id ‖ KeyPackageRef` → [`rows::KeyPackageRow`].
    KeyPackages,
    /// KeyPackageRef → [`rows::KpOwnerRow`] (Welcome routing; kept until the KeyPackage expires).
    KpOwners,
    /// `target ‖ requester ‖ room or *` → [`rows::ConsentRow`].
    Consent,
    /// `room ‖ client id` → `()`: who receives a room's events here.
    RoomSubscribers,
    /// `client id ‖ room` → `()`: the rooms a client receives.
    ClientRooms,
    /// `client id ‖ seq` → [`rows::DeliveryRow`].
    Deliveries,
    /// `client id` → [`rows::QueueMeta`].
    DeliveryMeta,
    /// body id (SHA-256) → the bytes of a FanoutMessage (or ConsentEntry), stored once.
    Bodies,
    /// body id → reference count (queue entries pointing at it).
    BodyRefs,
    /// `room ‖ message hash` → arrival number (notify deduplication).
    NotifySeen,
    /// `room ‖ arrival number` → message hash.
    NotifyOrder,
    /// `room ‖ message hash` → the hub's answer: a submission retried with the same bytes
    /// (the answer was lost to a crash) is answered again, not fanned out twice. A window of
    /// the room's last `notify_dedup_window` submissions is kept.
    SubmitSeen,
    /// `room ‖ arrival number` → message hash (the window of [`Table::SubmitSeen`]).
    SubmitOrder,
    /// `room` → [`rows::HubRoomRow`].
    HubRooms,
    /// `room ‖ openmls row key` → openmls row (the hub's `PublicGroup`).
    HubMls,
    /// `room ‖ n` → [`rows::PendingRow`]: proposals accepted this epoch.
    HubPending,
    /// `room ‖ KeyPackageRef` → [`rows::KpRouteRow`]: which provider a KeyPackage came from.
    HubKpRoutes,
    /// `follower ‖ room ‖ seq` → [`rows::OutboxRow`].
    Outbox,
    /// `follower ‖ room` → [`rows::OutboxMetaRow`] (only while the queue is not empty).
    OutboxMeta,
    /// `follower` → [`rows::FollowerRow`] (out-of-sync mark, dead-letter counter).
    Followers,
    /// `follower ‖ n` → [`rows::DeadLetterRow`].
    DeadLetters,
    /// `room ‖ n` → [`rows::AbuseRow`].
    Abuse,
    /// `owner ‖ asset id` → [`rows::AssetRow`].
    Assets,
    /// Bridge state: `provider ‖ kind ‖ key` → bytes.
    Bridge,
}

impl Table {
    /// Every table, in a fixed order.
    pub const ALL: [Self; 29] = [
        Self::Meta,
        Self::Clients,
        Self::Tokens,
        Self::Users,
        Self::UserClients,
        Self::KeyPackages,
        Self::KpOwners,
        Self::Consent,
        Self::RoomSubscribers,
        Self::ClientRooms,
        Self::Deliveries,
        Self::DeliveryMeta,
        Self::Bodies,
        Self::BodyRefs,
        Self::NotifySeen,
        Self::NotifyOrder,
        Self::SubmitSeen,
        Self::SubmitOrder,
        Self::HubRooms,
        Self::HubMls,
        Self::HubPending,
        Self::HubKpRoutes,
        Self::Outbox,
        Self::OutboxMeta,
        Self::Followers,
        Self::DeadLetters,
        Self::Abuse,
        Self::Assets,
        Self::Bridge,
    ];

    /// A stable name (redb table names, PostgreSQL table names).
    pub fn name(self) -> &'static str {
        match self {
            Self::Meta => "meta",
            Self::Clients => "clients",
            Self::Tokens => "tokens",
            Self::Users => "users",
            Self::UserClients => "user_clients",
            Self::KeyPackages => "key_packages",
            Self::KpOwners => "kp_owners",
            Self::Consent => "consent",
            Self::RoomSubscribers => "room_subscribers",
            Self::ClientRooms => "client_rooms",
            Self::Deliveries => "deliveries",
            Self::DeliveryMeta => "delivery_meta",
            Self::Bodies => "bodies",
            Self::BodyRefs => "body_refs",
            Self::NotifySeen => "notify_seen",
            Self::NotifyOrder => "notify_order",
            Self::SubmitSeen => "submit_seen",
            Self::SubmitOrder => "submit_order",
            Self::HubRooms => "hub_rooms",
            Self::HubMls => "hub_mls",
            Self::HubPending => "hub_pending",
            Self::HubKpRoutes => "hub_kp_routes",
            Self::Outbox => "outbox",
            Self::OutboxMeta => "outbox_meta",
            Self::Followers => "followers",
            Self::DeadLetters => "dead_letters",
            Self::Abuse => "abuse",
            Self::Assets => "assets",
            Self::Bridge => "bridge",
        }
    }
}

/// A storage failure. The step whose commit failed has no effect: the shell drops its outputs
/// and the engine reloads what it caches from the store.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The backend failed (IO, disk full, connection lost).
    #[error("storage backend: {0}")]
    Backend(String),
    /// A row does not decode: the store is corrupt or from another version.
    #[error("corrupt {table} row: {detail}")]
    Corrupt {
        /// The table.
        table: &'static str,
        /// What failed.
        detail: String,
    },
    /// A write of a room this node no longer owns (cluster lease lost).
    #[error("the lease of {room} is held elsewhere (fencing token {token} is stale)")]
    Fenced {
        /// The room.
        room: String,
        /// The stale token.
        token: u64,
    },
}

/// A body's content address.
pub type BodyId = [u8; 32];

/// One typed write.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Write {
    /// Sets a row.
    Put {
        /// Table.
        table: Table,
        /// Key.
        key: Vec<u8>,
        /// Value.
        value: Vec<u8>,
    },
    /// Deletes a row (absent rows are fine).
    Delete {
        /// Table.
        table: Table,
        /// Key.
        key: Vec<u8>,
    },
    /// Appends to a local client's delivery queue; the store assigns the sequence number, so
    /// queues fed by several shards or nodes stay gap-free and ordered by commit. Past the
    /// queue's caps the oldest entries are dropped and the gap flag set.
    Deliver {
        /// Client id.
        client: String,
        /// The delivery.
        row: rows::DeliveryRow,
        /// The body (stored once, whoever references it).
        body: Arc<[u8]>,
        /// The queue's caps.
        cap: QueueCap,
    },
    /// Removes a client's deliveries up to `upto` (an acknowledgement).
    Ack {
        /// Client id.
        client: String,
        /// Highest sequence number processed.
        upto: u64,
    },
    /// Appends to the outbox of (`follower`, `room`) at `seq` (chosen by the room's owner).
    OutboxPush {
        /// Follower domain.
        follower: String,
        /// Room URI.
        room: String,
        /// Sequence number.
        seq: u64,
        /// The entry.
        row: rows::OutboxRow,
        /// The body (stored once, whoever references it).
        body: Arc<[u8]>,
    },
    /// Removes delivered outbox entries.
    OutboxPop {
        /// Follower domain.
        follower: String,
        /// Room URI.
        room: String,
        /// Sequence numbers.
        seqs: Vec<u64>,
    },
    /// Moves outbox entries the follower refused to its dead letters.
    DeadLetter {
        /// Follower domain.
        follower: String,
        /// Room URI.
        room: String,
        /// Sequence numbers.
        seqs: Vec<u64>,
        /// HTTP status of the refusal.
        status: u16,
        /// The follower's sentence.
        reason: String,
        /// When.
        at_ms: u64,
    },
    /// Drops a body reference held by someone else than a queue (a dead letter being dropped).
    Unref {
        /// The body.
        id: BodyId,
    },
    /// Fails the whole batch unless `room`'s lease still carries `token` (cluster fencing;
    /// single-node stores accept it).
    Fence {
        /// Room URI.
        room: String,
        /// Fencing token of the lease this node holds.
        token: u64,
    },
}

/// Bounds of a client's delivery queue: past either, the oldest entries are dropped and the
/// client told to resync.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueCap {
    /// Entries.
    pub count: u64,
    /// Bytes of bodies.
    pub bytes: u64,
}

/// The writes of one step, applied atomically.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WriteBatch {
    /// In order.
    pub writes: Vec<Write>,
}

impl WriteBatch {
    /// Whether there is nothing to apply.
    pub fn is_empty(&self) -> bool {
        self.writes.is_empty()
    }

    /// Number of writes.
    pub fn len(&self) -> usize {
        self.writes.len()
    }

    /// Sets a row to an encoded record.
    pub fn put<T: serde::Serialize>(&mut self, table: Table, key: Vec<u8>, value: &T) {
        self.writes.push(Write::Put {
            table,
            key,
            value: rows::encode(value),
        });
    }

    /// Sets a row to raw bytes.
    pub fn put_raw(&mut self, table: Table, key: Vec<u8>, value: Vec<u8>) {
        self.writes.push(Write::Put { table, key, value });
    }

    /// Deletes a row.
    pub fn delete(&mut self, table: Table, key: Vec<u8>) {
        self.writes.push(Write::Delete { table, key });
    }

    /// Appends one typed write.
    pub fn push(&mut self, w: Write) {
        self.writes.push(w);
    }

    /// Appends another batch.
    pub fn extend(&mut self, other: Self) {
        self.writes.extend(other.writes);
    }

    /// The bytes this batch stores: keys and values of its rows, each body once however many
    /// queues reference it (what a step costs the store, before the backend's own overhead).
    pub fn payload_bytes(&self) -> usize {
        let mut bodies = BTreeSet::new();
        let mut n = 0;
        for w in &self.writes {
            n += match w {
                Write::Put { key, value, .. } => key.len() + value.len(),
                Write::Delete { key, .. } => key.len(),
                Write::Deliver {
                    client, row, body, ..
                } => {
                    let b = if bodies.insert(row.body) {
                        body.len()
                    } else {
                        0
                    };
                    client.len() + 8 + rows::encode(row).len() + b
                }
                Write::OutboxPush {
                    follower,
                    room,
                    row,
                    body,
                    ..
                } => {
                    let b = if bodies.insert(row.body) {
                        body.len()
                    } else {
                        0
                    };
                    follower.len() + room.len() + 8 + rows::encode(row).len() + b
                }
                Write::Ack { client, .. } => client.len() + 8,
                Write::OutboxPop {
                    follower,
                    room,
                    seqs,
                }
                | Write::DeadLetter {
                    follower,
                    room,
                    seqs,
                    ..
                } => follower.len() + room.len() + 8 * seqs.len(),
                Write::Unref { id } => id.len(),
                Write::Fence { room, .. } => room.len() + 8,
            };
        }
        n
    }
}

/// A row with its key.
pub type Row = (Vec<u8>, Vec<u8>);

/// The primitives of one atomic transaction.
pub trait Txn {
    /// A row.
    ///
    /// # Errors
    /// Backend failures.
    fn get(&mut self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError>;
    /// A row that this transaction will update: backends with concurrent writers lock it.
    ///
    /// # Errors
    /// Backend failures.
    fn get_for_update(&mut self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        self.get(table, key)
    }
    /// Sets a row.
    ///
    /// # Errors
    /// Backend failures.
    fn put(&mut self, table: Table, key: &[u8], value: &[u8]) -> Result<(), StoreError>;
    /// Deletes a row.
    ///
    /// # Errors
    /// Backend failures.
    fn delete(&mut self, table: Table, key: &[u8]) -> Result<(), StoreError>;
    /// Rows whose key starts with `prefix` and is greater than `after`, ascending, at most `limit`.
    ///
    /// # Errors
    /// Backend failures.
    fn scan(
        &mut self,
        table: Table,
        prefix: &[u8],
        after: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<Row>, StoreError>;
    /// The row with the greatest key starting with `prefix`.
    ///
    /// # Errors
    /// Backend failures.
    fn last(&mut self, table: Table, prefix: &[u8]) -> Result<Option<Row>, StoreError>;
    /// Checks a room lease's fencing token (cluster stores); single-node stores accept any.
    ///
    /// # Errors
    /// [`StoreError::Fenced`].
    fn check_fence(&mut self, room: &str, token: u64) -> Result<(), StoreError> {
        let _ = (room, token);
        Ok(())
    }
    /// Tells the other nodes of a cluster, once this transaction commits, that these clients
    /// have new deliveries (their long-polls may be served elsewhere); single-node stores
    /// need not.
    ///
    /// # Errors
    /// Backend failures.
    fn notify(&mut self, clients: &[String]) -> Result<(), StoreError> {
        let _ = clients;
        Ok(())
    }

    /// Locks existing rows this transaction will update, in the order given. Backends with
    /// concurrent writers (several cluster nodes) lock them; callers pass them sorted, so two
    /// transactions touching the same rows wait for each other instead of deadlocking.
    ///
    /// # Errors
    /// Backend failures.
    fn lock_rows(&mut self, table: Table, keys: &[Vec<u8>]) -> Result<(), StoreError> {
        let _ = (table, keys);
        Ok(())
    }
}

/// The shared rows a group of batches will update, by table, each list sorted: the queue
/// counters of the clients and outboxes they touch, and the reference counts of the bodies
/// they store. Lock them in this order before applying ([`Txn::lock_rows`]).
pub fn hot_rows(batches: &[&WriteBatch]) -> Vec<(Table, Vec<Vec<u8>>)> {
    let mut meta = BTreeSet::new();
    let mut outbox = BTreeSet::new();
    let mut refs = BTreeSet::new();
    for w in batches.iter().flat_map(|b| b.writes.iter()) {
        match w {
            Write::Deliver { client, row, .. } => {
                meta.insert(client.as_bytes().to_vec());
                refs.insert(row.body.to_vec());
            }
            Write::Ack { client, .. } => {
                meta.insert(client.as_bytes().to_vec());
            }
            Write::OutboxPush {
                follower,
                room,
                row,
                ..
            } => {
                outbox.insert(keys::join(&[follower.as_bytes(), room.as_bytes()]));
                refs.insert(row.body.to_vec());
            }
            Write::OutboxPop { follower, room, .. } | Write::DeadLetter { follower, room, .. } => {
                outbox.insert(keys::join(&[follower.as_bytes(), room.as_bytes()]));
            }
            _ => {}
        }
    }
    [
        (Table::BodyRefs, refs),
        (Table::DeliveryMeta, meta),
        (Table::OutboxMeta, outbox),
    ]
    .into_iter()
    .filter(|(_, k)| !k.is_empty())
    .map(|(t, k)| (t, k.into_iter().collect()))
    .collect()
}

/// A storage backend: committed reads, and atomic durable transactions.
pub trait Store: Send + Sync + std::fmt::Debug {
    /// A committed row.
    ///
    /// # Errors
    /// Backend failures.
    fn get(&self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError>;
    /// Committed rows by prefix (see [`Txn::scan`]).
    ///
    /// # Errors
    /// Backend failures.
    fn scan(
        &self,
        table: Table,
        prefix: &[u8],
        after: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<Row>, StoreError>;
    /// The committed row with the greatest key starting with `prefix`.
    ///
    /// # Errors
    /// Backend failures.
    fn last(&self, table: Table, prefix: &[u8]) -> Result<Option<Row>, StoreError>;
    /// Runs `f` in one atomic, durable transaction; nothing of it is applied if `f` or the
    /// commit fails.
    ///
    /// # Errors
    /// `f`'s error or the backend's.
    fn transact(
        &self,
        f: &mut dyn FnMut(&mut dyn Txn) -> Result<(), StoreError>,
    ) -> Result<(), StoreError>;
    /// The row at `key`, set to `value` first if there is none; of several writers racing
    /// (nodes of a cluster starting together) every one gets the value of the first.
    ///
    /// # Errors
    /// Backend failures.
    fn get_or_put(&self, table: Table, key: &[u8], value: &[u8]) -> Result<Vec<u8>, StoreError> {
        self.transact(&mut |t| {
            if t.get_for_update(table, key)?.is_none() {
                t.put(table, key, value)?;
            }
            Ok(())
        })?;
        self.get(table, key)?
            .ok_or_else(|| StoreError::Backend("a row just written is missing".into()))
    }
}

/// Applies `batches` in one transaction of `store`; returns what the shell must know
/// (clients with new deliveries).
///
/// # Errors
/// The backend's, or [`StoreError::Fenced`]; then nothing was applied.
pub fn commit(store: &dyn Store, batches: &[&WriteBatch]) -> Result<CommitReport, StoreError> {
    let mut report = CommitReport::default();
    store.transact(&mut |txn| {
        report = CommitReport::default();
        for b in batches {
            apply(txn, b, &mut report)?;
        }
        Ok(())
    })?;
    Ok(report)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    #[test]
    fn the_memory_store_passes_the_suite() {
        super::suite::run(&mut || Arc::new(super::MemStore::default()));
    }

    #[test]
    fn failed_commits_apply_nothing() {
        let s = super::MemStore::default();
        let mut b = super::WriteBatch::default();
        b.put_raw(super::Table::Meta, b"k".to_vec(), b"v".to_vec());
        s.fail_next_commits(1);
        assert!(super::commit(&s, &[&b]).is_err());
        assert_eq!(
            super::Store::get(&s, super::Table::Meta, b"k").unwrap(),
            None
        );
        super::commit(&s, &[&b]).unwrap();
        assert!(
            super::Store::get(&s, super::Table::Meta, b"k")
                .unwrap()
                .is_some()
        );
    }
}
