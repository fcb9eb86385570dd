//! The bot's own HTTP endpoints: `/metrics` (Prometheus text: the framework's counters, the bot's,
//! and in standalone mode with `--values-output metrics` the last value of every path), `/health`
//! (the process runs), `/ready` (the backend answered and the first refresh is done) and the
//! status page `/jobs`, `/jobs.json` (see [`crate::status_page`]).

use crate::delivery::{Batch, Sink};
use crate::metrics::Metrics;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use futures::future::BoxFuture;
use std::collections::BTreeMap;
use std::fmt::Write;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use tokio_util::sync::CancellationToken;

/// Whether the bot is ready: set once the backend answered and the first refresh completed
/// (at once in standalone mode).
#[derive(Clone, Default)]
pub struct Readiness(Arc<AtomicBool>);

impl Readiness {
    pub fn set(&self, ready: bool) {
        self.0.store(ready, Ordering::Release);
    }

    pub fn is_ready(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }
}

/// The last value of every path, for standalone mode's Prometheus page.
#[derive(Clone, Default)]
pub struct LastValues(Arc<Mutex<BTreeMap<String, f64>>>);

impl LastValues {
    /// The values as one gauge family, `grafolean_value{path="..."}`.
    fn render(&self, out: &mut String) {
        let Ok(values) = self.0.lock() else {
            return;
        };
        if values.is_empty() {
            return;
        }
        out.push_str("# HELP grafolean_value Last value measured for each Grafolean path.\n");
        out.push_str("# TYPE grafolean_value gauge\n");
        for (path, value) in values.iter() {
            // Paths hold only [A-Za-z0-9_.%-]: nothing to escape in a label value.
            let _ = writeln!(out, "grafolean_value{{path=\"{path}\"}} {value}");
        }
    }
}

/// Standalone mode's sink for `VALUES_OUTPUT=metrics`: keeps the last value of each path for the
/// /metrics page and counts them as delivered.
pub struct MetricsPageSink {
    pub values: LastValues,
    pub metrics: Metrics,
}

impl Sink for MetricsPageSink {
    fn deliver(&self, firings: Vec<Batch>) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            if let Ok(mut values) = self.values.0.lock() {
                for batch in firings {
                    batch.report_accepted();
                    let count = batch.values.len() as u64;
                    for value in batch.values {
                        values.insert(value.path, value.value);
                    }
                    self.metrics.framework.values_delivered.inc_by(count);
                }
            }
        })
    }
}

#[derive(Clone)]
struct Telemetry {
    metrics: Metrics,
    readiness: Readiness,
    values: Option<LastValues>,
}

async fn metrics_page(State(t): State<Telemetry>) -> impl IntoResponse {
    let mut text = t.metrics.render();
    if let Some(values) = &t.values {
        // The registry's text ends with "# EOF"; the values go before it.
        if let Some(stripped) = text.strip_suffix("# EOF\n") {
            text = stripped.to_string();
        }
        values.render(&mut text);
        text.push_str("# EOF\n");
    }
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        text,
    )
}

async fn health() -> &'static str {
    "ok\n"
}

async fn ready(State(t): State<Telemetry>) -> impl IntoResponse {
    if t.readiness.is_ready() {
        (StatusCode::OK, "ready\n")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready\n")
    }
}

/// Binds `address` and serves the endpoints until `shutdown`. Binding errors are returned so the
/// bot can refuse to start with a clear message.
pub async fn serve(
    address: SocketAddr,
    metrics: Metrics,
    readiness: Readiness,
    values: Option<LastValues>,
    status: crate::status::StatusBoard,
    shutdown: CancellationToken,
) -> Result<tokio::task::JoinHandle<()>, String> {
    let listener = tokio::net::TcpListener::bind(address)
        .await
        .map_err(|e| format!("METRICS_ADDRESS {address}: cannot listen: {e}"))?;
    let app = Router::new()
        .route("/metrics", get(metrics_page))
        .route("/health", get(health))
        .route("/ready", get(ready))
        .with_state(Telemetry {
            metrics,
            readiness,
            values,
        })
        .merge(crate::status_page::routes(status));
    tracing::info!(%address, "serving /metrics, /health, /ready and /jobs");
    Ok(tokio::spawn(async move {
        let stopped = async move { shutdown.cancelled().await };
        if let Err(e) = axum::serve(listener, app)
            .with_graceful_shutdown(stopped)
            .await
        {
            tracing::error!("telemetry server failed: {e}");
        }
    }))
}
