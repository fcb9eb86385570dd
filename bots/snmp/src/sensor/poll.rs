//! One polling firing of an entity: every OID of the due sensors fetched in merged requests
//! (each OID once, however many sensors name it), the counters of all sensors turned into
//! rates in one transaction, then each sensor joined on its own.

use super::join::{join_rows, Fetched};
use super::{EntityPoll, FetchMethod, SensorCounters, SensorProblem, SensorSpec};
use crate::counters::{column_key, ColumnSamples, CounterKind, CounterStore, RateOutcome, Sample};
use crate::merged::Exchange;
use crate::session::{SnmpEngine, SnmpError};
use crate::walk::SnmpValue;
use async_snmp::Oid;
use collector::Value;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

/// sysUpTime.0: the agent's restart shows in it going back (counters start over then).
const SYS_UPTIME: [u32; 9] = [1, 3, 6, 1, 2, 1, 1, 3, 0];

/// Runs the sensors of an entity.
#[derive(Clone)]
pub struct Poller {
    pub engine: Arc<SnmpEngine>,
    pub counters: CounterStore,
    pub metrics: SensorCounters,
}

type OidKey = (Oid, FetchMethod);

/// What one firing fetched: each OID's result, and how many due sensors still need it (a
/// result is dropped as soon as its last sensor is done).
struct FiringResults {
    fetched: HashMap<OidKey, (Result<Fetched, SnmpError>, usize)>,
    /// sysUpTime, if it was read.
    uptime: Option<Option<u32>>,
}

/// One counter value of a sensor: OID position, index (`0` for a GET), kind, value.
type CounterValue<'f> = (usize, &'f str, CounterKind, u64);

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
        let mut due: Vec<&SensorSpec> = Vec::new();
        let mut problems: Vec<&SensorProblem> = Vec::new();
        for sensor in &entity.sensors {
            match sensor {
                Ok(spec) if runs(spec.interval) => due.push(spec),
                Err(problem) if runs(problem.interval) => problems.push(problem),
                _ => {}
            }
        }
        if due.is_empty() && problems.is_empty() {
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
        for problem in problems {
            tracing::warn!(
                entity = entity_id,
                sensor = problem.sensor_id,
                "sensor skipped: {problem}"
            );
            self.metrics.sensor_failures.inc();
        }
        if due.is_empty() {
            return Ok((Vec::new(), false));
        }
        let exchange = Exchange::new(&session);
        let result = self.poll_due(entity_id, &due, &exchange).await;
        self.metrics
            .requests_per_poll
            .observe(f64::from(exchange.requests()));
        result
    }

    async fn poll_due(
        &self,
        entity_id: u64,
        due: &[&SensorSpec],
        exchange: &Exchange<'_>,
    ) -> Result<(Vec<Value>, bool), SnmpError> {
        let mut results = fetch_all(due, exchange).await?;
        let (rates, restarted) = self.rates(entity_id, due, &mut results, exchange).await?;
        let mut values = Vec::new();
        let mut paths = HashSet::new();
        for (spec, rates) in due.iter().zip(rates) {
            let keys: Vec<OidKey> = spec
                .oids
                .iter()
                .map(|o| (o.oid.clone(), o.method))
                .collect();
            if let Some(fetched) = self.sensor_results(entity_id, spec, &results) {
                let rates = rates
                    .iter()
                    .map(|((p, i), r)| ((*p, i.as_str()), *r))
                    .collect();
                let skipped = join_rows(entity_id, spec, &fetched, &rates, &mut paths, &mut values);
                if skipped.count > 0 {
                    self.metrics.rows_skipped.inc_by(skipped.count);
                    let oids: Vec<&str> = spec.oids.iter().map(|o| o.text.as_str()).collect();
                    tracing::warn!(entity = entity_id, sensor = spec.sensor_id, oids = ?oids,
                        rows = skipped.count, first_index = %skipped.first_index,
                        "rows left out: {}", skipped.first_reason);
                }
            }
            release(&mut results, &keys);
        }
        Ok((values, restarted))
    }

    /// The sensor's fetched OIDs in its order, or `None` (logged and counted) when one failed.
    fn sensor_results<'r>(
        &self,
        entity_id: u64,
        spec: &SensorSpec,
        results: &'r FiringResults,
    ) -> Option<Vec<&'r Fetched>> {
        let mut fetched = Vec::with_capacity(spec.oids.len());
        for oid in &spec.oids {
            match results.fetched.get(&(oid.oid.clone(), oid.method)) {
                Some((Ok(result), _)) => fetched.push(result),
                Some((Err(error), _)) => {
                    tracing::warn!(entity = entity_id, sensor = spec.sensor_id, oid = %oid.text,
                        "sensor gives no values this time: {error}");
                    self.metrics.sensor_failures.inc();
                    return None;
                }
                None => return None,
            }
        }
        if fetched.iter().any(|r| matches!(r, Fetched::Walk(_))) {
            let empty = spec.oids.iter().zip(&fetched).find_map(|(oid, r)| match r {
                Fetched::Walk(rows) if rows.is_empty() => Some(oid.text.as_str()),
                _ => None,
            });
            self.metrics.note_walks(entity_id, spec.sensor_id, empty);
        }
        Some(fetched)
    }

    /// The rates of every due sensor's counters, by (OID position, index), from one counter
    /// store transaction; and whether the agent restarted since the previous poll.
    async fn rates(
        &self,
        entity_id: u64,
        due: &[&SensorSpec],
        results: &mut FiringResults,
        exchange: &Exchange<'_>,
    ) -> Result<(Vec<HashMap<(usize, String), f64>>, bool), SnmpError> {
        let found: Vec<Vec<CounterValue>> = due
            .iter()
            .map(|spec| counter_values(spec, results))
            .collect();
        let mut rates: Vec<HashMap<(usize, String), f64>> = vec![HashMap::new(); due.len()];
        if found.iter().all(Vec::is_empty) {
            return Ok((rates, false));
        }
        let uptime = match results.uptime {
            Some(uptime) => uptime,
            None => uptime_of(exchange.get_many(&[Oid::from_slice(&SYS_UPTIME)]).await?),
        };
        let now = unix_now();
        let mut columns: Vec<ColumnSamples> = Vec::new();
        for (spec, found) in due.iter().zip(&found) {
            // A sensor's counters come column by column: a new position starts a new column.
            let mut column_of = None;
            for &(position, index, kind, value) in found {
                if column_of != Some(position) {
                    column_of = Some(position);
                    let oid = &spec.oids[position].text;
                    columns.push(ColumnSamples {
                        key: column_key(entity_id, spec.sensor_id, position, oid),
                        samples: Vec::new(),
                    });
                }
                let sample = Sample {
                    kind,
                    value,
                    time: now,
                    uptime,
                };
                if let Some(column) = columns.last_mut() {
                    column.samples.push((index.to_string(), sample));
                }
            }
        }
        let mut outcomes = match self.counters.update_async(columns).await {
            Ok(outcomes) => outcomes.into_iter(),
            Err(error) => {
                tracing::error!(entity = entity_id, "counter values left out: {error}");
                return Ok((rates, false));
            }
        };
        let mut restarted = false;
        for ((spec, found), rates) in due.iter().zip(&found).zip(&mut rates) {
            let mut sensor_restarted = false;
            for &(position, index, _, _) in found {
                match outcomes.next() {
                    Some(RateOutcome::Rate(rate)) => {
                        rates.insert((position, index.to_string()), rate);
                    }
                    Some(RateOutcome::AgentRestarted) => sensor_restarted = true,
                    _ => {}
                }
            }
            if sensor_restarted {
                restarted = true;
                tracing::info!(entity = entity_id, sensor = spec.sensor_id,
                    "the agent restarted since the last poll (sysUpTime went back): counters start over");
            }
        }
        Ok((rates, restarted))
    }
}

fn uptime_of(mut values: Vec<Result<SnmpValue, SnmpError>>) -> Option<u32> {
    match values.pop() {
        Some(Ok(SnmpValue::TimeTicks(ticks))) => Some(ticks),
        _ => None,
    }
}

/// The counter values among a sensor's fetched OIDs (none if one of its OIDs failed).
fn counter_values<'f>(spec: &SensorSpec, results: &'f FiringResults) -> Vec<CounterValue<'f>> {
    let mut found = Vec::new();
    let mut fetched = Vec::with_capacity(spec.oids.len());
    for oid in &spec.oids {
        match results.fetched.get(&(oid.oid.clone(), oid.method)) {
            Some((Ok(result), _)) => fetched.push(result),
            _ => return found,
        }
    }
    for (position, result) in fetched.into_iter().enumerate() {
        let mut note = |index: &'f str, value: &SnmpValue| match value {
            SnmpValue::Counter32(v) => {
                found.push((position, index, CounterKind::Counter32, u64::from(*v)))
            }
            SnmpValue::Counter64(v) => found.push((position, index, CounterKind::Counter64, *v)),
            _ => {}
        };
        match result {
            Fetched::Get(value) => note("0", value),
            Fetched::Walk(rows) => rows.iter().for_each(|r| note(r.index.as_str(), &r.value)),
        }
    }
    found
}

/// Fetches every OID of the due sensors once: one merged GET (with sysUpTime when there are
/// GETs anyway) and one merged walk. `Err` only when the agent cannot be used at all.
async fn fetch_all(
    due: &[&SensorSpec],
    exchange: &Exchange<'_>,
) -> Result<FiringResults, SnmpError> {
    let mut uses: HashMap<OidKey, usize> = HashMap::new();
    let mut gets: Vec<Oid> = Vec::new();
    let mut walks: Vec<Oid> = Vec::new();
    for oid in due.iter().flat_map(|spec| &spec.oids) {
        let count = uses.entry((oid.oid.clone(), oid.method)).or_insert(0);
        if *count == 0 {
            match oid.method {
                FetchMethod::Get => gets.push(oid.oid.clone()),
                FetchMethod::Walk => walks.push(oid.oid.clone()),
            }
        }
        *count += 1;
    }
    let mut results = FiringResults {
        fetched: HashMap::with_capacity(uses.len()),
        uptime: None,
    };
    if !gets.is_empty() {
        let uptime_oid = Oid::from_slice(&SYS_UPTIME);
        let with_uptime = !gets.contains(&uptime_oid);
        if with_uptime {
            gets.push(uptime_oid.clone());
        }
        let mut values = exchange.get_many(&gets).await?;
        if with_uptime {
            results.uptime = Some(uptime_of(values.split_off(gets.len() - 1)));
            gets.pop();
        } else if let Some(position) = gets.iter().position(|o| *o == uptime_oid) {
            results.uptime = Some(match &values[position] {
                Ok(SnmpValue::TimeTicks(ticks)) => Some(*ticks),
                _ => None,
            });
        }
        for (oid, value) in gets.into_iter().zip(values) {
            let key = (oid, FetchMethod::Get);
            let count = uses.get(&key).copied().unwrap_or(0);
            results
                .fetched
                .insert(key, (value.map(Fetched::Get), count));
        }
    }
    if !walks.is_empty() {
        let rows = exchange.walk_many(&walks).await?;
        for (oid, rows) in walks.into_iter().zip(rows) {
            let key = (oid, FetchMethod::Walk);
            let count = uses.get(&key).copied().unwrap_or(0);
            results
                .fetched
                .insert(key, (rows.map(Fetched::Walk), count));
        }
    }
    Ok(results)
}

/// One sensor is done with `keys`: results no sensor needs any more are dropped now, not at
/// the end of the firing.
fn release(results: &mut FiringResults, keys: &[OidKey]) {
    for key in keys {
        if let Some((_, uses)) = results.fetched.get_mut(key) {
            *uses -= 1;
            if *uses == 0 {
                results.fetched.remove(key);
            }
        }
    }
}
