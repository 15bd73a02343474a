//! `mimi translate` as a command: each provider in and out, losses on standard error, and
//! invalid input refused with exit status 1 and a one-line reason.

#![allow(clippy::unwrap_used)]

use std::io::Write;
use std::process::{Command, Output, Stdio};

fn mimi(args: &[&str], stdin: &[u8]) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_mimi"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    c.stdin.take().unwrap().write_all(stdin).unwrap();
    c.wait_with_output().unwrap()
}

fn data(name: &str) -> Vec<u8> {
    std::fs::read(format!("{}/tests/data/{name}", env!("CARGO_MANIFEST_DIR"))).unwrap()
}

const ROOM: &str = "mimi://gw.example/r/lobby";
const ALICE: &str = "mimi://gw.example/u/mx-_40alice_3aexample.org";

#[test]
fn matrix_to_mimi_to_every_provider() {
    let out = mimi(
        &[
            "translate",
            "--from",
            "matrix",
            "--sender",
            ALICE,
            "--room",
            ROOM,
        ],
        &data("01-text-html.json"),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let cbor = out.stdout;
    // It is valid MIMI content with the HTML turned into markdown.
    let v = mimi(&["content", "validate"], &cbor);
    assert!(v.status.success(), "{}", String::from_utf8_lossy(&v.stdout));
    let j = mimi(
        &[
            "translate",
            "--from",
            "matrix",
            "--sender",
            ALICE,
            "--room",
            ROOM,
            "--json",
        ],
        &data("01-text-html.json"),
    );
    let s = String::from_utf8(j.stdout).unwrap();
    assert!(
        s.contains("text/markdown;variant=GFM-MIMI") && s.contains("**important**"),
        "{s}"
    );
    // Back out to Matrix, XMPP and Wire.
    let m = mimi(&["translate", "--to", "matrix", "--room", ROOM], &cbor);
    let ev: serde_json::Value = serde_json::from_slice(&m.stdout).unwrap();
    assert_eq!(
        ev["content"]["formatted_body"],
        "Hello <a href=\"https://matrix.to/#/@bob:example.org\">Bob</a>! This is <strong>important</strong>"
    );
    let x = mimi(&["translate", "--to", "xmpp", "--room", ROOM], &cbor);
    let xs = String::from_utf8(x.stdout).unwrap();
    assert!(
        xs.contains("<body>Hello Bob! This is *important*</body>") && xs.contains("uri=\"xmpp:"),
        "{xs}"
    );
    let w = mimi(&["translate", "--to", "wire", "--room", ROOM], &cbor);
    assert!(w.status.success() && !w.stdout.is_empty());
    assert!(
        String::from_utf8_lossy(&w.stderr).contains("lost: formatting"),
        "losses are reported"
    );
}

#[test]
fn unknown_references_are_reported_not_dropped() {
    let out = mimi(
        &[
            "translate",
            "--from",
            "xmpp",
            "--sender",
            ALICE,
            "--room",
            ROOM,
        ],
        &data("02-reaction.xml"),
    );
    assert!(out.status.success());
    assert!(
        out.stdout.is_empty(),
        "a reaction to an unknown message produces nothing"
    );
    assert_eq!(
        String::from_utf8(out.stderr).unwrap().trim(),
        "lost: reaction: reactions to unknown message 5f3dbc5e-e1d3-4077-a492-693f3769c7ad"
    );
    let w = mimi(
        &[
            "translate",
            "--from",
            "wire",
            "--sender",
            ALICE,
            "--room",
            ROOM,
            "--json",
        ],
        &data("01-text-mention-quote.bin"),
    );
    assert!(w.status.success());
    assert!(
        String::from_utf8_lossy(&w.stderr).contains(
            "lost: reply: quoted message 3d2c1b0a-9f8e-4d7c-6b5a-493827161504 is unknown"
        )
    );
}

#[test]
fn invalid_input_exits_1_with_one_line() {
    for (args, input, want) in [
        (
            vec!["--from", "matrix"],
            b"not json".to_vec(),
            "mimi translate: invalid matrix payload: not JSON",
        ),
        (
            vec!["--from", "xmpp"],
            b"<iq/>".to_vec(),
            "mimi translate: invalid xmpp payload: expected a <message/> stanza, found <iq>",
        ),
        (
            vec!["--from", "wire"],
            b"\xff".to_vec(),
            "mimi translate: invalid wire payload",
        ),
        (
            vec!["--to", "matrix"],
            b"\x80".to_vec(),
            "mimi translate: invalid native payload",
        ),
    ] {
        let mut a = vec!["translate"];
        a.extend(args.iter().copied());
        a.extend(["--sender", ALICE, "--room", ROOM]);
        if a.contains(&"--to") {
            a.retain(|x| *x != "--sender" && *x != ALICE);
        }
        let out = mimi(&a, &input);
        assert_eq!(out.status.code(), Some(1), "{a:?}");
        let err = String::from_utf8(out.stderr).unwrap();
        assert!(err.starts_with(want), "{err}");
        assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    }
}
