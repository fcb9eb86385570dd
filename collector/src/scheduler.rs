//! The scheduler: every job on one timer queue (tokio-util's `DelayQueue`), several aligned
//! intervals per job (contract §5.4), and diffing of the wanted jobs at each refresh (§5.5).

use crate::bot::{Firing, Intervals};
use crate::job::{Anchor, JobSpec};
use crate::on_time::OnTime;
use crate::prefetch;
use rustc_hash::FxHashMap;
use std::collections::{HashMap, HashSet, VecDeque};
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
///
/// `repr(C)` keeps the fields every run touches (`running`, `alert_memo`) first, in the cache
/// line of the `Arc`'s counts, which the scheduler warms before the job falls due.
#[derive(Debug, Default)]
#[repr(C)]
pub struct JobState {
    pub running: AtomicBool,
    /// Whether the notifier needs this job's quiet runs.
    pub alert_memo: crate::notify::memo::AlertMemo,
    /// The last firings' outcomes, for the status page.
    pub runs: crate::status::RunCell,
}

/// A job that fell due.
pub struct Due<P> {
    pub spec: Arc<JobSpec<P>>,
    pub firing: Firing,
    pub state: Arc<JobState>,
    /// The job's smallest interval, the default limit of a run: from the scheduler's own copy
    /// of the intervals, so that starting a run does not read the spec's (a cache miss a run).
    pub smallest_interval: Option<u64>,
}

impl<P> Due<P> {
    /// Prefetches what the run of this firing reads first: its state and its spec, and the
    /// job id's bytes. A firing waits for its start in the executor's queue for up to the
    /// pacer's spread (100 ms), by which time the scheduler's reads of them have left the caches.
    /// The whole spec up to eight lines: a run reads its params, wherever they lie in it (the
    /// ping bot's spec is five lines with its counts, and its run reads the last).
    pub fn prefetch(&self) {
        prefetch::arc(&self.state, 2);
        prefetch::arc(&self.spec, 8);
        prefetch::line(self.spec.id.as_ptr());
    }
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

/// Whether intervals are already as [`normalized`] makes them (a refresh then copies nothing).
fn is_normalized(intervals: &[u64]) -> bool {
    intervals.first().is_some_and(|&first| first > 0)
        && intervals.windows(2).all(|pair| pair[0] < pair[1])
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
pub fn affecting_intervals(anchor: u64, intervals: &[u64], at: u64) -> Intervals {
    if at <= anchor {
        return Intervals::new();
    }
    intervals
        .iter()
        .copied()
        .filter(|&i| (at - anchor) % i == 0)
        .collect()
}

/// The intervals due at second `at` and the firing after it, with one division per interval:
/// what [`affecting_intervals`] and [`next_firing`]`(anchor, intervals, at)` give together, on
/// the hand-out path where every job of a due second needs both.
fn due_at(anchor: u64, intervals: &[u64], at: u64) -> (Intervals, Option<u64>) {
    if at <= anchor {
        return (Intervals::new(), next_firing(anchor, intervals, at));
    }
    let mut affecting = Intervals::new();
    let mut next: Option<u64> = None;
    for &i in intervals {
        let into = (at - anchor) % i;
        if into == 0 {
            affecting.push(i);
        }
        let this = at + (i - into);
        next = Some(next.map_or(this, |n| n.min(this)));
    }
    (affecting, next)
}

struct Entry<P> {
    spec: Arc<JobSpec<P>>,
    /// A copy of `spec.intervals` kept in the slot, so handing out a due job reads no memory
    /// behind a pointer: at a burst of 100,000 jobs each such read was a cache miss.
    intervals: Intervals,
    anchor: u64,
    next: u64,
    /// Bumped when the slot is reused, so stale bucket entries are recognised and skipped.
    generation: u64,
    /// The last refresh that wanted this job (see [`Scheduler::update`]).
    refreshed: u64,
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

/// How many tickets ahead of the one handed out [`Scheduler::warm_up`] works: far enough that
/// the memory has arrived when the ticket's turn comes (a few hundred nanoseconds).
const PREFETCH_AHEAD: usize = 16;

/// A job's place in a due-second bucket: its slot and the generation it was filed under.
type Ticket = (usize, u64);

/// How many due jobs the bot's runtime takes from [`Scheduler::next_batch`] at a time: a burst
/// of 10,000 is ten turns of its loop, and the list that carries them stays small (about
/// 100 KB, 104 bytes a job).
pub const HAND_OUT_BATCH: usize = 1024;

/// How long before its second a due second's jobs are prepared (see [`Scheduler`]). Preparing
/// takes up to a few hundred nanoseconds a job, so this covers a burst of 300,000 jobs.
const PREPARE_AHEAD: Duration = Duration::from_millis(100);

/// A job of a due second, prepared ahead of it: everything a [`Due`] needs, and the ticket to
/// check that the job was not removed or changed in the meantime.
struct Prepared<P> {
    spec: Arc<JobSpec<P>>,
    state: Arc<JobState>,
    affecting: Intervals,
    smallest_interval: Option<u64>,
    ticket: Ticket,
}

/// The set of scheduled jobs and their timers.
///
/// Jobs anchored in the same second fall due together (every job created by one refresh does),
/// so timers are kept per due second, not per job: one `DelayQueue` entry per distinct second,
/// holding a bucket of jobs. A bucket's timer goes off [`PREPARE_AHEAD`] before its second: the
/// scheduler then does the per-job work that touches memory all over the heap (reference
/// counts, the next firing, re-filing), so that when the second comes a burst of 100,000 jobs
/// is handed out from one contiguous list. Cancelled jobs are skipped lazily by generation.
pub struct Scheduler<P> {
    clock: Clock,
    timers: DelayQueue<u64>,
    buckets: HashMap<u64, Vec<Ticket>, BuildHasherDefault<SecondHasher>>,
    /// Emptied bucket vectors, reused so a big due second does not grow a new one from scratch.
    spare: Vec<Vec<Ticket>>,
    /// The prepared jobs of `ready_second`, handed out once that second has come. The queue
    /// is used again every second: a new one is nearly a megabyte at 10,000 jobs (88 bytes a
    /// job), whose pages the allocator may have given back to the kernel since the last.
    ready: VecDeque<Prepared<P>>,
    ready_second: u64,
    /// Whether `ready_second` has come (checked once, not at every hand-out).
    ready_opened: bool,
    /// Whether a refresh ran since `ready` was prepared (then each ticket is checked again).
    updated_since_prepared: bool,
    /// Wakes the hand-out at its second to the tens of microseconds (tokio's timer: 1-2 ms).
    on_time: OnTime,
    slots: Vec<Option<Entry<P>>>,
    free: Vec<usize>,
    ids: FxHashMap<String, usize>,
    generations: u64,
    /// How many refreshes [`Scheduler::update`] has applied.
    refreshes: u64,
}

impl<P: PartialEq> Scheduler<P> {
    pub fn new(clock: Clock) -> Self {
        Scheduler {
            clock,
            timers: DelayQueue::new(),
            buckets: HashMap::default(),
            spare: Vec::new(),
            ready: VecDeque::new(),
            ready_second: 0,
            ready_opened: false,
            updated_since_prepared: false,
            on_time: OnTime::default(),
            slots: Vec::new(),
            free: Vec::new(),
            ids: FxHashMap::default(),
            generations: 0,
            refreshes: 0,
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
    ///
    /// Firings wait while this runs, so it does little per unchanged job (the usual case): one
    /// lookup and one comparison, no allocation. A job's slot is stamped with the refresh that
    /// last wanted it, so the jobs no longer wanted are found in one pass over the slots.
    pub fn update(&mut self, specs: Vec<JobSpec<P>>, unreadable: &HashSet<u64>) -> UpdateSummary {
        let now = self.clock.now_secs();
        self.updated_since_prepared = true;
        self.refreshes += 1;
        let refresh = self.refreshes;
        let mut summary = UpdateSummary::default();
        for mut spec in specs {
            if !is_normalized(&spec.intervals) {
                spec.intervals = normalized(&spec.intervals);
            }
            if spec.intervals.is_empty() {
                tracing::warn!(job = %spec.id, "job has no usable interval; not scheduled");
                continue;
            }
            let slot = self.ids.get(spec.id.as_str()).copied();
            let state = match slot.and_then(|slot| Some(slot).zip(self.slots[slot].as_mut())) {
                Some((slot, entry)) => {
                    if entry.refreshed == refresh {
                        tracing::warn!(job = %spec.id, "two jobs with the same id; the later one wins");
                    }
                    if *entry.spec == spec {
                        entry.refreshed = refresh;
                        summary.unchanged += 1;
                        continue;
                    }
                    summary.changed += 1;
                    self.remove(slot).map(|e| e.state).unwrap_or_default()
                }
                None => {
                    summary.added += 1;
                    Arc::default()
                }
            };
            self.insert(spec, state, now);
        }
        let gone: Vec<usize> = (0..self.slots.len())
            .filter(|&slot| matches!(&self.slots[slot], Some(e) if e.refreshed != refresh))
            .collect();
        for slot in gone {
            let account = self.slots[slot].as_ref().and_then(|e| e.spec.account_id);
            if account.is_some_and(|a| unreadable.contains(&a)) {
                summary.kept_unreadable += 1;
            } else if self.remove(slot).is_some() {
                summary.removed += 1;
            }
        }
        summary
    }

    fn remove(&mut self, slot: usize) -> Option<Entry<P>> {
        let entry = self.slots[slot].take()?;
        self.ids.remove(entry.spec.id.as_str());
        self.free.push(slot);
        Some(entry)
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
            intervals: Intervals::from_slice(&spec.intervals),
            spec: Arc::new(spec),
            anchor,
            next,
            generation,
            refreshed: self.refreshes,
            state,
        });
        self.file(next, (slot, generation));
    }

    /// Files a job under its due second, arming that second's timer if it is the first one.
    fn file(&mut self, second: u64, ticket: Ticket) {
        let spare = &mut self.spare;
        let bucket = self.buckets.entry(second).or_insert_with(|| {
            let at = self.clock.instant_at(second);
            let early = at.checked_sub(PREPARE_AHEAD).unwrap_or(at);
            self.timers.insert_at(second, early);
            spare.pop().unwrap_or_default()
        });
        bucket.push(ticket);
    }

    /// Waits for jobs to fall due, then moves up to `max` of them (at least one) into `batch`,
    /// which the caller has emptied. A burst of 10,000 jobs is then one turn of the caller's
    /// `select!` loop per `max` jobs ([`HAND_OUT_BATCH`] in the bot), not per job. Never
    /// returns while no job is scheduled: guard the call with [`Scheduler::is_empty`] in a
    /// `select!`. Cancel-safe: what was prepared stays, and nothing is moved until it is due.
    pub async fn next_batch(&mut self, batch: &mut Vec<Due<P>>, max: usize) {
        loop {
            self.due_second().await;
            while batch.len() < max.max(1) {
                let Some(due) = self.hand_out() else { break };
                batch.push(due);
            }
            if !batch.is_empty() {
                return;
            }
        }
    }

    /// Waits until a due second's jobs are prepared and that second has come.
    async fn due_second(&mut self) {
        loop {
            if !self.ready.is_empty() {
                if !self.ready_opened && self.clock.now_unix() < self.ready_second as f64 {
                    let second = self.clock.instant_at(self.ready_second);
                    self.on_time.sleep_until(second).await;
                }
                self.ready_opened = true;
                return;
            }
            let expired = std::future::poll_fn(|cx| self.timers.poll_expired(cx)).await;
            match expired {
                Some(expired) => self.prepare(expired.into_inner()),
                None => std::future::pending::<()>().await,
            }
        }
    }

    /// Prepares the jobs of due second `second` and re-files each under its next firing.
    fn prepare(&mut self, second: u64) {
        let mut tickets = self.buckets.remove(&second).unwrap_or_default();
        // A late scheduler fires once, then skips the firings it missed.
        let after = second.max(self.clock.now_secs());
        // Empty already: a second is prepared once the last one's jobs were all handed out.
        self.ready.clear();
        self.ready.reserve(tickets.len());
        for at in 0..tickets.len() {
            self.warm_up(&tickets, at + PREFETCH_AHEAD);
            let ticket @ (slot, generation) = tickets[at];
            let Some(entry) = self.slots[slot].as_mut() else {
                continue;
            };
            if entry.generation != generation || entry.next != second {
                continue;
            }
            let (affecting, next) = due_at(entry.anchor, &entry.intervals, second);
            let next = if after > second {
                next_firing(entry.anchor, &entry.intervals, after)
            } else {
                next
            };
            let Some(next) = next else {
                continue;
            };
            entry.next = next;
            self.ready.push_back(Prepared {
                spec: entry.spec.clone(),
                state: entry.state.clone(),
                affecting,
                // Normalized: ascending, without zeros.
                smallest_interval: entry.intervals.first().copied(),
                ticket,
            });
            self.file(next, ticket);
        }
        tickets.clear();
        self.spare.push(tickets);
        self.ready_second = second;
        self.ready_opened = false;
        self.updated_since_prepared = false;
    }

    /// Prefetches what preparing ticket `at` will touch: its slot, then the reference counts of
    /// its spec and state, which are cloned. At a burst of 100,000 jobs these were cache misses,
    /// most of the time of a hand-out.
    fn warm_up(&self, tickets: &[Ticket], at: usize) {
        if let Some(&(slot, _)) = tickets.get(at + PREFETCH_AHEAD) {
            prefetch::line(self.slots.as_ptr().wrapping_add(slot));
        }
        let Some(&(slot, _)) = tickets.get(at) else {
            return;
        };
        if let Some(Some(entry)) = self.slots.get(slot) {
            prefetch::line(prefetch::counts_of(Arc::as_ptr(&entry.spec)));
            prefetch::line(prefetch::counts_of(Arc::as_ptr(&entry.state)));
        }
    }

    /// The next prepared job that is still scheduled as it was prepared.
    fn hand_out(&mut self) -> Option<Due<P>> {
        while let Some(prepared) = self.ready.pop_front() {
            let (slot, generation) = prepared.ticket;
            if self.updated_since_prepared
                && !matches!(&self.slots[slot], Some(e) if e.generation == generation)
            {
                continue;
            }
            return Some(Due {
                spec: prepared.spec,
                firing: Firing::new(self.ready_second, prepared.affecting),
                state: prepared.state,
                smallest_interval: prepared.smallest_interval,
            });
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
        assert_eq!(affecting_intervals(1000, &iv, 1010).as_slice(), [10]);
        assert_eq!(affecting_intervals(1000, &iv, 1020).as_slice(), [10, 20]);
        assert_eq!(affecting_intervals(1000, &iv, 1030).as_slice(), [10]);
        assert_eq!(affecting_intervals(1000, &iv, 1040).as_slice(), [10, 20]);
        assert!(affecting_intervals(1000, &iv, 1000).is_empty());
        assert_eq!(resolve_anchor(Anchor::Unix(50), &[3600], 7200), 50);
        assert_eq!(resolve_anchor(Anchor::Unix(9000), &[3600], 7200), 7200);
        assert_eq!(next_firing(50, &[3600], 7200), Some(7250));
        // First run 15 s after creation, then every 900 s.
        let a = resolve_anchor(Anchor::FirstAfter(15), &[900], 10_000);
        assert_eq!(next_firing(a, &[900], 10_000), Some(10_015));
        assert_eq!(next_firing(a, &[900], 10_015), Some(10_915));
    }

    #[test]
    fn due_at_agrees_with_the_contract_arithmetic() {
        for intervals in [
            &[1u64][..],
            &[7],
            &[10, 20],
            &[15, 60],
            &[1, 10, 60],
            &[3, 4, 5],
        ] {
            for anchor in [0u64, 5, 1000] {
                for at in 0..200 {
                    assert_eq!(
                        due_at(anchor, intervals, at),
                        (
                            affecting_intervals(anchor, intervals, at),
                            next_firing(anchor, intervals, at)
                        ),
                        "anchor {anchor}, intervals {intervals:?}, at {at}"
                    );
                }
            }
        }
    }

    /// The next due job, taken as the runtime takes them (in a batch), one at a time.
    async fn next_due(s: &mut Scheduler<u32>) -> Due<u32> {
        let mut batch = Vec::with_capacity(1);
        s.next_batch(&mut batch, 1).await;
        batch.pop().expect("next_batch returns with a job")
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
            let due = next_due(&mut s).await;
            assert_eq!(clock.now_secs(), due.firing.scheduled, "fires on time");
            seen.push((due.firing.scheduled - anchor, due.firing.affecting.to_vec()));
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
            fired.insert(next_due(&mut s).await.spec.id.clone());
        }
        assert!(!fired.contains("gone"));
        assert!(fired.contains("keep") && fired.contains("change") && fired.contains("new"));
    }

    #[tokio::test(start_paused = true)]
    async fn a_job_removed_after_its_second_was_prepared_does_not_fire() {
        let clock = Clock::new();
        let mut s = Scheduler::new(clock);
        s.update(
            vec![spec("gone", vec![10], 0), spec("kept", vec![10], 0)],
            &HashSet::new(),
        );
        let (_, first) = s.timing("kept").unwrap();
        let just_before = clock.instant_at(first) - PREPARE_AHEAD / 4;
        let early = tokio::time::timeout_at(just_before, next_due(&mut s)).await;
        assert!(early.is_err(), "nothing is handed out before its second");
        assert_eq!(
            s.timing("kept").unwrap().1,
            first + 10,
            "the second was prepared"
        );
        s.update(vec![spec("kept", vec![10], 0)], &HashSet::new());
        for expected in [first, first + 10] {
            let due = next_due(&mut s).await;
            assert_eq!(
                (due.spec.id.as_str(), due.firing.scheduled),
                ("kept", expected)
            );
            assert_eq!(clock.now_secs(), expected, "handed out at its second");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_repeated_id_keeps_the_later_spec_and_unsorted_intervals_compare_equal() {
        let mut s = Scheduler::new(Clock::new());
        let first = s.update(
            vec![
                spec("twice", vec![10], 1),
                spec("twice", vec![10], 2),
                spec("unsorted", vec![20, 0, 10, 10], 0),
            ],
            &HashSet::new(),
        );
        assert_eq!((first.added, first.changed, first.removed), (2, 1, 0));
        assert_eq!(s.len(), 2);
        let kept = s.jobs().find(|(spec, _, _)| spec.id == "twice").unwrap();
        assert_eq!(kept.0.params, 2, "the later one wins");
        let again = s.update(
            vec![
                spec("twice", vec![10], 2),
                spec("unsorted", vec![10, 20, 10], 0),
            ],
            &HashSet::new(),
        );
        assert_eq!(
            again,
            UpdateSummary {
                unchanged: 2,
                ..UpdateSummary::default()
            }
        );
        let gone = s.update(vec![spec("unsorted", vec![10, 20], 0)], &HashSet::new());
        assert_eq!((gone.unchanged, gone.removed), (1, 1));
        assert_eq!(s.job_ids().collect::<Vec<_>>(), vec!["unsorted"]);
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
    async fn a_due_second_is_handed_out_in_batches_of_at_most_max() {
        let clock = Clock::new();
        let mut s = Scheduler::new(clock);
        let ids = ["a", "b", "c", "d", "e"];
        s.update(
            ids.iter().map(|id| spec(id, vec![10], 0)).collect(),
            &HashSet::new(),
        );
        let (_, first) = s.timing("a").unwrap();
        let mut batch = Vec::new();
        let mut sizes = Vec::new();
        let mut handed = Vec::new();
        while handed.len() < 2 * ids.len() {
            s.next_batch(&mut batch, 3).await;
            sizes.push(batch.len());
            for due in batch.drain(..) {
                assert_eq!(
                    clock.now_secs(),
                    due.firing.scheduled,
                    "handed out at its second"
                );
                handed.push((due.firing.scheduled, due.spec.id.clone()));
            }
        }
        assert_eq!(sizes, vec![3, 2, 3, 2], "a batch holds one second's jobs");
        handed.sort();
        let expected: Vec<_> = [first, first + 10]
            .iter()
            .flat_map(|&at| ids.iter().map(move |id| (at, id.to_string())))
            .collect();
        assert_eq!(handed, expected);
    }

    #[tokio::test(start_paused = true)]
    async fn fixed_anchor_fires_at_its_phase() {
        let clock = Clock::new();
        let mut s = Scheduler::new(clock);
        s.update(
            vec![JobSpec::new("m", vec![3600], 0).anchored(Anchor::Unix(50))],
            &HashSet::new(),
        );
        let due = next_due(&mut s).await;
        assert_eq!(due.firing.scheduled % 3600, 50);
        assert!(due.firing.scheduled > clock.now_secs() - 3600);
    }
}
