//! Counter32/Counter64 values become per-second rates (contract §5.7), with the previous sample
//! of every counter kept in the embedded store so that rates go on across restarts.
//!
//! Better than the original where it lost data: a Counter32 that wrapped is corrected instead of
//! dropped, 64-bit counters keep full precision, and an agent restart (its sysUpTime went back)
//! is recognised, so a counter reset never shows up as a huge or wrapped rate.

use redb::{Durability, ReadableDatabase, ReadableTable, TableDefinition};
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Anything that holds the bot's redb database (the framework's store, or a bare database in
/// tests and benchmarks).
pub trait DatabaseHandle: Send + Sync + 'static {
    fn database(&self) -> &redb::Database;
}

impl DatabaseHandle for redb::Database {
    fn database(&self) -> &redb::Database {
        self
    }
}

/// Which counter type a sample came from; 32-bit counters wrap at 2^32.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CounterKind {
    Counter32,
    Counter64,
}

/// One reading of a counter.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sample {
    pub kind: CounterKind,
    pub value: u64,
    /// Unix time in seconds when the value was fetched.
    pub time: f64,
    /// The agent's sysUpTime (hundredths of a second) at that time, if known.
    pub uptime: Option<u32>,
}

/// What one new sample gives.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum RateOutcome {
    /// Units per second since the previous sample.
    Rate(f64),
    /// No previous sample (or one of another counter type): nothing yet.
    FirstSample,
    /// The agent restarted since the previous sample: its counters started again.
    AgentRestarted,
    /// A Counter64 went down: a reset or discontinuity, not a wrap.
    Reset,
    /// The clock did not advance between the samples.
    NoTimeElapsed,
}

/// Computes the rate between two samples of one counter.
pub fn rate(previous: Option<&Sample>, current: &Sample) -> RateOutcome {
    let Some(previous) = previous.filter(|p| p.kind == current.kind) else {
        return RateOutcome::FirstSample;
    };
    if let (Some(before), Some(now)) = (previous.uptime, current.uptime) {
        if now < before {
            return RateOutcome::AgentRestarted;
        }
    }
    let elapsed = current.time - previous.time;
    if elapsed <= 0.0 || !elapsed.is_finite() {
        return RateOutcome::NoTimeElapsed;
    }
    let delta = if current.value >= previous.value {
        current.value - previous.value
    } else {
        match current.kind {
            CounterKind::Counter32 => (1u64 << 32) - previous.value + current.value,
            CounterKind::Counter64 => return RateOutcome::Reset,
        }
    };
    RateOutcome::Rate(delta as f64 / elapsed)
}

/// Where counter samples live: one redb record per counter column (one OID of one sensor of one
/// entity) holding the samples of all its indexes, so that a firing reads and writes each column
/// once rather than each counter. Commits are not synced to disk one by one; the store syncs at
/// most every `sync_every` and on [`CounterStore::flush`], so a crash loses only the latest
/// samples, and the next rate then simply spans a longer time.
#[derive(Clone)]
pub struct CounterStore {
    database: Arc<dyn DatabaseHandle>,
    sync_every: Duration,
    last_sync_secs: Arc<AtomicU64>,
    /// redb runs one write transaction at a time: async callers queue here, not in threads.
    writer: Arc<tokio::sync::Mutex<()>>,
}

/// Counter columns, keyed by [`column_key`], each an [`encode_column`] record.
const COLUMNS: TableDefinition<&str, &[u8]> = TableDefinition::new("snmp_counter_columns");
/// Where earlier versions kept one record per counter; [`CounterStore::migrate`] moves them.
const PER_COUNTER: TableDefinition<&str, &[u8]> = TableDefinition::new("snmp_counters");
const ENCODED_LEN: usize = 1 + 8 + 8 + 1 + 4;

/// The identity of one counter column: entity, sensor, OID position in the sensor, OID.
pub fn column_key(entity_id: u64, sensor_id: u64, position: usize, oid: &str) -> String {
    format!("{entity_id}/{sensor_id}/{position}/{oid}")
}

/// This firing's samples of one counter column, by index (`0` for a GET).
#[derive(Debug, Clone, PartialEq)]
pub struct ColumnSamples {
    pub key: String,
    pub samples: Vec<(String, Sample)>,
}

fn encode(sample: &Sample) -> [u8; ENCODED_LEN] {
    let mut bytes = [0u8; ENCODED_LEN];
    bytes[0] = match sample.kind {
        CounterKind::Counter32 => 32,
        CounterKind::Counter64 => 64,
    };
    bytes[1..9].copy_from_slice(&sample.value.to_le_bytes());
    bytes[9..17].copy_from_slice(&sample.time.to_le_bytes());
    if let Some(uptime) = sample.uptime {
        bytes[17] = 1;
        bytes[18..22].copy_from_slice(&uptime.to_le_bytes());
    }
    bytes
}

fn decode(bytes: &[u8]) -> Option<Sample> {
    let bytes: &[u8; ENCODED_LEN] = bytes.try_into().ok()?;
    let kind = match bytes[0] {
        32 => CounterKind::Counter32,
        64 => CounterKind::Counter64,
        _ => return None,
    };
    let value = u64::from_le_bytes(bytes[1..9].try_into().ok()?);
    let time = f64::from_le_bytes(bytes[9..17].try_into().ok()?);
    let uptime = match bytes[17] {
        1 => Some(u32::from_le_bytes(bytes[18..22].try_into().ok()?)),
        _ => None,
    };
    Some(Sample {
        kind,
        value,
        time,
        uptime,
    })
}

/// A column record: for each index, its length (u16, little-endian), the index, the sample.
/// Indexes longer than 65,535 bytes (no agent has them) are left out.
fn encode_column<'a>(entries: impl Iterator<Item = (&'a str, &'a Sample)>, out: &mut Vec<u8>) {
    out.clear();
    for (index, sample) in entries {
        let Ok(len) = u16::try_from(index.len()) else {
            continue;
        };
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(index.as_bytes());
        out.extend_from_slice(&encode(sample));
    }
}

/// The entries of a column record; `None` if it is damaged (its samples then start over).
fn decode_column(mut bytes: &[u8]) -> Option<Vec<(&str, Sample)>> {
    let mut entries = Vec::new();
    while !bytes.is_empty() {
        let len = usize::from(u16::from_le_bytes(bytes.get(..2)?.try_into().ok()?));
        let index = std::str::from_utf8(bytes.get(2..2 + len)?).ok()?;
        let sample = decode(bytes.get(2 + len..2 + len + ENCODED_LEN)?)?;
        entries.push((index, sample));
        bytes = &bytes[2 + len + ENCODED_LEN..];
    }
    Some(entries)
}

/// A column's stored samples, found by index: at the same position as in the new firing when
/// the agent keeps its order (the common case), through a map otherwise.
struct Previous<'b> {
    entries: Vec<(&'b str, Sample)>,
    taken: Vec<bool>,
    by_index: Option<HashMap<&'b str, usize>>,
}

impl<'b> Previous<'b> {
    fn new(entries: Vec<(&'b str, Sample)>) -> Self {
        Previous {
            taken: vec![false; entries.len()],
            entries,
            by_index: None,
        }
    }

    /// The stored sample of `index`, which this firing's sample replaces.
    fn take(&mut self, position: usize, index: &str) -> Option<Sample> {
        let at = match self.entries.get(position) {
            Some((stored, _)) if *stored == index => Some(position),
            _ => {
                let entries = &self.entries;
                let by_index = self.by_index.get_or_insert_with(|| {
                    entries
                        .iter()
                        .enumerate()
                        .map(|(i, (k, _))| (*k, i))
                        .collect()
                });
                by_index.get(index).copied()
            }
        }?;
        self.taken[at] = true;
        Some(self.entries[at].1)
    }

    /// Stored samples this firing did not have (an interface missing from one walk keeps its
    /// sample until it comes back or ages out).
    fn kept(&self) -> impl Iterator<Item = (&'b str, &Sample)> {
        self.entries
            .iter()
            .zip(&self.taken)
            .filter(|(_, taken)| !**taken)
            .map(|((index, sample), _)| (*index, sample))
    }
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

fn problem(e: &dyn std::fmt::Display) -> String {
    format!("counter store: {e}")
}

impl CounterStore {
    /// A store in `database`; syncs to disk at most every `sync_every`.
    pub fn new(database: Arc<dyn DatabaseHandle>, sync_every: Duration) -> CounterStore {
        CounterStore {
            database,
            sync_every,
            last_sync_secs: Arc::new(AtomicU64::new(unix_now() as u64)),
            writer: Arc::new(tokio::sync::Mutex::new(())),
        }
    }

    /// [`CounterStore::update`] for async callers: the blocking commit runs on tokio's blocking
    /// pool, one at a time, so the async workers never wait for the disk.
    pub async fn update_async(
        &self,
        columns: Vec<ColumnSamples>,
    ) -> Result<Vec<RateOutcome>, String> {
        let _turn = self.writer.lock().await;
        let store = self.clone();
        tokio::task::spawn_blocking(move || store.update(&columns))
            .await
            .unwrap_or_else(|e| Err(format!("counter store task: {e}")))
    }

    /// Stores the new samples and returns, for each sample of each column in order, the rate
    /// against the stored previous sample. All columns of one call are one transaction.
    pub fn update(&self, columns: &[ColumnSamples]) -> Result<Vec<RateOutcome>, String> {
        if columns.is_empty() {
            return Ok(Vec::new());
        }
        let mut write = self
            .database
            .database()
            .begin_write()
            .map_err(|e| problem(&e))?;
        let now = unix_now() as u64;
        let last_sync = self.last_sync_secs.load(Ordering::Relaxed);
        let sync = now.saturating_sub(last_sync) >= self.sync_every.as_secs();
        if !sync {
            // Shared-database modes refuse non-durable commits; then every commit syncs.
            let _ = write.set_durability(Durability::None);
        }
        let mut outcomes = Vec::with_capacity(columns.iter().map(|c| c.samples.len()).sum());
        {
            let mut table = write.open_table(COLUMNS).map_err(|e| problem(&e))?;
            let mut stored = Vec::new();
            let mut record = Vec::new();
            for column in columns {
                stored.clear();
                if let Some(bytes) = table.get(column.key.as_str()).map_err(|e| problem(&e))? {
                    stored.extend_from_slice(bytes.value());
                }
                let mut previous = Previous::new(decode_column(&stored).unwrap_or_default());
                for (position, (index, sample)) in column.samples.iter().enumerate() {
                    outcomes.push(rate(previous.take(position, index).as_ref(), sample));
                }
                let fresh = column.samples.iter().map(|(i, s)| (i.as_str(), s));
                encode_column(fresh.chain(previous.kept()), &mut record);
                table
                    .insert(column.key.as_str(), record.as_slice())
                    .map_err(|e| problem(&e))?;
            }
        }
        write.commit().map_err(|e| problem(&e))?;
        if sync {
            self.last_sync_secs.store(now, Ordering::Relaxed);
        }
        Ok(outcomes)
    }

    /// Syncs every stored sample to disk (at shutdown).
    pub fn flush(&self) -> Result<(), String> {
        let write = self
            .database
            .database()
            .begin_write()
            .map_err(|e| problem(&e))?;
        write.commit().map_err(|e| problem(&e))?;
        self.last_sync_secs
            .store(unix_now() as u64, Ordering::Relaxed);
        Ok(())
    }

    /// Moves the samples of a store written by an earlier version (one record per counter) into
    /// columns, so that rates go on across the upgrade. Returns how many samples moved.
    pub fn migrate(&self) -> Result<usize, String> {
        let read = self
            .database
            .database()
            .begin_read()
            .map_err(|e| problem(&e))?;
        match read.open_table(PER_COUNTER) {
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(0),
            Err(e) => return Err(problem(&e)),
            Ok(_) => drop(read),
        }
        let write = self
            .database
            .database()
            .begin_write()
            .map_err(|e| problem(&e))?;
        let mut columns: BTreeMap<String, Vec<(String, Sample)>> = BTreeMap::new();
        let mut moved = 0;
        {
            let old = write.open_table(PER_COUNTER).map_err(|e| problem(&e))?;
            for entry in old.iter().map_err(|e| problem(&e))? {
                let (key, value) = entry.map_err(|e| problem(&e))?;
                let (Some((column, index)), Some(sample)) =
                    (split_counter_key(key.value()), decode(value.value()))
                else {
                    continue;
                };
                columns
                    .entry(column.to_string())
                    .or_default()
                    .push((index.to_string(), sample));
                moved += 1;
            }
        }
        write.delete_table(PER_COUNTER).map_err(|e| problem(&e))?;
        {
            let mut table = write.open_table(COLUMNS).map_err(|e| problem(&e))?;
            let mut record = Vec::new();
            for (key, samples) in &columns {
                encode_column(samples.iter().map(|(i, s)| (i.as_str(), s)), &mut record);
                table
                    .insert(key.as_str(), record.as_slice())
                    .map_err(|e| problem(&e))?;
            }
        }
        write.commit().map_err(|e| problem(&e))?;
        Ok(moved)
    }

    /// Removes samples older than `max_age` (counters of entities, sensors or interfaces that
    /// are gone). Returns how many were removed.
    pub fn prune(&self, max_age: Duration) -> Result<usize, String> {
        let cutoff = unix_now() - max_age.as_secs_f64();
        let write = self
            .database
            .database()
            .begin_write()
            .map_err(|e| problem(&e))?;
        let mut removed = 0;
        {
            let mut table = write.open_table(COLUMNS).map_err(|e| problem(&e))?;
            let mut changed: Vec<(String, Vec<u8>)> = Vec::new();
            for entry in table.iter().map_err(|e| problem(&e))? {
                let (key, value) = entry.map_err(|e| problem(&e))?;
                let entries = decode_column(value.value()).unwrap_or_default();
                let fresh: Vec<_> = entries.iter().filter(|(_, s)| s.time >= cutoff).collect();
                if fresh.len() < entries.len() || entries.is_empty() {
                    removed += entries.len() - fresh.len();
                    let mut record = Vec::new();
                    encode_column(fresh.iter().map(|(i, s)| (*i, s)), &mut record);
                    changed.push((key.value().to_string(), record));
                }
            }
            for (key, record) in changed {
                if record.is_empty() {
                    table.remove(key.as_str()).map_err(|e| problem(&e))?;
                } else {
                    table
                        .insert(key.as_str(), record.as_slice())
                        .map_err(|e| problem(&e))?;
                }
            }
        }
        write.commit().map_err(|e| problem(&e))?;
        Ok(removed)
    }
}

/// An earlier version's per-counter key, `entity/sensor/position/oid/index`, as column and
/// index (the index may itself hold `/`).
fn split_counter_key(key: &str) -> Option<(&str, &str)> {
    let mut slashes = key.match_indices('/').map(|(at, _)| at);
    let fourth = slashes.nth(3)?;
    Some((&key[..fourth], &key[fourth + 1..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(kind: CounterKind, value: u64, time: f64, uptime: Option<u32>) -> Sample {
        Sample {
            kind,
            value,
            time,
            uptime,
        }
    }

    #[test]
    fn rates() {
        let first = sample(CounterKind::Counter32, 1000, 100.0, Some(500));
        assert_eq!(rate(None, &first), RateOutcome::FirstSample);
        let second = sample(CounterKind::Counter32, 7000, 160.0, Some(6500));
        assert_eq!(rate(Some(&first), &second), RateOutcome::Rate(100.0));
    }

    #[test]
    fn counter32_wrap_is_corrected() {
        let before = sample(CounterKind::Counter32, u32::MAX as u64 - 99, 10.0, None);
        let after = sample(CounterKind::Counter32, 100, 12.0, None);
        assert_eq!(rate(Some(&before), &after), RateOutcome::Rate(100.0));
    }

    #[test]
    fn counter64_keeps_precision_and_does_not_wrap() {
        let big = (1u64 << 60) + 1;
        let before = sample(CounterKind::Counter64, big, 0.0, None);
        let after = sample(CounterKind::Counter64, big + 3, 1.0, None);
        assert_eq!(rate(Some(&before), &after), RateOutcome::Rate(3.0));
        assert_eq!(rate(Some(&after), &before), RateOutcome::NoTimeElapsed);
        let later_lower = sample(CounterKind::Counter64, 5, 2.0, None);
        assert_eq!(rate(Some(&after), &later_lower), RateOutcome::Reset);
    }

    #[test]
    fn agent_restart_gives_nothing() {
        let before = sample(CounterKind::Counter32, 5000, 10.0, Some(100_000));
        let after = sample(CounterKind::Counter32, 10, 70.0, Some(3000));
        assert_eq!(rate(Some(&before), &after), RateOutcome::AgentRestarted);
    }

    #[test]
    fn kind_change_starts_over() {
        let before = sample(CounterKind::Counter32, 5, 10.0, None);
        let after = sample(CounterKind::Counter64, 10, 20.0, None);
        assert_eq!(rate(Some(&before), &after), RateOutcome::FirstSample);
    }

    #[test]
    fn encoding_round_trips_and_rejects_garbage() {
        for s in [
            sample(CounterKind::Counter32, 42, 1.5, Some(7)),
            sample(CounterKind::Counter64, u64::MAX, 1e9, None),
        ] {
            assert_eq!(decode(&encode(&s)), Some(s));
        }
        assert_eq!(decode(&[1, 2, 3]), None);
        assert_eq!(decode(&[0u8; ENCODED_LEN]), None);
    }

    fn store(dir: &tempfile::TempDir) -> CounterStore {
        let database = redb::Database::create(dir.path().join("state.redb")).unwrap();
        CounterStore::new(Arc::new(database), Duration::from_secs(30))
    }

    fn column(key: &str, samples: &[(&str, Sample)]) -> ColumnSamples {
        ColumnSamples {
            key: key.to_string(),
            samples: samples.iter().map(|(i, s)| (i.to_string(), *s)).collect(),
        }
    }

    fn rate_of(outcome: &RateOutcome) -> f64 {
        match outcome {
            RateOutcome::Rate(rate) => *rate,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn samples_persist_across_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let key = column_key(1, 2, 0, "1.3.6.1.2.1.2.2.1.10");
        {
            let counters = store(&dir);
            let first = sample(CounterKind::Counter32, 1000, unix_now() - 10.0, None);
            let outcomes = counters.update(&[column(&key, &[("3", first)])]).unwrap();
            assert_eq!(outcomes, vec![RateOutcome::FirstSample]);
            counters.flush().unwrap();
        }
        let counters = store(&dir);
        let second = sample(CounterKind::Counter32, 2000, unix_now(), None);
        let outcomes = counters.update(&[column(&key, &[("3", second)])]).unwrap();
        assert!((rate_of(&outcomes[0]) - 100.0).abs() < 1.0, "{outcomes:?}");
    }

    #[test]
    fn each_index_keeps_its_own_sample_in_any_order_and_absent_ones_wait() {
        let dir = tempfile::tempdir().unwrap();
        let counters = store(&dir);
        let key = column_key(1, 2, 0, "1.3.6.1.2.1.2.2.1.10");
        let at = |value, time| sample(CounterKind::Counter64, value, time, None);
        let first = [
            ("1", at(100, 10.0)),
            ("2", at(200, 10.0)),
            ("3", at(300, 10.0)),
        ];
        counters.update(&[column(&key, &first)]).unwrap();
        // Another order, index 2 missing, a new index 4.
        let second = [
            ("3", at(330, 20.0)),
            ("1", at(110, 20.0)),
            ("4", at(5, 20.0)),
        ];
        let outcomes = counters.update(&[column(&key, &second)]).unwrap();
        assert_eq!(rate_of(&outcomes[0]), 3.0);
        assert_eq!(rate_of(&outcomes[1]), 1.0);
        assert_eq!(outcomes[2], RateOutcome::FirstSample);
        // Index 2 comes back: its rate spans both intervals.
        let third = [("1", at(120, 30.0)), ("2", at(400, 30.0))];
        let outcomes = counters.update(&[column(&key, &third)]).unwrap();
        assert_eq!(rate_of(&outcomes[0]), 1.0);
        assert_eq!(rate_of(&outcomes[1]), 10.0);
    }

    #[test]
    fn columns_do_not_mix() {
        let dir = tempfile::tempdir().unwrap();
        let counters = store(&dir);
        let at = |value, time| sample(CounterKind::Counter32, value, time, None);
        let (a, b) = (
            column_key(1, 2, 0, "1.3.6.1"),
            column_key(1, 2, 1, "1.3.6.1"),
        );
        counters
            .update(&[
                column(&a, &[("1", at(10, 1.0))]),
                column(&b, &[("1", at(1000, 1.0))]),
            ])
            .unwrap();
        let outcomes = counters
            .update(&[
                column(&a, &[("1", at(20, 2.0))]),
                column(&b, &[("1", at(1500, 2.0))]),
            ])
            .unwrap();
        assert_eq!(
            (rate_of(&outcomes[0]), rate_of(&outcomes[1])),
            (10.0, 500.0)
        );
    }

    #[test]
    fn column_records_round_trip_and_damage_is_refused() {
        let samples = [
            ("1", sample(CounterKind::Counter32, 42, 1.5, Some(7))),
            (
                "10.1.2",
                sample(CounterKind::Counter64, u64::MAX, 1e9, None),
            ),
        ];
        let mut record = Vec::new();
        encode_column(samples.iter().map(|(i, s)| (*i, s)), &mut record);
        assert_eq!(decode_column(&record), Some(samples.to_vec()));
        assert_eq!(decode_column(&record[..record.len() - 1]), None);
        assert_eq!(decode_column(&[200, 0, b'1']), None);
        assert_eq!(decode_column(&[]), Some(Vec::new()));
    }

    #[test]
    fn prune_removes_old_samples() {
        let dir = tempfile::tempdir().unwrap();
        let counters = store(&dir);
        let old = sample(CounterKind::Counter32, 1, unix_now() - 10_000.0, None);
        let fresh = sample(CounterKind::Counter32, 1, unix_now(), None);
        let (mixed, stale) = (column_key(1, 2, 0, "1.3"), column_key(1, 3, 0, "1.3"));
        counters
            .update(&[
                column(&mixed, &[("old", old), ("fresh", fresh)]),
                column(&stale, &[("1", old)]),
            ])
            .unwrap();
        assert_eq!(counters.prune(Duration::from_secs(3600)).unwrap(), 2);
        let outcomes = counters
            .update(&[
                column(&mixed, &[("old", fresh), ("fresh", fresh)]),
                column(&stale, &[("1", fresh)]),
            ])
            .unwrap();
        assert_eq!(outcomes[0], RateOutcome::FirstSample);
        assert_eq!(outcomes[1], RateOutcome::NoTimeElapsed);
        assert_eq!(outcomes[2], RateOutcome::FirstSample);
    }

    #[test]
    fn a_store_of_per_counter_records_is_migrated_and_rates_go_on() {
        let dir = tempfile::tempdir().unwrap();
        let database = redb::Database::create(dir.path().join("state.redb")).unwrap();
        let before = sample(CounterKind::Counter64, 1000, unix_now() - 10.0, None);
        {
            let write = database.begin_write().unwrap();
            {
                let mut old = write.open_table(PER_COUNTER).unwrap();
                for key in [
                    "7/8/0/1.3.6.1.2.1.31.1.1.1.6/3",
                    "7/8/0/1.3.6.1.2.1.31.1.1.1.6/a/b",
                ] {
                    old.insert(key, encode(&before).as_slice()).unwrap();
                }
                old.insert("7/8/0/garbage", [1u8, 2].as_slice()).unwrap();
            }
            write.commit().unwrap();
        }
        let counters = CounterStore::new(Arc::new(database), Duration::from_secs(30));
        assert_eq!(counters.migrate().unwrap(), 2);
        assert_eq!(counters.migrate().unwrap(), 0, "the old table is gone");
        let now = sample(CounterKind::Counter64, 2000, unix_now(), None);
        let key = column_key(7, 8, 0, "1.3.6.1.2.1.31.1.1.1.6");
        let outcomes = counters
            .update(&[column(&key, &[("3", now), ("a/b", now)])])
            .unwrap();
        for outcome in &outcomes {
            assert!((rate_of(outcome) - 100.0).abs() < 1.0, "{outcomes:?}");
        }
    }
}
