//! Job specs: what a bot wants run, how often, and with which parameters.

/// When a job's timer starts counting (contract §5.4). Firings happen at `anchor + k * interval`
/// for k >= 1 and every interval of the job.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Anchor {
    /// The second the job is (re)created: the first firing is one smallest interval later.
    #[default]
    Created,
    /// A fixed Unix time in seconds, e.g. `50` for "every hour at xx:00:50 UTC". A future anchor
    /// is replaced by the creation time, as in the original.
    Unix(u64),
    /// The first firing happens this many seconds after (re)creation, then every interval
    /// (the NetFlow aggregation jobs' "first run after 15 s, then every 15 min").
    FirstAfter(u64),
}

/// Which members of a cluster (`CLUSTER_MEMBERS` > 1) run a job; see [`crate::cluster`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Placement {
    /// The members rendezvous hashing picks for the job's entity (or, without one, its id).
    #[default]
    Owners,
    /// Every member: the bot narrows the job down itself (NetFlow's windows report only the
    /// exporters this member owns).
    EveryMember,
}

/// One job a bot wants scheduled. Produced by [`crate::Collector::jobs`]; the scheduler keeps a
/// job's timer as long as a refresh yields the same id with equal `intervals`, `anchor` and `params`.
#[derive(Debug, Clone, PartialEq)]
pub struct JobSpec<P> {
    /// Stable identity, e.g. `"1348300224"` or `"1348300224-interfaces"` (contract §5.5).
    pub id: String,
    /// Whole-second intervals; duplicates are merged, zeros ignored.
    pub intervals: Vec<u64>,
    pub anchor: Anchor,
    /// The account whose values this job produces: its values are posted there, and while that
    /// account cannot be fetched the job is kept as it was.
    pub account_id: Option<u64>,
    /// The entity the job is about, named in every log line of the job.
    pub entity_id: Option<u64>,
    /// The entity's name, shown with alerts and events about it.
    pub entity_name: Option<String>,
    /// Whatever the bot needs to perform the job.
    pub params: P,
    /// Which cluster members run it.
    pub placement: Placement,
}

impl<P> JobSpec<P> {
    /// A job anchored at its creation, the common case.
    pub fn new(id: impl Into<String>, intervals: Vec<u64>, params: P) -> Self {
        JobSpec {
            id: id.into(),
            intervals,
            anchor: Anchor::Created,
            account_id: None,
            entity_id: None,
            entity_name: None,
            params,
            placement: Placement::Owners,
        }
    }

    /// Sets the account the job's values belong to.
    pub fn account(mut self, account_id: u64) -> Self {
        self.account_id = Some(account_id);
        self
    }

    /// Sets the entity the job is about.
    pub fn entity(mut self, entity_id: u64) -> Self {
        self.entity_id = Some(entity_id);
        self
    }

    /// Sets the entity's name (for alerts and events).
    pub fn entity_name(mut self, name: impl Into<String>) -> Self {
        self.entity_name = Some(name.into());
        self
    }

    /// Sets the anchor.
    pub fn anchored(mut self, anchor: Anchor) -> Self {
        self.anchor = anchor;
        self
    }

    /// Runs the job on every cluster member instead of its owners only.
    pub fn on_every_member(mut self) -> Self {
        self.placement = Placement::EveryMember;
        self
    }

    /// What rendezvous hashing assigns the job by: its entity, so that all jobs of one entity
    /// (SNMP polling and interface sync) land on the same member; else its id.
    pub fn assignment_key(&self) -> String {
        match self.entity_id {
            Some(entity) => entity.to_string(),
            None => self.id.clone(),
        }
    }

    /// The smallest non-zero interval, or `None` for a job that can never fire.
    pub fn min_interval(&self) -> Option<u64> {
        self.intervals.iter().copied().filter(|&i| i > 0).min()
    }
}
