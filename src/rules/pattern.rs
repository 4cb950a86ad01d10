//! Patterns in rule conditions: globs on session names and chat ids, and phone numbers written the way people
//! write them (`+49 151 1234567`, `0049 151…`, `49151…`), which become the chat id `49151…@c.us`.

use globset::{GlobBuilder, GlobSet, GlobSetBuilder};

use crate::domain::normalize_chat;

/// Turns a `chats` or `senders` entry into the chat-id glob it stands for. Idempotent.
pub fn normalize_chat_pattern(raw: &str) -> Result<String, String> {
    let t = raw.trim();
    if t.contains('@') {
        return Ok(normalize_chat(t).into_owned());
    }
    if t.contains(['*', '?']) {
        return Err(format!(
            "`{t}` has no `@`: a chat pattern needs the server part, like \"4915*@c.us\" or \"*@g.us\""
        ));
    }
    let phone_chars = |c: char| c.is_ascii_digit() || " +-().\u{a0}/".contains(c);
    if t.is_empty() || !t.chars().all(phone_chars) {
        return Err(format!(
            "`{t}` is neither a chat id (\"491511234567@c.us\", \"1203…@g.us\") nor a phone number (\"+49 151 1234567\")"
        ));
    }
    let digits: String = t.chars().filter(char::is_ascii_digit).collect();
    let digits = if t.starts_with('+') {
        digits
    } else if let Some(rest) = digits.strip_prefix("00") {
        rest.to_string()
    } else if digits.starts_with('0') {
        return Err(format!(
            "`{t}` looks like a national number; write it with the country code, like \"+49 151 1234567\""
        ));
    } else {
        digits
    };
    if !(7..=15).contains(&digits.len()) {
        return Err(format!(
            "`{t}` has {} digits; a phone number with country code has 7 to 15",
            digits.len()
        ));
    }
    Ok(format!("{digits}@c.us"))
}

/// Compiles globs (`*` any run, `?` one character) that must match the whole string.
pub fn glob_set(patterns: &[String]) -> Result<GlobSet, String> {
    let mut set = GlobSetBuilder::new();
    for p in patterns {
        let glob = GlobBuilder::new(p)
            .literal_separator(false)
            .backslash_escape(true)
            .build()
            .map_err(|e| format!("`{p}` is not a valid pattern: {}", e.kind()))?;
        set.add(glob);
    }
    set.build().map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phone_numbers_in_common_forms_become_one_chat_id() {
        for raw in [
            "+49 151 1234567",
            "0049 151 1234567",
            "491511234567",
            "+49 (151) 123-4567",
        ] {
            assert_eq!(
                normalize_chat_pattern(raw).unwrap(),
                "491511234567@c.us",
                "{raw}"
            );
        }
    }

    #[test]
    fn normalization_is_idempotent() {
        for raw in [
            "+49 151 1234567",
            "491511234567@s.whatsapp.net",
            "*@g.us",
            "status@broadcast",
        ] {
            let once = normalize_chat_pattern(raw).unwrap();
            assert_eq!(normalize_chat_pattern(&once).unwrap(), once, "{raw}");
        }
    }

    #[test]
    fn national_numbers_and_nonsense_are_refused_with_a_hint() {
        assert!(
            normalize_chat_pattern("0151 1234567")
                .unwrap_err()
                .contains("country code")
        );
        assert!(
            normalize_chat_pattern("boss")
                .unwrap_err()
                .contains("neither")
        );
        assert!(
            normalize_chat_pattern("4915*")
                .unwrap_err()
                .contains("server part")
        );
        assert!(
            normalize_chat_pattern("+49 1")
                .unwrap_err()
                .contains("digits")
        );
    }

    #[test]
    fn globs_match_whole_ids() {
        let set = glob_set(&["support-*".into(), "sales".into()]).unwrap();
        assert!(set.is_match("support-eu"));
        assert!(set.is_match("sales"));
        assert!(!set.is_match("sales-2"));
        assert!(glob_set(&["[a-".into()]).is_err());
    }
}
