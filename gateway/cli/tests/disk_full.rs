//! A full disk under the hub: its store lives on a small tmpfs; messages are sent until a
//! commit fails. The hub must answer 503 (never a half-done step), `/readyz` must say why,
//! nothing accepted may be lost; once the disk has room again, the hub serves again and
//! every accepted message reaches the follower once, in order. Needs root (to mount the
//! tmpfs): skipped with a message otherwise.

#![allow(clippy::unwrap_used)]

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::{Fed, plain_get};
use mimi_client::{Event, RoomSetup, role};
use mimi_session::{Session, SessionError, Verdict};

struct Tmpfs(std::path::PathBuf);

impl Tmpfs {
    fn mount(dir: &std::path::Path, size: &str) -> Option<Self> {
        std::fs::create_dir_all(dir).unwrap();
        let ok = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0700"),
                "tmpfs",
            ])
            .arg(dir)
            .status()
            .is_ok_and(|s| s.success());
        ok.then(|| Self(dir.to_owned()))
    }

    fn resize(&self, size: &str) {
        let s = Command::new("mount")
            .args(["-o", &format!("remount,size={size}")])
            .arg(&self.0)
            .status()
            .unwrap();
        assert!(s.success());
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_refuses_cleanly_and_loses_nothing() {
    let fed = Fed::new("diskfull", &["a.example", "b.example"]);
    let small = fed.dir.join("a.example").join("small");
    let Some(fs) = Tmpfs::mount(&small, "8m") else {
        eprintln!("disk_full: cannot mount a tmpfs (not root?): skipped");
        return;
    };
    let cfg = fed.config("a.example");
    let text = std::fs::read_to_string(&cfg).unwrap().replace(
        "path = \"data/a.example.redb\"",
        &format!("path = \"{}\"", small.join("a.redb").display()),
    );
    std::fs::write(&cfg, text).unwrap();
    let a = fed.start("a.example");
    let b = fed.start("b.example");
    let room = "mimi://a.example/r/full";
    let mut alice = Session::register(a.client_api, "a.example", "alice", "d", 2)
        .await
        .unwrap();
    let mut bob = Session::register(b.client_api, "b.example", "bob", "d", 2)
        .await
        .unwrap();
    alice
        .create_room(room, &RoomSetup::named("full"))
        .await
        .unwrap();
    assert_eq!(
        alice
            .add(room, &[(bob.user().to_owned(), role::MEMBER)])
            .await
            .unwrap(),
        Verdict::Accepted
    );
    bob.sync_until(20, |e| matches!(e, Event::Joined { .. }))
        .await
        .unwrap();

    // Fill the disk: 100 KB messages until the hub refuses one.
    let filler = "x".repeat(100_000);
    let mut accepted = Vec::new();
    let mut refused = None;
    for i in 0..400 {
        let text = format!("{i} {filler}");
        match alice
            .send(room, |s, r, salt| {
                mimi_content::builder::text(s, r, salt, &text)
            })
            .await
        {
            Ok((id, mimi_proto::messages::SubmitOutcome::Accepted { .. })) => accepted.push(id),
            Ok((_, other)) => panic!("unexpected outcome {other:?}"),
            Err(SessionError::Status { status, body, .. }) => {
                refused = Some((status, body));
                break;
            }
            Err(e) => panic!("{e}"),
        }
    }
    let (status, body) = refused.expect("the tmpfs never filled up");
    assert_eq!(status, 503, "a failed commit is a 503: {body}");
    let (s, t) = plain_get(a.admin, "/readyz").await;
    assert_eq!(s, 503, "not ready while storage fails: {t}");
    assert!(t.contains("storage"), "{t}");
    assert!(!accepted.is_empty());

    // Room again: the hub serves again and nothing accepted was lost.
    fs.resize("256m");
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut resumed = false;
    while Instant::now() < deadline {
        // The member's ratchet moved on with the refused message: send a new one.
        if let Ok((id, mimi_proto::messages::SubmitOutcome::Accepted { .. })) = alice
            .send(room, |s, r, salt| {
                mimi_content::builder::text(s, r, salt, "after")
            })
            .await
        {
            accepted.push(id);
            resumed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    assert!(
        resumed,
        "the hub never served again after the disk had room"
    );
    // Ready again once the hold after the last failure has passed (5 s).
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut ready = plain_get(a.admin, "/readyz").await;
    while ready.0 != 200 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(300)).await;
        ready = plain_get(a.admin, "/readyz").await;
    }
    assert_eq!(
        ready.0, 200,
        "ready again after the disk had room: {}",
        ready.1
    );
    let mut got = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while got.len() < accepted.len() && Instant::now() < deadline {
        for e in bob.sync(2).await.unwrap() {
            if let Event::Message { id, .. } = e {
                got.push(id);
            }
        }
    }
    assert_eq!(got, accepted, "every accepted message once, in order");
}
