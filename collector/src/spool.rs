//! The durable spool: values the backend could not take (unreachable or 5xx) wait here, on disk,
//! with their original timestamps, and are replayed oldest first by `PUT` once it recovers.
//! An entry is one batch; it is committed (fsync) before it counts as accepted, so `kill -9`
//! loses nothing the spool took. Bounded in bytes: when full, the oldest entries are dropped,
//! counted and logged.

use crate::backend::{BackendClient, TimedValue};
use crate::delivery::Batch;
use crate::metrics::{label, Metrics};
use redb::{ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition};
use serde::{Deserialize, Serialize};
use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

const SPOOL: TableDefinition<u64, &[u8]> = TableDefinition::new("spool");
/// Batches the backend kept refusing with 5xx while others went through: kept, never replayed.
const SET_ASIDE: TableDefinition<u64, &[u8]> = TableDefinition::new("spool_set_aside");

/// How many times a spooled batch may be refused with 5xx, each time while another batch went
/// through, before it is set aside so that it cannot block the replay.
pub const POISON_LIMIT: u32 = 5;

/// The backend takes at most 100 items per page all-or-nothing; a replay PUT never sends more.
pub const PUT_PAGE: usize = 100;

#[derive(Serialize, Deserialize)]
struct Entry {
    account: u64,
    job: String,
    time: f64,
    values: Vec<(String, f64)>,
}

/// The spool of one bot; cheap to clone.
#[derive(Clone)]
pub struct Spool {
    inner: Arc<Inner>,
}

struct Inner {
    store: crate::store::Store,
    max_bytes: u64,
    bytes: AtomicU64,
    entries: AtomicU64,
    next_key: AtomicU64,
    added: Notify,
    metrics: Metrics,
    /// 5xx refusals per entry, counted only while other entries went through.
    refusals: std::sync::Mutex<std::collections::HashMap<u64, u32>>,
}

fn storage_error(e: impl std::fmt::Display) -> String {
    format!("spool storage: {e}")
}

impl Spool {
    /// Opens the spool in the bot's store, counting what an earlier run left in it.
    pub fn open(
        store: crate::store::Store,
        max_bytes: u64,
        metrics: Metrics,
    ) -> Result<Spool, String> {
        let db = store.database();
        let txn = db.begin_write().map_err(storage_error)?;
        txn.open_table(SPOOL).map_err(storage_error)?;
        txn.commit().map_err(storage_error)?;
        let txn = db.begin_read().map_err(storage_error)?;
        let table = txn.open_table(SPOOL).map_err(storage_error)?;
        let mut bytes = 0;
        let mut last = 0;
        for item in table.iter().map_err(storage_error)? {
            let (key, value) = item.map_err(storage_error)?;
            bytes += value.value().len() as u64;
            last = key.value();
        }
        let entries = table.len().map_err(storage_error)?;
        drop(table);
        let spool = Spool {
            inner: Arc::new(Inner {
                store: store.clone(),
                max_bytes,
                bytes: AtomicU64::new(bytes),
                entries: AtomicU64::new(entries),
                next_key: AtomicU64::new(last + 1),
                added: Notify::new(),
                metrics,
                refusals: Default::default(),
            }),
        };
        spool.update_gauges();
        if entries > 0 {
            tracing::warn!(
                entries,
                bytes,
                "the spool holds values from an earlier run; they will be replayed"
            );
        }
        Ok(spool)
    }

    pub fn is_empty(&self) -> bool {
        self.inner.entries.load(Ordering::Acquire) == 0
    }

    pub fn bytes(&self) -> u64 {
        self.inner.bytes.load(Ordering::Acquire)
    }

    fn update_gauges(&self) {
        let f = &self.inner.metrics.framework;
        f.spool_bytes.set(self.bytes() as i64);
        f.spool_entries
            .set(self.inner.entries.load(Ordering::Acquire) as i64);
    }

    /// Writes the batches of one account durably, in one transaction. Returns once they are
    /// committed; on a storage error they are lost and the error says so.
    pub async fn push(&self, batches: Vec<Batch>, account: u64) -> Result<(), String> {
        let mut entries = Vec::with_capacity(batches.len());
        let mut count = 0;
        for batch in batches {
            let entry = Entry {
                account,
                job: batch.job_id,
                time: batch.time,
                values: batch
                    .values
                    .into_iter()
                    .map(|v| (v.path, v.value))
                    .collect(),
            };
            count += entry.values.len() as u64;
            entries.push(serde_json::to_vec(&entry).map_err(storage_error)?);
        }
        let spool = self.clone();
        tokio::task::spawn_blocking(move || spool.push_blocking(entries, count))
            .await
            .map_err(storage_error)?
    }

    fn push_blocking(&self, entries: Vec<Vec<u8>>, count: u64) -> Result<(), String> {
        let inner = &self.inner;
        let size: u64 = entries.iter().map(|e| e.len() as u64).sum();
        let added = entries.len() as u64;
        let first_key = inner.next_key.fetch_add(added, Ordering::AcqRel);
        let db = inner.store.database();
        let txn = db.begin_write().map_err(storage_error)?;
        let (mut dropped_entries, mut dropped_values, mut freed) = (0u64, 0u64, 0u64);
        {
            let mut table = txn.open_table(SPOOL).map_err(storage_error)?;
            for (key, bytes) in (first_key..).zip(&entries) {
                table.insert(key, bytes.as_slice()).map_err(storage_error)?;
            }
            let mut total = inner.bytes.load(Ordering::Acquire) + size;
            while total > inner.max_bytes {
                let popped = table
                    .pop_first()
                    .map_err(storage_error)?
                    .map(|(k, v)| (k.value(), v.value().to_vec()));
                let Some((old_key, old)) = popped else {
                    break;
                };
                if old_key >= first_key {
                    // What was just written is larger than the whole spool: keep it rather
                    // than nothing.
                    table
                        .insert(old_key, old.as_slice())
                        .map_err(storage_error)?;
                    break;
                }
                total -= old.len() as u64;
                freed += old.len() as u64;
                dropped_entries += 1;
                dropped_values += serde_json::from_slice::<Entry>(&old)
                    .map(|e| e.values.len() as u64)
                    .unwrap_or(0);
            }
        }
        txn.commit().map_err(storage_error)?;
        inner.bytes.fetch_add(size, Ordering::AcqRel);
        inner.bytes.fetch_sub(freed, Ordering::AcqRel);
        inner.entries.fetch_add(added, Ordering::AcqRel);
        inner.entries.fetch_sub(dropped_entries, Ordering::AcqRel);
        let f = &inner.metrics.framework;
        f.values_spooled.inc_by(count);
        if dropped_entries > 0 {
            f.values_dropped
                .get_or_create(&label("reason", "spool_full"))
                .inc_by(dropped_values);
            tracing::error!(
                dropped_values,
                dropped_batches = dropped_entries,
                max_bytes = inner.max_bytes,
                "SPOOL FULL: the oldest undelivered values were dropped to make room (raise SPOOL_MAX_BYTES or fix the backend)"
            );
        }
        self.update_gauges();
        inner.added.notify_one();
        Ok(())
    }

    /// The oldest entry after `after` (the oldest of all for `None`), if any.
    fn oldest_after(&self, after: Option<u64>) -> Result<Option<(u64, Entry)>, String> {
        let db = self.inner.store.database();
        let txn = db.begin_read().map_err(storage_error)?;
        let table = txn.open_table(SPOOL).map_err(storage_error)?;
        let start = after.map_or(0, |key| key.saturating_add(1));
        let first = table
            .range(start..)
            .map_err(storage_error)?
            .next()
            .transpose()
            .map_err(storage_error)?
            .map(|(key, value)| (key.value(), serde_json::from_slice::<Entry>(value.value())));
        drop(table);
        drop(txn);
        match first {
            None => Ok(None),
            Some((key, Ok(entry))) => Ok(Some((key, entry))),
            Some((key, Err(e))) => {
                tracing::error!(key, "unreadable spool entry dropped: {e}");
                self.remove(key)?;
                Ok(None)
            }
        }
    }

    /// Moves an entry out of the replay into the set-aside table.
    fn set_aside(&self, key: u64) -> Result<(), String> {
        let db = self.inner.store.database();
        let txn = db.begin_write().map_err(storage_error)?;
        let moved = {
            let mut table = txn.open_table(SPOOL).map_err(storage_error)?;
            let removed = table
                .remove(key)
                .map_err(storage_error)?
                .map(|v| v.value().to_vec());
            if let Some(bytes) = &removed {
                let mut aside = txn.open_table(SET_ASIDE).map_err(storage_error)?;
                aside.insert(key, bytes.as_slice()).map_err(storage_error)?;
            }
            removed.map(|b| b.len() as u64)
        };
        txn.commit().map_err(storage_error)?;
        if let Some(size) = moved {
            self.inner.bytes.fetch_sub(size, Ordering::AcqRel);
            self.inner.entries.fetch_sub(1, Ordering::AcqRel);
        }
        self.update_gauges();
        Ok(())
    }

    fn remove(&self, key: u64) -> Result<(), String> {
        let db = self.inner.store.database();
        let txn = db.begin_write().map_err(storage_error)?;
        let removed = {
            let mut table = txn.open_table(SPOOL).map_err(storage_error)?;
            let removed = table.remove(key).map_err(storage_error)?;
            removed.map(|v| v.value().len() as u64)
        };
        txn.commit().map_err(storage_error)?;
        if let Some(size) = removed {
            self.inner.bytes.fetch_sub(size, Ordering::AcqRel);
            self.inner.entries.fetch_sub(1, Ordering::AcqRel);
        }
        self.update_gauges();
        Ok(())
    }

    /// Replays the spool to the backend until `shutdown`: oldest first, `PUT` pages of at most
    /// 100 values with their original timestamps; waits with backoff while the backend fails.
    /// A batch the backend refuses with 5xx is compared with the next one: if that goes through,
    /// the refusal counts against the batch, and after [`POISON_LIMIT`] of them it is set aside.
    pub async fn replay(self, client: BackendClient, shutdown: CancellationToken) {
        let mut replay = Replay {
            spool: self,
            client,
            backoff: Duration::from_secs(1),
            backend_failing: false,
            replayed: 0,
            suspect: None,
        };
        loop {
            let step = match replay.step().await {
                Step::Next => continue,
                Step::Wait(duration) => wait(&shutdown, duration).await,
                Step::Idle => {
                    tokio::select! {
                        _ = shutdown.cancelled() => true,
                        _ = replay.spool.inner.added.notified() => false,
                    }
                }
                Step::Stop => true,
            };
            if step {
                return;
            }
        }
    }

    async fn remove_async(&self, key: u64) -> Result<(), String> {
        let spool = self.clone();
        tokio::task::spawn_blocking(move || spool.remove(key))
            .await
            .map_err(storage_error)?
    }

    async fn send(
        &self,
        client: &BackendClient,
        entry: &Entry,
    ) -> Result<(), crate::backend::BackendError> {
        let mut seen = HashSet::new();
        let values: Vec<TimedValue> = entry
            .values
            .iter()
            .filter(|(path, _)| seen.insert(path.as_str()))
            .map(|(path, value)| TimedValue {
                p: path.clone(),
                v: *value,
                t: (entry.time * 1e6).round() / 1e6,
            })
            .collect();
        for page in values.chunks(PUT_PAGE) {
            client.put_values(entry.account, page).await?;
        }
        Ok(())
    }
}

/// What the replay loop does next.
enum Step {
    Next,
    Wait(Duration),
    /// The spool is empty: wait for a new entry.
    Idle,
    Stop,
}

/// A batch the backend refused with 5xx, waiting to see whether the next one goes through.
struct Suspect {
    key: u64,
    account: u64,
    job: String,
    values: usize,
    error: crate::backend::BackendError,
}

/// The state of the replay loop.
struct Replay {
    spool: Spool,
    client: BackendClient,
    backoff: Duration,
    /// For the two lines a user watching an outage wants: when the backend takes values again,
    /// and when the spool is empty and live delivery is back.
    backend_failing: bool,
    replayed: u64,
    suspect: Option<Suspect>,
}

impl Replay {
    async fn step(&mut self) -> Step {
        let after = self.suspect.as_ref().map(|s| s.key);
        let next = {
            let spool = self.spool.clone();
            tokio::task::spawn_blocking(move || spool.oldest_after(after)).await
        };
        let (key, entry) = match next {
            Ok(Ok(Some(entry))) => entry,
            Ok(Ok(None)) if self.suspect.is_some() => {
                // Nothing to compare the refused batch with: treat it as the backend failing.
                self.suspect = None;
                return self.failing();
            }
            Ok(Ok(None)) => return self.emptied(),
            Ok(Err(e)) => {
                tracing::error!("cannot read the spool: {e}");
                return Step::Wait(Duration::from_secs(5));
            }
            Err(e) => {
                tracing::error!("spool reader failed: {e}");
                return Step::Stop;
            }
        };
        match self.spool.send(&self.client, &entry).await {
            Ok(()) => self.delivered(key, &entry).await,
            Err(e) if e.status().is_some_and(|s| s >= 500) && self.suspect.is_none() => {
                self.suspect = Some(Suspect {
                    key,
                    account: entry.account,
                    job: entry.job.clone(),
                    values: entry.values.len(),
                    error: e,
                });
                Step::Next
            }
            Err(e) if e.is_retryable() => {
                tracing::warn!(
                    account = entry.account,
                    "backend still unavailable, spool replay waits {:?}: {e}",
                    self.backoff
                );
                self.suspect = None;
                self.failing()
            }
            Err(e) => {
                tracing::error!(account = entry.account, job = %entry.job,
                    "spooled batch of {} values rejected by the backend, dropped: {e}", entry.values.len());
                self.spool
                    .inner
                    .metrics
                    .framework
                    .values_dropped
                    .get_or_create(&label("reason", "rejected"))
                    .inc_by(entry.values.len() as u64);
                if let Err(e) = self.spool.remove_async(key).await {
                    tracing::error!("cannot remove a rejected batch from the spool: {e}");
                }
                Step::Next
            }
        }
    }

    fn failing(&mut self) -> Step {
        self.backend_failing = true;
        let wait = self.backoff;
        self.backoff = (self.backoff * 2).min(Duration::from_secs(30));
        Step::Wait(wait)
    }

    fn emptied(&mut self) -> Step {
        if self.replayed > 0 {
            tracing::info!(
                "spool replayed: {} values delivered late with their own timestamps; values go \
                 straight to the backend again",
                self.replayed
            );
            self.replayed = 0;
        }
        if self.spool.is_empty() {
            Step::Idle
        } else {
            Step::Next
        }
    }

    async fn delivered(&mut self, key: u64, entry: &Entry) -> Step {
        if self.backend_failing {
            tracing::info!(
                account = entry.account,
                "the backend takes values again: replaying the spool"
            );
            self.backend_failing = false;
        }
        self.replayed += entry.values.len() as u64;
        self.backoff = Duration::from_secs(1);
        let framework = &self.spool.inner.metrics.framework;
        framework.values_replayed.inc_by(entry.values.len() as u64);
        if let Err(e) = self.spool.remove_async(key).await {
            tracing::error!("cannot remove a replayed batch from the spool: {e}");
        }
        if let Some(suspect) = self.suspect.take() {
            self.refused_while_others_pass(suspect).await;
        }
        Step::Next
    }

    /// Counts a 5xx against a batch while another one went through; sets it aside at the limit.
    async fn refused_while_others_pass(&mut self, suspect: Suspect) {
        let refusals = {
            let mut counts = self
                .spool
                .inner
                .refusals
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            let count = counts.entry(suspect.key).or_insert(0);
            *count += 1;
            *count
        };
        if refusals < POISON_LIMIT {
            return;
        }
        let Suspect {
            key,
            account,
            job,
            values,
            error,
        } = suspect;
        let spool = self.spool.clone();
        match tokio::task::spawn_blocking(move || spool.set_aside(key)).await {
            Ok(Ok(())) => {
                tracing::error!(account, %job, key,
                    "spooled batch of {values} values set aside: the backend refused it {refusals} \
                     times with 5xx while other batches went through (kept on disk, not replayed): {error}");
                self.spool
                    .inner
                    .metrics
                    .framework
                    .values_set_aside
                    .inc_by(values as u64);
                self.spool
                    .inner
                    .refusals
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .remove(&key);
            }
            Ok(Err(e)) => tracing::error!("cannot set a spooled batch aside: {e}"),
            Err(e) => tracing::error!("cannot set a spooled batch aside: {e}"),
        }
    }
}

/// Sleeps; true if `shutdown` came first.
async fn wait(shutdown: &CancellationToken, duration: Duration) -> bool {
    tokio::select! {
        _ = shutdown.cancelled() => true,
        _ = tokio::time::sleep(duration) => false,
    }
}
