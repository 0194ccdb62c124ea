//! QPay message crypto: HashID, IV, AES-256-CBC/PKCS#7 with upper-case
//! hex, and the Sign digest. Pure functions, shared by the client and the simulator.

use aes::Aes256;
use cbc::cipher::{block_padding::Pkcs7, BlockDecryptMut, BlockEncryptMut, KeyIvInit};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// Why a crypto input was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CryptoError {
    /// One of A1/A2/B1/B2 is not exactly 16 hex characters.
    #[error("key {name} must be 16 hex characters")]
    BadKey { name: &'static str },
    /// A HashID that is not 32 ASCII characters.
    #[error("HashID must be 32 ASCII characters")]
    BadHashId,
    /// `Message` is not hex.
    #[error("message is not hex")]
    NotHex,
    /// `Message` is empty or not a whole number of AES blocks.
    #[error("ciphertext length {0} is not a positive multiple of 16 bytes")]
    BadLength(usize),
    /// Wrong key/IV or tampered ciphertext: the PKCS#7 padding does not check out.
    #[error("bad padding (wrong key, wrong nonce or tampered message)")]
    BadPadding,
}

/// The AES-256 key: `UPPER_HEX(A1^A2) ‖ UPPER_HEX(B1^B2)`, used as its 32 ASCII bytes.
#[derive(Clone, PartialEq, Eq)]
pub struct HashId(String);

impl std::fmt::Debug for HashId {
    // A HashID is a secret: keep it out of logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("HashId(***)")
    }
}

fn key8(name: &'static str, hex_str: &str) -> Result<[u8; 8], CryptoError> {
    let mut out = [0u8; 8];
    if hex_str.len() != 16 {
        return Err(CryptoError::BadKey { name });
    }
    hex::decode_to_slice(hex_str, &mut out).map_err(|_| CryptoError::BadKey { name })?;
    Ok(out)
}

impl HashId {
    /// Derives the HashID from the four 16-hex-character keys the bank issues.
    pub fn from_keys(a1: &str, a2: &str, b1: &str, b2: &str) -> Result<Self, CryptoError> {
        let (a1, a2) = (key8("A1", a1)?, key8("A2", a2)?);
        let (b1, b2) = (key8("B1", b1)?, key8("B2", b2)?);
        let mut bytes = [0u8; 16];
        for i in 0..8 {
            bytes[i] = a1[i] ^ a2[i];
            bytes[8 + i] = b1[i] ^ b2[i];
        }
        // Every byte zero-padded to two digits (the Python blog's hex(int) bug drops them).
        Ok(HashId(hex::encode_upper(bytes)))
    }

    /// Wraps an already derived 32-character HashID.
    pub fn from_hash_id(s: &str) -> Result<Self, CryptoError> {
        if s.len() == 32 && s.is_ascii() {
            Ok(HashId(s.to_owned()))
        } else {
            Err(CryptoError::BadHashId)
        }
    }

    /// HashID of the public demo shop `NA0249_001` (its published keys); test/sandbox use only.
    pub fn demo_na0249() -> Self {
        HashId("87282A2FA0E209EBE1B3713AB56A06C2".to_owned())
    }

    /// The 32-character string (also the AES key bytes).
    pub fn as_str(&self) -> &str {
        &self.0
    }

    fn key(&self) -> [u8; 32] {
        let mut k = [0u8; 32];
        k.copy_from_slice(self.0.as_bytes());
        k
    }
}

/// `IV = last 16 chars of UPPER_HEX(SHA-256(nonce))`, as ASCII bytes.
pub fn iv_from_nonce(nonce: &str) -> [u8; 16] {
    let digest = hex::encode_upper(Sha256::digest(nonce.as_bytes()));
    let mut iv = [0u8; 16];
    iv.copy_from_slice(&digest.as_bytes()[48..]);
    iv
}

/// Encrypts a plaintext message and returns the upper-case hex ciphertext.
pub fn encrypt_message(hash_id: &HashId, nonce: &str, plaintext: &[u8]) -> String {
    let key = hash_id.key();
    let iv = iv_from_nonce(nonce);
    let ct = cbc::Encryptor::<Aes256>::new(&key.into(), &iv.into())
        .encrypt_padded_vec_mut::<Pkcs7>(plaintext);
    hex::encode_upper(ct)
}

/// Decrypts an upper- or lower-case hex `Message`; never panics on any input.
pub fn decrypt_message(
    hash_id: &HashId,
    nonce: &str,
    hex_ct: &str,
) -> Result<Vec<u8>, CryptoError> {
    let ct = hex::decode(hex_ct.trim()).map_err(|_| CryptoError::NotHex)?;
    if ct.is_empty() || ct.len() % 16 != 0 {
        return Err(CryptoError::BadLength(ct.len()));
    }
    let key = hash_id.key();
    let iv = iv_from_nonce(nonce);
    cbc::Decryptor::<Aes256>::new(&key.into(), &iv.into())
        .decrypt_padded_vec_mut::<Pkcs7>(&ct)
        .map_err(|_| CryptoError::BadPadding)
}

/// Renders one top-level value for the sign string, or `None` if the Sign rules drop it
/// (objects, arrays, null, empty or whitespace-only strings).
fn sign_value(v: &Value) -> Option<String> {
    match v {
        Value::String(s) if s.trim().is_empty() => None,
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        // No known field is boolean; render the JSON literal (choice, see crate docs).
        Value::Bool(b) => Some(b.to_string()),
        Value::Null | Value::Object(_) | Value::Array(_) => None,
    }
}

/// The `key=value&…` part of the sign string: scalars only, keys sorted case-insensitively
/// (`OrdinalIgnoreCase`, ties broken by byte order so the result is deterministic).
pub fn sign_fields(message: &Map<String, Value>) -> String {
    let mut fields: Vec<(&str, String)> = message
        .iter()
        .filter_map(|(k, v)| sign_value(v).map(|s| (k.as_str(), s)))
        .collect();
    fields.sort_by(|(a, _), (b, _)| {
        a.to_uppercase()
            .cmp(&b.to_uppercase())
            .then_with(|| a.cmp(b))
    });
    let parts: Vec<String> = fields
        .into_iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    parts.join("&")
}

/// `Sign = UPPER_HEX(SHA-256(fields ‖ nonce ‖ HashID))`.
pub fn sign(message: &Map<String, Value>, nonce: &str, hash_id: &HashId) -> String {
    let s = format!("{}{}{}", sign_fields(message), nonce, hash_id.as_str());
    hex::encode_upper(Sha256::digest(s.as_bytes()))
}

/// Constant-time, case-insensitive comparison of a received Sign with the recomputed one.
pub fn verify_sign(
    message: &Map<String, Value>,
    nonce: &str,
    hash_id: &HashId,
    received: &str,
) -> bool {
    let expected = sign(message, nonce, hash_id);
    let received = received.trim().to_ascii_uppercase();
    expected.as_bytes().ct_eq(received.as_bytes()).into()
}
