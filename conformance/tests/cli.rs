//! `mimi-conformance content` and `vectors` as commands.

#![allow(clippy::unwrap_used)]

use std::process::Command;

fn suite(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_mimi-conformance"))
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn content_checks_pass_on_the_draft_examples_and_fail_on_bad_encodings() {
    let dir = std::env::temp_dir().join(format!("mimi-conformance-content-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut files = Vec::new();
    for e in mimi_content::examples::ALL {
        let p = dir.join(format!("{}.cbor", e.name));
        std::fs::write(&p, e.cbor).unwrap();
        std::fs::write(dir.join(format!("{}.cbor.id", e.name)), e.message_id).unwrap();
        files.push(p.display().to_string());
    }
    let args: Vec<&str> = std::iter::once("content")
        .chain(files.iter().map(String::as_str))
        .collect();
    let out = suite(&args);
    let table = String::from_utf8(out.stdout).unwrap();
    assert!(out.status.success(), "{table}");
    assert!(
        table.contains(&format!("{} passed, 0 failed", 3 * files.len())),
        "{table}"
    );

    // A non-canonical encoding (a one-byte integer in a two-byte form) and a wrong stated ID.
    let orig = mimi_content::examples::ALL[0];
    let mut bad = orig.cbor.to_vec();
    let pos = bad.iter().position(|b| *b == 0xf6).unwrap(); // first null → a two-byte simple value
    bad.splice(pos..=pos, [0xf8, 0x16]);
    let b = dir.join("bad.cbor");
    std::fs::write(&b, &bad).unwrap();
    let w = dir.join("wrongid.cbor");
    std::fs::write(&w, orig.cbor).unwrap();
    std::fs::write(dir.join("wrongid.cbor.id"), "01".repeat(32)).unwrap();
    let out = suite(&["content", b.to_str().unwrap(), w.to_str().unwrap()]);
    let table = String::from_utf8(out.stdout).unwrap();
    assert_eq!(out.status.code(), Some(1), "{table}");
    assert!(
        table.contains("bad.cbor: strict decode") && table.contains("FAIL"),
        "{table}"
    );
    assert!(
        table.contains("wrongid.cbor: message ID") && table.contains("the file says"),
        "{table}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn vectors_are_printed() {
    let out = suite(&["vectors"]);
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(out.status.success());
    for e in mimi_content::examples::ALL {
        assert!(
            text.contains(&format!("{}\t{}\t", e.name, e.message_id)),
            "{}",
            e.name
        );
    }
}
