//! Reading rule files leniently, so that one `autoseen check` lists every problem: a file is read as TOML
//! tables first, then each key of `[defaults]` and of every `[[rules]]` entry is checked on its own, so an
//! unknown key or a bad value is reported at its own line and hides nothing else. Only a TOML syntax error
//! stops the reading of its file (nothing after it can be trusted).

use std::collections::HashMap;
use std::path::PathBuf;

use serde::Deserialize;
use serde::de::DeserializeOwned;
use toml::{Spanned, Table, Value};

use super::file::{RULES_FILE, RawOutcome, RawRule, RuleError};
use crate::toml_span::line_of;

/// Where each key of one table (`[defaults]` or a `[[rules]]` entry) is, to point a problem at its key.
#[derive(Debug, Clone, Default)]
pub(super) struct KeyLines {
    /// The line of the table's header.
    pub table: usize,
    keys: HashMap<String, usize>,
}

impl KeyLines {
    /// The keys written on the lines from the header at `start` to the next header.
    fn of(text: &str, start: usize) -> Self {
        let table = line_of(text, start);
        let mut keys = HashMap::new();
        let body = text[start.min(text.len())..].lines().enumerate();
        for (i, line) in body {
            let line = line.trim_start();
            if i > 0 && line.starts_with('[') {
                break;
            }
            if let Some((key, _)) = line.split_once('=') {
                let key = key.trim().trim_matches('"');
                if !key.is_empty() && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                    keys.entry(key.to_string()).or_insert(table + i);
                }
            }
        }
        Self { table, keys }
    }

    /// The line a problem points at: that of the key it begins with (`delay: …`, `` `chats` is … ``), else
    /// the table's.
    pub fn line_for(&self, message: &str) -> usize {
        let head = message.trim_start_matches('`');
        let end = head
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(head.len());
        self.keys.get(&head[..end]).copied().unwrap_or(self.table)
    }
}

/// A rule as read: its file, the line of its header, what it says, and where its keys are.
pub(super) struct ParsedRule {
    pub file: PathBuf,
    pub raw: RawRule,
    pub lines: KeyLines,
}

/// The rule files read, before anything is compiled: `[defaults]` (from the first file) with where its keys
/// are, each rule that reads, and every problem found on the way.
pub(super) struct Parsed {
    pub defaults: RawOutcome,
    pub defaults_lines: KeyLines,
    pub rules: Vec<ParsedRule>,
    pub errors: Vec<RuleError>,
}

#[derive(Deserialize)]
struct Tables {
    defaults: Option<Spanned<Table>>,
    #[serde(default)]
    rules: Vec<Spanned<Table>>,
}

pub(super) fn parse_sources(sources: &[(PathBuf, String)]) -> Parsed {
    let mut parsed = Parsed {
        defaults: RawOutcome::default(),
        defaults_lines: KeyLines::default(),
        rules: Vec::new(),
        errors: Vec::new(),
    };
    for (i, (file, text)) in sources.iter().enumerate() {
        let err = |line, rule, message| RuleError {
            file: file.clone(),
            line: Some(line),
            rule,
            message,
        };
        let tables = toml::from_str::<Table>(text).and_then(|top| {
            for key in top
                .keys()
                .filter(|k| !["defaults", "rules"].contains(&k.as_str()))
            {
                let line = KeyLines::of(text, 0).line_for(key);
                let hint = "a rule file holds [defaults] and [[rules]] entries only";
                parsed
                    .errors
                    .push(err(line, None, format!("unknown key `{key}`; {hint}")));
            }
            toml::from_str::<Tables>(text)
        });
        let tables = match tables {
            Ok(t) => t,
            Err(e) => {
                let line = e.span().map_or(1, |s| line_of(text, s.start));
                parsed
                    .errors
                    .push(err(line, None, e.message().trim().to_string()));
                continue;
            }
        };
        if let Some(d) = tables.defaults {
            let lines = KeyLines::of(text, d.span().start);
            if i > 0 {
                let message = format!("[defaults] belongs in {RULES_FILE}; remove it here");
                parsed.errors.push(err(lines.table, None, message));
            } else {
                let (table, problems) = (d.into_inner(), Vec::new());
                let (defaults, problems) = read::<RawOutcome>(table, &Table::new(), problems);
                let name = Some("defaults".to_string());
                for p in problems {
                    parsed.errors.push(err(lines.line_for(&p), name.clone(), p));
                }
                parsed.defaults = defaults.unwrap_or_default();
                parsed.defaults_lines = lines;
            }
        }
        for rule in tables.rules {
            let lines = KeyLines::of(text, rule.span().start);
            let table = rule.into_inner();
            let name = table
                .get("name")
                .and_then(Value::as_str)
                .map(str::to_string);
            let mut base = Table::new();
            base.insert(
                "name".into(),
                Value::String(name.clone().unwrap_or_default()),
            );
            match read::<RawRule>(table, &base, Vec::new()) {
                (Some(raw), _) => parsed.rules.push(ParsedRule {
                    file: file.clone(),
                    raw,
                    lines,
                }),
                (None, problems) => parsed.errors.extend(
                    problems
                        .into_iter()
                        .map(|p| err(lines.line_for(&p), name.clone(), p)),
                ),
            }
        }
    }
    parsed
}

/// Reads `table` as a `T`, each key on its own (beside `base`, which holds what `T` requires) so that every
/// bad key is reported, each message starting with its key.
fn read<T: DeserializeOwned>(
    table: Table,
    base: &Table,
    mut problems: Vec<String>,
) -> (Option<T>, Vec<String>) {
    for (key, value) in &table {
        let mut probe = base.clone();
        probe.insert(key.clone(), value.clone());
        if let Err(e) = Value::Table(probe).try_into::<T>() {
            problems.push(format!("{key}: {}", e.message().trim()));
        }
    }
    if !problems.is_empty() {
        return (None, problems);
    }
    match Value::Table(table).try_into::<T>() {
        Ok(t) => (Some(t), problems),
        Err(e) => {
            problems.push(e.message().trim().to_string());
            (None, problems)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Parsed {
        parse_sources(&[(PathBuf::from(RULES_FILE), text.to_string())])
    }

    fn problems(p: &Parsed) -> Vec<(Option<usize>, String)> {
        p.errors
            .iter()
            .map(|e| (e.line, e.message.clone()))
            .collect()
    }

    #[test]
    fn every_bad_key_is_reported_at_its_own_line() {
        let p = parse(
            "[defaults]\nacton = \"seen\"\n\n[[rules]]\nname = \"a\"\naction = \"read\"\nchats = [\"1\"]\n\n\
             [[rules]]\nname = \"b\"\nhas_media = \"yes\"\n",
        );

        let found = problems(&p);
        assert_eq!(found.len(), 3, "{found:?}");
        assert_eq!(found[0].0, Some(2));
        assert!(found[0].1.starts_with("acton: unknown field"), "{found:?}");
        assert_eq!(found[1].0, Some(6));
        assert!(found[1].1.contains("unknown variant `read`"), "{found:?}");
        assert_eq!(found[2].0, Some(11));
        assert!(found[2].1.starts_with("has_media:"), "{found:?}");
    }

    #[test]
    fn unknown_top_level_keys_and_misplaced_defaults_are_reported_with_the_rest() {
        let p = parse_sources(&[
            (
                PathBuf::from(RULES_FILE),
                "delay = \"5s\"\n[[rules]]\nname = \"a\"\n".into(),
            ),
            (
                PathBuf::from("rules.d/x.toml"),
                "[defaults]\naction = \"seen\"\n".into(),
            ),
        ]);

        let found = problems(&p);
        assert_eq!(found.len(), 2, "{found:?}");
        assert_eq!(found[0].0, Some(1));
        assert!(found[0].1.contains("unknown key `delay`"), "{found:?}");
        assert!(found[1].1.contains("belongs in rules.toml"), "{found:?}");
        assert_eq!(p.rules.len(), 1);
    }

    #[test]
    fn a_message_points_at_the_key_it_names() {
        let text = "[[rules]]\nname = \"a\"\n\ndelay = \"x\"\nwindows = [\n  { days = \"mon\", hours = \"9-5\" },\n]\n";
        let lines = KeyLines::of(text, 0);
        assert_eq!(lines.line_for("delay: `x` is not a duration"), 4);
        assert_eq!(lines.line_for("windows: bad hours"), 5);
        assert_eq!(
            lines.line_for("`chats` is an empty list"),
            1,
            "absent: the table's line"
        );
    }
}
