//! SNMP sensors (contract §5.7): fetch each OID (GET or WALK), turn counters into rates, join
//! the results by index, evaluate the expression and fill in the output path.
//!
//! Each sensor is isolated: a failing OID, a bad expression or template costs that sensor's
//! values only, with a log line naming entity, sensor and OID. Only what would fail every
//! sensor alike (no answer from the agent, a wrong v3 password) fails the whole firing.

use crate::counters::{counter_key, CounterKind, CounterStore, RateOutcome, Sample};
use crate::expression::Expression;
use crate::output_path::OutputTemplate;
use crate::session::{Credential, Session, SnmpEngine, SnmpError};
use crate::walk::{get, parse_oid, walk, SnmpValue, WalkRow};
use async_snmp::Oid;
use collector::value::path_problem;
use collector::{SensorConfig, Value};
use prometheus_client::metrics::counter::Counter;
use serde_json::Value as Json;
use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

/// sysUpTime.0, read once per firing when a sensor returned counters.
const SYS_UPTIME: [u32; 9] = [1, 3, 6, 1, 2, 1, 1, 3, 0];

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

/// Everything a polling firing of one entity needs.
#[derive(Debug, Clone, PartialEq)]
pub struct EntityPoll {
    pub entity_id: u64,
    /// `details.ipv4`, possibly with `:port`.
    pub address: Option<String>,
    pub credential: Result<Credential, String>,
    pub sensors: Vec<Result<SensorSpec, SensorProblem>>,
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

/// The result of one OID in one firing, shared by the sensors that ask for the same OID.
enum Fetched {
    Get(SnmpValue),
    Walk(Vec<WalkRow>),
}

/// Per-firing state: the session, what was fetched so far, and the agent's sysUpTime.
struct FiringFetcher {
    session: Arc<Session>,
    fetched: HashMap<(Oid, FetchMethod), Result<Arc<Fetched>, SnmpError>>,
    uptime: Option<Option<u32>>,
    /// A counter showed that the agent restarted since the previous poll.
    restarted: bool,
}

impl FiringFetcher {
    async fn fetch(&mut self, oid: &SensorOid) -> Result<Arc<Fetched>, SnmpError> {
        let key = (oid.oid.clone(), oid.method);
        if let Some(result) = self.fetched.get(&key) {
            return result.clone();
        }
        let result = match oid.method {
            FetchMethod::Get => get(&self.session, &oid.oid).await.map(Fetched::Get),
            FetchMethod::Walk => walk(&self.session, &oid.oid).await.map(Fetched::Walk),
        }
        .map(Arc::new);
        self.fetched.insert(key, result.clone());
        result
    }

    async fn uptime(&mut self) -> Option<u32> {
        if let Some(uptime) = self.uptime {
            return uptime;
        }
        let uptime = match get(&self.session, &Oid::from_slice(&SYS_UPTIME)).await {
            Ok(SnmpValue::TimeTicks(ticks)) => Some(ticks),
            _ => None,
        };
        self.uptime = Some(uptime);
        uptime
    }
}

/// Counters of sensor-level problems, registered with the framework's metrics by the bot.
#[derive(Clone, Default)]
pub struct SensorCounters {
    /// Sensors that gave no values in a firing because of an OID error or bad config.
    pub sensor_failures: Counter,
    /// Rows left out: expression failed, path invalid or repeated.
    pub rows_skipped: Counter,
    /// (entity, sensor) pairs whose empty walk was logged, so it is logged once, not every firing.
    pub empty_walks_logged: Arc<Mutex<HashSet<(u64, u64)>>>,
}

impl SensorCounters {
    /// Logs at INFO, the first time, that a sensor's walk finds nothing on a device (the agent
    /// has no such table, e.g. lm-sensors temperatures), so "no data" differs from "not polled".
    /// Once the walk finds rows again, a later empty walk is logged again.
    /// `empty_oid` is the first walked OID of the sensor that came back empty, if any.
    fn note_walks(&self, entity_id: u64, sensor_id: u64, empty_oid: Option<&str>) {
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

/// Runs the sensors of an entity.
#[derive(Clone)]
pub struct Poller {
    pub engine: Arc<SnmpEngine>,
    pub counters: CounterStore,
    pub metrics: SensorCounters,
}

/// A value of one OID at one index, ready for the expression and the template.
struct Cell<'a> {
    number: Option<f64>,
    text: Cow<'a, str>,
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

impl Poller {
    /// Polls the sensors of `entity` for which `runs(interval)` holds. Fails only when the
    /// agent cannot be used at all (no address, bad credential, no answer, v3 security failure).
    pub async fn poll(
        &self,
        entity: &EntityPoll,
        runs: impl Fn(Option<u64>) -> bool,
    ) -> Result<Vec<Value>, SnmpError> {
        self.poll_noting_restart(entity, runs)
            .await
            .map(|(values, _)| values)
    }

    /// [`Poller::poll`], also saying whether the agent restarted since the previous poll
    /// (its sysUpTime went back, seen by a counter sensor).
    pub async fn poll_noting_restart(
        &self,
        entity: &EntityPoll,
        runs: impl Fn(Option<u64>) -> bool,
    ) -> Result<(Vec<Value>, bool), SnmpError> {
        let entity_id = entity.entity_id;
        let due: Vec<&Result<SensorSpec, SensorProblem>> = entity
            .sensors
            .iter()
            .filter(|s| {
                runs(match s {
                    Ok(spec) => spec.interval,
                    Err(problem) => problem.interval,
                })
            })
            .collect();
        if due.is_empty() {
            return Ok((Vec::new(), false));
        }
        let credential = entity
            .credential
            .as_ref()
            .map_err(|e| SnmpError::Config(format!("unusable SNMP credential: {e}")))?;
        let _slot = self.engine.device_slot().await;
        let address = entity
            .address
            .as_deref()
            .ok_or_else(|| SnmpError::Config("the entity has no details.ipv4 to poll".into()))?;
        let session = self.engine.session(address, credential).await?;
        let mut fetcher = FiringFetcher {
            session,
            fetched: HashMap::new(),
            uptime: None,
            restarted: false,
        };
        let mut values = Vec::new();
        let mut paths = HashSet::new();
        for sensor in due {
            let spec = match sensor {
                Ok(spec) => spec,
                Err(problem) => {
                    tracing::warn!(
                        entity = entity_id,
                        sensor = problem.sensor_id,
                        "sensor skipped: {problem}"
                    );
                    self.metrics.sensor_failures.inc();
                    continue;
                }
            };
            self.poll_sensor(entity_id, spec, &mut fetcher, &mut paths, &mut values)
                .await?;
        }
        Ok((values, fetcher.restarted))
    }

    async fn poll_sensor(
        &self,
        entity_id: u64,
        spec: &SensorSpec,
        fetcher: &mut FiringFetcher,
        paths: &mut HashSet<String>,
        values: &mut Vec<Value>,
    ) -> Result<(), SnmpError> {
        let sensor_id = spec.sensor_id;
        let mut fetched = Vec::with_capacity(spec.oids.len());
        for oid in &spec.oids {
            match fetcher.fetch(oid).await {
                Ok(result) => fetched.push(result),
                Err(error) if error.affects_whole_agent() => return Err(error),
                Err(error) => {
                    tracing::warn!(entity = entity_id, sensor = sensor_id, oid = %oid.text,
                        "sensor gives no values this time: {error}");
                    self.metrics.sensor_failures.inc();
                    return Ok(());
                }
            }
        }
        if fetched.iter().any(|r| matches!(**r, Fetched::Walk(_))) {
            let empty = spec
                .oids
                .iter()
                .zip(&fetched)
                .find_map(|(oid, r)| match &**r {
                    Fetched::Walk(rows) if rows.is_empty() => Some(oid.text.as_str()),
                    _ => None,
                });
            self.metrics.note_walks(entity_id, sensor_id, empty);
        }
        let now = unix_now();
        let rates = self.rates(entity_id, spec, &fetched, fetcher, now).await;

        // Index lookups for every walked OID but the first, whose order gives the rows.
        let walked: Vec<usize> = (0..fetched.len())
            .filter(|&p| matches!(*fetched[p], Fetched::Walk(_)))
            .collect();
        let lookups: HashMap<usize, HashMap<&str, &SnmpValue>> = walked
            .iter()
            .skip(1)
            .filter_map(|&p| match &*fetched[p] {
                Fetched::Walk(rows) => Some((
                    p,
                    rows.iter().map(|r| (r.index.as_str(), &r.value)).collect(),
                )),
                Fetched::Get(_) => None,
            })
            .collect();
        let rows: Vec<(&str, Option<&SnmpValue>)> = match walked.first() {
            None => vec![("0", None)],
            Some(&first) => match &*fetched[first] {
                Fetched::Walk(rows) => rows
                    .iter()
                    .map(|r| (r.index.as_str(), Some(&r.value)))
                    .collect(),
                Fetched::Get(_) => Vec::new(),
            },
        };

        let mut skipped = SkippedRows::default();
        let mut cells: Vec<Cell> = Vec::with_capacity(fetched.len());
        'rows: for (index, first_walked_value) in rows {
            cells.clear();
            for (position, result) in fetched.iter().enumerate() {
                let value = match &**result {
                    Fetched::Get(value) => Some(value),
                    Fetched::Walk(_) if Some(&position) == walked.first() => first_walked_value,
                    Fetched::Walk(_) => lookups
                        .get(&position)
                        .and_then(|lookup| lookup.get(index).copied()),
                };
                let Some(value) = value else { continue 'rows };
                let number = if value.is_counter() {
                    let rate_index = if matches!(**result, Fetched::Get(_)) {
                        "0"
                    } else {
                        index
                    };
                    match rates.get(&(position, rate_index)) {
                        Some(rate) => Some(*rate),
                        // First sample, agent restart...: this row has no value this time.
                        None => continue 'rows,
                    }
                } else {
                    value.as_number()
                };
                cells.push(Cell {
                    number,
                    text: value.text(),
                });
            }
            let result = match spec
                .expression
                .evaluate(|p| cells.get(p).and_then(|c| c.number))
            {
                Ok(result) => result,
                Err(error) => {
                    skipped.note(index, error.to_string());
                    continue;
                }
            };
            let Some(rendered) = spec
                .template
                .render(index, |p| cells.get(p).map(|c| c.text.as_ref()))
            else {
                continue;
            };
            let path = format!("entity.{entity_id}.snmp.{rendered}");
            if let Some(problem) = path_problem(&path) {
                skipped.note(index, format!("path '{path}' is invalid: {problem}"));
                continue;
            }
            if !paths.insert(path.clone()) {
                skipped.note(
                    index,
                    format!("path '{path}' repeats (does output_path lack {{$index}}?)"),
                );
                continue;
            }
            values.push(Value::new(path, result));
        }
        if skipped.count > 0 {
            self.metrics.rows_skipped.inc_by(skipped.count);
            let oids: Vec<&str> = spec.oids.iter().map(|o| o.text.as_str()).collect();
            tracing::warn!(entity = entity_id, sensor = sensor_id, oids = ?oids,
                rows = skipped.count, first_index = %skipped.first_index,
                "rows left out: {}", skipped.first_reason);
        }
        Ok(())
    }

    /// Rates of the counter values of one sensor, by (OID position, index).
    async fn rates<'f>(
        &self,
        entity_id: u64,
        spec: &SensorSpec,
        fetched: &'f [Arc<Fetched>],
        fetcher: &mut FiringFetcher,
        now: f64,
    ) -> HashMap<(usize, &'f str), f64> {
        let mut found: Vec<(usize, &'f str, CounterKind, u64)> = Vec::new();
        for (position, result) in fetched.iter().enumerate() {
            let mut note = |index: &'f str, value: &SnmpValue| match value {
                SnmpValue::Counter32(v) => {
                    found.push((position, index, CounterKind::Counter32, u64::from(*v)))
                }
                SnmpValue::Counter64(v) => {
                    found.push((position, index, CounterKind::Counter64, *v))
                }
                _ => {}
            };
            match &**result {
                Fetched::Get(value) => note("0", value),
                Fetched::Walk(rows) => rows.iter().for_each(|r| note(r.index.as_str(), &r.value)),
            }
        }
        if found.is_empty() {
            return HashMap::new();
        }
        let uptime = fetcher.uptime().await;
        let samples: Vec<(String, Sample)> = found
            .iter()
            .map(|&(position, index, kind, value)| {
                let key = counter_key(
                    entity_id,
                    spec.sensor_id,
                    position,
                    &spec.oids[position].text,
                    index,
                );
                let sample = Sample {
                    kind,
                    value,
                    time: now,
                    uptime,
                };
                (key, sample)
            })
            .collect();
        let outcomes = match self.counters.update_async(samples).await {
            Ok(outcomes) => outcomes,
            Err(error) => {
                tracing::error!(
                    entity = entity_id,
                    sensor = spec.sensor_id,
                    "counter values left out: {error}"
                );
                return HashMap::new();
            }
        };
        let mut restarted = false;
        let rates = found
            .iter()
            .zip(outcomes)
            .filter_map(|(&(position, index, _, _), outcome)| match outcome {
                RateOutcome::Rate(rate) => Some(((position, index), rate)),
                RateOutcome::AgentRestarted => {
                    restarted = true;
                    None
                }
                _ => None,
            })
            .collect();
        if restarted {
            fetcher.restarted = true;
            tracing::info!(entity = entity_id, sensor = spec.sensor_id,
                "the agent restarted since the last poll (sysUpTime went back): counters start over");
        }
        rates
    }
}

/// Rows a sensor left out in one firing, summarised in one log line.
#[derive(Default)]
struct SkippedRows {
    count: u64,
    first_index: String,
    first_reason: String,
}

impl SkippedRows {
    fn note(&mut self, index: &str, reason: String) {
        if self.count == 0 {
            self.first_index = index.to_string();
            self.first_reason = reason;
        }
        self.count += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn config(details: Json) -> SensorConfig {
        SensorConfig {
            sensor_id: 7,
            details,
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
