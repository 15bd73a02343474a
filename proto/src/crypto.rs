//! RFC 9420 labelled signatures and encryption (§5.1.2, §5.1.3) for MIMI structures, through
//! openmls's crypto provider traits.

use openmls::prelude::Ciphersuite;
use openmls_traits::crypto::OpenMlsCrypto;
use openmls_traits::signatures::Signer;

use crate::codec::{Bytes, write_opaque};
use crate::mls::HpkeCiphertext;

/// A labelled signature or encryption failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CryptoError {
    /// The cipher suite is not one openmls implements.
    #[error("unsupported cipher suite {0:#06x}")]
    UnsupportedCipherSuite(u16),
    /// The signature does not verify.
    #[error("signature does not verify")]
    BadSignature,
    /// The crypto provider failed.
    #[error("crypto provider error: {0}")]
    Provider(String),
}

/// The openmls cipher suite for a code point.
///
/// # Errors
/// [`CryptoError::UnsupportedCipherSuite`].
pub fn ciphersuite(cs: u16) -> Result<Ciphersuite, CryptoError> {
    Ciphersuite::try_from(cs).map_err(|_| CryptoError::UnsupportedCipherSuite(cs))
}

/// `SignContent { opaque label<V> = "MLS 1.0 " + label; opaque content<V> }`.
pub fn sign_content(label: &str, content: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(content.len() + label.len() + 16);
    write_opaque(&mut out, format!("MLS 1.0 {label}").as_bytes());
    write_opaque(&mut out, content);
    out
}

/// `SignWithLabel(key, label, content)`.
///
/// # Errors
/// [`CryptoError::Provider`] if the signer fails.
pub fn sign_with_label(
    signer: &impl Signer,
    label: &str,
    content: &[u8],
) -> Result<Vec<u8>, CryptoError> {
    signer
        .sign(&sign_content(label, content))
        .map_err(|e| CryptoError::Provider(format!("{e:?}")))
}

/// `VerifyWithLabel(key, label, content, signature)` with the signature scheme of `cs`.
///
/// # Errors
/// [`CryptoError::BadSignature`] or an unsupported suite.
pub fn verify_with_label(
    crypto: &impl OpenMlsCrypto,
    cs: u16,
    public_key: &[u8],
    label: &str,
    content: &[u8],
    signature: &[u8],
) -> Result<(), CryptoError> {
    let suite = ciphersuite(cs)?;
    crypto
        .verify_signature(
            suite.signature_algorithm(),
            &sign_content(label, content),
            public_key,
            signature,
        )
        .map_err(|_| CryptoError::BadSignature)
}

fn encrypt_context(label: &str, context: &[u8]) -> Vec<u8> {
    sign_content(label, context)
}

/// `EncryptWithLabel(public_key, label, context, plaintext)` = HPKE SealBase with
/// `EncryptContext` as info and empty AAD.
///
/// # Errors
/// Unsupported suite or HPKE failure.
pub fn encrypt_with_label(
    crypto: &impl OpenMlsCrypto,
    cs: u16,
    public_key: &[u8],
    label: &str,
    context: &[u8],
    plaintext: &[u8],
) -> Result<HpkeCiphertext, CryptoError> {
    let suite = ciphersuite(cs)?;
    let ct = crypto
        .hpke_seal(
            suite.hpke_config(),
            public_key,
            &encrypt_context(label, context),
            &[],
            plaintext,
        )
        .map_err(|e| CryptoError::Provider(format!("{e:?}")))?;
    Ok(HpkeCiphertext {
        kem_output: Bytes(ct.kem_output.as_slice().to_vec()),
        ciphertext: Bytes(ct.ciphertext.as_slice().to_vec()),
    })
}

/// `DecryptWithLabel(private_key, label, context, kem_output, ciphertext)`.
///
/// # Errors
/// Unsupported suite or a ciphertext that does not open.
pub fn decrypt_with_label(
    crypto: &impl OpenMlsCrypto,
    cs: u16,
    private_key: &[u8],
    label: &str,
    context: &[u8],
    ct: &HpkeCiphertext,
) -> Result<Vec<u8>, CryptoError> {
    let suite = ciphersuite(cs)?;
    let input = openmls_traits::types::HpkeCiphertext {
        kem_output: ct.kem_output.0.clone().into(),
        ciphertext: ct.ciphertext.0.clone().into(),
    };
    crypto
        .hpke_open(
            suite.hpke_config(),
            &input,
            private_key,
            &encrypt_context(label, context),
            &[],
        )
        .map_err(|e| CryptoError::Provider(format!("{e:?}")))
}
