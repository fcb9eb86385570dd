//! The scheduler: every job on one timer queue (tokio-util's `DelayQueue`), several aligned
//! intervals per job (contract §5.4), and diffing of the wanted jobs at each refresh (§5.5).

use crate::bot::Firing;
use crate::job::{Anchor, JobSpec};
use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::time::Instant;
use tokio_util::time::delay_queue::DelayQueue;

/// Wall-clock time read through tokio's clock, so that tests with a paused clock see Unix time
/// advance exactly as tokio's timers do.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    base_instant: Instant,
    base_unix: f64,
}

impl Default for Clock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock {
    pub fn new() -> Self {
        let unix = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs_f64())
            .unwrap_or(0.0);
        Clock {
            base_instant: Instant::now(),
            base_unix: unix,
        }
    }

    /// Unix time now, in seconds.
    pub fn now_unix(&self) -> f64 {
        self.base_unix + self.base_instant.elapsed().as_secs_f64()
    }

    /// The current whole Unix second.
    pub fn now_secs(&self) -> u64 {
        self.now_unix().floor() as u64
    }

    /// The tokio instant at which Unix second `secs` starts (now, if it is already past).
    pub fn instant_at(&self, secs: u64) -> Instant {
        let ahead = secs as f64 - self.now_unix();
        if ahead <= 0.0 {
            Instant::now()
        } else {
            Instant::now() + Duration::from_secs_f64(ahead)
        }
    }
}

/// What the executor needs to know about a job between firings: whether a run is in flight.
/// Kept across a change of the job's data, so a job never overlaps itself.
#[derive(Debug, Default)]
pub struct JobState {
    pub running: AtomicBool,
    /// The last firings' outcomes, for the status page.
    pub runs: crate::status::RunCell,
}

/// A job that fell due.
pub struct Due<P> {
    pub spec: Arc<JobSpec<P>>,
    pub firing: Firing,
    pub state: Arc<JobState>,
}

/// How a refresh changed the schedule.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct UpdateSummary {
    pub added: usize,
    pub changed: usize,
    pub removed: usize,
    pub unchanged: usize,
    pub kept_unreadable: usize,
}

/// Sorted, de-duplicated, non-zero intervals.
fn normalized(intervals: &[u64]) -> Vec<u64> {
    let mut intervals: Vec<u64> = intervals.iter().copied().filter(|&i| i > 0).collect();
    intervals.sort_unstable();
    intervals.dedup();
    intervals
}

/// The anchor second of a job (re)created at second `now` (contract §5.4).
pub fn resolve_anchor(anchor: Anchor, intervals: &[u64], now: u64) -> u64 {
    match anchor {
        Anchor::Created => now,
        Anchor::Unix(at) => at.min(now),
        Anchor::FirstAfter(delay) => {
            let smallest = intervals.iter().copied().min().unwrap_or(0);
            (now + delay).saturating_sub(smallest)
        }
    }
}

/// The first firing strictly after second `after` (`anchor + k * i`, k >= 1, any interval i).
pub fn next_firing(anchor: u64, intervals: &[u64], after: u64) -> Option<u64> {
    intervals
        .iter()
        .map(|&i| {
            if after < anchor {
                anchor + i
            } else {
                anchor + ((after - anchor) / i + 1) * i
            }
        })
        .min()
}

/// The intervals that fall due at second `at`, ascending.
pub fn affecting_intervals(anchor: u64, intervals: &[u64], at: u64) -> Vec<u64> {
    if at <= anchor {
        return Vec::new();
    }
    intervals
        .iter()
        .copied()
        .filter(|&i| (at - anchor) % i == 0)
        .collect()
}

struct Entry<P> {
    spec: Arc<JobSpec<P>>,
    anchor: u64,
    next: u64,
    /// Bumped when the slot is reused, so stale bucket entries are recognised and skipped.
    generation: u64,
    state: Arc<JobState>,
}

/// Hashes the Unix seconds that key the buckets: a multiply is enough for integers that differ
/// in their low bits, and much cheaper than SipHash on the hand-out path.
#[derive(Default)]
struct SecondHasher(u64);

impl Hasher for SecondHasher {
    fn finish(&self) -> u64 {
        self.0.wrapping_mul(0x9E37_79B9_7F4A_7C15)
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

/// A job's place in a due-second bucket: its slot and the generation it was filed under.
type Ticket = (usize, u64);

/// The set of scheduled jobs and their timers.
///
/// Jobs anchored in the same second fall due together (every job created by one refresh does),
/// so timers are kept per due second, not per job: one `DelayQueue` entry per distinct second,
/// holding a bucket of jobs. A due second is handed out job by job from `ready` with O(1) work
/// each, and cancelled jobs are skipped lazily by generation.
pub struct Scheduler<P> {
    clock: Clock,
    timers: DelayQueue<u64>,
    buckets: HashMap<u64, Vec<Ticket>, BuildHasherDefault<SecondHasher>>,
    /// Emptied bucket vectors, reused so a big due second does not grow a new one from scratch.
    spare: Vec<Vec<Ticket>>,
    /// The jobs of the due second being handed out.
    ready: Vec<Ticket>,
    /// The next ticket of `ready` to hand out.
    cursor: usize,
    ready_second: u64,
    /// The second after which the handed-out jobs are re-filed.
    ready_after: u64,
    slots: Vec<Option<Entry<P>>>,
    free: Vec<usize>,
    ids: HashMap<String, usize>,
    generations: u64,
}

impl<P: PartialEq> Scheduler<P> {
    pub fn new(clock: Clock) -> Self {
        Scheduler {
            clock,
            timers: DelayQueue::new(),
            buckets: HashMap::default(),
            spare: Vec::new(),
            ready: Vec::new(),
            cursor: 0,
            ready_second: 0,
            ready_after: 0,
            slots: Vec::new(),
            free: Vec::new(),
            ids: HashMap::new(),
            generations: 0,
        }
    }

    pub fn len(&self) -> usize {
        self.ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// The ids of the scheduled jobs, in no particular order.
    pub fn job_ids(&self) -> impl Iterator<Item = &str> {
        self.ids.keys().map(String::as_str)
    }

    /// Every scheduled job with its resolved anchor and run state, for the status page.
    pub fn jobs(&self) -> impl Iterator<Item = (&Arc<JobSpec<P>>, u64, &Arc<JobState>)> {
        self.slots
            .iter()
            .flatten()
            .map(|e| (&e.spec, e.anchor, &e.state))
    }

    fn entry(&self, id: &str) -> Option<&Entry<P>> {
        self.ids.get(id).and_then(|&slot| self.slots[slot].as_ref())
    }

    /// The anchor and next firing of a job, for inspection and tests.
    pub fn timing(&self, id: &str) -> Option<(u64, u64)> {
        self.entry(id).map(|e| (e.anchor, e.next))
    }

    /// Replaces the wanted jobs. A job with the same id and equal spec keeps its timer; a changed
    /// one is re-anchored now; a job no longer wanted is cancelled unless it belongs to an
    /// account in `unreadable` (an account whose configs could not be fetched this time).
    pub fn update(&mut self, specs: Vec<JobSpec<P>>, unreadable: &HashSet<u64>) -> UpdateSummary {
        let now = self.clock.now_secs();
        let mut summary = UpdateSummary::default();
        let mut wanted: HashSet<String> = HashSet::with_capacity(specs.len());
        for mut spec in specs {
            spec.intervals = normalized(&spec.intervals);
            if spec.intervals.is_empty() {
                tracing::warn!(job = %spec.id, "job has no usable interval; not scheduled");
                continue;
            }
            if !wanted.insert(spec.id.clone()) {
                tracing::warn!(job = %spec.id, "two jobs with the same id; the later one wins");
            }
            let state = match self.entry(&spec.id) {
                Some(entry) if *entry.spec == spec => {
                    summary.unchanged += 1;
                    continue;
                }
                Some(_) => {
                    summary.changed += 1;
                    self.remove(&spec.id).map(|e| e.state).unwrap_or_default()
                }
                None => {
                    summary.added += 1;
                    Arc::default()
                }
            };
            self.insert(spec, state, now);
        }
        let gone: Vec<String> = self
            .ids
            .iter()
            .filter(|(id, _)| !wanted.contains(*id))
            .map(|(id, _)| id.clone())
            .collect();
        for id in gone {
            let account = self.entry(&id).and_then(|e| e.spec.account_id);
            if account.is_some_and(|a| unreadable.contains(&a)) {
                summary.kept_unreadable += 1;
            } else if self.remove(&id).is_some() {
                summary.removed += 1;
            }
        }
        summary
    }

    fn remove(&mut self, id: &str) -> Option<Entry<P>> {
        let slot = self.ids.remove(id)?;
        self.free.push(slot);
        self.slots[slot].take()
    }

    fn insert(&mut self, spec: JobSpec<P>, state: Arc<JobState>, now: u64) {
        let anchor = resolve_anchor(spec.anchor, &spec.intervals, now);
        let Some(next) = next_firing(anchor, &spec.intervals, now) else {
            return;
        };
        self.generations += 1;
        let generation = self.generations;
        let slot = self.free.pop().unwrap_or_else(|| {
            self.slots.push(None);
            self.slots.len() - 1
        });
        self.ids.insert(spec.id.clone(), slot);
        self.slots[slot] = Some(Entry {
            spec: Arc::new(spec),
            anchor,
            next,
            generation,
            state,
        });
        self.file(next, (slot, generation));
    }

    /// Files a job under its due second, arming that second's timer if it is the first one.
    fn file(&mut self, second: u64, ticket: Ticket) {
        let spare = &mut self.spare;
        let bucket = self.buckets.entry(second).or_insert_with(|| {
            self.timers.insert_at(second, self.clock.instant_at(second));
            spare.pop().unwrap_or_default()
        });
        bucket.push(ticket);
    }

    /// Waits for the next job to fall due. Never returns while no job is scheduled: guard the
    /// call with [`Scheduler::is_empty`] in a `select!`.
    pub async fn next_due(&mut self) -> Due<P> {
        loop {
            if let Some(due) = self.hand_out() {
                return due;
            }
            let expired = std::future::poll_fn(|cx| self.timers.poll_expired(cx)).await;
            match expired {
                Some(expired) => {
                    let second = expired.into_inner();
                    let tickets = self.buckets.remove(&second).unwrap_or_default();
                    let mut done = std::mem::replace(&mut self.ready, tickets);
                    done.clear();
                    self.spare.push(done);
                    self.cursor = 0;
                    self.ready_second = second;
                    // A late scheduler fires once, then skips the firings it missed.
                    self.ready_after = second.max(self.clock.now_secs());
                }
                None => std::future::pending::<()>().await,
            }
        }
    }

    /// The next live job of the opened due second, re-filed under its next firing.
    fn hand_out(&mut self) -> Option<Due<P>> {
        let second = self.ready_second;
        while let Some(&(slot, generation)) = self.ready.get(self.cursor) {
            self.cursor += 1;
            let Some(entry) = self.slots[slot].as_mut() else {
                continue;
            };
            if entry.generation != generation || entry.next != second {
                continue;
            }
            let intervals = &entry.spec.intervals;
            let Some(next) = next_firing(entry.anchor, intervals, self.ready_after) else {
                continue;
            };
            entry.next = next;
            let due = Due {
                spec: entry.spec.clone(),
                firing: Firing::new(second, affecting_intervals(entry.anchor, intervals, second)),
                state: entry.state.clone(),
            };
            self.file(next, (slot, generation));
            return Some(due);
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn firing_arithmetic_follows_the_contract() {
        let iv = [10, 20];
        assert_eq!(next_firing(1000, &iv, 1000), Some(1010));
        assert_eq!(next_firing(1000, &iv, 1010), Some(1020));
        assert_eq!(next_firing(1000, &iv, 1015), Some(1020));
        assert_eq!(affecting_intervals(1000, &iv, 1010), vec![10]);
        assert_eq!(affecting_intervals(1000, &iv, 1020), vec![10, 20]);
        assert_eq!(affecting_intervals(1000, &iv, 1030), vec![10]);
        assert_eq!(affecting_intervals(1000, &iv, 1040), vec![10, 20]);
        assert_eq!(affecting_intervals(1000, &iv, 1000), Vec::<u64>::new());
        assert_eq!(resolve_anchor(Anchor::Unix(50), &[3600], 7200), 50);
        assert_eq!(resolve_anchor(Anchor::Unix(9000), &[3600], 7200), 7200);
        assert_eq!(next_firing(50, &[3600], 7200), Some(7250));
        // First run 15 s after creation, then every 900 s.
        let a = resolve_anchor(Anchor::FirstAfter(15), &[900], 10_000);
        assert_eq!(next_firing(a, &[900], 10_000), Some(10_015));
        assert_eq!(next_firing(a, &[900], 10_015), Some(10_915));
    }

    fn spec(id: &str, intervals: Vec<u64>, params: u32) -> JobSpec<u32> {
        JobSpec::new(id, intervals, params).account(1)
    }

    #[tokio::test(start_paused = true)]
    async fn intervals_align_and_coinciding_ones_fire_once() {
        let clock = Clock::new();
        let mut s = Scheduler::new(clock);
        s.update(vec![spec("a", vec![20, 10, 10], 0)], &HashSet::new());
        let (anchor, first) = s.timing("a").unwrap();
        assert_eq!(first, anchor + 10);
        let mut seen = Vec::new();
        for _ in 0..4 {
            let due = s.next_due().await;
            assert_eq!(clock.now_secs(), due.firing.scheduled, "fires on time");
            seen.push((due.firing.scheduled - anchor, due.firing.affecting));
        }
        assert_eq!(
            seen,
            vec![
                (10, vec![10]),
                (20, vec![10, 20]),
                (30, vec![10]),
                (40, vec![10, 20])
            ]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn refresh_keeps_phase_reanchors_changes_and_cancels_the_gone() {
        let clock = Clock::new();
        let mut s = Scheduler::new(clock);
        s.update(
            vec![
                spec("keep", vec![60], 1),
                spec("change", vec![60], 1),
                spec("gone", vec![60], 1),
            ],
            &HashSet::new(),
        );
        let keep_before = s.timing("keep").unwrap();
        let change_before = s.timing("change").unwrap();
        tokio::time::advance(Duration::from_secs(25)).await;
        let summary = s.update(
            vec![
                spec("keep", vec![60], 1),
                spec("change", vec![60], 2),
                spec("new", vec![5], 0),
            ],
            &HashSet::new(),
        );
        assert_eq!(
            summary,
            UpdateSummary {
                added: 1,
                changed: 1,
                removed: 1,
                unchanged: 1,
                kept_unreadable: 0
            }
        );
        assert_eq!(
            s.timing("keep").unwrap(),
            keep_before,
            "unchanged job keeps its phase"
        );
        let change_after = s.timing("change").unwrap();
        assert_eq!(
            change_after.0,
            change_before.0 + 25,
            "changed job is re-anchored now"
        );
        assert!(s.timing("gone").is_none());
        let mut ids: Vec<_> = s.job_ids().collect();
        ids.sort();
        assert_eq!(ids, vec!["change", "keep", "new"]);
        // The cancelled job never fires: the next 70 s bring only the others.
        let mut fired = HashSet::new();
        let deadline = clock.now_secs() + 70;
        while clock.now_secs() < deadline {
            fired.insert(s.next_due().await.spec.id.clone());
        }
        assert!(!fired.contains("gone"));
        assert!(fired.contains("keep") && fired.contains("change") && fired.contains("new"));
    }

    #[tokio::test(start_paused = true)]
    async fn jobs_of_an_unreadable_account_are_kept() {
        let mut s = Scheduler::new(Clock::new());
        s.update(
            vec![
                spec("a1", vec![60], 0),
                JobSpec::new("a2", vec![60], 0).account(2),
            ],
            &HashSet::new(),
        );
        let summary = s.update(vec![], &HashSet::from([2]));
        assert_eq!(summary.removed, 1);
        assert_eq!(summary.kept_unreadable, 1);
        assert_eq!(s.job_ids().collect::<Vec<_>>(), vec!["a2"]);
    }

    #[tokio::test(start_paused = true)]
    async fn fixed_anchor_fires_at_its_phase() {
        let clock = Clock::new();
        let mut s = Scheduler::new(clock);
        s.update(
            vec![JobSpec::new("m", vec![3600], 0).anchored(Anchor::Unix(50))],
            &HashSet::new(),
        );
        let due = s.next_due().await;
        assert_eq!(due.firing.scheduled % 3600, 50);
        assert!(due.firing.scheduled > clock.now_secs() - 3600);
    }
}
