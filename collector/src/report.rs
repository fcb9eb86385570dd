//! What a run reports besides its values: the outcome of named checks (good or bad, the framework
//! turns them into alerts that fire and recover) and one-shot events. A bot reports through the
//! [`Firing`](crate::Firing) it is given, so `Collector::perform` keeps its signature.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::Mutex;

/// The outcome of one named check about an entity at one run, e.g. `PingHostDown` bad with
/// "no packet of 3 answered". The framework keeps alert state per (name, entity, labels).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Check {
    /// The alert name (`PingHostDown`); CamelCase as Prometheus alert names are.
    pub name: String,
    /// Whether the checked condition is bad (the alert's condition holds).
    pub bad: bool,
    /// What was seen, for humans (the alert's description).
    pub message: String,
    /// The entity the check is about, when not the job's own (a NetFlow exporter).
    pub entity: Option<u64>,
    /// Its name, when `entity` is set.
    pub entity_name: Option<String>,
    /// Extra labels (`address`, `port`); they are part of the alert's identity.
    pub labels: BTreeMap<String, String>,
    /// Bad runs in a row before this alert fires, when the check has its own rule
    /// (otherwise `ALERT_IF_IN_A_ROW`).
    pub in_a_row: Option<u32>,
}

impl Check {
    /// The condition holds: counts towards firing the alert.
    pub fn bad(name: impl Into<String>, message: impl Into<String>) -> Check {
        Check {
            name: name.into(),
            bad: true,
            message: message.into(),
            entity: None,
            entity_name: None,
            labels: BTreeMap::new(),
            in_a_row: None,
        }
    }

    /// The condition does not hold: a firing alert recovers.
    pub fn good(name: impl Into<String>) -> Check {
        Check {
            bad: false,
            ..Check::bad(name, "")
        }
    }

    /// Adds a label (kept in the alert's identity and shown on every sink).
    pub fn label(mut self, name: impl Into<String>, value: impl Into<String>) -> Check {
        self.labels.insert(name.into(), value.into());
        self
    }

    /// Fires after `n` bad runs in a row instead of `ALERT_IF_IN_A_ROW` (a check whose runs
    /// mean "one more silent minute").
    pub fn in_a_row(mut self, n: u32) -> Check {
        self.in_a_row = Some(n);
        self
    }

    /// Says the check is about another entity than the job's (id and name).
    pub fn about(mut self, entity: u64, entity_name: impl Into<String>) -> Check {
        self.entity = Some(entity);
        self.entity_name = Some(entity_name.into());
        self
    }
}

/// How serious an event is; DataFlux Func's and DataKit's `status` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EventStatus {
    Ok,
    Info,
    Warning,
    Error,
    Critical,
}

impl EventStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            EventStatus::Ok => "ok",
            EventStatus::Info => "info",
            EventStatus::Warning => "warning",
            EventStatus::Error => "error",
            EventStatus::Critical => "critical",
        }
    }
}

/// A one-shot event ("the agent restarted", "interface eth3 appeared"): sent once, no state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    pub status: EventStatus,
    pub title: String,
    pub message: String,
    /// Tags (DataFlux's `dimension_tags`); the framework adds bot, job, entity, account.
    pub tags: BTreeMap<String, String>,
    /// The entity the event is about, when not the job's own.
    pub entity: Option<u64>,
}

impl Event {
    pub fn new(status: EventStatus, title: impl Into<String>, message: impl Into<String>) -> Event {
        Event {
            status,
            title: title.into(),
            message: message.into(),
            tags: BTreeMap::new(),
            entity: None,
        }
    }

    /// Adds a tag.
    pub fn tag(mut self, name: impl Into<String>, value: impl Into<String>) -> Event {
        self.tags.insert(name.into(), value.into());
        self
    }

    /// Says the event is about another entity than the job's.
    pub fn about(mut self, entity: u64) -> Event {
        self.entity = Some(entity);
        self
    }
}

/// What one run reported; collected by the executor after the run.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Findings {
    pub checks: Vec<Check>,
    pub events: Vec<Event>,
}

impl Findings {
    /// Whether a run found nothing to tell: no event and only good checks.
    pub fn says_nothing(&self) -> bool {
        self.events.is_empty() && self.checks.iter().all(|check| !check.bad)
    }
}

/// The place a run's checks and events are written to (a run may report from several futures
/// at once, so it is behind a lock held only for a push). It lives inside the [`Firing`] the
/// futures borrow, so no firing pays for a shared allocation; what is reported is boxed, as few
/// runs report anything and the firing is part of every run's task.
///
/// [`Firing`]: crate::Firing
#[derive(Debug, Default)]
pub struct Report(Mutex<Option<Box<Findings>>>);

impl Report {
    pub fn check(&self, check: Check) {
        if let Ok(mut findings) = self.0.lock() {
            findings.get_or_insert_default().checks.push(check);
        }
    }

    pub fn event(&self, event: Event) {
        if let Ok(mut findings) = self.0.lock() {
            findings.get_or_insert_default().events.push(event);
        }
    }

    /// Takes what was reported so far.
    pub fn take(&self) -> Findings {
        self.0
            .lock()
            .map(|mut findings| unboxed(findings.take()))
            .unwrap_or_default()
    }

    /// Takes what was reported, without the lock: nothing else can be reporting.
    pub fn take_mut(&mut self) -> Findings {
        let findings = self.0.get_mut().unwrap_or_else(|p| p.into_inner());
        unboxed(findings.take())
    }
}

fn unboxed(findings: Option<Box<Findings>>) -> Findings {
    findings.map(|boxed| *boxed).unwrap_or_default()
}
