//! The storage test suite: what every [`Store`] backend must do. The engine's tests run it on
//! [`super::MemStore`]; the gateway runs it on redb and PostgreSQL.
//!
//! ```
//! mimi_engine::store::suite::run(&mut || std::sync::Arc::new(mimi_engine::store::MemStore::default()));
//! ```

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;

use super::rows::{DeliveryRow, OutboxRow, QueueMeta};
use super::{QueueCap, Store, StoreError, Table, Write, WriteBatch, commit, events, keys, rows};

fn body(n: u8, len: usize) -> ([u8; 32], Arc<[u8]>) {
    let bytes: Arc<[u8]> = vec![n; len].into();
    ([n; 32], bytes)
}

fn delivery(n: u8, len: usize, cap: QueueCap) -> Write {
    let (id, bytes) = body(n, len);
    Write::Deliver {
        client: "alice/phone".into(),
        row: DeliveryRow {
            room: "mimi://a.example/r/x".into(),
            kind: 4,
            timestamp: u64::from(n),
            body: id,
            bytes: len as u32,
        },
        body: bytes,
        cap,
    }
}

const BIG: QueueCap = QueueCap {
    count: 1000,
    bytes: 1 << 30,
};

fn batch(ws: Vec<Write>) -> WriteBatch {
    WriteBatch { writes: ws }
}

/// Runs every check on fresh stores made by `new` (each call must return an empty store).
pub fn run(new: &mut dyn FnMut() -> Arc<dyn Store>) {
    rows_and_scans(new().as_ref());
    atomicity(new().as_ref());
    deliveries(new().as_ref());
    queue_caps(new().as_ref());
    outboxes_and_dead_letters(new().as_ref());
}

fn rows_and_scans(s: &dyn Store) {
    let keys: Vec<Vec<u8>> = vec![
        keys::join(&[b"r1", b"a"]),
        keys::join(&[b"r1", b"b"]),
        keys::with_seq(&[b"r1"], 0),
        keys::with_seq(&[b"r1"], u64::MAX),
        keys::join(&[b"r10", b"a"]),
        vec![0xff, 0x00, 0xff],
    ];
    let mut b = WriteBatch::default();
    for (i, k) in keys.iter().enumerate() {
        b.put_raw(Table::Clients, k.clone(), vec![i as u8; i * 100]);
    }
    b.put_raw(Table::Users, keys[0].clone(), b"other table".to_vec());
    b.put_raw(Table::Bridge, b"big".to_vec(), vec![9; 1 << 20]);
    commit(s, &[&b]).unwrap();
    for (i, k) in keys.iter().enumerate() {
        assert_eq!(
            s.get(Table::Clients, k).unwrap(),
            Some(vec![i as u8; i * 100])
        );
    }
    assert_eq!(
        s.get(Table::Bridge, b"big").unwrap().map(|v| v.len()),
        Some(1 << 20)
    );
    assert_eq!(
        s.get(Table::Users, &keys[0]).unwrap().as_deref(),
        Some(&b"other table"[..])
    );
    assert_eq!(s.get(Table::Users, &keys[1]).unwrap(), None);
    let p = keys::prefix(&[b"r1"]);
    let all = s.scan(Table::Clients, &p, None, 100).unwrap();
    assert_eq!(all.len(), 4, "prefix r1‖0 must not match r10");
    assert!(all.windows(2).all(|w| w[0].0 < w[1].0), "ascending");
    let after = s.scan(Table::Clients, &p, Some(&all[1].0), 100).unwrap();
    assert_eq!(after, all[2..].to_vec());
    assert_eq!(
        s.scan(Table::Clients, &p, None, 2).unwrap(),
        all[..2].to_vec()
    );
    assert_eq!(s.last(Table::Clients, &p).unwrap(), all.last().cloned());
    assert_eq!(s.last(Table::Clients, b"nothing").unwrap(), None);
    let mut d = WriteBatch::default();
    d.delete(Table::Clients, keys[0].clone());
    d.delete(Table::Clients, b"absent".to_vec());
    commit(s, &[&d]).unwrap();
    assert_eq!(s.get(Table::Clients, &keys[0]).unwrap(), None);
    assert_eq!(s.scan(Table::Clients, &p, None, 100).unwrap().len(), 3);
}

fn atomicity(s: &dyn Store) {
    let mut b = WriteBatch::default();
    b.put_raw(Table::Bridge, b"x".to_vec(), b"1".to_vec());
    commit(s, &[&b]).unwrap();
    let r = s.transact(&mut |t| {
        t.put(Table::Bridge, b"x", b"2")?;
        t.put(Table::Bridge, b"y", b"2")?;
        assert_eq!(
            t.get(Table::Bridge, b"x")?.as_deref(),
            Some(&b"2"[..]),
            "reads see own writes"
        );
        assert_eq!(t.scan(Table::Bridge, b"", None, 10)?.len(), 2);
        Err(StoreError::Backend("abort".into()))
    });
    assert!(r.is_err());
    assert_eq!(
        s.get(Table::Bridge, b"x").unwrap().as_deref(),
        Some(&b"1"[..])
    );
    assert_eq!(
        s.get(Table::Bridge, b"y").unwrap(),
        None,
        "nothing of a failed transaction stays"
    );
    // Several batches in one commit apply in order.
    let mut b1 = WriteBatch::default();
    b1.put_raw(Table::Bridge, b"z".to_vec(), b"1".to_vec());
    let mut b2 = WriteBatch::default();
    b2.put_raw(Table::Bridge, b"z".to_vec(), b"2".to_vec());
    commit(s, &[&b1, &b2]).unwrap();
    assert_eq!(
        s.get(Table::Bridge, b"z").unwrap().as_deref(),
        Some(&b"2"[..])
    );
}

fn deliveries(s: &dyn Store) {
    // Three deliveries, two sharing a body; another client shares it too.
    let mut ws = vec![
        delivery(1, 10, BIG),
        delivery(2, 20, BIG),
        delivery(1, 10, BIG),
    ];
    let (id, bytes) = body(1, 10);
    ws.push(Write::Deliver {
        client: "bob/laptop".into(),
        row: DeliveryRow {
            room: String::new(),
            kind: 5,
            timestamp: 0,
            body: id,
            bytes: 10,
        },
        body: bytes,
        cap: BIG,
    });
    let report = commit(s, &[&batch(ws)]).unwrap();
    assert!(report.delivered.contains("alice/phone") && report.delivered.contains("bob/laptop"));
    let page = events(s, "alice/phone", 0, 100).unwrap();
    let seqs: Vec<u64> = page.events.iter().map(|e| e.seq).collect();
    assert_eq!(seqs, vec![1, 2, 3]);
    assert_eq!(page.events[1].body.0, vec![2; 20]);
    assert_eq!(page.events[2].body.0, vec![1; 10]);
    assert!(!page.gap);
    assert_eq!(events(s, "alice/phone", 2, 100).unwrap().events.len(), 1);
    assert_eq!(events(s, "alice/phone", 0, 1).unwrap().events.len(), 1);
    assert_eq!(
        s.scan(Table::Bodies, b"", None, 10).unwrap().len(),
        2,
        "bodies stored once"
    );
    // Acknowledge two: body 2 goes, body 1 stays (still referenced).
    let report = commit(
        s,
        &[&batch(vec![Write::Ack {
            client: "alice/phone".into(),
            upto: 2,
        }])],
    )
    .unwrap();
    assert_eq!(report.acked, vec![("alice/phone".to_owned(), 2)]);
    assert_eq!(s.get(Table::Bodies, &[2; 32]).unwrap(), None);
    assert!(s.get(Table::Bodies, &[1; 32]).unwrap().is_some());
    // New deliveries continue the sequence after an acknowledgement.
    commit(s, &[&batch(vec![delivery(3, 5, BIG)])]).unwrap();
    let seqs: Vec<u64> = events(s, "alice/phone", 0, 100)
        .unwrap()
        .events
        .iter()
        .map(|e| e.seq)
        .collect();
    assert_eq!(seqs, vec![3, 4]);
    for c in ["alice/phone", "bob/laptop"] {
        commit(
            s,
            &[&batch(vec![Write::Ack {
                client: c.into(),
                upto: u64::MAX,
            }])],
        )
        .unwrap();
    }
    assert!(
        s.scan(Table::Bodies, b"", None, 10).unwrap().is_empty(),
        "no body leaks"
    );
    assert!(s.scan(Table::BodyRefs, b"", None, 10).unwrap().is_empty());
}

fn queue_caps(s: &dyn Store) {
    let cap = QueueCap {
        count: 3,
        bytes: 1000,
    };
    let ws: Vec<Write> = (1..=5).map(|n| delivery(n, 100, cap)).collect();
    commit(s, &[&batch(ws)]).unwrap();
    let page = events(s, "alice/phone", 0, 100).unwrap();
    assert_eq!(
        page.events.iter().map(|e| e.seq).collect::<Vec<_>>(),
        vec![3, 4, 5],
        "the oldest are dropped past the count cap"
    );
    assert!(page.gap);
    // The byte cap: one 900-byte body pushes out older ones.
    commit(s, &[&batch(vec![delivery(6, 900, cap)])]).unwrap();
    let page = events(s, "alice/phone", 0, 100).unwrap();
    assert_eq!(
        page.events.iter().map(|e| e.seq).collect::<Vec<_>>(),
        vec![5, 6]
    );
    let meta: QueueMeta = rows::decode(
        Table::DeliveryMeta,
        &s.get(Table::DeliveryMeta, b"alice/phone").unwrap().unwrap(),
    )
    .unwrap();
    assert_eq!((meta.count, meta.bytes), (2, 1000));
    assert_eq!(
        s.scan(Table::Bodies, b"", None, 100).unwrap().len(),
        2,
        "dropped bodies go"
    );
    commit(
        s,
        &[&batch(vec![Write::Ack {
            client: "alice/phone".into(),
            upto: 6,
        }])],
    )
    .unwrap();
    assert!(
        !events(s, "alice/phone", 0, 100).unwrap().gap,
        "an ack clears the gap"
    );
}

fn outboxes_and_dead_letters(s: &dyn Store) {
    let push = |seq: u64, n: u8| {
        let (id, bytes) = body(n, 50);
        Write::OutboxPush {
            follower: "b.example".into(),
            room: "mimi://a.example/r/x".into(),
            seq,
            row: OutboxRow {
                body: id,
                bytes: 50,
            },
            body: bytes,
        }
    };
    commit(
        s,
        &[&batch(vec![push(1, 1), push(2, 2), push(3, 3), push(4, 1)])],
    )
    .unwrap();
    let prefix = keys::prefix(&[b"b.example", b"mimi://a.example/r/x"]);
    assert_eq!(s.scan(Table::Outbox, &prefix, None, 100).unwrap().len(), 4);
    let meta_key = keys::join(&[b"b.example", b"mimi://a.example/r/x"]);
    let meta: rows::OutboxMetaRow = rows::decode(
        Table::OutboxMeta,
        &s.get(Table::OutboxMeta, &meta_key).unwrap().unwrap(),
    )
    .unwrap();
    assert_eq!((meta.last_seq, meta.count, meta.bytes), (4, 4, 200));
    commit(
        s,
        &[&batch(vec![
            Write::OutboxPop {
                follower: "b.example".into(),
                room: "mimi://a.example/r/x".into(),
                seqs: vec![1, 2],
            },
            Write::DeadLetter {
                follower: "b.example".into(),
                room: "mimi://a.example/r/x".into(),
                seqs: vec![3],
                status: 400,
                reason: "no".into(),
                at_ms: 7,
            },
        ])],
    )
    .unwrap();
    assert_eq!(s.get(Table::Bodies, &[2; 32]).unwrap(), None);
    assert!(
        s.get(Table::Bodies, &[3; 32]).unwrap().is_some(),
        "dead letters keep their body"
    );
    assert!(
        s.get(Table::Bodies, &[1; 32]).unwrap().is_some(),
        "seq 4 still holds body 1"
    );
    let dl = s
        .scan(Table::DeadLetters, &keys::prefix(&[b"b.example"]), None, 10)
        .unwrap();
    assert_eq!(dl.len(), 1);
    let row: rows::DeadLetterRow = rows::decode(Table::DeadLetters, &dl[0].1).unwrap();
    assert_eq!((row.status, row.body), (400, [3; 32]));
    commit(
        s,
        &[&batch(vec![
            Write::OutboxPop {
                follower: "b.example".into(),
                room: "mimi://a.example/r/x".into(),
                seqs: vec![4],
            },
            Write::Delete {
                table: Table::DeadLetters,
                key: dl[0].0.clone(),
            },
            Write::Unref { id: [3; 32] },
        ])],
    )
    .unwrap();
    assert_eq!(
        s.get(Table::OutboxMeta, &meta_key).unwrap(),
        None,
        "empty queues have no meta"
    );
    assert!(
        s.scan(Table::Bodies, b"", None, 10).unwrap().is_empty(),
        "no body leaks"
    );
}

/// Checks that committed rows survive closing and reopening: `open(true)` makes a fresh store,
/// `open(false)` reopens the same one (after the previous handle is dropped).
pub fn run_durability(open: &mut dyn FnMut(bool) -> Arc<dyn Store>) {
    {
        let s = open(true);
        commit(s.as_ref(), &[&batch(vec![delivery(1, 10, BIG)])]).unwrap();
        let mut b = WriteBatch::default();
        b.put_raw(Table::Bridge, b"k".to_vec(), b"v".to_vec());
        commit(s.as_ref(), &[&b]).unwrap();
    }
    let s = open(false);
    assert_eq!(
        s.get(Table::Bridge, b"k").unwrap().as_deref(),
        Some(&b"v"[..])
    );
    assert_eq!(
        events(s.as_ref(), "alice/phone", 0, 10)
            .unwrap()
            .events
            .len(),
        1
    );
}
