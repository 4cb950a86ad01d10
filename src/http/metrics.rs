//! `GET /metrics`: the Prometheus text format. Pending-receipt gauges are read from the store at scrape time,
//! so they are exact after a restart and cost nothing between scrapes.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use metrics_exporter_prometheus::PrometheusHandle;

use super::AppState;
use crate::metric_names as names;
use crate::time::until;

/// The recorder's handle, and the sessions that ever had pending receipts (their gauges drop to 0, not vanish).
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
        let mut known = m.sessions.lock().unwrap_or_else(|e| e.into_inner());
        let mut seen = HashSet::new();
        // With several replicas each reports the sessions it holds, so each counts once cluster-wide.
        for s in stats
            .into_iter()
            .filter(|s| state.holdings.holds(&s.session))
        {
            let session = s.session.to_string();
            metrics::gauge!(names::PENDING_RECEIPTS, "session" => session.clone())
                .set(s.count as f64);
            let age = until(s.oldest_accepted_at, now).as_secs_f64();
            metrics::gauge!(names::OLDEST_PENDING_AGE, "session" => session.clone()).set(age);
            seen.insert(session);
        }
        for gone in known.difference(&seen) {
            metrics::gauge!(names::PENDING_RECEIPTS, "session" => gone.clone()).set(0.0);
            metrics::gauge!(names::OLDEST_PENDING_AGE, "session" => gone.clone()).set(0.0);
        }
        known.extend(seen);
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
