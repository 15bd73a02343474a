//! Attachment re-encryption. MIMI ExternalParts need an AEAD (AES-128-GCM is mandatory);
//! Matrix encrypts files with AES-256-CTR (integrity only from a SHA-256 of the ciphertext)
//! and Wire with AES-256-CBC (IV prepended, SHA-256 of the blob). A bridge downloads, verifies
//! and decrypts the provider's blob, then re-encrypts with AES-128-GCM for MIMI (and the other
//! way round), through [`Media`].

use aes::cipher::{
    BlockDecryptMut, BlockEncryptMut, KeyIvInit, StreamCipher, block_padding::Pkcs7,
};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD_NO_PAD, URL_SAFE_NO_PAD};
use mimi_content::builder::{SealedAttachment, seal_attachment};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

type Aes256Ctr = ctr::Ctr128BE<aes::Aes256>;
type Aes256CbcDec = cbc::Decryptor<aes::Aes256>;
type Aes256CbcEnc = cbc::Encryptor<aes::Aes256>;

/// Why an attachment could not be converted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MediaError {
    /// The key material is malformed.
    #[error("malformed key material: {0}")]
    Key(String),
    /// The downloaded bytes do not match the announced hash.
    #[error("the downloaded file does not match its SHA-256")]
    Hash,
    /// Decryption failed.
    #[error("decryption failed")]
    Decrypt,
    /// Download or upload failed.
    #[error("transfer failed: {0}")]
    Transfer(String),
}

/// Access to the bytes behind attachment URLs, for bridges (downloads and uploads).
pub trait Media {
    /// Downloads `url` (an `mxc://` URI, an asset URL...).
    ///
    /// # Errors
    /// Transfer failures.
    fn fetch(&mut self, url: &str) -> Result<Vec<u8>, MediaError>;
    /// Uploads bytes for the MIMI side; returns their URL.
    ///
    /// # Errors
    /// Transfer failures.
    fn store_mimi(&mut self, ciphertext: &[u8]) -> Result<String, MediaError>;
    /// Uploads bytes for the provider side; returns their URL (e.g. `mxc://`).
    ///
    /// # Errors
    /// Transfer failures.
    fn store_native(
        &mut self,
        bytes: &[u8],
        content_type: &str,
        filename: &str,
    ) -> Result<String, MediaError>;
}

fn b64(s: &str) -> Result<Vec<u8>, MediaError> {
    let s = s.trim_end_matches('=');
    URL_SAFE_NO_PAD
        .decode(s)
        .or_else(|_| STANDARD_NO_PAD.decode(s))
        .map_err(|e| MediaError::Key(e.to_string()))
}

/// Decrypts a Matrix `EncryptedFile` (AES-256-CTR, JWK key, 16-byte IV, SHA-256 of the
/// ciphertext), verifying the hash first.
///
/// # Errors
/// [`MediaError`].
pub fn matrix_decrypt(file: &Value, ciphertext: &[u8]) -> Result<Vec<u8>, MediaError> {
    let key = b64(file["key"]["k"]
        .as_str()
        .ok_or_else(|| MediaError::Key("no key.k".into()))?)?;
    let iv = b64(file["iv"]
        .as_str()
        .ok_or_else(|| MediaError::Key("no iv".into()))?)?;
    let want = b64(file["hashes"]["sha256"]
        .as_str()
        .ok_or_else(|| MediaError::Key("no hashes.sha256".into()))?)?;
    if Sha256::digest(ciphertext).as_slice() != want.as_slice() {
        return Err(MediaError::Hash);
    }
    let mut c =
        Aes256Ctr::new_from_slices(&key, &iv).map_err(|e| MediaError::Key(e.to_string()))?;
    let mut out = ciphertext.to_vec();
    c.apply_keystream(&mut out);
    Ok(out)
}

/// Encrypts for Matrix: returns the ciphertext and the `EncryptedFile` (its `url` left for the
/// caller to fill in after upload).
pub fn matrix_encrypt(plaintext: &[u8]) -> (Vec<u8>, Value) {
    let key: [u8; 32] = rand::random();
    let mut iv = [0u8; 16];
    iv[..8].copy_from_slice(&rand::random::<[u8; 8]>());
    let mut out = plaintext.to_vec();
    // A 32-byte key and a 16-byte IV always fit AES-256-CTR.
    if let Ok(mut c) = Aes256Ctr::new_from_slices(&key, &iv) {
        c.apply_keystream(&mut out);
    }
    let file = json!({
        "url": "",
        "key": {"kty": "oct", "alg": "A256CTR", "ext": true, "key_ops": ["encrypt", "decrypt"], "k": URL_SAFE_NO_PAD.encode(key)},
        "iv": STANDARD_NO_PAD.encode(iv),
        "hashes": {"sha256": STANDARD_NO_PAD.encode(Sha256::digest(&out))},
        "v": "v2",
    });
    (out, file)
}

/// Decrypts a Wire asset blob (AES-256-CBC with the IV prepended, PKCS#7), verifying its
/// SHA-256 first.
///
/// # Errors
/// [`MediaError`].
pub fn wire_decrypt(otr_key: &[u8], sha256: &[u8], blob: &[u8]) -> Result<Vec<u8>, MediaError> {
    if Sha256::digest(blob).as_slice() != sha256 {
        return Err(MediaError::Hash);
    }
    if blob.len() < 32 {
        return Err(MediaError::Decrypt);
    }
    let (iv, body) = blob.split_at(16);
    Aes256CbcDec::new_from_slices(otr_key, iv)
        .map_err(|e| MediaError::Key(e.to_string()))?
        .decrypt_padded_vec_mut::<Pkcs7>(body)
        .map_err(|_| MediaError::Decrypt)
}

/// Encrypts for Wire: returns the blob, the key and its SHA-256.
pub fn wire_encrypt(plaintext: &[u8]) -> (Vec<u8>, [u8; 32], [u8; 32]) {
    let key: [u8; 32] = rand::random();
    let iv: [u8; 16] = rand::random();
    let mut blob = iv.to_vec();
    if let Ok(enc) = Aes256CbcEnc::new_from_slices(&key, &iv) {
        blob.extend(enc.encrypt_padded_vec_mut::<Pkcs7>(plaintext));
    }
    let sha: [u8; 32] = Sha256::digest(&blob).into();
    (blob, key, sha)
}

/// Seals plaintext for MIMI with a fresh AES-128-GCM key and nonce.
pub fn seal_for_mimi(plaintext: &[u8], content_type: &str, filename: &str) -> SealedAttachment {
    seal_attachment(
        plaintext,
        content_type,
        filename,
        rand::random(),
        rand::random(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_tamper_detection() {
        let (ct, file) = matrix_encrypt(b"hello matrix");
        assert_eq!(matrix_decrypt(&file, &ct).unwrap(), b"hello matrix");
        let mut bad = ct;
        bad[0] ^= 1;
        assert_eq!(matrix_decrypt(&file, &bad), Err(MediaError::Hash));
        let (blob, key, sha) = wire_encrypt(b"hello wire");
        assert_eq!(wire_decrypt(&key, &sha, &blob).unwrap(), b"hello wire");
        let sealed = seal_for_mimi(b"x", "text/plain", "x.txt");
        assert_eq!(
            mimi_content::builder::open_attachment(&sealed.part, &sealed.ciphertext).unwrap(),
            b"x"
        );
    }
}
