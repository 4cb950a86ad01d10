//! Start-up and shutdown: builds the state, binds the listener, runs the server, the scheduler and the rule
//! watcher, and stops them in order.
//!
//! Shutdown (SIGTERM or Ctrl-C): stop accepting webhooks and let requests in flight finish, then let sends in
//! flight finish, all within `server.shutdown_timeout`; whatever is still pending stays in the store.

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::http::server::{Limits, serve};
use crate::http::{AppState, MetricsState, metrics_router, router};
use crate::rules::{self, LiveRules, Rules, RulesError};
use crate::scheduler::{Clock, Scheduler};
use crate::settings::Settings;
use crate::store::{self, Store};
use crate::wasend::WasendClient;

/// How often accepted ids older than the dedup window are forgotten.
const PURGE_EVERY: Duration = Duration::from_secs(600);
/// Rule-file events closer together than this are one reload (editors write files in several steps).
const RELOAD_SETTLE: Duration = Duration::from_millis(200);

/// A built service, bound to its port, not yet running.
pub struct Application {
    listener: TcpListener,
    metrics_listener: Option<TcpListener>,
    state: Arc<AppState>,
    scheduler: Scheduler,
    settings: Arc<Settings>,
    reloader: Reloader,
}

impl Application {
    /// Opens the store, loads pending receipts and binds the listener (port 0 picks a free port).
    pub async fn build(
        config_dir: PathBuf,
        settings: Settings,
        rules: Rules,
    ) -> anyhow::Result<Self> {
        let settings = Arc::new(settings);
        let store: Arc<dyn Store> = store::sqlite::open(&settings.store)?;
        let client =
            Arc::new(WasendClient::new(&settings.wasend).context("cannot build the HTTP client")?);
        let clock = Clock::system();
        let (mut scheduler, handle) =
            Scheduler::new(store.clone(), client, clock, settings.delivery.clone());
        let chats = scheduler
            .load()
            .await
            .context("cannot load pending receipts")?;
        info!(chats, "pending receipts loaded");
        let live = LiveRules::new(rules);
        let reloader = Reloader::new(config_dir, live.clone());
        let reload = {
            let reloader = reloader.clone();
            Arc::new(move || reloader.reload("admin"))
        };
        let state = Arc::new(AppState {
            hmac_keys: settings.webhook.all_hmac_keys(),
            settings: settings.clone(),
            rules: live,
            store,
            scheduler: handle,
            clock,
            reload,
            metrics: crate::telemetry::install_metrics().map(MetricsState::new),
        });
        let addr = settings.listen_addr();
        let listener = TcpListener::bind(addr)
            .await
            .with_context(|| format!("cannot listen on {addr} (server.listen)"))?;
        let metrics_listener = match &settings.metrics.listen {
            Some(a) => Some(
                TcpListener::bind(a)
                    .await
                    .with_context(|| format!("cannot listen on {a} (metrics.listen)"))?,
            ),
            None => None,
        };
        Ok(Self {
            listener,
            metrics_listener,
            state,
            scheduler,
            settings,
            reloader,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("a bound listener has an address")
    }

    /// Serves until `shutdown` completes, then drains as described in the module docs.
    pub async fn run(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let addr = self.local_addr();
        let settings = self.settings;
        if settings.webhook.token.is_none() && settings.webhook.all_hmac_keys().is_empty() {
            warn!(
                "the webhook is open: set webhook.hmac_key or webhook.token so only Wasend can call it"
            );
        }
        if settings.wasend.dry_run {
            warn!("dry run: receipts are scheduled and logged but sendSeen is never called");
        }
        let stop_sending = CancellationToken::new();
        let scheduler = tokio::spawn(self.scheduler.run(stop_sending.clone()));
        let background = CancellationToken::new();
        tokio::spawn(self.reloader.watch(background.clone()));
        tokio::spawn(purge_dedup(self.state.clone(), background.clone()));

        let limits = Limits {
            header_timeout: settings.server.header_timeout,
            max_connections: settings.server.max_connections,
        };
        if let Some(listener) = self.metrics_listener {
            let metrics_addr = listener.local_addr()?;
            info!(%metrics_addr, "metrics listening");
            tokio::spawn(serve(
                listener,
                metrics_router(self.state.clone()),
                limits,
                background.clone(),
            ));
        }
        let stop_serving = CancellationToken::new();
        let signalled = stop_serving.clone();
        tokio::spawn(async move {
            shutdown.await;
            signalled.cancel();
        });
        info!(%addr, "listening");
        let server = tokio::spawn(serve(
            self.listener,
            router(self.state),
            limits,
            stop_serving.clone(),
        ));
        stop_serving.cancelled().await;
        info!("shutting down: no new webhooks; finishing requests and sends in flight");
        let deadline = tokio::time::Instant::now() + settings.server.shutdown_timeout;
        match tokio::time::timeout_at(deadline, server).await {
            Ok(result) => result.context("server task failed")?,
            Err(_) => warn!("requests still in flight at the shutdown timeout were dropped"),
        }
        stop_sending.cancel();
        background.cancel();
        if tokio::time::timeout_at(deadline, scheduler).await.is_err() {
            warn!(
                "sends still in flight at the shutdown timeout stay pending and will be sent after restart"
            );
        }
        info!("stopped");
        Ok(())
    }
}

async fn purge_dedup(state: Arc<AppState>, stop: CancellationToken) {
    let window = state.settings.store.dedup_window.as_millis() as i64;
    let mut every = tokio::time::interval(PURGE_EVERY);
    loop {
        tokio::select! {
            _ = every.tick() => {}
            _ = stop.cancelled() => return,
        }
        match state.store.purge_dedup(state.clock.now_ms() - window).await {
            Ok(n) if n > 0 => info!(forgotten = n, "old message ids purged"),
            Ok(_) => {}
            Err(e) => error!(error = %e, "cannot purge old message ids"),
        }
    }
}

/// Reloads rule files: on a change on disk, on SIGHUP, or when asked by `/admin/reload`.
#[derive(Clone)]
struct Reloader {
    dir: PathBuf,
    live: LiveRules,
    /// The text of the files last loaded, so events that change nothing cause no reload.
    last: Arc<Mutex<Vec<(PathBuf, String)>>>,
}

impl Reloader {
    fn new(dir: PathBuf, live: LiveRules) -> Self {
        let last = Arc::new(Mutex::new(read_sources(&dir)));
        Self { dir, live, last }
    }

    /// Loads the rule files and swaps them in; on any problem the running rules stay.
    fn reload(&self, trigger: &str) -> Result<usize, RulesError> {
        let sources = read_sources(&self.dir);
        let result = rules::load(&self.dir);
        match &result {
            Ok(new) => {
                let n = new.len();
                self.live.replace(new.clone());
                *self.last.lock().unwrap_or_else(|e| e.into_inner()) = sources;
                info!(trigger, rules = n, "rules reloaded");
                metrics::counter!("autoseen_rule_reloads_total", "result" => "ok").increment(1);
            }
            Err(e) => {
                metrics::counter!("autoseen_rule_reloads_total", "result" => "error").increment(1);
                for problem in &e.0 {
                    // The message may quote a pattern from the file (a phone number): only at debug.
                    error!(
                        trigger,
                        file = %problem.file.display(),
                        line = problem.line,
                        rule = problem.rule.as_deref(),
                        "rule file refused; the running rules stay in force (run `autoseen check` for details)"
                    );
                    tracing::debug!(problem = %problem, "rule file problem");
                }
            }
        }
        result.map(|r| r.len())
    }

    fn changed(&self) -> bool {
        *self.last.lock().unwrap_or_else(|e| e.into_inner()) != read_sources(&self.dir)
    }

    async fn watch(self, stop: CancellationToken) {
        use notify::Watcher;
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
            if event.is_ok_and(|e| !e.kind.is_access() && e.paths.iter().any(|p| is_rule_path(p))) {
                let _ = tx.send(());
            }
        });
        let _watcher = match watcher.and_then(|mut w| {
            w.watch(&self.dir, notify::RecursiveMode::Recursive)
                .map(|_| w)
        }) {
            Ok(w) => Some(w),
            Err(e) => {
                warn!(error = %e, "cannot watch the config folder; reload with SIGHUP or /admin/reload");
                None
            }
        };
        let mut hangup =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
        loop {
            let trigger = tokio::select! {
                Some(()) = rx.recv() => {
                    // Let the editor finish writing, then treat everything since as one change.
                    tokio::time::sleep(RELOAD_SETTLE).await;
                    while rx.try_recv().is_ok() {}
                    if !self.changed() {
                        continue;
                    }
                    "file change"
                }
                Some(()) = async { match hangup.as_mut() { Some(h) => h.recv().await, None => None } } => "SIGHUP",
                _ = stop.cancelled() => return,
            };
            let _ = self.reload(trigger);
        }
    }
}

/// Whether a change at `path` may change the rules: `rules.toml`, anything under `rules.d`, or the `..data`
/// link Kubernetes swaps when a ConfigMap changes. Other files (a store kept in the config folder, editor
/// swap files) cause no reload.
fn is_rule_path(path: &std::path::Path) -> bool {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
    name == rules::file::RULES_FILE
        || name.starts_with("..")
        || path
            .components()
            .any(|c| c.as_os_str() == rules::file::RULES_DIR)
}

fn read_sources(dir: &std::path::Path) -> Vec<(PathBuf, String)> {
    rules::rule_files(dir)
        .into_iter()
        .map(|f| {
            let text = std::fs::read_to_string(&f).unwrap_or_default();
            (f, text)
        })
        .collect()
}

/// Completes on SIGTERM or Ctrl-C.
pub async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("can install a SIGTERM handler");
    tokio::select! {
        _ = ctrl_c => {}
        _ = term.recv() => {}
    }
}
