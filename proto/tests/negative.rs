//! Rejections: bad enum values, reserved values, oversize and non-minimal lengths, wrong MLS
//! wire formats and content types, and semantic rules; each names the path and byte offset.

// Test helpers panic on purpose: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

mod support;

use mimi_proto::ErrorKind;
use mimi_proto::codec::{MAX_URI_LEN, Wire};
use mimi_proto::components::{AppDataDictionary, ParticipantListData};
use mimi_proto::messages::*;
use mimi_proto::mls::MlsMessage;

#[track_caller]
fn rejects<T: Wire + std::fmt::Debug>(bytes: &[u8], kind: ErrorKind, path: &str, offset: usize) {
    let e = T::from_bytes(bytes).expect_err("must be rejected");
    assert_eq!(e.kind, kind, "{e}");
    assert_eq!(e.path, path, "{e}");
    assert_eq!(e.offset, offset, "{e}");
    // The message names both.
    let text = e.to_string();
    assert!(
        text.contains(path) && text.contains(&format!("byte {offset}")),
        "{text}"
    );
}

#[test]
fn enum_values() {
    rejects::<SubmitMessageResponse>(
        &[0, 1],
        ErrorKind::Reserved {
            name: "Protocol",
            value: 0,
        },
        "SubmitMessageResponse.protocol",
        0,
    );
    rejects::<SubmitMessageResponse>(
        &[2, 1],
        ErrorKind::UnknownValue {
            name: "Protocol",
            value: 2,
        },
        "SubmitMessageResponse.protocol",
        0,
    );
    rejects::<SubmitMessageResponse>(
        &[1, 3],
        ErrorKind::UnknownValue {
            name: "SubmitResponseCode",
            value: 3,
        },
        "SubmitMessageResponse.statusCode",
        1,
    );
    rejects::<UpdateRoomResponse>(
        &[4, 0],
        ErrorKind::UnknownValue {
            name: "UpdateResponseCode",
            value: 4,
        },
        "UpdateRoomResponse.responseCode",
        0,
    );
    let mut b = vec![1, 0x03];
    b.extend_from_slice(b"a.b");
    b.push(0);
    rejects::<GroupInfoResponse>(
        &b,
        ErrorKind::Reserved {
            name: "GroupInfoCode",
            value: 0,
        },
        "GroupInfoResponse.status",
        5,
    );
    rejects::<RatchetTreeOption>(
        &[5],
        ErrorKind::UnknownValue {
            name: "RatchetTreeRepresentation",
            value: 5,
        },
        "RatchetTreeOption.representation",
        0,
    );
    rejects::<GroupInfoOption>(
        &[0],
        ErrorKind::Reserved {
            name: "GroupInfoRepresentation",
            value: 0,
        },
        "GroupInfoOption.representation",
        0,
    );
    rejects::<ConsentEntry>(
        &[4],
        ErrorKind::UnknownValue {
            name: "ConsentOperation",
            value: 4,
        },
        "ConsentEntry.consentOperation",
        0,
    );
    rejects::<QueryElement>(
        &[0, 0],
        ErrorKind::Reserved {
            name: "SearchIdentifierType",
            value: 0,
        },
        "QueryElement.searchType",
        0,
    );
    // A KeyMaterialResponse with userStatus 8.
    rejects::<KeyMaterialResponse>(
        &[1, 8, 0, 0],
        ErrorKind::UnknownValue {
            name: "KeyMaterialUserCode",
            value: 8,
        },
        "KeyMaterialResponse.userStatus",
        1,
    );
}

#[test]
fn lengths() {
    // A URI longer than the limit.
    let mut b = vec![0x50, 0x01];
    b.extend(vec![b'a'; MAX_URI_LEN + 1]);
    rejects::<ConsentScope>(
        &b,
        ErrorKind::TooLong {
            len: MAX_URI_LEN + 1,
            max: MAX_URI_LEN,
        },
        "ConsentScope.requesterUri",
        0,
    );
    // A vector that claims more bytes than the body has (checked before allocating).
    rejects::<IdentifierRequest>(
        &[0xbf, 0xff, 0xff, 0xff, 0],
        ErrorKind::Truncated {
            needed: (1 << 30) - 1 - 1,
        },
        "IdentifierRequest.query_elements",
        0,
    );
    // Non-minimal length prefix.
    rejects::<ConsentScope>(
        &[0x40, 0x00, 0, 0],
        ErrorKind::NonMinimalLength { value: 0 },
        "ConsentScope.requesterUri",
        0,
    );
    // Reserved 8-byte prefix.
    rejects::<ConsentScope>(
        &[0xc0, 0, 0, 0, 0, 0, 0, 0],
        ErrorKind::ReservedLengthPrefix,
        "ConsentScope.requesterUri",
        0,
    );
    // optional<> presence byte 2.
    rejects::<ConsentScope>(
        &[0, 0, 2],
        ErrorKind::BadPresence(2),
        "ConsentScope.roomId",
        2,
    );
    // Invalid UTF-8 in a URI.
    rejects::<ConsentScope>(
        &[1, 0xff, 0, 0],
        ErrorKind::InvalidUtf8,
        "ConsentScope.requesterUri",
        0,
    );
    // A vector whose declared length cuts its last element in half.
    rejects::<ParticipantListData>(
        &[3, 1, b'a', 0],
        ErrorKind::Truncated { needed: 3 },
        "ParticipantListData.participants[0].role_index",
        3,
    );
}

#[test]
fn wire_formats_and_content_types() {
    let a = support::captured();
    // /submitMessage with a commit instead of an application PrivateMessage.
    let mut b = vec![1];
    b.extend(&a.commit);
    b.extend([0]);
    rejects::<SubmitMessageRequest>(
        &b,
        ErrorKind::WrongWireFormat {
            expected: "a PrivateMessage",
            found: 1,
        },
        "SubmitMessageRequest.appMessage",
        1,
    );
    // /update with an application message.
    rejects::<HandshakeBundle>(
        &a.application,
        ErrorKind::WrongContentType {
            expected: "a proposal or commit",
            found: 1,
        },
        "HandshakeBundle.proposalOrCommit",
        0,
    );
    // /update with a Welcome.
    rejects::<HandshakeBundle>(
        &a.welcome_msg,
        ErrorKind::WrongWireFormat {
            expected: "a PublicMessage (proposal or commit)",
            found: 3,
        },
        "HandshakeBundle.proposalOrCommit",
        0,
    );
    // A proposal bundle whose moreProposals holds a commit.
    let mut b = a.proposal_remove.clone();
    mimi_proto::codec::write_opaque(&mut b, &a.commit);
    let at = a.proposal_remove.len() + 2;
    rejects::<HandshakeBundle>(
        &b,
        ErrorKind::WrongContentType {
            expected: "proposal",
            found: 3,
        },
        "HandshakeBundle.moreProposals[0]",
        at,
    );
    // A FanoutMessage carrying a KeyPackage.
    let kp_msg = {
        let mut m = vec![0, 1, 0, 5];
        m.extend(&a.key_package);
        m
    };
    let mut b = vec![0; 8];
    b.extend(&kp_msg);
    assert!(matches!(
        FanoutMessage::from_bytes(&b).unwrap_err().kind,
        ErrorKind::WrongWireFormat { found: 5, .. }
    ));
    // Unknown MLS wire format and protocol version.
    rejects::<MlsMessage>(
        &[0, 1, 0, 9],
        ErrorKind::UnknownValue {
            name: "WireFormat",
            value: 9,
        },
        "MLSMessage",
        2,
    );
    rejects::<MlsMessage>(
        &[0, 2, 0, 1],
        ErrorKind::UnknownValue {
            name: "ProtocolVersion",
            value: 2,
        },
        "MLSMessage",
        0,
    );
    // A corrupted PublicMessage is refused by openmls with its reason.
    let mut bad = a.commit.clone();
    bad.truncate(40);
    assert!(matches!(
        MlsMessage::from_bytes(&bad).unwrap_err().kind,
        ErrorKind::Mls(_)
    ));
}

#[test]
fn semantic_rules() {
    // clients must be empty for userUnknown.
    let mut b = vec![1, 4, 0];
    b.extend([2, 1, 0]); // one keyMaterialExhausted client with an empty URI
    let e = KeyMaterialResponse::from_bytes(&b).unwrap_err();
    assert!(
        matches!(e.kind, ErrorKind::Invalid(ref m) if m.contains("userUnknown")),
        "{e}"
    );
    // AppDataDictionary entries out of order.
    let bad = [0x08, 0x00, 0x23, 0x01, 0x01, 0x00, 0x22, 0x01, 0x02];
    assert!(matches!(
        AppDataDictionary::from_bytes(&bad).unwrap_err().kind,
        ErrorKind::Invalid(_)
    ));
    // An empty /notify body is not a batch.
    assert!(FanoutBatch::from_bytes(&[]).is_err());
}

#[test]
fn fresh_openmls_output_decodes() {
    // Not just the captured files: whatever the current openmls emits.
    let a = support::generate();
    for (name, bytes) in support::files(&a) {
        let ok = match name {
            "key_package.bin" => mimi_proto::mls::KeyPackage::from_bytes(bytes).is_ok(),
            "welcome.bin" => mimi_proto::mls::Welcome::from_bytes(bytes).is_ok(),
            "group_info.bin" => mimi_proto::mls::GroupInfo::from_bytes(bytes).is_ok(),
            "ratchet_tree.bin" => mimi_proto::mls::RatchetTree::from_bytes(bytes).is_ok(),
            _ => MlsMessage::from_bytes(bytes)
                .map(|m| m.to_bytes() == *bytes)
                .unwrap_or(false),
        };
        assert!(ok, "{name}");
    }
}
