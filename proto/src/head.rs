//! The checks of a federation request head, before any body is read (decision D28 and
//! draft-ietf-mimi-protocol-06 §2–§3): the authority names this provider, a present `From`
//! names the peer the certificate authenticates (absent only on the directory), the route is a
//! known endpoint with its method, the media type is a MIMI body, the declared length is within
//! the endpoint's limit. The gateway adds the per-peer rate and concurrency admission.
//!
//! Pure: the fuzz target `federation_head` and the unit tests below drive it directly.

use crate::directory::{Endpoint, WELL_KNOWN_PATH, parse_path};

/// What a transport knows of a request before its body.
#[derive(Debug, Clone, Copy)]
pub struct Head<'a> {
    /// Method.
    pub method: &'a str,
    /// Path (and query).
    pub path: &'a str,
    /// `Host` / `:authority`.
    pub host: Option<&'a str>,
    /// `From`.
    pub from: Option<&'a str>,
    /// `Content-Type`.
    pub content_type: Option<&'a str>,
    /// `Content-Length`, when declared.
    pub content_length: Option<usize>,
}

/// Where an admitted request goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// The directory document.
    Directory,
    /// An asset (`/assets/<id>`).
    Asset(String),
    /// A MIMI endpoint and its path variable.
    Mimi(Endpoint, String),
}

/// An admitted head: its target, metric label and body limit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Admitted {
    /// The target.
    pub target: Target,
    /// The endpoint's name (`directory`, `assets` or the MIMI endpoint).
    pub label: String,
    /// The most body bytes to read.
    pub limit: usize,
}

/// A refused head: status and sentence, and the label to count it under.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{status}: {reason}")]
pub struct Refused {
    /// The metric label (`host`, `from`, `unknown` or the endpoint).
    pub label: String,
    /// HTTP status.
    pub status: u16,
    /// What was wrong.
    pub reason: String,
}

fn refuse(label: &str, status: u16, reason: String) -> Refused {
    Refused {
        label: label.to_owned(),
        status,
        reason,
    }
}

/// The limits of one gateway's federation listener.
#[derive(Debug, Clone, Copy)]
pub struct Limits<'a> {
    /// This provider's domain.
    pub domain: &'a str,
    /// The path prefix of MIMI endpoints (`/v1`).
    pub prefix: &'a str,
    /// Body limit of every endpoint but `/notify`.
    pub max_body: usize,
    /// Body limit of `/notify` (batches).
    pub notify_max_body: usize,
}

/// Checks a head from `peer` (the domain its certificate authenticates).
///
/// # Errors
/// [`Refused`] with the status and sentence to answer.
pub fn check(head: &Head<'_>, peer: &str, l: &Limits<'_>) -> Result<Admitted, Refused> {
    let path = head.path.split('?').next().unwrap_or("");
    let Some(host) = head.host else {
        return Err(refuse("host", 400, "missing Host (or :authority)".into()));
    };
    let name = host
        .rsplit_once(':')
        .filter(|(_, p)| p.bytes().all(|b| b.is_ascii_digit()))
        .map_or(host, |(h, _)| h);
    if !name.eq_ignore_ascii_case(l.domain) {
        return Err(refuse(
            "host",
            403,
            format!("Host names {name}, but this gateway serves {}", l.domain),
        ));
    }
    let directory = path == WELL_KNOWN_PATH;
    match head.from {
        None if directory => {}
        None => {
            return Err(refuse(
                "from",
                401,
                format!("missing From: mimi@<your domain> (your certificate says {peer})"),
            ));
        }
        Some(from) => match from.trim().strip_prefix("mimi@") {
            Some(d) if d.eq_ignore_ascii_case(peer) => {}
            Some(d) => {
                return Err(refuse(
                    "from",
                    403,
                    format!("From names {d} but the client certificate authenticates {peer}"),
                ));
            }
            None => {
                return Err(refuse(
                    "from",
                    401,
                    format!("From must be mimi@<domain>, found {from:?}"),
                ));
            }
        },
    }
    let (label, target, limit, method) = if directory {
        ("directory".to_owned(), Target::Directory, 0, "GET")
    } else if let Some(id) = path.strip_prefix("/assets/") {
        ("assets".to_owned(), Target::Asset(id.to_owned()), 0, "GET")
    } else {
        let route =
            parse_path(path, l.prefix).map_err(|e| refuse("unknown", 404, e.to_string()))?;
        let limit = if route.endpoint == Endpoint::Notify {
            l.notify_max_body
        } else {
            l.max_body
        };
        (
            route.endpoint.name().to_owned(),
            Target::Mimi(route.endpoint, route.value),
            limit,
            route.endpoint.method(),
        )
    };
    if head.method != method {
        return Err(refuse(&label, 405, format!("{label} takes {method}")));
    }
    if method == "POST" && !crate::media::accepts(head.content_type) {
        return Err(refuse(
            &label,
            415,
            format!(
                "Content-Type {} is not a MIMI body; send application/octet-stream",
                head.content_type.unwrap_or_default()
            ),
        ));
    }
    if head.content_length.is_some_and(|n| n > limit) {
        return Err(refuse(
            &label,
            413,
            format!("the body exceeds the {limit}-byte limit of {label}"),
        ));
    }
    Ok(Admitted {
        target,
        label,
        limit,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const L: Limits<'static> = Limits {
        domain: "a.example",
        prefix: "/v1",
        max_body: 1000,
        notify_max_body: 8000,
    };

    fn head(method: &'static str, path: &'static str) -> Head<'static> {
        Head {
            method,
            path,
            host: Some("a.example:4433"),
            from: Some("mimi@b.example"),
            content_type: Some("application/octet-stream"),
            content_length: Some(10),
        }
    }

    fn status(h: &Head<'_>) -> u16 {
        check(h, "b.example", &L).map_or_else(|r| r.status, |_| 200)
    }

    #[test]
    fn every_check_in_order() {
        let ok = head("POST", "/v1/keyMaterial/mimi%3A%2F%2Fa.example%2Fu%2Falice");
        let a = check(&ok, "b.example", &L).unwrap();
        assert_eq!(
            a.target,
            Target::Mimi(Endpoint::KeyMaterial, "mimi://a.example/u/alice".into())
        );
        assert_eq!((a.label.as_str(), a.limit), ("keyMaterial", 1000));
        assert_eq!(status(&Head { host: None, ..ok }), 400);
        assert_eq!(
            status(&Head {
                host: Some("b.example"),
                ..ok
            }),
            403
        );
        assert_eq!(
            status(&Head {
                host: Some("A.EXAMPLE"),
                ..ok
            }),
            200
        );
        // From: absent (401), another domain (403, the CA-confusion sibling), malformed (401).
        assert_eq!(status(&Head { from: None, ..ok }), 401);
        assert_eq!(
            status(&Head {
                from: Some("mimi@c.example"),
                ..ok
            }),
            403
        );
        assert_eq!(
            status(&Head {
                from: Some("b.example"),
                ..ok
            }),
            401
        );
        // The directory alone may come without From, never with a wrong one.
        let dir = Head {
            from: None,
            content_length: None,
            ..head("GET", WELL_KNOWN_PATH)
        };
        assert_eq!(
            check(&dir, "b.example", &L).unwrap().target,
            Target::Directory
        );
        assert_eq!(
            status(&Head {
                from: Some("mimi@c.example"),
                ..dir
            }),
            403
        );
        assert_eq!(status(&head("GET", "/v1/keyMaterial/x")), 405);
        assert_eq!(status(&head("POST", "/v1/nothing/x")), 404);
        assert_eq!(
            status(&Head {
                content_type: Some("text/html"),
                ..ok
            }),
            415
        );
        assert_eq!(
            status(&Head {
                content_length: Some(1001),
                ..ok
            }),
            413
        );
        let notify = head("POST", "/v1/notify/mimi%3A%2F%2Fb.example%2Fr%2Fx");
        assert_eq!(
            status(&Head {
                content_length: Some(5000),
                ..notify
            }),
            200
        );
        assert_eq!(
            status(&Head {
                content_length: Some(8001),
                ..notify
            }),
            413
        );
        let asset = Head {
            content_length: None,
            ..head("GET", "/assets/abc")
        };
        assert_eq!(
            check(&asset, "b.example", &L).unwrap().target,
            Target::Asset("abc".into())
        );
        // A GET that declares a body is over the 0-byte limit.
        assert_eq!(
            status(&Head {
                content_length: Some(1),
                ..asset
            }),
            413
        );
    }
}
