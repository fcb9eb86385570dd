//! The run-state registry behind the status page (`/jobs`): every scheduled job with its
//! protocol summary and last run, the entities the jobs are about, and the entities left out at
//! the last refresh with the reason. The executor writes a job's last run into the job's own
//! cell (no shared lock per run); the registry itself changes once per refresh.

use crate::bot::Collector;
use crate::entity::{ConfigProblem, EntityConfig};
use crate::executor::Outcome;
use crate::job::JobSpec;
use crate::scheduler::{next_firing, JobState, Scheduler};
use serde::Serialize;
use std::any::Any;
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{SystemTime, UNIX_EPOCH};

/// Unix time now, in seconds.
pub fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// What a job does, in the protocol's own words (SNMP sensors and their OIDs, ping packets and
/// timeout, NetFlow exporters and window), as `name: value` lines on the status page. Built by
/// [`Collector::describe`]; it must never hold a secret.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Summary(pub Vec<SummaryItem>);

/// One line of a [`Summary`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SummaryItem {
    pub name: String,
    pub value: String,
}

impl Summary {
    /// Adds a line.
    pub fn item(mut self, name: impl Into<String>, value: impl ToString) -> Self {
        self.0.push(SummaryItem {
            name: name.into(),
            value: value.to_string(),
        });
        self
    }
}

/// An entity a bot made no job for, returned by [`Collector::left_out`] so that the status page
/// can say why the entity is not polled.
#[derive(Debug, Clone, PartialEq)]
pub struct LeftOut {
    pub account_id: u64,
    pub entity_id: u64,
    pub reason: String,
}

impl LeftOut {
    /// The entity of `config`, left out for `reason`.
    pub fn of(config: &EntityConfig, reason: impl Into<String>) -> Self {
        LeftOut {
            account_id: config.account_id,
            entity_id: config.entity_id,
            reason: reason.into(),
        }
    }
}

/// An entity that gets no job, with what the status page shows about it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SkippedEntity {
    pub account_id: u64,
    pub entity_id: u64,
    pub name: String,
    pub address: Option<String>,
    pub reason: String,
}

/// How the last firing of a job went.
#[derive(Debug, Clone, PartialEq)]
pub struct LastRun {
    /// The Unix second the firing was due.
    pub scheduled: u64,
    pub started: f64,
    pub finished: f64,
    pub outcome: Outcome,
    /// Values the firing handed to delivery (its task record values included).
    pub values: usize,
    /// What became of them, as delivery reports it: accepted, spooled or dropped.
    pub delivered: Delivered,
    /// The error in full, for every outcome but success.
    pub error: Option<String>,
}

/// What became of a firing's values after it ended, so the status page shows what the backend
/// accepted rather than what the run returned.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Delivered {
    /// Taken by the sink (the backend answered 2xx, or standalone output written).
    pub accepted: u64,
    /// Waiting in the on-disk spool for the backend to recover.
    pub spooled: u64,
    /// Cleaned out, refused by the backend, or lost (each is logged and counted).
    pub dropped: u64,
}

impl std::ops::AddAssign for Delivered {
    fn add_assign(&mut self, other: Delivered) {
        self.accepted += other.accepted;
        self.spooled += other.spooled;
        self.dropped += other.dropped;
    }
}

/// The run history the status page shows for one job, kept in the job's [`JobState`].
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RunHistory {
    pub last: Option<LastRun>,
    /// The most recent error and when it happened, kept after the job recovers.
    pub last_error: Option<(f64, String)>,
    pub firings: u64,
    /// Firings that did not succeed (failure, timeout, panic, skip).
    pub unsuccessful: u64,
}

/// The longest error kept per job, so that memory stays bounded whatever a bot reports; real
/// errors are far shorter and are kept in full.
pub const MAX_ERROR_BYTES: usize = 16 * 1024;

/// A job's [`RunHistory`] behind a lock of its own, written by the executor after each firing.
#[derive(Debug, Default)]
pub struct RunCell(Mutex<RunHistory>);

impl RunCell {
    /// Records the outcome of a firing.
    pub fn record(&self, mut run: LastRun) {
        if let Some(error) = &mut run.error {
            if error.len() > MAX_ERROR_BYTES {
                let mut end = MAX_ERROR_BYTES;
                while !error.is_char_boundary(end) {
                    end -= 1;
                }
                error.truncate(end);
                error.push_str(" [cut]");
            }
        }
        let mut history = self.0.lock().unwrap_or_else(|e| e.into_inner());
        history.firings += 1;
        if run.outcome != Outcome::Success {
            history.unsuccessful += 1;
        }
        if let Some(error) = &run.error {
            history.last_error = Some((run.finished, error.clone()));
        }
        history.last = Some(run);
    }

    /// Adds what delivery made of the values of the firing due at `scheduled`; ignored when a
    /// later firing has already replaced it.
    pub fn delivered(&self, scheduled: u64, delivered: Delivered) {
        let mut history = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(last) = history.last.as_mut().filter(|l| l.scheduled == scheduled) {
            last.delivered += delivered;
        }
    }

    /// A copy of the history.
    pub fn history(&self) -> RunHistory {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// A job's spec as the status page reads it, whatever the bot's params: the page holds the
/// scheduler's own specs rather than copies (10,000 ping jobs' copies and summaries were 5 MB).
pub trait ScheduledJob: Send + Sync + std::fmt::Debug {
    fn id(&self) -> &str;
    fn account_id(&self) -> Option<u64>;
    fn entity_id(&self) -> Option<u64>;
    fn intervals(&self) -> &[u64];
    /// The bot's params, for [`Describer`].
    fn params(&self) -> &AnyParams;
}

impl<P: Send + Sync + std::fmt::Debug + 'static> ScheduledJob for JobSpec<P> {
    fn id(&self) -> &str {
        &self.id
    }
    fn account_id(&self) -> Option<u64> {
        self.account_id
    }
    fn entity_id(&self) -> Option<u64> {
        self.entity_id
    }
    fn intervals(&self) -> &[u64] {
        &self.intervals
    }
    fn params(&self) -> &AnyParams {
        &self.params
    }
}

/// Params of any bot, as [`ScheduledJob::params`] gives them.
pub type AnyParams = dyn Any + Send + Sync;

/// The bot's [`Collector::describe`] over type-erased params, called when the page is read.
#[derive(Clone)]
pub struct Describer(Arc<dyn Fn(&AnyParams) -> Summary + Send + Sync>);

impl Describer {
    /// Describes params of `C`; other params (none are scheduled) get an empty summary.
    pub fn of<C: Collector>(bot: Arc<C>) -> Describer {
        Describer(Arc::new(move |params| {
            params
                .downcast_ref::<C::Params>()
                .map(|params| bot.describe(params))
                .unwrap_or_default()
        }))
    }

    /// What the job does, in the protocol's terms.
    pub fn describe(&self, job: &dyn ScheduledJob) -> Summary {
        (self.0)(job.params())
    }
}

impl std::fmt::Debug for Describer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Describer")
    }
}

/// A scheduled job as the status page knows it.
#[derive(Debug, Clone)]
pub struct JobRow {
    pub spec: Arc<dyn ScheduledJob>,
    /// The Unix second the job's firings count from.
    pub anchor: u64,
    pub state: Arc<JobState>,
}

impl JobRow {
    /// The Unix second of the first firing after `now`.
    pub fn next_due(&self, now: u64) -> Option<u64> {
        next_firing(self.anchor, self.spec.intervals(), now)
    }
}

/// Name and address of an entity that has jobs.
#[derive(Debug, Clone, PartialEq)]
pub struct EntityInfo {
    pub name: String,
    pub address: Option<String>,
}

impl EntityInfo {
    /// The entities of `configs` as the status page keeps them.
    pub fn of_configs(configs: &[EntityConfig]) -> Vec<((u64, u64), EntityInfo)> {
        configs
            .iter()
            .map(|config| {
                let info = EntityInfo {
                    name: config.name.clone(),
                    address: config.address().map(str::to_string),
                };
                ((config.account_id, config.entity_id), info)
            })
            .collect()
    }
}

/// What one refresh said about entities.
#[derive(Debug, Default)]
pub struct EntityReport {
    /// The name and address of each entity that got a config, by (account, entity): all the
    /// page keeps of the configs, taken before they are made into jobs.
    pub entities: Vec<((u64, u64), EntityInfo)>,
    pub skipped: Vec<SkippedEntity>,
    pub problems: Vec<ConfigProblem>,
    pub left_out: Vec<LeftOut>,
}

/// Everything the status page reads, as of the last refresh.
#[derive(Debug, Default)]
pub struct Board {
    pub protocol: &'static str,
    pub jobs: Vec<JobRow>,
    /// Describes each job's params when the page is read (not kept per job).
    pub describer: Option<Describer>,
    pub entities: HashMap<(u64, u64), EntityInfo>,
    pub skipped: Vec<SkippedEntity>,
    /// Problems of entities that are still polled (e.g. one sensor missing), by entity.
    pub notes: HashMap<(u64, u64), Vec<String>>,
    /// Unix time of the last successful refresh.
    pub refreshed_at: Option<f64>,
    /// Where the alert state lives (the notifier's store), read at each request.
    pub alerts: Option<crate::Store>,
}

/// The shared registry: written at each refresh, read by the status page. Cheap to clone.
#[derive(Clone, Default)]
pub struct StatusBoard(Arc<RwLock<Board>>);

impl StatusBoard {
    pub fn new(protocol: &'static str) -> Self {
        StatusBoard(Arc::new(RwLock::new(Board {
            protocol,
            ..Board::default()
        })))
    }

    /// Shows the alerts firing now, from the store the notifier keeps their state in.
    pub fn show_alerts(&self, store: crate::Store) {
        let mut board = self.0.write().unwrap_or_else(|e| e.into_inner());
        board.alerts = Some(store);
    }

    /// Takes in what a refresh found. Accounts in `unreadable` keep what the previous refresh
    /// said about them, as their jobs are kept.
    pub fn set_entities(&self, report: EntityReport, unreadable: &HashSet<u64>) {
        let mut guard = self.0.write().unwrap_or_else(|e| e.into_inner());
        let board = &mut *guard;
        board.entities.retain(|(a, _), _| unreadable.contains(a));
        board.skipped.retain(|s| unreadable.contains(&s.account_id));
        board.notes.retain(|(a, _), _| unreadable.contains(a));
        board.entities.extend(report.entities);
        board.skipped.extend(report.skipped);
        for left in report.left_out {
            let info = board.entities.get(&(left.account_id, left.entity_id));
            board.skipped.push(SkippedEntity {
                account_id: left.account_id,
                entity_id: left.entity_id,
                name: info.map(|i| i.name.clone()).unwrap_or_default(),
                address: info.and_then(|i| i.address.clone()),
                reason: left.reason,
            });
        }
        for problem in report.problems {
            let key = (problem.account_id, problem.entity_id);
            if board.entities.contains_key(&key) {
                board.notes.entry(key).or_default().push(problem.message);
            }
        }
        board.refreshed_at = Some(unix_now());
    }

    /// Replaces the jobs with what the scheduler holds now; `bot` describes them when the page
    /// is read.
    pub fn set_jobs<C: Collector>(&self, scheduler: &Scheduler<C::Params>, bot: &Arc<C>) {
        let jobs: Vec<JobRow> = scheduler
            .jobs()
            .map(|(spec, anchor, state)| JobRow {
                spec: spec.clone(),
                anchor,
                state: state.clone(),
            })
            .collect();
        let mut board = self.0.write().unwrap_or_else(|e| e.into_inner());
        board.jobs = jobs;
        board.describer = Some(Describer::of(bot.clone()));
    }

    /// Runs `read` on the board.
    pub fn read<T>(&self, read: impl FnOnce(&Board) -> T) -> T {
        read(&self.0.read().unwrap_or_else(|e| e.into_inner()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn history_keeps_the_last_error_and_bounds_its_size() {
        let cell = RunCell::default();
        let run = |outcome, error: Option<String>| LastRun {
            scheduled: 100,
            started: 100.0,
            finished: 101.0,
            outcome,
            values: 0,
            delivered: Delivered::default(),
            error,
        };
        cell.record(run(Outcome::Failure, Some("é".repeat(MAX_ERROR_BYTES))));
        cell.record(run(Outcome::Success, None));
        let history = cell.history();
        assert_eq!((history.firings, history.unsuccessful), (2, 1));
        assert_eq!(history.last.map(|l| l.outcome), Some(Outcome::Success));
        let (_, kept) = history.last_error.expect("the error stays after recovery");
        assert!(kept.len() <= MAX_ERROR_BYTES + 6 && kept.ends_with(" [cut]"));
    }
}
#[cfg(test)]
mod describe_once {
    use super::*;
    use crate::bot::{Firing, JobError};
    use crate::job::JobSpec;
    use crate::scheduler::{Clock, Scheduler};
    use crate::value::Value;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[derive(Default)]
    struct Counting(AtomicUsize);

    impl Collector for Counting {
        type Params = u64;
        fn protocol(&self) -> &'static str {
            "counting"
        }
        fn jobs(&self, _: &[EntityConfig]) -> Vec<JobSpec<u64>> {
            Vec::new()
        }
        async fn perform(&self, _: &JobSpec<u64>, _: &Firing) -> Result<Vec<Value>, JobError> {
            Ok(Vec::new())
        }
        fn describe(&self, port: &u64) -> Summary {
            self.0.fetch_add(1, Ordering::Relaxed);
            Summary::default().item("port", port)
        }
    }

    fn specs(ports: &[u64]) -> Vec<JobSpec<u64>> {
        (0..ports.len())
            .map(|i| JobSpec::new(i.to_string(), vec![60], ports[i]).entity(i as u64))
            .collect()
    }

    #[tokio::test]
    async fn jobs_are_described_when_the_page_is_read_from_the_scheduler_s_own_specs() {
        let bot = Arc::new(Counting::default());
        let mut scheduler = Scheduler::new(Clock::new());
        let board = StatusBoard::new("counting");
        scheduler.update(specs(&[22, 80, 443]), &HashSet::new());
        board.set_jobs(&scheduler, &bot);
        assert_eq!(
            bot.0.load(Ordering::Relaxed),
            0,
            "nothing described at refresh"
        );
        let held = scheduler
            .jobs()
            .next()
            .map(|(spec, _, _)| spec.clone())
            .unwrap();
        let shared = board.read(|b| {
            b.jobs
                .iter()
                .any(|j| std::ptr::addr_eq(Arc::as_ptr(&j.spec), Arc::as_ptr(&held)))
        });
        assert!(shared, "the page holds the scheduler's spec, not a copy");
        let ports = board.read(|b| {
            let describer = b.describer.as_ref().unwrap();
            let mut ports: Vec<String> = b
                .jobs
                .iter()
                .map(|j| describer.describe(j.spec.as_ref()).0[0].value.clone())
                .collect();
            ports.sort();
            ports
        });
        assert_eq!(ports, vec!["22", "443", "80"]);
        assert_eq!(bot.0.load(Ordering::Relaxed), 3);
    }
}
