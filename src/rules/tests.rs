use std::path::PathBuf;

use super::*;
use crate::domain::{ChatId, MessageId, SessionName};

fn rules(text: &str) -> Rules {
    compile(&[(PathBuf::from("rules.toml"), text.to_string())]).unwrap_or_else(|e| panic!("{e}"))
}

fn errors(text: &str) -> Vec<RuleError> {
    compile(&[(PathBuf::from("rules.toml"), text.to_string())])
        .unwrap_err()
        .0
}

fn msg(session: &str, chat: &str) -> IncomingMessage {
    let chat = ChatId::parse(chat).unwrap();
    IncomingMessage {
        session: SessionName::parse(session).unwrap(),
        sender: chat.clone(),
        chat,
        id: MessageId::parse("false_x_1").unwrap(),
        from_me: false,
        text: Some("hello there".into()),
        has_media: false,
        sent_at: None,
        chat_phone: None,
        sender_phone: None,
        engine: None,
        gateway: crate::domain::Gateway::Wasend,
    }
}

fn now() -> Timestamp {
    "2026-11-25T10:00:00Z".parse().unwrap()
}

fn rule_of(d: &Decision) -> Option<&str> {
    match d {
        Decision::Seen { rule, .. } | Decision::OnReply { rule, .. } => Some(rule),
        Decision::Ignore { rule, .. } => rule.as_deref(),
    }
}

const SAMPLE: &str = r#"
[defaults]
action = "seen"
delay = "2s..10s"

[[rules]]
name = "no-status"
chat_types = ["status", "channel"]
action = "ignore"

[[rules]]
name = "vip-instant"
sessions = ["sales", "support-*"]
chats = ["+49 151 1234567", "491517654321@c.us", "120363012345678901@g.us"]
delay = "0s"

[[rules]]
name = "groups-office-hours"
chat_types = ["group"]
delay = "30s..2m"
windows = [{ days = "mon-fri", hours = "09:00-18:00", tz = "Europe/Berlin" }]

[[rules]]
name = "quiet-text"
text = "(?i)unsubscribe"
action = "ignore"
"#;

#[test]
fn the_first_matching_rule_decides() {
    let r = rules(SAMPLE);
    assert_eq!(r.len(), 4);
    assert_eq!(
        rule_of(&r.decide(&msg("default", "status@broadcast"), now())),
        Some("no-status")
    );
    assert_eq!(
        rule_of(&r.decide(&msg("sales", "491511234567@c.us"), now())),
        Some("vip-instant")
    );
    assert_eq!(
        rule_of(&r.decide(&msg("support-eu", "491517654321@s.whatsapp.net"), now())),
        Some("vip-instant")
    );
    // Same chat, other session: not VIP.
    assert_eq!(
        rule_of(&r.decide(&msg("default", "491511234567@c.us"), now())),
        Some("defaults")
    );
    assert_eq!(
        rule_of(&r.decide(&msg("default", "1203@g.us"), now())),
        Some("groups-office-hours")
    );
}

#[test]
fn what_a_rule_leaves_out_comes_from_defaults() {
    let r = rules(SAMPLE);
    let Decision::Seen {
        delay,
        read_on_reply,
        not_before,
        ..
    } = r.decide(&msg("default", "4915@c.us"), now())
    else {
        panic!("expected seen")
    };
    assert_eq!(delay, DelayRange::parse("2s..10s").unwrap());
    assert!(read_on_reply);
    assert_eq!(not_before, now());
    let Decision::Seen { delay, .. } = r.decide(&msg("sales", "491511234567@c.us"), now()) else {
        panic!("expected seen")
    };
    assert_eq!(delay, DelayRange::ZERO);
}

#[test]
fn our_own_messages_are_never_marked_seen() {
    let r = rules("[defaults]\naction = \"seen\"\n");
    let mut m = msg("default", "4915@c.us");
    m.from_me = true;
    assert_eq!(
        r.decide(&m, now()),
        Decision::Ignore {
            rule: None,
            reason: IgnoreReason::FromMe
        }
    );
}

#[test]
fn text_media_and_sender_conditions_match() {
    let r = rules(
        r#"
[[rules]]
name = "media"
has_media = true
action = "ignore"
[[rules]]
name = "boss-in-groups"
senders = ["+49 170 0000000"]
delay = "0s"
[[rules]]
name = "quiet-text"
text = "(?i)unsubscribe"
action = "ignore"
"#,
    );
    let mut m = msg("default", "1203@g.us");
    m.sender = ChatId::parse("491700000000@c.us").unwrap();
    assert_eq!(rule_of(&r.decide(&m, now())), Some("boss-in-groups"));
    m.has_media = true;
    assert_eq!(rule_of(&r.decide(&m, now())), Some("media"));
    let mut m = msg("default", "4915@c.us");
    m.text = Some("please UNSUBSCRIBE me".into());
    assert_eq!(rule_of(&r.decide(&m, now())), Some("quiet-text"));
    m.text = None;
    assert_eq!(rule_of(&r.decide(&m, now())), Some("defaults"));
}

#[test]
fn a_closed_window_waits_for_the_opening_or_ignores() {
    let r = rules(
        r#"
[[rules]]
name = "office"
chat_types = ["direct"]
windows = [{ days = "mon-fri", hours = "09:00-18:00", tz = "UTC" }]
[[rules]]
name = "office-strict"
chat_types = ["group"]
windows = [{ days = "mon-fri", hours = "09:00-18:00" }]
outside_windows = "ignore"
"#,
    );
    let night: Timestamp = "2026-11-25T22:00:00Z".parse().unwrap();
    let Decision::Seen { not_before, .. } = r.decide(&msg("s", "4915@c.us"), night) else {
        panic!("expected seen")
    };
    assert_eq!(
        not_before,
        "2026-11-26T09:00:00Z".parse::<Timestamp>().unwrap()
    );
    assert_eq!(
        r.decide(&msg("s", "1203@g.us"), night),
        Decision::Ignore {
            rule: Some("office-strict".into()),
            reason: IgnoreReason::OutsideWindow
        }
    );
    assert!(matches!(
        r.decide(&msg("s", "1203@g.us"), now()),
        Decision::Seen { .. }
    ));
}

#[test]
fn deciding_is_deterministic_for_a_fixed_now() {
    let r = rules(SAMPLE);
    let m = msg("default", "1203@g.us");
    assert_eq!(r.decide(&m, now()), r.decide(&m, now()));
}

fn assert_error(text: &str, line: usize, rule: Option<&str>, needle: &str) {
    let errs = errors(text);
    assert!(
        errs.iter().any(|e| e.line == Some(line)
            && e.rule.as_deref() == rule
            && e.message.contains(needle)),
        "wanted line {line} rule {rule:?} containing {needle:?}, got: {errs:#?}"
    );
}

#[test]
fn every_kind_of_mistake_is_reported_with_line_rule_and_hint() {
    assert_error(
        "[[rules]]\nname = \"a\"\nchatz = [\"x\"]\n",
        3,
        Some("a"),
        "unknown field `chatz`",
    );
    assert_error(
        "\n[[rules]]\nname = \"a\"\nsessions = [\"[a-\"]\n",
        4,
        Some("a"),
        "not a valid pattern",
    );
    assert_error(
        "[[rules]]\nname = \"a\"\ntext = \"(unclosed\"\n",
        3,
        Some("a"),
        "regular expression",
    );
    assert_error(
        "[[rules]]\nname = \"a\"\nwindows = [{ days = \"mon\", hours = \"09:00-10:00\", tz = \"Nowhere/City\" }]\n",
        3,
        Some("a"),
        "time zone",
    );
    assert_error(
        "[[rules]]\nname = \"a\"\nwindows = [{ days = \"funday\", hours = \"09:00-10:00\" }]\n",
        3,
        Some("a"),
        "not a day",
    );
    assert_error(
        "[[rules]]\nname = \"a\"\ndelay = \"10s..2s\"\n",
        3,
        Some("a"),
        "smaller delay first",
    );
    assert_error(
        "[[rules]]\nname = \"a\"\nwindows = [{ days = \"mon\", hours = \"9-18\" }]\n",
        3,
        Some("a"),
        "09:00-18:00",
    );
    assert_error(
        "[[rules]]\nname = \"a\"\nchat_types = [\"group\"]\n[[rules]]\nname = \"a\"\nchat_types = [\"direct\"]\n",
        4,
        Some("a"),
        "already used",
    );
    assert_error(
        "[[rules]]\nname = \"a\"\nchats = [\"0151 1234567\"]\n",
        3,
        Some("a"),
        "country code",
    );
    assert_error(
        "[[rules]]\nname = \"a\"\nchat_types = [\"groups\"]\n",
        3,
        Some("a"),
        "unknown variant `groups`",
    );
}

#[test]
fn a_rule_behind_a_broader_one_is_reported_as_unreachable() {
    let text = "[[rules]]\nname = \"groups\"\nchat_types = [\"group\", \"direct\"]\naction = \"ignore\"\n\n\
                [[rules]]\nname = \"office-groups\"\nchat_types = [\"group\"]\nsessions = [\"x\"]\n";
    assert_error(text, 6, Some("office-groups"), "can never match");
    // The other way round is fine.
    let text = "[[rules]]\nname = \"office-groups\"\nchat_types = [\"group\"]\nsessions = [\"x\"]\n\n\
                [[rules]]\nname = \"groups\"\nchat_types = [\"group\", \"direct\"]\naction = \"ignore\"\n";
    assert_eq!(rules(text).len(), 2);
}

#[test]
fn defaults_are_only_allowed_in_rules_toml() {
    let errs = compile(&[
        (
            PathBuf::from("rules.toml"),
            "[defaults]\ndelay = \"1s\"\n".into(),
        ),
        (
            PathBuf::from("rules.d/10-extra.toml"),
            "[defaults]\ndelay = \"2s\"\n".into(),
        ),
    ])
    .unwrap_err()
    .0;
    assert_eq!(errs[0].file, PathBuf::from("rules.d/10-extra.toml"));
    assert!(errs[0].message.contains("belongs in rules.toml"));
}

#[test]
fn rules_d_files_are_appended_after_rules_toml() {
    let r = compile(&[
        (
            PathBuf::from("rules.toml"),
            "[[rules]]\nname = \"first\"\nchat_types = [\"group\"]\n".into(),
        ),
        (
            PathBuf::from("rules.d/a.toml"),
            "[[rules]]\nname = \"second\"\nchat_types = [\"direct\"]\n".into(),
        ),
    ])
    .unwrap();
    assert_eq!(
        rule_of(&r.decide(&msg("s", "4915@c.us"), now())),
        Some("second")
    );
}

#[test]
fn without_defaults_a_message_waits_the_built_in_delay_not_zero() {
    let r = rules("[[rules]]\nname = \"groups\"\nchat_types = [\"group\"]\naction = \"ignore\"\n");
    let Decision::Seen { delay, rule, .. } = r.decide(&msg("default", "4915@c.us"), now()) else {
        panic!("expected seen")
    };
    assert_eq!(delay, DelayRange::parse("2s..10s").unwrap());
    assert_eq!(r.delay_source(&rule), DelaySource::BuiltIn);
    assert!(r.warnings()[0].contains("[defaults]"), "{:?}", r.warnings());
}

#[test]
fn a_delay_comes_from_the_rule_then_defaults_then_the_built_in() {
    let r = rules(SAMPLE);
    assert_eq!(r.delay_source("vip-instant"), DelaySource::Rule);
    assert_eq!(r.delay_source("no-status"), DelaySource::Defaults);
    assert_eq!(r.delay_source(DEFAULTS_RULE), DelaySource::Defaults);
    assert!(r.warnings().is_empty(), "{:?}", r.warnings());
    let explicit_zero = rules("[defaults]\ndelay = \"0s\"\n");
    assert_eq!(explicit_zero.defaults().delay, DelayRange::ZERO);
    assert!(explicit_zero.warnings().is_empty());
}

#[test]
fn one_file_with_five_kinds_of_mistakes_reports_all_five_each_at_its_key() {
    let text = "\
[defaults]
acton = \"seen\"

[[rules]]
name = \"groups\"
chat_types = [\"group\"]

[[rules]]
name = \"typo\"
chat_types = [\"direct\"]
action = \"read\"

[[rules]]
name = \"slow\"
chat_types = [\"channel\"]
delay = \"2 sekunden\"

[[rules]]
name = \"all-groups\"
chat_types = [\"group\"]

[[rules]]
name = \"office\"
chat_types = [\"broadcast\"]
windows = [{ days = \"mon-fri\", hours = \"9-18\" }]
";
    let found: Vec<(Option<usize>, String)> = errors(text)
        .into_iter()
        .map(|e| (e.line, e.message))
        .collect();

    let at = |line: usize, needle: &str| {
        assert!(
            found
                .iter()
                .any(|(l, m)| *l == Some(line) && m.contains(needle)),
            "line {line} {needle:?} in {found:#?}"
        );
    };
    at(2, "unknown field `acton`");
    at(11, "unknown variant `read`");
    at(16, "not a duration");
    at(18, "can never match");
    at(25, "09:00-18:00");
    assert_eq!(found.len(), 5, "{found:#?}");
}
