//! Byte-exact vectors for every named type, written by hand from the draft's struct
//! definitions. MLS objects inside them are real openmls output captured in
//! `tests/vectors/mls/` (regenerate with `cargo run -p mimi-proto --example capture_mls_vectors`).
//!
//! Vector notation: hex bytes; `"text"` for UTF-8; `@name` for a captured MLS artifact;
//! `xx*N` for N copies of a byte; `[ ... ]` for an RFC 9420 `<V>` vector (its varint length
//! followed by the contents); `#` starts a comment.

// Test helpers panic on purpose: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

mod support;

use std::collections::BTreeSet;

use mimi_proto::codec::{Bytes, Fixed32, Uri, Utf8, Wire};
use mimi_proto::components::*;
use mimi_proto::franking::{FrankingIntegrityTbs, ServerFrankingContext};
use mimi_proto::messages::*;
use mimi_proto::mls::*;
use mimi_proto::registry;

fn dsl(src: &str, a: &support::Artifacts) -> Vec<u8> {
    fn parse(
        tokens: &mut std::iter::Peekable<std::vec::IntoIter<String>>,
        a: &support::Artifacts,
        out: &mut Vec<u8>,
    ) {
        while let Some(t) = tokens.next() {
            match t.as_str() {
                "[" => {
                    let mut inner = Vec::new();
                    parse(tokens, a, &mut inner);
                    mimi_proto::codec::write_length(out, inner.len());
                    out.extend(inner);
                }
                "]" => return,
                s if s.starts_with('"') => out.extend_from_slice(s.trim_matches('"').as_bytes()),
                s if s.starts_with('@') => {
                    let name = format!("{}.bin", &s[1..]);
                    let (_, bytes) = support::files(a)
                        .into_iter()
                        .find(|(n, _)| *n == name)
                        .unwrap_or_else(|| panic!("no artifact {name}"));
                    out.extend_from_slice(bytes);
                }
                s if s.contains('*') => {
                    let (b, n) = s.split_once('*').unwrap();
                    out.extend(std::iter::repeat_n(
                        u8::from_str_radix(b, 16).unwrap(),
                        n.parse().unwrap(),
                    ));
                }
                s => out.extend(hex::decode(s).unwrap_or_else(|e| panic!("bad hex {s}: {e}"))),
            }
        }
    }
    let mut tokens = Vec::new();
    for line in src.lines() {
        let line = line.split('#').next().unwrap();
        let mut rest = line.trim();
        while !rest.is_empty() {
            if let Some(r) = rest.strip_prefix('"') {
                let end = r.find('"').unwrap();
                tokens.push(format!("\"{}\"", &r[..end]));
                rest = r[end + 1..].trim_start();
            } else {
                let end = rest.find(char::is_whitespace).unwrap_or(rest.len());
                tokens.push(rest[..end].to_owned());
                rest = rest[end..].trim_start();
            }
        }
    }
    let mut out = Vec::new();
    parse(&mut tokens.into_iter().peekable(), a, &mut out);
    out
}

/// Checks a vector three ways: decode gives `value`, encode gives the bytes, and the JSON of
/// `mimi inspect` round-trips to the same bytes.
#[track_caller]
fn check<T: Wire + PartialEq + std::fmt::Debug>(type_name: &str, bytes: &[u8], value: &T) {
    let decoded = T::from_bytes(bytes).unwrap_or_else(|e| panic!("{type_name}: {e}"));
    assert_eq!(&decoded, value, "{type_name}: decoded value");
    assert_eq!(value.to_bytes(), bytes, "{type_name}: encoding");
    let info =
        registry::find(type_name).unwrap_or_else(|| panic!("{type_name} not in the registry"));
    let json = info.decode_json(bytes).unwrap();
    assert_eq!(
        info.encode_json(&json).unwrap(),
        bytes,
        "{type_name}: JSON round trip"
    );
    // Every proper prefix fails cleanly, and a trailing byte is refused (a /notify body is a
    // concatenation, so a prefix ending on a message boundary is a shorter, valid body).
    if type_name != "NotifyBody" {
        for cut in 0..bytes.len() {
            assert!(
                T::from_bytes(&bytes[..cut]).is_err(),
                "{type_name}: prefix of {cut} bytes accepted"
            );
        }
        let mut long = bytes.to_vec();
        long.push(0);
        assert!(
            matches!(
                T::from_bytes(&long).unwrap_err().kind,
                mimi_proto::ErrorKind::TrailingBytes { count: 1 }
            ),
            "{type_name}"
        );
    }
}

fn u(s: &str) -> Uri {
    Uri::from(s)
}

const ALICE: &str = "mimi://a.example/u/alice"; // 24 bytes
const BOB: &str = "mimi://b.example/u/bob"; // 22 bytes
const ROOM: &str = "mimi://a.example/r/clubhouse"; // 28 bytes
const TS: u64 = 0x0000_0193_0000_1000;

fn frank() -> Frank {
    Frank {
        server_frank: Fixed32([0xbb; 32]),
        franking_signature_ciphersuite: 1,
        franking_integrity_signature: Bytes(vec![0xcc; 64]),
    }
}
const FRANK: &str = "bb*32 0001 [ cc*64 ]";

fn parsed<T: Wire>(bytes: &[u8]) -> T {
    T::from_bytes(bytes).unwrap()
}

#[test]
fn captured_mls_artifacts_round_trip() {
    let a = support::captured();
    for (name, bytes) in support::files(&a) {
        let again = match name {
            "key_package.bin" => KeyPackage::from_bytes(bytes).map(|v| v.to_bytes()),
            "welcome.bin" => Welcome::from_bytes(bytes).map(|v| v.to_bytes()),
            "group_info.bin" => GroupInfo::from_bytes(bytes).map(|v| v.to_bytes()),
            "ratchet_tree.bin" => RatchetTree::from_bytes(bytes).map(|v| v.to_bytes()),
            _ => MlsMessage::from_bytes(bytes).map(|v| v.to_bytes()),
        };
        assert_eq!(
            &again.unwrap_or_else(|e| panic!("{name}: {e}")),
            bytes,
            "{name}"
        );
    }
    let commit: MlsMessage = parsed(&a.commit);
    assert_eq!(commit.content_type(), Some(ContentType::Commit));
    assert_eq!(
        parsed::<MlsMessage>(&a.proposal_update).content_type(),
        Some(ContentType::Proposal)
    );
    let app: MlsMessage = parsed(&a.application);
    let MlsMessageBody::PrivateMessage(pm) = &app.body else {
        panic!()
    };
    assert_eq!(pm.content_type, ContentType::Application);
    assert_eq!(pm.epoch, 1);
    // The franking tag travels in a SafeAAD frank_aad item the hub can read.
    let (aad, tail) = SafeAad::from_authenticated_data(&pm.authenticated_data).unwrap();
    assert!(tail.is_empty());
    assert_eq!(aad.franking_tag(), Some(a.franking_tag));
}

#[test]
fn key_package_refs_match_openmls_and_route_the_welcome() {
    use openmls::prelude::tls_codec::Deserialize as _;
    let a = support::captured();
    let kp: KeyPackage = parsed(&a.key_package);
    let ours = kp.reference().unwrap();
    let crypto = openmls_rust_crypto::RustCrypto::default();
    let theirs = openmls::prelude::KeyPackageIn::tls_deserialize_exact(&a.key_package)
        .unwrap()
        .validate(&crypto, openmls::prelude::ProtocolVersion::Mls10)
        .unwrap()
        .hash_ref(&crypto)
        .unwrap();
    assert_eq!(ours.0, theirs.as_slice());
    let welcome: Welcome = parsed(&a.welcome);
    assert_eq!(welcome.secrets.len(), 2, "Bob and Carol");
    assert!(
        welcome.new_members().any(|r| *r == ours),
        "the Welcome names Bob's KeyPackageRef"
    );
}

#[test]
fn key_material() {
    let a = support::captured();
    let req = KeyMaterialRequest {
        protocol: Protocol::Mls10,
        requesting_user: u(ALICE),
        target_user: u(BOB),
        room_id: u(ROOM),
        acceptable_ciphersuites: vec![1],
        required_capabilities: RequiredCapabilities {
            extension_types: vec![6],
            proposal_types: vec![8],
            credential_types: vec![1],
        },
        requester_signature_key: Bytes(vec![0x11; 32]),
        requester_credential: Credential::basic(ALICE.as_bytes()),
        key_material_request_signature: Bytes(vec![0x22; 64]),
    };
    let bytes = dsl(
        r#"
        01                                  # protocol = mls10
        18 "mimi://a.example/u/alice"       # requestingUser
        16 "mimi://b.example/u/bob"         # targetUser
        1c "mimi://a.example/r/clubhouse"   # roomId
        02 0001                             # acceptableCiphersuites<V>
        02 0006  02 0008  02 0001           # requiredCapabilities
        20 11*32                            # requesterSignatureKey
        0001 18 "mimi://a.example/u/alice"  # requesterCredential (basic)
        40 40 22*64                         # key_material_request_signature
    "#,
        &a,
    );
    check("KeyMaterialRequest", &bytes, &req);

    let resp = KeyMaterialResponse {
        protocol: Protocol::Mls10,
        user_status: KeyMaterialUserCode::PartialSuccess,
        user_uri: u(BOB),
        clients: vec![
            ClientKeyMaterial::Success {
                client_uri: u("mimi://b.example/d/bob1"),
                key_package: parsed(&a.key_package),
            },
            ClientKeyMaterial::KeyMaterialExhausted {
                client_uri: u("mimi://b.example/d/bob2"),
            },
            ClientKeyMaterial::NothingCompatible {
                client_uri: u("mimi://b.example/d/bob3"),
                client_capabilities: None,
            },
        ],
    };
    let bytes = dsl(
        r#"
        01 01 16 "mimi://b.example/u/bob"   # protocol, userStatus = partialSuccess, userUri
        [                                   # clients<V>
          00 17 "mimi://b.example/d/bob1" @key_package
          01 17 "mimi://b.example/d/bob2"
          02 17 "mimi://b.example/d/bob3" 00
        ]
    "#,
        &a,
    );
    check("KeyMaterialResponse", &bytes, &resp);
}

#[test]
fn update_request_and_response() {
    let a = support::captured();
    let commit_bundle = HandshakeBundle::Commit {
        commit: parsed(&a.commit),
        welcome: Some(parsed(&a.welcome)),
        group_info_option: GroupInfoOption::Full {
            group_info: parsed(&a.group_info),
        },
        ratchet_tree_option: RatchetTreeOption::Full {
            ratchet_tree: parsed(&a.ratchet_tree),
        },
    };
    let bytes = dsl("@commit 01 @welcome 01 @group_info 01 @ratchet_tree", &a);
    check("UpdateRequest", &bytes, &commit_bundle);

    let proposals = HandshakeBundle::Proposal {
        proposal: parsed(&a.proposal_remove),
        more_proposals: vec![parsed(&a.proposal_update)],
    };
    check(
        "UpdateRequest",
        &dsl("@proposal_remove [ @proposal_update ]", &a),
        &proposals,
    );

    let ok = UpdateRoomResponse {
        error_description: Utf8::default(),
        outcome: UpdateOutcome::Success {
            accepted_timestamp: TS,
        },
    };
    check(
        "UpdateRoomResponse",
        &dsl("00 00 0000019300001000", &a),
        &ok,
    );
    let stale = UpdateRoomResponse {
        error_description: Utf8::from("stale epoch"),
        outcome: UpdateOutcome::WrongEpoch { current_epoch: 5 },
    };
    check(
        "UpdateRoomResponse",
        &dsl(r#"01 0b "stale epoch" 0000000000000005"#, &a),
        &stale,
    );
    let no = UpdateRoomResponse {
        error_description: Utf8::from("no"),
        outcome: UpdateOutcome::NotAllowed,
    };
    check("UpdateRoomResponse", &dsl(r#"02 02 "no""#, &a), &no);
    let bad = UpdateRoomResponse {
        error_description: Utf8::default(),
        outcome: UpdateOutcome::InvalidProposal {
            invalid_proposals: vec![Bytes(vec![0xaa; 32])],
        },
    };
    check("UpdateRoomResponse", &dsl("03 00 [ 20 aa*32 ]", &a), &bad);
}

#[test]
fn submit_message() {
    let a = support::captured();
    let req = SubmitMessageRequest {
        protocol: Protocol::Mls10,
        app_message: parsed(&a.application),
        sending_uri: u(ALICE),
    };
    check(
        "SubmitMessageRequest",
        &dsl(r#"01 @application 18 "mimi://a.example/u/alice""#, &a),
        &req,
    );
    let accepted = SubmitMessageResponse {
        protocol: Protocol::Mls10,
        outcome: SubmitOutcome::Accepted {
            accepted_timestamp: TS,
            frank: Some(frank()),
        },
    };
    check(
        "SubmitMessageResponse",
        &dsl(&format!("01 00 0000019300001000 01 {FRANK}"), &a),
        &accepted,
    );
    let unfranked = SubmitMessageResponse {
        protocol: Protocol::Mls10,
        outcome: SubmitOutcome::Accepted {
            accepted_timestamp: TS,
            frank: None,
        },
    };
    check(
        "SubmitMessageResponse",
        &dsl("01 00 0000019300001000 00", &a),
        &unfranked,
    );
    check(
        "SubmitMessageResponse",
        &dsl("01 01", &a),
        &SubmitMessageResponse {
            protocol: Protocol::Mls10,
            outcome: SubmitOutcome::NotAllowed,
        },
    );
    check(
        "SubmitMessageResponse",
        &dsl("01 02 0000000000000009", &a),
        &SubmitMessageResponse {
            protocol: Protocol::Mls10,
            outcome: SubmitOutcome::EpochTooOld { current_epoch: 9 },
        },
    );
    check("Frank", &dsl(FRANK, &a), &frank());
}

#[test]
fn fanout() {
    let a = support::captured();
    let app = FanoutMessage {
        timestamp: TS,
        message: parsed(&a.application),
        extra: FanoutExtra::Application {
            frank: Some(frank()),
        },
    };
    let app_bytes = dsl(&format!("0000019300001000 @application 01 {FRANK}"), &a);
    check("FanoutMessage", &app_bytes, &app);
    let welcome = FanoutMessage {
        timestamp: TS,
        message: parsed(&a.welcome_msg),
        extra: FanoutExtra::Welcome {
            ratchet_tree_option: RatchetTreeOption::DistributionService,
        },
    };
    let welcome_bytes = dsl("0000019300001000 @welcome_msg 04", &a);
    check("FanoutMessage", &welcome_bytes, &welcome);
    let commit = FanoutMessage {
        timestamp: TS,
        message: parsed(&a.commit),
        extra: FanoutExtra::Commit {
            external_proposals: vec![],
        },
    };
    let commit_bytes = dsl("0000019300001000 @commit 00", &a);
    check("FanoutMessage", &commit_bytes, &commit);
    let proposal = FanoutMessage {
        timestamp: TS,
        message: parsed(&a.proposal_remove),
        extra: FanoutExtra::Proposal {
            more_proposals: vec![parsed(&a.proposal_update)],
        },
    };
    check(
        "FanoutMessage",
        &dsl("0000019300001000 @proposal_remove [ @proposal_update ]", &a),
        &proposal,
    );
    // Several FanoutMessages concatenated in one /notify body.
    let batch = FanoutBatch(vec![commit, welcome, app]);
    let boundaries = [commit_bytes.len(), commit_bytes.len() + welcome_bytes.len()];
    let mut bytes = commit_bytes;
    bytes.extend(welcome_bytes);
    bytes.extend(app_bytes);
    check("NotifyBody", &bytes, &batch);
    for cut in 0..bytes.len() {
        let r = FanoutBatch::from_bytes(&bytes[..cut]);
        assert_eq!(
            r.is_ok(),
            boundaries.contains(&cut),
            "NotifyBody prefix of {cut} bytes"
        );
    }
}

fn hub_sender() -> ExternalSender {
    ExternalSender {
        signature_key: Bytes(vec![0x33; 32]),
        credential: Credential::basic(b"a.example"),
    }
}

#[test]
fn group_info() {
    let a = support::captured();
    let req = GroupInfoRequest {
        protocol: Protocol::Mls10,
        cipher_suite: 1,
        requesting_signature_key: Bytes(vec![0x44; 32]),
        requesting_credential: Credential::basic(b"mimi://c.example/u/carol"),
        group_info_public_key: Bytes(vec![0x55; 32]),
        joining_code: Bytes::default(),
        signature: Bytes(vec![0x66; 64]),
    };
    check(
        "GroupInfoRequest",
        &dsl(
            r#"01 0001 20 44*32 0001 18 "mimi://c.example/u/carol" 20 55*32 00 40 40 66*64"#,
            &a,
        ),
        &req,
    );

    let ok = GroupInfoResponse {
        version: Protocol::Mls10,
        room_id: u(ROOM),
        status: GroupInfoCode::Success,
        success: Some(GroupInfoSuccess {
            cipher_suite: 1,
            hub_sender: hub_sender(),
            encrypted_groupinfo_and_tree: HpkeCiphertext {
                kem_output: Bytes(vec![0x77; 32]),
                ciphertext: Bytes(vec![0x88; 16]),
            },
            signature: Bytes(vec![0x99; 64]),
        }),
    };
    check(
        "GroupInfoResponse",
        &dsl(
            r#"01 1c "mimi://a.example/r/clubhouse" 01 0001 20 33*32 0001 09 "a.example" 20 77*32 10 88*16 40 40 99*64"#,
            &a,
        ),
        &ok,
    );
    let refused = GroupInfoResponse {
        version: Protocol::Mls10,
        room_id: u(ROOM),
        status: GroupInfoCode::NotAuthorized,
        success: None,
    };
    check(
        "GroupInfoResponse",
        &dsl(r#"01 1c "mimi://a.example/r/clubhouse" 02"#, &a),
        &refused,
    );

    let tbe = GroupInfoRatchetTreeTbe {
        group_info: parsed(&a.group_info),
        ratchet_tree_option: RatchetTreeOption::Full {
            ratchet_tree: parsed(&a.ratchet_tree),
        },
        pending_proposals: vec![PendingProposal {
            proposal: parsed(&a.proposal_remove),
            hub_accepted_time: 1000,
        }],
    };
    check(
        "GroupInfoRatchetTreeTBE",
        &dsl(
            "@group_info 01 @ratchet_tree [ @proposal_remove 00000000000003e8 ]",
            &a,
        ),
        &tbe,
    );
}

#[test]
fn tree_and_group_info_options() {
    let a = support::captured();
    check(
        "RatchetTreeOption",
        &dsl(r#"02 13 "https://a.example/t" 03 aabbcc"#, &a),
        &RatchetTreeOption::HttpsUri {
            ratchet_tree_url: u("https://a.example/t"),
            tree_signature: Bytes(vec![0xaa, 0xbb, 0xcc]),
        },
    );
    check(
        "RatchetTreeOption",
        &dsl("03 02 dddd", &a),
        &RatchetTreeOption::OutOfBand {
            tree_signature: Bytes(vec![0xdd; 2]),
        },
    );
    check(
        "RatchetTreeOption",
        &dsl("01 @ratchet_tree", &a),
        &RatchetTreeOption::Full {
            ratchet_tree: parsed(&a.ratchet_tree),
        },
    );
    let partial = PartialGroupInfo {
        ratchet_tree_presence: RatchetTreePresence::Present,
        group_info_extensions: vec![],
        signature: Bytes(vec![0x12; 64]),
    };
    check("PartialGroupInfo", &dsl("01 00 40 40 12*64", &a), &partial);
    check(
        "GroupInfoOption",
        &dsl("02 01 00 40 40 12*64", &a),
        &GroupInfoOption::Partial {
            partial_group_info: partial,
        },
    );
}

#[test]
fn consent() {
    let a = support::captured();
    let request = ConsentEntry {
        consent_operation: ConsentOperation::Request,
        requester_uri: u(ALICE),
        target_uri: u(BOB),
        room_id: Some(u(ROOM)),
        client_key_packages: vec![],
        consent_extensions: AppDataDictionary::default(),
    };
    check(
        "ConsentEntry",
        &dsl(
            r#"01 18 "mimi://a.example/u/alice" 16 "mimi://b.example/u/bob" 01 1c "mimi://a.example/r/clubhouse" 00"#,
            &a,
        ),
        &request,
    );
    let grant = ConsentEntry {
        consent_operation: ConsentOperation::Grant,
        requester_uri: u(ALICE),
        target_uri: u(BOB),
        room_id: None,
        client_key_packages: vec![parsed(&a.key_package)],
        consent_extensions: AppDataDictionary::default(),
    };
    check(
        "ConsentEntry",
        &dsl(
            r#"02 18 "mimi://a.example/u/alice" 16 "mimi://b.example/u/bob" 00 [ @key_package ] 00"#,
            &a,
        ),
        &grant,
    );
    let scope = ConsentScope {
        requester_uri: u(ALICE),
        target_uri: u(BOB),
        room_id: None,
    };
    check(
        "ConsentScope",
        &dsl(
            r#"18 "mimi://a.example/u/alice" 16 "mimi://b.example/u/bob" 00"#,
            &a,
        ),
        &scope,
    );
}

#[test]
fn identifier_query() {
    let a = support::captured();
    let req = IdentifierRequest {
        query_elements: vec![
            QueryElement {
                search_type: SearchIdentifierType::Nick,
                field_name: None,
                search_value: Utf8::from("bob"),
            },
            QueryElement {
                search_type: SearchIdentifierType::OidcStdClaim,
                field_name: Some(Utf8::from("family_name")),
                search_value: Utf8::from("Jones"),
            },
        ],
        id_request_extensions: AppDataDictionary::default(),
    };
    check(
        "IdentifierRequest",
        &dsl(r#"[ 02 03 "bob"  07 0b "family_name" 05 "Jones" ] 00"#, &a),
        &req,
    );
    let resp = IdentifierResponse {
        response_code: IdentifierQueryCode::Success,
        uri: vec![u(BOB)],
        found_profiles: vec![UserProfile {
            stable_uri: u(BOB),
            fields: vec![ProfileField {
                field_source: FieldSource::OidcStdClaim,
                field_name: Utf8::from("given_name"),
                field_value: Bytes(b"Bob".to_vec()),
            }],
        }],
        id_response_extensions: AppDataDictionary::default(),
    };
    check(
        "IdentifierResponse",
        &dsl(
            r#"00 [ 16 "mimi://b.example/u/bob" ] [ 16 "mimi://b.example/u/bob" [ 07 0a "given_name" 03 "Bob" ] ] 00"#,
            &a,
        ),
        &resp,
    );
}

#[test]
fn abuse_report() {
    let a = support::captured();
    let report = AbuseReport {
        reporting_user: u(ALICE),
        alleged_abuser_uri: u(BOB),
        reason_code: 0,
        note: Utf8::from("spam!"),
        messages: vec![AbusiveMessage {
            message_content: Bytes(b"hey".to_vec()),
            frank: frank(),
            accepted_timestamp: TS,
        }],
        abuse_extensions: AppDataDictionary::default(),
    };
    check(
        "AbuseReport",
        &dsl(
            &format!(
                r#"18 "mimi://a.example/u/alice" 16 "mimi://b.example/u/bob" 00 05 "spam!" [ 03 "hey" {FRANK} 0000019300001000 ] 00"#
            ),
            &a,
        ),
        &report,
    );
}

#[test]
fn franking_structures() {
    let a = support::captured();
    let ctx = ServerFrankingContext {
        sender_uri: u(ALICE),
        room_uri: u(ROOM),
        accepted_timestamp: TS,
    };
    let ctx_hex =
        r#"18 "mimi://a.example/u/alice" 1c "mimi://a.example/r/clubhouse" 0000019300001000"#;
    check("ServerFrankingContext", &dsl(ctx_hex, &a), &ctx);
    let tbs = FrankingIntegrityTbs {
        server_frank: Fixed32([0xbb; 32]),
        franking_signature_ciphersuite: 1,
        context: ctx,
    };
    check(
        "FrankingIntegrityTBS",
        &dsl(&format!("bb*32 0001 {ctx_hex}"), &a),
        &tbs,
    );
    check(
        "FrankAAD",
        &dsl("5a*32", &a),
        &FrankAad {
            franking_tag: Fixed32([0x5a; 32]),
        },
    );
    let safe = SafeAad {
        aad_items: vec![SafeAadItem {
            component_id: 0x20,
            aad_item_data: Bytes(vec![0x5a; 32]),
        }],
    };
    check("SafeAAD", &dsl("[ 0020 20 5a*32 ]", &a), &safe);
    let agent = FrankingAgentData {
        franking_signature_key: Bytes(vec![0x33; 32]),
        credential: Credential::basic(b"a.example"),
    };
    check(
        "FrankingAgentData",
        &dsl(r#"20 33*32 0001 09 "a.example""#, &a),
        &agent,
    );
}

/// The "cooperatively administered" roles of room-policy-03 Appendix A, reduced.
fn roles() -> RoleData {
    let role = |i: u32,
                name: &str,
                caps: Vec<u16>,
                changes: Vec<(u32, Vec<u32>)>,
                min: u32,
                max_active: Option<u32>| Role {
        role_index: i,
        role_name: Bytes(name.as_bytes().to_vec()),
        role_description: Bytes::default(),
        role_capabilities: caps,
        minimum_participants_constraint: min,
        maximum_participants_constraint: None,
        minimum_active_participants_constraint: 0,
        maximum_active_participants_constraint: max_active,
        authorized_role_changes: changes
            .into_iter()
            .map(|(f, t)| SingleSourceRoleChangeTargets {
                from_role_index: f,
                target_role_indexes: t,
            })
            .collect(),
    };
    RoleData {
        roles: vec![
            role(1, "banned", vec![], vec![], 0, Some(0)),
            role(
                2,
                "ordinary_user",
                vec![
                    capability::CAN_ADD_PARTICIPANT,
                    capability::CAN_SEND_MESSAGE,
                ],
                vec![(0, vec![2]), (2, vec![0])],
                0,
                None,
            ),
        ],
    }
}

#[test]
fn room_state_components() {
    let a = support::captured();
    let list = ParticipantListData {
        participants: vec![
            UserRolePair {
                user: u(ALICE),
                role_index: 3,
            },
            UserRolePair {
                user: u(BOB),
                role_index: 2,
            },
        ],
    };
    check(
        "ParticipantListData",
        &dsl(
            r#"[ 18 "mimi://a.example/u/alice" 00000003 16 "mimi://b.example/u/bob" 00000002 ]"#,
            &a,
        ),
        &list,
    );
    let update = ParticipantListUpdate {
        changed_role_participants: vec![UserIndexRolePair {
            user_index: 1,
            role_index: 1,
        }],
        removed_indices: vec![0],
        added_participants: vec![UserRolePair {
            user: u("mimi://c.example/u/carol"),
            role_index: 2,
        }],
    };
    check(
        "ParticipantListUpdate",
        &dsl(
            r#"[ 00000001 00000001 ] [ 00000000 ] [ 18 "mimi://c.example/u/carol" 00000002 ]"#,
            &a,
        ),
        &update,
    );

    let meta = RoomMetaData {
        room_uri: u(ROOM),
        room_name: Utf8::from("Clubhouse"),
        room_descriptions: vec![RichDescription {
            media_type: Bytes::default(),
            language_tag: Bytes(b"en".to_vec()),
            description_content: Bytes(b"hi".to_vec()),
        }],
        room_avatar: Uri::default(),
        room_subject: Utf8::default(),
        room_mood: Utf8::default(),
    };
    check(
        "RoomMetaData",
        &dsl(
            r#"1c "mimi://a.example/r/clubhouse" 09 "Clubhouse" [ 00 02 "en" 02 "hi" ] 00 00 00"#,
            &a,
        ),
        &meta,
    );

    let roles_bytes = dsl(
        r#"
        [
          00000001 06 "banned" 00 00 00000000 00 00000000 01 00000000 00
          00000002 0d "ordinary_user" 00 [ 0000 0100 ] 00000000 00 00000000 00
            [ 00000000 [ 00000002 ]  00000002 [ 00000000 ] ]
        ]
    "#,
        &a,
    );
    check("RoleData", &roles_bytes, &roles());

    let preauth = PreAuthData {
        preauthorized_entries: vec![PreAuthRoleEntry {
            claimset: vec![Claim {
                claim_id: ClaimId {
                    credential_type: 2,
                    id: Bytes(vec![0x55, 0x04, 0x0a]),
                },
                claim_value: Bytes(b"Example Org".to_vec()),
            }],
            target_role: roles().roles[1].clone(),
        }],
    };
    let preauth_bytes = dsl(
        r#"
        [ [ 0002 03 55040a 0b "Example Org" ]
          00000002 0d "ordinary_user" 00 [ 0000 0100 ] 00000000 00 00000000 00
            [ 00000000 [ 00000002 ]  00000002 [ 00000000 ] ] ]
    "#,
        &a,
    );
    check("PreAuthData", &preauth_bytes, &preauth);

    let base = BaseRoomPolicy {
        fixed_membership: false,
        parent_dependant: false,
        parent_room: vec![],
        multi_device: true,
        max_clients: Some(100),
        max_users: None,
        pseudonyms_allowed: false,
        persistent_room: true,
        discoverable: false,
        policy_component_ids: vec![ids::ROLES_LIST, ids::PREAUTH_LIST],
    };
    check(
        "BaseRoomPolicy",
        &dsl("00 00 00 01 01 00000064 00 00 01 00 04 0025 0026", &a),
        &base,
    );

    let empty_caps = "00 00 00 00 00 00 00 00 00 00";
    let ops = OperationalParameters {
        mandatory_capabilities: ExtendedCapabilities {
            versions: vec![1],
            cipher_suites: vec![],
            extensions: vec![],
            proposals: vec![],
            credentials: vec![],
            wire_formats: vec![],
            component_ids: vec![],
            safe_aad_types: vec![],
            media_types: vec![MediaType {
                media_type: Bytes(b"application/mimi-content".to_vec()),
                parameters: vec![],
            }],
            content_types: vec![1],
        },
        default_capabilities: ExtendedCapabilities {
            versions: vec![],
            cipher_suites: vec![],
            extensions: vec![],
            proposals: vec![],
            credentials: vec![],
            wire_formats: vec![],
            component_ids: vec![],
            safe_aad_types: vec![],
            media_types: vec![],
            content_types: vec![],
        },
        forbidden_capabilities: ExtendedCapabilities {
            versions: vec![],
            cipher_suites: vec![],
            extensions: vec![],
            proposals: vec![],
            credentials: vec![],
            wire_formats: vec![],
            component_ids: vec![],
            safe_aad_types: vec![],
            media_types: vec![],
            content_types: vec![],
        },
        handshake_formats: vec![1],
        external_proposal_allowed: true,
        external_commit_allowed: true,
        pending_proposal_policy: PendingProposalPolicy::RandomDelay {
            minimum_delay_ms: 10,
            maximum_delay_ms: 500,
        },
        leaf_node_update_time: MinDefaultMaxTime {
            minimum_time: 1,
            default_time: 2,
            maximum_time: 3,
        },
        app_message_policy: AppMessagePolicy {
            epoch_tolerance: 2,
            pad_to_size: 256,
            max_generations_skipahead: 1000,
        },
        max_kp_lifetime: 7776000,
        max_credential_lifetime: 0,
        resumption_psk_lifetime: 0,
        sender_nonce_keypair_lifetime: MinDefaultMaxTime {
            minimum_time: 0,
            default_time: 0,
            maximum_time: 0,
        },
        max_keypairs: 5,
        buffer_incoming_message_time: MinDefaultMaxTime {
            minimum_time: 0,
            default_time: 0,
            maximum_time: 0,
        },
        max_buffered_messages: 50,
    };
    let ops_bytes = dsl(
        &format!(
            r#"
        02 0001 00 00 00 00 00 00 00 [ [ "application/mimi-content" ] 00 ] 01 01   # mandatory
        {empty_caps}  {empty_caps}                                                  # default, forbidden
        02 0001 01 01                                                              # handshake formats, external ok
        02 000000000000000a 00000000000001f4                                       # random delay
        0000000000000001 0000000000000002 0000000000000003                         # LeafNode update time
        02 0100 000003e8                                                           # app message policy
        000000000076a700 0000000000000000 0000000000000000                         # lifetimes
        0000000000000000 0000000000000000 0000000000000000 00000005                # nonce keypair, max keypairs
        0000000000000000 0000000000000000 0000000000000000 00000032                # buffering
    "#
        ),
        &a,
    );
    check("OperationalParameters", &ops_bytes, &ops);

    let assets = AssetPolicy {
        asset_upload_location: AssetUploadLocation::LocalProvider,
        upload_domains: vec![ProviderAssetUploadDomains {
            provider: Bytes(b"b.example".to_vec()),
            asset_upload_destinations: vec![Bytes(b"assets.b.example".to_vec())],
        }],
        download_privacy: DownloadPrivacy {
            allowed_download_types: vec![DownloadPrivacyType::HubProxy],
            forbidden_download_types: vec![DownloadPrivacyType::Direct],
            default_download_type: DownloadPrivacyType::HubProxy,
        },
        max_image: 1 << 20,
        max_audio: 0,
        max_video: 0,
        max_attachment: 0,
        forbidden_media_types: vec![],
        permitted_media_types: None,
    };
    let asset_bytes = dsl(
        r#"
        01 [ 09 "b.example" [ 10 "assets.b.example" ] ] 01 01 01 00 01
        0000000000100000 0000000000000000 0000000000000000 0000000000000000 00 00
    "#,
        &a,
    );
    check("AssetPolicy", &asset_bytes, &assets);

    check(
        "StatusNotificationPolicy",
        &dsl("00 02", &a),
        &StatusNotificationPolicy {
            delivery_notifications: Optionality::Optional,
            read_receipts: Optionality::Forbidden,
        },
    );
    check(
        "MessageExpiration",
        &dsl("02", &a),
        &MessageExpiration {
            expiring_messages: Optionality::Forbidden,
            min_expiration_duration: 0,
            max_expiration_duration: 0,
            default_expiration_duration: None,
        },
    );
    check(
        "MessageExpiration",
        &dsl("00 0000003c 00015180 01 00000e10", &a),
        &MessageExpiration {
            expiring_messages: Optionality::Optional,
            min_expiration_duration: 60,
            max_expiration_duration: 86400,
            default_expiration_duration: Some(3600),
        },
    );

    let mut dict = AppDataDictionary::default();
    dict.insert(ids::PARTICIPANT_LIST, list.to_bytes());
    dict.insert(ids::ROOM_METADATA, vec![0xab]);
    let list_bytes = list.to_bytes();
    let mut expected = dsl("[ 0022", &a);
    expected.truncate(0);
    let mut inner = vec![0x00, 0x22];
    mimi_proto::codec::write_opaque(&mut inner, &list_bytes);
    inner.extend([0x00, 0x23, 0x01, 0xab]);
    mimi_proto::codec::write_opaque(&mut expected, &inner);
    check("AppDataDictionary", &expected, &dict);
}

#[test]
fn mls_types_by_name() {
    let a = support::captured();
    check(
        "KeyPackage",
        &a.key_package,
        &parsed::<KeyPackage>(&a.key_package),
    );
    check("Welcome", &a.welcome, &parsed::<Welcome>(&a.welcome));
    check(
        "GroupInfo",
        &a.group_info,
        &parsed::<GroupInfo>(&a.group_info),
    );
    check("MLSMessage", &a.commit, &parsed::<MlsMessage>(&a.commit));
    check(
        "MLSMessage",
        &a.welcome_msg,
        &parsed::<MlsMessage>(&a.welcome_msg),
    );
    let MlsMessageBody::PrivateMessage(pm) = parsed::<MlsMessage>(&a.application).body else {
        panic!()
    };
    check("PrivateMessage", &a.application[4..], &pm);
    check(
        "Credential",
        &dsl(r#"0001 05 "alice""#, &a),
        &Credential::basic(b"alice"),
    );
}

/// Every type `mimi inspect` knows has a vector above.
#[test]
fn every_registry_type_has_a_vector() {
    let src = include_str!("vectors.rs");
    let checked: BTreeSet<&str> = src
        .match_indices("check(")
        .filter_map(|(i, _)| src[i + 6..].trim_start().strip_prefix('"'))
        .map(|s| &s[..s.find('"').unwrap()])
        .collect();
    for t in registry::TYPES {
        assert!(
            checked.contains(t.name),
            "{} has no byte-exact vector",
            t.name
        );
    }
}
