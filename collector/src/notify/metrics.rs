//! The notifier's counters on `/metrics`: notifications sent, failed, pending and dropped per
//! sink, alerts firing now, state changes, events, and self-observability upload points.

use crate::metrics::{label, Labels, Metrics};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;

/// Handles to the notifier's metric families; cheap to clone.
#[derive(Clone, Default)]
pub struct NotifyMetrics {
    sent: Family<Labels, Counter>,
    failed: Family<Labels, Counter>,
    pending: Family<Labels, Gauge>,
    dropped: Family<Labels, Counter>,
    pub firing: Gauge,
    changes: Family<Labels, Counter>,
    events: Family<Labels, Counter>,
    uploads: Family<Labels, Counter>,
}

impl NotifyMetrics {
    /// Creates the families and registers them with the process's registry.
    pub fn register(metrics: &Metrics) -> NotifyMetrics {
        let m = NotifyMetrics::default();
        metrics.register(
            "notifications_sent",
            "Notifications a sink took, by sink and kind (alert, event)",
            m.sent.clone(),
        );
        metrics.register(
            "notifications_failed",
            "Failed sends to a sink (each is retried)",
            m.failed.clone(),
        );
        metrics.register(
            "notifications_pending",
            "Notifications waiting in a sink's outbox",
            m.pending.clone(),
        );
        metrics.register(
            "notifications_dropped",
            "Notifications lost, by sink and reason",
            m.dropped.clone(),
        );
        metrics.register("alerts_firing", "Alerts firing now", m.firing.clone());
        metrics.register(
            "alert_changes",
            "Alert state changes, by state (firing, resolved)",
            m.changes.clone(),
        );
        metrics.register("events", "One-shot events, by status", m.events.clone());
        metrics.register(
            "uploads",
            "Self-observability points (task records, run metrics), by kind and outcome",
            m.uploads.clone(),
        );
        m
    }

    pub fn sent(&self, sink: &'static str, kind: &'static str) {
        let labels = vec![("sink", sink.to_string()), ("kind", kind.to_string())];
        self.sent.get_or_create(&labels).inc();
    }

    pub fn failed(&self, sink: &'static str) {
        self.failed.get_or_create(&label("sink", sink)).inc();
    }

    pub fn pending(&self, sink: &'static str) -> Gauge {
        self.pending.get_or_create(&label("sink", sink)).clone()
    }

    pub fn dropped(&self, sink: &'static str, reason: &'static str, count: u64) {
        let labels = vec![("sink", sink.to_string()), ("reason", reason.to_string())];
        self.dropped.get_or_create(&labels).inc_by(count);
    }

    pub fn change(&self, state: &'static str) {
        self.changes.get_or_create(&label("state", state)).inc();
    }

    pub fn event(&self, status: &'static str) {
        self.events.get_or_create(&label("status", status)).inc();
    }

    pub fn upload(&self, kind: &'static str, outcome: &'static str, count: u64) {
        let labels = vec![("kind", kind.to_string()), ("outcome", outcome.to_string())];
        self.uploads.get_or_create(&labels).inc_by(count);
    }
}
