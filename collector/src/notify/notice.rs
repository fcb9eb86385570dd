//! The notifications the sinks carry: an alert that fired or resolved, and a one-shot event.
//! This is also the JSON shape of `EVENTS_WEBHOOK_URL` POSTs and of standalone stdout lines.

use crate::report::EventStatus;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// An alert's state as a sink sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AlertState {
    Firing,
    Resolved,
}

/// A state change of one alert (or a re-notification of a firing one).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlertNotice {
    pub state: AlertState,
    /// The alert name (`PingHostDown`).
    pub name: String,
    /// `alertname`, `bot`, `job`, `entity`, `entity_name`, `account` and the check's own labels.
    pub labels: BTreeMap<String, String>,
    /// One line for humans: what and where.
    pub summary: String,
    /// The message of the last bad check.
    pub description: String,
    /// Unix time the alert fired.
    pub starts_at: f64,
    /// Unix time it resolved; `None` while firing.
    pub ends_at: Option<f64>,
    /// A repeat of a firing alert after `ALERT_RENOTIFY` seconds.
    pub renotify: bool,
}

/// A one-shot event with the job's labels added.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventNotice {
    /// Unique per bot process and store (`<bot>-<unix ms>-<sequence>`).
    pub id: String,
    pub status: EventStatus,
    pub title: String,
    pub message: String,
    pub tags: BTreeMap<String, String>,
    /// Unix time of the event.
    pub time: f64,
}

/// What goes to a sink.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Notice {
    Alert(AlertNotice),
    Event(EventNotice),
}

impl Notice {
    /// `alert` or `event`, for counters.
    pub fn kind(&self) -> &'static str {
        match self {
            Notice::Alert(_) => "alert",
            Notice::Event(_) => "event",
        }
    }
}

/// Unix seconds as RFC 3339 (Alertmanager's time format), millisecond precision.
pub fn rfc3339(unix: f64) -> String {
    let time = std::time::UNIX_EPOCH + std::time::Duration::from_secs_f64(unix.max(0.0));
    humantime::format_rfc3339_millis(time).to_string()
}
