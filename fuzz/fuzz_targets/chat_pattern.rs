//! Any text as a `chats` entry: never panics, and normalizing twice changes nothing.
#![no_main]
libfuzzer_sys::fuzz_target!(|raw: &str| {
    if let Ok(once) = autoseen::rules::normalize_chat_pattern(raw) {
        assert_eq!(autoseen::rules::normalize_chat_pattern(&once), Ok(once));
    }
});
