//! What the status page shows: the registry's jobs grouped by account and entity, with the
//! entities left out, filtered (account, entity, state), sorted failing first and cut into
//! pages. Served as `/jobs.json` and rendered as `/jobs`.

use crate::status::{Board, JobRow, RunHistory, SkippedEntity, Summary};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet, HashMap};

/// Job and entity states, most urgent first: the page's sort order.
pub const STATES: [&str; 7] = [
    "failure", "timeout", "panic", "skip", "left_out", "pending", "success",
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
    /// Values the last run returned for delivery.
    pub values: Option<usize>,
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
    pub jobs: Vec<JobView>,
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

/// An entity's jobs and left-out reasons before the page is cut: indices only.
#[derive(Default)]
struct Group<'a> {
    jobs: Vec<(&'a JobRow, RunHistory)>,
    left_out: Vec<&'a SkippedEntity>,
    state: &'static str,
}

/// Builds the page `filter` asks for from the board, at Unix time `now`.
pub fn build(board: &Board, filter: Filter, now: f64) -> StatusView {
    let mut groups: HashMap<GroupKey, Group> = HashMap::new();
    let mut states: BTreeMap<&'static str, usize> = BTreeMap::new();
    for row in &board.jobs {
        let history = row.state.runs.history();
        *states.entry(job_state(&history)).or_default() += 1;
        let group = groups.entry((row.account_id, row.entity_id)).or_default();
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
        .map(|(key, group)| entity_view(board, &filter, key, group, now_secs))
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
    key: GroupKey,
    group: Group,
    now: u64,
) -> EntityView {
    let (name, address) = identity(board, key, &group);
    let notes = match key {
        (Some(a), Some(e)) => board.notes.get(&(a, e)).cloned().unwrap_or_default(),
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
        .map(|(row, history)| job_view(row, history, now))
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
        jobs,
    }
}

fn job_view(row: &JobRow, history: RunHistory, now: u64) -> JobView {
    let state = job_state(&history);
    let last = history.last.as_ref();
    JobView {
        id: row.id.clone(),
        intervals: row.intervals.clone(),
        summary: row.summary.clone(),
        state,
        last_firing: last.map(|l| l.scheduled),
        run_cost: last.map(|l| (l.finished - l.started).max(0.0)),
        wait_cost: last.map(|l| (l.started - l.scheduled as f64).max(0.0)),
        values: last.map(|l| l.values),
        error: last.and_then(|l| l.error.clone()),
        last_error: history
            .last_error
            .map(|(at, message)| ErrorView { at, message }),
        firings: history.firings,
        unsuccessful: history.unsuccessful,
        next_due: row.next_due(now),
    }
}
