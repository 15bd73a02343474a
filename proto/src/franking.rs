//! Message franking (draft-ietf-mimi-protocol-06 §5.4.1): the client's franking tag, the hub's
//! server frank and its integrity signature, and the checks a receiver or the hub makes.

use hmac::{Hmac, Mac};
use openmls_traits::crypto::OpenMlsCrypto;
use openmls_traits::signatures::Signer;
use sha2::Sha256;

use crate::codec::{Fixed32, Uri, Wire};
use crate::crypto::{CryptoError, sign_with_label, verify_with_label};
use crate::messages::Frank;
use crate::wire_struct;

/// Signature label of the frank.
pub const INTEGRITY_LABEL: &str = "FrankingIntegrityTBS";

wire_struct! {
    /// `ServerFrankingContext`.
    pub struct ServerFrankingContext as "ServerFrankingContext" {
        /// The sender's URI as asserted to the hub.
        pub sender_uri: Uri as "sender_uri",
        /// The room.
        pub room_uri: Uri as "room_uri",
        /// The hub's acceptance time.
        pub accepted_timestamp: u64 as "accepted_timestamp",
    }
}

wire_struct! {
    /// `FrankingIntegrityTBS`.
    pub struct FrankingIntegrityTbs as "FrankingIntegrityTBS" {
        /// The server frank.
        pub server_frank: Fixed32 as "server_frank",
        /// The room's cipher suite.
        pub franking_signature_ciphersuite: u16 as "franking_signature_ciphersuite",
        /// The context it commits to.
        pub context: ServerFrankingContext as "context",
    }
}

fn hmac(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    // HMAC accepts keys of any length.
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key)
        .unwrap_or_else(|_| unreachable!("HMAC takes any key length"));
    for p in parts {
        mac.update(p);
    }
    mac.finalize().into_bytes().into()
}

/// `franking_tag = HMAC_SHA256(salt, application_data)` (computed by the sending client).
pub fn franking_tag(salt: &[u8], application_data: &[u8]) -> [u8; 32] {
    hmac(salt, &[application_data])
}

/// `server_frank = HMAC_SHA256(hub_key, franking_tag || context)`.
pub fn server_frank(
    hub_key: &[u8],
    franking_tag: &[u8; 32],
    context: &ServerFrankingContext,
) -> [u8; 32] {
    hmac(hub_key, &[franking_tag, &context.to_bytes()])
}

/// Builds the hub's frank for an accepted message.
///
/// # Errors
/// [`CryptoError`] if signing fails.
pub fn make_frank(
    hub_key: &[u8],
    signer: &impl Signer,
    cipher_suite: u16,
    franking_tag: &[u8; 32],
    context: ServerFrankingContext,
) -> Result<Frank, CryptoError> {
    let frank = server_frank(hub_key, franking_tag, &context);
    let tbs = FrankingIntegrityTbs {
        server_frank: Fixed32(frank),
        franking_signature_ciphersuite: cipher_suite,
        context,
    };
    let signature = sign_with_label(signer, INTEGRITY_LABEL, &tbs.to_bytes())?;
    Ok(Frank {
        server_frank: Fixed32(frank),
        franking_signature_ciphersuite: cipher_suite,
        franking_integrity_signature: signature.into(),
    })
}

/// Checks a frank's integrity signature against the franking agent's key.
///
/// # Errors
/// [`CryptoError::BadSignature`] when the frank or its context was altered.
pub fn verify_frank(
    crypto: &impl OpenMlsCrypto,
    franking_key: &[u8],
    frank: &Frank,
    context: &ServerFrankingContext,
) -> Result<(), CryptoError> {
    let tbs = FrankingIntegrityTbs {
        server_frank: frank.server_frank,
        franking_signature_ciphersuite: frank.franking_signature_ciphersuite,
        context: context.clone(),
    };
    verify_with_label(
        crypto,
        frank.franking_signature_ciphersuite,
        franking_key,
        INTEGRITY_LABEL,
        &tbs.to_bytes(),
        &frank.franking_integrity_signature,
    )
}

/// The hub's own check of a reported frank: recompute `server_frank` with its key.
pub fn hub_recognises(
    hub_key: &[u8],
    franking_tag: &[u8; 32],
    context: &ServerFrankingContext,
    frank: &Frank,
) -> bool {
    server_frank(hub_key, franking_tag, context) == frank.server_frank.0
}

crate::impl_tls_codec!(ServerFrankingContext, FrankingIntegrityTbs);
