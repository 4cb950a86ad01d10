//! Start-up and shutdown: builds the state, binds the listener, runs the server, the scheduler and the rule
//! watcher, and stops them in order.
//!
//! Shutdown (SIGTERM or Ctrl-C): stop accepting webhooks and let requests in flight finish, then let sends in
//! flight finish, all within `server.shutdown_timeout`; whatever is still pending stays in the store.

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::activity::Activity;
use crate::gateway::{self, wasend};
use crate::http::client::TrustedProxies;
use crate::http::server::{Limits, serve};
use crate::http::throttle::AuthThrottle;
use crate::http::{AppState, MetricsState, metrics_router, router};
use crate::receipts::Receipts;
use crate::rules::{LiveRules, Reloader, Rules};
use crate::scheduler::leases::{Holdings, Replica};
use crate::scheduler::{Scheduler, SchedulerHandle};
use crate::settings::Settings;
use crate::store::{self, Readiness};
use crate::time::Clock;

/// A built service, bound to its port, not yet running.
pub struct Application {
    listener: TcpListener,
    metrics_listener: Option<TcpListener>,
    state: Arc<AppState>,
    scheduler: Scheduler,
    /// How the lease heartbeat tells the scheduler which sessions it holds.
    scheduler_handle: SchedulerHandle,
    settings: Arc<Settings>,
    /// Stops the background tasks (rule watcher, store upkeep, metrics listener) at shutdown.
    background: CancellationToken,
    /// With several replicas on one store: this one's leases.
    replica: Option<Replica>,
}

impl Application {
    /// Opens the store, loads pending receipts and binds the listener (port 0 picks a free port). Every
    /// moment the service reads comes from `clock` (`Clock::system()` in production; a test may start it
    /// elsewhere, and it advances with tokio's clock).
    pub async fn build(
        config_dir: PathBuf,
        settings: Settings,
        rules: Rules,
        clock: Clock,
    ) -> anyhow::Result<Self> {
        let settings = Arc::new(settings);
        // First, so that what start-up records (store upkeep, loading) is counted.
        let metrics =
            crate::telemetry::install_metrics(settings.metrics.max_sessions).map(MetricsState::new);
        let background = CancellationToken::new();
        let store::Opened {
            queue,
            operator,
            cluster,
        } = store::open(&settings.store, clock, background.clone())?;
        let client = Arc::new(
            gateway::Outbound::from_settings(&settings).context("cannot build the HTTP client")?,
        );
        let activity = Activity::new(settings.metrics.max_sessions);
        let (scheduler, handle) =
            Scheduler::new(queue.clone(), client, clock, settings.delivery.clone());
        let mut scheduler = scheduler.with_activity(activity.clone());
        let replica = cluster.map(|c| Replica::new(c, &settings.store, clock));
        if let Some(r) = &replica {
            scheduler = scheduler.with_cluster(r.cluster(), r.id());
        }
        match scheduler.load().await {
            Ok(chats) => info!(chats, "pending receipts loaded"),
            // The store is down (a database server not up yet): serve anyway, answer 503 until it is back.
            Err(e) => {
                warn!(error = %e, "cannot load pending receipts yet; the scheduler keeps trying")
            }
        }
        let live = LiveRules::new(rules);
        let holdings = Holdings::default();
        let receipts = Receipts::new(
            queue,
            operator.clone(),
            handle.clone(),
            replica.as_ref().map(Replica::cluster),
            holdings.clone(),
            activity.clone(),
            clock,
            settings.store.dedup_window,
        );
        let state = Arc::new(AppState {
            gateways: crate::http::Inbound {
                wasend: wasend::inbound::Inbound::new(&settings.webhook),
                meta: gateway::meta::inbound::Inbound::new(&settings.meta),
                green: gateway::green::inbound::Inbound::new(&settings.green),
                evolution: gateway::evolution::inbound::Inbound::new(&settings.evolution),
            },
            settings: settings.clone(),
            reloader: Reloader::new(config_dir, live.clone()),
            rules: live,
            receipts,
            readiness: Readiness::new(operator.clone()),
            operator,
            holdings: holdings.clone(),
            clock,
            metrics,
            activity,
            console: Default::default(),
            openapi: Arc::new(crate::http::openapi_document()),
            proxies: TrustedProxies::new(&settings.server.trusted_proxies),
            throttle: AuthThrottle::from_settings(&settings.server),
        });
        let (listener, metrics_listener) = bind(&settings).await?;
        Ok(Self {
            listener,
            metrics_listener,
            state,
            scheduler,
            scheduler_handle: handle,
            settings,
            background,
            replica,
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
        for warning in settings.warnings() {
            warn!("{warning}");
        }
        if settings.wasend.dry_run {
            warn!("dry run: receipts are scheduled and logged but sendSeen is never called");
        }
        let stop_sending = CancellationToken::new();
        let leases = self
            .replica
            .as_ref()
            .map(|r| r.start(self.scheduler_handle.clone(), self.state.holdings.clone()));
        let scheduler = tokio::spawn(self.scheduler.run(stop_sending.clone()));
        let background = self.background;
        tokio::spawn(self.state.reloader.clone().watch(background.clone()));

        let server = &settings.server;
        let limits = Limits {
            header_timeout: server.header_timeout,
            idle_timeout: server.idle_timeout,
            max_connections: server.max_connections,
            max_connections_per_ip: server.max_connections_per_ip,
            trusted_proxies: TrustedProxies::new(&server.trusted_proxies),
        };
        if let Some(listener) = self.metrics_listener {
            let metrics_addr = listener.local_addr()?;
            info!(%metrics_addr, "metrics listening");
            tokio::spawn(serve(
                listener,
                metrics_router(self.state.clone()),
                limits.clone(),
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
        if let (Some(replica), Some(leases)) = (self.replica, leases) {
            replica.leave(leases).await;
        }
        info!("stopped");
        Ok(())
    }
}

/// The service's listener, and `/metrics`'s own when `metrics.listen` is set.
async fn bind(settings: &Settings) -> anyhow::Result<(TcpListener, Option<TcpListener>)> {
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
    Ok((listener, metrics_listener))
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
