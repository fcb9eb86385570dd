//! Delivery: the one place values leave the process. Each firing's values are cleaned first
//! (non-finite numbers, paths the backend would reject, repeated paths), so one bad value never
//! costs the rest; then the firings of one account that finish close together are coalesced
//! (see [`coalesce`]) and handed to a sink: the backend (with retries, see [`backend_sink`]) or
//! stdout (standalone mode).

pub mod backend_sink;
pub mod coalesce;

pub use backend_sink::BackendSink;

use crate::metrics::{label, Metrics};
use crate::scheduler::JobState;
use crate::status::Delivered;
use crate::value::{path_problem, Value};
use coalesce::{Coalescer, Limits};
use futures::future::BoxFuture;
use serde::Serialize;
use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, Semaphore};
use tokio::task::JoinSet;

/// The values of one firing of one job, for one account.
#[derive(Debug, Clone)]
pub struct Batch {
    pub account_id: Option<u64>,
    pub job_id: String,
    pub entity_id: Option<u64>,
    /// Unix time the values were measured.
    pub time: f64,
    pub values: Vec<Value>,
    /// Where delivery reports what became of the values, if anyone asks.
    pub receipt: Option<Receipt>,
}

/// The firing a batch came from, so that delivery can report its outcome to the status page.
#[derive(Debug, Clone)]
pub struct Receipt {
    pub state: Arc<JobState>,
    /// The Unix second the firing was due.
    pub scheduled: u64,
}

impl Batch {
    /// The same firing with no values, to carry its identity and receipt.
    pub fn without_values(&self) -> Batch {
        Batch {
            account_id: self.account_id,
            job_id: self.job_id.clone(),
            entity_id: self.entity_id,
            time: self.time,
            values: Vec::new(),
            receipt: self.receipt.clone(),
        }
    }

    /// Reports what became of (some of) this firing's values.
    pub fn report(&self, delivered: Delivered) {
        if let Some(receipt) = &self.receipt {
            receipt.state.runs.delivered(receipt.scheduled, delivered);
        }
    }

    /// Reports all of this firing's values as accepted.
    pub fn report_accepted(&self) {
        self.report(Delivered {
            accepted: self.values.len() as u64,
            ..Delivered::default()
        });
    }
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
    // A ping run's eight values fit inline: no allocation for most firings.
    let mut keep: smallvec::SmallVec<[bool; 32]> =
        smallvec::SmallVec::with_capacity(batch.values.len());
    let mut seen = SeenPaths::for_values(batch.values.len());
    for (at, value) in batch.values.iter().enumerate().rev() {
        let problem = if !value.value.is_finite() {
            Some(("non_finite", "not a finite number"))
        } else if let Some(problem) = path_problem(&value.path) {
            Some(("invalid_path", problem))
        } else if seen.again(&batch.values, at) {
            Some((
                "duplicate_path",
                "the same path again in one firing (the last one is kept)",
            ))
        } else {
            None
        };
        if let Some((reason, problem)) = problem {
            tracing::warn!(job = %batch.job_id, entity = batch.entity_id, path = %value.path,
                value = %value.value, "value dropped: {problem}");
            dropped(reason);
        }
        keep.push(problem.is_none());
    }
    drop(seen);
    let before = batch.values.len();
    let mut kept = keep.into_iter().rev();
    batch.values.retain(|_| kept.next().unwrap_or(false));
    let removed = (before - batch.values.len()) as u64;
    if removed > 0 {
        batch.report(Delivered {
            dropped: removed,
            ..Delivered::default()
        });
    }
}

/// Which paths [`clean`] has kept so far, walking a firing's values from the last one back.
/// A firing of a few values (a ping: nine) is checked by comparing with the later values, which
/// costs no allocation and no hashing; bigger firings use a set.
enum SeenPaths<'a> {
    Few,
    Many(HashSet<&'a str>),
}

/// Up to this many values a firing's repeated paths are found by comparison.
const FEW_VALUES: usize = 32;

impl<'a> SeenPaths<'a> {
    fn for_values(count: usize) -> Self {
        if count <= FEW_VALUES {
            SeenPaths::Few
        } else {
            SeenPaths::Many(HashSet::with_capacity(count))
        }
    }

    /// Whether the path of `values[at]` is that of a later value that passed the number and
    /// path checks (the later one is kept).
    fn again(&mut self, values: &'a [Value], at: usize) -> bool {
        let path = values[at].path.as_str();
        match self {
            SeenPaths::Few => values[at + 1..].iter().any(|later| {
                same_path(&later.path, path)
                    && path_problem(&later.path).is_none()
                    && later.value.is_finite()
            }),
            SeenPaths::Many(seen) => !seen.insert(path),
        }
    }
}

/// Whether two paths are the same. The paths of one firing share their start and differ near
/// their end, and several have the same length (a ping's `rtt.min`, `rtt.max`, `success`): their
/// last eight bytes are compared first, in one step, before the whole.
fn same_path(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.as_bytes().last_chunk::<8>() == b.as_bytes().last_chunk::<8>() && a == b
}

/// Where cleaned values go.
pub trait Sink: Send + Sync + 'static {
    /// Delivers the firings of one account that closed together (see [`coalesce`]); retries,
    /// logging of failures and each firing's [`Batch::report`] are the sink's business.
    fn deliver(&self, firings: Vec<Batch>) -> BoxFuture<'_, ()>;
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
    fn deliver(&self, firings: Vec<Batch>) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            let mut out = String::new();
            for batch in &firings {
                let t = (batch.time * 1000.0).round() / 1000.0;
                for value in &batch.values {
                    let line = Line {
                        p: &value.path,
                        v: value.value,
                        t,
                    };
                    if let Ok(json) = serde_json::to_string(&line) {
                        out.push_str(&json);
                        out.push('\n');
                    }
                }
            }
            // A failed write (the reader closed the pipe) ends the bot; see `crate::output`.
            if crate::output::write_stdout(out.as_bytes()).is_ok() {
                for batch in &firings {
                    self.metrics
                        .framework
                        .values_delivered
                        .inc_by(batch.values.len() as u64);
                    batch.report_accepted();
                }
            }
        })
    }
}

/// The delivery task: takes batches from jobs, cleans them, coalesces those of one account
/// that finish close together and hands each group to the sink, at most `concurrency` at once.
pub struct Delivery {
    sender: mpsc::Sender<Batch>,
    task: tokio::task::JoinHandle<()>,
    metrics: Metrics,
}

impl Delivery {
    /// Starts the delivery task. `capacity` bounds the batches waiting in memory; `limits` say
    /// when a coalesced group closes.
    pub fn start(
        sink: Arc<dyn Sink>,
        metrics: Metrics,
        capacity: usize,
        concurrency: usize,
        limits: Limits,
    ) -> Self {
        let (sender, receiver) = mpsc::channel::<Batch>(capacity);
        let task = tokio::spawn(deliver_all(
            receiver,
            sink,
            metrics.clone(),
            Coalescer::new(limits),
            Arc::new(Semaphore::new(concurrency.max(1))),
        ));
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

    /// Stops taking batches and waits up to `grace` for the queued and coalescing ones to be
    /// delivered (or spooled).
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
            tracing::error!(job = %batch.job_id, entity = batch.entity_id,
                "delivery queue full or closed: {count} values dropped");
            batch.report(Delivered {
                dropped: count,
                ..Delivered::default()
            });
            self.metrics
                .framework
                .values_dropped
                .get_or_create(&label("reason", "queue_full"))
                .inc_by(count);
        }
    }
}

/// How many firings the delivery task takes from its queue at once.
const RECEIVE_AT_ONCE: usize = 256;

/// The body of the delivery task: runs until every sender is gone, then flushes what is still
/// coalescing and waits for the sink.
///
/// Firings are taken from the queue as many as are waiting, and one timer, kept from turn to
/// turn, wakes the task when a group is due: at 10,000 firings a second a timer made and
/// dropped at each firing was a good part of delivery's cost.
async fn deliver_all(
    mut receiver: mpsc::Receiver<Batch>,
    sink: Arc<dyn Sink>,
    metrics: Metrics,
    mut coalescer: Coalescer,
    limit: Arc<Semaphore>,
) {
    let mut running = JoinSet::new();
    let mut closed = Vec::new();
    let mut received = Vec::with_capacity(RECEIVE_AT_ONCE);
    let timer = tokio::time::sleep(Duration::ZERO);
    tokio::pin!(timer);
    // When `timer` goes off, if it is armed. A group's deadline that moves later (each firing
    // that joins pushes its quiet end back) leaves the timer as it is: it goes off early, finds
    // nothing due and is armed again, which costs less than moving it at every firing.
    let mut armed: Option<tokio::time::Instant> = None;
    let mut open = true;
    while open {
        if let Some(deadline) = coalescer.next_deadline() {
            if armed.is_none_or(|at| deadline < at) {
                timer.as_mut().reset(deadline);
                armed = Some(deadline);
            }
        }
        tokio::select! {
            biased;
            _ = &mut timer, if armed.is_some() => {
                armed = None;
                coalescer.close_due(tokio::time::Instant::now(), &mut closed);
            }
            count = receiver.recv_many(&mut received, RECEIVE_AT_ONCE) => {
                if count == 0 {
                    coalescer.close_all(&mut closed);
                    open = false;
                }
                let now = tokio::time::Instant::now();
                for mut batch in received.drain(..) {
                    clean(&mut batch, &metrics);
                    if !batch.values.is_empty() {
                        coalescer.add(batch, now, &mut closed);
                    }
                }
            }
        }
        for firings in closed.drain(..) {
            let Ok(permit) = limit.clone().acquire_owned().await else {
                return;
            };
            let sink = sink.clone();
            running.spawn(async move {
                sink.deliver(firings).await;
                drop(permit);
            });
        }
        while running.try_join_next().is_some() {}
    }
    while running.join_next().await.is_some() {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_the_same_only_when_every_byte_is() {
        assert!(same_path("entity.1.ping.rtt.min", "entity.1.ping.rtt.min"));
        assert!(!same_path("entity.1.ping.rtt.min", "entity.2.ping.rtt.min"));
        assert!(!same_path("entity.1.ping.rtt.min", "entity.1.ping.rtt.max"));
        assert!(!same_path("entity.1.ping.rtt.min", "entity.1.ping.success"));
        assert!(same_path("a.b", "a.b"));
        assert!(!same_path("a.b", "a.c"));
        assert!(!same_path("a.b", "a.bc"));
    }

    /// One firing's batch of job `j` on entity 5 of account 1.
    fn firing_of(values: Vec<Value>) -> Batch {
        Batch {
            account_id: Some(1),
            job_id: "j".into(),
            entity_id: Some(5),
            time: 0.0,
            receipt: None,
            values,
        }
    }

    #[test]
    fn one_bad_value_never_costs_the_batch() {
        let metrics = Metrics::new();
        let mut batch = firing_of(vec![
            Value::new("a.b", 1.0),
            Value::new("a.nan", f64::NAN),
            Value::new("a.inf", f64::INFINITY),
            Value::new("a..bad", 2.0),
            Value::new("system.x", 2.0),
            Value::new("a.dup", 3.0),
            Value::new("a.c", 4.0),
            Value::new("a.dup", 5.0),
        ]);
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

    #[test]
    fn small_and_big_firings_drop_the_same_repeats() {
        let tricky = vec![
            Value::new("a.dup", 1.0),
            Value::new("a.dup", 2.0),
            Value::new("a.late-nan", 3.0),
            Value::new("a.late-nan", f64::NAN),
            Value::new("a.dup", 4.0),
        ];
        let kept = |padding: usize| {
            let mut values = tricky.clone();
            values.extend((0..padding).map(|i| Value::new(format!("pad.{i}"), 0.0)));
            let mut batch = firing_of(values);
            clean(&mut batch, &Metrics::new());
            batch.values.truncate(batch.values.len() - padding);
            batch.values
        };
        let expected = vec![Value::new("a.late-nan", 3.0), Value::new("a.dup", 4.0)];
        assert_eq!(kept(0), expected, "compared one by one");
        assert_eq!(kept(FEW_VALUES * 2), expected, "through the set");
    }
}
