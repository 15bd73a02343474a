//! Rooms across providers end to end: real `mimi run` processes linked over mutually
//! authenticated HTTP/3, native clients on each provider's client API. Covers the demo's
//! scenario, every policy rejection, concurrent commits, a follower offline then back, and a
//! hub killed with SIGKILL mid-fan-out.

#![allow(clippy::unwrap_used)]

mod common;

use std::collections::HashMap;

use common::{Fed, Proc};
use mimi_client::{Event, Member, RoomSetup, role};
use mimi_content::builder;
use mimi_proto::codec::Wire;
use mimi_proto::messages::{SubmitMessageResponse, SubmitOutcome, UpdateOutcome};
use mimi_session::{Session, Verdict};

const ROOM: &str = "mimi://a.example/r/lobby";
const WAIT: u64 = 15;

struct World {
    fed: Fed,
    a: Proc,
    b: Proc,
    c: Proc,
    alice: Session,
    bob: Session,
    carol: Session,
}

async fn world(name: &str, setup: RoomSetup) -> World {
    let fed = Fed::new(name, &["a.example", "b.example", "c.example"]);
    let (a, b, c) = (
        fed.start("a.example"),
        fed.start("b.example"),
        fed.start("c.example"),
    );
    let mut alice = Session::register(a.client_api, "a.example", "alice", "phone", 4)
        .await
        .unwrap();
    let mut bob = Session::register(b.client_api, "b.example", "bob", "laptop", 4)
        .await
        .unwrap();
    let mut carol = Session::register(c.client_api, "c.example", "carol", "tablet", 4)
        .await
        .unwrap();
    alice.create_room(ROOM, &setup).await.unwrap();
    if !setup.fixed_membership {
        let users = [
            (bob.user().to_owned(), role::MEMBER),
            (carol.user().to_owned(), role::MEMBER),
        ];
        assert_eq!(alice.add(ROOM, &users).await.unwrap(), Verdict::Accepted);
        for s in [&mut bob, &mut carol] {
            let evs = s
                .sync_until(WAIT, |e| matches!(e, Event::Joined { .. }))
                .await
                .unwrap();
            assert!(
                evs.contains(&Event::Joined { room: ROOM.into() }),
                "{} joins",
                s.user()
            );
        }
    }
    World {
        fed,
        a,
        b,
        c,
        alice,
        bob,
        carol,
    }
}

async fn say(s: &mut Session, text: &str) -> (mimi_content::MessageId, SubmitOutcome) {
    s.send(ROOM, |snd, r, salt| builder::text(snd, r, salt, text))
        .await
        .unwrap()
}

fn refused(v: Verdict) -> UpdateOutcome {
    match v {
        Verdict::Refused(o) => o,
        Verdict::Accepted => panic!("the hub accepted what it must refuse"),
    }
}

/// Message IDs a session has seen, in order.
fn seen(events: &[Event]) -> Vec<String> {
    events
        .iter()
        .filter_map(|e| {
            if let Event::Message { id, .. } = e {
                Some(id.to_hex())
            } else {
                None
            }
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_passes_as_a_command() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_mimi"))
        .args(["demo", "--json"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let last: serde_json::Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    assert_eq!(last["type"], "result");
    assert_eq!(last["ok"], true, "{stdout}");
    // Every client's final view is reported, and the removed member saw its removal.
    assert_eq!(
        stdout
            .lines()
            .filter(|l| l.contains("\"type\":\"view\""))
            .count(),
        4
    );
    assert!(stdout.contains("\"event\":\"removed\""));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policy_rejections_change_nothing() {
    let mut w = world("policy", RoomSetup::named("Lobby")).await;
    let epoch = w.alice.member.epoch(ROOM);
    let mut dave = Session::register(w.b.client_api, "b.example", "dave", "phone", 4)
        .await
        .unwrap();
    let dave_uri = dave.user().to_owned();

    // A member may not add someone as admin (unauthorised add).
    assert_eq!(
        refused(
            w.bob
                .add(ROOM, &[(dave_uri.clone(), role::ADMIN)])
                .await
                .unwrap()
        ),
        UpdateOutcome::NotAllowed
    );
    // A member may not remove another participant.
    let carol_uri = w.carol.user().to_owned();
    assert_eq!(
        refused(
            w.bob
                .remove(ROOM, std::slice::from_ref(&carol_uri))
                .await
                .unwrap()
        ),
        UpdateOutcome::NotAllowed
    );
    // A non-participant's message is refused (dave forges a group of his own with the room's ID).
    let mut mallory = Member::new("b.example", "dave", "phone");
    let es = w.alice.api.external_sender().await.unwrap();
    mallory
        .create_room(ROOM, &es, &RoomSetup::named("fake"))
        .unwrap();
    let (body, _) = mallory
        .send(ROOM, |s, r, salt| builder::text(s, r, salt, "let me in"))
        .unwrap();
    let r = dave.api.room("submit", ROOM, body).await.unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        SubmitMessageResponse::from_bytes(&r.body).unwrap().outcome,
        SubmitOutcome::NotAllowed
    );
    // A banned user cannot come back by external commit.
    assert_eq!(
        w.alice
            .add(ROOM, &[(dave_uri.clone(), role::MEMBER)])
            .await
            .unwrap(),
        Verdict::Accepted
    );
    dave.sync_until(WAIT, |e| matches!(e, Event::Joined { .. }))
        .await
        .unwrap();
    let ban = w
        .alice
        .member
        .change_role(ROOM, &dave_uri, role::BANNED)
        .unwrap();
    assert_eq!(
        w.alice.handshake(ROOM, ban).await.unwrap(),
        Verdict::Accepted
    );
    let mut dave2 = dave.link_device("tablet", 1).await.unwrap();
    match dave2.external_join(ROOM).await {
        Ok(v) => assert_eq!(refused(v), UpdateOutcome::NotAllowed),
        Err(e) => assert_eq!(e.to_string(), "MLS client: the hub answered notAuthorized"),
    }
    // A stale commit is refused with the current epoch.
    for s in [&mut w.bob, &mut w.carol] {
        s.sync_until(WAIT, |e| matches!(e, Event::Committed { .. }))
            .await
            .unwrap();
    }
    let before = w.alice.member.epoch(ROOM).unwrap();
    let stale = w
        .carol
        .member
        .kick(ROOM, &dave_uri)
        .unwrap_or_else(|_| w.carol.member.commit_pending(ROOM).unwrap());
    let fresh = w.alice.member.commit_pending(ROOM).unwrap();
    assert_eq!(
        w.alice.handshake(ROOM, fresh).await.unwrap(),
        Verdict::Accepted
    );
    assert_eq!(
        refused(w.carol.handshake(ROOM, stale).await.unwrap()),
        UpdateOutcome::WrongEpoch {
            current_epoch: before + 1
        }
    );
    // A message from two epochs ago is refused with the current epoch.
    w.bob
        .sync_until(WAIT, |e| matches!(e, Event::Committed { .. }))
        .await
        .unwrap();
    let (old_body, _) = w
        .bob
        .member
        .send(ROOM, |s, r, salt| {
            builder::text(s, r, salt, "from the past")
        })
        .unwrap();
    for _ in 0..2 {
        let c = w.alice.member.commit_pending(ROOM).unwrap();
        assert_eq!(w.alice.handshake(ROOM, c).await.unwrap(), Verdict::Accepted);
    }
    let r = w.bob.api.room("submit", ROOM, old_body).await.unwrap();
    let now = w.alice.member.epoch(ROOM).unwrap();
    assert_eq!(
        SubmitMessageResponse::from_bytes(&r.body).unwrap().outcome,
        SubmitOutcome::EpochTooOld { current_epoch: now }
    );
    // Nothing refused reached anyone: carol saw the accepted commits only, and no message.
    let evs = w.carol.sync_until(3, |_| false).await.unwrap();
    assert!(seen(&evs).is_empty(), "{evs:?}");
    assert_eq!(w.carol.member.epoch(ROOM), Some(now));
    assert!(epoch.is_some_and(|e| now > e));
    assert!(
        !w.carol
            .member
            .members(ROOM)
            .iter()
            .any(|m| m.contains("dave/tablet"))
    );
    drop(w.fed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fixed_membership_refuses_adds() {
    let fed = Fed::new("fixed", &["a.example", "b.example"]);
    let (a, b) = (fed.start("a.example"), fed.start("b.example"));
    let mut alice = Session::register(a.client_api, "a.example", "alice", "phone", 2)
        .await
        .unwrap();
    let bob = Session::register(b.client_api, "b.example", "bob", "laptop", 2)
        .await
        .unwrap();
    let mut setup = RoomSetup::named("DM");
    setup.fixed_membership = true;
    setup.initial_participants = vec![(bob.user().to_owned(), role::MEMBER)];
    alice.create_room(ROOM, &setup).await.unwrap();
    // Bob's clients may join (he is in the fixed list); nobody else may be added.
    let kps = alice.key_packages_of(ROOM, bob.user()).await.unwrap();
    let add_bob = alice.member.add_clients(ROOM, &kps).unwrap();
    assert_eq!(
        alice.handshake(ROOM, add_bob).await.unwrap(),
        Verdict::Accepted
    );
    let eve = Session::register(b.client_api, "b.example", "eve", "x", 1)
        .await
        .unwrap();
    assert_eq!(
        refused(
            alice
                .add(ROOM, &[(eve.user().to_owned(), role::MEMBER)])
                .await
                .unwrap()
        ),
        UpdateOutcome::NotAllowed
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_commits_exactly_one_wins() {
    let mut w = world("concurrent", RoomSetup::named("Lobby")).await;
    let dave = Session::register(w.b.client_api, "b.example", "dave", "phone", 2)
        .await
        .unwrap();
    let erin = Session::register(w.c.client_api, "c.example", "erin", "phone", 2)
        .await
        .unwrap();
    let (d, e) = (dave.user().to_owned(), erin.user().to_owned());
    let kd = w.bob.key_packages_of(ROOM, &d).await.unwrap();
    let ke = w.carol.key_packages_of(ROOM, &e).await.unwrap();
    let cb = w
        .bob
        .member
        .add_participants(ROOM, &[(d, role::MEMBER)], &kd)
        .unwrap();
    let cc = w
        .carol
        .member
        .add_participants(ROOM, &[(e, role::MEMBER)], &ke)
        .unwrap();
    let (rb, rc) = tokio::join!(w.bob.handshake(ROOM, cb), w.carol.handshake(ROOM, cc));
    let verdicts = [rb.unwrap(), rc.unwrap()];
    assert_eq!(
        verdicts.iter().filter(|v| **v == Verdict::Accepted).count(),
        1,
        "{verdicts:?}"
    );
    assert!(
        verdicts
            .iter()
            .any(|v| matches!(v, Verdict::Refused(UpdateOutcome::WrongEpoch { .. }))),
        "{verdicts:?}"
    );
    // Everyone converges on the winner's epoch.
    let evs = w
        .alice
        .sync_until(WAIT, |e| matches!(e, Event::Committed { .. }))
        .await
        .unwrap();
    assert!(evs.iter().any(|e| matches!(e, Event::Committed { .. })));
    let loser = if verdicts[0] == Verdict::Accepted {
        &mut w.carol
    } else {
        &mut w.bob
    };
    loser
        .sync_until(WAIT, |e| matches!(e, Event::Committed { .. }))
        .await
        .unwrap();
    assert_eq!(w.bob.member.epoch(ROOM), w.alice.member.epoch(ROOM));
    assert_eq!(w.carol.member.epoch(ROOM), w.alice.member.epoch(ROOM));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follower_offline_then_back_gets_the_backlog_in_order() {
    let mut w = world("offline", RoomSetup::named("Lobby")).await;
    let stopped = w.c.stop();
    assert!(stopped.success(), "SIGTERM is a clean stop: {stopped:?}");
    let mut sent = Vec::new();
    for i in 0..8 {
        let (id, o) = say(&mut w.alice, &format!("while c is away {i}")).await;
        assert!(matches!(o, SubmitOutcome::Accepted { .. }));
        sent.push(id.to_hex());
    }
    // b got them all meanwhile.
    let mut got = Vec::new();
    while got.len() < sent.len() {
        let evs = w.bob.sync(WAIT).await.unwrap();
        assert!(
            !evs.is_empty(),
            "bob stalled at {} of {}",
            got.len(),
            sent.len()
        );
        got.extend(seen(&evs));
    }
    assert_eq!(got, sent);
    // c comes back: the hub's outbox drains to it, in order.
    w.c = Proc::start(&w.fed.config("c.example"), "c.example");
    let mut got = Vec::new();
    while got.len() < sent.len() {
        let evs = w.carol.sync(WAIT).await.unwrap();
        assert!(
            !evs.is_empty(),
            "carol stalled at {} of {}",
            got.len(),
            sent.len()
        );
        got.extend(seen(&evs));
    }
    assert_eq!(got, sent, "the backlog arrives once, in hub order");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hub_killed_mid_fanout_loses_nothing_and_duplicates_nothing() {
    let mut w = world("sigkill", RoomSetup::named("Lobby")).await;
    // b is down, so the hub's outbox for b holds everything accepted when the hub dies; c is up
    // and being fanned out to while the hub is killed.
    w.b.stop();
    let mut sent = Vec::new();
    for i in 0..12 {
        let (id, o) = say(&mut w.alice, &format!("burst {i}")).await;
        assert!(matches!(o, SubmitOutcome::Accepted { .. }));
        sent.push(id.to_hex());
    }
    w.a.kill();
    w.b = Proc::start(&w.fed.config("b.example"), "b.example");
    w.a = Proc::start(&w.fed.config("a.example"), "a.example");
    let mut counts: HashMap<String, usize> = HashMap::new();
    for s in [&mut w.bob, &mut w.carol] {
        let mut got = Vec::new();
        while got.len() < sent.len() {
            let evs = s.sync(WAIT).await.unwrap();
            assert!(
                !evs.is_empty(),
                "{} stalled at {} of {}",
                s.user(),
                got.len(),
                sent.len()
            );
            got.extend(seen(&evs));
        }
        // Nothing more comes (no duplicate delivery after the restart).
        let extra = s.sync(2).await.unwrap();
        got.extend(seen(&extra));
        for id in &got {
            *counts.entry(format!("{}:{id}", s.user())).or_default() += 1;
        }
        assert_eq!(
            got,
            sent,
            "{}: every accepted message once, in hub order",
            s.user()
        );
    }
    assert!(counts.values().all(|n| *n == 1));
    // The restarted hub still hosts the room and accepts new messages.
    let (_, o) = say(&mut w.alice, "after the crash").await;
    assert!(matches!(o, SubmitOutcome::Accepted { .. }));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn member_state_survives_export_and_import() {
    let mut w = world("persist", RoomSetup::named("Lobby")).await;
    // The bridges keep their members' MLS state in the gateway store this way.
    let saved = w.alice.member.export();
    w.alice.member = Member::import(&saved).unwrap();
    assert_eq!(w.alice.member.epoch(ROOM), w.bob.member.epoch(ROOM));
    let (id, o) = say(&mut w.alice, "after a restart").await;
    assert!(matches!(o, SubmitOutcome::Accepted { .. }));
    let evs = w
        .bob
        .sync_until(WAIT, |e| matches!(e, Event::Message { .. }))
        .await
        .unwrap();
    assert_eq!(seen(&evs), vec![id.to_hex()]);
    assert!(Member::import(b"{}").is_err());
}

/// Deliveries as Server-Sent Events (`GET /client/v1/events/stream`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deliveries_stream_as_server_sent_events() {
    use http_body_util::BodyExt as _;
    let mut w = world("sse", RoomSetup::named("Lobby")).await;
    w.bob.sync(1).await.unwrap();
    let cursor = w.bob.cursor;
    let tcp = tokio::net::TcpStream::connect(w.b.client_api)
        .await
        .unwrap();
    let (mut send, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tcp))
        .await
        .unwrap();
    tokio::spawn(conn);
    let req = http::Request::get(format!("/client/v1/events/stream?after={cursor}"))
        .header("host", "localhost")
        .header(
            "authorization",
            format!("Bearer {}", w.bob.api.token().unwrap()),
        )
        .body(http_body_util::Full::new(bytes::Bytes::new()))
        .unwrap();
    let resp = send.send_request(req).await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
    let (_, o) = say(&mut w.alice, "streamed").await;
    assert!(matches!(o, SubmitOutcome::Accepted { .. }));
    let mut body = resp.into_body();
    let mut text = String::new();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(WAIT);
    while !text.contains("event: delivery") && std::time::Instant::now() < deadline {
        if let Ok(Some(Ok(f))) =
            tokio::time::timeout(std::time::Duration::from_secs(2), body.frame()).await
            && let Some(d) = f.data_ref()
        {
            text.push_str(&String::from_utf8_lossy(d));
        }
    }
    assert!(
        text.contains(&format!("id: {}", cursor + 1)) && text.contains("\"kind\":\"application\""),
        "{text}"
    );
    drop(w.fed);
}
