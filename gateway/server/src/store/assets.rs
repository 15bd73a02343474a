//! Encrypted attachments (MIMI assets) as files beside the database, content-addressed
//! (`<db>.assets/<id[..2]>/<id>`, id = SHA-256 of the bytes), with a row per (owner, asset) in
//! [`Table::Assets`]. Uploads are bounded per asset and per owner; the bytes are written to a
//! file, so a 25 MiB upload never holds the store's write lock (only its small row does).
//!
//! Assets are end-to-end encrypted: the gateway cannot see which messages point at which
//! asset. They are therefore kept for a retention period (default 30 days), then collected
//! ([`AssetStore::collect`]), together with files that no row names.

use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use mimi_engine::store::rows::{self, AssetRow};
use mimi_engine::store::{Store, StoreError, Table, keys};
use sha2::Digest;

/// The owner recorded for assets migrated from schema 2 (which recorded none).
pub const LEGACY_OWNER: &str = "legacy";
/// Most assets one owner may hold (their rows are scanned to compute the quota).
const MAX_ASSETS_PER_OWNER: usize = 10_000;

/// Where the assets of the database at `db` live.
pub fn dir_of(db: &Path) -> PathBuf {
    db.with_extension("assets")
}

fn file_of(dir: &Path, id: &str) -> PathBuf {
    dir.join(&id[..2.min(id.len())]).join(id)
}

fn valid_id(id: &str) -> bool {
    id.len() == 64
        && id
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
}

/// Writes an asset file atomically (temporary file, fsync, rename), readable by this user only.
///
/// # Errors
/// IO errors.
pub fn write_file(dir: &Path, id: &str, bytes: &[u8]) -> std::io::Result<()> {
    let path = file_of(dir, id);
    if path.exists() {
        return Ok(());
    }
    let parent = path.parent().unwrap_or(dir);
    super::private_dir(parent)?;
    let tmp = parent.join(format!(".{id}.{}", std::process::id()));
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, &path)
}

/// Why an upload or download failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AssetError {
    /// Larger than one asset may be.
    #[error("the asset is {size} bytes; at most {max} are accepted")]
    TooLarge {
        /// Its size.
        size: u64,
        /// The limit.
        max: u64,
    },
    /// The owner's quota is used up.
    #[error(
        "{owner} already stores {used} bytes of assets; the quota is {max} (old ones expire after the retention period)"
    )]
    Quota {
        /// Who.
        owner: String,
        /// Bytes held.
        used: u64,
        /// The quota.
        max: u64,
    },
    /// No such asset.
    #[error("no such asset")]
    NotFound,
    /// Storage failed.
    #[error("asset storage: {0}")]
    Storage(String),
}

impl From<StoreError> for AssetError {
    fn from(e: StoreError) -> Self {
        Self::Storage(e.to_string())
    }
}

impl From<std::io::Error> for AssetError {
    fn from(e: std::io::Error) -> Self {
        Self::Storage(e.to_string())
    }
}

/// The asset files and their rows.
#[derive(Debug, Clone)]
pub struct AssetStore {
    dir: PathBuf,
    store: Arc<dyn Store>,
    /// Largest asset.
    pub max_bytes: u64,
    /// Bytes one owner may hold.
    pub quota_bytes: u64,
    /// How long an asset is kept.
    pub retention_ms: u64,
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl AssetStore {
    /// Assets in `dir`, rows in `store`.
    pub fn new(
        dir: PathBuf,
        store: Arc<dyn Store>,
        max_bytes: u64,
        quota_bytes: u64,
        retention_ms: u64,
    ) -> Self {
        Self {
            dir,
            store,
            max_bytes,
            quota_bytes,
            retention_ms,
        }
    }

    /// Bytes held by `owner`.
    ///
    /// # Errors
    /// Storage failures.
    pub fn used(&self, owner: &str) -> Result<u64, AssetError> {
        let rows = self.store.scan(
            Table::Assets,
            &keys::prefix(&[owner.as_bytes()]),
            None,
            MAX_ASSETS_PER_OWNER,
        )?;
        let mut used = 0;
        for (_, v) in rows {
            used += rows::decode::<AssetRow>(Table::Assets, &v)?.bytes;
        }
        Ok(used)
    }

    /// Stores an upload of `owner`; returns its id. Blocking (call from a blocking task).
    ///
    /// # Errors
    /// Size, quota or storage.
    pub fn put(&self, owner: &str, bytes: &[u8]) -> Result<String, AssetError> {
        let size = bytes.len() as u64;
        if size > self.max_bytes {
            return Err(AssetError::TooLarge {
                size,
                max: self.max_bytes,
            });
        }
        let used = self.used(owner)?;
        if used + size > self.quota_bytes {
            return Err(AssetError::Quota {
                owner: owner.to_owned(),
                used,
                max: self.quota_bytes,
            });
        }
        let id = hex::encode(sha2::Sha256::digest(bytes));
        write_file(&self.dir, &id, bytes)?;
        let key = keys::join(&[owner.as_bytes(), id.as_bytes()]);
        let row = rows::encode(&AssetRow {
            bytes: size,
            created_ms: now_ms(),
        });
        self.store
            .transact(&mut |t| t.put(Table::Assets, &key, &row))?;
        Ok(id)
    }

    /// The bytes of an asset. Blocking.
    ///
    /// # Errors
    /// Not found or storage.
    pub fn get(&self, id: &str) -> Result<Vec<u8>, AssetError> {
        if !valid_id(id) {
            return Err(AssetError::NotFound);
        }
        match std::fs::read(file_of(&self.dir, id)) {
            Ok(b) => Ok(b),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(AssetError::NotFound),
            Err(e) => Err(e.into()),
        }
    }

    /// Removes assets older than the retention period (up to `max_rows` rows looked at) and
    /// files no row names; returns how many files were removed. Blocking.
    ///
    /// # Errors
    /// Storage failures.
    pub fn collect(&self, max_rows: usize) -> Result<usize, AssetError> {
        let cutoff = now_ms().saturating_sub(self.retention_ms);
        let rows = self.store.scan(Table::Assets, b"", None, max_rows)?;
        let mut live = std::collections::BTreeSet::new();
        let mut expired = Vec::new();
        for (k, v) in rows {
            let row: AssetRow = rows::decode(Table::Assets, &v)?;
            let parts = keys::split_text(&k);
            let Some(id) = parts.get(1).cloned() else {
                continue;
            };
            if row.created_ms < cutoff {
                expired.push(k);
            } else {
                live.insert(id);
            }
        }
        if !expired.is_empty() {
            self.store.transact(&mut |t| {
                for k in &expired {
                    t.delete(Table::Assets, k)?;
                }
                Ok(())
            })?;
        }
        let mut removed = 0;
        let Ok(shards) = std::fs::read_dir(&self.dir) else {
            return Ok(0);
        };
        for shard in shards.flatten() {
            let Ok(files) = std::fs::read_dir(shard.path()) else {
                continue;
            };
            for f in files.flatten() {
                let name = f.file_name().to_string_lossy().into_owned();
                let old = f
                    .metadata()
                    .and_then(|m| m.modified())
                    .ok()
                    .and_then(|t| t.elapsed().ok())
                    .is_some_and(|age| age.as_secs() > 3600);
                if valid_id(&name)
                    && !live.contains(&name)
                    && old
                    && std::fs::remove_file(f.path()).is_ok()
                {
                    removed += 1;
                }
            }
        }
        Ok(removed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quota_size_and_collection() {
        let dir = std::env::temp_dir().join(format!("mimi-assets-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let store: Arc<dyn Store> = Arc::new(mimi_engine::store::MemStore::default());
        let a = AssetStore::new(dir.clone(), Arc::clone(&store), 100, 150, 60_000);
        assert!(matches!(
            a.put("alice/phone", &[0; 101]),
            Err(AssetError::TooLarge { .. })
        ));
        let id = a.put("alice/phone", &[1; 100]).unwrap();
        assert_eq!(a.get(&id).unwrap(), vec![1; 100]);
        assert!(matches!(
            a.put("alice/phone", &[2; 60]),
            Err(AssetError::Quota { used: 100, .. })
        ));
        assert!(
            a.put("bob/laptop", &[2; 60]).is_ok(),
            "quotas are per owner"
        );
        assert!(matches!(
            a.get("../../etc/passwd"),
            Err(AssetError::NotFound)
        ));
        // Nothing expires within the retention period.
        assert_eq!(a.collect(100).unwrap(), 0);
        assert!(a.get(&id).is_ok());
        let expired = AssetStore::new(dir.clone(), Arc::clone(&store), 100, 150, 0);
        std::thread::sleep(std::time::Duration::from_millis(5));
        expired.collect(100).unwrap();
        assert_eq!(
            a.used("alice/phone").unwrap(),
            0,
            "rows of expired assets go"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
