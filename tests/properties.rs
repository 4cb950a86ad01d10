//! Properties that must hold for any input: parsers never panic, normalization is idempotent, a rule
//! file printed back parses to the same rules, and a decision never sends before now nor outside its delay range.

use std::path::PathBuf;

use autoseen::domain::{ChatId, IncomingMessage, MessageId, SessionName};
use autoseen::gateway::signature::{self, Algorithm};
use autoseen::gateway::wasend::parse;
use autoseen::rules::{DelayRange, Window, compile, normalize_chat_pattern};
use autoseen::secret::Secret;
use proptest::prelude::*;
use rand::SeedableRng;

fn compile_text(text: &str) -> Result<autoseen::rules::Rules, autoseen::rules::RulesError> {
    compile(&[(PathBuf::from("rules.toml"), text.to_string())])
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn the_event_parser_never_panics(body in proptest::collection::vec(any::<u8>(), 0..2048)) {
        let _ = parse(&body);
    }

    #[test]
    fn the_event_parser_never_panics_on_near_events(
        event in prop::sample::select(vec!["message", "message.any", "session.status", ""]),
        id in ".{0,40}",
        from in ".{0,40}",
        from_me in any::<bool>(),
        timestamp in prop::option::of(any::<i64>()),
    ) {
        let body = serde_json::json!({
            "event": event, "session": "s", "timestamp": timestamp,
            "payload": {"id": id, "from": from, "to": from, "fromMe": from_me},
        });
        let _ = parse(body.to_string().as_bytes());
    }

    #[test]
    fn signature_headers_never_panic_and_only_the_right_mac_passes(
        algorithm in ".{0,12}",
        header in ".{0,200}",
        body in proptest::collection::vec(any::<u8>(), 0..512),
    ) {
        let keys = signature::MacKeys::new(&[Secret::new("k")]);
        if let Ok(alg) = Algorithm::from_header(Some(&algorithm)) {
            let ok = keys.verify(alg, Some(&header), &body).is_ok();
            let right = signature::sign("k", alg, &body);
            prop_assert_eq!(ok, header.trim().eq_ignore_ascii_case(&right));
        }
    }

    #[test]
    fn chat_normalization_is_idempotent(raw in ".{0,40}") {
        if let Ok(once) = normalize_chat_pattern(&raw) {
            prop_assert_eq!(normalize_chat_pattern(&once), Ok(once.clone()));
        }
    }

    #[test]
    fn every_way_of_writing_a_phone_number_names_one_chat(cc in 1u32..999, rest in 100_000u64..99_999_999_999) {
        let digits = format!("{cc}{rest}");
        prop_assume!((7..=15).contains(&digits.len()));
        let want = format!("{digits}@c.us");
        prop_assert_eq!(normalize_chat_pattern(&format!("+{cc} {rest}")).unwrap(), want.clone());
        prop_assert_eq!(normalize_chat_pattern(&format!("00{cc}-{rest}")).unwrap(), want.clone());
        prop_assert_eq!(normalize_chat_pattern(&digits).unwrap(), want.clone());
        prop_assert_eq!(normalize_chat_pattern(&format!("{digits}@s.whatsapp.net")).unwrap(), want);
    }

    #[test]
    fn durations_and_windows_never_panic(a in ".{0,24}", b in ".{0,24}", c in ".{0,24}") {
        let _ = DelayRange::parse(&a);
        let _ = Window::parse(&a, &b, Some(&c));
        if let Ok(r) = DelayRange::parse(&a) {
            prop_assert!(r.min <= r.max);
        }
    }

    #[test]
    fn the_rule_loader_never_panics(text in ".{0,400}") {
        let _ = compile_text(&text);
    }

    #[test]
    fn a_printed_rule_file_parses_to_the_same_rules(rules in proptest::collection::vec(rule(), 0..8)) {
        let mut file = toml::Table::new();
        let mut defaults = toml::Table::new();
        defaults.insert("delay".into(), "2s..10s".into());
        file.insert("defaults".into(), toml::Value::Table(defaults));
        file.insert("rules".into(), toml::Value::Array(rules.into_iter().map(toml::Value::Table).collect()));
        let text = toml::to_string(&file).unwrap();
        // Random rules may shadow one another; those files are refused, which is right, and not counted here
        // (proptest fails the test if too many cases are skipped, so most must compile).
        let first = compile_text(&text);
        prop_assume!(first.is_ok());
        let first = first.unwrap();
        let printed = first.to_toml();
        let second = compile_text(&printed).unwrap_or_else(|e| panic!("{e}\n{printed}"));
        prop_assert!(first.same_as(&second), "{text}\n--- printed ---\n{printed}");
        prop_assert_eq!(second.to_toml(), printed);
    }

    #[test]
    fn a_decision_never_sends_before_now_and_its_delay_stays_in_its_range(
        rules in proptest::collection::vec(rule(), 0..6),
        session in prop::sample::select(vec!["sales", "support-eu", "default"]),
        chat in prop::sample::select(vec!["491511234567@c.us", "120363012345678901@g.us", "status@broadcast", "1@newsletter"]),
        text in ".{0,20}",
        has_media in any::<bool>(),
        at in 1_700_000_000i64..1_900_000_000,
        seed in any::<u64>(),
    ) {
        let mut file = toml::Table::new();
        file.insert("rules".into(), toml::Value::Array(rules.into_iter().map(toml::Value::Table).collect()));
        let Ok(r) = compile_text(&toml::to_string(&file).unwrap()) else { return Ok(()) };
        let chat = ChatId::parse(chat).unwrap();
        let message = IncomingMessage {
            session: SessionName::parse(session).unwrap(),
            sender: chat.clone(),
            chat,
            id: MessageId::parse("m").unwrap(),
            from_me: false,
            text: Some(text),
            has_media,
            sent_at: None,
            chat_phone: None,
            sender_phone: None,
            engine: None,
            gateway: autoseen::domain::Gateway::Wasend,
        };
        let now = jiff::Timestamp::from_second(at).unwrap();
        if let autoseen::rules::Decision::Seen { not_before, delay, .. } = r.decide(&message, now) {
            // Windows repeat weekly, so the next opening is within eight days.
            prop_assert!(not_before >= now, "{not_before} is before {now}");
            prop_assert!(not_before <= now + jiff::SignedDuration::from_hours(8 * 24), "{not_before}");
            let drawn = delay.sample(&mut rand::rngs::StdRng::seed_from_u64(seed));
            prop_assert!(delay.min <= drawn && drawn <= delay.max, "{drawn:?} outside {delay}");
        }
    }
}

/// One `[[rules]]` table built from the parts people write.
fn rule() -> impl Strategy<Value = toml::Table> {
    let strings = |options: Vec<&'static str>| {
        prop::option::of(proptest::sample::subsequence(
            options.clone(),
            1..=options.len(),
        ))
    };
    (
        any::<u32>(),
        strings(vec!["sales", "support-*", "team-?", "default"]),
        strings(vec![
            "+49 151 1234567",
            "0049 151 7654321",
            "491519999999@c.us",
            "*@g.us",
            "120363012345678901@g.us",
        ]),
        strings(vec!["direct", "group", "channel", "status", "broadcast"]),
        prop::option::of(prop::sample::select(vec!["(?i)hello", "^stop$", r"\d+"])),
        prop::option::of(any::<bool>()),
        prop::option::of(prop::sample::select(vec!["seen", "ignore"])),
        prop::option::of(prop::sample::select(vec![
            "0s",
            "5s",
            "2s..10s",
            "250ms..2m",
        ])),
        prop::option::of(prop::sample::select(vec![
            ("mon-fri", "09:00-18:00", "Europe/Berlin"),
            ("sat,sun", "22:00-06:00", "UTC"),
            ("daily", "00:00-24:00", "America/New_York"),
        ])),
        prop::option::of(any::<bool>()),
    )
        .prop_map(
            |(id, sessions, chats, types, text, media, action, delay, window, read)| {
                let mut t = toml::Table::new();
                t.insert("name".into(), format!("rule-{id}").into());
                let list = |v: Vec<&str>| {
                    toml::Value::Array(v.into_iter().map(toml::Value::from).collect())
                };
                if let Some(v) = sessions {
                    t.insert("sessions".into(), list(v));
                }
                if let Some(v) = chats {
                    t.insert("chats".into(), list(v));
                }
                if let Some(v) = types {
                    t.insert("chat_types".into(), list(v));
                }
                if let Some(v) = text {
                    t.insert("text".into(), v.into());
                }
                if let Some(v) = media {
                    t.insert("has_media".into(), v.into());
                }
                if let Some(v) = action {
                    t.insert("action".into(), v.into());
                }
                if let Some(v) = delay {
                    t.insert("delay".into(), v.into());
                }
                if let Some((days, hours, tz)) = window {
                    let mut w = toml::Table::new();
                    w.insert("days".into(), days.into());
                    w.insert("hours".into(), hours.into());
                    w.insert("tz".into(), tz.into());
                    t.insert(
                        "windows".into(),
                        toml::Value::Array(vec![toml::Value::Table(w)]),
                    );
                }
                if let Some(v) = read {
                    t.insert("read_on_reply".into(), v.into());
                }
                t
            },
        )
}
