//! `GET /metrics`: the Prometheus text format. Pending-receipt gauges are read from the store at scrape time,
//! so they are exact after a restart and cost nothing between scrapes.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use metrics_exporter_prometheus::PrometheusHandle;

use super::AppState;
use crate::metric_names as names;
use crate::telemetry::session_label;
use crate::time::until;

/// The recorder's handle, and the session labels that had pending receipts at the last scrape (their gauges
/// drop to 0 when they have none).
pub struct MetricsState {
    pub handle: PrometheusHandle,
    pub sessions: Mutex<HashSet<String>>,
}

impl MetricsState {
    pub fn new(handle: PrometheusHandle) -> Self {
        Self {
            handle,
            sessions: Mutex::new(HashSet::new()),
        }
    }
}

pub async fn metrics(State(state): State<Arc<AppState>>) -> Response {
    let Some(m) = &state.metrics else {
        return (
            StatusCode::NOT_FOUND,
            "metrics are not recorded in this process",
        )
            .into_response();
    };
    if let Ok(stats) = state.operator.pending_stats().await {
        let now = state.clock.now();
        // Sessions past `metrics.max_sessions` share one label: their figures add up (the oldest is the oldest).
        let mut by_label: HashMap<String, (f64, f64)> = HashMap::new();
        // With several replicas each reports the sessions it holds, so each counts once cluster-wide.
        for s in stats
            .into_iter()
            .filter(|s| state.holdings.holds(&s.session))
        {
            let age = until(s.oldest_accepted_at, now).as_secs_f64();
            let figures = by_label.entry(session_label(&s.session)).or_default();
            figures.0 += s.count as f64;
            figures.1 = figures.1.max(age);
        }
        let mut known = m.sessions.lock().unwrap_or_else(|e| e.into_inner());
        for (session, (count, age)) in &by_label {
            metrics::gauge!(names::PENDING_RECEIPTS, "session" => session.clone()).set(*count);
            metrics::gauge!(names::OLDEST_PENDING_AGE, "session" => session.clone()).set(*age);
        }
        // A session that had pending receipts at the last scrape and has none now drops to 0 once; left
        // alone from then on, its series leave /metrics after a day (`telemetry::SERIES_IDLE`).
        for gone in known.iter().filter(|s| !by_label.contains_key(*s)) {
            metrics::gauge!(names::PENDING_RECEIPTS, "session" => gone.clone()).set(0.0);
            metrics::gauge!(names::OLDEST_PENDING_AGE, "session" => gone.clone()).set(0.0);
        }
        *known = by_label.into_keys().collect();
    }
    m.handle.run_upkeep();
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        m.handle.render(),
    )
        .into_response()
}
