//! The docs stay true to the code: every setting is documented in the configuration reference and in the
//! shipped `config/autoseen.toml`, every metric the code emits is declared once and described in the metrics
//! table, and the README is short with every link resolving to a file in the repo.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde_json::Value;

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

fn read(path: &str) -> String {
    std::fs::read_to_string(repo(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// Every settings key, dotted, from the settings' own shape; per-session overrides as `wasend.sessions.<name>.…`
/// and `green.instances.<id>.…`.
fn settings_keys() -> BTreeSet<String> {
    fn walk(prefix: &str, v: &Value, out: &mut BTreeSet<String>) {
        match v {
            Value::Object(map) if !prefix.is_empty() && map.is_empty() => {
                out.insert(prefix.to_string());
            }
            Value::Object(map) => {
                for (k, v) in map {
                    let key = if prefix.is_empty() {
                        k.clone()
                    } else {
                        format!("{prefix}.{k}")
                    };
                    walk(&key, v, out);
                }
            }
            _ => {
                out.insert(prefix.to_string());
            }
        }
    }
    let mut keys = BTreeSet::new();
    let defaults = serde_json::to_value(autoseen::settings::Settings::default()).unwrap();
    walk("", &defaults, &mut keys);
    keys.remove("wasend.sessions");
    let session = serde_json::to_value(autoseen::settings::SessionOverride::default()).unwrap();
    walk("wasend.sessions.<name>", &session, &mut keys);
    keys.remove("evolution.instances");
    let instance = serde_json::to_value(autoseen::settings::EvolutionInstance::default()).unwrap();
    walk("evolution.instances.<name>", &instance, &mut keys);
    keys.remove("green.instances");
    let instance = serde_json::to_value(autoseen::settings::InstanceOverride::default()).unwrap();
    walk("green.instances.<id>", &instance, &mut keys);
    keys
}

/// The keys `config/autoseen.toml` shows, set or commented out, with their section; a session override's table
/// (`[wasend.sessions.sales]`) counts as `wasend.sessions.<name>`.
fn shipped_config_keys() -> BTreeSet<String> {
    let table = regex::Regex::new(r"^#?\s*\[([a-z0-9_.]+)\]").unwrap();
    let key = regex::Regex::new(r"^#?\s*([a-z_]+)\s*=").unwrap();
    let mut section = String::new();
    let mut keys = BTreeSet::new();
    for line in read("config/autoseen.toml").lines() {
        if let Some(c) = table.captures(line) {
            section = c[1].to_string();
            if let Some(rest) = section.strip_prefix("wasend.sessions.") {
                section = section.replace(rest, "<name>");
            }
            if let Some(rest) = section.strip_prefix("evolution.instances.") {
                section = section.replace(rest, "<name>");
            }
            if let Some(rest) = section.strip_prefix("green.instances.") {
                section = section.replace(rest, "<id>");
            }
        } else if let Some(c) = key.captures(line) {
            keys.insert(format!("{section}.{}", &c[1]));
        }
    }
    keys
}

#[test]
fn every_setting_is_in_the_configuration_reference_and_the_shipped_config() {
    let keys = settings_keys();
    let reference = read("docs/configuration.md");
    let shipped = shipped_config_keys();
    assert!(keys.len() >= 30, "{keys:?}");
    assert!(keys.contains("wasend.sessions.<name>.api_key"), "{keys:?}");

    let missing_in_docs: Vec<&String> = keys
        .iter()
        .filter(|k| !reference.contains(&format!("`{k}`")))
        .collect();
    let missing_in_config: Vec<&String> = keys.iter().filter(|k| !shipped.contains(*k)).collect();
    let unknown_in_config: Vec<&String> = shipped.iter().filter(|k| !keys.contains(*k)).collect();

    let none: Vec<&String> = Vec::new();
    assert_eq!(
        [missing_in_docs, missing_in_config, unknown_in_config],
        [none.clone(), none.clone(), none],
        "[not in docs/configuration.md, not in config/autoseen.toml, unknown keys in config/autoseen.toml]"
    );
}

#[test]
fn every_metric_the_code_emits_is_declared_once_and_in_the_metrics_table() {
    let table = read("docs/operations.md");
    for (name, _, help) in autoseen::metric_names::ALL {
        assert!(
            table.contains(&format!("| `{name}` |")),
            "{name} is not in the metrics table of docs/operations.md"
        );
        assert!(
            !help.is_empty(),
            "{name} has no description for the exporter"
        );
    }
    // Code records metrics only under the names declared in src/metric_names.rs.
    let literal = regex::Regex::new(r#""autoseen_[a-z_]+""#).unwrap();
    let mut stray = Vec::new();
    let mut dirs = vec![repo("src")];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "rs")
                && !path.ends_with("metric_names.rs")
            {
                let text = std::fs::read_to_string(&path).unwrap();
                stray.extend(
                    literal
                        .find_iter(&text)
                        .map(|m| format!("{}: {}", path.display(), m.as_str())),
                );
            }
        }
    }
    assert_eq!(
        stray,
        Vec::<String>::new(),
        "metric names outside src/metric_names.rs"
    );
}

#[test]
fn the_readme_is_short_and_every_link_in_it_resolves() {
    let readme = read("README.md");
    assert!(
        readme.lines().count() <= 150,
        "README.md has {} lines",
        readme.lines().count()
    );
    let link = regex::Regex::new(r"\]\(([^)#]+)(#[^)]*)?\)").unwrap();
    let mut checked = 0;
    for doc in [
        "README.md",
        "docs/configuration.md",
        "docs/rules.md",
        "docs/operations.md",
        "docs/security.md",
        "docs/performance.md",
        "docs/decisions.md",
    ] {
        let text = read(doc);
        let base = repo(doc).parent().unwrap().to_path_buf();
        for c in link.captures_iter(&text) {
            let target = &c[1];
            if target.starts_with("http://") || target.starts_with("https://") {
                continue;
            }
            assert!(
                base.join(target).exists(),
                "{doc} links to {target}, which does not exist"
            );
            checked += 1;
        }
    }
    assert!(checked >= 10, "only {checked} links found");
}

#[test]
fn the_documented_command_list_is_the_binarys() {
    let help = std::process::Command::new(env!("CARGO_BIN_EXE_autoseen"))
        .arg("--help")
        .output()
        .expect("autoseen runs");
    let help = String::from_utf8_lossy(&help.stdout);
    // clap lists each subcommand indented under "Commands:", `help` last.
    let from_help: BTreeSet<String> = help
        .split("Commands:")
        .nth(1)
        .expect("--help lists commands")
        .lines()
        .skip(1)
        .take_while(|l| !l.trim().is_empty())
        .filter_map(|l| l.split_whitespace().next().map(str::to_string))
        .filter(|c| c != "help")
        .collect();
    let reference = read("docs/configuration.md");
    let block = reference
        .split("## Command line")
        .nth(1)
        .and_then(|s| s.split("```").nth(1))
        .expect("docs/configuration.md has a command block");
    let documented: BTreeSet<String> = block
        .lines()
        .filter_map(|l| l.strip_prefix("autoseen "))
        .filter_map(|l| l.split_whitespace().next().map(str::to_string))
        .filter(|c| !c.starts_with('-'))
        .collect();

    assert!(from_help.len() >= 5, "{help}");
    assert_eq!(
        documented, from_help,
        "docs/configuration.md's command list"
    );
}
