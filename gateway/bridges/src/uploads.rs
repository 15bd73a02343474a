//! The XMPP component's HTTP file upload service (XEP-0363), served by the gateway: XMPP
//! clients ask the component for a slot, PUT the file, and send its GET URL; the bridge
//! stores files a MIMI user sent (decrypted from the MIMI asset) the same way.
//!
//! Bounds: one file at most `max_bytes`; all files at most `quota_bytes` (the oldest are
//! deleted past it); slots expire after [`SLOT_TTL`] and at most [`MAX_SLOTS`] are open.
//! Files are created 0600 in a 0700 directory. Only URLs of this service are ever fetched
//! by the bridge (never an arbitrary URL from a stanza).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Method, Request, Response};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;

/// How long a slot may wait for its PUT.
pub const SLOT_TTL: Duration = Duration::from_secs(300);
/// Open slots at most.
pub const MAX_SLOTS: usize = 10_000;

/// Why a slot is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SlotError {
    /// Over the size limit.
    #[error("file too large: the limit is {max} bytes")]
    TooLarge {
        /// The limit.
        max: u64,
    },
    /// A name that cannot be a file name.
    #[error("bad file name")]
    BadName,
    /// Storage failure.
    #[error("upload storage: {0}")]
    Io(String),
}

#[derive(Debug, Clone)]
struct Slot {
    name: String,
    size: u64,
    content_type: String,
    expires: Instant,
}

/// The upload service.
#[derive(Debug)]
pub struct Uploads {
    dir: PathBuf,
    base: String,
    max: u64,
    quota: u64,
    slots: Mutex<HashMap<String, Slot>>,
    io: Mutex<()>,
}

fn safe_name(name: &str) -> Option<String> {
    let n: String = name
        .chars()
        .filter(|c| c.is_alphanumeric() || matches!(c, '.' | '-' | '_'))
        .take(100)
        .collect();
    let n = n.trim_start_matches('.');
    (!n.is_empty()).then(|| n.to_owned())
}

fn io(e: std::io::Error) -> SlotError {
    SlotError::Io(e.to_string())
}

impl Uploads {
    /// Files under `dir`, served at `base` (`http://host:port`).
    ///
    /// # Errors
    /// The directory cannot be made.
    pub fn new(dir: PathBuf, base: &str, max: u64, quota: u64) -> std::io::Result<Self> {
        std::fs::create_dir_all(&dir)?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))?;
        }
        Ok(Self {
            dir,
            base: base.trim_end_matches('/').to_owned(),
            max,
            quota,
            slots: Mutex::new(HashMap::new()),
            io: Mutex::new(()),
        })
    }

    fn slots(&self) -> std::sync::MutexGuard<'_, HashMap<String, Slot>> {
        self.slots
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// A slot for a file: its PUT and GET URLs.
    ///
    /// # Errors
    /// [`SlotError`].
    pub fn slot(
        &self,
        filename: &str,
        size: u64,
        content_type: &str,
    ) -> Result<(String, String), SlotError> {
        if size > self.max {
            return Err(SlotError::TooLarge { max: self.max });
        }
        let name = safe_name(filename).ok_or(SlotError::BadName)?;
        let token = hex::encode(rand::random::<[u8; 16]>());
        let mut slots = self.slots();
        let now = Instant::now();
        slots.retain(|_, s| s.expires > now);
        if slots.len() >= MAX_SLOTS {
            return Err(SlotError::Io("too many uploads in progress".into()));
        }
        slots.insert(
            token.clone(),
            Slot {
                name: name.clone(),
                size,
                content_type: content_type.to_owned(),
                expires: now + SLOT_TTL,
            },
        );
        Ok((
            format!("{}/upload/{token}/{name}", self.base),
            format!("{}/file/{token}/{name}", self.base),
        ))
    }

    fn write(&self, token: &str, bytes: &[u8], content_type: &str) -> Result<(), SlotError> {
        let _one = self
            .io
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let path = self.dir.join(token);
        let mut o = std::fs::OpenOptions::new();
        o.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt as _;
            o.mode(0o600);
        }
        use std::io::Write as _;
        let mut f = o.open(&path).map_err(io)?;
        f.write_all(bytes).map_err(io)?;
        f.sync_all().map_err(io)?;
        std::fs::write(self.dir.join(format!("{token}.type")), content_type).map_err(io)?;
        self.enforce_quota();
        Ok(())
    }

    /// Stores a file the bridge received from MIMI; returns its GET URL.
    ///
    /// # Errors
    /// [`SlotError`].
    pub fn store(
        &self,
        bytes: &[u8],
        content_type: &str,
        filename: &str,
    ) -> Result<String, SlotError> {
        if bytes.len() as u64 > self.max {
            return Err(SlotError::TooLarge { max: self.max });
        }
        let name = safe_name(filename).unwrap_or_else(|| "file".into());
        let token = hex::encode(rand::random::<[u8; 16]>());
        self.write(&token, bytes, content_type)?;
        Ok(format!("{}/file/{token}/{name}", self.base))
    }

    /// The bytes behind one of this service's GET URLs (None for any other URL).
    pub fn read(&self, url: &str) -> Option<Vec<u8>> {
        let rest = url.strip_prefix(&self.base)?.strip_prefix("/file/")?;
        let (token, _) = rest.split_once('/')?;
        if token.len() != 32 || !token.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        std::fs::read(self.dir.join(token)).ok()
    }

    /// Deletes the oldest files while the total is over the quota.
    fn enforce_quota(&self) {
        let Ok(rd) = std::fs::read_dir(&self.dir) else {
            return;
        };
        let mut files: Vec<(std::time::SystemTime, u64, PathBuf)> = rd
            .filter_map(Result::ok)
            .filter(|e| !e.file_name().to_string_lossy().ends_with(".type"))
            .filter_map(|e| {
                let m = e.metadata().ok()?;
                Some((m.modified().ok()?, m.len(), e.path()))
            })
            .collect();
        let mut total: u64 = files.iter().map(|f| f.1).sum();
        files.sort();
        for (_, len, path) in files {
            if total <= self.quota {
                break;
            }
            let _ = std::fs::remove_file(&path);
            let _ = std::fs::remove_file(path.with_extension("type"));
            total = total.saturating_sub(len);
        }
    }

    /// Serves PUT `/upload/<token>/<name>` and GET `/file/<token>/<name>`.
    pub async fn http(self: Arc<Self>, req: Request<Incoming>) -> Response<Full<Bytes>> {
        let reply = |status: u16, body: &str| {
            Response::builder()
                .status(status)
                .header(http::header::CONTENT_TYPE, "text/plain; charset=utf-8")
                .body(Full::new(Bytes::from(body.to_owned())))
                .unwrap_or_else(|_| Response::new(Full::new(Bytes::new())))
        };
        let path = req.uri().path().to_owned();
        let parts: Vec<&str> = path.trim_start_matches('/').splitn(3, '/').collect();
        match (req.method().clone(), parts.as_slice()) {
            (Method::PUT, ["upload", token, name]) => {
                let slot = self.slots().get(*token).cloned();
                let Some(slot) = slot.filter(|s| s.expires > Instant::now() && s.name == *name)
                else {
                    return reply(403, "no such upload slot (or it expired)\n");
                };
                let declared = req
                    .headers()
                    .get(http::header::CONTENT_LENGTH)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.parse::<u64>().ok());
                if declared != Some(slot.size) {
                    return reply(
                        400,
                        &format!("Content-Length must be the slot's size, {}\n", slot.size),
                    );
                }
                let body = match Limited::new(req.into_body(), slot.size as usize)
                    .collect()
                    .await
                {
                    Ok(b) => b.to_bytes(),
                    Err(_) => return reply(413, "more bytes than the slot's size\n"),
                };
                if body.len() as u64 != slot.size {
                    return reply(400, "fewer bytes than the slot's size\n");
                }
                self.slots().remove(*token);
                let me = Arc::clone(&self);
                let token = (*token).to_owned();
                match tokio::task::spawn_blocking(move || {
                    me.write(&token, &body, &slot.content_type)
                })
                .await
                {
                    Ok(Ok(())) => reply(201, ""),
                    Ok(Err(e)) => {
                        tracing::warn!(error = %e, "upload storage failed");
                        reply(507, "the upload could not be stored\n")
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "upload task failed");
                        reply(507, "the upload could not be stored\n")
                    }
                }
            }
            (Method::GET | Method::HEAD, ["file", token, _]) => {
                let url = format!("{}{}", self.base, path);
                let me = Arc::clone(&self);
                let ct = std::fs::read_to_string(self.dir.join(format!("{token}.type")))
                    .unwrap_or_else(|_| "application/octet-stream".into());
                match tokio::task::spawn_blocking(move || me.read(&url)).await {
                    Ok(Some(b)) => Response::builder()
                        .status(200)
                        .header(http::header::CONTENT_TYPE, ct)
                        .body(Full::new(Bytes::from(b)))
                        .unwrap_or_else(|_| Response::new(Full::new(Bytes::new()))),
                    _ => reply(404, "no such file\n"),
                }
            }
            _ => reply(404, "not an upload URL\n"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_files_and_quota() {
        let dir = std::env::temp_dir().join(format!("mimi-uploads-{}", rand::random::<u64>()));
        let u = Uploads::new(dir.clone(), "http://127.0.0.1:1", 100, 150).unwrap();
        assert_eq!(
            u.slot("a.png", 101, "image/png").unwrap_err(),
            SlotError::TooLarge { max: 100 }
        );
        assert_eq!(u.slot("...", 1, "x").unwrap_err(), SlotError::BadName);
        let (put, get) = u.slot("../../etc/passwd", 5, "text/plain").unwrap();
        assert!(
            put.contains("/upload/") && get.ends_with("/etcpasswd"),
            "{put} {get}"
        );
        let url1 = u.store(&[1; 80], "a/b", "one").unwrap();
        assert_eq!(u.read(&url1), Some(vec![1; 80]));
        std::thread::sleep(Duration::from_millis(20));
        let url2 = u.store(&[2; 80], "a/b", "two").unwrap();
        assert_eq!(u.read(&url1), None, "the oldest is deleted past the quota");
        assert_eq!(u.read(&url2), Some(vec![2; 80]));
        assert_eq!(u.read("http://elsewhere/file/x/y"), None);
        assert_eq!(u.read("http://127.0.0.1:1/file/../../x"), None);
        let _ = std::fs::remove_dir_all(dir);
    }
}
