//! Micro-benchmarks, each beside a baseline measured in the same run: the signature check against one bare
//! SHA-512 of the body, event parsing against parsing the same body into a `serde_json::Value`, and rule
//! matching on a 200-rule file against a file with only `[defaults]`.

use std::path::PathBuf;

use autoseen::domain::Event;
use autoseen::gateway::signature::{self, Algorithm};
use autoseen::gateway::wasend::parse;
use autoseen::rules::compile;
use autoseen::settings::Secret;
use criterion::{Criterion, criterion_group, criterion_main};
use sha2::Digest;
use std::hint::black_box;

const BODY: &str = r#"{"id":"evt_1","timestamp":1764147600000,"event":"message","session":"default","me":{"id":"4900000000@c.us","pushName":"bot"},"payload":{"id":"false_491511234567@c.us_3EB0A1B2C3D4E5F6","timestamp":1764147600,"from":"491511234567@c.us","fromMe":false,"to":"4900000000@c.us","body":"Hello, is this still available?","hasMedia":false,"ack":1,"_data":{"notifyName":"Customer","type":"chat"}},"engine":"WEBJS","environment":{"version":"2025.1","engine":"WEBJS","tier":"PLUS"}}"#;

fn rules_file(n: usize) -> String {
    let mut text = String::from("[defaults]\ndelay = \"2s..10s\"\n");
    for i in 0..n {
        // Distinct sessions and chats, so no rule shadows another; the message matches none of them.
        text.push_str(&format!(
            "\n[[rules]]\nname = \"r{i}\"\nsessions = [\"team-{i}-*\"]\nchats = [\"4917{i:08}@c.us\", \"1203{i:014}@g.us\"]\nchat_types = [\"direct\", \"group\"]\ndelay = \"{}s\"\n",
            i % 30
        ));
    }
    text
}

fn benches(c: &mut Criterion) {
    let keys = signature::MacKeys::new(&[Secret::new("my-secret-key")]);
    let sig = signature::sign("my-secret-key", Algorithm::Sha512, BODY.as_bytes());
    let mut g = c.benchmark_group("signature");
    g.bench_function("baseline: sha512 of the body", |b| {
        b.iter(|| sha2::Sha512::digest(black_box(BODY.as_bytes())))
    });
    g.bench_function("verify hmac-sha512", |b| {
        b.iter(|| {
            keys.verify(
                Algorithm::Sha512,
                Some(black_box(&sig)),
                black_box(BODY.as_bytes()),
            )
        })
    });
    g.finish();

    let mut g = c.benchmark_group("parse");
    g.bench_function("baseline: serde_json::Value", |b| {
        b.iter(|| serde_json::from_slice::<serde_json::Value>(black_box(BODY.as_bytes())).unwrap())
    });
    g.bench_function("webhook::parse", |b| {
        b.iter(|| parse(black_box(BODY.as_bytes())).unwrap())
    });
    g.finish();

    let Event::Message(message) = parse(BODY.as_bytes()).unwrap() else {
        unreachable!()
    };
    let now: jiff::Timestamp = "2026-11-26T10:00:00Z".parse().unwrap();
    let one = compile(&[(PathBuf::from("rules.toml"), rules_file(0))]).unwrap();
    let many = compile(&[(PathBuf::from("rules.toml"), rules_file(200))]).unwrap();
    let mut g = c.benchmark_group("decide");
    g.bench_function("baseline: defaults only", |b| {
        b.iter(|| one.decide(black_box(&message), now))
    });
    g.bench_function("200 rules, none matching", |b| {
        b.iter(|| many.decide(black_box(&message), now))
    });
    g.finish();
}

criterion_group!(micro, benches);
criterion_main!(micro);
