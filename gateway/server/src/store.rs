//! Embedded storage on redb: one file per gateway, ACID, crash-safe.
//!
//! Tables: `engine` (the engine's records; every write batch is committed in one transaction),
//! `assets` (uploaded encrypted attachments) and `meta` (schema version, the hub's keys).
//!
//! Schema versions: 1 kept assets inside `engine` under `asset/<id>`; 2 moves them to their own
//! table so engine restores do not read attachment bytes. [`Store::open`] migrates older files
//! in place, in one transaction, and refuses files written by a newer version.

use std::path::Path;

use anyhow::{Context, bail};
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};

/// The current schema version.
pub const SCHEMA_VERSION: u64 = 2;

const ENGINE: TableDefinition<'_, &[u8], &[u8]> = TableDefinition::new("engine");
const ASSETS: TableDefinition<'_, &str, &[u8]> = TableDefinition::new("assets");
const META: TableDefinition<'_, &str, &[u8]> = TableDefinition::new("meta");
const BRIDGE: TableDefinition<'_, &str, &[u8]> = TableDefinition::new("bridge");

/// The gateway's database.
#[derive(Debug)]
pub struct Store {
    db: Database,
}

impl Store {
    /// Opens (creating if needed) and migrates `path`.
    ///
    /// # Errors
    /// IO errors, a corrupt file, or a file from a newer version.
    pub fn open(path: &Path) -> anyhow::Result<Self> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
        }
        let db = Database::create(path)
            .with_context(|| format!("cannot open database {}", path.display()))?;
        let store = Self { db };
        store
            .migrate()
            .with_context(|| format!("cannot migrate {}", path.display()))?;
        Ok(store)
    }

    /// The schema version recorded in the file.
    ///
    /// # Errors
    /// Database errors.
    pub fn version(&self) -> anyhow::Result<u64> {
        let r = self.db.begin_read()?;
        let v = match r.open_table(META) {
            Ok(t) => t
                .get("schema_version")?
                .map(|v| u64::from_be_bytes(v.value().try_into().unwrap_or_default())),
            Err(redb::TableError::TableDoesNotExist(_)) => None,
            Err(e) => return Err(e.into()),
        };
        Ok(v.unwrap_or(0))
    }

    fn migrate(&self) -> anyhow::Result<()> {
        let version = self.version()?;
        if version > SCHEMA_VERSION {
            bail!(
                "the database has schema version {version}; this mimi understands up to {SCHEMA_VERSION} (upgrade mimi)"
            );
        }
        if version == SCHEMA_VERSION {
            return Ok(());
        }
        let w = self.db.begin_write()?;
        {
            let mut engine = w.open_table(ENGINE)?;
            let mut assets = w.open_table(ASSETS)?;
            if version < 2 {
                // v1 → v2: assets leave the engine table.
                let moved: Vec<(String, Vec<u8>)> = engine
                    .range(b"asset/".as_slice()..b"asset0".as_slice())?
                    .map(|e| {
                        e.map(|(k, v)| {
                            (
                                String::from_utf8_lossy(&k.value()["asset/".len()..]).into_owned(),
                                v.value().to_vec(),
                            )
                        })
                    })
                    .collect::<Result<_, _>>()?;
                for (id, bytes) in &moved {
                    assets.insert(id.as_str(), bytes.as_slice())?;
                    engine.remove(format!("asset/{id}").as_bytes())?;
                }
                if !moved.is_empty() {
                    tracing::info!(
                        assets = moved.len(),
                        "migrated assets to their own table (schema 2)"
                    );
                }
            }
            let mut meta = w.open_table(META)?;
            meta.insert("schema_version", SCHEMA_VERSION.to_be_bytes().as_slice())?;
        }
        w.commit()?;
        Ok(())
    }

    /// Every engine record, for [`mimi_engine::Engine::restore`].
    ///
    /// # Errors
    /// Database errors.
    pub fn load_engine(&self) -> anyhow::Result<Vec<(Vec<u8>, Vec<u8>)>> {
        let r = self.db.begin_read()?;
        let t = r.open_table(ENGINE)?;
        let mut out = Vec::new();
        for e in t.iter()? {
            let (k, v) = e?;
            out.push((k.value().to_vec(), v.value().to_vec()));
        }
        Ok(out)
    }

    /// Commits one engine write batch atomically and durably.
    ///
    /// # Errors
    /// Database errors (the batch is then not applied).
    pub fn commit(&self, batch: &mimi_engine::WriteBatch) -> anyhow::Result<()> {
        if batch.is_empty() {
            return Ok(());
        }
        let w = self.db.begin_write()?;
        {
            let mut t = w.open_table(ENGINE)?;
            for (k, v) in &batch.writes {
                match v {
                    Some(v) => {
                        t.insert(k.as_slice(), v.as_slice())?;
                    }
                    None => {
                        t.remove(k.as_slice())?;
                    }
                }
            }
        }
        w.commit()?;
        Ok(())
    }

    /// A value of the meta table.
    ///
    /// # Errors
    /// Database errors.
    pub fn meta(&self, key: &str) -> anyhow::Result<Option<Vec<u8>>> {
        let r = self.db.begin_read()?;
        let t = r.open_table(META)?;
        Ok(t.get(key)?.map(|v| v.value().to_vec()))
    }

    /// Sets a value of the meta table.
    ///
    /// # Errors
    /// Database errors.
    pub fn set_meta(&self, key: &str, value: &[u8]) -> anyhow::Result<()> {
        let w = self.db.begin_write()?;
        w.open_table(META)?.insert(key, value)?;
        w.commit()?;
        Ok(())
    }

    /// A bridge record (bridged users' MLS state, portals, the ID map).
    ///
    /// # Errors
    /// Database errors.
    pub fn bridge_get(&self, key: &str) -> anyhow::Result<Option<Vec<u8>>> {
        let r = self.db.begin_read()?;
        let t = match r.open_table(BRIDGE) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        Ok(t.get(key)?.map(|v| v.value().to_vec()))
    }

    /// Writes bridge records in one transaction.
    ///
    /// # Errors
    /// Database errors.
    pub fn bridge_put(&self, records: &[(String, Vec<u8>)]) -> anyhow::Result<()> {
        let w = self.db.begin_write()?;
        {
            let mut t = w.open_table(BRIDGE)?;
            for (k, v) in records {
                t.insert(k.as_str(), v.as_slice())?;
            }
        }
        w.commit()?;
        Ok(())
    }

    /// Stores an asset.
    ///
    /// # Errors
    /// Database errors.
    pub fn put_asset(&self, id: &str, bytes: &[u8]) -> anyhow::Result<()> {
        let w = self.db.begin_write()?;
        w.open_table(ASSETS)?.insert(id, bytes)?;
        w.commit()?;
        Ok(())
    }

    /// Reads an asset.
    ///
    /// # Errors
    /// Database errors.
    pub fn asset(&self, id: &str) -> anyhow::Result<Option<Vec<u8>>> {
        let r = self.db.begin_read()?;
        let t = r.open_table(ASSETS)?;
        Ok(t.get(id)?.map(|v| v.value().to_vec()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmp(name: &str) -> std::path::PathBuf {
        let p = std::env::temp_dir().join(format!("mimi-store-{}-{name}.redb", std::process::id()));
        let _ = std::fs::remove_file(&p);
        p
    }

    #[test]
    fn batches_survive_reopen() {
        let p = tmp("reopen");
        {
            let s = Store::open(&p).unwrap();
            let mut b = mimi_engine::WriteBatch::default();
            b.writes.push((b"c/x".to_vec(), Some(b"1".to_vec())));
            b.writes.push((b"c/y".to_vec(), Some(b"2".to_vec())));
            b.writes.push((b"c/x".to_vec(), None));
            s.commit(&b).unwrap();
        }
        let s = Store::open(&p).unwrap();
        assert_eq!(
            s.load_engine().unwrap(),
            vec![(b"c/y".to_vec(), b"2".to_vec())]
        );
        assert_eq!(s.version().unwrap(), SCHEMA_VERSION);
    }

    #[test]
    fn migrates_a_version_1_file() {
        let p = tmp("v1");
        // A file as version 1 wrote it: assets in the engine table, version 1.
        {
            let db = Database::create(&p).unwrap();
            let w = db.begin_write().unwrap();
            {
                let mut e = w.open_table(ENGINE).unwrap();
                e.insert(b"asset/abc".as_slice(), b"blob".as_slice())
                    .unwrap();
                e.insert(b"c/alice".as_slice(), b"{}".as_slice()).unwrap();
                w.open_table(META)
                    .unwrap()
                    .insert("schema_version", 1u64.to_be_bytes().as_slice())
                    .unwrap();
            }
            w.commit().unwrap();
        }
        let s = Store::open(&p).unwrap();
        assert_eq!(s.version().unwrap(), 2);
        assert_eq!(s.asset("abc").unwrap().as_deref(), Some(b"blob".as_slice()));
        assert_eq!(
            s.load_engine().unwrap(),
            vec![(b"c/alice".to_vec(), b"{}".to_vec())]
        );
    }

    #[test]
    fn refuses_a_newer_file() {
        let p = tmp("newer");
        {
            let s = Store::open(&p).unwrap();
            s.set_meta("schema_version", &99u64.to_be_bytes()).unwrap();
        }
        let e = Store::open(&p).unwrap_err();
        assert!(format!("{e:#}").contains("schema version 99"), "{e:#}");
    }
}
