//! The `Collector` trait: the one thing a protocol bot implements.

use crate::backend::BackendClient;
use crate::entity::EntityConfig;
use crate::job::JobSpec;
use crate::metrics::Metrics;
use crate::report::{Check, Event, Findings, Report};
use crate::status::{LeftOut, Summary};
use crate::store::Store;
use crate::value::Value;
use futures::future::BoxFuture;
use std::collections::HashSet;
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

    /// Whether an entity needs a credential for this protocol to be polled (the Grafolean
    /// rule). A protocol with nothing secret (an HTTP check) returns `false`: its entities then
    /// need only sensors, and [`EntityConfig::credential_details`] is `null` without one.
    fn needs_credential(&self) -> bool {
        true
    }

    /// Turns the job configs of every readable account into job specs. Must be pure and
    /// deterministic: the same configs give the same specs, so unchanged jobs keep their phase.
    fn jobs(&self, configs: &[EntityConfig]) -> Vec<JobSpec<Self::Params>>;

    /// [`Collector::jobs`] for configs the framework has no further use for, which is how a
    /// refresh calls it. A bot that makes each entity's jobs from its config alone can drop
    /// each config once its jobs are made: a refresh of 10,000 entities then never holds all
    /// their configs (about 0.9 KB each) beside all their jobs. Must give what `jobs` gives.
    fn jobs_from(&self, configs: Vec<EntityConfig>) -> Vec<JobSpec<Self::Params>> {
        self.jobs(&configs)
    }

    /// Called on every successful refresh, before [`Collector::jobs_from`], with the same
    /// configs and the accounts that could not be read (whose jobs are kept). For state that
    /// must follow the configs as soon as they are known rather than when a job runs (the
    /// NetFlow listener's set of exporters).
    fn configs_refreshed(&self, configs: &[EntityConfig], unreadable: &HashSet<u64>) {
        let _ = (configs, unreadable);
    }

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

    /// Job starts a second beyond which a run would only wait inside the bot (the ping engine's
    /// send rate). The framework then starts runs at that pace, so that firings due together
    /// wait as small queue entries rather than as run tasks holding their whole futures.
    /// `JOB_MAX_STARTS_PER_SECOND`, when set, wins.
    fn max_starts_per_second(&self) -> Option<u32> {
        None
    }

    /// The jobs file (TOML, see [`crate::standalone`]) used by `--standalone` without `--jobs`,
    /// so that a new user sees the bot work with one command.
    fn default_jobs(&self) -> Option<&'static str> {
        None
    }

    /// What a job does, in the protocol's terms, for the status page (`/jobs`): sensors and
    /// OIDs, packets and timeout, exporters and window. Never a secret.
    fn describe(&self, params: &Self::Params) -> Summary {
        let _ = params;
        Summary::default()
    }

    /// Entities of `configs` that [`Collector::jobs`] makes no job for, with the reason, so the
    /// status page can answer "why is this device not polled". Pure, like `jobs`.
    fn left_out(&self, configs: &[EntityConfig]) -> Vec<LeftOut> {
        let _ = configs;
        Vec::new()
    }
}

/// The intervals of a job that fell due together: inline up to four, so that handing out a
/// firing allocates nothing for them.
pub type Intervals = smallvec::SmallVec<[u64; 4]>;

/// One firing of a job, as handed to [`Collector::perform`]. Not `Clone`: the futures of a run
/// borrow it, and what they report goes to this one firing.
#[derive(Debug)]
pub struct Firing {
    /// The Unix second the firing was due.
    pub scheduled: u64,
    /// The job's intervals that fell due at this second, ascending.
    pub affecting: Intervals,
    /// Where the run reports checks and events (see [`Firing::check`], [`Firing::event`]).
    report: Report,
    /// See [`Firing::good_checks_read`].
    good_checks_read: bool,
}

impl PartialEq for Firing {
    fn eq(&self, other: &Firing) -> bool {
        self.scheduled == other.scheduled && self.affecting == other.affecting
    }
}

impl Firing {
    /// A firing due at `scheduled` with the intervals that fell due then.
    pub fn new(scheduled: u64, affecting: impl Into<Intervals>) -> Firing {
        Firing {
            scheduled,
            affecting: affecting.into(),
            report: Report::default(),
            good_checks_read: true,
        }
    }

    /// Whether a good check of this run would be read. It is not when the job has no alert
    /// open or on its way and no sink takes every run (DataKit's task records): a run that
    /// succeeded with only good checks is then passed over whole. A bot whose checks cost
    /// something to build (labels, messages) may skip the good ones then; bad checks are
    /// always read. `true` for a firing the framework did not hand out.
    pub fn good_checks_read(&self) -> bool {
        self.good_checks_read
    }

    pub(crate) fn set_good_checks_read(&mut self, read: bool) {
        self.good_checks_read = read;
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

    /// [`Firing::findings`] once the run is over, when nothing can report any more.
    pub(crate) fn take_findings(&mut self) -> Findings {
        self.report.take_mut()
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
    /// This process's place among the bot's replicas, for bots that narrow jobs down themselves
    /// ([`crate::job::Placement::EveryMember`]).
    pub cluster: crate::cluster::Membership,
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

/// Why a bot could not be built; it decides the exit code. A plain message (from a `String`) is a
/// fault of the environment (exit 1: e.g. no ICMP permission); [`StartError::bad_setting`] is a
/// setting the user must change (exit 2: e.g. a UDP port another process holds).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{message}")]
pub struct StartError {
    message: String,
    bad_setting: bool,
}

impl StartError {
    /// A setting the user must change: the bot exits with code 2, as for any bad setting.
    pub fn bad_setting(message: impl Into<String>) -> Self {
        StartError {
            message: message.into(),
            bad_setting: true,
        }
    }

    /// The process exit code this failure ends the bot with.
    pub fn exit_code(&self) -> u8 {
        if self.bad_setting {
            2
        } else {
            1
        }
    }
}

impl From<String> for StartError {
    fn from(message: String) -> Self {
        StartError {
            message,
            bad_setting: false,
        }
    }
}

impl From<&str> for StartError {
    fn from(message: &str) -> Self {
        StartError::from(message.to_string())
    }
}
