//! The executor: runs fired jobs with bounded concurrency, a timeout per run, no job
//! overlapping itself, and a panic in one job contained to that job.

use crate::bot::Collector;
use crate::delivery::{Batch, DeliveryHandle};
use crate::metrics::{label, Metrics};
use crate::scheduler::{Clock, Due};
use futures::FutureExt;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Semaphore;
use tokio_util::task::TaskTracker;

/// How a run ended, as counted in `collector_runs_total{outcome}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Success,
    Failure,
    Timeout,
    Panic,
    Skip,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Success => "success",
            Outcome::Failure => "failure",
            Outcome::Timeout => "timeout",
            Outcome::Panic => "panic",
            Outcome::Skip => "skip",
        }
    }
}

/// Runs jobs for one bot.
pub struct Executor<C: Collector> {
    bot: Arc<C>,
    permits: Arc<Semaphore>,
    timeout: Option<Duration>,
    delivery: DeliveryHandle,
    metrics: Metrics,
    clock: Clock,
    tasks: TaskTracker,
}

impl<C: Collector> Executor<C> {
    /// `timeout` overrides the default per-run limit (the job's smallest interval).
    pub fn new(
        bot: Arc<C>,
        concurrency: usize,
        timeout: Option<Duration>,
        delivery: DeliveryHandle,
        metrics: Metrics,
        clock: Clock,
    ) -> Self {
        Executor {
            bot,
            permits: Arc::new(Semaphore::new(concurrency.max(1))),
            timeout,
            delivery,
            metrics,
            clock,
            tasks: TaskTracker::new(),
        }
    }

    /// Starts a run of a job that fell due, unless its previous run is still going.
    pub fn fire(&self, due: Due<C::Params>) {
        let framework = &self.metrics.framework;
        framework.firings.inc();
        if due.state.running.swap(true, Ordering::AcqRel) {
            tracing::warn!(job = %due.spec.id, entity = ?due.spec.entity_id,
                "previous run still going; this firing is skipped");
            framework
                .runs
                .get_or_create(&label("outcome", Outcome::Skip.as_str()))
                .inc();
            return;
        }
        let bot = self.bot.clone();
        let permits = self.permits.clone();
        let delivery = self.delivery.clone();
        let metrics = self.metrics.clone();
        let clock = self.clock;
        let limit = self
            .timeout
            .or_else(|| due.spec.min_interval().map(Duration::from_secs))
            .unwrap_or(Duration::from_secs(60));
        self.tasks.spawn(async move {
            let Due { spec, firing, state } = due;
            let Ok(_permit) = permits.acquire_owned().await else {
                state.running.store(false, Ordering::Release);
                return;
            };
            let started = clock.now_unix();
            let wait = (started - firing.scheduled as f64).max(0.0);
            metrics.framework.wait_seconds.observe(wait);
            let run = AssertUnwindSafe(bot.perform(&spec, &firing)).catch_unwind();
            let result = tokio::time::timeout(limit, run).await;
            let finished = clock.now_unix();
            metrics.framework.run_seconds.observe(finished - started);
            state.running.store(false, Ordering::Release);
            let outcome = match result {
                Ok(Ok(Ok(values))) => {
                    delivery.submit(Batch {
                        account_id: spec.account_id,
                        job_id: spec.id.clone(),
                        entity_id: spec.entity_id,
                        time: finished,
                        values,
                    });
                    Outcome::Success
                }
                Ok(Ok(Err(e))) => {
                    tracing::error!(job = %spec.id, entity = ?spec.entity_id, "job failed: {e}");
                    Outcome::Failure
                }
                Ok(Err(_panic)) => {
                    tracing::error!(job = %spec.id, entity = ?spec.entity_id, "job panicked; other jobs go on");
                    Outcome::Panic
                }
                Err(_) => {
                    tracing::error!(job = %spec.id, entity = ?spec.entity_id,
                        "job timed out after {limit:?} and was cancelled");
                    Outcome::Timeout
                }
            };
            tracing::debug!(job = %spec.id, entity = ?spec.entity_id, trigger = firing.scheduled,
                wait_cost = wait, run_cost = finished - started,
                total_cost = finished - firing.scheduled as f64, status = outcome.as_str(), "task record");
            metrics.framework.runs.get_or_create(&label("outcome", outcome.as_str())).inc();
        });
    }

    /// Stops accepting runs and waits up to `grace` for those in flight. Returns whether all
    /// finished in time.
    pub async fn drain(&self, grace: Duration) -> bool {
        self.tasks.close();
        tokio::time::timeout(grace, self.tasks.wait()).await.is_ok()
    }
}
