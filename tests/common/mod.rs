//! Test harness: a fake Wasend API served on 127.0.0.1, and autoseen started on port 0 against it, with its
//! own config folder and store in a temporary directory.
//!
//! [`TestApp::spawn`] builds the app inside the test process (`Application::build`, then `local_addr`: the
//! zero2prod `spawn_app` pattern), which is fast and needs nothing global. [`TestApp::spawn_process`] starts
//! the real binary instead, for what only a process has: signals (SIGKILL, SIGTERM, SIGHUP), restarts, its log
//! lines, and the Prometheus recorder (global per process); it reads the port from the `listening` line.
#![allow(dead_code)]

pub mod pg;

use std::collections::VecDeque;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use serde_json::{Value, json};

pub const API_KEY: &str = "test-api-key-5f1c";
pub const HMAC_KEY: &str = "test-hmac-key-9a2e";
pub const ADMIN_TOKEN: &str = "test-admin-token-77b0";
/// Meta: the app secret that signs webhooks, the handshake's verify token, the Graph API token.
pub const META_APP_SECRET: &str = "test-meta-app-secret-3c1d";
pub const META_VERIFY_TOKEN: &str = "test-meta-verify-token-8e4f";
pub const META_ACCESS_TOKEN: &str = "test-meta-access-token-2b7a";
/// Evolution: the header token, the JWT key, the instance's API key, and the instance of every fixture.
pub const EVOLUTION_TOKEN: &str = "test-evolution-token-4d2a";
pub const EVOLUTION_JWT_KEY: &str = "test-evolution-jwt-key-9b1e";
pub const EVOLUTION_API_KEY: &str = "test-evolution-api-key-7c3f";
pub const EVOLUTION_INSTANCE: &str = "sales";
/// Green API: the webhook token, the instance's API token, and the instance of every Green fixture.
pub const GREEN_WEBHOOK_TOKEN: &str = "test-green-webhook-token-6a9c";
pub const GREEN_API_TOKEN: &str = "test-green-api-token-0f3b";
pub const GREEN_INSTANCE: &str = "1101000001";
/// The business number (`phone_number_id`) of every Meta fixture.
pub const META_NUMBER: &str = "730011223344551";
/// `server.shutdown_timeout` of every app under test.
pub const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(5);

/// Polls `check` until it returns `Some`, or panics after `timeout` with `what`.
pub async fn eventually<T>(
    timeout: Duration,
    what: &str,
    mut check: impl AsyncFnMut() -> Option<T>,
) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for: {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

// ---------------------------------------------------------------------------------------------------------
// The fake Wasend API.

/// One request the fake API received.
#[derive(Debug, Clone)]
pub struct Call {
    pub at: Instant,
    pub method: String,
    pub path: String,
    /// The query string, when there is one.
    pub query: Option<String>,
    pub authorization: Option<String>,
    /// WAHA's key header (`X-Api-Key`), or Evolution's (`apikey`).
    pub api_key: Option<String>,
    pub body: Value,
}

impl Call {
    /// The message a Wasend call (or a Meta call, a Green readChat, an Evolution call's first key) marks.
    pub fn message_id(&self) -> &str {
        self.body["messageId"]
            .as_str()
            .or(self.body["message_id"].as_str())
            .or(self.body["idMessage"].as_str())
            .or(self.body["readMessages"][0]["id"].as_str())
            .unwrap_or_default()
    }

    /// The keys an Evolution markMessageAsRead call reads: `(remoteJid, id)` each.
    pub fn evolution_keys(&self) -> Vec<(String, String)> {
        self.body["readMessages"]
            .as_array()
            .map(|keys| {
                keys.iter()
                    .map(|k| {
                        (
                            k["remoteJid"].as_str().unwrap_or_default().to_string(),
                            k["id"].as_str().unwrap_or_default().to_string(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The chat and message a Green readChat call reads up to.
    pub fn green_read(&self) -> (&str, &str) {
        (
            self.body["chatId"].as_str().unwrap_or_default(),
            self.body["idMessage"].as_str().unwrap_or_default(),
        )
    }

    /// The message a Meta Graph API call marks.
    pub fn meta_message_id(&self) -> &str {
        self.body["message_id"].as_str().unwrap_or_default()
    }

    /// The messages a WAHA call marks.
    pub fn message_ids(&self) -> Vec<String> {
        self.body["messageIds"]
            .as_array()
            .map(|ids| {
                ids.iter()
                    .filter_map(|i| i.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// A canned answer.
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: u16,
    pub headers: Vec<(&'static str, String)>,
    pub body: String,
    /// Never answer: the request hangs until the client gives up.
    pub hang: bool,
}

impl Answer {
    pub fn status(status: u16) -> Self {
        Self {
            status,
            headers: vec![],
            body: json!({"status": status}).to_string(),
            hang: false,
        }
    }

    pub fn hang() -> Self {
        Self {
            hang: true,
            ..Self::status(200)
        }
    }

    pub fn body(mut self, body: impl Into<String>) -> Self {
        self.body = body.into();
        self
    }

    pub fn header(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }
}

#[derive(Default)]
struct FakeState {
    calls: Mutex<Vec<Call>>,
    script: Mutex<VecDeque<Answer>>,
    fallback: Mutex<Option<Answer>>,
    per_session: Mutex<std::collections::HashMap<String, Answer>>,
}

pub struct FakeWasend {
    pub addr: SocketAddr,
    state: Arc<FakeState>,
    server: tokio::task::JoinHandle<()>,
}

impl FakeWasend {
    pub async fn start() -> Self {
        Self::start_on("127.0.0.1:0".parse().unwrap()).await
    }

    pub async fn start_on(addr: SocketAddr) -> Self {
        let state = Arc::new(FakeState::default());
        let app = Router::new()
            .fallback(any(record))
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .expect("fake Wasend binds");
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Self {
            addr,
            state,
            server,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The next calls get these answers, in order; after them, the fallback (200 unless set).
    pub fn script(&self, answers: impl IntoIterator<Item = Answer>) {
        self.state.script.lock().unwrap().extend(answers);
    }

    /// Every call for `session` gets this answer (before the script).
    pub fn answer_session(&self, session: &str, answer: Answer) {
        self.state
            .per_session
            .lock()
            .unwrap()
            .insert(session.into(), answer);
    }

    pub fn answer_always(&self, answer: Answer) {
        *self.state.fallback.lock().unwrap() = Some(answer);
    }

    pub fn calls(&self) -> Vec<Call> {
        self.state.calls.lock().unwrap().clone()
    }

    pub fn ids(&self) -> Vec<String> {
        self.calls()
            .iter()
            .map(|c| c.message_id().to_string())
            .collect()
    }

    pub async fn wait_for_calls(&self, n: usize, timeout: Duration) -> Vec<Call> {
        eventually(timeout, &format!("{n} sendSeen calls"), async || {
            let calls = self.calls();
            (calls.len() >= n).then_some(calls)
        })
        .await
    }

    pub fn stop(self) {
        self.server.abort();
    }
}

async fn record(
    State(state): State<Arc<FakeState>>,
    method: axum::http::Method,
    uri: axum::http::Uri,
    headers: HeaderMap,
    body: String,
) -> Response {
    let call = Call {
        at: Instant::now(),
        method: method.to_string(),
        path: uri.path().to_string(),
        query: uri.query().map(String::from),
        authorization: headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .map(String::from),
        api_key: headers
            .get("x-api-key")
            .or(headers.get("apikey"))
            .and_then(|v| v.to_str().ok())
            .map(String::from),
        body: serde_json::from_str(&body).unwrap_or(Value::Null),
    };
    // Wasend and WAHA name the session in the body; Meta in the path (`/{version}/{number}/messages`), Green
    // too (`/waInstance{id}/readChat/{token}`).
    let session = call.body["session"]
        .as_str()
        .map(String::from)
        .or_else(|| {
            let path = call.path.strip_suffix("/messages")?;
            path.rsplit('/').next().map(String::from)
        })
        .or_else(|| {
            let rest = call.path.strip_prefix("/waInstance")?;
            rest.split('/').next().map(String::from)
        })
        .or_else(|| {
            let rest = call.path.strip_prefix("/chat/markMessageAsRead/")?;
            Some(rest.to_string())
        })
        .unwrap_or_default();
    state.calls.lock().unwrap().push(call);
    let for_session = state.per_session.lock().unwrap().get(&session).cloned();
    let answer = for_session
        .or_else(|| state.script.lock().unwrap().pop_front())
        .or_else(|| state.fallback.lock().unwrap().clone())
        .unwrap_or_else(|| Answer::status(200));
    if answer.hang {
        std::future::pending::<()>().await;
    }
    let mut response = (StatusCode::from_u16(answer.status).unwrap(), answer.body).into_response();
    for (name, value) in answer.headers {
        response.headers_mut().insert(name, value.parse().unwrap());
    }
    response
}

// ---------------------------------------------------------------------------------------------------------
// The app under test.

/// Rules that ignore everything but group messages from the sender `phone`, marked at once under `name`.
pub fn group_sender_rules(name: &str, phone: &str) -> String {
    format!(
        "[defaults]\naction = \"ignore\"\n\n[[rules]]\nname = \"{name}\"\nchat_types = [\"group\"]\n\
         senders = [\"{phone}\"]\naction = \"seen\"\ndelay = \"0s\"\n"
    )
}

/// Rules that mark every message an hour after it arrives: receipts stay pending for the whole test.
pub const HOUR_RULES: &str = "[defaults]\naction = \"seen\"\ndelay = \"1h\"\n";

pub const BASE_RULES: &str = r#"
[defaults]
action = "seen"
delay = "0s"
"#;

/// How to start autoseen.
pub struct Options {
    pub rules: String,
    pub env: Vec<(String, String)>,
    pub hmac: bool,
    /// Whether `admin.token` is set (the admin endpoints and the console are on).
    pub admin: bool,
    /// Where the rules really live when `rules.toml` is a link to a file outside the config folder.
    pub rules_outside: Option<PathBuf>,
    /// The clock of an in-process app (a process always reads the real one).
    pub clock: autoseen::time::Clock,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            rules: BASE_RULES.into(),
            env: vec![],
            hmac: true,
            admin: true,
            rules_outside: None,
            clock: autoseen::time::Clock::system(),
        }
    }
}

impl Options {
    pub fn rules(mut self, rules: &str) -> Self {
        self.rules = rules.into();
        self
    }

    /// Sets `section.key` through its environment variable.
    pub fn set(mut self, key: &str, value: &str) -> Self {
        let var = format!("AUTOSEEN__{}", key.replace('.', "__").to_uppercase());
        self.env.push((var, value.into()));
        self
    }

    /// Writes the rules to `file` and makes `rules.toml` a link to it, so editing `file` is seen by no watcher
    /// of the config folder.
    pub fn rules_linked_from(mut self, file: &Path) -> Self {
        self.rules_outside = Some(file.to_path_buf());
        self
    }

    pub fn without_hmac(mut self) -> Self {
        self.hmac = false;
        self
    }

    /// An in-process app whose clock reads `wall` now (and advances with tokio's clock from there).
    pub fn clock_at(mut self, wall: jiff::Timestamp) -> Self {
        self.clock = autoseen::time::Clock::starting_at(wall);
        self
    }

    pub fn without_admin(mut self) -> Self {
        self.admin = false;
        self
    }
}

/// How the app under test runs.
enum Runner {
    /// Inside this test process; cancelling the token shuts it down as SIGTERM would.
    InProcess {
        stop: tokio_util::sync::CancellationToken,
        task: tokio::task::JoinHandle<()>,
    },
    /// The real binary, with its output collected line by line.
    Process {
        child: Child,
        logs: Arc<Mutex<Vec<String>>>,
    },
}

pub struct TestApp {
    pub addr: SocketAddr,
    pub dir: tempfile::TempDir,
    runner: Runner,
    options: Options,
    pub http: reqwest::Client,
}

impl TestApp {
    /// The app inside the test process.
    pub async fn spawn(fake: &FakeWasend, options: Options) -> Self {
        Self::spawn_with_api(&fake.url(), options).await
    }

    /// The app inside the test process, against any API URL.
    pub async fn spawn_with_api(api_url: &str, options: Options) -> Self {
        let dir = config_folder(api_url, &options);
        let (runner, addr) = start_in_process(dir.path(), &options).await;
        Self::new(dir, runner, addr, options)
    }

    /// The real binary, for signals, restarts, logs and metrics.
    pub async fn spawn_process(fake: &FakeWasend, options: Options) -> Self {
        Self::spawn_process_with_api(&fake.url(), options).await
    }

    pub async fn spawn_process_with_api(api_url: &str, options: Options) -> Self {
        let dir = config_folder(api_url, &options);
        let (child, logs, addr) = start(dir.path(), &options).await;
        Self::new(dir, Runner::Process { child, logs }, addr, options)
    }

    fn new(dir: tempfile::TempDir, runner: Runner, addr: SocketAddr, options: Options) -> Self {
        Self {
            addr,
            dir,
            runner,
            options,
            http: reqwest::Client::new(),
        }
    }

    fn child(&mut self) -> &mut Child {
        match &mut self.runner {
            Runner::Process { child, .. } => child,
            Runner::InProcess { .. } => panic!("this test needs TestApp::spawn_process"),
        }
    }
}

/// A config folder for the app: the options' rules, and settings pointing at the API and a store inside it.
fn config_folder(api_url: &str, options: &Options) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("config")).unwrap();
    let rules = dir.path().join("config/rules.toml");
    match &options.rules_outside {
        Some(file) => {
            std::fs::write(file, &options.rules).unwrap();
            std::os::unix::fs::symlink(file, &rules).unwrap();
        }
        None => std::fs::write(&rules, &options.rules).unwrap(),
    }
    let settings = format!(
        r#"
[server]
listen = "127.0.0.1:0"
shutdown_timeout = "{shutdown_timeout}s"

[wasend]
base_url = "{api_url}"
timeout = "2s"

[meta]
base_url = "{api_url}"
timeout = "2s"

[green]
api_url = "{api_url}"
timeout = "2s"

[evolution]
base_url = "{api_url}"
timeout = "2s"

[delivery]
backoff_initial = "100ms"
backoff_max = "400ms"
rate_per_session = "off"
max_attempts = 5

[store]
url = "sqlite:{store}"
{admin}
"#,
        store = dir.path().join("data/autoseen.db").display(),
        shutdown_timeout = SHUTDOWN_TIMEOUT.as_secs(),
        admin = if options.admin {
            format!("[admin]\ntoken = \"{ADMIN_TOKEN}\"")
        } else {
            String::new()
        }
    );
    std::fs::write(dir.path().join("config/autoseen.toml"), settings).unwrap();
    dir
}

/// The environment the app gets: the API key, the HMAC key unless off, and the options' settings.
fn environment(options: &Options) -> Vec<(String, String)> {
    let mut env = vec![
        ("AUTOSEEN__WASEND__API_KEY".to_string(), API_KEY.to_string()),
        ("AUTOSEEN__META__APP_SECRET".into(), META_APP_SECRET.into()),
        (
            "AUTOSEEN__META__VERIFY_TOKEN".into(),
            META_VERIFY_TOKEN.into(),
        ),
        (
            "AUTOSEEN__META__ACCESS_TOKEN".into(),
            META_ACCESS_TOKEN.into(),
        ),
        (
            "AUTOSEEN__GREEN__WEBHOOK_TOKEN".into(),
            GREEN_WEBHOOK_TOKEN.into(),
        ),
        ("AUTOSEEN__GREEN__API_TOKEN".into(), GREEN_API_TOKEN.into()),
        ("AUTOSEEN__EVOLUTION__TOKEN".into(), EVOLUTION_TOKEN.into()),
        (
            "AUTOSEEN__EVOLUTION__JWT_KEY".into(),
            EVOLUTION_JWT_KEY.into(),
        ),
        (
            "AUTOSEEN__EVOLUTION__API_KEY".into(),
            EVOLUTION_API_KEY.into(),
        ),
    ];
    if options.hmac {
        env.push(("AUTOSEEN__WEBHOOK__HMAC_KEY".into(), HMAC_KEY.into()));
    } else if !options
        .env
        .iter()
        .any(|(k, _)| k == "AUTOSEEN__WEBHOOK__TOKEN")
    {
        // Without a key or a token the webhook is open, which `serve` refuses unless told it is meant.
        env.push(("AUTOSEEN__WEBHOOK__ALLOW_UNSIGNED".into(), "true".into()));
    }
    env.extend(options.env.iter().cloned());
    env
}

async fn start_in_process(dir: &Path, options: &Options) -> (Runner, SocketAddr) {
    let config = dir.join("config");
    let env = environment(options).into_iter().collect();
    let settings = autoseen::settings::Settings::load_with_env(&config, Some(env))
        .unwrap_or_else(|e| panic!("settings: {e}"));
    let rules = autoseen::rules::load(&config).unwrap_or_else(|e| panic!("rules: {e}"));
    let app = autoseen::app::Application::build(config, settings, rules, options.clock)
        .await
        .expect("the app builds");
    let addr = app.local_addr();
    let stop = tokio_util::sync::CancellationToken::new();
    let shutdown = stop.clone().cancelled_owned();
    let task = tokio::spawn(async move {
        app.run(shutdown).await.expect("the app runs");
    });
    (Runner::InProcess { stop, task }, addr)
}

impl TestApp {
    pub fn config_dir(&self) -> PathBuf {
        self.dir.path().join("config")
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Starts the process again on the same config and store (after `kill` or `terminate`).
    pub async fn restart(&mut self) {
        self.child();
        let (child, logs, addr) = start(self.dir.path(), &self.options).await;
        self.runner = Runner::Process { child, logs };
        self.addr = addr;
    }

    /// SIGKILL: no chance to clean up.
    pub fn kill(&mut self) {
        let child = self.child();
        child.kill().unwrap();
        child.wait().unwrap();
    }

    /// SIGTERM, then waits for the exit.
    pub async fn terminate(&mut self, timeout: Duration) -> ExitStatus {
        let pid = self.pid().to_string();
        Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        eventually(timeout, "the process to exit", async || {
            self.child().try_wait().unwrap()
        })
        .await
    }

    /// Sends SIGHUP to the process.
    pub fn hangup(&mut self) {
        let pid = self.pid().to_string();
        Command::new("kill").args(["-HUP", &pid]).status().unwrap();
    }

    pub fn pid(&mut self) -> u32 {
        self.child().id()
    }

    /// The first output line that `matches`, waiting up to 10 s for it.
    pub async fn wait_for_log(&self, matches: impl Fn(&str) -> bool) -> String {
        eventually(Duration::from_secs(10), "a matching log line", async || {
            self.logs().into_iter().find(|l| matches(l))
        })
        .await
    }

    /// The process's output lines so far.
    pub fn logs(&self) -> Vec<String> {
        match &self.runner {
            Runner::Process { logs, .. } => logs.lock().unwrap().clone(),
            Runner::InProcess { .. } => panic!("logs need TestApp::spawn_process"),
        }
    }

    /// Posts a body to /webhook, signed with the test key unless HMAC is off.
    pub async fn post(&self, body: &str) -> reqwest::Response {
        self.post_to("/webhook", body).await
    }

    pub async fn post_to(&self, path: &str, body: &str) -> reqwest::Response {
        let mut request = self
            .http
            .post(self.url(path))
            .header("content-type", "application/json")
            .body(body.to_string());
        if self.options.hmac {
            request = request
                .header("x-webhook-hmac", sign(body))
                .header("x-webhook-hmac-algorithm", "sha512");
        }
        request.send().await.unwrap()
    }

    /// Posts a body to /webhook/meta, signed with the test app secret as Meta signs it.
    pub async fn post_meta(&self, body: &str) -> (u16, Value) {
        let signature = format!("sha256={}", meta_sign(body));
        self.post_meta_with(body, Some(&signature)).await
    }

    /// Posts a body to /webhook/meta with this `X-Hub-Signature-256` (or none).
    pub async fn post_meta_with(&self, body: &str, signature: Option<&str>) -> (u16, Value) {
        let mut request = self
            .http
            .post(self.url("/webhook/meta"))
            .header("content-type", "application/json")
            .body(body.to_string());
        if let Some(signature) = signature {
            request = request.header("x-hub-signature-256", signature);
        }
        let r = request.send().await.unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    /// Posts an event to `path` (`/webhook/evolution…`) with these headers.
    pub async fn post_evolution_with(
        &self,
        path: &str,
        body: &str,
        headers: &[(&str, &str)],
    ) -> (u16, Value) {
        let mut request = self
            .http
            .post(self.url(path))
            .header("content-type", "application/json")
            .body(body.to_string());
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let r = request.send().await.unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    /// Posts an event to /webhook/evolution with the test header token, as an instance webhook sends it.
    pub async fn post_evolution(&self, body: &str) -> (u16, Value) {
        self.post_evolution_with(
            "/webhook/evolution",
            body,
            &[("x-autoseen-token", EVOLUTION_TOKEN)],
        )
        .await
    }

    /// Posts a notification to /webhook/green with this `Authorization` header (or none).
    pub async fn post_green_with(&self, body: &str, authorization: Option<&str>) -> (u16, Value) {
        let mut request = self
            .http
            .post(self.url("/webhook/green"))
            .header("content-type", "application/json")
            .body(body.to_string());
        if let Some(authorization) = authorization {
            request = request.header("authorization", authorization);
        }
        let r = request.send().await.unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    /// Posts a notification to /webhook/green with the test webhook token, as Green sends it.
    pub async fn post_green(&self, body: &str) -> (u16, Value) {
        let authorization = format!("Bearer {GREEN_WEBHOOK_TOKEN}");
        self.post_green_with(body, Some(&authorization)).await
    }

    /// The pending receipts, as `/admin/pending` lists them.
    pub async fn pending(&self) -> Vec<Value> {
        let (_, v) = self.admin(reqwest::Method::GET, "/admin/pending").await;
        v["pending"].as_array().cloned().unwrap_or_default()
    }

    /// The message ids of the pending receipts.
    pub async fn pending_ids(&self) -> Vec<String> {
        let pending = self.pending().await;
        pending
            .iter()
            .map(|r| r["message_id"].as_str().unwrap_or_default().to_string())
            .collect()
    }

    /// Waits until nothing is pending.
    pub async fn wait_until_nothing_pending(&self, timeout: Duration) {
        eventually(timeout, "nothing pending", async || {
            self.pending().await.is_empty().then_some(())
        })
        .await;
    }

    /// Waits until exactly these message ids are pending, in any order.
    pub async fn wait_until_pending_are(&self, ids: &[&str], timeout: Duration) {
        let mut want: Vec<&str> = ids.to_vec();
        want.sort_unstable();
        eventually(timeout, &format!("exactly {want:?} pending"), async || {
            let mut waiting = self.pending_ids().await;
            waiting.sort();
            (waiting == want).then_some(())
        })
        .await;
    }

    /// Waits for a dead letter and returns the dead receipts.
    pub async fn wait_for_dead(&self, timeout: Duration) -> Vec<Value> {
        eventually(timeout, "a dead letter", async || {
            let (_, v) = self.admin(reqwest::Method::GET, "/admin/dead").await;
            let dead = v["dead"].as_array().cloned().unwrap_or_default();
            (!dead.is_empty()).then_some(dead)
        })
        .await
    }

    /// Waits until the first pending receipt's last error contains `text`.
    pub async fn wait_for_pending_error(&self, text: &str, timeout: Duration) {
        eventually(
            timeout,
            &format!("a pending receipt failing with {text}"),
            async || {
                let pending = self.pending().await;
                let error = pending.first()?["last_error"].as_str()?.to_string();
                error.contains(text).then_some(())
            },
        )
        .await;
    }

    /// Posts and returns the status and JSON answer.
    pub async fn send(&self, body: &str) -> (u16, Value) {
        let r = self.post(body).await;
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    /// The Prometheus text of `/metrics`.
    pub async fn metrics(&self) -> String {
        self.http
            .get(self.url("/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    pub async fn admin(&self, method: reqwest::Method, path: &str) -> (u16, Value) {
        let r = self
            .http
            .request(method, self.url(path))
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        match &mut self.runner {
            Runner::Process { child, .. } => {
                let _ = child.kill();
                let _ = child.wait();
            }
            Runner::InProcess { stop, task } => {
                stop.cancel();
                task.abort();
            }
        }
    }
}

async fn start(dir: &Path, options: &Options) -> (Child, Arc<Mutex<Vec<String>>>, SocketAddr) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_autoseen"));
    command
        .args(["serve", "--config"])
        .arg(dir.join("config"))
        .env_remove("RUST_LOG")
        .envs(environment(options))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = command.spawn().expect("autoseen starts");
    let logs = Arc::new(Mutex::new(Vec::new()));
    for stream in [
        Box::new(child.stdout.take().unwrap()) as Box<dyn std::io::Read + Send>,
        Box::new(child.stderr.take().unwrap()),
    ] {
        let logs = logs.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stream).lines().map_while(Result::ok) {
                logs.lock().unwrap().push(line);
            }
        });
    }
    let addr = eventually(
        Duration::from_secs(20),
        "autoseen to log `listening`",
        async || {
            if let Ok(Some(status)) = child.try_wait() {
                panic!("autoseen exited with {status}: {:#?}", logs.lock().unwrap());
            }
            logs.lock().unwrap().iter().find_map(|line| {
                let v: Value = serde_json::from_str(line).ok()?;
                (v["message"] == "listening").then(|| v["addr"].as_str()?.parse().ok())?
            })
        },
    )
    .await;
    (child, logs, addr)
}

pub fn sign(body: &str) -> String {
    autoseen::gateway::signature::sign(
        HMAC_KEY,
        autoseen::gateway::signature::Algorithm::Sha512,
        body.as_bytes(),
    )
}

/// The hex HMAC-SHA256 of a body with the test app secret: what Meta puts after `sha256=`.
pub fn meta_sign(body: &str) -> String {
    autoseen::gateway::signature::sign(
        META_APP_SECRET,
        autoseen::gateway::signature::Algorithm::Sha256,
        body.as_bytes(),
    )
}

/// A fixture body from `tests/events/evolution/NAME.json`.
pub fn evolution_fixture(name: &str) -> String {
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("tests/events/evolution/{name}.json"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// An Evolution `messages.upsert` from `jid` with this id.
pub fn evolution_text(jid: &str, id: &str) -> String {
    json!({
        "event": "messages.upsert",
        "instance": EVOLUTION_INSTANCE,
        "data": {
            "key": {"remoteJid": jid, "fromMe": false, "id": id},
            "pushName": "x", "status": "DELIVERY_ACK",
            "message": {"conversation": "hi"}, "messageType": "conversation",
            "messageTimestamp": 1_764_252_000, "source": "android"
        },
        "date_time": "2026-11-27T14:00:00.000Z",
        "sender": "5511988880000@s.whatsapp.net",
        "apikey": null
    })
    .to_string()
}

/// A fixture body from `tests/events/green/NAME.json`.
pub fn green_fixture(name: &str) -> String {
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("tests/events/green/{name}.json"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// A Green incoming text message from `chat` with this id.
pub fn green_text(chat: &str, id: &str) -> String {
    json!({
        "typeWebhook": "incomingMessageReceived",
        "instanceData": {"idInstance": GREEN_INSTANCE.parse::<u64>().unwrap(), "wid": "79876543210@c.us", "typeInstance": "whatsapp"},
        "timestamp": 1_764_000_000,
        "idMessage": id,
        "senderData": {"chatId": chat, "chatName": "x", "sender": chat, "senderName": "x"},
        "messageData": {"typeMessage": "textMessage", "textMessageData": {"textMessage": "hi"}}
    })
    .to_string()
}

/// A fixture body from `tests/events/meta/NAME.json`.
pub fn meta_fixture(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("tests/events/meta/{name}.json"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// A Meta body with one text message from `from` (phone digits) to the test business number.
pub fn meta_text(from: &str, id: &str) -> String {
    json!({
        "object": "whatsapp_business_account",
        "entry": [{"id": "889900112233445", "changes": [{"field": "messages", "value": {
            "messaging_product": "whatsapp",
            "metadata": {"display_phone_number": "15550109999", "phone_number_id": META_NUMBER},
            "contacts": [{"profile": {"name": "x"}, "wa_id": from}],
            "messages": [{"from": from, "id": id, "timestamp": "1764000000", "type": "text", "text": {"body": "hi"}}]
        }}]}]
    })
    .to_string()
}

/// A WAHA `message` event from `chat` in `session`.
pub fn message(session: &str, chat: &str, id: &str) -> String {
    event(
        "message",
        session,
        json!({"id": id, "from": chat, "fromMe": false, "to": "4900000000@c.us", "body": "hello", "hasMedia": false, "timestamp": 1_764_000_000, "_data": {"notifyName": "x"}}),
    )
}

/// Our own message to `chat` (as `message.any` delivers it).
pub fn reply_of_ours(session: &str, chat: &str, id: &str) -> String {
    event(
        "message.any",
        session,
        json!({"id": id, "from": "4900000000@c.us", "to": chat, "fromMe": true, "body": "ok"}),
    )
}

/// A fixture body written for the project, from `tests/events/waha/NAME.json`.
pub fn fixture(name: &str) -> String {
    fixture_file(&format!("{name}.json"))
}

/// A file from `tests/events/waha/`.
pub fn fixture_file(file: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/events/waha")
        .join(file);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// A message from `chat` with WAHA's id `false_{chat}_{bare}` and this text.
pub fn waha_message(chat: &str, bare: &str, text: &str) -> String {
    event(
        "message",
        "default",
        json!({"id": format!("false_{chat}_{bare}"), "from": chat, "fromMe": false, "body": text, "hasMedia": false, "timestamp": 1_764_000_000}),
    )
}

pub fn event(kind: &str, session: &str, payload: Value) -> String {
    json!({
        "id": "evt_01",
        "timestamp": 1_764_000_000_000i64,
        "event": kind,
        "session": session,
        "me": {"id": "4900000000@c.us", "pushName": "bot"},
        "payload": payload,
        "engine": "WEBJS",
        "environment": {"tier": "PLUS"}
    })
    .to_string()
}
