//! JSON as gateways send it, read strictly where it matters: one depth limit for the whole body (fields
//! autoseen skips included), and objects that are objects (serde's derive would also take an array of the
//! fields in order, which no gateway sends).

use std::fmt;
use std::marker::PhantomData;

use crate::domain::IdError;
use serde::de::value::MapAccessDeserializer;
use serde::de::{MapAccess, Visitor};
use serde::{Deserialize, Deserializer};

/// Deepest nesting of arrays and objects a body may have, in the fields autoseen reads and in those it skips.
pub const MAX_DEPTH: usize = 128;

/// Whether the brackets of `json` (outside strings) nest at most `max` deep. serde_json limits the depth of
/// what it builds, but skips unknown fields without counting; this holds the whole body to one limit.
pub(crate) fn nests_at_most(json: &[u8], max: usize) -> bool {
    // Nesting deeper than `max` takes more than `max` opening brackets. A gateway's body has a few dozen, and
    // counting them is one pass the compiler vectorizes, where following strings goes byte by byte (that
    // walk was about a fifth of parsing a realistic body: docs/performance.md).
    let opening: usize = json
        .iter()
        .map(|&b| usize::from(b == b'[' || b == b'{'))
        .sum();
    if opening <= max {
        return true;
    }
    let (mut depth, mut in_string, mut escaped) = (0usize, false, false);
    for &b in json {
        if in_string {
            match b {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                if depth > max {
                    return false;
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    true
}

/// Reads a `T` from a JSON object only. Serde's derive would also take an array of the fields in order,
/// which no WAHA event sends and the documented schema does not allow.
pub(crate) fn object<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<T, D::Error> {
    struct Only<T>(PhantomData<T>);
    impl<'de, T: Deserialize<'de>> Visitor<'de> for Only<T> {
        type Value = T;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("an object")
        }
        fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<T, A::Error> {
            T::deserialize(MapAccessDeserializer::new(map))
        }
    }
    d.deserialize_map(Only(PhantomData))
}

/// [`object`], or `null`.
pub(crate) fn optional_object<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
    d: D,
) -> Result<Option<T>, D::Error> {
    struct Maybe<T>(PhantomData<T>);
    impl<'de, T: Deserialize<'de>> Visitor<'de> for Maybe<T> {
        type Value = Option<T>;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("an object or null")
        }
        fn visit_none<E>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
            object(d).map(Some)
        }
    }
    d.deserialize_option(Maybe(PhantomData))
}

/// A whole JSON text that is one object.
pub(crate) fn from_object<'a, T: Deserialize<'a>>(json: &'a [u8]) -> Result<T, serde_json::Error> {
    let mut d = serde_json::Deserializer::from_slice(json);
    let value = object(&mut d)?;
    d.end()?;
    Ok(value)
}

/// Why a one-event body (Green's, Evolution's) is not an event autoseen can act on; each becomes a 400
/// naming the field.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    #[error("body is not valid JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error("body is nested deeper than {MAX_DEPTH} levels")]
    TooDeep,
    #[error("missing field `{0}`")]
    Missing(&'static str),
    #[error("field `{field}` {problem}")]
    Invalid {
        field: &'static str,
        problem: IdError,
    },
}

/// The error for an id in `field` that does not parse.
pub(crate) fn invalid(field: &'static str) -> impl Fn(IdError) -> BodyError {
    move |problem| BodyError::Invalid { field, problem }
}

/// Baileys' and WhatsApp's names of media messages (Evolution's `messageType`, Green's `typeMessage`).
pub(crate) const MEDIA_TYPES: [&str; 5] = [
    "imageMessage",
    "videoMessage",
    "audioMessage",
    "documentMessage",
    "stickerMessage",
];

#[cfg(test)]
mod tests {
    use super::*;

    fn nested(depth: usize) -> String {
        format!("{}{}", "[".repeat(depth), "]".repeat(depth))
    }

    #[test]
    fn many_brackets_side_by_side_are_shallow() {
        // More opening brackets than the limit, none deeper than two: the count alone cannot decide.
        let wide = format!("[{}]", vec!["{}"; 3 * MAX_DEPTH].join(","));
        assert!(nests_at_most(wide.as_bytes(), MAX_DEPTH));
    }

    #[test]
    fn the_limit_holds_beside_many_shallow_brackets() {
        let wide = vec!["[]"; 2 * MAX_DEPTH].join(",");
        let at_limit = format!("[{wide},{}]", nested(MAX_DEPTH - 1));
        let past_it = format!("[{wide},{}]", nested(MAX_DEPTH));
        assert!(nests_at_most(at_limit.as_bytes(), MAX_DEPTH));
        assert!(!nests_at_most(past_it.as_bytes(), MAX_DEPTH));
    }

    #[test]
    fn brackets_in_strings_never_count_however_many() {
        let text = format!(r#"{{"text":"{}"}}"#, "[{".repeat(MAX_DEPTH));
        assert!(nests_at_most(text.as_bytes(), MAX_DEPTH));
        assert!(nests_at_most(text.as_bytes(), 1));
        assert!(!nests_at_most(text.as_bytes(), 0));
    }
}
