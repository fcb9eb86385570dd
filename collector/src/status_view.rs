//! What the status page shows: the registry's jobs grouped by account and entity, with the
//! entities left out, filtered (account, entity, state), sorted failing first and cut into
//! pages. Served as `/jobs.json` and rendered as `/jobs`.

use crate::status::{Board, Delivered, Describer, JobRow, RunHistory, SkippedEntity, Summary};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet, HashMap};

/// Job and entity states, most urgent first: the page's sort order. A job that has not run
/// yet (`pending`) comes last, so an entity whose jobs work shows as `success` meanwhile.
pub const STATES: [&str; 7] = [
    "failure", "timeout", "panic", "skip", "left_out", "success", "pending",
];

/// The `state` filter that selects every failed run (failure, timeout, panic).
pub const FAILING: &str = "failing";

/// Entities per page unless `per_page` says otherwise.
pub const DEFAULT_PER_PAGE: usize = 100;
/// The largest page served, so one request stays cheap at any number of jobs.
pub const MAX_PER_PAGE: usize = 1000;

/// The query string of `/jobs` and `/jobs.json`; every field is optional and an empty one means
/// "any" (what an HTML form sends).
#[derive(Debug, Default, Clone, Deserialize)]
pub struct StatusQuery {
    pub account: Option<String>,
    pub entity: Option<String>,
    pub state: Option<String>,
    pub page: Option<String>,
    pub per_page: Option<String>,
}

/// A parsed [`StatusQuery`].
#[derive(Debug, Default, Clone, PartialEq, Serialize)]
pub struct Filter {
    pub account: Option<u64>,
    /// Part of an entity's name, id or address, any case.
    pub entity: Option<String>,
    /// One of [`STATES`] or [`FAILING`].
    pub state: Option<String>,
    pub page: usize,
    pub per_page: usize,
}

fn non_empty(value: &Option<String>) -> Option<&str> {
    value.as_deref().map(str::trim).filter(|v| !v.is_empty())
}

impl StatusQuery {
    /// The filter, or a message naming the parameter that is wrong.
    pub fn parse(&self) -> Result<Filter, String> {
        let number = |name: &str, value: &Option<String>| -> Result<Option<u64>, String> {
            non_empty(value)
                .map(|v| {
                    v.parse::<u64>()
                        .map_err(|_| format!("{name} must be a whole number, not {v:?}"))
                })
                .transpose()
        };
        let state = non_empty(&self.state).map(str::to_string);
        if let Some(state) = &state {
            if state != FAILING && !STATES.contains(&state.as_str()) {
                return Err(format!(
                    "state must be one of {FAILING}, {}; not {state:?}",
                    STATES.join(", ")
                ));
            }
        }
        let per_page = number("per_page", &self.per_page)?
            .map_or(DEFAULT_PER_PAGE, |n| n as usize)
            .clamp(1, MAX_PER_PAGE);
        Ok(Filter {
            account: number("account", &self.account)?,
            entity: non_empty(&self.entity).map(str::to_lowercase),
            state,
            page: number("page", &self.page)?.map_or(1, |n| n.max(1) as usize),
            per_page,
        })
    }
}

/// The most recent error of a job, kept after it recovers.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ErrorView {
    pub at: f64,
    pub message: String,
}

/// One job on the page.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct JobView {
    pub id: String,
    pub intervals: Vec<u64>,
    pub summary: Summary,
    /// The last firing's outcome, or `pending` before the first one.
    pub state: &'static str,
    /// The Unix second the last firing was due.
    pub last_firing: Option<u64>,
    pub run_cost: Option<f64>,
    pub wait_cost: Option<f64>,
    /// Values the last firing handed to delivery.
    pub values: Option<usize>,
    /// What became of them: accepted by the backend, spooled, dropped.
    pub delivered: Option<Delivered>,
    /// The last firing's error in full.
    pub error: Option<String>,
    pub last_error: Option<ErrorView>,
    pub firings: u64,
    pub unsuccessful: u64,
    pub next_due: Option<u64>,
}

/// One entity (or the account- or bot-wide jobs, without entity) on the page.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EntityView {
    pub account_id: Option<u64>,
    pub entity_id: Option<u64>,
    pub name: Option<String>,
    pub address: Option<String>,
    /// The most urgent state of its jobs, or `left_out`.
    pub state: &'static str,
    /// Why the entity gets no job.
    pub left_out: Option<String>,
    /// Problems that cost part of the entity (a sensor that does not exist...).
    pub notes: Vec<String>,
    /// Alerts firing now about the entity.
    pub alerts: Vec<AlertView>,
    pub jobs: Vec<JobView>,
}

/// An alert firing about an entity (see `crate::notify`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AlertView {
    /// The check's name (`PingHostDown`).
    pub name: String,
    /// Unix time it fired.
    pub since: f64,
    /// The message of the last bad check.
    pub message: String,
}

/// Firing alerts by (account, entity), from the alert notices' labels.
pub type FiringAlerts = HashMap<(u64, u64), Vec<AlertView>>;

/// Groups firing alerts by the account and entity their labels name.
pub fn alerts_by_entity(notices: Vec<crate::notify::notice::AlertNotice>) -> FiringAlerts {
    let mut by_entity: FiringAlerts = HashMap::new();
    for notice in notices {
        let label = |name: &str| notice.labels.get(name).and_then(|v| v.parse::<u64>().ok());
        if let (Some(account), Some(entity)) = (label("account"), label("entity")) {
            by_entity
                .entry((account, entity))
                .or_default()
                .push(AlertView {
                    name: notice.name.clone(),
                    since: notice.starts_at,
                    message: notice.description.clone(),
                });
        }
    }
    for alerts in by_entity.values_mut() {
        alerts.sort_by(|a, b| a.name.cmp(&b.name));
    }
    by_entity
}

/// The whole answer of `/jobs.json`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StatusView {
    pub protocol: &'static str,
    pub generated_at: f64,
    pub last_refresh: Option<f64>,
    /// Scheduled jobs, all pages.
    pub jobs: usize,
    /// Jobs per state, plus `left_out` entities, all pages.
    pub states: BTreeMap<&'static str, usize>,
    /// Every account with a job or a left-out entity, for the account filter.
    pub accounts: Vec<u64>,
    pub filter: Filter,
    /// Entities that match the filter, all pages.
    pub matching: usize,
    pub page: usize,
    pub pages: usize,
    pub entities: Vec<EntityView>,
}

/// Rank of a state in [`STATES`]: lower is more urgent.
fn rank(state: &str) -> usize {
    STATES
        .iter()
        .position(|s| *s == state)
        .unwrap_or(STATES.len())
}

fn job_state(history: &RunHistory) -> &'static str {
    history
        .last
        .as_ref()
        .map_or("pending", |l| l.outcome.as_str())
}

fn state_matches(filter: &Option<String>, state: &str) -> bool {
    match filter.as_deref() {
        None => true,
        Some(FAILING) => matches!(state, "failure" | "timeout" | "panic"),
        Some(wanted) => wanted == state,
    }
}

type GroupKey = (Option<u64>, Option<u64>);

/// An entity's jobs (with a copy of their run history) and left-out records, before the page
/// is cut; only the entities on the page become [`EntityView`]s.
#[derive(Default)]
struct Group<'a> {
    jobs: Vec<(&'a JobRow, RunHistory)>,
    left_out: Vec<&'a SkippedEntity>,
    state: &'static str,
}

/// Builds the page `filter` asks for from the board, at Unix time `now`.
pub fn build(board: &Board, filter: Filter, alerts: &FiringAlerts, now: f64) -> StatusView {
    let mut groups: HashMap<GroupKey, Group> = HashMap::new();
    let mut states: BTreeMap<&'static str, usize> = STATES.iter().map(|s| (*s, 0)).collect();
    for row in &board.jobs {
        let history = row.state.runs.history();
        *states.entry(job_state(&history)).or_default() += 1;
        let group = groups
            .entry((row.spec.account_id(), row.spec.entity_id()))
            .or_default();
        group.jobs.push((row, history));
    }
    for skipped in &board.skipped {
        let key = (Some(skipped.account_id), Some(skipped.entity_id));
        groups.entry(key).or_default().left_out.push(skipped);
    }
    let accounts: BTreeSet<u64> = groups.keys().filter_map(|(a, _)| *a).collect();
    for group in groups.values_mut() {
        group.state = group
            .jobs
            .iter()
            .map(|(_, h)| job_state(h))
            .chain((!group.left_out.is_empty()).then_some("left_out"))
            .min_by_key(|s| rank(s))
            .unwrap_or("pending");
    }
    *states.entry("left_out").or_default() += groups
        .values()
        .filter(|g| g.jobs.is_empty() && !g.left_out.is_empty())
        .count();

    let mut shown: Vec<(GroupKey, Group)> = groups
        .into_iter()
        .filter(|(key, group)| group_matches(board, &filter, *key, group))
        .collect();
    shown.sort_by_key(|(key, group)| (rank(group.state), *key));
    let matching = shown.len();
    let pages = matching.div_ceil(filter.per_page).max(1);
    let page = filter.page.min(pages);
    let now_secs = now.floor() as u64;
    let entities = shown
        .into_iter()
        .skip((page - 1) * filter.per_page)
        .take(filter.per_page)
        .map(|(key, group)| entity_view(board, &filter, alerts, key, group, now_secs))
        .collect();
    StatusView {
        protocol: board.protocol,
        generated_at: now,
        last_refresh: board.refreshed_at,
        jobs: board.jobs.len(),
        states,
        accounts: accounts.into_iter().collect(),
        filter: Filter { page, ..filter },
        matching,
        page,
        pages,
        entities,
    }
}

/// Name and address of a group's entity, from its configs or its left-out record.
fn identity(board: &Board, key: GroupKey, group: &Group) -> (Option<String>, Option<String>) {
    if let (Some(a), Some(e)) = key {
        if let Some(info) = board.entities.get(&(a, e)) {
            return (Some(info.name.clone()), info.address.clone());
        }
    }
    match group.left_out.first() {
        Some(s) => (Some(s.name.clone()), s.address.clone()),
        None => (None, None),
    }
}

fn group_matches(board: &Board, filter: &Filter, key: GroupKey, group: &Group) -> bool {
    if filter.account.is_some() && key.0 != filter.account {
        return false;
    }
    if let Some(text) = &filter.entity {
        let (name, address) = identity(board, key, group);
        let id = key.1.map(|e| e.to_string());
        let found = [name, address, id]
            .into_iter()
            .flatten()
            .any(|field| field.to_lowercase().contains(text.as_str()));
        if !found {
            return false;
        }
    }
    group
        .jobs
        .iter()
        .any(|(_, h)| state_matches(&filter.state, job_state(h)))
        || (!group.left_out.is_empty() && state_matches(&filter.state, "left_out"))
}

fn entity_view(
    board: &Board,
    filter: &Filter,
    alerts: &FiringAlerts,
    key: GroupKey,
    group: Group,
    now: u64,
) -> EntityView {
    let (name, address) = identity(board, key, &group);
    let notes = match key {
        (Some(a), Some(e)) => board.notes.get(&(a, e)).cloned().unwrap_or_default(),
        _ => Vec::new(),
    };
    let firing = match key {
        (Some(a), Some(e)) => alerts.get(&(a, e)).cloned().unwrap_or_default(),
        _ => Vec::new(),
    };
    let left_out = (!group.left_out.is_empty()).then(|| {
        let reasons: Vec<&str> = group.left_out.iter().map(|s| s.reason.as_str()).collect();
        reasons.join("; ")
    });
    let mut jobs: Vec<JobView> = group
        .jobs
        .into_iter()
        .filter(|(_, h)| state_matches(&filter.state, job_state(h)))
        .map(|(row, history)| job_view(row, history, board.describer.as_ref(), now))
        .collect();
    jobs.sort_by(|a, b| a.id.cmp(&b.id));
    EntityView {
        account_id: key.0,
        entity_id: key.1,
        name,
        address,
        state: group.state,
        left_out,
        notes,
        alerts: firing,
        jobs,
    }
}

fn job_view(row: &JobRow, history: RunHistory, describer: Option<&Describer>, now: u64) -> JobView {
    let state = job_state(&history);
    let last = history.last.as_ref();
    JobView {
        id: row.spec.id().to_string(),
        intervals: row.spec.intervals().to_vec(),
        summary: describer
            .map(|d| d.describe(row.spec.as_ref()))
            .unwrap_or_default(),
        state,
        last_firing: last.map(|l| l.scheduled),
        run_cost: last.map(|l| (l.finished - l.started).max(0.0)),
        wait_cost: last.map(|l| (l.started - l.scheduled as f64).max(0.0)),
        values: last.map(|l| l.values),
        delivered: last.map(|l| l.delivered),
        error: last.and_then(|l| l.error.clone()),
        last_error: history
            .last_error
            .map(|(at, message)| ErrorView { at, message }),
        firings: history.firings,
        unsuccessful: history.unsuccessful,
        next_due: row.next_due(now),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::executor::Outcome;
    use crate::scheduler::JobState;
    use crate::status::{EntityInfo, JobRow, LastRun};
    use crate::JobSpec;
    use std::sync::Arc;

    fn row(account: u64, entity: u64, id: &str, outcome: Option<Outcome>) -> JobRow {
        let state = Arc::new(JobState::default());
        if let Some(outcome) = outcome {
            let error = (outcome != Outcome::Success).then(|| format!("{id} went wrong"));
            state.runs.record(LastRun {
                scheduled: 1000,
                started: 1000.5,
                finished: 1002.0,
                outcome,
                values: 3,
                delivered: Delivered::default(),
                error,
            });
        }
        let spec = JobSpec::new(id, vec![60], "192.0.2.1")
            .account(account)
            .entity(entity);
        JobRow {
            spec: Arc::new(spec),
            anchor: 940,
            state,
        }
    }

    fn board() -> Board {
        let mut board = Board {
            protocol: "ping",
            ..Board::default()
        };
        board.jobs = vec![
            row(1, 10, "10", Some(Outcome::Success)),
            row(1, 11, "11", Some(Outcome::Failure)),
            row(2, 20, "20", None),
            row(2, 21, "21", Some(Outcome::Timeout)),
            row(2, 21, "21-interfaces", Some(Outcome::Success)),
        ];
        for (a, e, name) in [
            (1, 10, "core-router"),
            (1, 11, "Edge"),
            (2, 20, "new"),
            (2, 21, "slow"),
        ] {
            let address = Some(format!("192.0.2.{e}"));
            let name = name.to_string();
            board.entities.insert((a, e), EntityInfo { name, address });
        }
        board.skipped.push(SkippedEntity {
            account_id: 1,
            entity_id: 12,
            name: "no credential".into(),
            address: None,
            reason: "no ping credential chosen".into(),
        });
        board
            .notes
            .insert((1, 10), vec!["sensor 5 is missing".into()]);
        board
    }

    fn query(pairs: &[(&str, &str)]) -> Filter {
        let get = |name: &str| {
            pairs
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| v.to_string())
        };
        StatusQuery {
            account: get("account"),
            entity: get("entity"),
            state: get("state"),
            page: get("page"),
            per_page: get("per_page"),
        }
        .parse()
        .expect("valid query")
    }

    fn entity_ids(view: &StatusView) -> Vec<Option<u64>> {
        view.entities.iter().map(|e| e.entity_id).collect()
    }

    #[test]
    fn failing_first_then_left_out_success_and_pending() {
        let view = build(&board(), query(&[]), &FiringAlerts::new(), 1010.0);
        assert_eq!(
            entity_ids(&view),
            vec![Some(11), Some(21), Some(12), Some(10), Some(20)]
        );
        let states: Vec<&str> = view.entities.iter().map(|e| e.state).collect();
        assert_eq!(
            states,
            vec!["failure", "timeout", "left_out", "success", "pending"]
        );
        assert_eq!(view.states["success"], 2);
        assert_eq!(view.states["left_out"], 1);
        assert_eq!(view.accounts, vec![1, 2]);
        let failing = &view.entities[0];
        assert_eq!(failing.name.as_deref(), Some("Edge"));
        assert_eq!(failing.jobs[0].error.as_deref(), Some("11 went wrong"));
        assert_eq!(failing.jobs[0].run_cost, Some(1.5));
        assert_eq!(failing.jobs[0].next_due, Some(1060));
        let skipped = &view.entities[2];
        assert_eq!(
            skipped.left_out.as_deref(),
            Some("no ping credential chosen")
        );
        assert_eq!(view.entities[3].notes, vec!["sensor 5 is missing"]);
    }

    #[test]
    fn filters_by_account_entity_text_and_state() {
        let b = board();
        let by_account = build(&b, query(&[("account", "2")]), &FiringAlerts::new(), 1010.0);
        assert_eq!(entity_ids(&by_account), vec![Some(21), Some(20)]);
        let by_name = build(
            &b,
            query(&[("entity", "EDGE")]),
            &FiringAlerts::new(),
            1010.0,
        );
        assert_eq!(entity_ids(&by_name), vec![Some(11)]);
        let by_address = build(
            &b,
            query(&[("entity", "192.0.2.20")]),
            &FiringAlerts::new(),
            1010.0,
        );
        assert_eq!(entity_ids(&by_address), vec![Some(20)]);
        let failing = build(
            &b,
            query(&[("state", "failing")]),
            &FiringAlerts::new(),
            1010.0,
        );
        assert_eq!(entity_ids(&failing), vec![Some(11), Some(21)]);
        assert_eq!(
            failing.entities[1].jobs.len(),
            1,
            "only the matching job of the entity"
        );
        let left_out = build(
            &b,
            query(&[("state", "left_out")]),
            &FiringAlerts::new(),
            1010.0,
        );
        assert_eq!(entity_ids(&left_out), vec![Some(12)]);
        let empty = build(&b, query(&[("account", "")]), &FiringAlerts::new(), 1010.0);
        assert_eq!(empty.matching, 5, "an empty parameter is no filter");
    }

    #[test]
    fn bad_parameters_are_named() {
        let bad = |name: &str, value: &str| {
            let mut q = StatusQuery::default();
            match name {
                "account" => q.account = Some(value.into()),
                "state" => q.state = Some(value.into()),
                _ => q.page = Some(value.into()),
            }
            q.parse().unwrap_err()
        };
        assert!(bad("account", "x").starts_with("account must be"));
        assert!(bad("state", "broken").starts_with("state must be one of failing"));
        assert!(bad("page", "-1").starts_with("page must be"));
    }

    #[test]
    fn pages_of_ten_thousand_jobs_are_cheap() {
        let mut b = board();
        b.jobs = (0..10_000u64)
            .map(|i| {
                let outcome = match i % 100 {
                    0 => Some(Outcome::Failure),
                    1 => None,
                    _ => Some(Outcome::Success),
                };
                row(1 + i % 50, 100_000 + i, &i.to_string(), outcome)
            })
            .collect();
        let started = std::time::Instant::now();
        let view = build(&b, query(&[]), &FiringAlerts::new(), 1010.0);
        let page = crate::status_page::render(&view);
        let elapsed = started.elapsed();
        assert_eq!(view.matching, 10_001);
        assert_eq!(view.pages, 101);
        assert_eq!(view.entities.len(), DEFAULT_PER_PAGE);
        assert!(view.entities.iter().all(|e| e.state == "failure"));
        let last = build(
            &b,
            query(&[("page", "500"), ("per_page", "1000")]),
            &FiringAlerts::new(),
            1010.0,
        );
        assert_eq!(
            (last.page, last.entities.len()),
            (11, 1),
            "clamped to the last page"
        );
        assert!(
            page.len() < 200_000,
            "a page stays small: {} bytes",
            page.len()
        );
        // Debug build on a shared machine: generous, yet far below what a user would notice.
        assert!(elapsed.as_millis() < 1000, "took {elapsed:?}");
    }
}
