//! Typed MIMI identifiers (draft-ietf-mimi-arch §"Identifiers", draft-mahy-mimi-identity):
//! a provider [`Domain`], users `mimi://<domain>/u/<name>` ([`UserUri`]), clients
//! `mimi://<domain>/d/<user>/<device>` ([`ClientUri`]) and rooms `mimi://<domain>/r/<id>`
//! ([`RoomUri`]). Each is parsed once, at the boundary where it arrives, and compared as a
//! value afterwards.
//!
//! The one rule mapping an MLS credential to a MIMI user (decision D27 in
//! `docs/protocol-decisions.md`) is [`ClientUri::from_credential_identity`] followed by
//! [`ClientUri::user`]: the identity of a BasicCredential is exactly a client URI.
//!
//! ```
//! use mimi_proto::uri::{ClientUri, RoomUri, UserUri};
//!
//! let c = ClientUri::from_credential_identity(b"mimi://a.example/d/alice/phone").unwrap();
//! assert_eq!(c.user(), "mimi://a.example/u/alice".parse::<UserUri>().unwrap());
//! assert_eq!(c.domain().as_str(), "a.example");
//! assert!("mimi://a.example/u/alice".parse::<RoomUri>().is_err());
//! ```

use std::fmt;
use std::str::FromStr;

/// The longest URI accepted (decision D23).
pub const MAX_URI: usize = 4096;
/// The longest DNS name (RFC 1035).
const MAX_DOMAIN: usize = 253;

/// Why a string is not the identifier it should be.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum UriError {
    /// Longer than [`MAX_URI`].
    #[error("the URI is {0} bytes long; at most {MAX_URI} are accepted")]
    TooLong(usize),
    /// Not `mimi://...`.
    #[error("{0:?} is not a mimi:// URI")]
    NotMimi(String),
    /// The authority is not a lowercase DNS name.
    #[error("{0:?} is not a provider domain (lowercase DNS name, labels of [a-z0-9-])")]
    BadDomain(String),
    /// The path has another shape than expected.
    #[error("{uri:?} is not a {expected} URI (mimi://<domain>/{shape})")]
    WrongShape {
        /// The input.
        uri: String,
        /// `user`, `client` or `room`.
        expected: &'static str,
        /// The expected path, e.g. `u/<name>`.
        shape: &'static str,
    },
    /// A path segment holds a character outside RFC 3986 `pchar`.
    #[error("{uri:?}: path segment {segment:?} holds a character that is not allowed")]
    BadSegment {
        /// The input.
        uri: String,
        /// The offending segment.
        segment: String,
    },
}

/// A provider domain: a lowercase DNS name, the SAN dNSName of the provider's certificate.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Domain(String);

impl Domain {
    /// Parses a domain that must already be lowercase (as it appears in URIs).
    ///
    /// # Errors
    /// [`UriError::BadDomain`].
    pub fn parse(s: &str) -> Result<Self, UriError> {
        if is_domain(s) {
            Ok(Self(s.to_owned()))
        } else {
            Err(UriError::BadDomain(s.to_owned()))
        }
    }

    /// Parses a domain from a certificate or a configuration file: ASCII case is folded.
    ///
    /// # Errors
    /// [`UriError::BadDomain`].
    pub fn parse_lenient(s: &str) -> Result<Self, UriError> {
        Self::parse(&s.to_ascii_lowercase())
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

fn is_domain(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= MAX_DOMAIN
        && s.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        })
}

/// RFC 3986 `pchar` (unreserved, pct-encoded, sub-delims, `:` and `@`), without `/`.
fn is_segment(s: &str) -> bool {
    !s.is_empty()
        && s.bytes().all(|b| {
            b.is_ascii_alphanumeric()
                || matches!(
                    b,
                    b'-' | b'.'
                        | b'_'
                        | b'~'
                        | b'%'
                        | b'!'
                        | b'$'
                        | b'&'
                        | b'\''
                        | b'('
                        | b')'
                        | b'*'
                        | b'+'
                        | b','
                        | b';'
                        | b'='
                        | b':'
                        | b'@'
                )
        })
}

/// Splits `mimi://<domain>/<kind>/<segments...>` into the domain and the path segments after
/// `kind`, checking the shape.
fn split<'a>(
    s: &'a str,
    kind: &str,
    n: usize,
    expected: &'static str,
    shape: &'static str,
) -> Result<(Domain, Vec<&'a str>), UriError> {
    if s.len() > MAX_URI {
        return Err(UriError::TooLong(s.len()));
    }
    let rest = s
        .strip_prefix("mimi://")
        .ok_or_else(|| UriError::NotMimi(s.to_owned()))?;
    let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
    let domain = Domain::parse(host)?;
    let mut segs = path.split('/');
    let wrong = || UriError::WrongShape {
        uri: s.to_owned(),
        expected,
        shape,
    };
    if segs.next() != Some(kind) {
        return Err(wrong());
    }
    let segs: Vec<&str> = segs.collect();
    if segs.len() != n {
        return Err(wrong());
    }
    if let Some(bad) = segs.iter().find(|x| !is_segment(x)) {
        return Err(if bad.is_empty() {
            wrong()
        } else {
            UriError::BadSegment {
                uri: s.to_owned(),
                segment: (*bad).to_owned(),
            }
        });
    }
    Ok((domain, segs))
}

macro_rules! uri_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name {
            text: String,
            domain: Domain,
        }

        impl $name {
            /// The URI text.
            pub fn as_str(&self) -> &str {
                &self.text
            }

            /// The provider that owns it.
            pub fn domain(&self) -> &Domain {
                &self.domain
            }

            /// Whether `d` owns it.
            pub fn is_of(&self, d: &Domain) -> bool {
                self.domain == *d
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.text)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{:?}", self.text)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.text
            }
        }

        impl PartialEq<str> for $name {
            fn eq(&self, other: &str) -> bool {
                self.text == other
            }
        }

        impl PartialEq<&str> for $name {
            fn eq(&self, other: &&str) -> bool {
                self.text == *other
            }
        }

        impl From<$name> for String {
            fn from(u: $name) -> String {
                u.text
            }
        }

        impl From<&$name> for crate::codec::Uri {
            fn from(u: &$name) -> Self {
                crate::codec::Uri(u.text.clone())
            }
        }

        impl TryFrom<&crate::codec::Uri> for $name {
            type Error = UriError;
            fn try_from(u: &crate::codec::Uri) -> Result<Self, UriError> {
                u.as_str().parse()
            }
        }

        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(&self.text)
            }
        }

        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                s.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}

uri_type!(
    /// `mimi://<domain>/u/<name>`.
    UserUri
);
uri_type!(
    /// `mimi://<domain>/d/<user>/<device>`: a client, whose MLS credential identity it is.
    ClientUri
);
uri_type!(
    /// `mimi://<domain>/r/<id>`: a room, hosted by the hub at `<domain>`.
    RoomUri
);

impl FromStr for UserUri {
    type Err = UriError;
    fn from_str(s: &str) -> Result<Self, UriError> {
        let (domain, _) = split(s, "u", 1, "user", "u/<name>")?;
        Ok(Self {
            text: s.to_owned(),
            domain,
        })
    }
}

impl UserUri {
    /// `mimi://<domain>/u/<name>` (the name must be a valid path segment).
    ///
    /// # Errors
    /// An invalid name.
    pub fn new(domain: &Domain, name: &str) -> Result<Self, UriError> {
        format!("mimi://{}/u/{name}", domain.as_str()).parse()
    }

    /// The local part (`alice` of `mimi://a.example/u/alice`).
    pub fn name(&self) -> &str {
        &self.text["mimi://".len() + self.domain.0.len() + "/u/".len()..]
    }
}

impl FromStr for ClientUri {
    type Err = UriError;
    fn from_str(s: &str) -> Result<Self, UriError> {
        let (domain, _) = split(s, "d", 2, "client", "d/<user>/<device>")?;
        Ok(Self {
            text: s.to_owned(),
            domain,
        })
    }
}

impl ClientUri {
    /// `mimi://<domain>/d/<user>/<device>`.
    ///
    /// # Errors
    /// An invalid user or device name.
    pub fn new(domain: &Domain, user: &str, device: &str) -> Result<Self, UriError> {
        format!("mimi://{}/d/{user}/{device}", domain.as_str()).parse()
    }

    /// The client of an MLS BasicCredential identity (D27: the identity is the client URI).
    ///
    /// # Errors
    /// The identity is not UTF-8 or not a client URI.
    pub fn from_credential_identity(identity: &[u8]) -> Result<Self, UriError> {
        let s = std::str::from_utf8(identity)
            .map_err(|_| UriError::NotMimi(String::from_utf8_lossy(identity).into_owned()))?;
        s.parse()
    }

    fn path(&self) -> (&str, &str) {
        let p = &self.text["mimi://".len() + self.domain.0.len() + "/d/".len()..];
        p.split_once('/').unwrap_or((p, ""))
    }

    /// The user's local part.
    pub fn user_name(&self) -> &str {
        self.path().0
    }

    /// The device name.
    pub fn device(&self) -> &str {
        self.path().1
    }

    /// The user this client belongs to (D27).
    pub fn user(&self) -> UserUri {
        UserUri {
            text: format!("mimi://{}/u/{}", self.domain.0, self.user_name()),
            domain: self.domain.clone(),
        }
    }
}

impl FromStr for RoomUri {
    type Err = UriError;
    fn from_str(s: &str) -> Result<Self, UriError> {
        let (domain, _) = split(s, "r", 1, "room", "r/<id>")?;
        Ok(Self {
            text: s.to_owned(),
            domain,
        })
    }
}

impl RoomUri {
    /// `mimi://<domain>/r/<id>`.
    ///
    /// # Errors
    /// An invalid id.
    pub fn new(domain: &Domain, id: &str) -> Result<Self, UriError> {
        format!("mimi://{}/r/{id}", domain.as_str()).parse()
    }

    /// The room id (`lobby` of `mimi://a.example/r/lobby`).
    pub fn id(&self) -> &str {
        &self.text["mimi://".len() + self.domain.0.len() + "/r/".len()..]
    }
}

impl FromStr for Domain {
    type Err = UriError;
    fn from_str(s: &str) -> Result<Self, UriError> {
        Self::parse(s)
    }
}

impl fmt::Display for Domain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Domain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.0)
    }
}

impl AsRef<str> for Domain {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl PartialEq<str> for Domain {
    fn eq(&self, other: &str) -> bool {
        self.0 == other
    }
}

impl PartialEq<&str> for Domain {
    fn eq(&self, other: &&str) -> bool {
        self.0 == *other
    }
}

impl serde::Serialize for Domain {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> serde::Deserialize<'de> for Domain {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Self::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// The provider domain of any `mimi://` URI (user, client or room), without checking its
/// path: where only the owner matters (routing a request to the provider that can answer it).
pub fn domain_of(uri: &str) -> Option<Domain> {
    let rest = uri.strip_prefix("mimi://")?;
    Domain::parse(rest.split('/').next()?).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn users_clients_rooms() {
        let u: UserUri = "mimi://a.example/u/alice".parse().unwrap();
        assert_eq!(u.name(), "alice");
        assert_eq!(u.domain().as_str(), "a.example");
        let c: ClientUri = "mimi://a.example/d/alice/phone".parse().unwrap();
        assert_eq!(c.user(), u);
        assert_eq!(c.device(), "phone");
        assert_eq!(c.user_name(), "alice");
        let r: RoomUri = "mimi://hub.example/r/lobby".parse().unwrap();
        assert_eq!(r.id(), "lobby");
        assert_eq!(
            RoomUri::new(&Domain::parse("hub.example").unwrap(), "lobby").unwrap(),
            r
        );
    }

    #[test]
    fn d27_one_rule() {
        // Exactly /d/<user>/<device>: no user URIs, no missing device, no trailing segments.
        for bad in [
            &b"mimi://a.example/u/alice"[..],
            b"mimi://a.example/d/alice",
            b"mimi://a.example/d/alice/phone/extra",
            b"mimi://a.example/d//phone",
            b"mimi://a.example/d/alice/",
            b"alice",
            b"\xff\xfe",
        ] {
            assert!(
                ClientUri::from_credential_identity(bad).is_err(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn refusals_name_the_problem() {
        assert!(matches!(
            "https://a.example/u/x".parse::<UserUri>(),
            Err(UriError::NotMimi(_))
        ));
        assert!(matches!(
            "mimi://A.example/u/x".parse::<UserUri>(),
            Err(UriError::BadDomain(_))
        ));
        assert!(matches!(
            "mimi://a.example/u/x y".parse::<UserUri>(),
            Err(UriError::BadSegment { .. })
        ));
        assert!(matches!(
            "mimi://a.example/r/x".parse::<UserUri>(),
            Err(UriError::WrongShape { .. })
        ));
        let long = format!("mimi://a.example/u/{}", "x".repeat(MAX_URI));
        assert!(matches!(long.parse::<UserUri>(), Err(UriError::TooLong(_))));
        assert!(Domain::parse("a..example").is_err());
        assert!(Domain::parse("-a.example").is_err());
        assert_eq!(
            Domain::parse_lenient("A.Example").unwrap().as_str(),
            "a.example"
        );
        assert_eq!(
            domain_of("mimi://b.example/r/x").unwrap().as_str(),
            "b.example"
        );
        assert_eq!(domain_of("mimi:///r/x"), None);
    }

    #[test]
    fn escaped_bridge_names_are_segments() {
        assert!(
            "mimi://gw.example/u/mx-_40alice_3amatrix.test"
                .parse::<UserUri>()
                .is_ok()
        );
        assert!("mimi://gw.example/u/alice%40x".parse::<UserUri>().is_ok());
    }
}
