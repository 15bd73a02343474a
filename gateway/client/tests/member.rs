//! Members talking to each other in-process: the bodies a member builds are what another
//! member (and a hub) accept, persistence keeps a member working, and the credential rule
//! (D27) holds.

#![allow(clippy::unwrap_used)]

use mimi_client::{Event, Member, RoomSetup, role};
use mimi_content::builder;
use mimi_proto::codec::Wire;
use mimi_proto::messages::{
    FanoutExtra, FanoutMessage, HandshakeBundle, RatchetTreeOption, SubmitMessageRequest,
};
use mimi_proto::mls::{ExternalSender, MlsMessage, MlsMessageBody};
use openmls::prelude::tls_codec::Deserialize as _;

const ROOM: &str = "mimi://a.example/r/lobby";

/// A hub's external-sender entry (any key: the members never check it here).
fn hub_sender() -> Vec<u8> {
    let key = openmls_basic_credential::SignatureKeyPair::new(
        mimi_client::CIPHERSUITE.signature_algorithm(),
    )
    .unwrap();
    ExternalSender {
        signature_key: mimi_proto::codec::Bytes(key.public().to_vec()),
        credential: mimi_proto::mls::Credential::basic(b"a.example"),
    }
    .to_bytes()
}

/// Alice creates the room and adds Bob; Bob joins from the Welcome.
fn room_of_two() -> (Member, Member) {
    let mut alice = Member::new("a.example", "alice", "phone");
    let mut bob = Member::new("b.example", "bob", "laptop");
    let created = alice
        .create_room(ROOM, &hub_sender(), &RoomSetup::named("Lobby"))
        .unwrap();
    assert!(!created.group_info.is_empty() && !created.ratchet_tree.is_empty());
    let kps = bob.key_packages(1).unwrap();
    let bundle = alice
        .add_participants(ROOM, &[(bob.user().to_owned(), role::MEMBER)], &kps)
        .unwrap();
    alice.commit_accepted(ROOM).unwrap();
    let HandshakeBundle::Commit {
        welcome: Some(w),
        ratchet_tree_option,
        ..
    } = HandshakeBundle::from_bytes(&bundle).unwrap()
    else {
        panic!("an add carries a Welcome")
    };
    // The hub fills in the tree when the committer leaves it to the distribution service.
    let tree = match ratchet_tree_option {
        RatchetTreeOption::DistributionService => RatchetTreeOption::Full {
            ratchet_tree: mimi_proto::mls::RatchetTree::from_openmls_bytes(
                &alice.ratchet_tree(ROOM).unwrap(),
            )
            .unwrap(),
        },
        other => other,
    };
    let fm = FanoutMessage {
        timestamp: 1,
        message: MlsMessage {
            body: MlsMessageBody::Welcome(w),
        },
        extra: FanoutExtra::Welcome {
            ratchet_tree_option: tree,
        },
    };
    assert_eq!(
        bob.process(ROOM, &fm.to_bytes()),
        vec![Event::Joined { room: ROOM.into() }]
    );
    assert_eq!(alice.epoch(ROOM), bob.epoch(ROOM));
    (alice, bob)
}

fn deliver(from: &mut Member, to: &mut Member, text: &str) -> Vec<Event> {
    let (body, _) = from
        .send(ROOM, |s, r, salt| builder::text(s, r, salt, text))
        .unwrap();
    let req = SubmitMessageRequest::from_bytes(&body).unwrap();
    assert_eq!(req.sending_uri.as_str(), from.user());
    let fm = FanoutMessage {
        timestamp: 2,
        message: req.app_message,
        extra: FanoutExtra::Application { frank: None },
    };
    to.process(ROOM, &fm.to_bytes())
}

fn texts(events: &[Event]) -> Vec<String> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Message { message, .. } => {
                Some(mimi_content::render::plain_text(message.content()))
            }
            _ => None,
        })
        .collect()
}

#[test]
fn a_welcome_then_messages_both_ways() {
    let (mut alice, mut bob) = room_of_two();
    assert_eq!(
        texts(&deliver(&mut alice, &mut bob, "hello bob")),
        vec!["hello bob"]
    );
    assert_eq!(
        texts(&deliver(&mut bob, &mut alice, "hi alice")),
        vec!["hi alice"]
    );
    let sender = deliver(&mut alice, &mut bob, "again")
        .into_iter()
        .find_map(|e| match e {
            Event::Message { sender, .. } => Some(sender),
            _ => None,
        })
        .unwrap();
    assert_eq!(
        sender, "mimi://a.example/u/alice",
        "the sender comes from the credential"
    );
    assert_eq!(
        bob.participants(ROOM),
        vec![
            ("mimi://a.example/u/alice".to_owned(), role::ADMIN),
            ("mimi://b.example/u/bob".to_owned(), role::MEMBER)
        ]
    );
}

#[test]
fn exported_and_incrementally_persisted_members_keep_working() {
    let (mut alice, bob) = room_of_two();
    // Whole snapshot.
    let mut bob = Member::import(&bob.export()).unwrap();
    assert_eq!(
        texts(&deliver(&mut alice, &mut bob, "after import")),
        vec!["after import"]
    );
    // Only what changed, applied in order, rebuilds the same member.
    let mut meta = None;
    let mut rows = std::collections::BTreeMap::new();
    let mut persist = |m: &mut Member| {
        let c = m.take_changes();
        if let Some(x) = c.meta {
            meta = Some(x);
        }
        for (k, v) in c.rows {
            match v {
                Some(v) => rows.insert(k, v),
                None => rows.remove(&k),
            };
        }
        Member::from_parts(meta.as_ref().unwrap(), rows.clone()).unwrap()
    };
    let mut bob2 = persist(&mut bob);
    for i in 0..3 {
        let t = format!("message {i}");
        assert_eq!(texts(&deliver(&mut alice, &mut bob2, &t)), vec![t.clone()]);
        bob2 = persist(&mut bob2);
    }
    assert!(
        bob2.take_changes().is_empty(),
        "nothing changed since the last persist"
    );
    assert!(Member::import(b"{not a member").is_err());
}

#[test]
fn last_resort_key_packages_carry_the_extension() {
    let m = Member::new("a.example", "carol", "tablet");
    let raw = m.last_resort_key_package().unwrap();
    let kp = openmls::prelude::KeyPackageIn::tls_deserialize_exact(&raw)
        .unwrap()
        .validate(
            &openmls_rust_crypto::RustCrypto::default(),
            openmls::prelude::ProtocolVersion::Mls10,
        )
        .unwrap();
    assert!(kp.last_resort());
    let normal = m.key_packages(1).unwrap().remove(0);
    let kp = openmls::prelude::KeyPackageIn::tls_deserialize_exact(&normal)
        .unwrap()
        .validate(
            &openmls_rust_crypto::RustCrypto::default(),
            openmls::prelude::ProtocolVersion::Mls10,
        )
        .unwrap();
    assert!(!kp.last_resort());
}

#[test]
fn members_use_client_uris_as_credentials() {
    let m = Member::new("a.example", "dave", "watch");
    assert_eq!(m.client_uri(), "mimi://a.example/d/dave/watch");
    assert_eq!(m.user(), "mimi://a.example/u/dave");
    let (alice, _) = room_of_two();
    assert_eq!(
        alice.members(ROOM),
        vec![
            "mimi://a.example/d/alice/phone".to_owned(),
            "mimi://b.example/d/bob/laptop".to_owned()
        ]
    );
}
