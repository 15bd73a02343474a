//! Endpoints, the `/.well-known/mimi-protocol-directory` document, URL templates and the
//! encoding of URIs in paths (draft-ietf-mimi-protocol-06 §5.1).
//!
//! Canonical form (decision D2): the path variable is the full URI, percent-encoded as one
//! path segment, e.g. `/v1/notify/mimi%3A%2F%2Fa.example%2Fr%2Fclubhouse`. [`parse_path`] also
//! accepts the forms the draft's flows use: the URI unencoded, the scheme-less
//! `a.example/r/clubhouse`, `/submit` for `/submitMessage`, `update{roomId}` without a slash, and
//! `/groupInfo/a.example/clubhouse` without `/r/`.

use std::collections::BTreeMap;

/// The well-known path of the directory document.
pub const WELL_KNOWN_PATH: &str = "/.well-known/mimi-protocol-directory";
/// The path prefix our gateway serves endpoints under.
pub const DEFAULT_PREFIX: &str = "/v1";

/// A MIMI endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Endpoint {
    /// POST /keyMaterial/{targetUser}
    KeyMaterial,
    /// POST /update/{roomId}
    Update,
    /// POST /notify/{roomId}
    Notify,
    /// POST /submitMessage/{roomId}
    SubmitMessage,
    /// POST /groupInfo/{roomId}
    GroupInfo,
    /// POST /requestConsent/{targetUser}
    RequestConsent,
    /// POST /updateConsent/{requesterUser}
    UpdateConsent,
    /// POST /identifierQuery/{domain}
    IdentifierQuery,
    /// POST /reportAbuse/{roomId}
    ReportAbuse,
    /// GET /proxyDownload/{downloadUrl}
    ProxyDownload,
}

impl Endpoint {
    /// Every endpoint.
    pub const ALL: [Self; 10] = [
        Self::KeyMaterial,
        Self::Update,
        Self::Notify,
        Self::SubmitMessage,
        Self::GroupInfo,
        Self::RequestConsent,
        Self::UpdateConsent,
        Self::IdentifierQuery,
        Self::ReportAbuse,
        Self::ProxyDownload,
    ];

    /// The directory key and path segment.
    pub fn name(self) -> &'static str {
        match self {
            Self::KeyMaterial => "keyMaterial",
            Self::Update => "update",
            Self::Notify => "notify",
            Self::SubmitMessage => "submitMessage",
            Self::GroupInfo => "groupInfo",
            Self::RequestConsent => "requestConsent",
            Self::UpdateConsent => "updateConsent",
            Self::IdentifierQuery => "identifierQuery",
            Self::ReportAbuse => "reportAbuse",
            Self::ProxyDownload => "proxyDownload",
        }
    }

    /// The template variable (decision D3: consent endpoints take a user URI, as in the
    /// directory; a bare domain is accepted too).
    pub fn variable(self) -> &'static str {
        match self {
            Self::KeyMaterial | Self::RequestConsent => "targetUser",
            Self::UpdateConsent => "requesterUser",
            Self::IdentifierQuery => "domain",
            Self::ProxyDownload => "downloadUrl",
            _ => "roomId",
        }
    }

    /// `POST`, or `GET` for proxyDownload.
    pub fn method(self) -> &'static str {
        if self == Self::ProxyDownload {
            "GET"
        } else {
            "POST"
        }
    }

    /// Whether the path variable names a room.
    pub fn is_room_scoped(self) -> bool {
        self.variable() == "roomId"
    }

    /// From a directory key or path segment (also `submit`, the flows' alias).
    pub fn from_name(s: &str) -> Option<Self> {
        if s == "submit" {
            return Some(Self::SubmitMessage);
        }
        Self::ALL.into_iter().find(|e| e.name() == s)
    }
}

/// The directory document: endpoint name → URL template.
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(transparent)]
pub struct Directory(pub BTreeMap<String, String>);

/// A directory document is unusable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DirectoryError {
    /// Not a JSON object of strings.
    #[error("directory is not a JSON object of URL templates: {0}")]
    NotJson(String),
    /// An endpoint is missing.
    #[error("directory has no \"{0}\" endpoint")]
    Missing(&'static str),
    /// A template is not an https URL with its variable.
    #[error(
        "directory entry \"{name}\" is not an https URL template with {{{variable}}}: {template}"
    )]
    BadTemplate {
        /// The endpoint.
        name: &'static str,
        /// Its variable.
        variable: &'static str,
        /// The template found.
        template: String,
    },
}

impl Directory {
    /// Our directory for `base` (e.g. `https://a.example:4433/v1`), canonical templates.
    pub fn for_base(base: &str) -> Self {
        let base = base.trim_end_matches('/');
        Self(
            Endpoint::ALL
                .into_iter()
                .map(|e| {
                    (
                        e.name().to_owned(),
                        format!("{base}/{}/{{{}}}", e.name(), e.variable()),
                    )
                })
                .collect(),
        )
    }

    /// Parses and checks a peer's directory (every endpoint, https, its variable present;
    /// `update{roomId}` without a slash is accepted as the draft's example has it).
    ///
    /// # Errors
    /// [`DirectoryError`].
    pub fn parse(json: &[u8]) -> Result<Self, DirectoryError> {
        let d: Self =
            serde_json::from_slice(json).map_err(|e| DirectoryError::NotJson(e.to_string()))?;
        for e in Endpoint::ALL {
            let t =
                d.0.get(e.name())
                    .ok_or_else(|| DirectoryError::Missing(e.name()))?;
            if !t.starts_with("https://") || !t.contains(&format!("{{{}}}", e.variable())) {
                return Err(DirectoryError::BadTemplate {
                    name: e.name(),
                    variable: e.variable(),
                    template: t.clone(),
                });
            }
        }
        Ok(d)
    }

    /// The JSON document.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(&self.0).unwrap_or_default()
    }

    /// The URL of `endpoint` for `value` (percent-encoded as one segment).
    pub fn url(&self, endpoint: Endpoint, value: &str) -> Option<String> {
        let t = self.0.get(endpoint.name())?;
        Some(t.replace(
            &format!("{{{}}}", endpoint.variable()),
            &encode_path_value(value),
        ))
    }
}

/// Percent-encodes everything but RFC 3986 unreserved characters.
pub fn encode_path_value(v: &str) -> String {
    let mut out = String::with_capacity(v.len() * 3);
    for b in v.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Decodes percent-escapes; `None` for malformed escapes or non-UTF-8 results.
pub fn decode_path_value(v: &str) -> Option<String> {
    let bytes = v.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = v.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// A request path resolved to an endpoint and its (decoded) variable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// The endpoint.
    pub endpoint: Endpoint,
    /// The variable: a URI (room, user, download URL) or a domain.
    pub value: String,
}

/// A path does not name a MIMI endpoint.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PathError {
    /// No endpoint of that name.
    #[error("no MIMI endpoint at {0}")]
    UnknownEndpoint(String),
    /// The endpoint is there but the variable is missing.
    #[error("{0} needs {{{1}}} in the path")]
    MissingValue(&'static str, &'static str),
    /// Bad percent-encoding.
    #[error("path variable is not valid percent-encoded UTF-8")]
    BadEncoding,
}

/// Resolves a request path (with or without `prefix`, e.g. `/v1`) to an endpoint.
///
/// # Errors
/// [`PathError`].
pub fn parse_path(path: &str, prefix: &str) -> Result<Route, PathError> {
    let path = path.split('?').next().unwrap_or("");
    let rest = path
        .strip_prefix(prefix)
        .filter(|r| r.starts_with('/'))
        .unwrap_or(path);
    let rest = rest
        .strip_prefix('/')
        .ok_or_else(|| PathError::UnknownEndpoint(path.to_owned()))?;
    let (name, raw) = match rest.split_once('/') {
        Some((n, v)) => (n, v),
        None => match rest.strip_prefix("update") {
            // `update{roomId}` without a slash, as in the draft's directory example.
            Some(v) if !v.is_empty() => ("update", v),
            _ => (rest, ""),
        },
    };
    let endpoint =
        Endpoint::from_name(name).ok_or_else(|| PathError::UnknownEndpoint(path.to_owned()))?;
    if raw.is_empty() {
        return Err(PathError::MissingValue(
            endpoint.name(),
            endpoint.variable(),
        ));
    }
    let decoded = decode_path_value(raw).ok_or(PathError::BadEncoding)?;
    let value = if decoded.contains("://")
        || endpoint == Endpoint::IdentifierQuery
        || !decoded.contains('/')
    {
        decoded
    } else if endpoint.is_room_scoped() {
        // Scheme-less room, with `/r/` restored when the flows leave it out.
        match decoded.split('/').collect::<Vec<_>>().as_slice() {
            [domain, id] => format!("mimi://{domain}/r/{id}"),
            _ => format!("mimi://{decoded}"),
        }
    } else {
        format!("mimi://{decoded}")
    };
    Ok(Route { endpoint, value })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_urls_round_trip() {
        let d = Directory::for_base("https://a.example:4433/v1/");
        let url = d
            .url(Endpoint::Notify, "mimi://a.example/r/clubhouse")
            .unwrap();
        assert_eq!(
            url,
            "https://a.example:4433/v1/notify/mimi%3A%2F%2Fa.example%2Fr%2Fclubhouse"
        );
        let path = url.trim_start_matches("https://a.example:4433");
        assert_eq!(
            parse_path(path, "/v1").unwrap(),
            Route {
                endpoint: Endpoint::Notify,
                value: "mimi://a.example/r/clubhouse".into()
            }
        );
        assert_eq!(Directory::parse(d.to_json().as_bytes()).unwrap(), d);
    }

    #[test]
    fn draft_flow_forms_are_accepted() {
        let room = "mimi://a.example/r/clubhouse".to_owned();
        for p in [
            "/notify/a.example/r/clubhouse",
            "/v1/submit/a.example/r/clubhouse",
            "/update/mimi://a.example/r/clubhouse",
            "/v1/updatemimi%3A%2F%2Fa.example%2Fr%2Fclubhouse",
            "/groupInfo/a.example/clubhouse",
        ] {
            assert_eq!(parse_path(p, "/v1").unwrap().value, room, "{p}");
        }
        assert_eq!(
            parse_path("/v1/identifierQuery/b.example", "/v1").unwrap(),
            Route {
                endpoint: Endpoint::IdentifierQuery,
                value: "b.example".into()
            }
        );
        assert_eq!(
            parse_path("/v1/keyMaterial/b.example/u/bob", "/v1")
                .unwrap()
                .value,
            "mimi://b.example/u/bob"
        );
        assert_eq!(
            parse_path("/v1/proxyDownload/https%3A%2F%2Fc.example%2Fa%2F1", "/v1")
                .unwrap()
                .value,
            "https://c.example/a/1"
        );
    }

    #[test]
    fn bad_paths() {
        assert!(matches!(
            parse_path("/v1/nope/x", "/v1"),
            Err(PathError::UnknownEndpoint(_))
        ));
        assert!(matches!(
            parse_path("/v1/notify", "/v1"),
            Err(PathError::MissingValue("notify", "roomId"))
        ));
        assert!(matches!(
            parse_path("/v1/notify/%zz", "/v1"),
            Err(PathError::BadEncoding)
        ));
        assert!(matches!(
            Directory::parse(b"{}"),
            Err(DirectoryError::Missing("keyMaterial"))
        ));
    }
}
