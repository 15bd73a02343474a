//! Operating a running federation: `mimi admin` shows peers, queues and rooms as traffic
//! flows and a follower is down; the certificate is rotated while messages flow (SIGHUP), and
//! a broken rotation changes nothing.

#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::Fed;
use mimi_client::{Event, RoomSetup, role};
use mimi_session::{Session, Verdict};
use serde_json::Value;
use sha2::Digest;

const TOKEN: &str = "operator-token-of-the-operate-test";

fn admin(config: &Path, args: &[&str]) -> (bool, Vec<Value>, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_mimi"))
        .args(["admin", "--config"])
        .arg(config)
        .args(args)
        .output()
        .unwrap();
    let lines = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    (
        out.status.success(),
        lines,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn ok(config: &Path, args: &[&str]) -> Vec<Value> {
    let (success, lines, err) = admin(config, args);
    assert!(success, "mimi admin {args:?}: {err}");
    lines
}

async fn say(s: &mut Session, room: &str, text: &str) {
    let (_, o) = s
        .send(room, |snd, r, salt| {
            mimi_content::builder::text(snd, r, salt, text)
        })
        .await
        .unwrap();
    assert!(matches!(
        o,
        mimi_proto::messages::SubmitOutcome::Accepted { .. }
    ));
}

async fn receive(s: &mut Session, texts: &[String]) {
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut got = Vec::new();
    while got.len() < texts.len() {
        assert!(
            Instant::now() < deadline,
            "{} got {} of {}",
            s.user(),
            got.len(),
            texts.len()
        );
        for e in s.sync(2).await.unwrap() {
            if let Event::Message { message, .. } = e {
                got.push(mimi_content::render::part_text(
                    &message.content().nested_part,
                ));
            }
        }
    }
    assert_eq!(got, texts, "every message once, in order");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_shows_queues_and_peers_and_certificates_rotate_under_traffic() {
    let fed = Fed::new("operate", &["a.example", "b.example"]);
    for d in ["a.example", "b.example"] {
        fed.append(d, &format!("\n[client_api]\nadmin_token = \"{TOKEN}\"\n"));
    }
    let a = fed.start("a.example");
    let mut b = fed.start("b.example");
    let (ca_cfg, cb_cfg) = (fed.config("a.example"), fed.config("b.example"));
    let room = "mimi://a.example/r/ops";
    let mut alice = Session::register(a.client_api, "a.example", "alice", "d", 2)
        .await
        .unwrap();
    let mut bob = Session::register(b.client_api, "b.example", "bob", "d", 2)
        .await
        .unwrap();
    alice
        .create_room(room, &RoomSetup::named("ops"))
        .await
        .unwrap();
    let v = alice
        .add(room, &[(bob.user().to_owned(), role::MEMBER)])
        .await
        .unwrap();
    assert_eq!(v, Verdict::Accepted);
    bob.sync_until(20, |e| matches!(e, Event::Joined { .. }))
        .await
        .unwrap();

    // Without the token: refused, with a sentence.
    let out = Command::new(env!("CARGO_BIN_EXE_mimi"))
        .args([
            "admin",
            "--admin",
            &a.admin.to_string(),
            "--token",
            "wrong-token-xxxxxx",
            "status",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("401"));

    let status = &ok(&ca_cfg, &["status"])[0];
    assert_eq!(
        (status["domain"].as_str(), status["ready"].as_bool()),
        (Some("a.example"), Some(true))
    );
    assert_eq!(status["rooms_hosted"], 1);
    let rooms = ok(&ca_cfg, &["rooms"]);
    assert_eq!(rooms[0]["room"], room);
    assert_eq!(rooms[0]["followers"], serde_json::json!(["b.example"]));

    // b is down: a's queue for b grows and its link shows the failure.
    b.stop();
    let mut sent = Vec::new();
    for i in 0..5 {
        let t = format!("while b is down {i}");
        say(&mut alice, room, &t).await;
        sent.push(t);
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let queues = ok(&ca_cfg, &["queues"]);
        let peers = ok(&ca_cfg, &["peers"]);
        let q = queues.iter().find(|q| q["follower"] == "b.example");
        let p = peers.iter().find(|p| p["domain"] == "b.example").unwrap();
        if q.is_some_and(|q| q["entries"].as_u64() == Some(5)) && p["last_error"].is_string() {
            assert_eq!(p["queued_entries"], 5);
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the queue for b never showed: {queues:?} {peers:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(ok(&ca_cfg, &["dead-letters"]).is_empty());
    assert_eq!(
        ok(
            &ca_cfg,
            &["retry", "--follower", "b.example", "--room", room]
        )[0]["affected"],
        0
    );

    // b is back: the backlog drains in order and the queue empties.
    b = fed.start("b.example");
    receive(&mut bob, &sent).await;
    let deadline = Instant::now() + Duration::from_secs(20);
    while !ok(&ca_cfg, &["queues"]).is_empty() {
        assert!(Instant::now() < deadline, "the queue never drained");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // Rotation under traffic: a new key and certificate for b, SIGHUP, messages keep flowing.
    let before = ok(&cb_cfg, &["reload"])[0]["fingerprint"]
        .as_str()
        .unwrap()
        .to_owned();
    let fresh = mimi_gateway::pki::issue(&fed.ca(), "b.example", false).unwrap();
    let dir = fed.dir.join("b.example");
    let mut during = Vec::new();
    for i in 0..10 {
        if i == 5 {
            std::fs::write(dir.join("cert.pem"), &fresh.cert).unwrap();
            std::fs::write(dir.join("key.pem"), &fresh.key).unwrap();
            let _ = Command::new("kill")
                .args(["-HUP", &b.pid().to_string()])
                .status();
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        let t = format!("rotation {i}");
        say(&mut alice, room, &t).await;
        during.push(t);
    }
    receive(&mut bob, &during).await;
    let now = ok(&cb_cfg, &["status"]);
    assert!(now[0]["ready"].as_bool().unwrap());
    let der = rustls::pki_types::pem::PemObject::from_pem_slice(fresh.cert.as_bytes())
        .map(|c: rustls::pki_types::CertificateDer<'static>| c.to_vec())
        .unwrap();
    let want = hex::encode(sha2::Sha256::digest(&der));
    let served = ok(&cb_cfg, &["reload"])[0]["fingerprint"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_ne!(served, before, "the certificate changed");
    assert_eq!(served, want, "the new certificate is served");
    // And b's new certificate is what a new connection sees: a new message from b reaches a.
    say(&mut bob, room, "after the rotation").await;
    receive(&mut alice, &["after the rotation".to_owned()]).await;

    // A broken rotation (a key that does not match) is refused and changes nothing.
    let other = mimi_gateway::pki::issue(&fed.ca(), "b.example", false).unwrap();
    std::fs::write(dir.join("key.pem"), &other.key).unwrap();
    let (success, _, err) = admin(&cb_cfg, &["reload"]);
    assert!(!success && err.contains("does not belong"), "{err}");
    std::fs::write(dir.join("key.pem"), &fresh.key).unwrap();
    assert_eq!(ok(&cb_cfg, &["reload"])[0]["fingerprint"], want.as_str());
    say(&mut alice, room, "still fine").await;
    receive(&mut bob, &["still fine".to_owned()]).await;
}
