//! HTTP media types for MIMI bodies (decision D1: the draft defines none).

/// What we send for every TLS-PL request and response body.
pub const BODY: &str = "application/octet-stream";
/// The directory document.
pub const DIRECTORY: &str = "application/json";

/// Whether an incoming body's Content-Type is acceptable: absent, `application/octet-stream`,
/// or any `application/mimi*` or `application/vnd.*` type another implementation might choose.
/// Clearly different types (JSON, forms, text, multipart) are refused.
pub fn accepts(content_type: Option<&str>) -> bool {
    let Some(ct) = content_type else { return true };
    let essence = ct
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    essence.is_empty()
        || essence == BODY
        || essence.starts_with("application/mimi")
        || essence.starts_with("application/vnd.")
        || essence == "application/mls-message"
}

#[cfg(test)]
mod tests {
    #[test]
    fn lenient_but_not_blind() {
        for ok in [
            None,
            Some("application/octet-stream"),
            Some("application/mimi-protocol; v=6"),
            Some("Application/Octet-Stream"),
        ] {
            assert!(super::accepts(ok), "{ok:?}");
        }
        for bad in [
            "application/json",
            "text/plain",
            "multipart/form-data; boundary=x",
        ] {
            assert!(!super::accepts(Some(bad)), "{bad}");
        }
    }
}
