//! SNMP sensors (contract §5.7): fetch each OID (GET or WALK), turn counters into rates, join
//! the results by index, evaluate the expression and fill in the output path.
//!
//! `poll` runs one firing (merged requests, counter rates), `join` turns one sensor's fetched
//! OIDs into values without any I/O.
//!
//! Each sensor is isolated: a failing OID, a bad expression or template costs that sensor's
//! values only, with a log line naming entity, sensor and OID. Only what would fail every
//! sensor alike (no answer from the agent, a wrong v3 password) fails the whole firing.

mod join;
mod poll;

pub use join::{join_rows, Fetched, SkippedRows};
pub use poll::Poller;

use crate::expression::Expression;
use crate::output_path::OutputTemplate;
use crate::session::Credential;
use crate::walk::parse_oid;
use async_snmp::Oid;
use collector::SensorConfig;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::histogram::Histogram;
use serde_json::Value as Json;
use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::{Arc, Mutex};

/// GET one instance or WALK a subtree.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FetchMethod {
    Get,
    Walk,
}

/// One OID of a sensor.
#[derive(Debug, Clone, PartialEq)]
pub struct SensorOid {
    /// Dotted, without a leading dot: how the OID is named in logs and counter keys.
    pub text: String,
    pub oid: Oid,
    pub method: FetchMethod,
}

/// A sensor ready to run: OIDs parsed, expression compiled, template checked.
#[derive(Debug, Clone, PartialEq)]
pub struct SensorSpec {
    pub sensor_id: u64,
    pub interval: Option<u64>,
    pub oids: Vec<SensorOid>,
    pub expression: Expression,
    pub template: OutputTemplate,
}

/// A sensor whose details cannot be used: logged whenever it would run.
#[derive(Debug, Clone, PartialEq)]
pub struct SensorProblem {
    pub sensor_id: u64,
    pub interval: Option<u64>,
    pub message: String,
}

impl fmt::Display for SensorProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

/// Reads and compiles an SNMP sensor's `details` (contract §4.7).
pub fn parse_sensor(config: &SensorConfig) -> Result<SensorSpec, SensorProblem> {
    let problem = |message: String| SensorProblem {
        sensor_id: config.sensor_id,
        interval: config.interval,
        message,
    };
    let details = &config.details;
    let entries = details
        .get("oids")
        .and_then(Json::as_array)
        .filter(|oids| !oids.is_empty())
        .ok_or_else(|| problem("sensor details have no 'oids' list".to_string()))?;
    let mut oids = Vec::with_capacity(entries.len());
    for (position, entry) in entries.iter().enumerate() {
        let text = entry
            .get("oid")
            .and_then(Json::as_str)
            .ok_or_else(|| problem(format!("OID {} has no 'oid' text", position + 1)))?;
        let oid = parse_oid(text).map_err(|e| problem(format!("OID {}: {e}", position + 1)))?;
        let method = match entry.get("fetch_method").and_then(Json::as_str) {
            Some("get") => FetchMethod::Get,
            Some("walk") => FetchMethod::Walk,
            other => {
                return Err(problem(format!(
                    "OID {text}: fetch_method {other:?} is neither \"get\" nor \"walk\""
                )))
            }
        };
        oids.push(SensorOid {
            text: oid.to_string(),
            oid,
            method,
        });
    }
    let expression_text = details
        .get("expression")
        .and_then(Json::as_str)
        .ok_or_else(|| problem("sensor details have no 'expression'".to_string()))?;
    let expression = Expression::compile(expression_text).map_err(|e| problem(e.to_string()))?;
    expression
        .check_variables(oids.len())
        .map_err(|e| problem(e.to_string()))?;
    let template_text = details
        .get("output_path")
        .and_then(Json::as_str)
        .ok_or_else(|| problem("sensor details have no 'output_path'".to_string()))?;
    let template =
        OutputTemplate::compile(template_text, oids.len()).map_err(|e| problem(e.to_string()))?;
    Ok(SensorSpec {
        sensor_id: config.sensor_id,
        interval: config.interval,
        oids,
        expression,
        template,
    })
}

/// Sensors parsed once per job refresh, however many entities use them: entities with the
/// same sensor share its compiled expression.
#[derive(Default)]
pub struct SensorCache {
    parsed: HashMap<(u64, Option<u64>), (Arc<Json>, ParsedSensor)>,
}

/// A parsed sensor, shared by every entity it is attached to (1,000 devices with 36 sensors
/// would otherwise hold 36,000 copies of its OIDs and output template).
type ParsedSensor = Result<Arc<SensorSpec>, SensorProblem>;

impl SensorCache {
    /// [`parse_sensor`], or a copy of the sensor parsed before with the same details.
    pub fn parse(&mut self, config: &SensorConfig) -> ParsedSensor {
        let key = (config.sensor_id, config.interval);
        match self.parsed.get(&key) {
            // `Arc`'s equality sees the same shared details (the usual case) without comparing.
            Some((details, parsed)) if *details == config.details => parsed.clone(),
            _ => {
                let parsed = parse_sensor(config).map(Arc::new);
                self.parsed
                    .insert(key, (config.details.clone(), parsed.clone()));
                parsed
            }
        }
    }
}

/// Everything a polling firing of one entity needs.
#[derive(Debug, Clone, PartialEq)]
pub struct EntityPoll {
    pub entity_id: u64,
    /// `details.ipv4`, possibly with `:port`.
    pub address: Option<String>,
    pub credential: Result<Credential, String>,
    pub sensors: Vec<Result<Arc<SensorSpec>, SensorProblem>>,
}

impl EntityPoll {
    /// The resolved intervals of its sensors (null intervals cannot be scheduled, contract §5.3).
    pub fn intervals(&self) -> Vec<u64> {
        let mut intervals: Vec<u64> = self
            .sensors
            .iter()
            .filter_map(|s| match s {
                Ok(spec) => spec.interval,
                Err(problem) => problem.interval,
            })
            .collect();
        intervals.sort_unstable();
        intervals.dedup();
        intervals
    }
}

/// Counters of sensor-level problems, registered with the framework's metrics by the bot.
#[derive(Clone)]
pub struct SensorCounters {
    /// SNMP requests each device-poll took (merged GETs and walks, sysUpTime included).
    pub requests_per_poll: Histogram,
    /// Sensors that gave no values in a firing because of an OID error or bad config.
    pub sensor_failures: Counter,
    /// Rows left out: expression failed, path invalid or repeated.
    pub rows_skipped: Counter,
    /// (entity, sensor) pairs whose empty walk was logged, so it is logged once, not every firing.
    pub empty_walks_logged: Arc<Mutex<HashSet<(u64, u64)>>>,
}

impl Default for SensorCounters {
    fn default() -> Self {
        SensorCounters {
            requests_per_poll: Histogram::new(
                prometheus_client::metrics::histogram::exponential_buckets(1.0, 2.0, 12),
            ),
            sensor_failures: Counter::default(),
            rows_skipped: Counter::default(),
            empty_walks_logged: Arc::default(),
        }
    }
}

impl SensorCounters {
    /// Logs at INFO, the first time, that a sensor's walk finds nothing on a device (the agent
    /// has no such table, e.g. lm-sensors temperatures), so "no data" differs from "not polled".
    /// Once the walk finds rows again, a later empty walk is logged again.
    /// `empty_oid` is the first walked OID of the sensor that came back empty, if any.
    pub(crate) fn note_walks(&self, entity_id: u64, sensor_id: u64, empty_oid: Option<&str>) {
        let mut logged = self
            .empty_walks_logged
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let Some(oid) = empty_oid else {
            logged.remove(&(entity_id, sensor_id));
            return;
        };
        if logged.insert((entity_id, sensor_id)) {
            tracing::info!(entity = entity_id, sensor = sensor_id, %oid,
                "sensor finds nothing on this device: the walk of {oid} came back empty (the agent \
                 has no such table, or its view hides it); not logged again while it stays empty");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn config(details: Json) -> SensorConfig {
        SensorConfig {
            sensor_id: 7,
            details: details.into(),
            interval: Some(60),
        }
    }

    #[test]
    fn parses_the_seeded_sensors() {
        let spec = parse_sensor(&config(json!({
            "oids": [{"oid": "1.3.6.1.2.1.2.2.1.2", "fetch_method": "walk"},
                     {"oid": ".1.3.6.1.2.1.2.2.1.10", "fetch_method": "walk"}],
            "expression": "$2", "output_path": "if.in-octets.{$index}.{$1}"})))
        .unwrap();
        assert_eq!(spec.oids.len(), 2);
        assert_eq!(spec.oids[1].text, "1.3.6.1.2.1.2.2.1.10");
        assert_eq!(spec.oids[1].method, FetchMethod::Walk);
        assert_eq!(spec.expression.source(), "$2");
    }

    #[test]
    fn bad_sensors_are_problems_naming_the_cause() {
        let cases = [
            (json!({}), "oids"),
            (
                json!({"oids": [], "expression": "$1", "output_path": "x"}),
                "oids",
            ),
            (
                json!({"oids": [{"oid": "ifDescr", "fetch_method": "walk"}], "expression": "$1", "output_path": "x"}),
                "ifDescr",
            ),
            (
                json!({"oids": [{"oid": "1.3.6.1", "fetch_method": "bulk"}], "expression": "$1", "output_path": "x"}),
                "bulk",
            ),
            (
                json!({"oids": [{"oid": "1.3.6.1", "fetch_method": "get"}], "expression": "$1 +", "output_path": "x"}),
                "$1 +",
            ),
            (
                json!({"oids": [{"oid": "1.3.6.1", "fetch_method": "get"}], "expression": "$2", "output_path": "x"}),
                "$2",
            ),
            (
                json!({"oids": [{"oid": "1.3.6.1", "fetch_method": "get"}], "expression": "$1", "output_path": "x.{$2}"}),
                "{$2}",
            ),
            (
                json!({"oids": [{"oid": "1.3.6.1", "fetch_method": "get"}], "expression": "$1"}),
                "output_path",
            ),
        ];
        for (details, needle) in cases {
            let problem = parse_sensor(&config(details.clone())).unwrap_err();
            assert_eq!(problem.sensor_id, 7);
            assert!(
                problem.message.contains(needle),
                "{details}: {}",
                problem.message
            );
        }
    }
}
