//! Secrets: API keys, HMAC keys and tokens, held so that they never print.
//!
//! A [`Secret`] prints as `***` under `Debug` and `Display`, at every log level; the value is reached only
//! through [`Secret::expose`], at the one place it is used (a header, a MAC key, a comparison).
//! [`Secret::matches`] compares in time that does not depend on where two values differ.

use std::fmt;

use serde::Deserialize;

/// A secret: an API key, an HMAC key or a token. Never printed. Written as a string, or during a rotation as
/// two, `["new", "old"]`: a secret autoseen checks (an inbound token or key) accepts either, one it sends (an
/// API key) is the first.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Vec<String>);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(vec![value.into()])
    }

    /// The secret itself (the first value); call only where it is used (a header, a MAC key), never to print it.
    pub fn expose(&self) -> &str {
        &self.0[0]
    }

    /// Every value: one, or two during a rotation.
    pub fn values(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(String::as_str)
    }

    /// Whether `given` equals a value of the secret, in time that depends on neither where they differ, nor
    /// their lengths, nor which value it equals.
    pub fn matches(&self, given: &str) -> bool {
        use sha2::{Digest, Sha256};
        use subtle::ConstantTimeEq;
        let given = Sha256::digest(given.as_bytes());
        self.values().fold(false, |found, value| {
            let equal: bool = Sha256::digest(value.as_bytes())
                .as_slice()
                .ct_eq(given.as_slice())
                .into();
            found | equal
        })
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Written {
            One(String),
            Rotating(Vec<String>),
        }
        match Written::deserialize(d)? {
            Written::One(value) => Ok(Self(vec![value])),
            Written::Rotating(values) if (1..=2).contains(&values.len()) => Ok(Self(values)),
            Written::Rotating(_) => Err(serde::de::Error::custom(
                "a secret is one string, or two during a rotation: [\"new\", \"old\"]",
            )),
        }
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
    fn a_rotating_secret_matches_both_values_and_sends_the_first() {
        let s: Secret =
            serde_json::from_str(r#"["new-long-secret-1", "old-long-secret-2"]"#).unwrap();
        assert!(s.matches("new-long-secret-1") && s.matches("old-long-secret-2"));
        assert!(!s.matches("other-long-secret"));
        assert_eq!(s.expose(), "new-long-secret-1");
        assert!(serde_json::from_str::<Secret>(r#"["a", "b", "c"]"#).is_err());
        assert!(serde_json::from_str::<Secret>("[]").is_err());
        assert_eq!(
            serde_json::from_str::<Secret>(r#""one""#).unwrap(),
            Secret::new("one")
        );
    }

    #[test]
    fn a_secret_matches_only_itself_and_never_prints() {
        let s = Secret::new("hunter2-long-secret");
        assert!(s.matches("hunter2-long-secret"));
        assert!(!s.matches("hunter2-long-secreT"));
        assert!(!s.matches(""));
        assert_eq!(format!("{s} {s:?}"), "*** ***");
    }
}
