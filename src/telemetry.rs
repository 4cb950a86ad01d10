//! Logging: a tracing subscriber writing JSON lines (default) or pretty text to stdout; and the Prometheus
//! recorder, with the bounded set of `session` label values.
//!
//! `RUST_LOG` wins over `log.level` when set. Spans carry the business keys (session, chat, message id, rule),
//! so every line of a webhook names them; message text and secrets are never recorded as fields.

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use tracing_subscriber::EnvFilter;

use crate::domain::SessionName;

use crate::metric_names::{self, Kind};
use crate::settings::{LogFormat, LogSettings};

/// Installs the global subscriber, writing through a background thread so a slow stdout never holds up a
/// request. That thread writes whatever lines are waiting in one call and flushes once none are left: a
/// line per call cost a twentieth of the process while sending (docs/performance.md). Keep the returned
/// guard until exit: dropping it flushes what is buffered.
pub fn init(settings: &LogSettings) -> tracing_appender::non_blocking::WorkerGuard {
    let stdout = std::io::BufWriter::with_capacity(64 * 1024, std::io::stdout());
    let (writer, guard) = tracing_appender::non_blocking::NonBlockingBuilder::default()
        .lossy(false)
        .finish(stdout);
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&settings.level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer);
    let _ = match settings.format {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .try_init(),
        LogFormat::Pretty => builder.try_init(),
    };
    // A panic in any task ends up in the log like every other failure, with where it happened.
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        tracing::error!(panic = %info, "a task panicked");
        default_hook(info);
    }));
    guard
}

/// A series not updated for this long leaves `/metrics` (a session gone quiet, most of all).
pub const SERIES_IDLE: Duration = Duration::from_secs(24 * 3600);
/// The label value of every session past `metrics.max_sessions`.
pub const OTHER_SESSIONS: &str = "_other";

/// The `session` label values in use: at most `max` distinct, each remembered while it was used within
/// [`SERIES_IDLE`]; past that, sessions count as [`OTHER_SESSIONS`]. Labels are global to the process, as
/// the recorder is.
pub struct SessionLabels {
    max: usize,
    last_used: Mutex<HashMap<SessionName, Instant>>,
}

static SESSION_LABELS: OnceLock<SessionLabels> = OnceLock::new();

impl SessionLabels {
    pub fn new(max: usize) -> Self {
        Self {
            max,
            last_used: Mutex::new(HashMap::new()),
        }
    }

    /// The label `session` counts under.
    pub fn label(&self, session: &SessionName) -> String {
        let now = Instant::now();
        let mut used = self.last_used.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(at) = used.get_mut(session) {
            *at = now;
            return session.to_string();
        }
        if used.len() >= self.max {
            used.retain(|_, at| now.duration_since(*at) < SERIES_IDLE);
        }
        if used.len() >= self.max {
            return OTHER_SESSIONS.into();
        }
        used.insert(session.clone(), now);
        session.to_string()
    }
}

/// The `session` label of `session` in this process (`metrics.max_sessions` distinct at most).
pub fn session_label(session: &SessionName) -> String {
    SESSION_LABELS
        .get_or_init(|| {
            SessionLabels::new(crate::settings::MetricsSettings::default().max_sessions)
        })
        .label(session)
}

/// Installs the Prometheus recorder and describes every metric; `None` if a recorder is already installed.
/// At most `max_sessions` session label values are used; series idle for [`SERIES_IDLE`] are dropped.
pub fn install_metrics(
    max_sessions: usize,
) -> Option<metrics_exporter_prometheus::PrometheusHandle> {
    use metrics::{describe_counter, describe_gauge, describe_histogram};
    use metrics_exporter_prometheus::{Matcher, PrometheusBuilder};
    let _ = SESSION_LABELS.set(SessionLabels::new(max_sessions));
    const SECONDS: &[f64] = &[
        0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
    ];
    let handle = PrometheusBuilder::new()
        .idle_timeout(metrics_util::MetricKindMask::ALL, Some(SERIES_IDLE))
        .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), SECONDS)
        .ok()?
        .install_recorder()
        .ok()?;
    for &(name, kind, help) in metric_names::ALL {
        match kind {
            Kind::Counter => describe_counter!(name, help),
            Kind::Gauge => describe_gauge!(name, help),
            Kind::Histogram => describe_histogram!(name, help),
        }
    }
    Some(handle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sessions_past_the_cap_count_as_other() {
        let labels = SessionLabels::new(2);
        let s = |n: &str| SessionName::parse(n).unwrap();

        let first = [
            labels.label(&s("a")),
            labels.label(&s("b")),
            labels.label(&s("c")),
        ];

        assert_eq!(first, ["a", "b", OTHER_SESSIONS]);
        assert_eq!(
            labels.label(&s("a")),
            "a",
            "a known session keeps its label"
        );
    }
}
