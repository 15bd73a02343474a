//! Unit tests of the follower side: who may register what, KeyPackage claims, notify from
//! the hub only with duplicates processed once, subscriptions for members only.

use mimi_client::Member;
use mimi_proto::codec::Wire;
use mimi_proto::directory::Endpoint;
use mimi_proto::messages::{KeyMaterialResponse, KeyMaterialUserCode};
use sha2::Digest;

use crate::testing::{Harness, config, text};
use crate::{Auth, Body, ClientCall, Limits, Registration};

fn register(h: &mut Harness, auth: Auth, user: &str, device: &str) -> crate::Response {
    let token: [u8; 32] = sha2::Sha256::digest(format!("{user}/{device}")).into();
    h.call(
        auth,
        ClientCall::Register {
            user: user.into(),
            device: device.into(),
            display_name: String::new(),
            new_token_hash: token,
        },
    )
}

#[test]
fn registration_creates_users_and_links_devices_only_with_authority() {
    let mut h = Harness::new("a.example");
    assert_eq!(
        register(&mut h, Auth::Anonymous, "alice", "phone").status,
        201
    );
    let alice = h.auth(&sha2::Sha256::digest("alice/phone").into());
    let before = h.store.dump();
    // Device takeover: anonymous, or with another user's token, is refused and writes nothing.
    let r = register(&mut h, Auth::Anonymous, "alice", "evil");
    assert_eq!(r.status, 403, "{}", text(&r));
    assert_eq!(register(&mut h, Auth::Anonymous, "bob", "x").status, 201);
    let bob = h.auth(&sha2::Sha256::digest("bob/x").into());
    let before_bob = h.store.dump();
    assert_ne!(before, before_bob);
    let r = register(&mut h, bob, "alice", "evil");
    assert_eq!(r.status, 403, "{}", text(&r));
    assert_eq!(h.store.dump(), before_bob);
    // Linking with one of alice's own devices, the admin, or a provider token for alice.
    assert_eq!(register(&mut h, alice, "alice", "tablet").status, 201);
    assert_eq!(register(&mut h, Auth::Admin, "alice", "desk").status, 201);
    let p = Auth::Provider {
        user: "alice".into(),
    };
    assert_eq!(register(&mut h, p.clone(), "alice", "watch").status, 201);
    assert_eq!(register(&mut h, p, "carol", "watch").status, 403);
    assert_eq!(register(&mut h, Auth::Admin, "alice", "desk").status, 409);
    assert_eq!(register(&mut h, Auth::Admin, "Alice", "x").status, 400);
    // Closed registration: nobody without authority.
    let mut cfg = config("a.example", Limits::default());
    cfg.registration = Registration::Closed;
    let mut h = Harness::with(cfg);
    assert_eq!(register(&mut h, Auth::Anonymous, "dave", "x").status, 401);
    assert_eq!(register(&mut h, Auth::Admin, "dave", "x").status, 201);
}

fn claim(h: &mut Harness, peer: &str, requester: &Member, target: &str) -> KeyMaterialResponse {
    let req = requester.key_material_request(target, "");
    let r = h.peer(peer, Endpoint::KeyMaterial, target, req);
    match &r.body {
        Body::Mimi(b) => KeyMaterialResponse::from_bytes(b).unwrap(),
        _ => panic!("{} {}", r.status, text(&r)),
    }
}

#[test]
fn key_packages_are_handed_out_once_and_the_last_resort_keeps_users_reachable() {
    let mut h = Harness::with(config(
        "a.example",
        Limits {
            claims_per_user_per_minute: 100,
            ..Limits::default()
        },
    ));
    let alice = Member::new("a.example", "alice", "phone");
    let auth = h.register(&alice, 2);
    let r = h.call(
        auth,
        ClientCall::PublishKeyPackages {
            key_packages: vec![],
            last_resort: Some(alice.last_resort_key_package().unwrap()),
        },
    );
    assert_eq!(r.status, 200, "{}", text(&r));
    let bob = Member::new("b.example", "bob", "x");
    let mut seen = Vec::new();
    for _ in 0..5 {
        let resp = claim(&mut h, "b.example", &bob, "mimi://a.example/u/alice");
        assert_eq!(resp.user_status, KeyMaterialUserCode::Success);
        let mimi_proto::messages::ClientKeyMaterial::Success { key_package, .. } = &resp.clients[0]
        else {
            panic!("{resp:?}")
        };
        seen.push(key_package.to_bytes());
    }
    // Two ordinary ones once each, then the last-resort one again and again.
    assert_ne!(seen[0], seen[1]);
    assert!(!seen[2..].contains(&seen[0]) && !seen[2..].contains(&seen[1]));
    assert!(seen[2..].iter().all(|k| *k == seen[2]));
    // A peer claims only for its own users.
    let req = bob.key_material_request("mimi://a.example/u/alice", "");
    let r = h.peer(
        "c.example",
        Endpoint::KeyMaterial,
        "mimi://a.example/u/alice",
        req,
    );
    assert_eq!(r.status, 403, "{}", text(&r));
}

#[test]
fn claims_are_rate_limited_per_user() {
    let mut h = Harness::with(config(
        "a.example",
        Limits {
            claims_per_user_per_minute: 3,
            ..Limits::default()
        },
    ));
    let alice = Member::new("a.example", "alice", "phone");
    h.register(&alice, 10);
    let bob = Member::new("b.example", "bob", "x");
    for _ in 0..3 {
        claim(&mut h, "b.example", &bob, "mimi://a.example/u/alice");
    }
    let req = bob.key_material_request("mimi://a.example/u/alice", "");
    let r = h.peer(
        "b.example",
        Endpoint::KeyMaterial,
        "mimi://a.example/u/alice",
        req,
    );
    assert_eq!(r.status, 429, "{}", text(&r));
    assert!(r.retry_after_s.is_some());
}

/// A real FanoutMessage of `room` (an application message of a member's own group).
fn fanout(room: &str, ts: u64) -> mimi_proto::messages::FanoutMessage {
    let mut alice = Member::new("a.example", "alice", "phone");
    let key = openmls_basic_credential::SignatureKeyPair::new(
        mimi_client::CIPHERSUITE.signature_algorithm(),
    )
    .unwrap();
    let es = mimi_proto::mls::ExternalSender {
        signature_key: mimi_proto::codec::Bytes(key.public().to_vec()),
        credential: mimi_proto::mls::Credential::basic(b"a.example"),
    }
    .to_bytes();
    alice
        .create_room(room, &es, &mimi_client::RoomSetup::named("t"))
        .unwrap();
    let (body, _) = alice
        .send(room, |s, r, salt| {
            mimi_content::builder::text(s, r, salt, "hi")
        })
        .unwrap();
    let req = mimi_proto::messages::SubmitMessageRequest::from_bytes(&body).unwrap();
    mimi_proto::messages::FanoutMessage {
        timestamp: ts,
        message: req.app_message,
        extra: mimi_proto::messages::FanoutExtra::Application { frank: None },
    }
}

#[test]
fn notify_only_from_the_hub_and_duplicates_once() {
    let mut h = Harness::new("b.example");
    let bob = Member::new("b.example", "bob", "x");
    let auth = h.register(&bob, 0);
    let room = "mimi://a.example/r/t";
    let fm = fanout(room, 1);
    let body = fm.to_bytes();
    let before = h.store.dump();
    let r = h.peer("c.example", Endpoint::Notify, room, body.clone());
    assert_eq!(r.status, 403, "{}", text(&r));
    assert_eq!(h.store.dump(), before);
    let r = h.peer("a.example", Endpoint::Notify, room, vec![1, 2, 3]);
    assert_eq!(r.status, 400);
    assert_eq!(h.store.dump(), before);
    // bob is not a member: he cannot make himself receive the room.
    let r = h.call(
        auth,
        ClientCall::Subscribe {
            room: room.into(),
            on: true,
        },
    );
    assert_eq!(r.status, 403, "{}", text(&r));
    assert_eq!(h.store.dump(), before);
    // The hub's notify is accepted; a byte-identical retry is answered 201 and ignored.
    for _ in 0..2 {
        let r = h.peer("a.example", Endpoint::Notify, room, body.clone());
        assert_eq!(r.status, 201);
    }
    assert_eq!(h.engine.stats().notify_duplicates, 1);
    // A batch with one old and one new message: only the new one counts.
    let mut two = body;
    two.extend_from_slice(&fanout(room, 2).to_bytes());
    let r = h.peer("a.example", Endpoint::Notify, room, two);
    assert_eq!(r.status, 201);
    assert_eq!(h.engine.stats().notify_duplicates, 2);
    let seen = h.store.table(crate::store::Table::NotifySeen).len();
    assert_eq!(seen, 2, "two distinct messages remembered");
}
