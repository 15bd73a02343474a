//! Schema 2 → 3 on databases written by the previous release (`mimi demo --keep`, kept as
//! fixtures): every record is carried over, and the migrated rooms load and work.

#![allow(clippy::unwrap_used)]

use mimi_engine::store::{Store, Table, events, keys};
use mimi_gateway::store::{RedbStore, SCHEMA_VERSION};
use mimi_proto::uri::{Domain, RoomUri};

fn copy(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("mimi-migrate-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join(name);
    std::fs::copy(
        format!("{}/tests/data/{name}", env!("CARGO_MANIFEST_DIR")),
        &p,
    )
    .unwrap();
    p
}

#[test]
fn a_hub_database_of_the_previous_release_migrates_whole() {
    let p = copy("v2-hub-a.example.redb");
    let s = RedbStore::open(&p).unwrap();
    assert_eq!(s.version().unwrap(), SCHEMA_VERSION);
    // The hub's keys survive.
    assert!(s.meta("hub_signer").unwrap().is_some());
    assert!(s.meta("franking_key").unwrap().is_some());
    // Alice's client, her token and her user.
    let alice = s
        .get(Table::Clients, b"alice/phone")
        .unwrap()
        .expect("alice's client");
    let row: mimi_engine::store::rows::ClientRow =
        mimi_engine::store::rows::decode(Table::Clients, &alice).unwrap();
    assert_eq!(
        s.get(Table::Tokens, &row.token_hash).unwrap().as_deref(),
        Some(&b"alice/phone"[..])
    );
    assert!(s.get(Table::Users, b"alice").unwrap().is_some());
    // The room loads from its migrated openmls rows, with every member and participant.
    let domain = Domain::parse("a.example").unwrap();
    let room: RoomUri = "mimi://a.example/r/demo".parse().unwrap();
    let info = mimi_engine::room_info(&s, &domain, &room)
        .unwrap()
        .expect("the demo room");
    assert!(info.epoch >= 3, "{info:?}");
    assert!(info.members >= 3, "{info:?}");
    assert!(
        info.followers.iter().any(|d| d.as_str() == "c.example"),
        "{info:?}"
    );
    assert_eq!(
        mimi_engine::hosted_rooms(&s, None, 10).unwrap(),
        vec![room.to_string()]
    );
    // Subscriptions are rows now.
    let subs = s
        .scan(
            Table::RoomSubscribers,
            &keys::prefix(&[room.as_str().as_bytes()]),
            None,
            10,
        )
        .unwrap();
    assert!(!subs.is_empty());
    // Deliveries keep their sequence numbers and bodies.
    let page = events(&s, "alice/phone", 0, 1000).unwrap();
    for e in &page.events {
        assert!(!e.body.0.is_empty());
    }
    // Reopening does not migrate again.
    drop(s);
    let s = RedbStore::open(&p).unwrap();
    assert_eq!(s.version().unwrap(), SCHEMA_VERSION);
}

#[test]
fn a_follower_database_of_the_previous_release_migrates_whole() {
    let p = copy("v2-follower-b.example.redb");
    let s = RedbStore::open(&p).unwrap();
    assert!(s.get(Table::Clients, b"bob/laptop").unwrap().is_some());
    assert!(s.get(Table::Users, b"bob").unwrap().is_some());
    assert!(
        !s.scan(
            Table::ClientRooms,
            &keys::prefix(&[b"bob/laptop"]),
            None,
            10
        )
        .unwrap()
        .is_empty(),
        "bob still receives the room"
    );
    assert!(s.scan(Table::HubRooms, b"", None, 10).unwrap().is_empty());
}
