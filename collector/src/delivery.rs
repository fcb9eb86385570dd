//! Delivery: the one place values leave the process. A batch is cleaned first (non-finite
//! numbers, paths the backend would reject, repeated paths), so one bad value never costs the
//! rest, then handed to a sink: the backend (with retries) or stdout (standalone mode).

use crate::backend::BackendClient;
use crate::metrics::{label, Metrics};
use crate::spool::Spool;
use crate::value::{path_problem, Value};
use futures::future::BoxFuture;
use serde::Serialize;
use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, Semaphore};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// The values of one firing of one job, for one account.
#[derive(Debug, Clone, PartialEq)]
pub struct Batch {
    pub account_id: Option<u64>,
    pub job_id: String,
    pub entity_id: Option<u64>,
    /// Unix time the values were measured.
    pub time: f64,
    pub values: Vec<Value>,
}

/// Drops what the backend would reject, so the rest of the batch is stored: non-finite numbers
/// (serde would send them as `null`), invalid paths, and repeated paths (the last one is kept,
/// since one POST cannot carry a path twice). Each drop is logged and counted.
pub fn clean(batch: &mut Batch, metrics: &Metrics) {
    let dropped = |reason: &'static str| {
        metrics
            .framework
            .values_dropped
            .get_or_create(&label("reason", reason))
            .inc();
    };
    let mut seen = HashSet::with_capacity(batch.values.len());
    let mut kept = Vec::with_capacity(batch.values.len());
    for value in batch.values.drain(..).rev() {
        if !value.value.is_finite() {
            tracing::warn!(job = %batch.job_id, entity = batch.entity_id, path = %value.path,
                value = %value.value, "value dropped: not a finite number");
            dropped("non_finite");
        } else if let Some(problem) = path_problem(&value.path) {
            tracing::warn!(job = %batch.job_id, entity = batch.entity_id, path = %value.path,
                "value dropped: {problem}");
            dropped("invalid_path");
        } else if !seen.insert(value.path.clone()) {
            tracing::warn!(job = %batch.job_id, entity = batch.entity_id, path = %value.path,
                "value dropped: the same path again in one firing (the last one is kept)");
            dropped("duplicate_path");
        } else {
            kept.push(value);
        }
    }
    kept.reverse();
    batch.values = kept;
}

/// Where cleaned batches go.
pub trait Sink: Send + Sync + 'static {
    /// Delivers one batch; retries and logging of failures are the sink's business.
    fn deliver(&self, batch: Batch) -> BoxFuture<'_, ()>;
}

/// Standalone output: one JSON line per value on stdout.
pub struct StdoutSink {
    pub metrics: Metrics,
}

#[derive(Serialize)]
struct Line<'a> {
    p: &'a str,
    v: f64,
    t: f64,
}

impl Sink for StdoutSink {
    fn deliver(&self, batch: Batch) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            let mut out = String::new();
            for value in &batch.values {
                let line = Line {
                    p: &value.path,
                    v: value.value,
                    t: (batch.time * 1000.0).round() / 1000.0,
                };
                if let Ok(json) = serde_json::to_string(&line) {
                    out.push_str(&json);
                    out.push('\n');
                }
            }
            // A failed write (the reader closed the pipe) ends the bot; see `crate::output`.
            if crate::output::write_stdout(out.as_bytes()).is_ok() {
                self.metrics
                    .framework
                    .values_delivered
                    .inc_by(batch.values.len() as u64);
            }
        })
    }
}

/// The Grafolean backend: one POST per batch, retried with backoff on connection errors and
/// 5xx, never on 4xx. A batch the backend still cannot take goes to the durable spool, and while
/// the spool holds anything new batches join it, so values reach the backend oldest first.
pub struct BackendSink {
    pub client: BackendClient,
    /// Tries before a batch goes to the spool.
    pub attempts: u64,
    pub first_backoff: Duration,
    pub metrics: Metrics,
    pub spool: Spool,
    /// Once cancelled (shutdown), failed batches are spooled at once instead of retried.
    pub shutdown: CancellationToken,
}

impl BackendSink {
    fn lost(&self, reason: &'static str, count: u64) {
        self.metrics
            .framework
            .values_dropped
            .get_or_create(&label("reason", reason))
            .inc_by(count);
    }

    async fn to_spool(&self, batch: Batch, account: u64) {
        let count = batch.values.len() as u64;
        let job = batch.job_id.clone();
        if let Err(e) = self.spool.push(batch, account).await {
            tracing::error!(%job, account, "{count} values lost: {e}");
            self.lost("spool_error", count);
        }
    }
}

impl Sink for BackendSink {
    fn deliver(&self, batch: Batch) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            let count = batch.values.len() as u64;
            let Some(account) = batch.account_id else {
                tracing::error!(job = %batch.job_id, "job produced values but belongs to no account; {count} values dropped");
                self.lost("no_account", count);
                return;
            };
            if !self.spool.is_empty() {
                return self.to_spool(batch, account).await;
            }
            let mut backoff = self.first_backoff;
            for attempt in 1..=self.attempts {
                match self.client.post_values(account, &batch.values).await {
                    Ok(()) => {
                        self.metrics.framework.values_delivered.inc_by(count);
                        return;
                    }
                    Err(e) if e.is_retryable() => {
                        if attempt == self.attempts || self.shutdown.is_cancelled() {
                            tracing::warn!(job = %batch.job_id, entity = batch.entity_id, account,
                                "backend unavailable, {count} values go to the spool: {e}");
                            return self.to_spool(batch, account).await;
                        }
                        tracing::warn!(job = %batch.job_id, entity = batch.entity_id, account,
                            "delivery attempt {attempt} failed, retrying in {backoff:?}: {e}");
                        self.metrics.framework.delivery_retries.inc();
                        tokio::select! {
                            _ = tokio::time::sleep(backoff) => {}
                            _ = self.shutdown.cancelled() => {}
                        }
                        backoff = (backoff * 2).min(Duration::from_secs(60));
                    }
                    Err(e) => {
                        tracing::error!(job = %batch.job_id, entity = batch.entity_id, account,
                            "{count} values rejected by the backend, not retried: {e}");
                        self.lost("rejected", count);
                        return;
                    }
                }
            }
        })
    }
}

/// The delivery task: takes batches from jobs, cleans them and hands them to the sink, at most
/// `concurrency` at once.
pub struct Delivery {
    sender: mpsc::Sender<Batch>,
    task: tokio::task::JoinHandle<()>,
    metrics: Metrics,
}

impl Delivery {
    /// Starts the delivery task. `capacity` bounds the batches waiting in memory.
    pub fn start(
        sink: Arc<dyn Sink>,
        metrics: Metrics,
        capacity: usize,
        concurrency: usize,
    ) -> Self {
        let (sender, mut receiver) = mpsc::channel::<Batch>(capacity);
        let task_metrics = metrics.clone();
        let task = tokio::spawn(async move {
            let limit = Arc::new(Semaphore::new(concurrency));
            let mut running = JoinSet::new();
            while let Some(mut batch) = receiver.recv().await {
                clean(&mut batch, &task_metrics);
                if batch.values.is_empty() {
                    continue;
                }
                let Ok(permit) = limit.clone().acquire_owned().await else {
                    break;
                };
                let sink = sink.clone();
                running.spawn(async move {
                    sink.deliver(batch).await;
                    drop(permit);
                });
                while running.try_join_next().is_some() {}
            }
            while running.join_next().await.is_some() {}
        });
        Delivery {
            sender,
            task,
            metrics,
        }
    }

    /// A sender for executors.
    pub fn handle(&self) -> DeliveryHandle {
        DeliveryHandle {
            sender: self.sender.clone(),
            metrics: self.metrics.clone(),
        }
    }

    /// Stops taking batches and waits up to `grace` for the queued ones to be delivered.
    pub async fn close(self, grace: Duration) -> bool {
        drop(self.sender);
        tokio::time::timeout(grace, self.task).await.is_ok()
    }
}

/// A cheap handle to submit batches from many tasks.
#[derive(Clone)]
pub struct DeliveryHandle {
    sender: mpsc::Sender<Batch>,
    metrics: Metrics,
}

impl DeliveryHandle {
    /// Queues a batch. If the queue is full (the sink is far behind), the batch is dropped and
    /// counted rather than stalling the jobs.
    pub fn submit(&self, batch: Batch) {
        let count = batch.values.len() as u64;
        if count == 0 {
            return;
        }
        self.metrics.framework.values_produced.inc_by(count);
        if let Err(e) = self.sender.try_send(batch) {
            let batch = match e {
                mpsc::error::TrySendError::Full(b) | mpsc::error::TrySendError::Closed(b) => b,
            };
            tracing::error!(job = %batch.job_id, "delivery queue full or closed: {count} values dropped");
            self.metrics
                .framework
                .values_dropped
                .get_or_create(&label("reason", "queue_full"))
                .inc_by(count);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_bad_value_never_costs_the_batch() {
        let metrics = Metrics::new();
        let mut batch = Batch {
            account_id: Some(1),
            job_id: "j".into(),
            entity_id: Some(5),
            time: 0.0,
            values: vec![
                Value::new("a.b", 1.0),
                Value::new("a.nan", f64::NAN),
                Value::new("a.inf", f64::INFINITY),
                Value::new("a..bad", 2.0),
                Value::new("system.x", 2.0),
                Value::new("a.dup", 3.0),
                Value::new("a.c", 4.0),
                Value::new("a.dup", 5.0),
            ],
        };
        clean(&mut batch, &metrics);
        assert_eq!(
            batch.values,
            vec![
                Value::new("a.b", 1.0),
                Value::new("a.c", 4.0),
                Value::new("a.dup", 5.0)
            ]
        );
        let text = metrics.render();
        assert!(
            text.contains(r#"collector_values_dropped_total{reason="non_finite"} 2"#),
            "{text}"
        );
        assert!(text.contains(r#"collector_values_dropped_total{reason="invalid_path"} 2"#));
        assert!(text.contains(r#"collector_values_dropped_total{reason="duplicate_path"} 1"#));
    }
}
