//! `mimi client` as an operator uses it: two users on two gateways register, one creates a
//! room and invites the other, both send and `tail` each other's messages as JSON lines; a
//! third joins the open room by itself; refusals exit non-zero with a sentence.

#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;
use std::process::Command;

use common::Fed;
use serde_json::Value;

fn client(state: &Path, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_mimi"))
        .arg("client")
        .arg("--state")
        .arg(state)
        .args(args)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn ok(state: &Path, args: &[&str]) -> String {
    let (success, out, err) = client(state, args);
    assert!(success, "mimi client {args:?} failed: {err}");
    out
}

fn lines(out: &str) -> Vec<Value> {
    out.lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// Tails `room` until a message with `text` arrives (each call waits a little).
fn tail_until(state: &Path, room: &str, text: &str) -> Value {
    for _ in 0..10 {
        let out = ok(state, &["tail", room, "--wait", "3"]);
        if let Some(l) = lines(&out).into_iter().find(|l| l["text"] == text) {
            return l;
        }
    }
    panic!("{text:?} never arrived in {room}");
}

#[test]
fn two_operators_talk_through_the_cli() {
    let fed = Fed::new("cli-client", &["a.example", "b.example"]);
    let a = fed.start("a.example");
    let b = fed.start("b.example");
    let dir = fed.dir.join("clients");
    std::fs::create_dir_all(&dir).unwrap();
    let (alice, bob, carol) = (
        dir.join("alice.json"),
        dir.join("bob.json"),
        dir.join("carol.json"),
    );

    let out = ok(
        &alice,
        &[
            "register",
            "--api",
            &a.client_api.to_string(),
            "--user",
            "alice",
        ],
    );
    assert_eq!(lines(&out)[0]["user"], "mimi://a.example/u/alice");
    ok(
        &bob,
        &[
            "register",
            "--api",
            &b.client_api.to_string(),
            "--user",
            "bob",
        ],
    );
    ok(
        &carol,
        &[
            "register",
            "--api",
            &b.client_api.to_string(),
            "--user",
            "carol",
        ],
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&alice).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "the state file holds keys and a token");
    }
    // A second registration into the same file is refused, and the file is untouched.
    let before = std::fs::read(&alice).unwrap();
    let (success, _, err) = client(
        &alice,
        &[
            "register",
            "--api",
            &a.client_api.to_string(),
            "--user",
            "alice2",
        ],
    );
    assert!(!success && err.contains("exists"), "{err}");
    assert_eq!(std::fs::read(&alice).unwrap(), before);

    let room = "mimi://a.example/r/cli";
    ok(&alice, &["create", room, "--name", "By hand", "--open"]);
    ok(&alice, &["invite", room, "mimi://b.example/u/bob"]);
    let rooms = lines(&ok(&bob, &["rooms"]));
    assert!(rooms.iter().any(|r| r["room"] == room), "{rooms:?}");

    let sent = lines(&ok(&alice, &["send", room, "hello bob"]));
    let got = tail_until(&bob, room, "hello bob");
    assert_eq!(got["sender"], "mimi://a.example/u/alice");
    assert_eq!(
        got["id"], sent[0]["id"],
        "the ID the sender printed is the one the reader sees"
    );
    ok(&bob, &["send", room, "hello alice"]);
    tail_until(&alice, room, "hello alice");

    // Carol joins the open room herself and is heard.
    ok(&carol, &["join", room]);
    ok(&carol, &["send", room, "carol here"]);
    let got = tail_until(&alice, room, "carol here");
    assert_eq!(got["sender"], "mimi://b.example/u/carol");

    // Refusals: a room that does not exist, a user that does not exist.
    let (success, _, err) = client(&carol, &["join", "mimi://a.example/r/nowhere"]);
    assert!(
        !success && !err.is_empty(),
        "joining nothing must fail with a reason"
    );
    let (success, _, err) = client(&alice, &["invite", room, "mimi://b.example/u/nobody"]);
    assert!(!success && err.contains("nobody"), "{success} {err}");
    drop((a, b));
}
