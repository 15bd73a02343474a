//! A provider as a cluster: three gateway nodes of a.example on one real PostgreSQL
//! (`scripts/pg.sh start`; `MIMI_TEST_PG` names it), with b.example and c.example as peers
//! that list every node's address. `mimi load` runs across all three providers while the node
//! ordering most of a.example's rooms is killed with SIGKILL: nothing accepted is lost or
//! delivered twice, order per room is kept, and the dead node's slots are ordered again
//! within the configured failover bound.

#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{Fed, Proc, free_port, plain_get};
use mimi_proto::admin_api::ClusterStatus;
use mimi_tools::load::{LoadOptions, run};

const TOKEN: &str = "cluster-admin-token-0123456789";
/// The failover bound the nodes are configured with (ms).
const FAILOVER_MS: u64 = 6_000;

/// A fresh database on the test server, its URL.
pub async fn fresh_db(name: &str) -> Option<String> {
    let Ok(url) = std::env::var("MIMI_TEST_PG") else {
        eprintln!("MIMI_TEST_PG is not set (scripts/pg.sh start): skipped");
        return None;
    };
    let (client, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    for sql in [
        format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
        format!("CREATE DATABASE {name}"),
    ] {
        client.batch_execute(&sql).await.unwrap();
    }
    let base = url.rsplit_once('/').unwrap().0;
    Some(format!("{base}/{name}"))
}

/// One node of a.example.
struct Node {
    name: String,
    config: PathBuf,
    https: SocketAddr,
    proc: Option<Proc>,
}

impl Node {
    fn start(&mut self) {
        self.proc = Some(Proc::start(&self.config, "a.example"));
    }
    fn p(&self) -> &Proc {
        self.proc.as_ref().unwrap()
    }
}

/// Writes the configuration of node `i` next to a.example's (same certificate, same data
/// directory for assets), node 0 on a.example's own ports.
fn node_config(fed: &Fed, i: usize, url: &str) -> (PathBuf, SocketAddr) {
    let base = std::fs::read_to_string(fed.config("a.example")).unwrap();
    let (fed_port, admin, api) = if i == 0 {
        fed.ports[0]
    } else {
        (free_port(), free_port(), free_port())
    };
    let mut out = String::new();
    for line in base.lines() {
        let l = if line.starts_with("quic = \"127.0.0.1:")
            && out.contains("[listen]")
            && !out.contains("[tls]")
        {
            format!("quic = \"127.0.0.1:{fed_port}\"")
        } else if line.starts_with("https = \"127.0.0.1:")
            && out.contains("[listen]")
            && !out.contains("[tls]")
        {
            format!("https = \"127.0.0.1:{fed_port}\"")
        } else if line.starts_with("admin = ") {
            format!("admin = \"127.0.0.1:{admin}\"")
        } else if line.starts_with("client_api = ") {
            format!("client_api = \"127.0.0.1:{api}\"")
        } else if line == "[storage]" {
            format!("[storage]\nbackend = \"postgres\"\nurl = \"{url}\"\nconnections = 4")
        } else {
            line.to_owned()
        };
        out.push_str(&l);
        out.push('\n');
    }
    out.push_str(&format!(
        "\n[client_api]\nadmin_token = \"{TOKEN}\"\n\n[cluster]\nnode = \"n{i}\"\nfailover_ms = {FAILOVER_MS}\n"
    ));
    let p = fed.dir.join("a.example").join(format!("node{i}.toml"));
    std::fs::write(&p, out).unwrap();
    (p, SocketAddr::from(([127, 0, 0, 1], fed_port)))
}

async fn cluster_status(admin: SocketAddr, room: Option<&str>) -> Option<ClusterStatus> {
    let tcp = tokio::net::TcpStream::connect(admin).await.ok()?;
    let (mut s, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tcp))
        .await
        .ok()?;
    tokio::spawn(conn);
    let path = match room {
        Some(r) => format!(
            "/admin/v1/cluster?room={}",
            r.replace(':', "%3A").replace('/', "%2F")
        ),
        None => "/admin/v1/cluster".to_owned(),
    };
    let req = http::Request::get(path)
        .header("host", "localhost")
        .header("authorization", format!("Bearer {TOKEN}"))
        .body(http_body_util::Full::new(bytes::Bytes::new()))
        .unwrap();
    let r = s.send_request(req).await.ok()?;
    use http_body_util::BodyExt as _;
    let body = r.into_body().collect().await.ok()?.to_bytes();
    serde_json::from_slice(&body).ok()
}

/// Waits until every slot is ordered by one of `live`, as `admin` sees it; how long it took.
async fn settled(admin: SocketAddr, live: &[&str], within: Duration) -> Result<Duration, String> {
    let t = Instant::now();
    let mut last = None;
    while t.elapsed() < within {
        if let Some(s) = cluster_status(admin, None).await {
            if s.owners
                .iter()
                .all(|o| o.as_deref().is_some_and(|n| live.contains(&n)))
            {
                return Ok(t.elapsed());
            }
            last = Some(s);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Err(format!("not settled within {within:?}: {last:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_node_killed_under_load_loses_nothing_and_its_rooms_move_within_the_bound() {
    let db = format!("mimi_cluster_{}", std::process::id());
    let Some(url) = fresh_db(&db).await else {
        return;
    };
    let fed = Arc::new(Fed::new(
        "cluster",
        &["a.example", "b.example", "c.example"],
    ));
    let mut nodes: Vec<Node> = (0..3)
        .map(|i| {
            let (config, https) = node_config(&fed, i, &url);
            Node {
                name: format!("n{i}"),
                config,
                https,
                proc: None,
            }
        })
        .collect();
    // b and c reach a.example at node 0 and, when it cannot be reached, at the others.
    let others: Vec<String> = nodes[1..]
        .iter()
        .map(|n| format!("{{ quic = \"{0}\", https = \"{0}\" }}", n.https))
        .collect();
    for d in ["b.example", "c.example"] {
        fed.edit(
            d,
            "asset_domains = [\"a.example\"]",
            &format!(
                "asset_domains = [\"a.example\"]\naddresses = [{}]",
                others.join(", ")
            ),
        );
    }
    for n in &mut nodes {
        n.start();
    }
    let names = ["n0", "n1", "n2"];
    let admin0 = nodes[0].p().admin;
    // The first node to start takes every slot; as the others join, it hands their share over.
    let t = Instant::now();
    let mut per_node: BTreeMap<String, usize> = BTreeMap::new();
    while t.elapsed() < Duration::from_secs(30) {
        per_node.clear();
        if let Some(s) = cluster_status(admin0, None).await {
            for o in s.owners.iter().flatten() {
                *per_node.entry(o.clone()).or_default() += 1;
            }
            if s.nodes.len() == 3 && per_node.len() == 3 && per_node.values().all(|n| *n == 4) {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        per_node.len() == 3 && per_node.values().all(|n| *n == 4),
        "every node orders its share of the 12 slots: {per_node:?}"
    );
    eprintln!("cluster: balanced in {:?}", t.elapsed());

    let b = fed.start("b.example");
    let c = fed.start("c.example");
    let a_apis: Vec<SocketAddr> = nodes.iter().map(|n| n.p().client_api).collect();
    let run_id = rand::random::<u32>() % 1_000_000;
    let rooms = 9;
    let ready = Arc::new(tokio::sync::Notify::new());
    let nodes = Arc::new(Mutex::new(nodes));
    let killed: Arc<Mutex<Option<(String, Duration)>>> = Arc::default();
    let killer = {
        let (ready, nodes, killed) = (Arc::clone(&ready), Arc::clone(&nodes), Arc::clone(&killed));
        tokio::spawn(async move {
            ready.notified().await;
            tokio::time::sleep(Duration::from_secs(3)).await;
            // The node that orders most of a.example's rooms (rooms r with r % 3 == 0).
            let admin = nodes.lock().unwrap()[1].p().admin;
            let mut count: BTreeMap<String, usize> = BTreeMap::new();
            for r in (0..rooms).filter(|r| r % 3 == 0) {
                let room = format!("mimi://a.example/r/load{run_id}n{r}");
                let s = cluster_status(admin, Some(&room)).await.unwrap();
                let owner = s.owners[usize::from(s.room_slot.unwrap())].clone().unwrap();
                *count.entry(owner).or_default() += 1;
            }
            let victim = count.iter().max_by_key(|(_, n)| **n).unwrap().0.clone();
            let i = names.iter().position(|n| *n == victim).unwrap();
            nodes.lock().unwrap()[i].proc.as_mut().unwrap().kill();
            let t = Instant::now();
            let survivor = nodes.lock().unwrap()[(i + 1) % 3].p().admin;
            let live: Vec<&str> = names.iter().copied().filter(|n| *n != victim).collect();
            settled(survivor, &live, Duration::from_secs(60))
                .await
                .unwrap();
            let took = t.elapsed();
            eprintln!("cluster: killed {victim} (ordering {count:?}); its slots moved in {took:?}");
            *killed.lock().unwrap() = Some((victim, took));
        })
    };
    let report = run(&LoadOptions {
        gateways: vec![
            ("a.example".into(), a_apis),
            ("b.example".into(), vec![b.client_api]),
            ("c.example".into(), vec![c.client_api]),
        ],
        rooms,
        users: 3,
        messages: 1_500,
        rate: 150.0,
        patience: Duration::from_secs(60),
        in_flight: 16,
        run: run_id,
        ready: Some(ready),
        token: None,
    })
    .await
    .unwrap();
    killer.await.unwrap();
    let (victim, took) = killed.lock().unwrap().clone().unwrap();
    eprintln!("cluster: {report:?}");
    assert!(report.clean(), "{report:?}");
    assert_eq!(report.accepted, 1_500, "every message accepted in the end");
    assert_eq!(
        report.delivered, 3_000,
        "each reached both other users once"
    );
    assert!(
        took <= Duration::from_millis(FAILOVER_MS),
        "{victim}'s slots were ordered again after {took:?}, beyond the {FAILOVER_MS} ms bound"
    );
    // The survivors' readiness, and the dead node's slots shared between them.
    let survivor = nodes
        .lock()
        .unwrap()
        .iter()
        .find(|n| n.name != victim)
        .unwrap()
        .p()
        .admin;
    assert_eq!(plain_get(survivor, "/readyz").await.0, 200);
    let s = cluster_status(survivor, None).await.unwrap();
    assert!(!s.nodes.contains_key(&victim), "{s:?}");
}

fn signal(pid: u32, sig: &str) {
    let ok = std::process::Command::new("kill")
        .args([sig, &pid.to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill {sig} {pid}");
}

/// No split brain: the node ordering a room is frozen (SIGSTOP) until its lease expires and
/// the other node takes the room; a commit is accepted there; then the frozen node wakes up
/// and is handed a competing commit for the same epoch at once. It must not accept it (its
/// shard is stopped, or its write carries the old fencing token and the database refuses
/// it): every member ends in one epoch with one history.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_frozen_node_never_accepts_a_commit_in_an_epoch_another_node_ordered() {
    use mimi_client::{RoomSetup, role};
    use mimi_session::{ApiClient, Session, Verdict};

    let db = format!("mimi_fence_{}", std::process::id());
    let Some(url) = fresh_db(&db).await else {
        return;
    };
    let fed = Fed::new("fence", &["a.example"]);
    let mut nodes: Vec<Proc> = (0..2)
        .map(|i| {
            let (config, _) = node_config(&fed, i, &url);
            Proc::start(&config, "a.example")
        })
        .collect();
    let apis: Vec<SocketAddr> = nodes.iter().map(|n| n.client_api).collect();
    let room = "mimi://a.example/r/fenced";
    let mut alice = Session::register(apis.clone(), "a.example", "alice", "d", 3)
        .await
        .unwrap();
    let mut bob = Session::register(apis.clone(), "a.example", "bob", "d", 3)
        .await
        .unwrap();
    for u in ["carol", "dave"] {
        Session::register(apis.clone(), "a.example", u, "d", 3)
            .await
            .unwrap();
    }
    alice
        .create_room(room, &RoomSetup::named("fenced"))
        .await
        .unwrap();
    let v = alice
        .add(room, &[(bob.user().to_owned(), role::ADMIN)])
        .await
        .unwrap();
    assert_eq!(v, Verdict::Accepted);
    bob.sync_until(20, |e| matches!(e, mimi_client::Event::Joined { .. }))
        .await
        .unwrap();
    let epoch = alice.member.epoch(room).unwrap();
    assert_eq!(bob.member.epoch(room), Some(epoch));

    // Two competing commits for the same epoch, prepared before anything happens.
    let kp_carol = alice
        .key_packages_of(room, "mimi://a.example/u/carol")
        .await
        .unwrap();
    let kp_dave = bob
        .key_packages_of(room, "mimi://a.example/u/dave")
        .await
        .unwrap();
    let alice_commit = alice
        .member
        .add_participants(
            room,
            &[("mimi://a.example/u/carol".to_owned(), role::MEMBER)],
            &kp_carol,
        )
        .unwrap();
    let bob_commit = bob
        .member
        .add_participants(
            room,
            &[("mimi://a.example/u/dave".to_owned(), role::MEMBER)],
            &kp_dave,
        )
        .unwrap();

    // Who orders the room, frozen until the other node orders it.
    let mut owner = None;
    for _ in 0..100 {
        let s = cluster_status(nodes[0].admin, Some(room)).await.unwrap();
        if s.nodes.len() == 2 {
            owner = s.owners[usize::from(s.room_slot.unwrap())].clone();
            if owner.is_some() {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let owner = owner.unwrap();
    let x = if owner == "n0" { 0 } else { 1 };
    let y = 1 - x;
    signal(nodes[x].pid(), "-STOP");
    let t = Instant::now();
    let mut moved = false;
    while t.elapsed() < Duration::from_secs(30) {
        if let Some(s) = cluster_status(nodes[y].admin, Some(room)).await
            && s.owners[usize::from(s.room_slot.unwrap())].as_deref() == Some(["n0", "n1"][y])
        {
            moved = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    if !moved {
        signal(nodes[x].pid(), "-CONT");
    }
    assert!(moved, "the frozen node's room never moved");

    // Bob's commit through the node that orders the room now: accepted.
    let token = bob.api.token().unwrap().to_owned();
    bob.api = ApiClient::with_token(apis[y], &token);
    assert_eq!(
        bob.handshake(room, bob_commit).await.unwrap(),
        Verdict::Accepted
    );
    // The frozen node wakes up and gets Alice's commit for the same epoch at once.
    let token = alice.api.token().unwrap().to_owned();
    alice.api = ApiClient::with_token(apis[x], &token);
    signal(nodes[x].pid(), "-CONT");
    let r = alice.handshake(room, alice_commit).await;
    eprintln!("fence: the woken node answered the competing commit with {r:?}");
    assert!(
        !matches!(r, Ok(Verdict::Accepted)),
        "two nodes accepted a commit for epoch {epoch}: {r:?}"
    );
    // One history: Alice catches up with Bob's commit (dave in, carol not).
    alice.api = ApiClient::with_token(apis[y], &token);
    let t = Instant::now();
    while alice.member.epoch(room) != Some(epoch + 1) && t.elapsed() < Duration::from_secs(20) {
        alice.sync(1).await.unwrap();
    }
    assert_eq!(alice.member.epoch(room), Some(epoch + 1));
    let members = alice.member.members(room);
    assert!(
        members.iter().any(|m| m.contains("/d/dave/")),
        "{members:?}"
    );
    assert!(
        !members.iter().any(|m| m.contains("/d/carol/")),
        "{members:?}"
    );
    for n in &mut nodes {
        n.stop();
    }
}
