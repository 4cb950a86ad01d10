//! `check` and `explain`, run as a user would.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

fn autoseen(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_autoseen"))
        .args(args)
        .env_remove("AUTOSEEN_CONFIG")
        .output()
        .expect("autoseen runs")
}

fn repo(path: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join(path)
        .display()
        .to_string()
}

fn config_with(settings: &str, rules: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("autoseen.toml"), settings).unwrap();
    std::fs::write(dir.path().join("rules.toml"), rules).unwrap();
    dir
}

fn explain(config: &str, event: &str, at: Option<&str>) -> Value {
    let mut args = vec!["explain", "--config", config, event];
    if let Some(at) = at {
        args.extend(["--at", at]);
    }
    let out = autoseen(&args);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn check_accepts_the_shipped_config() {
    let out = autoseen(&["check", "--config", &repo("config")]);

    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("ok: 2 rules"));
}

#[test]
fn check_lists_every_problem_with_its_file_and_line() {
    let dir = config_with(
        "[server]\nlisten = \"127.0.0.1:0\"\n",
        "[[rules]]\nname = \"a\"\nsessions = [\"[x\"]\n\n[[rules]]\nname = \"b\"\ndelay = \"9s..1s\"\n",
    );

    let out = autoseen(&["check", "--config", &dir.path().display().to_string()]);

    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("rules.toml:3: rule `a`: sessions:"), "{err}");
    assert!(err.contains("rules.toml:7: rule `b`: delay:"), "{err}");
}

#[test]
fn check_names_an_unknown_settings_key_with_its_line() {
    let dir = config_with("[wasend]\nbase_url = \"http://x\"\napi_kye = \"k\"\n", "");

    let out = autoseen(&["check", "--config", &dir.path().display().to_string()]);

    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("autoseen.toml:3") && err.contains("api_kye"),
        "{err}"
    );
}

#[test]
fn serve_refuses_to_start_without_an_api_key_and_says_which_variable() {
    let out = Command::new(env!("CARGO_BIN_EXE_autoseen"))
        .args(["serve", "--config", &repo("config")])
        .env_remove("AUTOSEEN__WASEND__API_KEY")
        .output()
        .unwrap();

    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("AUTOSEEN__WASEND__API_KEY"));
}

#[test]
fn explain_shows_the_rule_and_the_sending_range() {
    let v = explain(
        &repo("config"),
        &repo("tests/events/direct.json"),
        Some("2026-11-26T10:00:00Z"),
    );

    assert_eq!(v["decision"], "seen");
    assert_eq!(v["rule"], "defaults");
    assert_eq!(v["earliest"], "2026-11-26T10:00:03Z");
    assert_eq!(v["latest"], "2026-11-26T10:00:20Z");
}

#[test]
fn explain_shows_ignored_status_updates() {
    let v = explain(&repo("config"), &repo("tests/events/status.json"), None);

    assert_eq!(v["decision"], "ignore");
    assert_eq!(v["rule"], "no-status-or-channels");
}

#[test]
fn explain_includes_waiting_for_the_next_window() {
    let rules = r#"
[[rules]]
name = "support-office-hours"
sessions = ["support-*"]
delay = "10s..1m"
windows = [{ days = "mon-fri", hours = "09:00-18:00", tz = "Europe/Berlin" }]
"#;
    let dir = config_with("", rules);
    let config = dir.path().display().to_string();

    // Friday 2026-11-27 20:00 in Berlin: the next window is Monday 09:00 (08:00Z).
    let v = explain(
        &config,
        &repo("tests/events/group.json"),
        Some("2026-11-27T20:00:00+01:00[Europe/Berlin]"),
    );

    assert_eq!(v["decision"], "seen");
    assert_eq!(v["rule"], "support-office-hours");
    assert_eq!(v["earliest"], "2026-11-30T08:00:10Z");
    assert_eq!(v["latest"], "2026-11-30T08:01:00Z");
}

#[test]
fn explain_reads_standard_input() {
    use std::io::Write;
    let mut child = Command::new(env!("CARGO_BIN_EXE_autoseen"))
        .args(["explain", "--config", &repo("config"), "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let event = std::fs::read(PathBuf::from(repo("tests/events/group.json"))).unwrap();
    child.stdin.take().unwrap().write_all(&event).unwrap();
    let out = child.wait_with_output().unwrap();

    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["rule"], "groups-later");
}

#[test]
fn explain_shows_chat_phone_number_decision_and_reason_for_every_waha_fixture() {
    let config = config_with(
        "[wasend]\nflavor = \"waha\"\nbase_url = \"http://127.0.0.1:3000\"\n",
        "[defaults]\ndelay = \"5s\"\n\n[[rules]]\nname = \"vip-by-phone\"\nchats = [\"+49 151 1110004\"]\ndelay = \"0s\"\n",
    );
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/events/waha");
    let mut seen = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "json") {
            continue;
        }
        let name = path.file_stem().unwrap().to_string_lossy().into_owned();
        let v = explain(
            &config.path().display().to_string(),
            &path.display().to_string(),
            Some("2026-11-26T09:30:00Z"),
        );
        assert!(
            v["decision"].is_string() && v["reason"].is_string(),
            "{name}: {v}"
        );
        let is_message = !name.starts_with("ack")
            && !["reaction", "poll-vote", "presence", "revoked", "edited"].contains(&name.as_str());
        if is_message {
            assert!(v["chat"].is_string(), "{name}: {v}");
            assert!(v.get("chat_phone").is_some(), "{name}: {v}");
        }
        seen += 1;
    }
    assert_eq!(seen, 24);

    let lid = |name: &str| {
        explain(
            &config.path().display().to_string(),
            &dir.join(format!("{name}.json")).display().to_string(),
            None,
        )
    };
    let with_phone = lid("noweb-lid-direct-with-phone");
    assert_eq!(
        (
            &with_phone["chat"],
            &with_phone["chat_phone"],
            &with_phone["rule"]
        ),
        (
            &Value::from("120000000000004@lid"),
            &Value::from("491511110004@c.us"),
            &Value::from("vip-by-phone")
        )
    );
    let without = lid("webjs-lid-direct-without-phone");
    assert_eq!(without["chat_phone"], Value::Null);
    assert!(
        without["notes"].to_string().contains("phone-number rules"),
        "{without}"
    );
    assert!(
        without["notes"].to_string().contains("WEBJS"),
        "WEBJS under waha: {without}"
    );
    let ack = lid("ack-webjs-read");
    assert_eq!(ack["decision"], "ack");
    let own_ack = lid("ack-of-own-message");
    assert_eq!(
        (&own_ack["decision"], &own_ack["reason"]),
        (&Value::from("ignore"), &Value::from("ack_of_own_message"))
    );
}

#[test]
fn under_waha_check_refuses_a_base_url_ending_in_api_and_needs_no_key() {
    let check = |settings: &str| {
        let dir = config_with(settings, "");
        let out = autoseen(&["check", "--config", &dir.path().display().to_string()]);
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.code(), text)
    };

    let (api_code, api) =
        check("[wasend]\nflavor = \"waha\"\nbase_url = \"http://waha:3000/api\"\n");
    let (root_code, root) = check("[wasend]\nflavor = \"waha\"\nbase_url = \"http://waha:3000\"\n");
    let (wasend_code, wasend) = check("[wasend]\nbase_url = \"https://api.wasend.dev\"\n");

    assert_eq!(api_code, Some(1));
    assert!(
        api.contains("wasend.base_url") && api.contains("/api"),
        "{api}"
    );
    assert_eq!(root_code, Some(0), "{root}");
    assert!(
        !root.contains("api_key"),
        "a key is optional under waha: {root}"
    );
    assert_eq!(wasend_code, Some(0));
    assert!(wasend.contains("AUTOSEEN__WASEND__API_KEY"), "{wasend}");
}

#[test]
fn check_refuses_short_or_empty_tokens_and_a_key_that_would_leave_for_another_server() {
    let dir = config_with(
        "[admin]\ntoken = \"short\"\n[bot]\ntoken = \"\"\n\
         [wasend]\napi_key = \"default-key\"\n[wasend.sessions.sales]\nbase_url = \"https://elsewhere.example\"\n",
        "",
    );

    let out = autoseen(&["check", "--config", &dir.path().display().to_string()]);

    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("`admin.token` is too short"), "{err}");
    assert!(err.contains("`bot.token` is empty"), "{err}");
    assert!(err.contains("`wasend.sessions.sales.base_url`"), "{err}");
    assert!(!err.contains("default-key"), "{err}");
}

#[test]
fn check_names_a_bad_sslmode_and_an_unreadable_root_certificate_without_the_password() {
    let dir = config_with(
        "[store]\nurl = \"postgres://autoseen:pg-pass-7@db:5432/x?sslmode=verify\"\n",
        "",
    );
    let out = autoseen(&["check", "--config", &dir.path().display().to_string()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("`store.url` has sslmode=verify, which is none of disable, prefer, require, verify-ca, verify-full"),
        "{err}"
    );

    let missing = dir.path().join("no-such-ca.pem");
    let url = format!(
        "postgres://autoseen:pg-pass-7@db:5432/x?sslmode=verify-full&sslrootcert={}",
        missing.display()
    );
    std::fs::write(
        dir.path().join("autoseen.toml"),
        format!("[store]\nurl = \"{url}\"\n"),
    )
    .unwrap();
    let out = autoseen(&["check", "--config", &dir.path().display().to_string()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("sslrootcert=") && err.contains("no-such-ca.pem which cannot be read"),
        "{err}"
    );
    assert!(!err.contains("pg-pass-7"), "{err}");
}

#[test]
fn explain_takes_a_meta_body_item_by_item_with_meta_chats_in_their_canonical_forms() {
    let dir = config_with(
        "[gateway]\ndefault = \"meta\"\n",
        "[defaults]\naction = \"seen\"\ndelay = \"5s\"\n\n[[rules]]\nname = \"usernames\"\nchats = [\"*@bsuid\"]\naction = \"ignore\"\n",
    );
    let config = dir.path().display().to_string();

    let batch = explain(&config, &repo("tests/events/meta/batch.json"), None);
    let items = batch.as_array().expect("one explanation per item");
    assert_eq!(items.len(), 6, "{batch}");
    assert_eq!(items[0]["item"], "entry[0].changes[0].value.messages[0]");
    assert_eq!(items[0]["decision"], "seen");
    assert_eq!(items[0]["chat"], "5511987650001@c.us");
    assert!(
        items[2]["skipped"]
            .as_str()
            .unwrap()
            .starts_with("unsupported_type"),
        "{}",
        items[2]
    );
    assert_eq!(items[5]["decision"], "ignore", "a delivered status");

    let username = explain(&config, &repo("tests/events/meta/username.json"), None);
    assert_eq!(username[0]["chat"], "US.13491208655302741918@bsuid");
    assert_eq!(username[0]["rule"], "usernames");
    let group = explain(&config, &repo("tests/events/meta/group.json"), None);
    assert_eq!(group[0]["chat"], "Y2FmZWJhYmUtZ3JvdXAtMQ@g.us");
    assert_eq!(group[0]["sender"], "447700900123@c.us");
    assert_eq!(group[0]["reason"], "unsupported_by_gateway");
}

#[test]
fn a_meta_session_needs_the_app_secret_and_the_access_token_to_serve() {
    let dir = config_with(
        "[gateway]\ndefault = \"meta\"\n[meta]\nverify_token = \"short\"\n",
        "[defaults]\naction = \"seen\"\n",
    );
    let config = dir.path().display().to_string();
    let out = autoseen(&["check", "--config", &config]);
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(text.contains("`meta.verify_token` is too short"), "{text}");

    std::fs::write(
        dir.path().join("autoseen.toml"),
        "[gateway]\ndefault = \"meta\"\n",
    )
    .unwrap();
    let out = autoseen(&["check", "--config", &config]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("`meta.app_secret` is not set"), "{text}");
    assert!(text.contains("`meta.access_token` is not set"), "{text}");
    assert!(
        !text.contains("wasend.api_key"),
        "no Wasend session: {text}"
    );

    let out = autoseen(&["serve", "--config", &config]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("AUTOSEEN__META__APP_SECRET"));
}

#[test]
fn explain_takes_green_and_evolution_bodies() {
    let dir = config_with(
        "[gateway]\nsessions = { \"1101000001\" = \"green\", sales = \"evolution\" }\n",
        "[defaults]\naction = \"seen\"\ndelay = \"5s\"\n",
    );
    let config = dir.path().display().to_string();

    let green = explain(&config, &repo("tests/events/green/group.json"), None);
    assert_eq!(green["decision"], "seen", "{green}");
    assert_eq!(green["chat"], "79001234567-1587570015@g.us");
    assert_eq!(green["sender"], "79005550101@c.us");
    let read = explain(&config, &repo("tests/events/green/status-read.json"), None);
    assert_eq!(read["decision"], "ack", "{read}");

    let lid = explain(
        &config,
        &repo("tests/events/evolution/upsert-lid.json"),
        None,
    );
    assert_eq!(lid["chat"], "181234567890123@lid", "{lid}");
    assert_eq!(lid["chat_phone"], "5511999990002@c.us");
    let deleted = explain(&config, &repo("tests/events/evolution/delete.json"), None);
    assert_eq!(deleted["decision"], "deleted", "{deleted}");
    assert_eq!(deleted["message"], "3EB0C431C26A1916E07A");
}

#[test]
fn without_defaults_explain_shows_the_built_in_delay_and_check_warns() {
    let dir = config_with(
        "[server]\nlisten = \"127.0.0.1:0\"\n",
        "[[rules]]\nname = \"groups\"\nchat_types = [\"group\"]\naction = \"ignore\"\n",
    );
    let config = dir.path().display().to_string();

    let v = explain(&config, &repo("tests/events/direct.json"), None);
    assert_eq!(v["decision"], "seen", "{v}");
    assert_eq!(v["delay"], "2s..10s", "{v}");
    assert_eq!(v["delay_from"], "built-in default", "{v}");

    let out = autoseen(&["check", "--config", &config]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(
        stdout.contains("warning: rules.toml sets nothing in [defaults]"),
        "{stdout}"
    );
}

#[test]
fn every_example_body_is_explained() {
    let mut seen = 0;
    for entry in std::fs::read_dir(repo("examples")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "json") {
            continue;
        }
        let v = explain(&repo("config"), &path.display().to_string(), None);
        // One answer, or one per item of a Meta batch: a decision, or why the item is skipped.
        let answers: Vec<&Value> = v
            .as_array()
            .map_or(vec![&v], |items| items.iter().collect());
        assert!(
            answers
                .iter()
                .all(|a| a["decision"].is_string() || a["skipped"].is_string()),
            "{}: {v}",
            path.display()
        );
        assert!(answers.iter().any(|a| a["decision"].is_string()), "{v}");
        seen += 1;
    }
    assert!(seen >= 7, "{seen} examples");
}

#[test]
fn check_reports_rule_mistakes_and_a_cross_field_settings_problem_each_at_its_keys_line() {
    let dir = config_with(
        "[server]\nshutdown_timeout = \"5s\"\nlisten = \"localhost\"\n\n[admin]\ntoken = \"\"\n",
        "[defaults]\nacton = \"seen\"\n\n[[rules]]\nname = \"groups\"\nchat_types = [\"group\"]\n\n\
         [[rules]]\nname = \"typo\"\nchat_types = [\"direct\"]\naction = \"read\"\n\n\
         [[rules]]\nname = \"slow\"\nchat_types = [\"channel\"]\ndelay = \"2 sekunden\"\n\n\
         [[rules]]\nname = \"all-groups\"\nchat_types = [\"group\"]\n\n\
         [[rules]]\nname = \"office\"\nchat_types = [\"broadcast\"]\nwindows = [{ days = \"mon-fri\", hours = \"9-18\" }]\n",
    );

    let out = autoseen(&["check", "--config", &dir.path().display().to_string()]);

    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    for wanted in [
        "autoseen.toml:3: `server.listen`",
        "autoseen.toml:6: `admin.token` is empty",
        "rules.toml:2: rule `defaults`: acton: unknown field",
        "rules.toml:11: rule `typo`: action: unknown variant `read`",
        "rules.toml:16: rule `slow`: delay:",
        "rules.toml:18: rule `all-groups`: can never match",
        "rules.toml:25: rule `office`: windows:",
    ] {
        assert!(err.contains(wanted), "{wanted:?} in:\n{err}");
    }
}

#[test]
fn check_reports_every_bad_settings_key_at_its_line_not_only_the_first() {
    let dir = config_with(
        "[server]\nlisten = \"127.0.0.1:0\"\nlisen = \"x\"\nshutdown_timeout = \"soon\"\n\n[delivery]\nmax_attempts = \"five\"\n",
        "[defaults]\ndelay = \"2s..10s\"\n",
    );

    let out = autoseen(&["check", "--config", &dir.path().display().to_string()]);

    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    for wanted in [
        "autoseen.toml:3: `server.lisen`: unknown field",
        "autoseen.toml:4: `server.shutdown_timeout`:",
        "autoseen.toml:7: `delivery.max_attempts`:",
    ] {
        assert!(err.contains(wanted), "{wanted:?} in:\n{err}");
    }
}
