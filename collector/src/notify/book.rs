//! The notifier's thread: applies each run's checks to the alert state and turns state changes
//! and events into notifications, committed to the sinks' outboxes in the same transaction.
//! Runs on its own thread because every commit is a blocking fsync.

use super::alerts::{self, AlertRules, Observation};
use super::notice::{AlertNotice, AlertState, EventNotice, Notice};
use super::outbox::Outbox;
use super::{quiet, Input, NotifyMetrics, RunReport};
use crate::executor::Outcome;
use crate::scheduler::JobState;
use crate::store::Store;
use redb::{ReadableDatabase, ReadableTable};
use serde::Serialize;
use std::collections::HashMap;
use std::io::Write;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

/// Inputs handled in one transaction, at most.
const PER_COMMIT: usize = 256;

/// After a round that emptied the queue, the thread waits this long for more runs to gather:
/// a bot with thousands of firings a second then wakes it tens of times a second, not once per
/// run (each wake-up is a context switch on the bot's core), for at most this much more delay
/// of an alert.
const GATHER: Duration = Duration::from_millis(20);

/// The alert state keeper.
pub struct Book {
    store: Store,
    rules: AlertRules,
    bot: &'static str,
    /// Each sink's outbox, and whether it takes events (Alertmanager takes alerts only).
    outboxes: Vec<(Outbox, bool)>,
    stdout: bool,
    metrics: NotifyMetrics,
    /// Keys with state in the store: a good check of any other key needs no transaction.
    known: KnownKeys,
    events: u64,
}

fn storage(e: impl std::fmt::Display) -> String {
    format!("alert state storage: {e}")
}

/// The keys with alert state in the store and the jobs they belong to, so that a run that says
/// nothing, of a job without state (nearly every run), is passed over without building its
/// labels.
#[derive(Default)]
struct KnownKeys {
    /// Key to job.
    keys: HashMap<String, String>,
    /// Job to the number of its keys.
    jobs: HashMap<String, usize>,
}

impl KnownKeys {
    fn contains(&self, key: &str) -> bool {
        self.keys.contains_key(key)
    }

    fn job_has_state(&self, job: &str) -> bool {
        self.jobs.contains_key(job)
    }

    fn insert(&mut self, key: String, job: String) {
        if let Some(old) = self.keys.insert(key, job.clone()) {
            self.forget_job(&old);
        }
        *self.jobs.entry(job).or_default() += 1;
    }

    fn remove(&mut self, key: &str) {
        if let Some(job) = self.keys.remove(key) {
            self.forget_job(&job);
        }
    }

    fn forget_job(&mut self, job: &str) {
        if let Some(count) = self.jobs.get_mut(job) {
            *count -= 1;
            if *count == 0 {
                self.jobs.remove(job);
            }
        }
    }

    fn clear(&mut self) {
        self.keys.clear();
        self.jobs.clear();
    }
}

impl Book {
    /// Loads the keys of the alert state an earlier run left.
    pub fn open(
        store: Store,
        rules: AlertRules,
        bot: &'static str,
        outboxes: Vec<(Outbox, bool)>,
        stdout: bool,
        metrics: NotifyMetrics,
    ) -> Result<Book, String> {
        let mut book = Book {
            store,
            rules,
            bot,
            outboxes,
            stdout,
            metrics,
            known: KnownKeys::default(),
            events: 0,
        };
        book.reload_keys()?;
        let firing = alerts::firing(book.store.database(), 0.0)?;
        book.metrics.firing.set(firing.len() as i64);
        Ok(book)
    }

    fn reload_keys(&mut self) -> Result<(), String> {
        let db = self.store.database();
        let txn = db.begin_write().map_err(storage)?;
        txn.open_table(alerts::ALERTS).map_err(storage)?;
        txn.commit().map_err(storage)?;
        let txn = db.begin_read().map_err(storage)?;
        let table = txn.open_table(alerts::ALERTS).map_err(storage)?;
        self.known.clear();
        for item in table.iter().map_err(storage)? {
            let (key, record) = item.map_err(storage)?;
            let job = alerts::job_of(record.value()).unwrap_or_default();
            self.known.insert(key.value().to_string(), job);
        }
        Ok(())
    }

    /// Handles inputs until every sender is dropped.
    pub fn run(mut self, mut inputs: mpsc::Receiver<Input>) {
        while let Some(first) = inputs.blocking_recv() {
            let mut batch = vec![first];
            while batch.len() < PER_COMMIT {
                match inputs.try_recv() {
                    Ok(input) => batch.push(input),
                    Err(_) => break,
                }
            }
            let drained = batch.len() < PER_COMMIT;
            if let Err(e) = self.handle(batch) {
                tracing::error!("alerts and events of this round are lost: {e}");
                self.metrics.dropped("notifier", "storage_error", 1);
            }
            if drained {
                std::thread::sleep(GATHER);
            }
        }
    }

    fn observations(&self, run: &RunReport) -> Vec<Observation> {
        let base = run.labels(self.bot);
        let failed = matches!(
            run.outcome,
            Outcome::Failure | Outcome::Timeout | Outcome::Panic
        );
        let mut found = vec![Observation {
            name: "JobFailing".into(),
            labels: base.clone(),
            job: run.job.clone(),
            bad: failed,
            message: run.error.clone().unwrap_or_default(),
            in_a_row: None,
        }];
        for check in &run.findings.checks {
            let mut labels = base.clone();
            if let Some(entity) = check.entity {
                labels.insert("entity".into(), entity.to_string());
                labels.remove("entity_name");
            }
            if let Some(name) = &check.entity_name {
                labels.insert("entity_name".into(), name.clone());
            }
            labels.extend(check.labels.clone());
            found.push(Observation {
                name: check.name.clone(),
                labels,
                job: run.job.clone(),
                bad: check.bad,
                message: check.message.clone(),
                in_a_row: check.in_a_row,
            });
        }
        found
    }

    fn events(&mut self, run: &RunReport, notices: &mut Vec<Notice>) {
        let base = run.labels(self.bot);
        for event in &run.findings.events {
            self.events += 1;
            let mut tags = base.clone();
            if let Some(entity) = event.entity {
                tags.insert("entity".into(), entity.to_string());
                tags.remove("entity_name");
            }
            tags.extend(event.tags.clone());
            notices.push(Notice::Event(EventNotice {
                id: format!("{}-{}-{}", self.bot, (run.end * 1000.0) as u64, self.events),
                status: event.status,
                title: event.title.clone(),
                message: event.message.clone(),
                tags,
                time: run.end,
            }));
        }
    }

    /// Handles a batch of inputs, then tells each reported job's [`AlertMemo`] whether the job
    /// has alert state now.
    ///
    /// [`AlertMemo`]: super::memo::AlertMemo
    fn handle(&mut self, inputs: Vec<Input>) -> Result<(), String> {
        let mut reported = Vec::new();
        let result = self.handle_inputs(inputs, &mut reported);
        for (job, state) in reported {
            let has_state = result.is_ok().then(|| self.known.job_has_state(&job));
            state.alert_memo.handled(has_state);
        }
        result
    }

    fn handle_inputs(
        &mut self,
        inputs: Vec<Input>,
        reported: &mut Vec<(String, Arc<JobState>)>,
    ) -> Result<(), String> {
        let mut notices = Vec::new();
        let mut work = Vec::new();
        let mut jobs = None;
        for input in inputs {
            match input {
                Input::Run(mut run) => {
                    if !quiet(run.outcome, &run.findings) || self.known.job_has_state(&run.job) {
                        self.events(&run, &mut notices);
                        for observation in self.observations(&run) {
                            if observation.bad || self.known.contains(&observation.key()) {
                                work.push((observation, run.end));
                            }
                        }
                    }
                    if let Some(state) = run.state.take() {
                        reported.push((std::mem::take(&mut run.job), state));
                    }
                }
                Input::Jobs(ids, now) => jobs = Some((ids, now)),
            }
        }
        if work.is_empty() && notices.is_empty() && jobs.is_none() {
            return Ok(());
        }
        let txn = self.store.database().begin_write().map_err(storage)?;
        for (observation, now) in &work {
            let notice = alerts::observe(&txn, observation, self.rules, *now)?;
            if observation.bad {
                self.known
                    .insert(observation.key(), observation.job.clone());
            } else {
                self.known.remove(&observation.key());
            }
            notices.extend(notice.map(Notice::Alert));
        }
        if let Some((ids, now)) = &jobs {
            let resolved = alerts::resolve_removed_jobs(&txn, ids, *now)?;
            notices.extend(resolved.into_iter().map(Notice::Alert));
        }
        self.enqueue(&txn, &notices)?;
        txn.commit().map_err(storage)?;
        if jobs.is_some() {
            self.reload_keys()?;
        }
        for (outbox, _) in &self.outboxes {
            outbox.wake();
        }
        for notice in &notices {
            self.announce(notice);
        }
        Ok(())
    }

    /// Adds committed-to-be notifications to the outboxes of the sinks that take them.
    fn enqueue(&self, txn: &redb::WriteTransaction, notices: &[Notice]) -> Result<(), String> {
        for notice in notices {
            for (outbox, takes_events) in &self.outboxes {
                if matches!(notice, Notice::Event(_)) && !takes_events {
                    continue;
                }
                let dropped = outbox.push(txn, notice)?;
                if dropped > 0 {
                    tracing::warn!(
                        sink = outbox.name(),
                        dropped,
                        "outbox full: oldest notifications dropped"
                    );
                    self.metrics.dropped(outbox.name(), "outbox_full", dropped);
                }
            }
        }
        Ok(())
    }

    /// Counts, logs and (standalone) prints a committed notification.
    fn announce(&self, notice: &Notice) {
        match notice {
            Notice::Alert(alert) => log_alert(alert, &self.metrics),
            Notice::Event(event) => {
                self.metrics.event(event.status.as_str());
                tracing::info!(title = %event.title, status = event.status.as_str(), "event: {}", event.message);
            }
        }
        if self.stdout {
            print_line(notice);
        }
    }
}

fn log_alert(alert: &AlertNotice, metrics: &NotifyMetrics) {
    match (alert.state, alert.renotify) {
        (AlertState::Firing, false) => {
            metrics.change("firing");
            metrics.firing.inc();
            tracing::warn!(alert = %alert.name, labels = ?alert.labels, "alert firing: {}", alert.description);
        }
        (AlertState::Firing, true) => {
            tracing::warn!(alert = %alert.name, labels = ?alert.labels, "alert still firing: {}", alert.description);
        }
        (AlertState::Resolved, _) => {
            metrics.change("resolved");
            metrics.firing.dec();
            tracing::info!(alert = %alert.name, labels = ?alert.labels, "alert resolved");
        }
    }
}

/// One JSON line on stdout: `{"alert": {...}}` or `{"event": {...}}`, beside the values' `{"p"...}`.
fn print_line(notice: &impl Serialize) {
    if let Ok(json) = serde_json::to_string(notice) {
        let mut stdout = std::io::stdout().lock();
        let _ = writeln!(stdout, "{json}").and_then(|_| stdout.flush());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::{Check, Event, EventStatus, Findings};

    fn run(outcome: Outcome, end: f64, findings: Findings) -> Input {
        Input::Run(Box::new(RunReport {
            job: "42".into(),
            entity: Some(42),
            entity_name: Some("router".into()),
            account: Some(1),
            outcome,
            error: (outcome != Outcome::Success).then(|| "job failed: device said no".into()),
            findings,
            trigger: end as u64,
            start: end,
            end,
            state: None,
        }))
    }

    fn waiting(outbox: &Outbox) -> Vec<Notice> {
        outbox.oldest(100).unwrap().1
    }

    #[test]
    fn the_memo_of_a_job_follows_its_alert_state() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), "state").unwrap();
        let rules = AlertRules {
            if_in_a_row: 1,
            renotify: 0,
        };
        let mut book = Book::open(
            store,
            rules,
            "ping",
            Vec::new(),
            false,
            NotifyMetrics::default(),
        )
        .unwrap();
        let state = Arc::new(JobState::default());
        let memo = &state.alert_memo;
        let reported = |outcome, end| {
            state.alert_memo.reporting();
            let Input::Run(mut report) = run(outcome, end, Findings::default()) else {
                unreachable!()
            };
            report.state = Some(state.clone());
            Input::Run(report)
        };
        book.handle(vec![reported(Outcome::Success, 10.0)]).unwrap();
        assert!(
            memo.quiet_run_needs_no_report(),
            "no state after a quiet run"
        );
        book.handle(vec![reported(Outcome::Failure, 20.0)]).unwrap();
        assert!(!memo.quiet_run_needs_no_report(), "JobFailing fired: state");
        book.handle(vec![reported(Outcome::Success, 30.0)]).unwrap();
        assert!(memo.quiet_run_needs_no_report(), "resolved: no state");
    }

    #[test]
    fn failing_runs_fire_job_failing_and_events_carry_the_job_labels() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), "state").unwrap();
        let webhook = Outbox::new(store.clone(), "webhook", "outbox_webhook");
        let alertmanager = Outbox::new(store.clone(), "alertmanager", "outbox_alertmanager");
        let rules = AlertRules {
            if_in_a_row: 2,
            renotify: 0,
        };
        let outboxes = vec![(webhook.clone(), true), (alertmanager.clone(), false)];
        let mut book = Book::open(
            store,
            rules,
            "snmp",
            outboxes,
            false,
            NotifyMetrics::default(),
        )
        .unwrap();
        let event = Event::new(
            EventStatus::Warning,
            "agent restarted",
            "sysUpTime went back",
        )
        .tag("address", "10.0.0.1");
        let findings = Findings {
            checks: vec![Check::good("SnmpAgentUnreachable")],
            events: vec![event],
        };
        book.handle(vec![run(Outcome::Failure, 10.0, findings)])
            .unwrap();
        book.handle(vec![run(Outcome::Timeout, 20.0, Findings::default())])
            .unwrap();
        book.handle(vec![run(Outcome::Success, 30.0, Findings::default())])
            .unwrap();

        let sent = waiting(&webhook);
        assert_eq!(sent.len(), 3, "{sent:#?}");
        let Notice::Event(event) = &sent[0] else {
            panic!("{sent:#?}")
        };
        assert_eq!(event.status, EventStatus::Warning);
        assert_eq!(event.tags["bot"], "snmp");
        assert_eq!(event.tags["entity_name"], "router");
        assert_eq!(event.tags["address"], "10.0.0.1");
        let Notice::Alert(fired) = &sent[1] else {
            panic!("{sent:#?}")
        };
        assert_eq!(
            (fired.name.as_str(), fired.state),
            ("JobFailing", AlertState::Firing)
        );
        assert_eq!(fired.starts_at, 20.0, "fires at the second bad run");
        assert_eq!(fired.labels["account"], "1");
        let Notice::Alert(resolved) = &sent[2] else {
            panic!("{sent:#?}")
        };
        assert_eq!(resolved.state, AlertState::Resolved);
        assert_eq!(resolved.ends_at, Some(30.0));
        assert_eq!(
            waiting(&alertmanager).len(),
            2,
            "Alertmanager takes alerts only"
        );

        book.handle(vec![run(Outcome::Panic, 40.0, Findings::default())])
            .unwrap();
        book.handle(vec![run(Outcome::Panic, 50.0, Findings::default())])
            .unwrap();
        book.handle(vec![Input::Jobs(std::collections::HashSet::new(), 60.0)])
            .unwrap();
        let sent = waiting(&webhook);
        let states: Vec<_> = sent[3..]
            .iter()
            .map(|n| match n {
                Notice::Alert(a) => a.state,
                Notice::Event(_) => panic!("no event expected"),
            })
            .collect();
        assert_eq!(
            states,
            [AlertState::Firing, AlertState::Resolved],
            "a removed job resolves"
        );
    }
}
