//! The federation request head checks (mimi_proto::head): never panic; an admitted head
//! names this provider, its peer in From (or none, for the directory only), and a body limit
//! it respects.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mimi_proto::head::{Head, Limits, Target, check};

fuzz_target!(|input: (
    &str,
    &str,
    Option<&str>,
    Option<&str>,
    Option<&str>,
    Option<u32>
)| {
    let (method, path, host, from, content_type, len) = input;
    let head = Head {
        method,
        path,
        host,
        from,
        content_type,
        content_length: len.map(|n| n as usize),
    };
    let l = Limits {
        domain: "a.example",
        prefix: "/v1",
        max_body: 1 << 20,
        notify_max_body: 8 << 20,
    };
    if let Ok(a) = check(&head, "b.example", &l) {
        assert!(head.content_length.is_none_or(|n| n <= a.limit));
        match from {
            Some(f) => assert!(f.trim().eq_ignore_ascii_case("mimi@b.example")),
            None => assert_eq!(a.target, Target::Directory),
        }
    }
});
