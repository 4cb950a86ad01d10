//! HMAC signature check of a webhook body, as WAHA signs it.
//!
//! WAHA sends `X-Webhook-Hmac: <hex>` and `X-Webhook-Hmac-Algorithm: sha512|sha256` (sha512 when absent). The
//! MAC is computed over the raw body bytes and compared in constant time by the `hmac` crate, before anything
//! is parsed. Every failure is the same [`SignatureError`] to the caller's client: no oracle about which part
//! was wrong.

use hmac::{Hmac, KeyInit, Mac};
use sha2::{Sha256, Sha512};

use crate::secret::Secret;

/// The MAC algorithms WAHA offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    Sha256,
    Sha512,
}

impl Algorithm {
    /// Reads the `X-Webhook-Hmac-Algorithm` header; absent means sha512.
    pub fn from_header(value: Option<&str>) -> Result<Self, SignatureError> {
        match value.map(str::trim) {
            None => Ok(Algorithm::Sha512),
            Some(v) if v.eq_ignore_ascii_case("sha512") => Ok(Algorithm::Sha512),
            Some(v) if v.eq_ignore_ascii_case("sha256") => Ok(Algorithm::Sha256),
            Some(_) => Err(SignatureError::UnknownAlgorithm),
        }
    }
}

/// Why a signature was refused. Logged at debug; the client only ever sees "unauthorized".
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("signature header is missing")]
    Missing,
    #[error("signature is not hex")]
    NotHex,
    #[error("unknown signature algorithm")]
    UnknownAlgorithm,
    #[error("signature does not match")]
    Mismatch,
}

/// Checks `signature_hex` against the HMAC of `body` under any of `keys` (several keys allow rotation).
pub fn verify(
    keys: &[Secret],
    algorithm: Algorithm,
    signature_hex: Option<&str>,
    body: &[u8],
) -> Result<(), SignatureError> {
    let hex_text = signature_hex.map(str::trim).filter(|s| !s.is_empty());
    let hex_text = hex_text.ok_or(SignatureError::Missing)?;
    if hex_text.len() % 2 != 0 {
        return Err(SignatureError::NotHex);
    }
    // Decoded on the stack (no MAC here is longer than SHA-512's 64 bytes): a longer text cannot match.
    let mut buffer = [0u8; 64];
    let signature = buffer
        .get_mut(..hex_text.len() / 2)
        .ok_or(SignatureError::Mismatch)?;
    hex::decode_to_slice(hex_text, signature).map_err(|_| SignatureError::NotHex)?;
    let signature = &*signature;
    let mut matched = false;
    // Every key is tried, so the time taken does not say which key matched.
    for key in keys.iter().flat_map(Secret::values) {
        matched |= match algorithm {
            Algorithm::Sha256 => check::<Hmac<Sha256>>(key, body, signature),
            Algorithm::Sha512 => check::<Hmac<Sha512>>(key, body, signature),
        };
    }
    if matched {
        Ok(())
    } else {
        Err(SignatureError::Mismatch)
    }
}

fn check<M: Mac + KeyInit>(key: &str, body: &[u8], signature: &[u8]) -> bool {
    let mut mac =
        <M as KeyInit>::new_from_slice(key.as_bytes()).expect("HMAC takes keys of any length");
    mac.update(body);
    mac.verify_slice(signature).is_ok()
}

/// Lower-case hex HMAC of `body`: what a sender puts in `X-Webhook-Hmac`. Used by tests and `bench/`.
pub fn sign(key: &str, algorithm: Algorithm, body: &[u8]) -> String {
    fn mac<M: Mac + KeyInit>(key: &str, body: &[u8]) -> String {
        let mut mac =
            <M as KeyInit>::new_from_slice(key.as_bytes()).expect("HMAC takes keys of any length");
        mac.update(body);
        hex::encode(mac.finalize().into_bytes())
    }
    match algorithm {
        Algorithm::Sha256 => mac::<Hmac<Sha256>>(key, body),
        Algorithm::Sha512 => mac::<Hmac<Sha512>>(key, body),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const WAHA_BODY: &[u8] = br#"{"event":"message","session":"default","engine":"WEBJS"}"#;
    const WAHA_SIG: &str = "208f8a55dde9e05519e898b10b89bf0d0b3b0fdf11fdbf09b6b90476301b98d8097c462b2b17a6ce93b6b47a136cf2e78a33a63f6752c2c1631777076153fa89";

    fn keys(k: &[&str]) -> Vec<Secret> {
        k.iter().map(|k| Secret::new(*k)).collect()
    }

    #[test]
    fn the_documented_waha_vector_verifies() {
        assert_eq!(
            sign("my-secret-key", Algorithm::Sha512, WAHA_BODY),
            WAHA_SIG
        );
        assert_eq!(
            verify(
                &keys(&["my-secret-key"]),
                Algorithm::Sha512,
                Some(WAHA_SIG),
                WAHA_BODY
            ),
            Ok(())
        );
    }

    #[test]
    fn wrong_key_or_changed_body_is_a_mismatch() {
        let k = keys(&["other-key"]);
        assert_eq!(
            verify(&k, Algorithm::Sha512, Some(WAHA_SIG), WAHA_BODY),
            Err(SignatureError::Mismatch)
        );
        let mut body = WAHA_BODY.to_vec();
        body[5] ^= 1;
        let k = keys(&["my-secret-key"]);
        assert_eq!(
            verify(&k, Algorithm::Sha512, Some(WAHA_SIG), &body),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn truncated_long_or_non_hex_signatures_fail() {
        let k = keys(&["my-secret-key"]);
        let v = |s: &str| verify(&k, Algorithm::Sha512, Some(s), WAHA_BODY);
        assert_eq!(v(&WAHA_SIG[..126]), Err(SignatureError::Mismatch));
        assert_eq!(v(&WAHA_SIG[..127]), Err(SignatureError::NotHex));
        assert_eq!(v(&format!("{WAHA_SIG}00")), Err(SignatureError::Mismatch));
        assert_eq!(v(&WAHA_SIG.replace('a', "g")), Err(SignatureError::NotHex));
        assert_eq!(v(""), Err(SignatureError::Missing));
        assert_eq!(
            verify(&k, Algorithm::Sha512, None, WAHA_BODY),
            Err(SignatureError::Missing)
        );
    }

    #[test]
    fn a_sha512_signature_under_a_sha256_header_fails() {
        let k = keys(&["my-secret-key"]);
        assert_eq!(
            verify(&k, Algorithm::Sha256, Some(WAHA_SIG), WAHA_BODY),
            Err(SignatureError::Mismatch)
        );
        let sig256 = sign("my-secret-key", Algorithm::Sha256, WAHA_BODY);
        assert_eq!(
            verify(&k, Algorithm::Sha256, Some(&sig256), WAHA_BODY),
            Ok(())
        );
    }

    #[test]
    fn any_of_several_keys_passes_for_rotation() {
        let k = keys(&["old-key", "my-secret-key"]);
        assert_eq!(
            verify(&k, Algorithm::Sha512, Some(WAHA_SIG), WAHA_BODY),
            Ok(())
        );
    }

    #[test]
    fn algorithm_header_is_read_case_insensitively_and_unknown_ones_fail() {
        assert_eq!(Algorithm::from_header(None), Ok(Algorithm::Sha512));
        assert_eq!(
            Algorithm::from_header(Some("SHA256")),
            Ok(Algorithm::Sha256)
        );
        assert_eq!(
            Algorithm::from_header(Some("md5")),
            Err(SignatureError::UnknownAlgorithm)
        );
    }
}
