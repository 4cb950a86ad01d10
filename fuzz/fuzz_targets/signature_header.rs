//! Any algorithm and signature header over any body: never panics, and only the true MAC passes.
#![no_main]
use autoseen::settings::Secret;
use autoseen::webhook::{Algorithm, signature};

libfuzzer_sys::fuzz_target!(|input: (&str, &str, &[u8])| {
    let (algorithm, header, body) = input;
    if let Ok(alg) = Algorithm::from_header(Some(algorithm)) {
        let ok = signature::verify(&[Secret::new("k")], alg, Some(header), body).is_ok();
        assert_eq!(ok, header.trim().eq_ignore_ascii_case(&signature::sign("k", alg, body)));
    }
});
