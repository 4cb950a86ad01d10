//! Settings problems and where they are: [`Problems`] collects what the checks find, each at the line that
//! sets its key, and [`key_by_key`] reads a settings file one key at a time so that every unknown key and bad
//! value is reported, none hiding another.

use super::{MIN_SECRET_CHARS, Problem, Settings};
use crate::secret::Secret;

/// The problems a check finds in one file (`place`, whose `text` is given): each at the line of its key when
/// the file sets it, else at the file (a default, or a key set by an environment variable).
pub struct Problems {
    place: String,
    text: String,
    found: Vec<Problem>,
}

impl Problems {
    pub fn new(place: &str, text: &str) -> Self {
        Self {
            place: place.to_string(),
            text: text.to_string(),
            found: Vec::new(),
        }
    }

    /// `key` is wrong: `message` says how, and what to do.
    pub fn bad(&mut self, key: &str, message: impl Into<String>) {
        let place = match key_line(&self.text, key) {
            Some(line) => format!("{}:{line}", self.place),
            None => self.place.clone(),
        };
        self.found.push(Problem {
            place,
            message: format!("`{key}` {}", message.into()),
        });
    }

    /// An inbound secret that guards a route: at least [`MIN_SECRET_CHARS`] characters, when set.
    pub fn token(&mut self, key: &str, token: Option<&Secret>) {
        let shortest = token.and_then(|t| t.values().min_by_key(|v| v.chars().count()));
        if let Some(token) = shortest
            && token.chars().count() < MIN_SECRET_CHARS
        {
            let how = if token.is_empty() {
                "empty"
            } else {
                "too short"
            };
            self.bad(
                key,
                format!(
                    "is {how}; it must be at least {MIN_SECRET_CHARS} characters (for example `openssl rand -hex 24`), \
                     or removed to turn its route off"
                ),
            );
        }
    }

    pub(super) fn into_vec(self) -> Vec<Problem> {
        self.found
    }
}

/// Reads each key of each section of a settings file on its own (beside defaults for the rest), so that an
/// unknown key or a bad value is reported at its line and hides no other; empty when the text is not TOML.
pub(super) fn key_by_key(text: &str, place: &str) -> Vec<Problem> {
    use toml::{Table, Value};
    let Ok(top) = toml::from_str::<Table>(text) else {
        return Vec::new();
    };
    let alone = |section: &str, key: Option<(&str, &Value)>, value: &Value| {
        let value = match key {
            Some((key, v)) => Value::Table(Table::from_iter([(key.to_string(), v.clone())])),
            None => value.clone(),
        };
        Value::Table(Table::from_iter([(section.to_string(), value)])).try_into::<Settings>()
    };
    let mut out = Vec::new();
    for (section, value) in &top {
        let Err(whole) = alone(section, None, value) else {
            continue;
        };
        let keys: Vec<(&String, &Value)> = value
            .as_table()
            .map(|t| t.iter().collect())
            .unwrap_or_default();
        let mut found = false;
        for (key, v) in keys {
            if let Err(e) = alone(section, Some((key, v)), value) {
                let dotted = format!("{section}.{key}");
                let at = key_line(text, &dotted).map_or(String::new(), |l| format!(":{l}"));
                out.push(Problem {
                    place: format!("{place}{at}"),
                    message: format!("`{dotted}`: {}", e.message().trim()),
                });
                found = true;
            }
        }
        if !found {
            out.push(Problem {
                place: place.to_string(),
                message: format!("`{section}`: {}", whole.message().trim()),
            });
        }
    }
    out
}

/// The 1-based line where `text` sets the dotted `key` (`server.listen` under `[server]`,
/// `wasend.sessions.sales.api_key` under `[wasend.sessions.sales]`), if it does.
pub(super) fn key_line(text: &str, key: &str) -> Option<usize> {
    let (section, name) = key.rsplit_once('.')?;
    let mut current = String::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if let Some(header) = line.strip_prefix('[') {
            current = header.trim_end_matches(']').replace(['"', ' '], "");
            continue;
        }
        let written = line
            .split_once('=')
            .map(|(k, _)| k.trim().trim_matches('"'));
        if current == section && written == Some(name) {
            return Some(i + 1);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_is_found_under_its_own_section_only() {
        let text = "listen = 1\n[server]\nport = 2\nlisten = \"x\"\n[wasend.sessions.\"sales\"]\napi_key = \"k\"\n";
        assert_eq!(key_line(text, "server.listen"), Some(4));
        assert_eq!(key_line(text, "wasend.sessions.sales.api_key"), Some(6));
        assert_eq!(key_line(text, "admin.token"), None);
    }
}
