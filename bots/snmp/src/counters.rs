//! Counter32/Counter64 values become per-second rates (contract §5.7), with the previous sample
//! of every counter kept in the embedded store so that rates go on across restarts.
//!
//! Better than the original where it lost data: a Counter32 that wrapped is corrected instead of
//! dropped, 64-bit counters keep full precision, and an agent restart (its sysUpTime went back)
//! is recognised, so a counter reset never shows up as a huge or wrapped rate.

use redb::{Durability, ReadableTable, ReadableTableMetadata, TableDefinition};
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

/// Where counter samples live: one redb table keyed by entity, sensor, OID position, OID and
/// index. Commits are not synced to disk one by one; the store syncs at most every
/// `sync_every` and on [`CounterStore::flush`], so a crash loses only the latest samples, and
/// the next rate then simply spans a longer time.
#[derive(Clone)]
pub struct CounterStore {
    database: Arc<dyn DatabaseHandle>,
    sync_every: Duration,
    last_sync_secs: Arc<AtomicU64>,
    /// redb runs one write transaction at a time: async callers queue here, not in threads.
    writer: Arc<tokio::sync::Mutex<()>>,
}

const COUNTERS: TableDefinition<&str, &[u8]> = TableDefinition::new("snmp_counters");
const ENCODED_LEN: usize = 1 + 8 + 8 + 1 + 4;

/// The identity of one counter value: entity, sensor, OID position in the sensor, OID, index.
pub fn counter_key(
    entity_id: u64,
    sensor_id: u64,
    position: usize,
    oid: &str,
    index: &str,
) -> String {
    format!("{entity_id}/{sensor_id}/{position}/{oid}/{index}")
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

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
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
        samples: Vec<(String, Sample)>,
    ) -> Result<Vec<RateOutcome>, String> {
        let _turn = self.writer.lock().await;
        let store = self.clone();
        tokio::task::spawn_blocking(move || store.update(&samples))
            .await
            .unwrap_or_else(|e| Err(format!("counter store task: {e}")))
    }

    /// Stores the new samples and returns, for each, the rate against the stored previous
    /// sample. All samples of one call are one transaction.
    pub fn update(&self, samples: &[(String, Sample)]) -> Result<Vec<RateOutcome>, String> {
        if samples.is_empty() {
            return Ok(Vec::new());
        }
        let problem = |e: &dyn std::fmt::Display| format!("counter store: {e}");
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
        let mut outcomes = Vec::with_capacity(samples.len());
        {
            let mut table = write.open_table(COUNTERS).map_err(|e| problem(&e))?;
            for (key, sample) in samples {
                let previous = table
                    .get(key.as_str())
                    .map_err(|e| problem(&e))?
                    .and_then(|stored| decode(stored.value()));
                outcomes.push(rate(previous.as_ref(), sample));
                table
                    .insert(key.as_str(), encode(sample).as_slice())
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
            .map_err(|e| format!("counter store: {e}"))?;
        write.commit().map_err(|e| format!("counter store: {e}"))?;
        self.last_sync_secs
            .store(unix_now() as u64, Ordering::Relaxed);
        Ok(())
    }

    /// Removes samples older than `max_age` (counters of entities or sensors that are gone).
    /// Returns how many were removed.
    pub fn prune(&self, max_age: Duration) -> Result<usize, String> {
        let problem = |e: &dyn std::fmt::Display| format!("counter store: {e}");
        let cutoff = unix_now() - max_age.as_secs_f64();
        let write = self
            .database
            .database()
            .begin_write()
            .map_err(|e| problem(&e))?;
        let removed;
        {
            let mut table = write.open_table(COUNTERS).map_err(|e| problem(&e))?;
            let before = table.len().map_err(|e| problem(&e))?;
            table
                .retain(|_, stored| decode(stored).is_some_and(|s| s.time >= cutoff))
                .map_err(|e| problem(&e))?;
            removed = before - table.len().map_err(|e| problem(&e))?;
        }
        write.commit().map_err(|e| problem(&e))?;
        Ok(removed as usize)
    }
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

    #[test]
    fn samples_persist_across_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let key = counter_key(1, 2, 0, "1.3.6.1.2.1.2.2.1.10", "3");
        {
            let counters = store(&dir);
            let first = sample(CounterKind::Counter32, 1000, unix_now() - 10.0, None);
            let outcomes = counters.update(&[(key.clone(), first)]).unwrap();
            assert_eq!(outcomes, vec![RateOutcome::FirstSample]);
            counters.flush().unwrap();
        }
        let counters = store(&dir);
        let second = sample(CounterKind::Counter32, 2000, unix_now(), None);
        match counters.update(&[(key, second)]).unwrap()[..] {
            [RateOutcome::Rate(r)] => assert!((r - 100.0).abs() < 1.0, "{r}"),
            ref other => panic!("{other:?}"),
        }
    }

    #[test]
    fn prune_removes_old_samples() {
        let dir = tempfile::tempdir().unwrap();
        let counters = store(&dir);
        let old = sample(CounterKind::Counter32, 1, unix_now() - 10_000.0, None);
        let fresh = sample(CounterKind::Counter32, 1, unix_now(), None);
        counters
            .update(&[("old".to_string(), old), ("fresh".to_string(), fresh)])
            .unwrap();
        assert_eq!(counters.prune(Duration::from_secs(3600)).unwrap(), 1);
        let outcomes = counters
            .update(&[("old".to_string(), fresh), ("fresh".to_string(), fresh)])
            .unwrap();
        assert_eq!(outcomes[0], RateOutcome::FirstSample);
        assert_eq!(outcomes[1], RateOutcome::NoTimeElapsed);
    }
}
