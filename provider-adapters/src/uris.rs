//! Canonical MIMI URIs for users and rooms of bridged providers.
//!
//! A bridged identity lives on the gateway's domain with a provider prefix and an escaped
//! native identifier: `@alice:matrix.test` → `mimi://gw.example/u/mx-_40alice_3amatrix.test`,
//! `alice@xmpp.test` → `mimi://gw.example/u/xm-alice_40xmpp.test`, Wire `uuid@wire.com` →
//! `mimi://gw.example/u/wr-uuid_40wire.com`; rooms likewise under `/r/`. Escaping keeps
//! `[a-z0-9.-]` and writes every other byte as `_` and two lowercase hex digits, so the
//! mapping is injective and reversible, and the result is a valid MIMI user name. Names longer
//! than 64 characters become `<prefix>h<40 hex of SHA-256>` (stable, not reversible: bridges
//! keep their own table). These URIs are stable by design: MIMI message IDs hash them.

use sha2::{Digest, Sha256};

use crate::Provider;

const MAX_NAME: usize = 64;

/// Escapes a native identifier into `[a-z0-9._-]`.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-' {
            out.push(b as char);
        } else {
            out.push_str(&format!("_{b:02x}"));
        }
    }
    out
}

/// Reverses [`escape`].
pub fn unescape(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'_' {
            out.push(u8::from_str_radix(s.get(i + 1..i + 3)?, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

fn prefix(p: Provider) -> &'static str {
    match p {
        Provider::Matrix => "mx-",
        Provider::Xmpp => "xm-",
        Provider::Wire => "wr-",
        Provider::Native => "",
    }
}

/// The URI scheme of one gateway.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UriScheme {
    /// The gateway's domain (the MIMI provider that hosts bridged identities).
    pub gateway_domain: String,
}

impl UriScheme {
    /// For `gateway_domain`.
    pub fn new(gateway_domain: &str) -> Self {
        Self {
            gateway_domain: gateway_domain.to_owned(),
        }
    }

    /// The MIMI user name (local part) of a native user.
    pub fn user_name(&self, p: Provider, native: &str) -> String {
        name(p, native)
    }

    /// The MIMI user URI of a native user.
    pub fn user(&self, p: Provider, native: &str) -> String {
        format!("mimi://{}/u/{}", self.gateway_domain, name(p, native))
    }

    /// The MIMI room URI of a native room.
    pub fn room(&self, p: Provider, native: &str) -> String {
        format!("mimi://{}/r/{}", self.gateway_domain, name(p, native))
    }

    /// The native identity behind a bridged MIMI user URI (None for other URIs and hashed
    /// names).
    pub fn native_user(&self, uri: &str) -> Option<(Provider, String)> {
        let local = uri
            .strip_prefix("mimi://")?
            .strip_prefix(&self.gateway_domain)?
            .strip_prefix("/u/")?;
        native_of(local)
    }

    /// The native room behind a bridged MIMI room URI.
    pub fn native_room(&self, uri: &str) -> Option<(Provider, String)> {
        let local = uri
            .strip_prefix("mimi://")?
            .strip_prefix(&self.gateway_domain)?
            .strip_prefix("/r/")?;
        native_of(local)
    }
}

fn name(p: Provider, native: &str) -> String {
    let n = format!("{}{}", prefix(p), escape(native));
    if n.len() <= MAX_NAME {
        n
    } else {
        format!(
            "{}h{}",
            prefix(p),
            &hex::encode(Sha256::digest(native.as_bytes()))[..40]
        )
    }
}

fn native_of(local: &str) -> Option<(Provider, String)> {
    for p in [Provider::Matrix, Provider::Xmpp, Provider::Wire] {
        if let Some(rest) = local.strip_prefix(prefix(p)) {
            if rest.starts_with('h')
                && rest.len() == 41
                && rest[1..].bytes().all(|b| b.is_ascii_hexdigit())
            {
                return None;
            }
            return unescape(rest).map(|n| (p, n));
        }
    }
    None
}

/// The native identity a bridged user URI of **any** gateway encodes (for display: which
/// gateway vouches for it is the URI's domain).
pub fn any_native_user(uri: &str) -> Option<(Provider, String)> {
    let rest = uri.strip_prefix("mimi://")?;
    let (_, local) = rest.split_once("/u/")?;
    native_of(local)
}

/// The user part of a MIMI user URI (`mimi://d/u/name` → `name`), for display fallbacks.
pub fn display_name(uri: &str) -> String {
    uri.rsplit('/').next().unwrap_or(uri).to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn examples() {
        let s = UriScheme::new("gw.example");
        assert_eq!(
            s.user(Provider::Matrix, "@alice:matrix.test"),
            "mimi://gw.example/u/mx-_40alice_3amatrix.test"
        );
        assert_eq!(
            s.user(Provider::Xmpp, "alice@xmpp.test"),
            "mimi://gw.example/u/xm-alice_40xmpp.test"
        );
        assert_eq!(
            s.native_user("mimi://gw.example/u/xm-alice_40xmpp.test"),
            Some((Provider::Xmpp, "alice@xmpp.test".into()))
        );
        assert_eq!(
            s.native_user("mimi://other.example/u/xm-alice_40xmpp.test"),
            None
        );
        let long = "x".repeat(100);
        let n = s.user_name(Provider::Wire, &long);
        assert!(n.len() <= 64 && n.starts_with("wr-h"), "{n}");
        assert_eq!(s.native_user(&s.user(Provider::Wire, &long)), None);
    }

    proptest! {
        #[test]
        fn escape_round_trips(s in ".{0,40}") {
            prop_assert_eq!(unescape(&escape(&s)), Some(s.clone()));
            prop_assert!(escape(&s).bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b)));
        }
    }
}
