//! Attacks by local clients and on the operator's side (the peer-facing ones are the
//! `security` group of mimi-conformance): each asserts the refusal and that nothing changed.

#![allow(clippy::unwrap_used)]

mod common;

use std::process::Command;

use common::Fed;
use mimi_client::RoomSetup;
use mimi_session::{ApiClient, Session};

/// The client `user/device` does not exist: registering it with the admin token succeeds.
async fn absent(api: std::net::SocketAddr, admin: &str, user: &str, device: &str) -> bool {
    let mut c = ApiClient::with_token(api, admin);
    c.register(user, device, "").await.is_ok()
}

const ADMIN: &str = "admin-token-for-the-attack-tests";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn device_takeover_and_foreign_rooms_are_refused_and_change_nothing() {
    let fed = Fed::new("attacks", &["a.example"]);
    fed.append(
        "a.example",
        &format!("\n[client_api]\nadmin_token = \"{ADMIN}\"\n"),
    );
    let a = fed.start("a.example");
    let mut alice = Session::register(a.client_api, "a.example", "alice", "phone", 2)
        .await
        .unwrap();
    let bob = Session::register(a.client_api, "a.example", "bob", "phone", 2)
        .await
        .unwrap();

    // 1. A new device of alice, anonymously.
    let mut anon = ApiClient::new(a.client_api);
    let e = anon.register("alice", "evil", "").await.unwrap_err();
    assert!(e.to_string().contains("403"), "{e}");
    // 2. A new device of alice, with bob's token.
    let mut as_bob = ApiClient::with_token(a.client_api, bob.api.token().unwrap());
    let e = as_bob.register("alice", "evil2", "").await.unwrap_err();
    assert!(e.to_string().contains("403"), "{e}");
    // Neither device exists.
    assert!(absent(a.client_api, ADMIN, "alice", "evil").await);
    assert!(absent(a.client_api, ADMIN, "alice", "evil2").await);

    // 3. Bob subscribes to alice's room, which he is not in, and reads nothing of it.
    let room = "mimi://a.example/r/private";
    alice
        .create_room(room, &RoomSetup::named("private"))
        .await
        .unwrap();
    let e = bob.api.subscribe(room, true).await.unwrap_err();
    assert!(e.to_string().contains("403"), "{e}");
    alice
        .send(room, |s, r, salt| {
            mimi_content::builder::text(s, r, salt, "secret")
        })
        .await
        .unwrap();
    let page = bob.api.events(0, 100, 1).await.unwrap();
    assert!(
        page.events.iter().all(|d| d.room != room),
        "bob received deliveries of a room he is not in"
    );
    // 4. A token that is not one.
    let forged = ApiClient::with_token(a.client_api, "not-a-token");
    assert!(
        forged
            .whoami()
            .await
            .unwrap_err()
            .to_string()
            .contains("401")
    );
    // 5. The gateway as an open proxy: a URL on a host that is no peer's asset host, and
    // strings that are no asset URL, are the client's mistake (400), never fetched.
    for url in [
        "https://evil.example/assets/x",
        "http://a.example/assets/x",
        "file:///etc/passwd",
        "not a url",
    ] {
        let e = bob.api.download(url).await.unwrap_err();
        assert!(e.to_string().contains("400"), "{url}: {e}");
    }
}

#[test]
fn open_registration_on_a_public_address_is_refused_at_start() {
    let fed = Fed::new("attacks-open", &["a.example"]);
    let cfg = fed.config("a.example");
    let text = std::fs::read_to_string(&cfg).unwrap();
    // The client API on every address, open registration (the default).
    let public = text
        .lines()
        .map(|l| {
            if l.starts_with("client_api = ") {
                "client_api = \"0.0.0.0:0\"".to_owned()
            } else {
                l.to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    std::fs::write(&cfg, public).unwrap();
    let db = fed
        .dir
        .join("a.example")
        .join("data")
        .join("a.example.redb");
    let out = Command::new(env!("CARGO_BIN_EXE_mimi"))
        .args(["run", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "mimi run accepted open registration on 0.0.0.0"
    );
    assert!(err.contains("open_registration"), "{err}");
    assert!(!db.exists(), "a refused start must not create the store");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_application_service_takes_its_token_only_from_the_header() {
    let fed = Fed::new("attacks-as", &["m.example"]);
    let listen = common::free_port();
    fed.append(
        "m.example",
        &format!(
            "\n[client_api]\nadmin_token = \"{ADMIN}\"\n[bridge.matrix]\nhomeserver_url = \"http://127.0.0.1:1\"\nserver_name = \"matrix.test\"\nlisten = \"127.0.0.1:{listen}\"\nas_token = \"as_token_for_attack_tests\"\nhs_token = \"hs_token_for_attack_tests\"\n"
        ),
    );
    let m = fed.start("m.example");
    let txn = serde_json::json!({"events": [{
        "type": "m.room.message", "event_id": "$1", "room_id": "!r:matrix.test",
        "sender": "@eve:matrix.test", "content": {"msgtype": "m.text", "body": "hi"}
    }]})
    .to_string();
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = reqwest::Client::new();
    let base = format!("http://127.0.0.1:{listen}/_matrix/app/v1/transactions");
    for (url, auth) in [
        (
            format!("{base}/t1?access_token=hs_token_for_attack_tests"),
            None,
        ),
        (
            format!("{base}/t2"),
            Some("Bearer hs_token_for_attack_tests_"),
        ),
        (
            format!("{base}/t3"),
            Some("Bearer hs_token_for_attack_test"),
        ),
        (format!("{base}/t4"), Some("hs_token_for_attack_tests")),
    ] {
        let mut req = client.put(&url).body(txn.clone());
        if let Some(a) = auth {
            req = req.header("authorization", a);
        }
        let r = req.send().await.unwrap();
        assert_eq!(r.status().as_u16(), 403, "{url} {auth:?}");
    }
    // Nothing was bridged: no MIMI user exists for eve.
    assert!(absent(m.client_api, ADMIN, "mx-_40eve_3amatrix.test", "probe").await);
    // The header works (the event is in no portal, so it is only recorded).
    let r = client
        .put(format!("{base}/t5"))
        .header("authorization", "Bearer hs_token_for_attack_tests")
        .body(txn)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_store_is_created_private() {
    use std::os::unix::fs::PermissionsExt as _;
    let fed = Fed::new("attacks-modes", &["a.example"]);
    let db = fed
        .dir
        .join("a.example")
        .join("data")
        .join("a.example.redb");
    let _a = fed.start("a.example");
    let mode = std::fs::metadata(&db).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "the store holds keys: mode {mode:o}");
    let dir = std::fs::metadata(db.parent().unwrap())
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(dir, 0o700, "its directory: mode {dir:o}");
}
