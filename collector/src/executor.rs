//! The executor: runs fired jobs with bounded concurrency, a timeout per run, no job
//! overlapping itself, and a panic in one job contained to that job.

use crate::bot::{Collector, JobError};
use crate::deadlines::{Deadlines, Elapsed, Expiry};
use crate::delivery::{Batch, DeliveryHandle, Receipt};
use crate::job::JobSpec;
use crate::metrics::{label, Metrics};
use crate::notify::{Notifier, RunReport};
use crate::pacing::Pacer;
use crate::report::Findings;
use crate::scheduler::{Clock, Due, JobState};
use crate::status::{Delivered, LastRun};
use crate::task_record::{TaskRecord, TaskRecords};
use crate::value::Value;
use futures::FutureExt;
use prometheus_client::metrics::counter::Counter;
use std::collections::VecDeque;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
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
    const ALL: [Outcome; 5] = [
        Outcome::Success,
        Outcome::Failure,
        Outcome::Timeout,
        Outcome::Panic,
        Outcome::Skip,
    ];

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
    shared: Arc<Shared<C>>,
    tasks: TaskTracker,
    /// The task that keeps the runs' time limits; it ends with the executor.
    _expiry: Expiry,
}

/// What every run needs, behind one `Arc` so that a firing clones one pointer.
struct Shared<C: Collector> {
    bot: Arc<C>,
    permits: Arc<Semaphore>,
    /// Firings that cannot start yet (no permit, or the pacer's slot is to come).
    waiting: Mutex<Waiting<C::Params>>,
    delivery: DeliveryHandle,
    metrics: Metrics,
    clock: Clock,
    records: TaskRecords,
    notifier: Option<Notifier>,
    pacer: Option<Pacer>,
    /// `JOB_TIMEOUT`: overrides each run's default limit, the job's smallest interval.
    timeout: Option<Duration>,
    /// The runs' time limits, kept by one task rather than a tokio timer per run.
    deadlines: Arc<Deadlines>,
    /// `collector_runs_total{outcome}`, one counter per [`Outcome`] in [`Outcome::ALL`]'s
    /// order, looked up once rather than at every run.
    runs: [Counter; 5],
}

/// Firings waiting for their start. A run's task is spawned only when it has a permit and its
/// pacer slot: 10,000 firings due in the same second then wait as queue entries of a few words
/// each, not as 10,000 tasks, each holding its run's whole future (about 1.2 KB).
struct Waiting<P> {
    queue: VecDeque<Due<P>>,
    /// Whether a [`Shared::dispatch`] task is starting them.
    dispatching: bool,
}

/// A firing that ended (or was skipped), for the status page, the notifier and delivery.
struct Ended<'a, P> {
    spec: &'a JobSpec<P>,
    state: &'a Arc<JobState>,
    scheduled: u64,
    started: f64,
    finished: f64,
    outcome: Outcome,
    values: Vec<Value>,
    error: Option<String>,
    findings: Findings,
}

impl<C: Collector> Executor<C> {
    /// `timeout` overrides the default per-run limit (the job's smallest interval). Must be
    /// called inside a Tokio runtime: it starts the task that keeps the runs' time limits.
    pub fn new(
        bot: Arc<C>,
        concurrency: usize,
        timeout: Option<Duration>,
        delivery: DeliveryHandle,
        metrics: Metrics,
        clock: Clock,
        records: TaskRecords,
    ) -> Self {
        let runs = Outcome::ALL.map(|outcome| {
            let series = label("outcome", outcome.as_str());
            metrics.framework.runs.get_or_create(&series).clone()
        });
        let (deadlines, expiry) = Deadlines::start_keeping();
        Executor {
            shared: Arc::new(Shared {
                bot,
                permits: Arc::new(Semaphore::new(concurrency.max(1))),
                waiting: Mutex::new(Waiting {
                    queue: VecDeque::new(),
                    dispatching: false,
                }),
                delivery,
                metrics,
                clock,
                records,
                notifier: None,
                pacer: None,
                timeout,
                deadlines,
                runs,
            }),
            tasks: TaskTracker::new(),
            _expiry: expiry,
        }
    }

    /// Starts at most `starts_per_second` runs a second (`JOB_MAX_STARTS_PER_SECOND`). A builder
    /// step: it has no effect once runs have started.
    pub fn with_pacing(mut self, starts_per_second: Option<u32>) -> Self {
        if let Some(shared) = Arc::get_mut(&mut self.shared) {
            shared.pacer = starts_per_second.map(Pacer::new);
        }
        self
    }

    /// Hands every finished run (outcome, checks, events, task record) to the notifier. A
    /// builder step, like [`Executor::with_pacing`].
    pub fn with_notifier(mut self, notifier: Notifier) -> Self {
        if let Some(shared) = Arc::get_mut(&mut self.shared) {
            shared.notifier = Some(notifier);
        }
        self
    }

    /// Starts runs of jobs that fell due, each unless its previous run is still going: at once
    /// when a permit is free and no pacing applies, else when its turn comes (in firing order).
    /// The scheduler hands a due second's jobs out together: the queue of waiting firings is
    /// locked once for them all, not once each.
    pub fn fire_all(&self, dues: impl IntoIterator<Item = Due<C::Params>>) {
        let mut fired = 0;
        let mut waiting = None;
        for due in dues {
            fired += 1;
            if due.state.running.swap(true, Ordering::AcqRel) {
                drop(waiting.take());
                self.skip(due);
                continue;
            }
            let waiting = waiting.get_or_insert_with(|| {
                self.shared
                    .waiting
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
            });
            if waiting.queue.is_empty() && self.shared.pacer.is_none() {
                if let Ok(permit) = self.shared.permits.clone().try_acquire_owned() {
                    self.tasks.spawn(self.shared.clone().run(due, permit));
                    continue;
                }
            }
            waiting.queue.push_back(due);
            if !waiting.dispatching {
                waiting.dispatching = true;
                self.tasks
                    .spawn(self.shared.clone().dispatch(self.tasks.clone()));
            }
        }
        self.shared.metrics.framework.firings.inc_by(fired);
    }

    fn skip(&self, due: Due<C::Params>) {
        tracing::warn!(job = %due.spec.id, entity = due.spec.entity_id,
            "previous run still going; this firing is skipped");
        let now = self.shared.clock.now_unix();
        self.shared.finish(Ended {
            spec: &due.spec,
            state: &due.state,
            scheduled: due.firing.scheduled,
            started: now,
            finished: now,
            outcome: Outcome::Skip,
            values: Vec::new(),
            error: Some("the previous run was still going; this firing was skipped".into()),
            findings: Findings::default(),
        });
    }

    /// Stops accepting runs and waits up to `grace` for those in flight. Returns whether all
    /// finished in time.
    pub async fn drain(&self, grace: Duration) -> bool {
        self.tasks.close();
        tokio::time::timeout(grace, self.tasks.wait()).await.is_ok()
    }
}

impl<C: Collector> Shared<C> {
    /// Starts the waiting firings one by one, each at its pacer slot and with a permit, until
    /// none is left.
    async fn dispatch(self: Arc<Self>, tasks: TaskTracker) {
        loop {
            if let Some(pacer) = &self.pacer {
                pacer.wait().await;
            }
            let permit = self.permits.clone().acquire_owned().await;
            let mut waiting = self.waiting.lock().unwrap_or_else(|e| e.into_inner());
            let Some(due) = waiting.queue.pop_front() else {
                waiting.dispatching = false;
                return;
            };
            drop(waiting);
            match permit {
                Ok(permit) => {
                    due.prefetch();
                    tasks.spawn(self.clone().run(due, permit));
                }
                Err(_closed) => due.state.running.store(false, Ordering::Release),
            }
        }
    }

    /// One run: the bot's work under its time limit, then [`Self::finish`]. `permit` is its
    /// place among the runs in progress, given back when the run is over.
    ///
    /// An `async` block, not an `async fn`: an `async fn` keeps its arguments twice in its
    /// future (as passed, and moved into its body), and this future is a run's task, moved whole
    /// as it is spawned and as it ends: 10,000 times a second in the ping bot.
    #[allow(clippy::manual_async_fn)]
    fn run(
        self: Arc<Self>,
        mut due: Due<C::Params>,
        permit: OwnedSemaphorePermit,
    ) -> impl Future<Output = ()> + Send + 'static {
        async move {
            let notifier = self.notifier.as_ref();
            let reads_quiet_runs = notifier.is_some_and(|n| n.reads_quiet_runs(&due.state));
            due.firing.set_good_checks_read(reads_quiet_runs);
            let limit = self
                .timeout
                .or_else(|| due.smallest_interval.map(Duration::from_secs))
                .unwrap_or(Duration::from_secs(60));
            let framework = &self.metrics.framework;
            let started = self.clock.now_unix();
            framework
                .wait_seconds
                .observe((started - due.firing.scheduled as f64).max(0.0));
            // The bot's future goes in a box of its own: inline it made the run's task over
            // 1 KB, and glibc's malloc (the SNMP and NetFlow bots') serves that size from its
            // sorted bins after merging every freed small chunk, at each spawn. Two small
            // allocations cost less.
            let run = AssertUnwindSafe(Box::pin(self.bot.perform(&due.spec, &due.firing)));
            let result = self.deadlines.limit(limit, run.catch_unwind()).await;
            let finished = self.clock.now_unix();
            framework.run_seconds.observe(finished - started);
            framework
                .total_seconds
                .observe((finished - due.firing.scheduled as f64).max(0.0));
            due.state.running.store(false, Ordering::Release);
            let (outcome, values, error) = outcome_of(result, &due.spec, limit);
            self.finish(Ended {
                spec: &due.spec,
                state: &due.state,
                scheduled: due.firing.scheduled,
                started,
                finished,
                outcome,
                values,
                error,
                findings: due.firing.take_findings(),
            });
            drop(permit);
        }
    }

    /// Records a firing's end (status page, task record, notifier, counter) and hands its values
    /// to delivery, which reports back what the backend made of them.
    fn finish(&self, ended: Ended<'_, C::Params>) {
        let Ended {
            spec,
            state,
            scheduled,
            started,
            finished,
            outcome,
            mut values,
            error,
            findings,
        } = ended;
        let record = TaskRecord {
            job: &spec.id,
            entity: spec.entity_id,
            trigger: scheduled,
            start: started,
            end: finished,
            outcome,
        };
        self.records.emit(&record, &mut values);
        state.runs.record(LastRun {
            scheduled,
            started,
            finished,
            outcome,
            values: values.len(),
            delivered: Delivered::default(),
            error: error.clone(),
        });
        if let Some(notifier) = self.notifier.as_ref() {
            if notifier.needs_report(outcome, &findings, state) {
                notifier.finish(run_report(spec, state, &record, error, findings));
            }
        }
        self.delivery.submit(Batch {
            account_id: spec.account_id,
            job_id: spec.id.clone(),
            entity_id: spec.entity_id,
            time: finished,
            values,
            receipt: Some(Receipt {
                state: state.clone(),
                scheduled,
            }),
        });
        self.runs[outcome as usize].inc();
    }
}

/// What a run's result means: its outcome, values and error, logged as the job's.
fn outcome_of<P>(
    result: Result<std::thread::Result<Result<Vec<Value>, JobError>>, Elapsed>,
    spec: &JobSpec<P>,
    limit: Duration,
) -> (Outcome, Vec<Value>, Option<String>) {
    match result {
        Ok(Ok(Ok(values))) => (Outcome::Success, values, None),
        Ok(Ok(Err(e))) => {
            tracing::error!(job = %spec.id, entity = spec.entity_id, "job failed: {e}");
            (Outcome::Failure, Vec::new(), Some(e.to_string()))
        }
        Ok(Err(panic)) => {
            tracing::error!(job = %spec.id, entity = spec.entity_id, "job panicked; other jobs go on");
            (
                Outcome::Panic,
                Vec::new(),
                Some(panic_message(panic.as_ref())),
            )
        }
        Err(Elapsed) => {
            tracing::error!(job = %spec.id, entity = spec.entity_id,
                "job timed out after {limit:?} and was cancelled");
            let error = format!("timed out after {limit:?} and was cancelled");
            (Outcome::Timeout, Vec::new(), Some(error))
        }
    }
}

/// What a panic said, for the status page.
fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    let text = payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned());
    match text {
        Some(text) => format!("the job panicked: {text}"),
        None => "the job panicked".into(),
    }
}

/// What the notifier needs of a finished run.
fn run_report<P>(
    spec: &JobSpec<P>,
    state: &Arc<JobState>,
    record: &TaskRecord<'_>,
    error: Option<String>,
    findings: Findings,
) -> RunReport {
    RunReport {
        job: spec.id.clone(),
        entity: spec.entity_id,
        entity_name: spec.entity_name.clone(),
        account: spec.account_id,
        outcome: record.outcome,
        error,
        findings,
        trigger: record.trigger,
        start: record.start,
        end: record.end,
        state: Some(state.clone()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bot::{Firing, JobError};
    use crate::delivery::coalesce::Limits;
    use crate::delivery::{Batch, Delivery, Sink};
    use crate::entity::EntityConfig;
    use crate::job::JobSpec;
    use futures::future::BoxFuture;
    use std::sync::Mutex;

    /// A bot whose jobs behave as their params say.
    struct Scripted;

    impl Collector for Scripted {
        type Params = &'static str;
        fn protocol(&self) -> &'static str {
            "scripted"
        }
        fn jobs(&self, _: &[EntityConfig]) -> Vec<JobSpec<&'static str>> {
            Vec::new()
        }
        async fn perform(
            &self,
            job: &JobSpec<&'static str>,
            firing: &Firing,
        ) -> Result<Vec<Value>, JobError> {
            match job.params {
                "reads" => {
                    let read = f64::from(u8::from(firing.good_checks_read()));
                    return Ok(vec![Value::new("good_checks_read", read)]);
                }
                "slow" => tokio::time::sleep(Duration::from_secs(3600)).await,
                "fail" => return Err(JobError::new("device said no")),
                "panic" => panic!("bug in a bot"),
                _ => {}
            }
            Ok(vec![Value::new(format!("entity.{}.ok", job.id), 1.0)])
        }
    }

    #[derive(Default)]
    struct Capture(Mutex<Vec<Batch>>);

    impl Sink for Capture {
        fn deliver(&self, firings: Vec<Batch>) -> BoxFuture<'_, ()> {
            Box::pin(async move { self.0.lock().unwrap().extend(firings) })
        }
    }

    fn due(id: &str, behaviour: &'static str, state: &Arc<JobState>) -> Due<&'static str> {
        let spec = JobSpec::new(id, vec![10], behaviour).account(1);
        Due {
            smallest_interval: spec.min_interval(),
            spec: Arc::new(spec),
            firing: Firing::new(0, vec![10]),
            state: state.clone(),
        }
    }

    fn count(metrics: &Metrics, outcome: &str) -> u64 {
        metrics
            .framework
            .runs
            .get_or_create(&label("outcome", outcome))
            .get()
    }

    #[test]
    fn outcome_counters_are_in_the_order_of_the_outcomes() {
        for (at, outcome) in Outcome::ALL.into_iter().enumerate() {
            assert_eq!(outcome as usize, at, "{outcome:?}");
        }
    }

    /// Metrics, and a delivery whose sink keeps what it is given.
    fn delivered() -> (Metrics, Arc<Capture>, Delivery) {
        let metrics = Metrics::new();
        let capture = Arc::new(Capture::default());
        let delivery = Delivery::start(capture.clone(), metrics.clone(), 100, 4, Limits::none());
        (metrics, capture, delivery)
    }

    fn executor(concurrency: usize, metrics: &Metrics, delivery: &Delivery) -> Executor<Scripted> {
        Executor::new(
            Arc::new(Scripted),
            concurrency,
            None,
            delivery.handle(),
            metrics.clone(),
            Clock::new(),
            TaskRecords::default(),
        )
    }

    #[tokio::test(start_paused = true)]
    async fn firings_that_cannot_start_yet_wait_as_queue_entries_not_tasks() {
        let (metrics, capture, delivery) = delivered();
        let limited = executor(2, &metrics, &delivery);
        for i in 0..100 {
            limited.fire_all([due(&format!("j{i}"), "ok", &Arc::new(JobState::default()))]);
        }
        assert_eq!(
            limited.tasks.len(),
            3,
            "two runs and the one starting the rest"
        );
        assert!(limited.drain(Duration::from_secs(60)).await);
        assert_eq!(count(&metrics, "success"), 100, "every firing ran");

        let paced = executor(100, &metrics, &delivery).with_pacing(Some(10));
        let started = tokio::time::Instant::now();
        for i in 0..20 {
            paced.fire_all([due(&format!("p{i}"), "ok", &Arc::new(JobState::default()))]);
        }
        assert_eq!(paced.tasks.len(), 1, "paced runs wait in the queue");
        assert!(paced.drain(Duration::from_secs(60)).await);
        assert_eq!(count(&metrics, "success"), 120);
        let took = started.elapsed();
        assert!(
            took >= Duration::from_millis(1900) && took < Duration::from_millis(2100),
            "20 starts at 10 a second: {took:?}"
        );
        drop((limited, paced));
        assert!(delivery.close(Duration::from_secs(5)).await);
        assert_eq!(capture.0.lock().unwrap().len(), 120);
    }

    #[tokio::test(start_paused = true)]
    async fn without_a_notifier_no_good_check_is_read() {
        assert!(
            Firing::new(0, vec![10]).good_checks_read(),
            "outside the framework"
        );
        let (metrics, capture, delivery) = delivered();
        let executor = executor(1, &metrics, &delivery);
        executor.fire_all([due("r", "reads", &Arc::new(JobState::default()))]);
        assert!(executor.drain(Duration::from_secs(60)).await);
        drop(executor);
        assert!(delivery.close(Duration::from_secs(5)).await);
        let batches = capture.0.lock().unwrap();
        assert_eq!(batches[0].values, [Value::new("good_checks_read", 0.0)]);
    }

    #[tokio::test(start_paused = true)]
    async fn overlap_timeout_failure_and_panic_stay_with_their_job() {
        let (metrics, capture, delivery) = delivered();
        let executor = executor(8, &metrics, &delivery);
        let slow = Arc::new(JobState::default());
        executor.fire_all([due("slow", "slow", &slow)]);
        tokio::task::yield_now().await;
        // One due second's batch: the slow job's second firing in the middle of three others.
        let fresh = || Arc::new(JobState::default());
        executor.fire_all([
            due("p", "panic", &fresh()),
            due("slow", "slow", &slow),
            due("f", "fail", &fresh()),
            due("ok", "ok", &fresh()),
        ]);
        assert_eq!(
            count(&metrics, "skip"),
            1,
            "a running job is not started again"
        );
        assert_eq!(executor.tasks.len(), 4, "the others of the batch started");
        assert!(executor.drain(Duration::from_secs(60)).await);
        assert_eq!(
            count(&metrics, "timeout"),
            1,
            "the slow job is cut at its interval"
        );
        assert_eq!(count(&metrics, "panic"), 1);
        assert_eq!(count(&metrics, "failure"), 1);
        assert_eq!(count(&metrics, "success"), 1);
        assert!(
            !slow.running.load(Ordering::Acquire),
            "a timed-out job may run again"
        );
        let history = slow.runs.history();
        assert_eq!(
            (history.firings, history.unsuccessful),
            (2, 2),
            "skip, then timeout"
        );
        let last = history.last.expect("a last run for the status page");
        assert_eq!(last.outcome, Outcome::Timeout);
        assert_eq!(
            last.error.as_deref(),
            Some("timed out after 10s and was cancelled")
        );
        drop(executor);
        assert!(delivery.close(Duration::from_secs(5)).await);
        let batches = capture.0.lock().unwrap();
        assert_eq!(batches.len(), 1);
        assert_eq!(batches[0].values, vec![Value::new("entity.ok.ok", 1.0)]);
        assert_eq!(batches[0].account_id, Some(1));
    }
}
