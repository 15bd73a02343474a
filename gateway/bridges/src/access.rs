//! Who may use a bridge: allow and deny lists of users and servers (IO-free).
//!
//! An entry is a native user ID (`@bob:matrix.test`, `bob@xmpp.test`) or a server name
//! (`matrix.test`). A user is refused when any deny entry matches; otherwise admitted when an
//! allow entry matches, or, with an empty allow list, when the user belongs to the bridge's own
//! server. Users of other servers (a federated homeserver's users seen in a portal) are
//! therefore refused unless the operator lists them.

/// The rules of one bridge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Access {
    home: String,
    allow: Vec<String>,
    deny: Vec<String>,
}

/// Why a user may not use the bridge.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Denied {
    /// A deny entry matches.
    #[error("{user} is not allowed to use this bridge (denied by {entry:?})")]
    Denied {
        /// The user.
        user: String,
        /// The entry.
        entry: String,
    },
    /// No allow entry matches.
    #[error("{user} is not allowed to use this bridge (not in its allow list)")]
    NotAllowed {
        /// The user.
        user: String,
    },
    /// Not a user ID of this system.
    #[error("{0:?} is not a user ID")]
    Malformed(String),
}

/// The server part of a native user ID: `@l:server` (Matrix) or `local@server[/res]` (XMPP).
pub fn server_of(user: &str) -> Option<&str> {
    if let Some(rest) = user.strip_prefix('@') {
        return rest
            .split_once(':')
            .map(|(_, s)| s)
            .filter(|s| !s.is_empty());
    }
    let bare = user.split('/').next().unwrap_or(user);
    bare.split_once('@')
        .map(|(_, s)| s)
        .filter(|s| !s.is_empty() && !s.contains('@'))
}

impl Access {
    /// Rules for a bridge of `home` (its homeserver or XMPP domain).
    pub fn new(home: &str, allow: &[String], deny: &[String]) -> Self {
        let norm = |v: &[String]| v.iter().map(|e| e.trim().to_ascii_lowercase()).collect();
        Self {
            home: home.to_ascii_lowercase(),
            allow: norm(allow),
            deny: norm(deny),
        }
    }

    fn matches(entry: &str, user: &str, server: &str) -> bool {
        entry == "*" || entry == user || entry == server
    }

    /// Whether `user` may use the bridge.
    ///
    /// # Errors
    /// [`Denied`] with the reason.
    pub fn check(&self, user: &str) -> Result<(), Denied> {
        // XMPP: the bare JID decides, whatever the resource.
        let lower = if user.starts_with('@') {
            user.to_ascii_lowercase()
        } else {
            user.split('/').next().unwrap_or(user).to_ascii_lowercase()
        };
        let server = server_of(&lower).ok_or_else(|| Denied::Malformed(user.to_owned()))?;
        if let Some(e) = self.deny.iter().find(|e| Self::matches(e, &lower, server)) {
            return Err(Denied::Denied {
                user: user.to_owned(),
                entry: e.clone(),
            });
        }
        let allowed = if self.allow.is_empty() {
            server == self.home
        } else {
            self.allow.iter().any(|e| Self::matches(e, &lower, server))
        };
        if allowed {
            Ok(())
        } else {
            Err(Denied::NotAllowed {
                user: user.to_owned(),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_server_by_default_lists_otherwise() {
        let a = Access::new("matrix.test", &[], &[]);
        assert!(a.check("@bob:matrix.test").is_ok());
        assert!(matches!(
            a.check("@eve:evil.test"),
            Err(Denied::NotAllowed { .. })
        ));
        assert!(matches!(a.check("bob"), Err(Denied::Malformed(_))));
        let a = Access::new(
            "matrix.test",
            &["@carol:other.test".into(), "friends.test".into()],
            &["@bob:friends.test".into()],
        );
        assert!(
            a.check("@bob:matrix.test").is_err(),
            "the list replaces the default"
        );
        assert!(a.check("@carol:other.test").is_ok());
        assert!(a.check("@dan:friends.test").is_ok());
        assert!(matches!(
            a.check("@BOB:friends.test"),
            Err(Denied::Denied { .. })
        ));
        let x = Access::new("xmpp.test", &[], &["mallory@xmpp.test".into()]);
        assert!(x.check("dave@xmpp.test/phone").is_ok());
        assert!(x.check("mallory@xmpp.test/laptop").is_err());
        assert!(x.check("dave@elsewhere.test").is_err());
    }
}
