//! HMAC signature check of a webhook body, as WAHA signs it.
//!
//! WAHA sends `X-Webhook-Hmac: <hex>` and `X-Webhook-Hmac-Algorithm: sha512|sha256` (sha512 when absent). The
//! MAC is computed over the raw body bytes and compared in constant time, as hex text in either case, before
//! anything is parsed. Each key's HMAC state is made once ([`MacKeys`]), so a body costs only its own blocks.
//! Every failure is the same [`SignatureError`] to the caller's client: no oracle about which part was wrong.

use std::fmt;

use hmac::{Hmac, KeyInit, Mac};
use sha2::{Sha256, Sha512};
use subtle::ConstantTimeEq;

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

/// The longest signature in hex: SHA-512's 64 bytes.
const MAX_HEX: usize = 128;

/// HMAC keys made ready once: each key's inner and outer hash states, for either algorithm (two blocks of a
/// key's hashing that would otherwise be done again for every body). Several keys allow rotation.
#[derive(Clone)]
pub struct MacKeys(Vec<(Hmac<Sha256>, Hmac<Sha512>)>);

impl MacKeys {
    /// Every value of `secrets`.
    pub fn new(secrets: &[Secret]) -> Self {
        let ready = |key: &str| {
            let bytes = key.as_bytes();
            (
                Hmac::new_from_slice(bytes).expect("HMAC takes keys of any length"),
                Hmac::new_from_slice(bytes).expect("HMAC takes keys of any length"),
            )
        };
        Self(secrets.iter().flat_map(Secret::values).map(ready).collect())
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Checks `signature_hex` against the HMAC of `body` under any of the keys.
    pub fn verify(
        &self,
        algorithm: Algorithm,
        signature_hex: Option<&str>,
        body: &[u8],
    ) -> Result<(), SignatureError> {
        let given = signature_hex.map(str::trim).filter(|s| !s.is_empty());
        let given = given.ok_or(SignatureError::Missing)?;
        if given.len() % 2 != 0 || !given.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(SignatureError::NotHex);
        }
        // In lower case on the stack: a longer text than any MAC's cannot match.
        let mut buffer = [0u8; MAX_HEX];
        let lower = buffer
            .get_mut(..given.len())
            .ok_or(SignatureError::Mismatch)?;
        for (to, from) in lower.iter_mut().zip(given.bytes()) {
            *to = from.to_ascii_lowercase();
        }
        let lower = &*lower;
        let mut matched = false;
        // Every key is tried, so the time taken does not say which key matched.
        for (sha256, sha512) in &self.0 {
            matched |= match algorithm {
                Algorithm::Sha256 => matches(sha256.clone(), body, lower),
                Algorithm::Sha512 => matches(sha512.clone(), body, lower),
            };
        }
        if matched {
            Ok(())
        } else {
            Err(SignatureError::Mismatch)
        }
    }
}

/// Never the keys, at any level: how many there are.
impl fmt::Debug for MacKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("MacKeys").field(&self.0.len()).finish()
    }
}

/// Whether the MAC of `body` is `given_hex` (lower case), compared in constant time.
fn matches<M: Mac>(mut mac: M, body: &[u8], given_hex: &[u8]) -> bool {
    mac.update(body);
    let tag = mac.finalize().into_bytes();
    let mut buffer = [0u8; MAX_HEX];
    let hex = &mut buffer[..2 * tag.len()];
    hex::encode_to_slice(tag, hex).expect("the buffer is twice the tag");
    hex.len() == given_hex.len() && bool::from(hex.ct_eq(given_hex))
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

    fn keys(k: &[&str]) -> MacKeys {
        MacKeys::new(&k.iter().map(|k| Secret::new(*k)).collect::<Vec<_>>())
    }

    #[test]
    fn the_documented_waha_vector_verifies() {
        assert_eq!(
            sign("my-secret-key", Algorithm::Sha512, WAHA_BODY),
            WAHA_SIG
        );
        assert_eq!(
            keys(&["my-secret-key"]).verify(Algorithm::Sha512, Some(WAHA_SIG), WAHA_BODY),
            Ok(())
        );
    }

    #[test]
    fn wrong_key_or_changed_body_is_a_mismatch() {
        let k = keys(&["other-key"]);
        assert_eq!(
            k.verify(Algorithm::Sha512, Some(WAHA_SIG), WAHA_BODY),
            Err(SignatureError::Mismatch)
        );
        let mut body = WAHA_BODY.to_vec();
        body[5] ^= 1;
        let k = keys(&["my-secret-key"]);
        assert_eq!(
            k.verify(Algorithm::Sha512, Some(WAHA_SIG), &body),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn truncated_long_or_non_hex_signatures_fail() {
        let k = keys(&["my-secret-key"]);
        let v = |s: &str| k.verify(Algorithm::Sha512, Some(s), WAHA_BODY);
        assert_eq!(v(&WAHA_SIG[..126]), Err(SignatureError::Mismatch));
        assert_eq!(v(&WAHA_SIG[..127]), Err(SignatureError::NotHex));
        assert_eq!(v(&format!("{WAHA_SIG}00")), Err(SignatureError::Mismatch));
        assert_eq!(v(&WAHA_SIG.replace('a', "g")), Err(SignatureError::NotHex));
        assert_eq!(v(""), Err(SignatureError::Missing));
        assert_eq!(
            k.verify(Algorithm::Sha512, None, WAHA_BODY),
            Err(SignatureError::Missing)
        );
    }

    #[test]
    fn a_sha512_signature_under_a_sha256_header_fails() {
        let k = keys(&["my-secret-key"]);
        assert_eq!(
            k.verify(Algorithm::Sha256, Some(WAHA_SIG), WAHA_BODY),
            Err(SignatureError::Mismatch)
        );
        let sig256 = sign("my-secret-key", Algorithm::Sha256, WAHA_BODY);
        assert_eq!(
            k.verify(Algorithm::Sha256, Some(&sig256), WAHA_BODY),
            Ok(())
        );
    }

    #[test]
    fn upper_case_hex_passes_and_the_keys_never_show_in_debug() {
        let k = keys(&["my-secret-key"]);
        assert_eq!(
            k.verify(Algorithm::Sha512, Some(&WAHA_SIG.to_uppercase()), WAHA_BODY),
            Ok(())
        );
        assert_eq!(format!("{k:?}"), "MacKeys(1)");
    }

    #[test]
    fn any_of_several_keys_passes_for_rotation() {
        let k = keys(&["old-key", "my-secret-key"]);
        assert_eq!(
            k.verify(Algorithm::Sha512, Some(WAHA_SIG), WAHA_BODY),
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
