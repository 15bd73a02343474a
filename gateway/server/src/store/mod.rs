//! Embedded storage on redb: one file per gateway, ACID and crash-safe, implementing the
//! engine's [`Store`] trait (one redb table per [`Table`]); every write batch is one durable
//! transaction.
//!
//! The file and its directory are created readable by the gateway's user only (0600 / 0700):
//! the store holds the hub's signing key, the franking key, bridged users' MLS keys and
//! token hashes. Asset bytes are files beside it ([`assets`]), off the write path of commits.
//!
//! Schema versions: 1 kept assets inside the `engine` table; 2 moved them to their own table;
//! 3 stores rows at the granularity of change ([`Table`]). [`RedbStore::open`] migrates older
//! files in place ([`migrate`]) and refuses files written by a newer version.

pub mod assets;
mod migrate;
pub mod pg;

use std::fs::{DirBuilder, OpenOptions};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::Path;

use anyhow::{Context, bail};
use mimi_engine::store::{Row, Store, StoreError, Table, Txn};
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition, TableError};

/// The current schema version.
pub const SCHEMA_VERSION: u64 = 3;

const VERSION_KEY: &[u8] = b"schema_version";

fn def(t: Table) -> TableDefinition<'static, &'static [u8], &'static [u8]> {
    TableDefinition::new(t.name())
}

fn backend(e: impl std::fmt::Display) -> StoreError {
    StoreError::Backend(e.to_string())
}

/// The exclusive upper bound of keys starting with `prefix` (None: no bound).
fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < u8::MAX {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

/// The gateway's database.
///
/// After an I/O error (a full disk), redb refuses every later write until the file is
/// opened again: the store then closes and reopens it, so that once the disk has room the
/// gateway commits again without a restart (the failed commit itself had no effect).
#[derive(Debug)]
pub struct RedbStore {
    path: std::path::PathBuf,
    db: std::sync::RwLock<Option<Database>>,
}

fn open_db(path: &Path) -> anyhow::Result<Database> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("cannot open database {}", path.display()))?;
    let backend = redb::backends::FileBackend::new(file)
        .with_context(|| format!("cannot lock database {}", path.display()))?;
    Database::builder()
        .create_with_backend(backend)
        .with_context(|| format!("cannot open database {}", path.display()))
}

/// Whether a write failed in a way that leaves redb refusing writes until reopened.
fn io_failure(e: &redb::StorageError) -> bool {
    matches!(
        e,
        redb::StorageError::Io(_) | redb::StorageError::PreviousIo
    )
}

/// Creates `dir` (and parents) readable by this user only.
///
/// # Errors
/// IO errors.
pub fn private_dir(dir: &Path) -> std::io::Result<()> {
    DirBuilder::new().recursive(true).mode(0o700).create(dir)
}

impl RedbStore {
    /// Opens (creating with mode 0600 if needed) and migrates `path`.
    ///
    /// # Errors
    /// IO errors, a corrupt file, or a file from a newer version.
    pub fn open(path: &Path) -> anyhow::Result<Self> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            private_dir(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        }
        let db = open_db(path)?;
        migrate::migrate(&db, &assets::dir_of(path))
            .with_context(|| format!("cannot migrate {}", path.display()))?;
        Ok(Self {
            path: path.to_owned(),
            db: std::sync::RwLock::new(Some(db)),
        })
    }

    /// The open database (reopened first if an I/O error closed it).
    fn db(&self) -> Result<std::sync::RwLockReadGuard<'_, Option<Database>>, StoreError> {
        {
            let g = self
                .db
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if g.is_some() {
                return Ok(g);
            }
        }
        self.reopen()?;
        Ok(self
            .db
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner))
    }

    /// Closes and opens the file again (after an I/O error).
    fn reopen(&self) -> Result<(), StoreError> {
        let mut g = self
            .db
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        *g = None; // the file lock is released before opening again
        let db = open_db(&self.path).map_err(|e| backend(format!("{e:#}")))?;
        *g = Some(db);
        tracing::warn!(path = %self.path.display(), "database reopened after an I/O error");
        Ok(())
    }

    fn closed() -> StoreError {
        backend("the database is closed after an I/O error; it is reopened on the next write")
    }

    /// The schema version recorded in the file.
    ///
    /// # Errors
    /// Database errors.
    pub fn version(&self) -> anyhow::Result<u64> {
        let g = self.db().map_err(|e| anyhow::anyhow!("{e}"))?;
        migrate::version(
            g.as_ref()
                .ok_or_else(|| anyhow::anyhow!("{}", Self::closed()))?,
        )
    }

    /// A value of the meta table.
    ///
    /// # Errors
    /// Database errors.
    pub fn meta(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.get(Table::Meta, key.as_bytes())
    }

    /// Sets a value of the meta table (its own transaction).
    ///
    /// # Errors
    /// Database errors.
    pub fn set_meta(&self, key: &str, value: &[u8]) -> Result<(), StoreError> {
        self.transact(&mut |t| t.put(Table::Meta, key.as_bytes(), value))
    }

    fn read_table<R>(
        &self,
        table: Table,
        f: impl FnOnce(&redb::ReadOnlyTable<&'static [u8], &'static [u8]>) -> Result<R, StoreError>,
        empty: R,
    ) -> Result<R, StoreError> {
        let g = self.db()?;
        let r = g
            .as_ref()
            .ok_or_else(Self::closed)?
            .begin_read()
            .map_err(backend)?;
        match r.open_table(def(table)) {
            Ok(t) => f(&t),
            Err(TableError::TableDoesNotExist(_)) => Ok(empty),
            Err(e) => Err(backend(e)),
        }
    }
}

fn scan_table(
    t: &impl ReadableTable<&'static [u8], &'static [u8]>,
    prefix: &[u8],
    after: Option<&[u8]>,
    limit: usize,
) -> Result<Vec<Row>, StoreError> {
    use std::ops::Bound;
    let start = match after {
        Some(a) if a >= prefix => Bound::Excluded(a),
        _ => Bound::Included(prefix),
    };
    let end = prefix_end(prefix);
    let end_b = match &end {
        Some(e) => Bound::Excluded(e.as_slice()),
        None => Bound::Unbounded,
    };
    let mut out = Vec::new();
    for e in t.range::<&[u8]>((start, end_b)).map_err(backend)? {
        if out.len() >= limit {
            break;
        }
        let (k, v) = e.map_err(backend)?;
        out.push((k.value().to_vec(), v.value().to_vec()));
    }
    Ok(out)
}

fn last_in(
    t: &impl ReadableTable<&'static [u8], &'static [u8]>,
    prefix: &[u8],
) -> Result<Option<Row>, StoreError> {
    use std::ops::Bound;
    let end = prefix_end(prefix);
    let end_b = match &end {
        Some(e) => Bound::Excluded(e.as_slice()),
        None => Bound::Unbounded,
    };
    let mut r = t
        .range::<&[u8]>((Bound::Included(prefix), end_b))
        .map_err(backend)?;
    match r.next_back() {
        Some(e) => {
            let (k, v) = e.map_err(backend)?;
            Ok(Some((k.value().to_vec(), v.value().to_vec())))
        }
        None => Ok(None),
    }
}

struct RedbTxn<'a> {
    w: &'a redb::WriteTransaction,
}

impl Txn for RedbTxn<'_> {
    fn get(&mut self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        let t = self.w.open_table(def(table)).map_err(backend)?;
        let v = t.get(key).map_err(backend)?;
        Ok(v.map(|v| v.value().to_vec()))
    }

    fn put(&mut self, table: Table, key: &[u8], value: &[u8]) -> Result<(), StoreError> {
        let mut t = self.w.open_table(def(table)).map_err(backend)?;
        t.insert(key, value).map_err(backend)?;
        Ok(())
    }

    fn delete(&mut self, table: Table, key: &[u8]) -> Result<(), StoreError> {
        let mut t = self.w.open_table(def(table)).map_err(backend)?;
        t.remove(key).map_err(backend)?;
        Ok(())
    }

    fn scan(
        &mut self,
        table: Table,
        prefix: &[u8],
        after: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<Row>, StoreError> {
        let t = self.w.open_table(def(table)).map_err(backend)?;
        scan_table(&t, prefix, after, limit)
    }

    fn last(&mut self, table: Table, prefix: &[u8]) -> Result<Option<Row>, StoreError> {
        let t = self.w.open_table(def(table)).map_err(backend)?;
        last_in(&t, prefix)
    }
}

impl Store for RedbStore {
    fn get(&self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        self.read_table(
            table,
            |t| Ok(t.get(key).map_err(backend)?.map(|v| v.value().to_vec())),
            None,
        )
    }

    fn scan(
        &self,
        table: Table,
        prefix: &[u8],
        after: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<Row>, StoreError> {
        self.read_table(table, |t| scan_table(t, prefix, after, limit), Vec::new())
    }

    fn last(&self, table: Table, prefix: &[u8]) -> Result<Option<Row>, StoreError> {
        self.read_table(table, |t| last_in(t, prefix), None)
    }

    fn transact(
        &self,
        f: &mut dyn FnMut(&mut dyn Txn) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        let failed_io = {
            let g = self.db()?;
            let db = g.as_ref().ok_or_else(Self::closed)?;
            let w = match db.begin_write() {
                Ok(w) => w,
                Err(redb::TransactionError::Storage(e)) if io_failure(&e) => {
                    drop(g);
                    let _ = self.reopen();
                    return Err(backend(e));
                }
                Err(e) => return Err(backend(e)),
            };
            let r = f(&mut RedbTxn { w: &w });
            match r {
                Ok(()) => match w.commit() {
                    Ok(()) => return Ok(()),
                    Err(redb::CommitError::Storage(e)) if io_failure(&e) => e,
                    Err(e) => return Err(backend(e)),
                },
                Err(e) => {
                    let _ = w.abort();
                    return Err(e);
                }
            }
        };
        // Nothing of the failed commit is in the file; redb wants it opened again.
        let _ = self.reopen();
        Err(backend(failed_io))
    }
}

/// Refuses to open a file whose schema is newer than this build's.
fn check_version(v: u64) -> anyhow::Result<()> {
    if v > SCHEMA_VERSION {
        bail!(
            "the database has schema version {v}; this mimi understands up to {SCHEMA_VERSION} (upgrade mimi)"
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;
    use std::sync::Arc;

    use super::*;

    fn tmp(name: &str) -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!("mimi-store-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        d.join("gw.redb")
    }

    /// Against a real PostgreSQL (`scripts/pg.sh start`; `MIMI_TEST_PG` names it): the same
    /// suite as redb. Skipped with a message when no database is given.
    #[test]
    fn postgres_passes_the_storage_suite() {
        let Ok(url) = std::env::var("MIMI_TEST_PG") else {
            eprintln!("MIMI_TEST_PG is not set (scripts/pg.sh start): skipped");
            return;
        };
        let mut n = 0;
        let pid = std::process::id();
        mimi_engine::store::suite::run(&mut || {
            n += 1;
            Arc::new(pg::PgStore::open(&fresh_db(&url, &format!("suite_{pid}_{n}")), 2).unwrap())
        });
    }

    #[test]
    fn postgres_leases_fence_stale_holders() {
        let Ok(url) = std::env::var("MIMI_TEST_PG") else {
            eprintln!("MIMI_TEST_PG is not set (scripts/pg.sh start): skipped");
            return;
        };
        let s = pg::PgStore::open(&fresh_db(&url, &format!("lease_{}", std::process::id())), 2)
            .unwrap();
        let ttl = std::time::Duration::from_millis(300);
        let t1 = s.lease("mimi://a/r/x", "node1", ttl).unwrap().unwrap();
        assert_eq!(
            s.lease("mimi://a/r/x", "node2", ttl).unwrap(),
            None,
            "held by node1"
        );
        assert_eq!(
            s.lease("mimi://a/r/x", "node1", ttl).unwrap(),
            Some(t1),
            "renewed"
        );
        let fenced = |token: u64| {
            s.transact(&mut |t| {
                t.put(Table::Meta, b"k", &token.to_be_bytes())?;
                t.check_fence("mimi://a/r/x", token)
            })
        };
        fenced(t1).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(400));
        let t2 = s.lease("mimi://a/r/x", "node2", ttl).unwrap().unwrap();
        assert!(t2 > t1, "a takeover gets a greater token");
        // node1 lost the lease: its write is refused and nothing of it applies.
        assert!(matches!(fenced(t1), Err(StoreError::Fenced { .. })));
        assert_eq!(
            s.get(Table::Meta, b"k").unwrap(),
            Some(t1.to_be_bytes().to_vec())
        );
        fenced(t2).unwrap();
    }

    /// A database of its own for one test (created on the server of `url`).
    fn fresh_db(url: &str, name: &str) -> String {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let (c, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
                .await
                .unwrap();
            tokio::spawn(conn);
            let _ = c
                .batch_execute(&format!("DROP DATABASE IF EXISTS {name}"))
                .await;
            c.batch_execute(&format!("CREATE DATABASE {name}"))
                .await
                .unwrap();
        });
        let base = url.rsplit_once('/').map_or(url, |(b, _)| b);
        format!("{base}/{name}")
    }

    #[test]
    fn redb_passes_the_storage_suite() {
        let mut n = 0;
        mimi_engine::store::suite::run(&mut || {
            n += 1;
            Arc::new(RedbStore::open(&tmp(&format!("suite{n}"))).unwrap())
        });
        let p = tmp("durable");
        mimi_engine::store::suite::run_durability(&mut |fresh| {
            if fresh {
                let _ = std::fs::remove_file(&p);
            }
            Arc::new(RedbStore::open(&p).unwrap())
        });
    }

    #[test]
    fn secrets_are_private_from_creation() {
        let p = tmp("perms");
        let s = RedbStore::open(&p).unwrap();
        s.set_meta("hub_signer", b"secret").unwrap();
        let mode = std::fs::metadata(&p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "database mode {mode:o}");
        let dmode = std::fs::metadata(p.parent().unwrap())
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(dmode, 0o700, "directory mode {dmode:o}");
    }

    #[test]
    fn refuses_a_newer_file() {
        let p = tmp("newer");
        {
            let s = RedbStore::open(&p).unwrap();
            s.set_meta("schema_version", &99u64.to_be_bytes()).unwrap();
        }
        let e = RedbStore::open(&p).unwrap_err();
        assert!(format!("{e:#}").contains("schema version 99"), "{e:#}");
    }
}
