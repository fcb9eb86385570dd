//! The bot's own counters in Prometheus form: the framework's and each bot's, in one registry.

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::{Metric, Registry};
use std::sync::{Arc, Mutex};

/// Labels of a counter family: one `(name, value)` pair per label.
pub type Labels = Vec<(&'static str, String)>;

/// The registry every counter of the process lives in; cheap to clone.
#[derive(Clone)]
pub struct Metrics {
    registry: Arc<Mutex<Registry>>,
    /// The framework's own counters.
    pub framework: Arc<FrameworkMetrics>,
}

/// Counters the framework keeps about scheduling, runs, delivery and the backend.
pub struct FrameworkMetrics {
    pub jobs_scheduled: Gauge,
    pub firings: Counter,
    /// Runs by outcome: `success`, `failure`, `timeout`, `panic`, `skip` (still running).
    pub runs: Family<Labels, Counter>,
    pub run_seconds: Histogram,
    pub wait_seconds: Histogram,
    /// Due time to end of run.
    pub total_seconds: Histogram,
    /// Duration of every backend request, whatever its outcome.
    pub backend_request_seconds: Histogram,
    pub values_produced: Counter,
    pub values_delivered: Counter,
    /// Values kept out of a batch or lost, by reason.
    pub values_dropped: Family<Labels, Counter>,
    /// Backend requests that failed, by operation.
    pub backend_errors: Family<Labels, Counter>,
    pub delivery_retries: Counter,
    /// Refreshes by outcome: `ok`, `failed`; accounts skipped are counted apart.
    pub refreshes: Family<Labels, Counter>,
    pub accounts_skipped: Counter,
    pub config_problems: Counter,
    pub refresh_seconds: Histogram,
    pub values_spooled: Counter,
    pub values_replayed: Counter,
    /// Values of spooled batches the backend kept refusing with 5xx while others went through.
    pub values_set_aside: Counter,
    pub spool_bytes: Gauge,
    pub spool_entries: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let framework = Arc::new(FrameworkMetrics {
            jobs_scheduled: Gauge::default(),
            firings: Counter::default(),
            runs: Family::default(),
            run_seconds: Histogram::new(exponential_buckets(0.001, 4.0, 10)),
            wait_seconds: Histogram::new(exponential_buckets(0.0005, 4.0, 10)),
            total_seconds: Histogram::new(exponential_buckets(0.001, 4.0, 10)),
            backend_request_seconds: Histogram::new(exponential_buckets(0.001, 3.0, 12)),
            values_produced: Counter::default(),
            values_delivered: Counter::default(),
            values_dropped: Family::default(),
            backend_errors: Family::default(),
            delivery_retries: Counter::default(),
            refreshes: Family::default(),
            accounts_skipped: Counter::default(),
            config_problems: Counter::default(),
            refresh_seconds: Histogram::new(exponential_buckets(0.01, 3.0, 10)),
            values_spooled: Counter::default(),
            values_replayed: Counter::default(),
            values_set_aside: Counter::default(),
            spool_bytes: Gauge::default(),
            spool_entries: Gauge::default(),
        });
        let mut registry = Registry::with_prefix("collector");
        let f = &framework;
        registry.register(
            "jobs_scheduled",
            "Jobs on the timer queue",
            f.jobs_scheduled.clone(),
        );
        registry.register("firings", "Job firings", f.firings.clone());
        registry.register("runs", "Job runs by outcome", f.runs.clone());
        registry.register("run_seconds", "Run cost of a job", f.run_seconds.clone());
        registry.register(
            "wait_seconds",
            "Wait cost: due time to start",
            f.wait_seconds.clone(),
        );
        registry.register(
            "total_seconds",
            "Total cost of a job: due time to end of run",
            f.total_seconds.clone(),
        );
        registry.register(
            "backend_request_seconds",
            "Backend request latency, whatever the outcome",
            f.backend_request_seconds.clone(),
        );
        registry.register(
            "values_produced",
            "Values returned by jobs",
            f.values_produced.clone(),
        );
        registry.register(
            "values_delivered",
            "Values accepted by the sink",
            f.values_delivered.clone(),
        );
        registry.register(
            "values_dropped",
            "Values dropped, by reason",
            f.values_dropped.clone(),
        );
        registry.register(
            "backend_errors",
            "Failed backend requests",
            f.backend_errors.clone(),
        );
        registry.register(
            "delivery_retries",
            "Delivery attempts retried",
            f.delivery_retries.clone(),
        );
        registry.register(
            "refreshes",
            "Job config refreshes by outcome",
            f.refreshes.clone(),
        );
        registry.register(
            "accounts_skipped",
            "Accounts left out of a refresh",
            f.accounts_skipped.clone(),
        );
        registry.register(
            "config_problems",
            "Entities or sensors left out for bad config",
            f.config_problems.clone(),
        );
        registry.register(
            "refresh_seconds",
            "Duration of a job config refresh",
            f.refresh_seconds.clone(),
        );
        registry.register(
            "values_spooled",
            "Values written to the spool",
            f.values_spooled.clone(),
        );
        registry.register(
            "values_replayed",
            "Values replayed from the spool by PUT",
            f.values_replayed.clone(),
        );
        registry.register(
            "values_set_aside",
            "Spooled values the backend kept refusing with 5xx while others went through, set aside on disk",
            f.values_set_aside.clone(),
        );
        registry.register("spool_bytes", "Bytes in the spool", f.spool_bytes.clone());
        registry.register(
            "spool_batches",
            "Batches in the spool",
            f.spool_entries.clone(),
        );
        Metrics {
            registry: Arc::new(Mutex::new(registry)),
            framework,
        }
    }

    /// Registers a bot's own metric; keep a clone of it to update.
    pub fn register(&self, name: &str, help: &str, metric: impl Metric) {
        if let Ok(mut registry) = self.registry.lock() {
            registry.register(name, help, metric);
        }
    }

    /// The registry in Prometheus text format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        if let Ok(registry) = self.registry.lock() {
            let _ = encode(&mut out, &registry);
        }
        out
    }
}

/// One label, for the counter families.
pub fn label(name: &'static str, value: impl Into<String>) -> Labels {
    vec![(name, value.into())]
}
