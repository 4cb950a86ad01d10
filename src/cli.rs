//! The command line: `serve`, `check`, `explain`, `credentials` and `backup`, each reading the same config
//! folder, and `probe`.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use jiff::Timestamp;

use crate::app::{Application, shutdown_signal};
use crate::explain;
use crate::rules;
use crate::settings::{Backend, Settings};

#[derive(Parser)]
#[command(
    name = "autoseen",
    version,
    about = "Marks incoming WhatsApp messages as seen through their gateway (Wasend, WAHA, Meta, Evolution, Green API), as rules say"
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
    /// Check each session's gateway credentials with a call that marks nothing (where the gateway has one).
    Credentials {
        #[command(flatten)]
        config: ConfigDir,
        /// Sessions to check (a Meta session is its phone_number_id); default: every session the settings
        /// name, and `default` when the default gateway is Wasend/WAHA.
        #[arg(long = "session", value_name = "NAME")]
        sessions: Vec<String>,
    },
    /// Copy the SQLite store to a new file, while the service runs (PostgreSQL: use pg_dump).
    Backup {
        #[command(flatten)]
        config: ConfigDir,
        /// The new file to write; it must not exist.
        to: PathBuf,
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
        Command::Credentials { config, sessions } => credentials(&config.dir, sessions),
        Command::Backup { config, to } => backup(&config.dir, &to),
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
            for warning in r.warnings() {
                println!("warning: {warning}");
            }
            if let Ok(s) = settings {
                for warning in s.warnings() {
                    println!("warning: {warning}");
                }
                if let Err(e) = s.check_ready_to_serve() {
                    println!("note: {e}");
                }
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

fn backup(dir: &Path, to: &Path) -> ExitCode {
    let settings = match Settings::load(dir) {
        Ok(s) => s,
        Err(e) => return print_problems(e.problems.iter().map(ToString::to_string)),
    };
    let store = match settings.store.backend() {
        Backend::Sqlite { path, .. } => path,
        Backend::Postgres(_) => {
            return print_problems([
                "store.url is PostgreSQL: back it up with pg_dump of autoseen's tables \
                 (docs/operations.md#backup-and-restore)"
                    .to_string(),
            ]);
        }
    };
    match crate::store::sqlite::backup(&store, to) {
        Ok(bytes) => {
            println!(
                "ok: {} copied to {} ({bytes} bytes)",
                store.display(),
                to.display()
            );
            ExitCode::SUCCESS
        }
        Err(e) => print_problems([format!("{e:#}")]),
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
    for warning in rules.warnings() {
        tracing::warn!("{warning}");
    }
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => return print_problems([format!("cannot start the runtime: {e}")]),
    };
    let result = runtime.block_on(async {
        let clock = crate::time::Clock::system();
        let app = Application::build(dir.to_path_buf(), settings, rules, clock).await?;
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
    let out = match explain::body(&settings, &rules, &body, now) {
        Ok(out) => out,
        Err(e) => return print_problems([format!("{}: {e}", event.display())]),
    };
    println!(
        "{}",
        serde_json::to_string_pretty(&out).expect("JSON values serialize")
    );
    ExitCode::SUCCESS
}

fn credentials(dir: &Path, sessions: Vec<String>) -> ExitCode {
    use crate::gateway::{Gateway, MarkRead, Outbound, Verdict};
    let settings = match Settings::load(dir) {
        Ok(s) => s,
        Err(e) => return print_problems(e.problems.iter().map(ToString::to_string)),
    };
    let named = if sessions.is_empty() {
        let mut named: std::collections::BTreeSet<String> =
            settings.gateway.sessions.keys().cloned().collect();
        named.extend(settings.wasend.sessions.keys().cloned());
        if settings.gateway.default == Gateway::Wasend {
            named.insert("default".into());
        }
        named.into_iter().collect()
    } else {
        sessions
    };
    if named.is_empty() {
        return print_problems([
            "no session to check: name one with --session (a Meta session is its phone_number_id)"
                .into(),
        ]);
    }
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => return print_problems([format!("cannot start the runtime: {e}")]),
    };
    let outbound = match Outbound::from_settings(&settings) {
        Ok(o) => o,
        Err(e) => return print_problems([format!("{e:#}")]),
    };
    let mut failed = false;
    for name in named {
        let session = match crate::domain::SessionName::parse(&name) {
            Ok(s) => s,
            Err(e) => {
                failed = true;
                eprintln!("error: session `{name}` {e}");
                continue;
            }
        };
        let gateway = settings.gateway.of(&session);
        match runtime.block_on(outbound.check_credentials(&session)) {
            Verdict::Valid(what) => println!("ok: {name} ({gateway}): {what}"),
            Verdict::NotOffered(why) => println!("not checked: {name} ({gateway}): {why}"),
            Verdict::Refused(why) => {
                failed = true;
                eprintln!("error: {name} ({gateway}): refused: {why}");
            }
            Verdict::Unknown(why) => {
                failed = true;
                eprintln!("error: {name} ({gateway}): no verdict: {why}");
            }
        }
    }
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
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
