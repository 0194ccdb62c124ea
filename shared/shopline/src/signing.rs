//! `pay-api-signature`: canonical string of a JSON body + SHA1withRSA + Base64.
//!
//! The canonical string is built from the *generic* JSON value parsed from the raw body bytes (never
//! from a typed DTO): SHOPLINE may add fields we do not know, and they are signed too.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use openssl::hash::MessageDigest;
use openssl::pkey::{Id, PKey, Private, Public};
use openssl::sign::{Signer, Verifier};
use serde_json::Value;
use std::cmp::Ordering;
use std::fmt;

// SHA1withRSA is RSASSA-PKCS1-v1_5 over SHA-1 (OpenSSL's default padding for RSA keys). OpenSSL
// (already linked for TLS) signs a 2048-bit key about six times faster than the pure-Rust `rsa`
// crate did (0.45 ms against 2.7 ms here), and a signed reply is on every SHOPLINE request.

/// Errors of key loading, canonicalisation and signature checks.
#[derive(Debug, thiserror::Error)]
pub enum SigningError {
    /// The key text is not Base64 (or PEM around Base64).
    #[error("key is not valid base64: {0}")]
    KeyEncoding(String),
    /// The DER is not a PKCS#8 RSA private key / X.509 SubjectPublicKeyInfo RSA public key.
    #[error("key is not a valid {kind}: {detail}")]
    KeyFormat {
        /// "PKCS#8 private key" or "X.509 public key".
        kind: &'static str,
        /// Parser message.
        detail: String,
    },
    /// The body is not JSON.
    #[error("body is not valid JSON: {0}")]
    BadJson(String),
    /// The signature header is not Base64.
    #[error("signature is not valid base64")]
    SignatureEncoding,
    /// The signature does not verify with the given public key.
    #[error("signature does not match")]
    Mismatch,
    /// RSA signing failed (should not happen with a valid key).
    #[error("RSA signing failed: {0}")]
    Sign(String),
}

/// Decodes Base64 DER, tolerating PEM armour and whitespace/newlines around it.
fn der_from_text(text: &str) -> Result<Vec<u8>, SigningError> {
    let b64: String = text
        .lines()
        .filter(|l| !l.trim_start().starts_with("-----"))
        .flat_map(|l| l.chars())
        .filter(|c| !c.is_whitespace())
        .collect();
    B64.decode(b64.as_bytes())
        .map_err(|e| SigningError::KeyEncoding(e.to_string()))
}

/// Our (or the simulator's) RSA private key, PKCS#8.
#[derive(Clone)]
pub struct PrivateKey {
    key: PKey<Private>,
    /// Derived once at load, so that [`PrivateKey::public_key`] cannot fail.
    public: PublicKey,
}

impl fmt::Debug for PrivateKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print key material.
        f.write_str("PrivateKey(..)")
    }
}

impl PrivateKey {
    /// From Base64 of the PKCS#8 DER (the form SHOPLINE's console exchanges); PEM also accepted.
    pub fn from_pkcs8_base64(text: &str) -> Result<Self, SigningError> {
        Self::from_pkcs8_der(&der_from_text(text)?)
    }

    /// From PKCS#8 DER bytes.
    pub fn from_pkcs8_der(der: &[u8]) -> Result<Self, SigningError> {
        const KIND: &str = "PKCS#8 private key";
        let key = PKey::private_key_from_pkcs8(der).map_err(|e| SigningError::KeyFormat {
            kind: KIND,
            detail: e.to_string(),
        })?;
        require_rsa(key.id(), KIND)?;
        let public = key
            .public_key_to_der()
            .map_err(|e| SigningError::KeyFormat {
                kind: KIND,
                detail: e.to_string(),
            })
            .and_then(|der| PublicKey::from_spki_der(&der))?;
        Ok(Self { key, public })
    }

    /// The matching public key.
    pub fn public_key(&self) -> PublicKey {
        self.public.clone()
    }

    /// SHA1withRSA over the UTF-8 bytes of `canonical`, Base64 (standard, padded).
    pub fn sign_canonical(&self, canonical: &str) -> Result<String, SigningError> {
        let sign = || -> Result<Vec<u8>, openssl::error::ErrorStack> {
            let mut signer = Signer::new(MessageDigest::sha1(), &self.key)?;
            signer.sign_oneshot_to_vec(canonical.as_bytes())
        };
        let sig = sign().map_err(|e| SigningError::Sign(e.to_string()))?;
        Ok(B64.encode(sig))
    }

    /// Signs a JSON body given as raw bytes.
    pub fn sign_body(&self, body: &[u8]) -> Result<String, SigningError> {
        self.sign_canonical(&canonical_string_from_bytes(body)?)
    }
}

/// The peer's RSA public key, X.509 SubjectPublicKeyInfo.
#[derive(Clone)]
pub struct PublicKey(PKey<Public>);

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PublicKey(RSA-")?;
        write!(f, "{})", self.0.bits())
    }
}

impl PartialEq for PublicKey {
    fn eq(&self, other: &Self) -> bool {
        self.0.public_eq(&other.0)
    }
}

impl PublicKey {
    /// From Base64 of the SubjectPublicKeyInfo DER; PEM also accepted.
    pub fn from_spki_base64(text: &str) -> Result<Self, SigningError> {
        Self::from_spki_der(&der_from_text(text)?)
    }

    /// From SubjectPublicKeyInfo DER bytes.
    pub fn from_spki_der(der: &[u8]) -> Result<Self, SigningError> {
        const KIND: &str = "X.509 public key";
        let key = PKey::public_key_from_der(der).map_err(|e| SigningError::KeyFormat {
            kind: KIND,
            detail: e.to_string(),
        })?;
        require_rsa(key.id(), KIND)?;
        Ok(Self(key))
    }

    /// Verifies a Base64 signature over `canonical` (OpenSSL compares the padded digest in
    /// constant time).
    pub fn verify_canonical(
        &self,
        canonical: &str,
        signature_b64: &str,
    ) -> Result<(), SigningError> {
        let sig = B64
            .decode(signature_b64.trim().as_bytes())
            .map_err(|_| SigningError::SignatureEncoding)?;
        let verify = || -> Result<bool, openssl::error::ErrorStack> {
            let mut verifier = Verifier::new(MessageDigest::sha1(), &self.0)?;
            verifier.verify_oneshot(&sig, canonical.as_bytes())
        };
        match verify() {
            Ok(true) => Ok(()),
            // A wrong length or garbage is a mismatch too, never a different error.
            Ok(false) | Err(_) => Err(SigningError::Mismatch),
        }
    }

    /// Verifies a signature over a JSON body given as the raw bytes received.
    pub fn verify_body(&self, body: &[u8], signature_b64: &str) -> Result<(), SigningError> {
        self.verify_canonical(&canonical_string_from_bytes(body)?, signature_b64)
    }
}

/// SHA1withRSA keys only: an EC or Ed25519 key in the configuration is refused at load rather
/// than silently producing another kind of signature.
fn require_rsa(id: Id, kind: &'static str) -> Result<(), SigningError> {
    if id == Id::RSA {
        Ok(())
    } else {
        Err(SigningError::KeyFormat {
            kind,
            detail: format!("not an RSA key ({id:?})"),
        })
    }
}

/// Parses raw body bytes and builds the canonical string.
///
/// Numbers are emitted exactly as written in the body (`1.50` stays `1.50`): the parse keeps
/// number lexemes instead of converting them to `f64`, so a float can never be re-rendered
/// differently from what the signer saw. Nesting deeper than 128 levels is rejected.
pub fn canonical_string_from_bytes(body: &[u8]) -> Result<String, SigningError> {
    let value = raw::parse(body).map_err(SigningError::BadJson)?;
    let mut pairs = Vec::new();
    match &value {
        raw::Json::Object(_) => raw::emit_object(&value, &mut pairs),
        other => raw::emit_value("", other, &mut pairs),
    }
    Ok(pairs.join("&"))
}

/// Canonical string of a JSON value (the newer documentation's rule):
///
/// * object keys sorted ascending by UTF-16 code units (Java `String.compareTo`), per object;
/// * `null` skipped; scalars emitted as `key=value` (empty string kept as `key=`);
/// * array of scalars → `key=a,b,c`; array of objects → each element recursed in order, the
///   array's key not emitted; nested object → recursed, its key not emitted;
/// * pairs joined with `&`.
///
/// Choices where the reference is silent (\[inferred\]): empty arrays are skipped; `null` elements
/// of scalar arrays are skipped; in an array mixing scalars and containers every element is
/// handled on its own (scalar → `key=value`, object → recursed, nested array → as if under the
/// same key); a top-level non-object yields the same treatment as a value under an empty key,
/// so a top-level scalar gives `=value`.
pub fn canonical_string(value: &Value) -> String {
    let mut pairs: Vec<String> = Vec::new();
    match value {
        Value::Object(_) => emit_object(value, &mut pairs),
        other => emit_value("", other, &mut pairs),
    }
    pairs.join("&")
}

fn utf16_cmp(a: &str, b: &str) -> Ordering {
    a.encode_utf16().cmp(b.encode_utf16())
}

fn emit_object(value: &Value, out: &mut Vec<String>) {
    if let Value::Object(map) = value {
        let mut keys: Vec<&String> = map.keys().collect();
        keys.sort_by(|a, b| utf16_cmp(a, b));
        for key in keys {
            if let Some(v) = map.get(key) {
                emit_value(key, v, out);
            }
        }
    }
}

fn scalar_text(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Null | Value::Array(_) | Value::Object(_) => None,
    }
}

fn emit_value(key: &str, value: &Value, out: &mut Vec<String>) {
    match value {
        Value::Null => {}
        Value::Object(_) => emit_object(value, out),
        Value::Array(items) => {
            let all_scalar = items
                .iter()
                .all(|v| !matches!(v, Value::Array(_) | Value::Object(_)));
            if all_scalar {
                let parts: Vec<String> = items.iter().filter_map(scalar_text).collect();
                if !parts.is_empty() {
                    out.push(format!("{key}={}", parts.join(",")));
                }
            } else {
                for item in items {
                    emit_value(key, item, out);
                }
            }
        }
        scalar => {
            if let Some(text) = scalar_text(scalar) {
                out.push(format!("{key}={text}"));
            }
        }
    }
}

/// Minimal JSON parser that keeps number lexemes (serde_json without `arbitrary_precision` would
/// turn them into `f64`). Strings are decoded by serde_json itself.
mod raw {
    use super::utf16_cmp;

    const MAX_DEPTH: usize = 128;

    pub(super) enum Json {
        Null,
        Bool(bool),
        Number(String),
        String(String),
        Array(Vec<Json>),
        Object(Vec<(String, Json)>),
    }

    pub(super) fn parse(bytes: &[u8]) -> Result<Json, String> {
        let text = std::str::from_utf8(bytes).map_err(|e| e.to_string())?;
        let mut p = Parser {
            s: text.as_bytes(),
            text,
            i: 0,
        };
        p.ws();
        let v = p.value(0)?;
        p.ws();
        if p.i != p.s.len() {
            return Err(format!("trailing characters at byte {}", p.i));
        }
        Ok(v)
    }

    struct Parser<'a> {
        s: &'a [u8],
        text: &'a str,
        i: usize,
    }

    impl Parser<'_> {
        fn ws(&mut self) {
            while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.s.get(self.i) {
                self.i += 1;
            }
        }

        fn err<T>(&self, what: &str) -> Result<T, String> {
            Err(format!("{what} at byte {}", self.i))
        }

        fn lit(&mut self, word: &str, v: Json) -> Result<Json, String> {
            if self.s[self.i..].starts_with(word.as_bytes()) {
                self.i += word.len();
                Ok(v)
            } else {
                self.err("invalid literal")
            }
        }

        fn value(&mut self, depth: usize) -> Result<Json, String> {
            if depth > MAX_DEPTH {
                return self.err("nesting too deep");
            }
            match self.s.get(self.i) {
                None => self.err("unexpected end"),
                Some(b'n') => self.lit("null", Json::Null),
                Some(b't') => self.lit("true", Json::Bool(true)),
                Some(b'f') => self.lit("false", Json::Bool(false)),
                Some(b'"') => self.string().map(Json::String),
                Some(b'[') => {
                    self.i += 1;
                    let mut items = Vec::new();
                    self.ws();
                    if self.s.get(self.i) == Some(&b']') {
                        self.i += 1;
                        return Ok(Json::Array(items));
                    }
                    loop {
                        self.ws();
                        items.push(self.value(depth + 1)?);
                        self.ws();
                        match self.s.get(self.i) {
                            Some(b',') => self.i += 1,
                            Some(b']') => {
                                self.i += 1;
                                return Ok(Json::Array(items));
                            }
                            _ => return self.err("expected , or ]"),
                        }
                    }
                }
                Some(b'{') => {
                    self.i += 1;
                    let mut members: Vec<(String, Json)> = Vec::new();
                    self.ws();
                    if self.s.get(self.i) == Some(&b'}') {
                        self.i += 1;
                        return Ok(Json::Object(members));
                    }
                    loop {
                        self.ws();
                        if self.s.get(self.i) != Some(&b'"') {
                            return self.err("expected key");
                        }
                        let k = self.string()?;
                        self.ws();
                        if self.s.get(self.i) != Some(&b':') {
                            return self.err("expected :");
                        }
                        self.i += 1;
                        self.ws();
                        let v = self.value(depth + 1)?;
                        // Duplicate keys: last one wins, like serde_json and common Java parsers.
                        members.retain(|(mk, _)| mk != &k);
                        members.push((k, v));
                        self.ws();
                        match self.s.get(self.i) {
                            Some(b',') => self.i += 1,
                            Some(b'}') => {
                                self.i += 1;
                                return Ok(Json::Object(members));
                            }
                            _ => return self.err("expected , or }"),
                        }
                    }
                }
                Some(b'-' | b'0'..=b'9') => self.number(),
                Some(_) => self.err("unexpected character"),
            }
        }

        fn digits(&mut self) -> usize {
            let start = self.i;
            while let Some(b'0'..=b'9') = self.s.get(self.i) {
                self.i += 1;
            }
            self.i - start
        }

        fn number(&mut self) -> Result<Json, String> {
            let start = self.i;
            if self.s.get(self.i) == Some(&b'-') {
                self.i += 1;
            }
            let int_start = self.i;
            let n = self.digits();
            if n == 0 || (n > 1 && self.s.get(int_start) == Some(&b'0')) {
                return self.err("invalid number");
            }
            if self.s.get(self.i) == Some(&b'.') {
                self.i += 1;
                if self.digits() == 0 {
                    return self.err("invalid fraction");
                }
            }
            if let Some(b'e' | b'E') = self.s.get(self.i) {
                self.i += 1;
                if let Some(b'+' | b'-') = self.s.get(self.i) {
                    self.i += 1;
                }
                if self.digits() == 0 {
                    return self.err("invalid exponent");
                }
            }
            Ok(Json::Number(self.text[start..self.i].to_owned()))
        }

        fn string(&mut self) -> Result<String, String> {
            let start = self.i;
            self.i += 1;
            loop {
                match self.s.get(self.i) {
                    None => return self.err("unterminated string"),
                    Some(b'\\') => self.i += 2,
                    Some(b'"') => {
                        self.i += 1;
                        break;
                    }
                    Some(_) => self.i += 1,
                }
            }
            let token = self.text.get(start..self.i).unwrap_or("");
            serde_json::from_str::<String>(token)
                .map_err(|e| format!("{e} in string at byte {start}"))
        }
    }

    pub(super) fn emit_object(value: &Json, out: &mut Vec<String>) {
        if let Json::Object(members) = value {
            let mut sorted: Vec<&(String, Json)> = members.iter().collect();
            sorted.sort_by(|a, b| utf16_cmp(&a.0, &b.0));
            for (k, v) in sorted {
                emit_value(k, v, out);
            }
        }
    }

    fn scalar_text(value: &Json) -> Option<String> {
        match value {
            Json::String(s) => Some(s.clone()),
            Json::Number(n) => Some(n.clone()),
            Json::Bool(b) => Some(b.to_string()),
            Json::Null | Json::Array(_) | Json::Object(_) => None,
        }
    }

    pub(super) fn emit_value(key: &str, value: &Json, out: &mut Vec<String>) {
        match value {
            Json::Null => {}
            Json::Object(_) => emit_object(value, out),
            Json::Array(items) => {
                let all_scalar = items
                    .iter()
                    .all(|v| !matches!(v, Json::Array(_) | Json::Object(_)));
                if all_scalar {
                    let parts: Vec<String> = items.iter().filter_map(scalar_text).collect();
                    if !parts.is_empty() {
                        out.push(format!("{key}={}", parts.join(",")));
                    }
                } else {
                    for item in items {
                        emit_value(key, item, out);
                    }
                }
            }
            scalar => {
                if let Some(text) = scalar_text(scalar) {
                    out.push(format!("{key}={text}"));
                }
            }
        }
    }
}

/// SHOPLINE's published **test-only** key pair (Base64 DER). Used by the simulator's
/// defaults and by tests; never use it for anything real.
pub mod test_keys {
    /// PKCS#8 private key, Base64 DER.
    pub const PRIVATE_KEY_PKCS8_B64: &str = concat!(
        "MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQCh5CIPbx6DDoVn",
        "7UFDb5U18wdPHDKtYwmeVMeqeW7dxKxR6YGlDkC3gOwwfJ0isPQKRlPjnB/kpdSC",
        "SVd2inss5ZtWm0WvAu5QTgOdrA8rTUOQgdFvW98+/fX28j5+KuwQ0Ly/5yrn9OaB",
        "ebt4L3GW0toY7Oawq3/UoAP5D/A8kdUnEiC1sSJVo5ioBR8zLYD4OIp9ssh2AZJs",
        "GPF+x1C3CvGEVSZhOv9k9VayFjl/Uz399rZZ4frw6q+xRwmY/bpbOI7qhXy4rZWX",
        "RgovWpaDgq7i64GT+iMyH8/FGCEDE5nd/DU2iheMBRvNYc7GiC9UBP7FyDr+jExb",
        "EviBJMtxAgMBAAECggEAB0YJM7lR3SCLZOJ3grCiOxTKuMazDjA7b+YuPF4NWaBq",
        "/5kmroRH6xa7RehrZPIfXNDRFxJeKnc654mlCNnq89bzFj6OsHDIxUnkBrMC0Xa8",
        "uOLkRoURsDJX2TsEDMYf6hd+y3524ooRyzJtdlZnW5fonaMTME/cQ/DWjNum9wmi",
        "BscDWRYsoYotLfaT3y5KLwp0XdnjHcx2aMn5yUn3sQqqv3HhaRiFLymMhgrLsSPN",
        "+xb+RODp8e8IUU+jNZZDB8d5gH1UmZCiaTMZa1acpQUbaa5cvTYsf5TemSEBlQwi",
        "faicGUlJpe25+CMN924PLMxkxcQjf2ylf4jfZZEkcwKBgQDPCW3c/euttK/6avPh",
        "VwB93a90lR2M75FjDXyiqHBhP87oZxCiQH/19hpsmi1GX6PJy7pEluCeyYbe0nfn",
        "pOpiI8ITEnnIe4+2mpNsU5DYIIWLjiMarInPsDi0EQ+7DLo+bgHBU5JAwXgxGxEZ",
        "MK3zDVV6lvWJSSJQPmYFwsv8rwKBgQDILXYsq2xzp1vMerrsPiUn2ez9XUe6DX7R",
        "DzMD07WSvdfwwssocyhMXMBAKGawyvX/I2owIcGEP00D6zPEFI0CZs1bjFWChGN4",
        "UsToVF+h/R1bFEqlzMx3WUTb+Z7gSOGikuBvSaf9HRzQc7cTAXDPOFWRpR1w7nqN",
        "z4aoBbkB3wKBgDlHzpGZ3x7MIvQRqy/pNkWck/KZXvejQII7NQR7vbvqP4ClI0EA",
        "v2Z5lI3/ig8yXspyBzL622KTNzFm4a3BPuewJP3J2s/Q/83xrmAGLsjdFpWp2aSD",
        "oA1KICYRolyKBO1I2kt2p7wqyuorJuvlP/tC8SddpMk65rd0zB1D69QZAoGAEWdy",
        "eNvGqB+K6bJaAiQ9EsPtyPGNRO3bcs3Bf7mudb2vwq0NAM1SWaFOzcU1eHWNAcvQ",
        "dbLZomfmiEqwy4GF6QmLHUSMQrbD9zgrCpAbaHgbT0nqW5P8yvul8wI3AAUWKQ5g",
        "GQzsYCNh1/XXmv1rE3kwZ2NVtfXmDeJXMNCejz0CgYEAhtpVyxwEX3EfTqmG6CSh",
        "IFSf/4J0tWRjgQhlfz2PJA8qjbCo0WlZHGAp4OsEmBsYYx0Ph0t4Vun1r81WJALB",
        "cDW4yTcEeoglskBcxxcYVA8ctkp2ieHaw5aF/027MRQrSdc0kqQq9S4QZZuyriDS",
        "pOUbG/mwT3NKixqawTWg7e8=",
    );

    /// X.509 SubjectPublicKeyInfo public key, Base64 DER.
    pub const PUBLIC_KEY_SPKI_B64: &str = concat!(
        "MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEAoeQiD28egw6FZ+1BQ2+V",
        "NfMHTxwyrWMJnlTHqnlu3cSsUemBpQ5At4DsMHydIrD0CkZT45wf5KXUgklXdop7",
        "LOWbVptFrwLuUE4DnawPK01DkIHRb1vfPv319vI+firsENC8v+cq5/TmgXm7eC9x",
        "ltLaGOzmsKt/1KAD+Q/wPJHVJxIgtbEiVaOYqAUfMy2A+DiKfbLIdgGSbBjxfsdQ",
        "twrxhFUmYTr/ZPVWshY5f1M9/fa2WeH68OqvsUcJmP26WziO6oV8uK2Vl0YKL1qW",
        "g4Ku4uuBk/ojMh/PxRghAxOZ3fw1NooXjAUbzWHOxogvVAT+xcg6/oxMWxL4gSTL",
        "cQIDAQAB",
    );
}
