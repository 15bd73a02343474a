//! Multi-provider scenarios of the engine with real MLS clients, over the simulated network:
//! every accepted event reaches every follower exactly once and in hub order, rejected events
//! change nothing, and a hub that crashes mid-fan-out loses nothing it accepted.
//!
//! Seeds: 0..SIM_SEEDS (default 24), or exactly SIM_SEED when set.

// Test helpers panic on purpose: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

mod sim;

use mimi_client::{Event, Member, RoomSetup, role};
use mimi_content::builder;
use mimi_engine::{Body, ClientCall, ClientReply};
use mimi_proto::codec::Wire;
use mimi_proto::directory::Endpoint;
use mimi_proto::messages::{
    SubmitMessageResponse, SubmitOutcome, UpdateOutcome, UpdateRoomResponse,
};
use sha2::Digest;
use sim::{Sim, bytes, text};

const ROOM: &str = "mimi://a.test/r/lobby";

fn seeds() -> Vec<u64> {
    if let Ok(s) = std::env::var("SIM_SEED") {
        return vec![s.parse().unwrap()];
    }
    let n = std::env::var("SIM_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(24);
    (0..n).collect()
}

struct User {
    member: Member,
    node: String,
    client: String,
    token: [u8; 32],
    cursor: u64,
    seen: Vec<(String, String)>,
}

impl User {
    fn token_hash(&self) -> Option<[u8; 32]> {
        Some(sha2::Sha256::digest(self.token).into())
    }
}

fn register(sim: &mut Sim, node: &str, name: &str, device: &str, seed: u8) -> User {
    let member = Member::new(node, name, device);
    let token = [seed; 32];
    let hash: [u8; 32] = sha2::Sha256::digest(token).into();
    let r = sim.call(
        node,
        None,
        ClientCall::Register {
            user: name.into(),
            device: device.into(),
            display_name: name.into(),
            new_token_hash: hash,
        },
    );
    assert_eq!(r.status, 201, "{}", text(&r));
    let u = User {
        member,
        node: node.into(),
        client: format!("{name}/{device}"),
        token,
        cursor: 0,
        seen: vec![],
    };
    let kps = u.member.key_packages(4).unwrap();
    let r = sim.call(
        node,
        u.token_hash(),
        ClientCall::PublishKeyPackages {
            key_packages: kps,
            last_resort: None,
        },
    );
    assert_eq!(r.status, 200, "{}", text(&r));
    u
}

/// Pulls and processes a user's deliveries; records the messages it sees.
fn pull(sim: &mut Sim, u: &mut User) -> Vec<Event> {
    let page = sim.events(&u.node, &u.client, u.cursor);
    let mut out = Vec::new();
    for e in page.events {
        u.cursor = e.seq;
        if e.kind == mimi_proto::client_api::DeliveryKind::Consent {
            continue;
        }
        for ev in u.member.process(&e.room, &e.body.0) {
            if let Event::Message { sender, id, .. } = &ev {
                u.seen.push((sender.clone(), id.to_hex()));
            }
            out.push(ev);
        }
    }
    sim.ack(&u.node, &u.client, u.cursor);
    out
}

fn room_call(
    sim: &mut Sim,
    u: &User,
    endpoint: Endpoint,
    target: &str,
    body: Vec<u8>,
) -> mimi_engine::Response {
    sim.call(
        &u.node.clone(),
        u.token_hash(),
        ClientCall::Room {
            endpoint,
            target: target.into(),
            body: body.into(),
        },
    )
}

/// Sends a commit through the user's gateway and applies the outcome. Returns whether the hub
/// accepted it.
fn commit(sim: &mut Sim, u: &mut User, bundle: Vec<u8>) -> bool {
    for _ in 0..10 {
        let r = room_call(sim, u, Endpoint::Update, ROOM, bundle.clone());
        if r.status == 502 || r.status == 503 {
            // Lost on the way. If the hub accepted it, the fan-out brings the commit back and
            // the client merges it; the retry is then refused as stale, which is fine.
            let before = u.member.epoch(ROOM);
            sim.run_until_idle();
            pull(sim, u);
            if u.member.epoch(ROOM) != before {
                return true;
            }
            continue;
        }
        assert_eq!(r.status, 200, "{}", text(&r));
        let resp = UpdateRoomResponse::from_bytes(&bytes(&r)).unwrap();
        return match resp.outcome {
            UpdateOutcome::Success { .. } => {
                u.member.commit_accepted(ROOM).unwrap();
                true
            }
            _ => {
                u.member.commit_refused(ROOM).unwrap();
                false
            }
        };
    }
    panic!("commit never got an answer (seed {})", sim.seed);
}

fn add(sim: &mut Sim, adder: &mut User, target: &str, role: u32) {
    let req = adder.member.key_material_request(target, ROOM);
    let mut km = None;
    for _ in 0..10 {
        let r = room_call(sim, adder, Endpoint::KeyMaterial, target, req.clone());
        if r.status == 200 {
            km = Some(bytes(&r));
            break;
        }
        assert!(
            r.status == 502 || r.status == 503,
            "{} {}",
            r.status,
            text(&r)
        );
    }
    let kps = adder
        .member
        .key_packages_from_response(&km.expect("key material"))
        .unwrap();
    assert!(!kps.is_empty(), "no KeyPackages for {target}");
    let bundle = adder
        .member
        .add_participants(ROOM, &[(target.into(), role)], &kps)
        .unwrap();
    assert!(commit(sim, adder, bundle), "adding {target} was refused");
}

/// Submits a text; returns the message ID if the hub accepted it.
fn say(sim: &mut Sim, u: &mut User, text: &str) -> Option<String> {
    let (body, msg) = u
        .member
        .send(ROOM, |s, r, salt| builder::text(s, r, salt, text))
        .unwrap();
    let id = msg.id().unwrap().to_hex();
    for _ in 0..10 {
        let r = room_call(sim, u, Endpoint::SubmitMessage, ROOM, body.clone());
        if r.status == 502 || r.status == 503 {
            continue;
        }
        assert_eq!(r.status, 200, "{}", sim::text(&r));
        return match SubmitMessageResponse::from_bytes(&bytes(&r))
            .unwrap()
            .outcome
        {
            SubmitOutcome::Accepted { .. } => Some(id),
            _ => None,
        };
    }
    None
}

fn hub_sender(sim: &mut Sim, u: &User) -> Vec<u8> {
    let hub = sim.call("a.test", u.token_hash(), ClientCall::HubInfo);
    match hub.body {
        Body::Client(ClientReply::HubInfo(h)) => h.external_sender.0,
        _ => panic!("no hub info: {}", text(&hub)),
    }
}

struct World {
    sim: Sim,
    alice: User,
    bob: User,
    carol: User,
    observers: Vec<User>,
}

/// Three providers; a room on a.test with alice (admin), bob (b.test) and carol (c.test), and a
/// silent observer on each provider.
fn world(seed: u64) -> World {
    let mut sim = Sim::new(seed, &["a.test", "b.test", "c.test"]);
    let mut alice = register(&mut sim, "a.test", "alice", "phone", 1);
    let mut bob = register(&mut sim, "b.test", "bob", "laptop", 2);
    let mut carol = register(&mut sim, "c.test", "carol", "tablet", 3);
    let mut observers = vec![
        register(&mut sim, "a.test", "obsa", "x", 4),
        register(&mut sim, "b.test", "obsb", "x", 5),
        register(&mut sim, "c.test", "obsc", "x", 6),
    ];
    let es = hub_sender(&mut sim, &alice);
    let created = alice
        .member
        .create_room(ROOM, &es, &RoomSetup::named("Lobby"))
        .unwrap();
    let r = sim.call(
        "a.test",
        alice.token_hash(),
        ClientCall::CreateRoom {
            room: ROOM.into(),
            group_info: created.group_info,
            ratchet_tree: created.ratchet_tree,
        },
    );
    assert_eq!(r.status, 201, "{}", text(&r));
    add(&mut sim, &mut alice, "mimi://b.test/u/bob", role::MEMBER);
    sim.run_until_idle();
    assert!(
        pull(&mut sim, &mut bob).contains(&Event::Joined { room: ROOM.into() }),
        "bob joins (seed {seed})"
    );
    // Bob (a member) adds carol from another follower: key material and the commit go through
    // b.test to the hub, the Welcome from the hub to c.test.
    add(&mut sim, &mut bob, "mimi://c.test/u/carol", role::MEMBER);
    sim.run_until_idle();
    pull(&mut sim, &mut alice);
    assert!(
        pull(&mut sim, &mut carol).contains(&Event::Joined { room: ROOM.into() }),
        "carol joins (seed {seed})"
    );
    for o in observers.iter_mut() {
        let name = o.member.user().to_owned();
        add(&mut sim, &mut alice, &name, role::MEMBER);
        sim.run_until_idle();
        for u in [&mut bob, &mut carol] {
            pull(&mut sim, u);
        }
    }
    for o in observers.iter_mut() {
        pull(&mut sim, o);
    }
    let epoch = alice.member.epoch(ROOM);
    for u in [&bob, &carol].into_iter().chain(observers.iter()) {
        assert_eq!(
            u.member.epoch(ROOM),
            epoch,
            "{} at the hub's epoch (seed {seed})",
            u.member.user()
        );
    }
    World {
        sim,
        alice,
        bob,
        carol,
        observers,
    }
}

#[test]
fn every_accepted_event_reaches_every_follower_once_in_order() {
    for seed in seeds() {
        let mut w = world(seed);
        // From now on the network misbehaves.
        w.sim.loss = 0.15;
        w.sim.duplicate = 0.15;
        w.sim.latency = (1, 400);
        let mut accepted = Vec::new();
        for round in 0..4 {
            for (i, u) in [&mut w.alice, &mut w.bob, &mut w.carol]
                .into_iter()
                .enumerate()
            {
                if let Some(id) = say(&mut w.sim, u, &format!("round {round} from {i}")) {
                    accepted.push(id);
                }
            }
        }
        // A non-participant's message is refused and reaches nobody.
        let mut mallory = register(&mut w.sim, "b.test", "mallory", "x", 9);
        let bogus = mallory.member.key_packages(1).unwrap();
        assert!(!bogus.is_empty());
        let (body, _) = {
            let mut m = Member::new("b.test", "mallory", "x");
            let es = hub_sender(&mut w.sim, &w.alice);
            m.create_room(ROOM, &es, &RoomSetup::named("fake")).unwrap();
            m.send(ROOM, |s, r, salt| builder::text(s, r, salt, "let me in"))
                .unwrap()
        };
        let r = room_call(&mut w.sim, &mallory, Endpoint::SubmitMessage, ROOM, body);
        if r.status == 200 {
            assert_eq!(
                SubmitMessageResponse::from_bytes(&bytes(&r))
                    .unwrap()
                    .outcome,
                SubmitOutcome::NotAllowed
            );
        }
        w.sim.loss = 0.0;
        w.sim.duplicate = 0.0;
        w.sim.run_until_idle();
        pull(&mut w.sim, &mut mallory);
        assert!(mallory.seen.is_empty());
        for o in w.observers.iter_mut() {
            pull(&mut w.sim, o);
        }
        let reference: Vec<(String, String)> = w.observers[0].seen.clone();
        assert!(
            reference.len() >= accepted.len(),
            "seed {seed}: {} delivered < {} accepted",
            reference.len(),
            accepted.len()
        );
        for id in &accepted {
            assert_eq!(
                reference.iter().filter(|(_, i)| i == id).count(),
                1,
                "seed {seed}: accepted {id} delivered exactly once"
            );
        }
        for o in &w.observers[1..] {
            assert_eq!(
                o.seen,
                reference,
                "seed {seed}: {} sees the hub order",
                o.member.user()
            );
        }
        for u in [&mut w.alice, &mut w.bob, &mut w.carol] {
            pull(&mut w.sim, u);
            let me = u.member.user().to_owned();
            let others: Vec<_> = reference
                .iter()
                .filter(|(s, _)| *s != me)
                .cloned()
                .collect();
            assert_eq!(
                u.seen, others,
                "seed {seed}: {me} sees everyone else's messages once, in order"
            );
        }
    }
}

#[test]
fn rejected_events_change_nothing() {
    let mut w = world(7);
    let epoch = w.alice.member.epoch(ROOM);
    // Bob (member) may not remove alice (admin).
    let bundle = w
        .bob
        .member
        .remove_participants(ROOM, &["mimi://a.test/u/alice".into()])
        .unwrap();
    assert!(!commit(&mut w.sim, &mut w.bob, bundle));
    // A stale commit (built on an old epoch) is refused with wrongEpoch.
    let stale = w.carol.member.kick(ROOM, "mimi://b.test/u/obsb").unwrap();
    let fresh = w.alice.member.kick(ROOM, "mimi://c.test/u/obsc").unwrap();
    assert!(commit(&mut w.sim, &mut w.alice, fresh));
    let r = room_call(&mut w.sim, &w.carol, Endpoint::Update, ROOM, stale);
    let resp = UpdateRoomResponse::from_bytes(&bytes(&r)).unwrap();
    assert!(
        matches!(resp.outcome, UpdateOutcome::WrongEpoch { .. }),
        "{resp:?}"
    );
    w.carol.member.commit_refused(ROOM).unwrap();
    w.sim.run_until_idle();
    for u in [&mut w.bob, &mut w.carol] {
        pull(&mut w.sim, u);
    }
    // Only alice's kick happened: one epoch later, the same for everyone.
    assert_eq!(w.bob.member.epoch(ROOM), epoch.map(|e| e + 1));
    assert_eq!(w.carol.member.epoch(ROOM), w.alice.member.epoch(ROOM));
    assert!(
        !w.bob
            .member
            .members(ROOM)
            .iter()
            .any(|m| m.contains("obsc"))
    );
}

#[test]
fn hub_crash_mid_fanout_loses_nothing() {
    for seed in seeds().into_iter().take(6) {
        let mut w = world(seed);
        // b.test is unreachable while alice talks: everything queues in the hub's outbox.
        w.sim.loss = 1.0;
        let mut accepted = Vec::new();
        for i in 0..5 {
            accepted.push(say(&mut w.sim, &mut w.alice, &format!("queued {i}")).unwrap());
        }
        assert!(w.sim.outbox_entries("a.test") >= 5);
        // The hub dies with the queue undelivered, then comes back.
        w.sim.crash("a.test");
        w.sim.loss = 0.0;
        w.sim.run_until_idle();
        w.sim.restart("a.test");
        w.sim.run_until_idle();
        for u in [&mut w.bob, &mut w.carol] {
            pull(&mut w.sim, u);
            let ids: Vec<&String> = u.seen.iter().map(|(_, i)| i).collect();
            assert_eq!(
                ids,
                accepted.iter().collect::<Vec<_>>(),
                "seed {seed}: {} got every accepted message once, in order",
                u.member.user()
            );
        }
        assert_eq!(w.sim.outbox_entries("a.test"), 0);
    }
}

#[test]
fn failed_commits_change_nothing_and_lose_nothing() {
    for seed in seeds().into_iter().take(6) {
        let mut w = world(seed);
        let hub_store = w.sim.store("a.test");
        // One refused step: the store is exactly as before, and the message can be resent.
        let (body, msg) = w
            .alice
            .member
            .send(ROOM, |s, r, salt| builder::text(s, r, salt, "disk full"))
            .unwrap();
        let before = hub_store.dump();
        hub_store.fail_next_commits(1);
        let r = room_call(
            &mut w.sim,
            &w.alice,
            Endpoint::SubmitMessage,
            ROOM,
            body.clone(),
        );
        assert_eq!(r.status, 503, "seed {seed}: {}", text(&r));
        assert_eq!(
            hub_store.dump(),
            before,
            "seed {seed}: a failed step leaves no trace"
        );
        w.sim.run_until_idle();
        let r = room_call(&mut w.sim, &w.alice, Endpoint::SubmitMessage, ROOM, body);
        assert!(
            matches!(
                SubmitMessageResponse::from_bytes(&bytes(&r))
                    .unwrap()
                    .outcome,
                SubmitOutcome::Accepted { .. }
            ),
            "seed {seed}: the resent message is accepted"
        );
        let mut accepted = vec![msg.id().unwrap().to_hex()];
        // Failures sprinkled over a conversation, on the hub and on a follower.
        let b_store = w.sim.store("b.test");
        for i in 0..9 {
            if i % 3 == 0 {
                hub_store.fail_next_commits(1);
            }
            if i % 4 == 1 {
                b_store.fail_next_commits(1);
            }
            let u = match i % 3 {
                0 => &mut w.alice,
                1 => &mut w.bob,
                _ => &mut w.carol,
            };
            if let Some(id) = say(&mut w.sim, u, &format!("through failures {i}")) {
                accepted.push(id);
            }
        }
        w.sim.run_until_idle();
        assert!(
            w.sim.failed_commits("a.test") >= 3,
            "seed {seed}: failures were injected"
        );
        for o in w.observers.iter_mut() {
            pull(&mut w.sim, o);
            let ids: Vec<&String> = o.seen.iter().map(|(_, i)| i).collect();
            assert_eq!(
                ids,
                accepted.iter().collect::<Vec<_>>(),
                "seed {seed}: {} got every accepted message once, in order",
                o.member.user()
            );
        }
        assert_eq!(w.sim.outbox_entries("a.test"), 0);
    }
}
