//! Unit tests of the hub: room creation, the existence oracle, who may send as whom, and that
//! a refusal writes nothing.

use bytes::Bytes;
use mimi_client::Member;
use mimi_proto::codec::Wire;
use mimi_proto::directory::Endpoint;
use mimi_proto::messages::{
    GroupInfoCode, GroupInfoResponse, SubmitMessageRequest, SubmitMessageResponse, SubmitOutcome,
};

use crate::testing::{Harness, room_with_remote_member, room_with_remote_member_limited, text};
use crate::{Auth, Body, ClientCall, Limits};

const ROOM: &str = "mimi://a.example/r/t";

fn mimi(r: &crate::Response) -> Bytes {
    match &r.body {
        Body::Mimi(b) => b.clone(),
        _ => panic!("not a MIMI body: {} {}", r.status, text(r)),
    }
}

#[test]
fn room_creation_refusals_change_nothing() {
    let mut h = Harness::new("a.example");
    let mut alice = Member::new("a.example", "alice", "phone");
    let auth = h.register(&alice, 0);
    let es = h.hub_sender();
    let c = alice
        .create_room(
            "mimi://b.example/r/x",
            &es,
            &mimi_client::RoomSetup::named("x"),
        )
        .unwrap();
    let before = h.store.dump();
    for (room, gi, tree, status) in [
        (
            "mimi://b.example/r/x",
            c.group_info.clone(),
            c.ratchet_tree.clone(),
            400,
        ),
        (
            "not a room",
            c.group_info.clone(),
            c.ratchet_tree.clone(),
            400,
        ),
        (
            "mimi://a.example/r/x",
            vec![1, 2, 3],
            c.ratchet_tree.clone(),
            400,
        ),
        ("mimi://a.example/r/x", c.group_info, vec![9], 400),
    ] {
        let r = h.call(
            auth.clone(),
            ClientCall::CreateRoom {
                room: room.into(),
                group_info: gi,
                ratchet_tree: tree,
            },
        );
        assert_eq!(r.status, status, "{room}: {}", text(&r));
        assert_eq!(h.store.dump(), before, "{room}: nothing written");
    }
    // Anonymous callers cannot create rooms.
    let r = h.call(Auth::Anonymous, ClientCall::HubInfo);
    assert_eq!(r.status, 200);
    let mut bob = Member::new("a.example", "bob", "x");
    h.register(&bob, 0);
    let es = h.hub_sender();
    let c = bob
        .create_room(ROOM, &es, &mimi_client::RoomSetup::named("t"))
        .unwrap();
    let r = h.call(
        Auth::Anonymous,
        ClientCall::CreateRoom {
            room: ROOM.into(),
            group_info: c.group_info,
            ratchet_tree: c.ratchet_tree,
        },
    );
    assert_eq!(r.status, 401);
}

#[test]
fn unknown_and_forbidden_rooms_answer_alike() {
    let (mut h, _, _, _) = room_with_remote_member();
    let eve = Member::new("c.example", "eve", "x");
    let (req, _) = eve.group_info_request();
    for room in [ROOM, "mimi://a.example/r/nope"] {
        let r = h.peer("c.example", Endpoint::GroupInfo, room, req.clone());
        assert_eq!(r.status, 200, "{room}");
        let g = GroupInfoResponse::from_bytes(&mimi(&r)).unwrap();
        assert_eq!(g.status, GroupInfoCode::NotAuthorized, "{room}");
    }
}

#[test]
fn a_peer_sends_only_as_its_own_users() {
    let (mut h, mut alice, _, _) = room_with_remote_member();
    let (body, _) = alice
        .send(ROOM, |s, r, salt| {
            mimi_content::builder::text(s, r, salt, "hi")
        })
        .unwrap();
    // The same message claimed by another provider for someone it does not speak for.
    let mut req = SubmitMessageRequest::from_bytes(&body).unwrap();
    req.sending_uri = mimi_proto::codec::Uri::from("mimi://a.example/u/alice");
    let before = h.store.dump();
    let r = h.peer("b.example", Endpoint::SubmitMessage, ROOM, req.to_bytes());
    assert_eq!(r.status, 403, "{}", text(&r));
    assert!(text(&r).contains("may not send as mimi://a.example/u/alice"));
    assert_eq!(h.store.dump(), before, "nothing queued, nothing delivered");
}

#[test]
fn a_non_member_cannot_send_and_nothing_leaves() {
    let (mut h, _, _, _) = room_with_remote_member();
    let mut mallory = Member::new("a.example", "mallory", "x");
    let auth = h.register(&mallory, 0);
    let es = h.hub_sender();
    mallory
        .create_room(ROOM, &es, &mimi_client::RoomSetup::named("fake"))
        .unwrap();
    let before = h.store.dump();
    let r = h.say(&mut mallory, &auth, ROOM, "let me in");
    assert_eq!(
        SubmitMessageResponse::from_bytes(&mimi(&r))
            .unwrap()
            .outcome,
        SubmitOutcome::NotAllowed
    );
    assert_eq!(h.store.dump(), before);
}

#[test]
fn a_retried_submission_is_answered_again_and_fanned_out_once() {
    let (mut h, mut alice, auth, _) = room_with_remote_member_limited(Limits {
        notify_dedup_window: 3,
        ..Limits::default()
    });
    let submit = |h: &mut Harness, body: &[u8]| {
        h.call(
            auth.clone(),
            ClientCall::Room {
                endpoint: Endpoint::SubmitMessage,
                target: ROOM.into(),
                body: Bytes::copy_from_slice(body),
            },
        )
    };
    let (body, _) = alice
        .send(ROOM, |s, r, salt| {
            mimi_content::builder::text(s, r, salt, "once")
        })
        .unwrap();
    let first = submit(&mut h, &body);
    assert_eq!(first.status, 200, "{}", text(&first));
    let queued = h.store.table(crate::store::Table::Outbox).len();
    // The answer was lost; the client sends the same bytes again.
    let again = submit(&mut h, &body);
    assert_eq!(
        mimi(&again),
        mimi(&first),
        "the same answer, timestamp included"
    );
    assert_eq!(
        h.store.table(crate::store::Table::Outbox).len(),
        queued,
        "nothing fanned out twice"
    );
    // The window is bounded: after more submissions than it holds, old ones are forgotten.
    for i in 0..5 {
        let r = h.say(&mut alice, &auth, ROOM, &format!("m{i}"));
        assert_eq!(r.status, 200, "{}", text(&r));
    }
    assert_eq!(h.store.table(crate::store::Table::SubmitSeen).len(), 3);
    assert_eq!(h.store.table(crate::store::Table::SubmitOrder).len(), 3);
}

#[test]
fn sorted_lookup_finds_the_first_entry_of_a_key_and_nothing_else() {
    use super::{find_sorted, sorted_positions};
    let items = [
        Some("carol"),
        None,
        Some("alice"),
        Some("bob"),
        Some("alice"),
    ];
    let sorted = sorted_positions(&items, |x| *x);
    assert_eq!(
        sorted,
        [2, 4, 3, 0],
        "keyless items left out, equal keys in order"
    );
    let key = |i: usize| items[i].unwrap_or("");
    assert_eq!(
        find_sorted(&sorted, "alice", key),
        Some(2),
        "the first alice wins"
    );
    assert_eq!(find_sorted(&sorted, "bob", key), Some(3));
    assert_eq!(find_sorted(&sorted, "carol", key), Some(0));
    for absent in ["", "al", "alicf", "zed"] {
        assert_eq!(find_sorted(&sorted, absent, key), None, "{absent}");
    }
    assert_eq!(find_sorted(&[], "alice", key), None);
}
