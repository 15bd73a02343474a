//! Row keys: text components (URIs, names, domains) joined by a 0 byte, which none of them
//! contains, so that `a ‖ 0` is a prefix of exactly the rows under `a`; numbers last, as 8
//! big-endian bytes, so that keys sort by number.

/// `a ‖ 0 ‖ b ‖ 0 ‖ …` (no trailing separator).
pub fn join(parts: &[&[u8]]) -> Vec<u8> {
    let mut k = Vec::with_capacity(parts.iter().map(|p| p.len() + 1).sum());
    for (i, p) in parts.iter().enumerate() {
        if i > 0 {
            k.push(0);
        }
        k.extend_from_slice(p);
    }
    k
}

/// The prefix of every row under `parts`: `join(parts) ‖ 0`.
pub fn prefix(parts: &[&[u8]]) -> Vec<u8> {
    let mut k = join(parts);
    k.push(0);
    k
}

/// `join(parts) ‖ 0 ‖ n` with `n` as 8 big-endian bytes.
pub fn with_seq(parts: &[&[u8]], n: u64) -> Vec<u8> {
    let mut k = prefix(parts);
    k.extend_from_slice(&n.to_be_bytes());
    k
}

/// The trailing 8-byte number of a key built by [`with_seq`].
pub fn seq_of(key: &[u8]) -> Option<u64> {
    let n = key.len().checked_sub(8)?;
    Some(u64::from_be_bytes(key[n..].try_into().ok()?))
}

/// The text component after `prefix` (up to the next separator or the end).
pub fn tail_text(key: &[u8], prefix: &[u8]) -> Option<String> {
    let rest = key.strip_prefix(prefix)?;
    let end = rest.iter().position(|b| *b == 0).unwrap_or(rest.len());
    String::from_utf8(rest[..end].to_vec()).ok()
}

/// The components of a key made by [`join`] of text parts.
pub fn split_text(key: &[u8]) -> Vec<String> {
    key.split(|b| *b == 0)
        .map(|p| String::from_utf8_lossy(p).into_owned())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_do_not_collide() {
        let a = prefix(&[b"mimi://a/r/x"]);
        let b = join(&[b"mimi://a/r/xy", b"c"]);
        assert!(!b.starts_with(&a));
        let k = with_seq(&[b"f", b"r"], 258);
        assert_eq!(seq_of(&k), Some(258));
        assert!(with_seq(&[b"f"], 2) < with_seq(&[b"f"], 256));
        assert_eq!(
            tail_text(&join(&[b"r", b"alice/phone"]), &prefix(&[b"r"])).as_deref(),
            Some("alice/phone")
        );
        assert_eq!(split_text(&join(&[b"a", b"b"])), vec!["a", "b"]);
    }
}
