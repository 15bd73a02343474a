//! MIMI identifiers as this gateway uses them (draft-ietf-mimi-arch §"Identifiers",
//! draft-mahy-mimi-identity): users `mimi://d/u/name`, clients `mimi://d/d/name/device`, rooms
//! `mimi://d/r/id`. A client's MLS BasicCredential identity is its client URI; its user is
//! derived from it (decision D27 in docs/protocol-decisions.md).

/// The provider domain of a `mimi://` (or any `scheme://`) URI.
pub fn domain_of(uri: &str) -> Option<&str> {
    let rest = uri.strip_prefix("mimi://")?;
    let host = rest.split('/').next()?;
    (!host.is_empty()).then_some(host)
}

/// `mimi://d/u/name` for `name` at `domain`.
pub fn user_uri(domain: &str, name: &str) -> String {
    format!("mimi://{domain}/u/{name}")
}

/// `mimi://d/d/name/device`.
pub fn client_uri(domain: &str, name: &str, device: &str) -> String {
    format!("mimi://{domain}/d/{name}/{device}")
}

/// `mimi://d/r/id`.
pub fn room_uri(domain: &str, id: &str) -> String {
    format!("mimi://{domain}/r/{id}")
}

/// The user a credential identity belongs to: `mimi://d/d/name/dev` → `mimi://d/u/name`; a
/// user URI stands for itself.
pub fn user_of_identity(identity: &[u8]) -> Option<String> {
    let s = std::str::from_utf8(identity).ok()?;
    let domain = domain_of(s)?;
    let path = &s["mimi://".len() + domain.len()..];
    let mut segs = path.trim_start_matches('/').split('/');
    match (segs.next(), segs.next(), segs.next(), segs.next()) {
        (Some("d"), Some(name), Some(dev), None) if !name.is_empty() && !dev.is_empty() => {
            Some(user_uri(domain, name))
        }
        (Some("u"), Some(name), None, None) if !name.is_empty() => Some(user_uri(domain, name)),
        _ => None,
    }
}

/// Whether `s` is a well-formed room URI (`mimi://domain/r/id`).
pub fn is_room_uri(s: &str) -> bool {
    let Some(domain) = domain_of(s) else {
        return false;
    };
    let rest = &s["mimi://".len() + domain.len()..];
    rest.strip_prefix("/r/")
        .is_some_and(|id| !id.is_empty() && !id.contains('/'))
}

/// Whether `s` is a well-formed user URI (`mimi://domain/u/name`).
pub fn is_user_uri(s: &str) -> bool {
    let Some(domain) = domain_of(s) else {
        return false;
    };
    let rest = &s["mimi://".len() + domain.len()..];
    rest.strip_prefix("/u/")
        .is_some_and(|n| !n.is_empty() && !n.contains('/'))
}

/// The local part of a user URI (`alice` of `mimi://a.example/u/alice`).
pub fn user_name(user: &str) -> Option<&str> {
    let domain = domain_of(user)?;
    user["mimi://".len() + domain.len()..].strip_prefix("/u/")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identities() {
        assert_eq!(
            user_of_identity(b"mimi://a.example/d/alice/phone").as_deref(),
            Some("mimi://a.example/u/alice")
        );
        assert_eq!(
            user_of_identity(b"mimi://a.example/u/alice").as_deref(),
            Some("mimi://a.example/u/alice")
        );
        assert_eq!(user_of_identity(b"mimi://a.example/d/alice"), None);
        assert_eq!(user_of_identity(b"alice"), None);
        assert!(is_room_uri("mimi://a.example/r/lobby"));
        assert!(!is_room_uri("mimi://a.example/u/lobby"));
        assert_eq!(domain_of("mimi://b.example/u/bob"), Some("b.example"));
        assert_eq!(user_name("mimi://b.example/u/bob"), Some("bob"));
    }
}
