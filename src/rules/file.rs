//! The rule files on disk: `rules.toml`, then `rules.d/*.toml` in file-name order, and their compilation.
//!
//! Every problem is reported with its file, line and rule, and a hint; compilation goes on after a problem so
//! one `autoseen check` lists them all. A rule that can never match because an earlier rule always matches
//! first is an error too: it is almost always a mistake in order.

use std::collections::{BTreeSet, HashSet};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::delay::DelayRange;
use super::parse::{Parsed, ParsedRule, parse_sources};
use super::pattern::{glob_set, normalize_chat_pattern};
use super::window::Window;
use super::{Action, Conditions, DelaySource, Outcome, OutsideWindows, Rule, Rules};
use crate::domain::ChatType;

pub const RULES_FILE: &str = "rules.toml";
pub const RULES_DIR: &str = "rules.d";

/// One problem in a rule file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleError {
    pub file: PathBuf,
    pub line: Option<usize>,
    pub rule: Option<String>,
    pub message: String,
}

impl fmt::Display for RuleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
        }
        if let Some(rule) = &self.rule {
            write!(f, ": rule `{rule}`")?;
        }
        write!(f, ": {}", self.message)
    }
}

/// Rule files that could not be loaded, with every problem found.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"))]
pub struct RulesError(pub Vec<RuleError>);

#[derive(Deserialize, Serialize, Default, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub(super) struct RawOutcome {
    #[serde(skip_serializing_if = "Option::is_none")]
    action: Option<Action>,
    #[serde(skip_serializing_if = "Option::is_none")]
    delay: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    read_on_reply: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    windows: Option<Vec<RawWindow>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    outside_windows: Option<OutsideWindows>,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_wait: Option<String>,
}

#[derive(Deserialize, Serialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
struct RawWindow {
    days: String,
    hours: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    tz: Option<String>,
}

#[derive(Deserialize, Serialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRule {
    name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    sessions: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    chats: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    chat_types: Option<Vec<ChatType>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    senders: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    text: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    has_media: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    action: Option<Action>,
    #[serde(skip_serializing_if = "Option::is_none")]
    delay: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    read_on_reply: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    windows: Option<Vec<RawWindow>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    outside_windows: Option<OutsideWindows>,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_wait: Option<String>,
}

/// The rules as written, with chat and sender patterns normalized: what [`Rules::to_toml`] prints, and what
/// two rule sets are compared by.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub(super) struct Source {
    pub(super) defaults: RawOutcome,
    pub(super) rules: Vec<RawRule>,
}

impl Source {
    /// Where the delay of the rule named `rule` (or of `[defaults]`) comes from.
    pub(super) fn delay_source(&self, rule: &str) -> DelaySource {
        let own = self.rules.iter().find(|r| r.name == rule);
        if own.is_some_and(|r| r.delay.is_some()) {
            DelaySource::Rule
        } else if self.defaults.delay.is_some() {
            DelaySource::Defaults
        } else {
            DelaySource::BuiltIn
        }
    }

    /// Whether `[defaults]` is missing or empty, so that the built-in outcome applies.
    pub(super) fn sets_no_defaults(&self) -> bool {
        self.defaults == RawOutcome::default()
    }
}

/// The rule files of a config folder, in the order they apply.
pub fn rule_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = vec![dir.join(RULES_FILE)];
    if let Ok(entries) = std::fs::read_dir(dir.join(RULES_DIR)) {
        let mut extra: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|e| e == "toml") && p.is_file())
            .collect();
        extra.sort();
        files.extend(extra);
    }
    files
}

/// Reads and compiles the rule files of a config folder.
pub fn load(dir: &Path) -> Result<Rules, RulesError> {
    compile(&read_sources(dir)?)
}

/// The text of each rule file of a config folder, in the order they apply.
pub fn read_sources(dir: &Path) -> Result<Vec<(PathBuf, String)>, RulesError> {
    rule_files(dir)
        .into_iter()
        .map(|file| match std::fs::read_to_string(&file) {
            Ok(text) => Ok((file, text)),
            Err(e) => Err(RulesError(vec![RuleError {
                file,
                line: None,
                rule: None,
                message: format!("cannot read it ({e}); every config folder needs a {RULES_FILE}"),
            }])),
        })
        .collect()
}

/// Compiles rule sources: the first is `rules.toml` (the only one that may hold `[defaults]`).
pub fn compile(sources: &[(PathBuf, String)]) -> Result<Rules, RulesError> {
    let Parsed {
        defaults: defaults_raw,
        defaults_lines,
        rules: parsed,
        mut errors,
    } = parse_sources(sources);

    let defaults_place = sources.first().map(|(f, _)| f.clone()).unwrap_or_default();
    let defaults = match compile_outcome(&defaults_raw, &Outcome::BUILT_IN) {
        Ok(o) => o,
        Err(message) => {
            errors.push(RuleError {
                file: defaults_place,
                line: Some(defaults_lines.line_for(&message)),
                rule: Some("defaults".into()),
                message,
            });
            Outcome::BUILT_IN
        }
    };

    let mut names = HashSet::new();
    let mut rules: Vec<Rule> = Vec::new();
    let mut source = Source {
        defaults: defaults_raw.clone(),
        rules: Vec::new(),
    };
    for ParsedRule { file, raw, lines } in parsed {
        let line = lines.table;
        // Points at the key the message names, else at the rule's `[[rules]]` line.
        let err = |message: String| RuleError {
            file: file.clone(),
            line: Some(lines.line_for(&message)),
            rule: Some(raw.name.clone()),
            message,
        };
        if raw.name.trim().is_empty() {
            errors.push(err("`name` is empty; every rule needs a unique name".into()));
            continue;
        }
        if raw.name == "defaults" || !names.insert(raw.name.clone()) {
            errors.push(err(format!(
                "the name `{}` is already used; rule names must be unique (and not `defaults`)",
                raw.name
            )));
            continue;
        }
        let rule = compile_rule(&raw, &defaults, &file, line);
        match rule {
            Ok(rule) => {
                if let Some(earlier) = rules.iter().find(|e| e.conditions.covers(&rule.conditions))
                {
                    errors.push(err(format!(
                        "can never match: rule `{}` (line {} of {}) matches everything it matches and comes \
                         first; move this rule above it or narrow the earlier one",
                        earlier.name,
                        earlier.line,
                        earlier.file.display()
                    )));
                }
                rules.push(rule);
                source.rules.push(normalized(raw.clone()));
            }
            Err(messages) => errors.extend(messages.into_iter().map(err)),
        }
    }

    if errors.is_empty() {
        Ok(Rules {
            rules,
            defaults,
            source,
        })
    } else {
        Err(RulesError(errors))
    }
}

/// A compiled rule as it would be written again: patterns trimmed, phone numbers as chat ids.
fn normalized(mut raw: RawRule) -> RawRule {
    let chat_like = |v: Vec<String>| {
        v.iter()
            .map(|c| normalize_chat_pattern(c).unwrap_or_else(|_| c.clone()))
            .collect()
    };
    raw.sessions = raw
        .sessions
        .map(|v| v.iter().map(|s| s.trim().to_string()).collect());
    raw.chats = raw.chats.map(chat_like);
    raw.senders = raw.senders.map(chat_like);
    raw
}

fn compile_outcome(raw: &RawOutcome, base: &Outcome) -> Result<Outcome, String> {
    let delay = match &raw.delay {
        Some(d) => DelayRange::parse(d).map_err(|e| format!("delay: {e}"))?,
        None => base.delay,
    };
    let windows = match &raw.windows {
        Some(ws) => {
            let mut out = Vec::with_capacity(ws.len());
            for w in ws {
                out.push(
                    Window::parse(&w.days, &w.hours, w.tz.as_deref())
                        .map_err(|e| format!("windows: {e}"))?,
                );
            }
            out
        }
        None => base.windows.clone(),
    };
    let action = raw.action.unwrap_or(base.action);
    let max_wait = match &raw.max_wait {
        Some(_) if action != Action::OnReply => {
            return Err(
                "max_wait: only `action = \"on_reply\"` waits for a reply; remove it or set that action".into(),
            );
        }
        Some(w) => Some(humantime::parse_duration(w.trim()).map_err(|_| {
            format!("max_wait: `{w}` is not a duration; write it like \"30m\" or \"2h\"")
        })?),
        None if action == Action::OnReply => base.max_wait,
        None => None,
    };
    Ok(Outcome {
        action,
        delay,
        read_on_reply: raw.read_on_reply.unwrap_or(base.read_on_reply),
        windows,
        outside_windows: raw.outside_windows.unwrap_or(base.outside_windows),
        max_wait,
    })
}

/// A condition's list of patterns, normalized (phone numbers as chat ids when `chat_like`); problems go to
/// `errors`.
fn pattern_list(
    key: &str,
    values: &[String],
    chat_like: bool,
    errors: &mut Vec<String>,
) -> Option<BTreeSet<String>> {
    if values.is_empty() {
        errors.push(format!(
            "`{key}` is an empty list, which matches nothing; remove the key to match any"
        ));
        return None;
    }
    let mut out = BTreeSet::new();
    for v in values {
        let p = if chat_like {
            normalize_chat_pattern(v)
        } else {
            Ok(v.trim().to_string())
        };
        match p {
            Ok(p) => {
                out.insert(p);
            }
            Err(e) => errors.push(format!("{key}: {e}")),
        }
    }
    Some(out)
}

fn compile_rule(
    raw: &RawRule,
    defaults: &Outcome,
    file: &Path,
    line: usize,
) -> Result<Rule, Vec<String>> {
    let mut errors = Vec::new();
    let mut list = |key: &str, values: &Option<Vec<String>>, chat_like: bool| {
        pattern_list(key, values.as_ref()?, chat_like, &mut errors)
    };
    let sessions = list("sessions", &raw.sessions, false);
    let chats = list("chats", &raw.chats, true);
    let senders = list("senders", &raw.senders, true);
    let chat_types = raw
        .chat_types
        .as_ref()
        .map(|t| t.iter().copied().collect::<BTreeSet<_>>());
    if chat_types.as_ref().is_some_and(BTreeSet::is_empty) {
        errors.push(
            "`chat_types` is an empty list, which matches nothing; remove the key to match any"
                .into(),
        );
    }
    let text = raw.text.as_ref().and_then(|t| match regex::Regex::new(t) {
        Ok(r) => Some(r),
        Err(e) => {
            errors.push(format!("text: not a valid regular expression: {e}"));
            None
        }
    });
    let mut globs = |key: &str, set: &Option<BTreeSet<String>>| {
        set.as_ref().and_then(|s| {
            glob_set(&s.iter().cloned().collect::<Vec<_>>())
                .map_err(|e| errors.push(format!("{key}: {e}")))
                .ok()
        })
    };
    let session_globs = globs("sessions", &sessions);
    let chat_globs = globs("chats", &chats);
    let sender_globs = globs("senders", &senders);
    let outcome = compile_outcome(
        &RawOutcome {
            action: raw.action,
            delay: raw.delay.clone(),
            read_on_reply: raw.read_on_reply,
            windows: raw.windows.clone(),
            outside_windows: raw.outside_windows,
            max_wait: raw.max_wait.clone(),
        },
        defaults,
    );
    let outcome = match outcome {
        Ok(o) => o,
        Err(e) => {
            errors.push(e);
            return Err(errors);
        }
    };
    if !errors.is_empty() {
        return Err(errors);
    }
    Ok(Rule {
        name: Arc::from(raw.name.as_str()),
        file: file.to_path_buf(),
        line,
        conditions: Conditions {
            sessions: sessions.zip(session_globs),
            chats: chats.zip(chat_globs),
            senders: senders.zip(sender_globs),
            chat_types,
            text,
            has_media: raw.has_media,
        },
        outcome,
    })
}
