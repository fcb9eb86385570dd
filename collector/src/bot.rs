//! The `Collector` trait: the one thing a protocol bot implements.

use crate::backend::BackendClient;
use crate::entity::EntityConfig;
use crate::job::JobSpec;
use crate::metrics::Metrics;
use crate::report::{Check, Event, Findings, Report};
use crate::store::Store;
use crate::value::Value;
use futures::future::BoxFuture;
use std::fmt::Debug;
use std::future::Future;
use tokio_util::sync::CancellationToken;

/// A protocol bot. The framework fetches job configs, calls [`Collector::jobs`] on every refresh,
/// schedules what it returns, calls [`Collector::perform`] on each firing and delivers the values.
pub trait Collector: Send + Sync + 'static {
    /// What a job needs to run; compared on every refresh to decide whether a job changed.
    type Params: Clone + PartialEq + Debug + Send + Sync + 'static;

    /// The protocol key in entities' `protocols` (`"snmp"`, `"ping"`, `"netflow"`).
    fn protocol(&self) -> &'static str;

    /// Turns the job configs of every readable account into job specs. Must be pure and
    /// deterministic: the same configs give the same specs, so unchanged jobs keep their phase.
    fn jobs(&self, configs: &[EntityConfig]) -> Vec<JobSpec<Self::Params>>;

    /// Runs one firing of `job`. `firing.affecting` holds the intervals that fell due at this
    /// firing (contract §5.4); a bot runs only the sensors with one of those intervals.
    /// Returns the values; the framework delivers them.
    fn perform(
        &self,
        job: &JobSpec<Self::Params>,
        firing: &Firing,
    ) -> impl Future<Output = Result<Vec<Value>, JobError>> + Send;

    /// A long-running task for push protocols (the NetFlow listener). Started once the bot is
    /// built; it must return soon after `shutdown` is cancelled.
    fn background(&self, shutdown: CancellationToken) -> Option<BoxFuture<'static, ()>> {
        let _ = shutdown;
        None
    }

    /// The jobs file (TOML, see [`crate::standalone`]) used by `--standalone` without `--jobs`,
    /// so that a new user sees the bot work with one command.
    fn default_jobs(&self) -> Option<&'static str> {
        None
    }
}

/// One firing of a job, as handed to [`Collector::perform`].
#[derive(Debug, Clone)]
pub struct Firing {
    /// The Unix second the firing was due.
    pub scheduled: u64,
    /// The job's intervals that fell due at this second, ascending.
    pub affecting: Vec<u64>,
    /// Where the run reports checks and events (see [`Firing::check`], [`Firing::event`]).
    report: Report,
}

impl PartialEq for Firing {
    fn eq(&self, other: &Firing) -> bool {
        self.scheduled == other.scheduled && self.affecting == other.affecting
    }
}

impl Firing {
    /// A firing due at `scheduled` with the intervals that fell due then.
    pub fn new(scheduled: u64, affecting: Vec<u64>) -> Firing {
        Firing {
            scheduled,
            affecting,
            report: Report::default(),
        }
    }

    /// Reports the outcome of a named check; the framework keeps the alert state
    /// (`ALERT_IF_IN_A_ROW` bad runs fire it, one good run resolves it) and notifies the sinks.
    pub fn check(&self, check: Check) {
        self.report.check(check);
    }

    /// Reports a one-shot event; the framework adds the job's labels and sends it to the sinks.
    pub fn event(&self, event: Event) {
        self.report.event(event);
    }

    /// What the run reported so far (for the executor, and for a bot's own tests).
    pub fn findings(&self) -> Findings {
        self.report.take()
    }

    /// Whether a sensor with this resolved interval runs at this firing.
    pub fn runs(&self, interval: Option<u64>) -> bool {
        interval.is_some_and(|i| self.affecting.contains(&i))
    }
}

/// What the framework hands a bot when building it.
#[derive(Clone)]
pub struct Context {
    /// The embedded store in the data directory, for state that must survive a restart.
    pub store: Store,
    /// The backend, for bots that write entities (SNMP interfaces, NetFlow exporters).
    /// `None` in standalone mode.
    pub backend: Option<BackendClient>,
    /// Where a bot registers its own counters; served with the framework's.
    pub metrics: Metrics,
    /// Cancelled when the process is asked to stop.
    pub shutdown: CancellationToken,
}

/// A job that failed as a whole. Its message is logged with the job id and entity; it must never
/// contain a secret.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{0}")]
pub struct JobError(pub String);

impl JobError {
    pub fn new(message: impl Into<String>) -> Self {
        JobError(message.into())
    }
}

impl From<String> for JobError {
    fn from(message: String) -> Self {
        JobError(message)
    }
}

impl From<&str> for JobError {
    fn from(message: &str) -> Self {
        JobError(message.to_string())
    }
}
