//! The Alertmanager sink: alerts to its API v2 (`POST {url}/api/v2/alerts`). A firing alert has
//! `startsAt` and no `endsAt`; a resolution repeats `startsAt` with `endsAt`. Alertmanager resolves
//! an alert it has not heard of for `resolve_timeout` (5 min by default), so every firing alert
//! is sent again every `ALERTMANAGER_RESEND_INTERVAL` (60 s by default).

use super::notice::{rfc3339, AlertNotice, Notice};
use super::outbox::Deliver;
use crate::redact::redact_url;
use futures::future::BoxFuture;
use serde_json::{json, Value as Json};
use std::time::Duration;

/// Posts alerts to one Alertmanager.
pub struct Alertmanager {
    pub client: reqwest::Client,
    /// `{ALERTMANAGER_URL}/api/v2/alerts`.
    pub endpoint: String,
    /// How often every firing alert is sent again (well inside Alertmanager's `resolve_timeout`).
    pub resend_every: Duration,
}

fn alert_json(alert: &AlertNotice) -> Json {
    let mut labels = alert.labels.clone();
    labels.insert("alertname".into(), alert.name.clone());
    let mut body = json!({
        "labels": labels,
        "annotations": {"summary": alert.summary, "description": alert.description},
        "startsAt": rfc3339(alert.starts_at),
    });
    if let Some(ends) = alert.ends_at {
        body["endsAt"] = json!(rfc3339(ends));
    }
    body
}

impl Alertmanager {
    async fn post(&self, alerts: Vec<Json>) -> Result<(), String> {
        if alerts.is_empty() {
            return Ok(());
        }
        let answer = self
            .client
            .post(&self.endpoint)
            .json(&alerts)
            .send()
            .await
            .map_err(|e| format!("{}: {}", redact_url(&self.endpoint), e.without_url()))?;
        match answer.status() {
            status if status.is_success() => Ok(()),
            status => Err(format!("{} answered {status}", redact_url(&self.endpoint))),
        }
    }
}

impl Deliver for Alertmanager {
    fn name(&self) -> &'static str {
        "alertmanager"
    }

    fn max_batch(&self) -> usize {
        100
    }

    fn send<'a>(&'a self, notices: &'a [Notice]) -> BoxFuture<'a, Result<(), String>> {
        let alerts = notices
            .iter()
            .filter_map(|notice| match notice {
                Notice::Alert(alert) => Some(alert_json(alert)),
                Notice::Event(_) => None,
            })
            .collect();
        Box::pin(self.post(alerts))
    }

    fn resend_every(&self) -> Option<Duration> {
        Some(self.resend_every)
    }
}
