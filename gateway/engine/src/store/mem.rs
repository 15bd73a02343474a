//! An in-memory [`Store`] for tests and simulations, with injectable commit failures.

use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};

use super::{Row, Store, StoreError, Table, Txn};

type Map = BTreeMap<(Table, Vec<u8>), Vec<u8>>;

/// Rows in memory. Cloning the store shares nothing.
#[derive(Debug, Default)]
pub struct MemStore {
    rows: Mutex<Map>,
    fail_commits: AtomicU64,
    commits: AtomicU64,
}

impl Clone for MemStore {
    fn clone(&self) -> Self {
        Self {
            rows: Mutex::new(self.lock().clone()),
            fail_commits: AtomicU64::new(0),
            commits: AtomicU64::new(0),
        }
    }
}

impl MemStore {
    fn lock(&self) -> MutexGuard<'_, Map> {
        self.rows.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Makes the next `n` commits fail (as a full disk would) without applying anything.
    pub fn fail_next_commits(&self, n: u64) {
        self.fail_commits.store(n, Ordering::SeqCst);
    }

    /// Successful commits so far.
    pub fn commits(&self) -> u64 {
        self.commits.load(Ordering::SeqCst)
    }

    /// Every row of a table (tests).
    pub fn table(&self, t: Table) -> Vec<Row> {
        self.lock()
            .range((t, Vec::new())..)
            .take_while(|((tt, _), _)| *tt == t)
            .map(|((_, k), v)| (k.clone(), v.clone()))
            .collect()
    }

    /// Every row (tests compare whole states).
    pub fn dump(&self) -> Vec<(Table, Row)> {
        self.lock()
            .iter()
            .map(|((t, k), v)| (*t, (k.clone(), v.clone())))
            .collect()
    }
}

fn scan_map(m: &Map, t: Table, prefix: &[u8], after: Option<&[u8]>, limit: usize) -> Vec<Row> {
    let start = match after {
        Some(a) if a >= prefix => Bound::Excluded((t, a.to_vec())),
        _ => Bound::Included((t, prefix.to_vec())),
    };
    m.range((start, Bound::Unbounded))
        .take_while(|((tt, k), _)| *tt == t && k.starts_with(prefix))
        .take(limit)
        .map(|((_, k), v)| (k.clone(), v.clone()))
        .collect()
}

fn last_map(m: &Map, t: Table, prefix: &[u8]) -> Option<Row> {
    m.range((t, prefix.to_vec())..)
        .take_while(|((tt, k), _)| *tt == t && k.starts_with(prefix))
        .last()
        .map(|((_, k), v)| (k.clone(), v.clone()))
}

struct MemTxn<'a> {
    base: &'a Map,
    overlay: BTreeMap<(Table, Vec<u8>), Option<Vec<u8>>>,
}

impl MemTxn<'_> {
    fn merged(&self, t: Table, prefix: &[u8]) -> Map {
        let mut m: Map = scan_map(self.base, t, prefix, None, usize::MAX)
            .into_iter()
            .map(|(k, v)| ((t, k), v))
            .collect();
        for ((tt, k), v) in &self.overlay {
            if *tt == t && k.starts_with(prefix) {
                match v {
                    Some(v) => {
                        m.insert((t, k.clone()), v.clone());
                    }
                    None => {
                        m.remove(&(t, k.clone()));
                    }
                }
            }
        }
        m
    }
}

impl Txn for MemTxn<'_> {
    fn get(&mut self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        let k = (table, key.to_vec());
        Ok(match self.overlay.get(&k) {
            Some(v) => v.clone(),
            None => self.base.get(&k).cloned(),
        })
    }

    fn put(&mut self, table: Table, key: &[u8], value: &[u8]) -> Result<(), StoreError> {
        self.overlay
            .insert((table, key.to_vec()), Some(value.to_vec()));
        Ok(())
    }

    fn delete(&mut self, table: Table, key: &[u8]) -> Result<(), StoreError> {
        self.overlay.insert((table, key.to_vec()), None);
        Ok(())
    }

    fn scan(
        &mut self,
        table: Table,
        prefix: &[u8],
        after: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<Row>, StoreError> {
        Ok(scan_map(
            &self.merged(table, prefix),
            table,
            prefix,
            after,
            limit,
        ))
    }

    fn last(&mut self, table: Table, prefix: &[u8]) -> Result<Option<Row>, StoreError> {
        Ok(last_map(&self.merged(table, prefix), table, prefix))
    }
}

impl Store for MemStore {
    fn get(&self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.lock().get(&(table, key.to_vec())).cloned())
    }

    fn scan(
        &self,
        table: Table,
        prefix: &[u8],
        after: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<Row>, StoreError> {
        Ok(scan_map(&self.lock(), table, prefix, after, limit))
    }

    fn last(&self, table: Table, prefix: &[u8]) -> Result<Option<Row>, StoreError> {
        Ok(last_map(&self.lock(), table, prefix))
    }

    fn transact(
        &self,
        f: &mut dyn FnMut(&mut dyn Txn) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        let mut rows = self.lock();
        let overlay = {
            let mut txn = MemTxn {
                base: &rows,
                overlay: BTreeMap::new(),
            };
            f(&mut txn)?;
            txn.overlay
        };
        let fail = self.fail_commits.load(Ordering::SeqCst);
        if fail > 0 {
            self.fail_commits.store(fail - 1, Ordering::SeqCst);
            return Err(StoreError::Backend(
                "injected commit failure (disk full)".into(),
            ));
        }
        for (k, v) in overlay {
            match v {
                Some(v) => {
                    rows.insert(k, v);
                }
                None => {
                    rows.remove(&k);
                }
            }
        }
        self.commits.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
}
