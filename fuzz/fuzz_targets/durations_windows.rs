//! Any text as a delay or a window: never panics; a parsed range never runs backwards.
#![no_main]
libfuzzer_sys::fuzz_target!(|input: (&str, &str, &str)| {
    let (a, b, c) = input;
    if let Ok(r) = autoseen::rules::DelayRange::parse(a) {
        assert!(r.min <= r.max);
    }
    let _ = autoseen::rules::Window::parse(a, b, Some(c));
});
