//! Any bytes as a webhook body: parsing never panics.
#![no_main]
libfuzzer_sys::fuzz_target!(|body: &[u8]| {
    let _ = autoseen::webhook::parse(body);
});
