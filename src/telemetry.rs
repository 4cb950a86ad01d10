//! Logging: a tracing subscriber writing JSON lines (default) or pretty text to stdout.
//!
//! `RUST_LOG` wins over `log.level` when set. Spans carry the business keys (session, chat, message id, rule),
//! so every line of a webhook names them; message text and secrets are never recorded as fields.

use tracing_subscriber::EnvFilter;

use crate::metric_names::{self, Kind};
use crate::settings::{LogFormat, LogSettings};

/// Installs the global subscriber, writing through a background thread so a slow stdout never holds up a
/// request. Keep the returned guard until exit: dropping it flushes what is buffered.
pub fn init(settings: &LogSettings) -> tracing_appender::non_blocking::WorkerGuard {
    let (writer, guard) = tracing_appender::non_blocking::NonBlockingBuilder::default()
        .lossy(false)
        .finish(std::io::stdout());
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
    guard
}

/// Installs the Prometheus recorder and describes every metric; `None` if a recorder is already installed.
pub fn install_metrics() -> Option<metrics_exporter_prometheus::PrometheusHandle> {
    use metrics::{describe_counter, describe_gauge, describe_histogram};
    use metrics_exporter_prometheus::{Matcher, PrometheusBuilder};
    const SECONDS: &[f64] = &[
        0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
    ];
    let handle = PrometheusBuilder::new()
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
