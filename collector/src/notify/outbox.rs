//! Notifications a sink has not taken yet, in the store: pushed in the same transaction as the
//! alert state change that caused them, sent oldest first, removed once the sink took them, retried
//! with backoff while it cannot. Bounded: when full the oldest are dropped, logged and counted.

use super::alerts;
use super::notice::Notice;
use super::streak::{FailureStreak, Turn};
use super::NotifyMetrics;
use crate::store::Store;
use futures::future::BoxFuture;
use redb::{
    ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition, WriteTransaction,
};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// Notifications waiting per sink, at most.
pub const OUTBOX_MAX: u64 = 10_000;

/// A sink's way of sending notifications.
pub trait Deliver: Send + Sync + 'static {
    /// The sink's name in logs and counters (`alertmanager`, `webhook`, `datakit`).
    fn name(&self) -> &'static str;
    /// How many notifications one send may carry.
    fn max_batch(&self) -> usize;
    /// Sends them all or fails (the message must hold no secret).
    fn send<'a>(&'a self, notices: &'a [Notice]) -> BoxFuture<'a, Result<(), String>>;
    /// How often the sink must hear of every firing alert again (Alertmanager forgets alerts
    /// it has not heard of); `None`: once is enough.
    fn resend_every(&self) -> Option<Duration> {
        None
    }
}

/// One sink's queue in the store.
#[derive(Clone)]
pub struct Outbox {
    store: Store,
    table: TableDefinition<'static, u64, &'static [u8]>,
    name: &'static str,
    added: Arc<Notify>,
}

fn storage(e: impl std::fmt::Display) -> String {
    format!("notification outbox storage: {e}")
}

impl Outbox {
    /// The outbox of the sink called `name`; its table is `outbox_<name>`.
    pub fn new(store: Store, name: &'static str, table: &'static str) -> Outbox {
        Outbox {
            store,
            table: TableDefinition::new(table),
            name,
            added: Arc::new(Notify::new()),
        }
    }

    /// Adds a notification inside the caller's transaction; returns how many old ones were
    /// dropped to stay within [`OUTBOX_MAX`].
    pub fn push(&self, txn: &WriteTransaction, notice: &Notice) -> Result<u64, String> {
        let mut table = txn.open_table(self.table).map_err(storage)?;
        let next = match table.last().map_err(storage)? {
            Some((key, _)) => key.value() + 1,
            None => 0,
        };
        let bytes = serde_json::to_vec(notice).map_err(storage)?;
        table.insert(next, bytes.as_slice()).map_err(storage)?;
        let mut dropped = 0;
        while table.len().map_err(storage)? > OUTBOX_MAX {
            table.pop_first().map_err(storage)?;
            dropped += 1;
        }
        Ok(dropped)
    }

    /// The sink's name.
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// Wakes the sender after a commit that pushed something.
    pub fn wake(&self) {
        self.added.notify_one();
    }

    pub(crate) fn oldest(&self, max: usize) -> Result<(Vec<u64>, Vec<Notice>, u64), String> {
        let txn = self.store.database().begin_read().map_err(storage)?;
        let table = match txn.open_table(self.table) {
            Ok(table) => table,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok((vec![], vec![], 0)),
            Err(e) => return Err(storage(e)),
        };
        let (mut keys, mut notices) = (Vec::new(), Vec::new());
        for item in table.iter().map_err(storage)?.take(max) {
            let (key, value) = item.map_err(storage)?;
            keys.push(key.value());
            match serde_json::from_slice(value.value()) {
                Ok(notice) => notices.push(notice),
                Err(e) => tracing::error!(sink = self.name, "unreadable notification dropped: {e}"),
            }
        }
        Ok((keys, notices, table.len().map_err(storage)?))
    }

    fn remove(&self, keys: &[u64]) -> Result<(), String> {
        let txn = self.store.database().begin_write().map_err(storage)?;
        {
            let mut table = txn.open_table(self.table).map_err(storage)?;
            for key in keys {
                table.remove(key).map_err(storage)?;
            }
        }
        txn.commit().map_err(storage)
    }

    /// Sends what waits, oldest first, until `shutdown`; a failed send is retried after a
    /// backoff of 1 s doubling to 60 s. A sink that asks for it ([`Deliver::resend_every`]) also
    /// gets every firing alert again, from this same task, so a resolution committed after a
    /// re-send was read always reaches the sink after it.
    pub async fn run(
        self,
        sink: Arc<dyn Deliver>,
        metrics: NotifyMetrics,
        shutdown: CancellationToken,
    ) {
        let mut backoff = Duration::from_secs(1);
        let mut streak = FailureStreak::default();
        let mut resend = sink.resend_every().map(|every| {
            let mut timer = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
            timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            timer
        });
        loop {
            let (keys, notices, pending) = match self.oldest(sink.max_batch()) {
                Ok(found) => found,
                Err(e) => {
                    tracing::error!(sink = self.name, "{e}");
                    (Vec::new(), Vec::new(), 0)
                }
            };
            metrics.pending(self.name).set(pending as i64);
            if keys.is_empty() {
                tokio::select! {
                    _ = self.added.notified() => {}
                    _ = next_tick(&mut resend) => {
                        let result = self.resend_firing(sink.as_ref()).await;
                        log_send(self.name, streak.record(result, 1), 0, &metrics);
                    }
                    _ = shutdown.cancelled() => return,
                }
                continue;
            }
            let result = sink.send(&notices).await;
            let delivered = result.is_ok();
            log_send(self.name, streak.record(result, 1), pending, &metrics);
            if delivered {
                backoff = Duration::from_secs(1);
                for notice in &notices {
                    metrics.sent(self.name, notice.kind());
                }
                if let Err(e) = self.remove(&keys) {
                    tracing::error!(sink = self.name, "{e}");
                }
                continue;
            }
            tokio::select! {
                _ = tokio::time::sleep(backoff) => {}
                _ = shutdown.cancelled() => return,
            }
            backoff = (backoff * 2).min(Duration::from_secs(60));
        }
    }

    /// Sends every firing alert of the store again, in batches the sink takes.
    async fn resend_firing(&self, sink: &dyn Deliver) -> Result<(), String> {
        let now = crate::scheduler::Clock::new().now_unix();
        let firing: Vec<Notice> = alerts::firing(self.store.database(), now)?
            .into_iter()
            .map(Notice::Alert)
            .collect();
        for batch in firing.chunks(sink.max_batch().max(1)) {
            sink.send(batch).await?;
        }
        Ok(())
    }
}

/// The next tick of an optional timer; never, without one.
async fn next_tick(timer: &mut Option<tokio::time::Interval>) {
    match timer {
        Some(timer) => {
            timer.tick().await;
        }
        None => std::future::pending().await,
    }
}

/// Counts a failed send and logs what a send's result changed: once when the sink starts
/// failing, once when it takes notifications again.
fn log_send(sink: &'static str, turn: Turn, pending: u64, metrics: &NotifyMetrics) {
    match turn {
        Turn::Working => {}
        Turn::StartedFailing(e) => {
            metrics.failed(sink);
            tracing::warn!(
                sink,
                pending,
                "notifications not delivered; retrying until the sink takes them: {e}"
            );
        }
        Turn::StillFailing(e) => {
            metrics.failed(sink);
            tracing::debug!(sink, pending, "notifications still not delivered: {e}");
        }
        Turn::Recovered(failed_sends) => {
            tracing::info!(sink, failed_sends, "notifications delivered again");
        }
    }
}

impl Outbox {
    /// Whether nothing waits (a storage error counts as empty: there is nothing to wait for).
    pub fn is_empty(&self) -> bool {
        self.oldest(1)
            .map(|(keys, _, _)| keys.is_empty())
            .unwrap_or(true)
    }
}
