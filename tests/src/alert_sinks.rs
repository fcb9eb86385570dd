//! The three alert sinks at once, as a user runs them: a real Alertmanager whose notifications
//! arrive at a receiver under `/am`, the events webhook at `/webhook`, and a DataKit stand-in
//! (`/v1/write/...` on the same receiver, reached by a DataWay-style URL with a token) whose line
//! protocol is parsed strictly. A test reads each sink's view of one alert about one entity.

use crate::alertmanager::Alertmanager;
use crate::line_protocol::{parse_body, Point};
use crate::receiver::{Received, Receiver};
use serde_json::Value as Json;
use std::collections::BTreeMap;
use std::time::Duration;

/// The token of the DataWay URL; it must travel in every request's query and never be logged.
pub const DATAKIT_TOKEN: &str = "tkn_0123456789secret";

/// The labels `(name, value)` of one alert as one sink shows them.
pub type Labels = BTreeMap<String, String>;

/// A receiver with a real Alertmanager in front of its `/am` path.
pub struct AlertSinks {
    pub receiver: Receiver,
    pub alertmanager: Alertmanager,
}

impl AlertSinks {
    /// Starts the receiver and an Alertmanager with its default `resolve_timeout`.
    pub async fn start() -> AlertSinks {
        let receiver = Receiver::start().await;
        let alertmanager = Alertmanager::start(&format!("{}/am", receiver.url)).await;
        AlertSinks {
            receiver,
            alertmanager,
        }
    }

    /// `ALERTMANAGER_URL`, `EVENTS_WEBHOOK_URL` and `DATAKIT_URL` pointing a bot at all three.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("ALERTMANAGER_URL", self.alertmanager.url.clone()),
            (
                "EVENTS_WEBHOOK_URL",
                format!("{}/webhook", self.receiver.url),
            ),
            (
                "DATAKIT_URL",
                format!("{}/?token={DATAKIT_TOKEN}", self.receiver.url),
            ),
        ]
    }

    /// Alertmanager's notifications (`firing`/`resolved`) of the group of `alert` on `entity`.
    pub fn alertmanager_states(&self, alert: &str, entity: &str) -> Vec<String> {
        self.alertmanager_notifications(alert, entity)
            .iter()
            .map(|n| n["status"].as_str().unwrap_or("").to_string())
            .collect()
    }

    /// Alertmanager's webhook notifications (JSON) of the group of `alert` on `entity`.
    pub fn alertmanager_notifications(&self, alert: &str, entity: &str) -> Vec<Json> {
        json_bodies(&self.receiver.received("/am"))
            .into_iter()
            .filter(|n| {
                n["commonLabels"]["alertname"] == alert && n["commonLabels"]["entity"] == entity
            })
            .collect()
    }

    /// The webhook's alert notices (`firing`/`resolved`) of `alert` on `entity`, repeats included.
    pub fn webhook_states(&self, alert: &str, entity: &str) -> Vec<String> {
        self.webhook_alerts(alert, entity)
            .iter()
            .map(|a| a["state"].as_str().unwrap_or("").to_string())
            .collect()
    }

    fn webhook_alerts(&self, alert: &str, entity: &str) -> Vec<Json> {
        json_bodies(&self.receiver.received("/webhook"))
            .into_iter()
            .map(|n| n["alert"].clone())
            .filter(|a| a["name"] == alert && a["labels"]["entity"] == entity)
            .collect()
    }

    /// The key events of `alert` on `entity` as alert states (`critical` is `firing`, `ok` is
    /// `resolved`).
    pub fn datakit_states(&self, alert: &str, entity: &str) -> Vec<String> {
        self.datakit_alerts(alert, entity)
            .iter()
            .map(|p| match p.tag("df_status") {
                Some("critical") => "firing".to_string(),
                Some("ok") => "resolved".to_string(),
                other => format!("{other:?}"),
            })
            .collect()
    }

    fn datakit_alerts(&self, alert: &str, entity: &str) -> Vec<Point> {
        self.datakit_points("/v1/write/keyevent")
            .into_iter()
            .filter(|p| p.tag("alertname") == Some(alert) && p.tag("entity") == Some(entity))
            .collect()
    }

    /// Every point posted to a DataKit `path`; panics on a line that does not parse, a POST of
    /// more than 100 points or one without the token.
    pub fn datakit_points(&self, path: &str) -> Vec<Point> {
        let mut points = Vec::new();
        for request in self.receiver.received(path) {
            assert!(
                request.target.ends_with(&format!("?token={DATAKIT_TOKEN}")),
                "the DataWay token travels in the query: {}",
                request.target
            );
            let parsed = parse_body(&request.body).unwrap_or_else(|e| panic!("{path}: {e}"));
            assert!(parsed.len() <= 100, "at most 100 points a POST");
            points.extend(parsed);
        }
        points
    }

    /// What Alertmanager, the webhook and DataKit have seen of `alert` on `entity`, in order.
    pub fn states(&self, alert: &str, entity: &str) -> [Vec<String>; 3] {
        [
            self.alertmanager_states(alert, entity),
            self.webhook_states(alert, entity),
            self.datakit_states(alert, entity),
        ]
    }

    /// Waits until every sink has seen exactly `expected` of `alert` on `entity`.
    pub async fn wait_for(&self, alert: &str, entity: &str, expected: &[&str], timeout: Duration) {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let states = self.states(alert, entity);
            if states.iter().all(|seen| seen == expected) {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{alert} on entity {entity}: waited {timeout:?} for {expected:?} at every sink; \
                 Alertmanager, webhook, DataKit saw {states:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The labels of the first notification of `alert` on `entity` at each sink: Alertmanager's
    /// alert labels, the webhook's labels, DataKit's `df_dimension_tags`.
    pub fn labels(&self, alert: &str, entity: &str) -> [Labels; 3] {
        let from_json =
            |json: &Json| -> Labels { serde_json::from_value(json.clone()).unwrap_or_default() };
        let alertmanager = self
            .alertmanager_notifications(alert, entity)
            .first()
            .map(|n| from_json(&n["alerts"][0]["labels"]))
            .unwrap_or_default();
        let webhook = self
            .webhook_alerts(alert, entity)
            .first()
            .map(|a| from_json(&a["labels"]))
            .unwrap_or_default();
        let datakit = self
            .datakit_alerts(alert, entity)
            .first()
            .and_then(|p| p.str_field("df_dimension_tags").map(str::to_string))
            .and_then(|tags| serde_json::from_str(&tags).ok())
            .unwrap_or_default();
        [alertmanager, webhook, datakit]
    }

    /// Asserts that every sink shows `alert` on `entity` with each of `expected`'s labels.
    pub fn assert_labels(&self, alert: &str, entity: &str, expected: &[(&str, &str)]) {
        let sinks = ["Alertmanager", "webhook", "DataKit"];
        for (sink, labels) in sinks.iter().zip(self.labels(alert, entity)) {
            for (name, value) in expected {
                assert_eq!(
                    labels.get(*name).map(String::as_str),
                    Some(*value),
                    "label {name} of {alert} at {sink}: {labels:?}"
                );
            }
        }
    }
}

fn json_bodies(received: &[Received]) -> Vec<Json> {
    received
        .iter()
        .filter_map(|r| serde_json::from_str(&r.body).ok())
        .collect()
}
