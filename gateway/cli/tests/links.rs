//! Gateway links end to end: real `mimi run` processes on loopback, mutually authenticated
//! HTTP/3 and HTTPS between them, directory discovery, state that survives a restart, and every
//! refusal of the links layer with its documented status and message.

#![allow(clippy::unwrap_used)]

mod common;

use common::{Fed, Got, Raw, count};
use mimi_client::Member;
use mimi_proto::codec::Wire;
use mimi_proto::messages::{ClientKeyMaterial, KeyMaterialResponse, KeyMaterialUserCode};
use mimi_session::ApiClient;

const BOB: &str = "mimi://b.example/u/bob";

/// Registers `user` on the gateway at `api`, publishing `kps` KeyPackages.
async fn user(
    api: std::net::SocketAddr,
    domain: &str,
    name: &str,
    kps: usize,
) -> (Member, ApiClient) {
    let member = Member::new(domain, name, "phone");
    let mut c = ApiClient::new(api);
    c.register(name, "phone", name).await.unwrap();
    if kps > 0 {
        c.publish(&member.key_packages(kps).unwrap()).await.unwrap();
    }
    (member, c)
}

/// The KeyPackage handed out for bob, through the requester's own gateway.
async fn bob_key_package(member: &Member, api: &ApiClient) -> Option<Vec<u8>> {
    let r = api
        .key_material(BOB, member.key_material_request(BOB, ""))
        .await
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    let resp = KeyMaterialResponse::from_bytes(&r.body).unwrap();
    match (resp.user_status, resp.clients.as_slice()) {
        (KeyMaterialUserCode::Success, [ClientKeyMaterial::Success { key_package, .. }]) => {
            Some(key_package.to_bytes())
        }
        (
            KeyMaterialUserCode::NoCompatibleMaterial,
            [ClientKeyMaterial::KeyMaterialExhausted { .. }],
        ) => None,
        other => panic!("unexpected answer {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_gateways_over_h3_and_https_with_restart() {
    let fed = Fed::new("links", &["a.example", "b.example", "c.example"]);
    // c reaches b over HTTPS only; a uses the default (HTTP/3, falling back to HTTPS).
    let b_addr = fed.fed_addr("b.example").to_string();
    fed.edit(
        "c.example",
        &format!("domain = \"b.example\"\nquic = \"{b_addr}\"\n"),
        "domain = \"b.example\"\ntransport = \"https\"\n",
    );
    let a = fed.start("a.example");
    let mut b = fed.start("b.example");
    let c = fed.start("c.example");

    let (_bob, _bob_api) = user(b.client_api, "b.example", "bob", 3).await;
    let (alice, alice_api) = user(a.client_api, "a.example", "alice", 0).await;
    let (carol, carol_api) = user(c.client_api, "c.example", "carol", 0).await;

    let kp1 = bob_key_package(&alice, &alice_api)
        .await
        .expect("a KeyPackage over HTTP/3");
    let kp2 = bob_key_package(&carol, &carol_api)
        .await
        .expect("a KeyPackage over HTTPS");
    assert_ne!(kp1, kp2, "a KeyPackage is never handed out twice");

    let m = b.metrics().await;
    let km = "endpoint=\"keyMaterial\",status=\"200\"";
    assert_eq!(
        count(
            &m,
            "mimi_requests_total",
            &[km, "peer=\"a.example\"", "transport=\"h3\""]
        ),
        1,
        "{m}"
    );
    assert_eq!(
        count(
            &m,
            "mimi_requests_total",
            &[km, "peer=\"c.example\"", "transport=\"h2\""]
        ),
        1,
        "{m}"
    );
    // Both peers discovered b's endpoints through its directory before calling it.
    assert!(
        count(
            &m,
            "mimi_requests_total",
            &["endpoint=\"directory\"", "peer=\"a.example\""]
        ) >= 1,
        "{m}"
    );
    assert!(
        count(
            &m,
            "mimi_requests_total",
            &["endpoint=\"directory\"", "peer=\"c.example\""]
        ) >= 1,
        "{m}"
    );
    let am = a.metrics().await;
    assert_eq!(
        count(
            &am,
            "mimi_outgoing_requests_total",
            &[
                "endpoint=\"keyMaterial\"",
                "peer=\"b.example\"",
                "outcome=\"200\""
            ]
        ),
        1,
        "{am}"
    );

    // Restart b: users, the KeyPackages still unused and the ones already handed out persist.
    b.restart();
    let kp3 = bob_key_package(&alice, &alice_api)
        .await
        .expect("the third KeyPackage after the restart");
    assert!(
        kp3 != kp1 && kp3 != kp2,
        "a KeyPackage handed out before the restart came back"
    );
    assert_eq!(
        bob_key_package(&carol, &carol_api).await,
        None,
        "three KeyPackages, three handed out"
    );
    drop((a, c));
}

/// b's refusals, each with its status and message, while c keeps being served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_refusal_is_explained_and_others_keep_being_served() {
    let fed = Fed::new("refusals", &["a.example", "b.example", "c.example"]);
    fed.append("b.example", "\n[limits]\nmax_body_bytes = 4096\nmax_concurrent_requests_per_peer = 2\nrequest_timeout_ms = 5000\n");
    let b = fed.start("b.example");
    let b_quic = b.quic.unwrap();
    let ca = fed.ca();
    let peer = |cert: Option<common::Pem>| Raw {
        cert,
        ca_pem: fed.ca_pem(),
        server_name: "b.example".into(),
        authority: None,
    };
    let a_ok = peer(Some(fed.identity("a.example")));
    let c_ok = peer(Some(fed.identity("c.example")));
    let from_a = [
        ("from", "mimi@a.example"),
        ("content-type", "application/octet-stream"),
    ];
    let from_c = [
        ("from", "mimi@c.example"),
        ("content-type", "application/octet-stream"),
    ];
    let kmr = Member::new("a.example", "alice", "phone").key_material_request(BOB, "");
    let path = "/v1/keyMaterial/mimi%3A%2F%2Fb.example%2Fu%2Fbob";

    // A good request, over both transports: the target user does not exist yet.
    for got in [
        a_ok.h3(b_quic, "POST", path, &from_a, kmr.clone())
            .await
            .unwrap(),
        a_ok.h2(b.https, "POST", path, &from_a, kmr.clone())
            .await
            .unwrap(),
    ] {
        assert_eq!(got.status, 200, "{}", got.text());
        assert_eq!(
            KeyMaterialResponse::from_bytes(&got.body)
                .unwrap()
                .user_status,
            KeyMaterialUserCode::UserUnknown
        );
    }

    // No client certificate: the handshake fails (TLS alert 116, certificate_required).
    let anon = peer(None);
    let e = anon
        .h3(b_quic, "POST", path, &from_a, kmr.clone())
        .await
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("peer sent no certificates") || e.contains("116"),
        "{e}"
    );
    let e = anon
        .h2(b.https, "POST", path, &from_a, kmr.clone())
        .await
        .unwrap_err()
        .to_string();
    assert!(
        e.to_lowercase().contains("certificaterequired") || e.contains("certificate"),
        "{e}"
    );

    // A certificate from a CA b does not trust (alert 48, unknown_ca).
    let other = mimi_gateway::pki::new_ca("Some other CA").unwrap();
    let rogue = peer(Some(
        mimi_gateway::pki::issue(&other, "a.example", false)
            .unwrap()
            .into(),
    ));
    let e = rogue
        .h3(b_quic, "POST", path, &from_a, kmr.clone())
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("UnknownIssuer") || e.contains("unknown"), "{e}");
    let e = rogue
        .h2(b.https, "POST", path, &from_a, kmr.clone())
        .await
        .unwrap_err()
        .to_string();
    assert!(
        e.to_lowercase().contains("unknownca") || e.to_lowercase().contains("unknown"),
        "{e}"
    );

    // An expired certificate from the right CA (alert 45, certificate_expired).
    let expired = peer(Some(
        mimi_gateway::pki::issue(&ca, "a.example", true)
            .unwrap()
            .into(),
    ));
    let e = expired
        .h3(b_quic, "POST", path, &from_a, kmr.clone())
        .await
        .unwrap_err()
        .to_string();
    assert!(e.to_lowercase().contains("expired"), "{e}");
    let e = expired
        .h2(b.https, "POST", path, &from_a, kmr.clone())
        .await
        .unwrap_err()
        .to_string();
    assert!(e.to_lowercase().contains("expired"), "{e}");

    // a's certificate claiming to be c in From.
    let spoof = [
        ("from", "mimi@c.example"),
        ("content-type", "application/octet-stream"),
    ];
    for got in [
        a_ok.h3(b_quic, "POST", path, &spoof, kmr.clone())
            .await
            .unwrap(),
        a_ok.h2(b.https, "POST", path, &spoof, kmr.clone())
            .await
            .unwrap(),
    ] {
        assert_eq!(
            (got.status, got.text().as_str()),
            (
                403,
                "From names c.example but the client certificate authenticates a.example"
            )
        );
    }
    // No From at all, and a Host that is not b.
    let got = a_ok
        .h3(
            b_quic,
            "POST",
            path,
            &[("content-type", "application/octet-stream")],
            kmr.clone(),
        )
        .await
        .unwrap();
    assert_eq!(
        (got.status, got.text().as_str()),
        (
            401,
            "missing From: mimi@<your domain> (your certificate says a.example)"
        )
    );
    let wrong_host = Raw {
        authority: Some("c.example:443".into()),
        ..a_ok.clone()
    };
    for got in [
        wrong_host
            .h3(b_quic, "POST", path, &from_a, kmr.clone())
            .await
            .unwrap(),
        wrong_host
            .h2(b.https, "POST", path, &from_a, kmr.clone())
            .await
            .unwrap(),
    ] {
        assert_eq!(
            (got.status, got.text().as_str()),
            (
                403,
                "Host names c.example, but this gateway serves b.example"
            )
        );
    }

    // Oversized bodies: refused from the declared length, or while reading.
    let big = vec![0u8; 64 * 1024];
    let got = a_ok
        .h3(b_quic, "POST", path, &from_a, big.clone())
        .await
        .unwrap();
    assert_eq!(
        (got.status, got.text().as_str()),
        (413, "the body exceeds the 4096-byte limit of keyMaterial")
    );
    let got = a_ok
        .h2(b.https, "POST", path, &from_a, big.clone())
        .await
        .unwrap();
    assert_eq!(
        (got.status, got.text().as_str()),
        (413, "the body exceeds the 4096-byte limit of keyMaterial")
    );
    // Malformed body: 400 with the field that failed.
    let got = a_ok
        .h2(b.https, "POST", path, &from_a, b"\x00\x01junk".to_vec())
        .await
        .unwrap();
    assert_eq!(got.status, 400, "{}", got.text());
    assert!(
        got.text().starts_with("malformed KeyMaterialRequest"),
        "{}",
        got.text()
    );

    // Too many requests in flight: two requests whose bodies never finish hold a's two slots;
    // a third is refused with 429 and Retry-After, while c is served normally.
    let hold = tokio::spawn(hold_open(a_ok.clone(), b_quic, path, 2));
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let got = a_ok
        .h2(b.https, "POST", path, &from_a, kmr.clone())
        .await
        .unwrap();
    assert_eq!(got.status, 429, "{}", got.text());
    assert_eq!(got.retry_after, Some(1));
    assert_eq!(
        got.text(),
        "a.example already has 2 requests in flight, the most this gateway allows; retry after 1 s"
    );
    let got: Got = c_ok
        .h3(
            b_quic,
            "POST",
            path,
            &from_c,
            Member::new("c.example", "carol", "x").key_material_request(BOB, ""),
        )
        .await
        .unwrap();
    assert_eq!(got.status, 200, "c is still served: {}", got.text());
    hold.abort();

    // The refusals are counted, and b is still up.
    let m = b.metrics().await;
    assert!(
        count(&m, "mimi_handshake_failures_total", &["transport=\"h3\""]) >= 3,
        "{m}"
    );
    assert!(
        count(
            &m,
            "mimi_handshake_failures_total",
            &["transport=\"https\""]
        ) >= 3,
        "{m}"
    );
    assert!(
        count(
            &m,
            "mimi_requests_total",
            &["status=\"429\"", "peer=\"a.example\""]
        ) >= 1,
        "{m}"
    );
    let (s, _) = common::plain_get(b.admin, "/readyz").await;
    assert_eq!(s, 200);
}

/// Opens `n` HTTP/3 requests on one connection whose bodies never finish; holds them open.
async fn hold_open(raw: Raw, addr: std::net::SocketAddr, path: &'static str, n: usize) {
    let q = quinn::crypto::rustls::QuicClientConfig::try_from(raw.tls(b"h3").unwrap()).unwrap();
    let mut ep = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
    ep.set_default_client_config(quinn::ClientConfig::new(std::sync::Arc::new(q)));
    let conn = ep.connect(addr, "b.example").unwrap().await.unwrap();
    let (mut driver, mut send) = h3::client::new(h3_quinn::Connection::new(conn))
        .await
        .unwrap();
    tokio::spawn(async move {
        let _ = futures_util::future::poll_fn(|cx| driver.poll_close(cx)).await;
    });
    let mut streams = Vec::new();
    for _ in 0..n {
        let req = http::Request::post(format!("https://b.example{path}"))
            .header("from", "mimi@a.example")
            .header("content-type", "application/octet-stream")
            .body(())
            .unwrap();
        let mut s = send.send_request(req).await.unwrap();
        s.send_data(bytes::Bytes::from_static(b"\x00\x01"))
            .await
            .unwrap();
        streams.push(s);
    }
    std::future::pending::<()>().await;
    drop(streams);
}

/// `mimi run` without `--config`: a development gateway under the data directory, the
/// `listening` line, and a clean stop on SIGTERM; the second start reuses the PKI and storage.
#[test]
fn run_without_config_starts_a_development_gateway() {
    use std::io::BufRead;
    let dir = std::env::temp_dir().join(format!("mimi-dev-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    for round in 0..2 {
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_mimi"))
            .args(["run", "--data"])
            .arg(&dir)
            .env("MIMI_LISTEN_QUIC", "127.0.0.1:0")
            .env("MIMI_LISTEN_HTTPS", "127.0.0.1:0")
            .env("MIMI_LISTEN_ADMIN", "127.0.0.1:0")
            .env("MIMI_LISTEN_CLIENT_API", "127.0.0.1:0")
            .env("RUST_LOG", "warn")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert!(
            line.starts_with("listening quic=127.0.0.1:")
                && line.contains(" https=127.0.0.1:")
                && line.contains(" admin=127.0.0.1:"),
            "{line}"
        );
        assert!(
            dir.join("localhost/config.toml").is_file() && dir.join("ca.pem").is_file(),
            "round {round}"
        );
        let _ = std::process::Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        assert!(child.wait().unwrap().success(), "SIGTERM is a clean stop");
    }
    assert!(dir.join("localhost/data/localhost.redb").is_file());
    let _ = std::fs::remove_dir_all(&dir);
}
