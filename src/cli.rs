//! The command line: `serve`, `check` and `explain`, each reading the same config folder.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use jiff::Timestamp;
use serde_json::json;

use crate::app::{Application, shutdown_signal};
use crate::domain::{Ack, IncomingMessage};
use crate::rules::{self, Decision};
use crate::settings::{Flavor, Settings};
use crate::time::add;
use crate::webhook::{self, Event};

#[derive(Parser)]
#[command(
    name = "autoseen",
    version,
    about = "Marks incoming WhatsApp messages as seen through Wasend, as rules say"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Args)]
struct ConfigDir {
    /// Folder holding autoseen.toml and rules.toml.
    #[arg(
        long = "config",
        env = "AUTOSEEN_CONFIG",
        default_value = "config",
        value_name = "DIR"
    )]
    dir: PathBuf,
}

#[derive(Subcommand)]
enum Command {
    /// Run the service.
    Serve(ConfigDir),
    /// Check settings and rules; print `ok: N rules` or every problem.
    Check(ConfigDir),
    /// Print what the service would do with a webhook body.
    Explain {
        #[command(flatten)]
        config: ConfigDir,
        /// The webhook body (JSON); `-` reads standard input.
        event: PathBuf,
        /// Decide as if it were this moment (RFC 3339, e.g. 2026-11-26T09:30:00+01:00); default now.
        #[arg(long)]
        at: Option<String>,
    },
    /// GET a URL and exit 0 on a 2xx answer: a health check for images without curl.
    Probe {
        /// For example http://127.0.0.1:8080/readyz
        url: String,
    },
}

pub fn run() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve(c) => serve(&c.dir),
        Command::Check(c) => check(&c.dir),
        Command::Explain { config, event, at } => explain(&config.dir, &event, at.as_deref()),
        Command::Probe { url } => probe(&url),
    }
}

fn print_problems(problems: impl IntoIterator<Item = String>) -> ExitCode {
    for p in problems {
        eprintln!("error: {p}");
    }
    ExitCode::FAILURE
}

fn check(dir: &Path) -> ExitCode {
    let mut problems = Vec::new();
    let settings = Settings::load(dir);
    if let Err(e) = &settings {
        problems.extend(e.problems.iter().map(ToString::to_string));
    }
    match rules::load(dir) {
        Ok(r) if problems.is_empty() => {
            println!("ok: {} rules", r.len());
            if let Ok(s) = settings
                && let Err(e) = s.check_ready_to_serve()
            {
                println!("note: {e}");
            }
            ExitCode::SUCCESS
        }
        Ok(_) => print_problems(problems),
        Err(e) => print_problems(
            problems
                .into_iter()
                .chain(e.0.iter().map(ToString::to_string)),
        ),
    }
}

fn serve(dir: &Path) -> ExitCode {
    let settings = match Settings::load(dir).and_then(|s| s.check_ready_to_serve().map(|()| s)) {
        Ok(s) => s,
        Err(e) => return print_problems(e.problems.iter().map(ToString::to_string)),
    };
    let rules = match rules::load(dir) {
        Ok(r) => r,
        Err(e) => return print_problems(e.0.iter().map(ToString::to_string)),
    };
    let _log_guard = crate::telemetry::init(&settings.log);
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => return print_problems([format!("cannot start the runtime: {e}")]),
    };
    let result = runtime.block_on(async {
        let app = Application::build(dir.to_path_buf(), settings, rules).await?;
        app.run(shutdown_signal()).await
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = format!("{e:#}"), "autoseen stopped on an error");
            print_problems([format!("{e:#}")])
        }
    }
}

fn explain(dir: &Path, event: &Path, at: Option<&str>) -> ExitCode {
    let settings = match Settings::load(dir) {
        Ok(s) => s,
        Err(e) => return print_problems(e.problems.iter().map(ToString::to_string)),
    };
    let rules = match rules::load(dir) {
        Ok(r) => r,
        Err(e) => return print_problems(e.0.iter().map(ToString::to_string)),
    };
    let now = match at.map(str::parse::<jiff::ZonedDateTime>) {
        None => Timestamp::now(),
        Some(Ok(z)) => z.timestamp(),
        Some(Err(_)) => match at.map(str::parse::<Timestamp>) {
            Some(Ok(t)) => t,
            _ => {
                return print_problems([format!(
                    "--at `{}` is not an RFC 3339 time like 2026-11-26T09:30:00+01:00",
                    at.unwrap_or_default()
                )]);
            }
        },
    };
    let mut body = Vec::new();
    let read = if event.as_os_str() == "-" {
        std::io::stdin().read_to_end(&mut body).map(drop)
    } else {
        std::fs::read(event).map(|b| body = b)
    };
    if let Err(e) = read {
        return print_problems([format!("{}: cannot read it ({e})", event.display())]);
    }
    let out = match webhook::parse(&body) {
        Ok(Event::Message(m)) => explain_message(&settings, &rules, &m, now),
        Ok(Event::Ack(ack)) => explain_ack(&ack),
        Ok(Event::Other { event: kind }) => {
            json!({"decision": "ignore", "rule": null, "reason": format!("event `{kind}` is not a message")})
        }
        Err(e) => return print_problems([format!("{}: {e}", event.display())]),
    };
    println!(
        "{}",
        serde_json::to_string_pretty(&out).expect("JSON values serialize")
    );
    ExitCode::SUCCESS
}

/// What the service would do with a message: the chat it files it under, the decision and why.
fn explain_message(
    settings: &Settings,
    rules: &rules::Rules,
    m: &IncomingMessage,
    now: Timestamp,
) -> serde_json::Value {
    let mut out = match rules.decide(m, now) {
        Decision::Ignore { rule, reason } => {
            json!({"decision": "ignore", "rule": rule, "reason": reason.as_str()})
        }
        Decision::Seen {
            rule,
            not_before,
            delay,
            ..
        } => json!({
            "decision": "seen",
            "rule": rule,
            "reason": if not_before == now { "matched" } else { "matched; waits for the next window" },
            "delay": delay.to_string(),
            "earliest": add(not_before, delay.min).to_string(),
            "latest": add(not_before, delay.max).to_string(),
        }),
        Decision::OnReply { rule, max_wait } => {
            let (reason, latest) = match max_wait {
                Some(w) => (
                    "held until a reply of ours in the chat or the bot endpoint; sent anyway at `latest`",
                    Some(add(now, w).to_string()),
                ),
                None => (
                    "held until a reply of ours in the chat or the bot endpoint; dropped unsent when store.dedup_window ends",
                    None,
                ),
            };
            json!({"decision": "on_reply", "rule": rule, "reason": reason, "latest": latest})
        }
    };
    out["chat"] = json!(m.chat);
    out["chat_phone"] = json!(m.chat_phone);
    out["sender"] = json!(m.sender);
    out["sender_phone"] = json!(m.sender_phone);
    let mut notes = Vec::new();
    if m.lid_without_phone() {
        notes.push("the chat or sender is a LID that came without its phone number: phone-number rules (`chats`, `senders`) cannot match it; rules naming the LID can");
    }
    let flavor = settings
        .wasend
        .sessions
        .get(m.session.as_str())
        .and_then(|o| o.flavor)
        .unwrap_or(settings.wasend.flavor);
    if flavor == Flavor::Waha && m.engine.as_deref() == Some("WEBJS") {
        notes.push("WAHA's WEBJS engine ignores `messageIds`: its sendSeen marks the whole chat read, not just this message");
    }
    out["notes"] = json!(notes);
    out
}

/// What the service would do with an ack.
fn explain_ack(ack: &Ack) -> serde_json::Value {
    let (decision, reason) = if ack.from_me {
        ("ignore", "ack_of_own_message")
    } else if !ack.level.is_read() {
        ("ignore", "ack_not_read")
    } else {
        (
            "ack",
            "this account read the message: waiting receipts of its chat up to it are cancelled, a sent one is confirmed",
        )
    };
    json!({"decision": decision, "rule": null, "reason": reason, "chat": ack.chat, "message": ack.bare})
}

fn probe(url: &str) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => return print_problems([format!("cannot start the runtime: {e}")]),
    };
    let result = runtime.block_on(async {
        reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(3))
            .build()?
            .get(url)
            .send()
            .await
    });
    match result {
        Ok(r) if r.status().is_success() => ExitCode::SUCCESS,
        Ok(r) => print_problems([format!("{url} answered {}", r.status())]),
        Err(e) => print_problems([format!("{url}: {e}")]),
    }
}
