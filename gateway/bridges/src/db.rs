//! The bridges' rows in the gateway's store, by key prefix (one bridge per provider):
//!
//! | key | value |
//! |---|---|
//! | `U/<p>/<native user>` | [`UserRow`]: MIMI user name, client token, delivery cursor |
//! | `C/<p>/<client id>` | the native user (for deliveries announced by client ID) |
//! | `N/<p>` | number of bridged users |
//! | `M/<p>/<native user>/m` | the MLS member's meta record |
//! | `M/<p>/<native user>/r/<row>` | one openmls storage row of that member |
//! | `I/<p>/<row>` | one ID map row (`mimi_adapters::ids`) |
//! | `P/<p>/n/<native room>` | [`PortalRow`]: the MIMI room of a portal |
//! | `P/<p>/m/<MIMI room>` | the portal's native room |
//! | `D/<p>/<native user>\0<peer URI>` | the native room of a direct-message portal |
//! | `Q/<p>/<native user>/<room>\0<id>` | a submission committed but not yet accepted by the hub |
//! | `T/<p>/<transaction id>` | a processed homeserver transaction (time, for retention) |
//!
//! Values are compact binary (MessagePack for records, raw bytes otherwise).

use std::sync::Arc;

use mimi_adapters::ids::{IdRows, RowsError};
use serde::{Deserialize, Serialize};

use crate::{BridgeStore, Change, StoreError};

/// A bridged user.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserRow {
    /// The MIMI user name on this gateway.
    pub name: String,
    /// The client API token of its `bridge` device.
    pub token: String,
    /// Last delivery processed.
    pub cursor: u64,
}

/// What a portal is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum PortalKind {
    /// A room mirrored under a configured alias or MUC.
    Configured,
    /// A room reached through its alias or address on demand.
    OnDemand,
    /// A two-person room opened from the other system (a DM with a puppet).
    Direct,
    /// A room the bridge made because a MIMI user added a bridged user.
    Invited,
}

/// A portal: a native room standing for a MIMI room.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortalRow {
    /// The MIMI room URI.
    pub mimi: String,
    /// How it came to be.
    pub kind: PortalKind,
    /// For a direct conversation: the MIMI user on the other side (whose puppet speaks for
    /// the bridge there).
    #[serde(default)]
    pub peer: Option<String>,
}

fn encode<T: Serialize>(v: &T) -> Vec<u8> {
    rmp_serde::to_vec_named(v).unwrap_or_default()
}

fn decode<T: for<'de> Deserialize<'de>>(what: &str, b: &[u8]) -> Result<T, StoreError> {
    rmp_serde::from_slice(b).map_err(|e| StoreError(format!("corrupt {what} row: {e}")))
}

/// A member's meta record and its openmls rows.
pub type MemberRows = (Vec<u8>, Vec<crate::Row>);

/// A pending submission: its key, room and body.
pub type Pending = (Vec<u8>, String, Vec<u8>);

/// One bridge's view of the store.
#[derive(Debug, Clone)]
pub struct Db {
    store: Arc<dyn BridgeStore>,
    p: &'static str,
}

fn key(parts: &[&[u8]]) -> Vec<u8> {
    let mut k = Vec::new();
    for (i, p) in parts.iter().enumerate() {
        if i > 0 {
            k.push(b'/');
        }
        k.extend_from_slice(p);
    }
    k
}

impl Db {
    /// The rows of the bridge of `provider` (`matrix`, `xmpp`).
    pub fn new(store: Arc<dyn BridgeStore>, provider: &'static str) -> Self {
        Self { store, p: provider }
    }

    /// The underlying store.
    pub fn store(&self) -> &Arc<dyn BridgeStore> {
        &self.store
    }

    /// Applies changes atomically.
    ///
    /// # Errors
    /// Storage failures.
    pub fn apply(&self, changes: &[Change]) -> Result<(), StoreError> {
        self.store.apply(changes)
    }

    // --- users -------------------------------------------------------------------------

    /// Key of a user row.
    pub fn user_key(&self, native: &str) -> Vec<u8> {
        key(&[b"U", self.p.as_bytes(), native.as_bytes()])
    }

    /// A bridged user.
    ///
    /// # Errors
    /// Storage failures.
    pub fn user(&self, native: &str) -> Result<Option<UserRow>, StoreError> {
        self.store
            .get(&self.user_key(native))?
            .map(|b| decode("user", &b))
            .transpose()
    }

    /// The change that writes a user row.
    pub fn put_user(&self, native: &str, row: &UserRow) -> Change {
        (self.user_key(native), Some(encode(row)))
    }

    /// Every bridged user, in pages: `(native, row)` after `after`.
    ///
    /// # Errors
    /// Storage failures.
    pub fn users(
        &self,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<(String, UserRow)>, StoreError> {
        let prefix = key(&[b"U", self.p.as_bytes(), b""]);
        let after = after.map(|a| self.user_key(a));
        self.store
            .scan(&prefix, after.as_deref(), limit)?
            .into_iter()
            .map(|(k, v)| {
                let native = String::from_utf8_lossy(&k[prefix.len()..]).into_owned();
                decode("user", &v).map(|r| (native, r))
            })
            .collect()
    }

    /// The native user behind a client ID.
    ///
    /// # Errors
    /// Storage failures.
    pub fn native_of_client(&self, client: &str) -> Result<Option<String>, StoreError> {
        Ok(self
            .store
            .get(&key(&[b"C", self.p.as_bytes(), client.as_bytes()]))?
            .map(|b| String::from_utf8_lossy(&b).into_owned()))
    }

    /// The change that indexes a client ID.
    pub fn put_client(&self, client: &str, native: &str) -> Change {
        (
            key(&[b"C", self.p.as_bytes(), client.as_bytes()]),
            Some(native.as_bytes().to_vec()),
        )
    }

    /// Number of bridged users.
    ///
    /// # Errors
    /// Storage failures.
    pub fn user_count(&self) -> Result<u64, StoreError> {
        Ok(self
            .store
            .get(&key(&[b"N", self.p.as_bytes()]))?
            .and_then(|b| b.try_into().ok().map(u64::from_be_bytes))
            .unwrap_or(0))
    }

    /// The change that sets the user count.
    pub fn put_user_count(&self, n: u64) -> Change {
        (
            key(&[b"N", self.p.as_bytes()]),
            Some(n.to_be_bytes().to_vec()),
        )
    }

    // --- MLS state ------------------------------------------------------------------------

    fn member_prefix(&self, native: &str) -> Vec<u8> {
        let mut k = key(&[b"M", self.p.as_bytes(), native.as_bytes()]);
        k.push(b'/');
        k
    }

    /// A member's meta record and rows.
    ///
    /// # Errors
    /// Storage failures.
    pub fn member(&self, native: &str) -> Result<Option<MemberRows>, StoreError> {
        let base = self.member_prefix(native);
        let mut meta_key = base.clone();
        meta_key.push(b'm');
        let Some(meta) = self.store.get(&meta_key)? else {
            return Ok(None);
        };
        let mut rows_prefix = base;
        rows_prefix.extend_from_slice(b"r/");
        let mut rows = Vec::new();
        let mut after: Option<Vec<u8>> = None;
        loop {
            let page = self.store.scan(&rows_prefix, after.as_deref(), 1000)?;
            let done = page.len() < 1000;
            after = page.last().map(|(k, _)| k.clone());
            rows.extend(
                page.into_iter()
                    .map(|(k, v)| (k[rows_prefix.len()..].to_vec(), v)),
            );
            if done {
                break;
            }
        }
        Ok(Some((meta, rows)))
    }

    /// The changes that persist what a member changed.
    pub fn member_changes(&self, native: &str, c: mimi_client::MemberChanges) -> Vec<Change> {
        let base = self.member_prefix(native);
        let mut out = Vec::with_capacity(c.rows.len() + 1);
        if let Some(meta) = c.meta {
            let mut k = base.clone();
            k.push(b'm');
            out.push((k, Some(meta)));
        }
        for (row, v) in c.rows {
            let mut k = base.clone();
            k.extend_from_slice(b"r/");
            k.extend_from_slice(&row);
            out.push((k, v));
        }
        out
    }

    // --- ID map ---------------------------------------------------------------------------

    /// The prefix of this bridge's ID map rows.
    pub fn ids_prefix(&self) -> Vec<u8> {
        key(&[b"I", self.p.as_bytes(), b""])
    }

    /// The committed ID map rows, for `mimi_adapters::ids::IdMap::over`.
    pub fn id_rows(&self) -> Arc<dyn IdRows> {
        Arc::new(IdStore {
            store: Arc::clone(&self.store),
            prefix: self.ids_prefix(),
        })
    }

    /// The store changes of ID map row changes.
    pub fn id_changes(&self, rows: Vec<mimi_adapters::ids::RowChange>) -> Vec<Change> {
        let prefix = self.ids_prefix();
        rows.into_iter()
            .map(|(k, v)| {
                let mut full = prefix.clone();
                full.extend_from_slice(&k);
                (full, v)
            })
            .collect()
    }

    /// Deletes ID map rows written before `cutoff_s`, at most `batch` index rows per call;
    /// returns how many rows it deleted and whether older ones may remain.
    ///
    /// # Errors
    /// Storage failures.
    pub fn expire_ids(&self, cutoff_s: u64, batch: usize) -> Result<(usize, bool), StoreError> {
        let prefix = self.ids_prefix();
        let mut index_prefix = prefix.clone();
        index_prefix.extend_from_slice(mimi_adapters::ids::TIME_INDEX);
        let page = self.store.scan(&index_prefix, None, batch)?;
        let index: Vec<Vec<u8>> = page
            .iter()
            .map(|(k, _)| k[prefix.len()..].to_vec())
            .collect();
        let store = &self.store;
        let read = |k: &[u8]| {
            let mut full = prefix.clone();
            full.extend_from_slice(k);
            store.get(&full).ok().flatten()
        };
        let (dels, stopped) = mimi_adapters::ids::IdMap::expired(&index, cutoff_s, &read);
        let n = dels.len();
        let changes: Vec<Change> = dels
            .into_iter()
            .map(|k| {
                let mut full = prefix.clone();
                full.extend_from_slice(&k);
                (full, None)
            })
            .collect();
        if !changes.is_empty() {
            self.store.apply(&changes)?;
        }
        Ok((n, !stopped && page.len() == batch))
    }

    // --- portals --------------------------------------------------------------------------

    /// The portal of a native room.
    ///
    /// # Errors
    /// Storage failures.
    pub fn portal(&self, native_room: &str) -> Result<Option<PortalRow>, StoreError> {
        self.store
            .get(&key(&[
                b"P",
                self.p.as_bytes(),
                b"n",
                native_room.as_bytes(),
            ]))?
            .map(|b| decode("portal", &b))
            .transpose()
    }

    /// The native room of a MIMI room's portal.
    ///
    /// # Errors
    /// Storage failures.
    pub fn native_room(&self, mimi_room: &str) -> Result<Option<String>, StoreError> {
        Ok(self
            .store
            .get(&key(&[b"P", self.p.as_bytes(), b"m", mimi_room.as_bytes()]))?
            .map(|b| String::from_utf8_lossy(&b).into_owned()))
    }

    /// The changes that record a portal (both directions).
    pub fn put_portal(&self, native_room: &str, row: &PortalRow) -> Vec<Change> {
        vec![
            (
                key(&[b"P", self.p.as_bytes(), b"n", native_room.as_bytes()]),
                Some(encode(row)),
            ),
            (
                key(&[b"P", self.p.as_bytes(), b"m", row.mimi.as_bytes()]),
                Some(native_room.as_bytes().to_vec()),
            ),
        ]
    }

    fn dm_key(&self, native: &str, peer: &str) -> Vec<u8> {
        let mut k = key(&[b"D", self.p.as_bytes(), native.as_bytes()]);
        k.push(0);
        k.extend_from_slice(peer.as_bytes());
        k
    }

    /// The native room of `native`'s direct messages with the MIMI user `peer`.
    ///
    /// # Errors
    /// Storage failures.
    pub fn dm(&self, native: &str, peer: &str) -> Result<Option<String>, StoreError> {
        Ok(self
            .store
            .get(&self.dm_key(native, peer))?
            .map(|b| String::from_utf8_lossy(&b).into_owned()))
    }

    /// The change that records a direct-message portal.
    pub fn put_dm(&self, native: &str, peer: &str, native_room: &str) -> Change {
        (
            self.dm_key(native, peer),
            Some(native_room.as_bytes().to_vec()),
        )
    }

    // --- pending submissions ------------------------------------------------------------------

    fn pending_prefix(&self, native: &str) -> Vec<u8> {
        let mut k = key(&[b"Q", self.p.as_bytes(), native.as_bytes()]);
        k.push(b'/');
        k
    }

    /// The key of a pending submission.
    pub fn pending_key(&self, native: &str, room: &str, id: &[u8; 32]) -> Vec<u8> {
        let mut k = self.pending_prefix(native);
        k.extend_from_slice(room.as_bytes());
        k.push(0);
        k.extend_from_slice(id);
        k
    }

    /// A user's pending submissions: `(key, room, body)`.
    ///
    /// # Errors
    /// Storage failures.
    pub fn pending(&self, native: &str) -> Result<Vec<Pending>, StoreError> {
        let prefix = self.pending_prefix(native);
        Ok(self
            .store
            .scan(&prefix, None, 1000)?
            .into_iter()
            .filter_map(|(k, v)| {
                let rest = &k[prefix.len()..];
                let nul = rest.iter().position(|b| *b == 0)?;
                let room = String::from_utf8_lossy(&rest[..nul]).into_owned();
                Some((k, room, v))
            })
            .collect())
    }

    // --- homeserver transactions ------------------------------------------------------------------

    fn txn_key(&self, txn: &str) -> Vec<u8> {
        key(&[b"T", self.p.as_bytes(), txn.as_bytes()])
    }

    /// Whether a homeserver transaction was processed.
    ///
    /// # Errors
    /// Storage failures.
    pub fn txn_done(&self, txn: &str) -> Result<bool, StoreError> {
        Ok(self.store.get(&self.txn_key(txn))?.is_some())
    }

    /// The change that records a processed transaction at `now_s`.
    pub fn put_txn(&self, txn: &str, now_s: u64) -> Change {
        (self.txn_key(txn), Some(now_s.to_be_bytes().to_vec()))
    }

    /// Forgets transactions recorded before `cutoff_s` (the homeserver retries a transaction
    /// for minutes, not days), `batch` at a time; returns how many it deleted.
    ///
    /// # Errors
    /// Storage failures.
    pub fn expire_txns(&self, cutoff_s: u64, batch: usize) -> Result<usize, StoreError> {
        let prefix = key(&[b"T", self.p.as_bytes(), b""]);
        let mut after: Option<Vec<u8>> = None;
        let mut n = 0;
        loop {
            let page = self.store.scan(&prefix, after.as_deref(), batch)?;
            let done = page.len() < batch;
            after = page.last().map(|(k, _)| k.clone());
            let dels: Vec<Change> = page
                .into_iter()
                .filter(|(_, v)| {
                    v.as_slice()
                        .try_into()
                        .map(u64::from_be_bytes)
                        .is_ok_and(|at| at < cutoff_s)
                })
                .map(|(k, _)| (k, None))
                .collect();
            n += dels.len();
            if !dels.is_empty() {
                self.store.apply(&dels)?;
            }
            if done {
                return Ok(n);
            }
        }
    }
}

/// ID map rows under a prefix of the store.
struct IdStore {
    store: Arc<dyn BridgeStore>,
    prefix: Vec<u8>,
}

impl IdRows for IdStore {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, RowsError> {
        let mut full = self.prefix.clone();
        full.extend_from_slice(key);
        self.store.get(&full).map_err(|e| RowsError(e.0))
    }
}

/// A store in memory (tests, and `mimi translate`-style tools).
#[derive(Debug, Default)]
pub struct MemoryStore {
    rows: std::sync::Mutex<std::collections::BTreeMap<Vec<u8>, Vec<u8>>>,
    /// Fail the next `n` applies (fault injection in tests).
    pub fail_applies: std::sync::atomic::AtomicUsize,
}

impl MemoryStore {
    fn rows(&self) -> std::sync::MutexGuard<'_, std::collections::BTreeMap<Vec<u8>, Vec<u8>>> {
        self.rows
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Number of rows.
    pub fn len(&self) -> usize {
        self.rows().len()
    }

    /// Whether it is empty.
    pub fn is_empty(&self) -> bool {
        self.rows().is_empty()
    }
}

impl BridgeStore for MemoryStore {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.rows().get(key).cloned())
    }

    fn scan(
        &self,
        prefix: &[u8],
        after: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<crate::Row>, StoreError> {
        use std::ops::Bound;
        let start = match after {
            Some(a) if a >= prefix => Bound::Excluded(a.to_vec()),
            _ => Bound::Included(prefix.to_vec()),
        };
        Ok(self
            .rows()
            .range((start, Bound::Unbounded))
            .take_while(|(k, _)| k.starts_with(prefix))
            .take(limit)
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect())
    }

    fn apply(&self, changes: &[Change]) -> Result<(), StoreError> {
        use std::sync::atomic::Ordering;
        if self
            .fail_applies
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1))
            .is_ok()
        {
            return Err(StoreError("injected failure".into()));
        }
        let mut rows = self.rows();
        for (k, v) in changes {
            match v {
                Some(v) => rows.insert(k.clone(), v.clone()),
                None => rows.remove(k),
            };
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_round_trip_and_expire() {
        let store = Arc::new(MemoryStore::default());
        let db = Db::new(store.clone(), "matrix");
        let row = UserRow {
            name: "mx-bob".into(),
            token: "t".into(),
            cursor: 7,
        };
        db.apply(&[db.put_user("@bob:m", &row), db.put_user_count(1)])
            .unwrap();
        assert_eq!(db.user("@bob:m").unwrap(), Some(row.clone()));
        assert_eq!(
            db.users(None, 10).unwrap(),
            vec![("@bob:m".to_owned(), row)]
        );
        assert_eq!(db.user_count().unwrap(), 1);
        // Another bridge's rows are invisible.
        assert_eq!(
            Db::new(store.clone(), "xmpp").users(None, 10).unwrap(),
            vec![]
        );

        let p = PortalRow {
            mimi: "mimi://a/r/x".into(),
            kind: PortalKind::Direct,
            peer: Some("mimi://a/u/al".into()),
        };
        db.apply(&db.put_portal("!r:m", &p)).unwrap();
        assert_eq!(db.portal("!r:m").unwrap(), Some(p));
        assert_eq!(
            db.native_room("mimi://a/r/x").unwrap().as_deref(),
            Some("!r:m")
        );

        db.apply(&[db.put_txn("t1", 10), db.put_txn("t2", 100)])
            .unwrap();
        assert_eq!(db.expire_txns(50, 1).unwrap(), 1);
        assert!(!db.txn_done("t1").unwrap());
        assert!(db.txn_done("t2").unwrap());

        let k = db.pending_key("@bob:m", "mimi://a/r/x", &[7; 32]);
        db.apply(&[(k.clone(), Some(vec![1, 2]))]).unwrap();
        assert_eq!(
            db.pending("@bob:m").unwrap(),
            vec![(k, "mimi://a/r/x".to_owned(), vec![1, 2])]
        );

        store
            .fail_applies
            .store(1, std::sync::atomic::Ordering::Release);
        assert!(db.apply(&[db.put_user_count(5)]).is_err());
        assert_eq!(
            db.user_count().unwrap(),
            1,
            "a failed apply changed nothing"
        );
    }
}
