//! The map between MIMI message IDs and provider message IDs, and the reaction bookkeeping
//! that providers with other reaction models need, as keyed rows.
//!
//! Only what a later edit, reply, reaction or deletion needs is kept, one small row per fact:
//!
//! | key | value |
//! |---|---|
//! | `n` provider, room, native ID | the MIMI ID of that version |
//! | `m` provider, room, MIMI ID | the native ID (the newest alias) |
//! | `v` MIMI ID | the first version's ID, the sender, a reaction's target and emoji |
//! | `r` room, reactor, target | the reactor's current reactions: emoji → reaction ID |
//! | `t` time, key | (the time index used for retention) |
//!
//! Every value starts with the time it was written (seconds); [`IdMap::expired`] lists the
//! rows older than a retention period, oldest first, through the time index, so a bridge
//! deletes them in small batches without scanning everything. A translation costs a few
//! point reads and writes whatever the history: the map is an overlay of this translation's
//! writes over committed rows ([`IdRows`]), drained with [`IdMap::take_changes`] into the
//! same transaction as the rest of the step. Without committed rows (tools, tests) the
//! overlay is the whole map.

use std::collections::BTreeMap;
use std::sync::Arc;

use mimi_content::MessageId;

use crate::Provider;

/// Committed rows of the map.
pub trait IdRows: Send + Sync {
    /// A committed row.
    ///
    /// # Errors
    /// A storage failure, as the store reports it.
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, RowsError>;
}

/// A storage failure while reading the map.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("ID map storage: {0}")]
pub struct RowsError(pub String);

/// A row change: the value, or `None` for a deletion.
pub type RowChange = (Vec<u8>, Option<Vec<u8>>);

/// What one MIMI message version is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Version {
    /// The first version's ID (itself for a new message).
    pub first: MessageId,
    /// The sender's user URI.
    pub sender: String,
    /// For a reaction: the target (first version) and the emoji.
    pub reaction: Option<(MessageId, String)>,
    /// The start of its plain text (what an XMPP reply quotes), empty once deleted.
    pub excerpt: String,
}

/// Longest excerpt kept (characters).
pub const EXCERPT_CHARS: usize = 200;

/// The ID map of one bridge (all rooms): an overlay of changes over committed rows.
#[derive(Default)]
pub struct IdMap {
    rows: Option<Arc<dyn IdRows>>,
    overlay: BTreeMap<Vec<u8>, Option<Vec<u8>>>,
    now_s: u64,
    /// The first read failure (lookups take `&self`).
    failure: std::sync::Mutex<Option<RowsError>>,
}

impl std::fmt::Debug for IdMap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IdMap")
            .field("backed", &self.rows.is_some())
            .field("overlay_rows", &self.overlay.len())
            .finish_non_exhaustive()
    }
}

const ID: usize = 32;

fn push_str(k: &mut Vec<u8>, s: &str) {
    let b = s.as_bytes();
    let n = u16::try_from(b.len()).unwrap_or(u16::MAX);
    k.extend_from_slice(&n.to_be_bytes());
    k.extend_from_slice(&b[..usize::from(n)]);
}

fn read_str(b: &[u8]) -> Option<(String, &[u8])> {
    let (n, rest) = b.split_first_chunk::<2>()?;
    let n = usize::from(u16::from_be_bytes(*n));
    let s = std::str::from_utf8(rest.get(..n)?).ok()?;
    Some((s.to_owned(), &rest[n..]))
}

fn read_id(b: &[u8]) -> Option<(MessageId, &[u8])> {
    let (id, rest) = b.split_first_chunk::<ID>()?;
    Some((MessageId(*id), rest))
}

fn provider_byte(p: Provider) -> u8 {
    match p {
        Provider::Matrix => 1,
        Provider::Xmpp => 2,
        Provider::Wire => 3,
        Provider::Native => 4,
    }
}

fn native_key(p: Provider, room: &str, native: &str) -> Vec<u8> {
    let mut k = vec![b'n', provider_byte(p)];
    push_str(&mut k, room);
    k.extend_from_slice(native.as_bytes());
    k
}

fn mimi_key(p: Provider, room: &str, id: &MessageId) -> Vec<u8> {
    let mut k = vec![b'm', provider_byte(p)];
    push_str(&mut k, room);
    k.extend_from_slice(id.as_bytes());
    k
}

fn version_key(id: &MessageId) -> Vec<u8> {
    let mut k = vec![b'v'];
    k.extend_from_slice(id.as_bytes());
    k
}

fn reactions_key(room: &str, reactor: &str, target: &MessageId) -> Vec<u8> {
    let mut k = vec![b'r'];
    push_str(&mut k, room);
    push_str(&mut k, reactor);
    k.extend_from_slice(target.as_bytes());
    k
}

/// The time-index key of `key` written at `at`.
fn time_key(at: u64, key: &[u8]) -> Vec<u8> {
    let mut k = vec![b't'];
    k.extend_from_slice(&at.to_be_bytes());
    k.extend_from_slice(key);
    k
}

/// The prefix of the time index (for a scan in time order).
pub const TIME_INDEX: &[u8] = b"t";

fn encode_version(v: &Version) -> Vec<u8> {
    let mut out = Vec::with_capacity(ID + 4 + v.sender.len());
    out.extend_from_slice(v.first.as_bytes());
    match &v.reaction {
        Some((t, e)) => {
            out.push(1);
            out.extend_from_slice(t.as_bytes());
            push_str(&mut out, e);
        }
        None => out.push(0),
    }
    push_str(&mut out, &v.excerpt);
    out.extend_from_slice(v.sender.as_bytes());
    out
}

fn decode_version(b: &[u8]) -> Option<Version> {
    let (first, rest) = read_id(b)?;
    let (flag, rest) = rest.split_first()?;
    let (reaction, rest) = match flag {
        0 => (None, rest),
        1 => {
            let (t, rest) = read_id(rest)?;
            let (e, rest) = read_str(rest)?;
            (Some((t, e)), rest)
        }
        _ => return None,
    };
    let (excerpt, rest) = read_str(rest)?;
    Some(Version {
        first,
        sender: std::str::from_utf8(rest).ok()?.to_owned(),
        reaction,
        excerpt,
    })
}

fn encode_reactions(m: &BTreeMap<String, MessageId>) -> Vec<u8> {
    let mut out = Vec::new();
    for (e, id) in m {
        out.extend_from_slice(id.as_bytes());
        push_str(&mut out, e);
    }
    out
}

fn decode_reactions(mut b: &[u8]) -> Option<BTreeMap<String, MessageId>> {
    let mut m = BTreeMap::new();
    while !b.is_empty() {
        let (id, rest) = read_id(b)?;
        let (e, rest) = read_str(rest)?;
        m.insert(e, id);
        b = rest;
    }
    Some(m)
}

impl IdMap {
    /// An empty map held in memory (tools and tests).
    pub fn new() -> Self {
        Self::default()
    }

    /// A map over committed rows; writes stay in the overlay until [`IdMap::take_changes`].
    pub fn over(rows: Arc<dyn IdRows>, now_s: u64) -> Self {
        Self {
            rows: Some(rows),
            now_s,
            ..Self::default()
        }
    }

    /// Sets the clock (seconds) stamped on rows written from now on.
    pub fn set_now(&mut self, now_s: u64) {
        self.now_s = now_s;
    }

    /// The first storage failure since the last call: a translation that read the map while
    /// the store failed may have missed a reference, so the caller fails the step (and the
    /// provider retries it) instead of keeping its result.
    pub fn take_failure(&mut self) -> Option<RowsError> {
        self.failure
            .get_mut()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take()
    }

    /// The rows written since the last call (time-index rows included), in key order.
    pub fn take_changes(&mut self) -> Vec<RowChange> {
        std::mem::take(&mut self.overlay).into_iter().collect()
    }

    /// Forgets the uncommitted writes (the step failed).
    pub fn discard(&mut self) {
        self.overlay.clear();
        self.take_failure();
    }

    fn read(&self, key: &[u8]) -> Option<Vec<u8>> {
        if let Some(v) = self.overlay.get(key) {
            return v.clone();
        }
        let rows = self.rows.as_ref()?;
        match rows.get(key) {
            Ok(v) => v,
            Err(e) => {
                self.failure
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .get_or_insert(e);
                None
            }
        }
    }

    /// The value of a row (without its time stamp).
    fn value(&self, key: &[u8]) -> Option<Vec<u8>> {
        self.read(key).and_then(|v| v.get(8..).map(<[u8]>::to_vec))
    }

    fn write(&mut self, key: Vec<u8>, value: &[u8]) {
        let mut v = Vec::with_capacity(8 + value.len());
        v.extend_from_slice(&self.now_s.to_be_bytes());
        v.extend_from_slice(value);
        self.overlay
            .insert(time_key(self.now_s, &key), Some(Vec::new()));
        self.overlay.insert(key, Some(v));
    }

    /// Records a MIMI message version (first version, sender, reaction facts, and the start
    /// of its text, cut at [`EXCERPT_CHARS`]).
    pub fn record_mimi(
        &mut self,
        id: MessageId,
        first: MessageId,
        sender: &str,
        reaction: Option<(MessageId, &str)>,
        text: &str,
    ) {
        let v = Version {
            first,
            sender: sender.to_owned(),
            reaction: reaction.map(|(t, e)| (t, e.to_owned())),
            excerpt: text.chars().take(EXCERPT_CHARS).collect(),
        };
        self.write(version_key(&id), &encode_version(&v));
    }

    /// Forgets the text of a deleted message (keeps the IDs so late references resolve).
    pub fn forget_text(&mut self, id: &MessageId) {
        if let Some(mut v) = self.version(id).filter(|v| !v.excerpt.is_empty()) {
            v.excerpt.clear();
            self.write(version_key(id), &encode_version(&v));
        }
    }

    /// Links a native ID (of `provider` in `native_room`) with a MIMI message version.
    pub fn link(&mut self, p: Provider, native_room: &str, native_id: &str, id: MessageId) {
        self.write(native_key(p, native_room, native_id), id.as_bytes());
        self.write(mimi_key(p, native_room, &id), native_id.as_bytes());
    }

    /// Adds another native ID for the same version (XMPP stanza-id, Matrix event ID learned
    /// after the transaction); the newest becomes the one used for references.
    pub fn alias(&mut self, p: Provider, native_room: &str, known: &str, other: &str) -> bool {
        let Some(id) = self.mimi_of(p, native_room, known) else {
            return false;
        };
        self.write(native_key(p, native_room, other), id.as_bytes());
        self.write(mimi_key(p, native_room, &id), other.as_bytes());
        true
    }

    /// The MIMI version a native ID names.
    pub fn mimi_of(&self, p: Provider, native_room: &str, native_id: &str) -> Option<MessageId> {
        self.value(&native_key(p, native_room, native_id))
            .and_then(|v| read_id(&v).map(|(id, _)| id))
    }

    /// The native ID of a MIMI version (the newest alias).
    pub fn native_of(&self, p: Provider, native_room: &str, id: &MessageId) -> Option<String> {
        self.value(&mimi_key(p, native_room, id))
            .and_then(|v| String::from_utf8(v).ok())
    }

    /// Facts about a MIMI version.
    pub fn version(&self, id: &MessageId) -> Option<Version> {
        self.value(&version_key(id))
            .and_then(|v| decode_version(&v))
    }

    /// The first version of the message `id` is a version of (itself if unknown).
    pub fn first_of(&self, id: &MessageId) -> MessageId {
        self.version(id).map_or(*id, |v| v.first)
    }

    /// The reactions `reactor` currently has on `target` (first version): emoji → reaction ID.
    pub fn reactions(
        &self,
        room: &str,
        reactor: &str,
        target: &MessageId,
    ) -> BTreeMap<String, MessageId> {
        self.value(&reactions_key(room, reactor, target))
            .and_then(|v| decode_reactions(&v))
            .unwrap_or_default()
    }

    /// Records a reaction.
    pub fn add_reaction(
        &mut self,
        room: &str,
        reactor: &str,
        target: &MessageId,
        emoji: &str,
        reaction: MessageId,
    ) {
        let mut m = self.reactions(room, reactor, target);
        m.insert(emoji.to_owned(), reaction);
        self.write(reactions_key(room, reactor, target), &encode_reactions(&m));
    }

    /// Removes a reaction (by its MIMI ID); returns its target and emoji.
    pub fn remove_reaction(
        &mut self,
        room: &str,
        reactor: &str,
        reaction: &MessageId,
    ) -> Option<(MessageId, String)> {
        let (target, emoji) = self.version(reaction)?.reaction?;
        let mut m = self.reactions(room, reactor, &target);
        if m.remove(&emoji).is_some() {
            let key = reactions_key(room, reactor, &target);
            if m.is_empty() {
                self.overlay.insert(key, None);
            } else {
                self.write(key, &encode_reactions(&m));
            }
        }
        Some((target, emoji))
    }

    /// Number of rows in the overlay (for a map held in memory: its size).
    pub fn overlay_len(&self) -> usize {
        self.overlay.len()
    }

    /// Given time-index rows (keys under [`TIME_INDEX`], ascending) and a way to read a row,
    /// the deletions that expire what was last written before `cutoff_s`: each index row,
    /// and its row when that row was not rewritten since. Stops at the first index row at or
    /// after the cutoff; returns the deletions and whether it stopped there.
    pub fn expired(
        index: &[Vec<u8>],
        cutoff_s: u64,
        read: &dyn Fn(&[u8]) -> Option<Vec<u8>>,
    ) -> (Vec<Vec<u8>>, bool) {
        let mut out = Vec::new();
        for k in index {
            let Some((at, key)) = k
                .strip_prefix(TIME_INDEX)
                .and_then(|r| r.split_first_chunk::<8>())
                .map(|(at, key)| (u64::from_be_bytes(*at), key))
            else {
                out.push(k.clone());
                continue;
            };
            if at >= cutoff_s {
                return (out, true);
            }
            let written =
                read(key).and_then(|v| v.first_chunk::<8>().map(|a| u64::from_be_bytes(*a)));
            if written.is_some_and(|w| w <= at) {
                out.push(key.to_vec());
            }
            out.push(k.clone());
        }
        (out, false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    #[derive(Default)]
    struct Rows(Mutex<BTreeMap<Vec<u8>, Vec<u8>>>, Mutex<bool>);
    impl IdRows for Rows {
        fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, RowsError> {
            if *self.1.lock().unwrap() {
                return Err(RowsError("disk on fire".into()));
            }
            Ok(self.0.lock().unwrap().get(key).cloned())
        }
    }
    impl Rows {
        fn commit(&self, changes: Vec<RowChange>) {
            let mut m = self.0.lock().unwrap();
            for (k, v) in changes {
                match v {
                    Some(v) => m.insert(k, v),
                    None => m.remove(&k),
                };
            }
        }
    }

    fn id(b: u8) -> MessageId {
        MessageId([b; 32])
    }

    #[test]
    fn rows_round_trip_through_the_store_and_expire() {
        let rows = Arc::new(Rows::default());
        let mut m = IdMap::over(rows.clone(), 100);
        m.record_mimi(id(1), id(1), "mimi://a/u/alice", None, "hello");
        m.link(Provider::Matrix, "!r", "$e1", id(1));
        m.record_mimi(id(2), id(2), "mimi://a/u/bob", Some((id(1), "👍")), "👍");
        m.add_reaction("mimi://a/r/x", "mimi://a/u/bob", &id(1), "👍", id(2));
        rows.commit(m.take_changes());
        assert_eq!(m.overlay_len(), 0);

        let mut m = IdMap::over(rows.clone(), 200);
        assert_eq!(m.mimi_of(Provider::Matrix, "!r", "$e1"), Some(id(1)));
        assert_eq!(
            m.native_of(Provider::Matrix, "!r", &id(1)).as_deref(),
            Some("$e1")
        );
        assert!(m.alias(Provider::Matrix, "!r", "$e1", "$e1b"));
        assert_eq!(
            m.native_of(Provider::Matrix, "!r", &id(1)).as_deref(),
            Some("$e1b")
        );
        assert_eq!(
            m.reactions("mimi://a/r/x", "mimi://a/u/bob", &id(1)),
            BTreeMap::from([("👍".to_owned(), id(2))])
        );
        assert_eq!(
            m.remove_reaction("mimi://a/r/x", "mimi://a/u/bob", &id(2)),
            Some((id(1), "👍".to_owned()))
        );
        assert!(
            m.reactions("mimi://a/r/x", "mimi://a/u/bob", &id(1))
                .is_empty()
        );
        rows.commit(m.take_changes());

        // Expire everything written before 150: the rows rewritten at 200 stay.
        let all = rows.0.lock().unwrap().clone();
        let index: Vec<Vec<u8>> = all
            .keys()
            .filter(|k| k.starts_with(TIME_INDEX))
            .cloned()
            .collect();
        let read = |k: &[u8]| all.get(k).cloned();
        let (dels, stopped) = IdMap::expired(&index, 150, &read);
        assert!(stopped);
        rows.commit(dels.into_iter().map(|k| (k, None)).collect());
        let m = IdMap::over(rows, 300);
        assert_eq!(m.mimi_of(Provider::Matrix, "!r", "$e1"), None, "expired");
        assert_eq!(
            m.mimi_of(Provider::Matrix, "!r", "$e1b"),
            Some(id(1)),
            "rewritten later"
        );
        assert_eq!(m.version(&id(2)), None);
    }

    #[test]
    fn a_read_failure_is_reported_not_taken_for_absence() {
        let rows = Arc::new(Rows::default());
        let mut m = IdMap::over(rows.clone(), 1);
        *rows.1.lock().unwrap() = true;
        assert_eq!(m.first_of(&id(3)), id(3));
        m.record_mimi(id(4), id(3), "x", None, "");
        assert!(m.take_failure().is_some());
    }
}
