//! Any text as a rule file: loading never panics, and a file that loads prints back to the same rules.
#![no_main]
use std::path::PathBuf;

libfuzzer_sys::fuzz_target!(|text: &str| {
    let load = |t: &str| autoseen::rules::compile(&[(PathBuf::from("rules.toml"), t.to_string())]);
    if let Ok(rules) = load(text) {
        let again = load(&rules.to_toml()).expect("printed rules load");
        assert!(rules.same_as(&again));
    }
});
