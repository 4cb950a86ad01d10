//! Secrets: API keys, HMAC keys and tokens, held so that they never print.
//!
//! A [`Secret`] prints as `***` under `Debug` and `Display`, at every log level; the value is reached only
//! through [`Secret::expose`], at the one place it is used (a header, a MAC key, a comparison).
//! [`Secret::matches`] compares in time that does not depend on where two values differ.

use std::fmt;

use serde::Deserialize;

/// A secret string: an API key, an HMAC key or a token. Never printed.
#[derive(Clone, Deserialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The secret itself; call only where it is used (a header, a MAC key), never to print it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Whether `given` equals the secret, in time that depends on neither where they differ nor their lengths.
    pub fn matches(&self, given: &str) -> bool {
        use sha2::{Digest, Sha256};
        use subtle::ConstantTimeEq;
        let (a, b) = (
            Sha256::digest(given.as_bytes()),
            Sha256::digest(self.0.as_bytes()),
        );
        a.as_slice().ct_eq(b.as_slice()).into()
    }
}

/// Written out (a settings dump) as `***`, like every other way a secret could print.
impl serde::Serialize for Secret {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str("***")
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_secret_matches_only_itself_and_never_prints() {
        let s = Secret::new("hunter2-long-secret");
        assert!(s.matches("hunter2-long-secret"));
        assert!(!s.matches("hunter2-long-secreT"));
        assert!(!s.matches(""));
        assert_eq!(format!("{s} {s:?}"), "*** ***");
    }
}
