//! Labelled signatures and encryption with real keys: KeyMaterialRequest and GroupInfoRequest
//! signatures, the encrypted GroupInfo response, and franks.

// Test helpers panic on purpose: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use mimi_proto::codec::{Bytes, Uri, Wire};
use mimi_proto::crypto::{
    CryptoError, decrypt_with_label, encrypt_with_label, sign_with_label, verify_with_label,
};
use mimi_proto::franking::{
    ServerFrankingContext, franking_tag, hub_recognises, make_frank, verify_frank,
};
use mimi_proto::messages::*;
use mimi_proto::mls::{Credential, RequiredCapabilities};
use openmls::prelude::Ciphersuite;
use openmls_basic_credential::SignatureKeyPair;
use openmls_rust_crypto::RustCrypto;
use openmls_traits::crypto::OpenMlsCrypto;

const CS: u16 = 1;

fn keys() -> SignatureKeyPair {
    SignatureKeyPair::new(
        Ciphersuite::MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519.signature_algorithm(),
    )
    .unwrap()
}

#[test]
fn key_material_request_signature() {
    let signer = keys();
    let mut req = KeyMaterialRequest {
        protocol: Protocol::Mls10,
        requesting_user: Uri::from("mimi://a.example/u/alice"),
        target_user: Uri::from("mimi://b.example/u/bob"),
        room_id: Uri::from("mimi://a.example/r/x"),
        acceptable_ciphersuites: vec![CS],
        required_capabilities: RequiredCapabilities {
            extension_types: vec![],
            proposal_types: vec![],
            credential_types: vec![],
        },
        requester_signature_key: Bytes(signer.public().to_vec()),
        requester_credential: Credential::basic(b"mimi://a.example/u/alice"),
        key_material_request_signature: Bytes::default(),
    };
    req.key_material_request_signature =
        Bytes(sign_with_label(&signer, KeyMaterialRequest::LABEL, &req.tbs()).unwrap());
    let crypto = RustCrypto::default();
    let back = KeyMaterialRequest::from_bytes(&req.to_bytes()).unwrap();
    verify_with_label(
        &crypto,
        back.signing_suite().unwrap(),
        &back.requester_signature_key,
        KeyMaterialRequest::LABEL,
        &back.tbs(),
        &back.key_material_request_signature,
    )
    .unwrap();
    // Changing any signed field breaks it.
    let mut forged = back.clone();
    forged.target_user = Uri::from("mimi://b.example/u/eve");
    assert_eq!(
        verify_with_label(
            &crypto,
            CS,
            &forged.requester_signature_key,
            KeyMaterialRequest::LABEL,
            &forged.tbs(),
            &forged.key_material_request_signature
        ),
        Err(CryptoError::BadSignature)
    );
    // The wrong label breaks it too.
    assert!(
        verify_with_label(
            &crypto,
            CS,
            &back.requester_signature_key,
            GroupInfoRequest::LABEL,
            &back.tbs(),
            &back.key_material_request_signature
        )
        .is_err()
    );
}

#[test]
fn group_info_response_encryption() {
    let crypto = RustCrypto::default();
    let suite = Ciphersuite::MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519;
    let kp = crypto
        .derive_hpke_keypair(suite.hpke_config(), &[7; 32])
        .unwrap();
    let room = b"mimi://a.example/r/x";
    let ct = encrypt_with_label(
        &crypto,
        CS,
        &kp.public,
        GroupInfoResponse::ENCRYPT_LABEL,
        room,
        b"group info and tree",
    )
    .unwrap();
    assert_eq!(
        decrypt_with_label(
            &crypto,
            CS,
            &kp.private,
            GroupInfoResponse::ENCRYPT_LABEL,
            room,
            &ct
        )
        .unwrap(),
        b"group info and tree"
    );
    // The room ID is the context: another room does not open it.
    assert!(
        decrypt_with_label(
            &crypto,
            CS,
            &kp.private,
            GroupInfoResponse::ENCRYPT_LABEL,
            b"mimi://a.example/r/y",
            &ct
        )
        .is_err()
    );
    assert_eq!(
        encrypt_with_label(&crypto, 0x7777, &kp.public, "x", b"", b"").unwrap_err(),
        CryptoError::UnsupportedCipherSuite(0x7777)
    );
}

#[test]
fn franks() {
    let crypto = RustCrypto::default();
    let hub = keys();
    let tag = franking_tag(&[1; 16], b"application data");
    let ctx = ServerFrankingContext {
        sender_uri: Uri::from("mimi://b.example/u/bob"),
        room_uri: Uri::from("mimi://a.example/r/x"),
        accepted_timestamp: 42,
    };
    let frank = make_frank(b"hub secret", &hub, CS, &tag, ctx.clone()).unwrap();
    verify_frank(&crypto, hub.public(), &frank, &ctx).unwrap();
    assert!(hub_recognises(b"hub secret", &tag, &ctx, &frank));
    assert!(!hub_recognises(b"other key", &tag, &ctx, &frank));
    // A follower that moves the timestamp is caught.
    let moved = ServerFrankingContext {
        accepted_timestamp: 43,
        ..ctx
    };
    assert_eq!(
        verify_frank(&crypto, hub.public(), &frank, &moved),
        Err(CryptoError::BadSignature)
    );
}
