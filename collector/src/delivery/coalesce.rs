//! Coalescing: the firings of one account that finish close together travel in one POST, so a
//! bot with thousands of jobs a second makes a few requests a second. A group closes when it
//! holds `max_values` values or `max_delay` after its first firing, whichever comes first (the
//! model is Telegraf's `metric_batch_size` / `flush_interval`), and also once no firing joined
//! it for a tenth of `max_delay`: the firings due in one second finish in a burst, and the end of
//! the burst need not wait out the whole bound.

use super::Batch;
use smallvec::SmallVec;
use std::collections::HashSet;
use std::hash::{BuildHasher, Hasher};
use std::time::Duration;
use tokio::time::Instant;

/// When a coalesced group closes (`DELIVERY_BATCH_MAX_VALUES`, `DELIVERY_BATCH_MAX_DELAY_MS`).
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_values: usize,
    /// The longest a value waits for others; zero sends every firing on its own.
    pub max_delay: Duration,
}

impl Limits {
    /// Every firing on its own, at once: the behaviour before coalescing.
    pub fn none() -> Limits {
        Limits {
            max_values: 1,
            max_delay: Duration::ZERO,
        }
    }
}

/// The group of one account that is still taking firings.
struct Open {
    account: Option<u64>,
    firings: Vec<Batch>,
    values: usize,
    /// Hashes of the paths in the group ([`path_hash`]), hashed no further (`PathHashes`). The
    /// backend stores POSTed values at its receive time, and a list that holds one path twice
    /// fails as a whole, so a firing that repeats a path closes the group first. A hash
    /// collision only closes a group early.
    paths: HashSet<u64, PathHashes>,
    /// `max_delay` after the first firing.
    deadline: Instant,
    /// When the last firing joined.
    last: Instant,
}

impl Open {
    fn closes_at(&self, quiet: Duration) -> Instant {
        self.deadline.min(self.last + quiet)
    }
}

/// A path's hash for the repeat check: rustc-hash's, which took 135 fewer instructions than
/// xxh3 for a ping run's eight paths (every value of every firing is hashed).
fn path_hash(path: &str) -> u64 {
    let mut hasher = rustc_hash::FxHasher::default();
    hasher.write(path.as_bytes());
    hasher.finish()
}

/// Hashes a path's hash ([`path_hash`]) as itself: it is a good hash already, and SipHash of
/// every value's path hash was a few percent of the ping bot's CPU.
#[derive(Default, Clone, Copy)]
struct PathHashes;

impl BuildHasher for PathHashes {
    type Hasher = PassThrough;

    fn build_hasher(&self) -> PassThrough {
        PassThrough(0)
    }
}

/// The hasher of [`PathHashes`]: a `u64` is its own hash.
struct PassThrough(u64);

impl Hasher for PassThrough {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &byte in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(byte);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

/// Groups cleaned firings by account.
pub struct Coalescer {
    limits: Limits,
    /// The open groups, one per account: a bot serves one account or a few, so a search of a
    /// short list costs less than hashing the account twice per firing.
    open: Vec<Open>,
    /// The path set of the last closed group, emptied, for the next one: a group of 10,000
    /// firings would otherwise grow a new set through a dozen rehashes.
    spare_paths: Option<HashSet<u64, PathHashes>>,
}

impl Coalescer {
    pub fn new(limits: Limits) -> Coalescer {
        Coalescer {
            limits,
            open: Vec::new(),
            spare_paths: None,
        }
    }

    /// Adds a firing that arrived at `now`; the groups that closed are pushed to `closed`.
    pub fn add(&mut self, batch: Batch, now: Instant, closed: &mut Vec<Vec<Batch>>) {
        let key = batch.account_id;
        let hashes: SmallVec<[u64; 16]> = batch.values.iter().map(|v| path_hash(&v.path)).collect();
        let mut at = self.open.iter().position(|open| open.account == key);
        if let Some(index) = at {
            if hashes.iter().any(|h| self.open[index].paths.contains(h)) {
                self.close(index, closed);
                at = None;
            }
        }
        let index = at.unwrap_or_else(|| {
            self.open.push(Open {
                account: key,
                firings: Vec::new(),
                values: 0,
                paths: self.spare_paths.take().unwrap_or_default(),
                deadline: now + self.limits.max_delay,
                last: now,
            });
            self.open.len() - 1
        });
        let open = &mut self.open[index];
        open.last = now;
        open.values += batch.values.len();
        open.paths.extend(hashes);
        open.firings.push(batch);
        if open.values >= self.limits.max_values || open.deadline <= now {
            self.close(index, closed);
        }
    }

    /// When the next group must close, if any is open.
    pub fn next_deadline(&self) -> Option<Instant> {
        let quiet = self.quiet();
        self.open.iter().map(|open| open.closes_at(quiet)).min()
    }

    /// How long a group stays open without a new firing.
    fn quiet(&self) -> Duration {
        self.limits.max_delay / 10
    }

    /// Closes the groups whose time is up.
    pub fn close_due(&mut self, now: Instant, closed: &mut Vec<Vec<Batch>>) {
        let quiet = self.quiet();
        let mut index = 0;
        while index < self.open.len() {
            if self.open[index].closes_at(quiet) <= now {
                self.close(index, closed);
            } else {
                index += 1;
            }
        }
    }

    /// Closes every group (shutdown).
    pub fn close_all(&mut self, closed: &mut Vec<Vec<Batch>>) {
        closed.extend(self.open.drain(..).map(|open| open.firings));
    }

    /// Closes the group at `index` of [`Coalescer::open`] (the last group takes its place).
    fn close(&mut self, index: usize, closed: &mut Vec<Vec<Batch>>) {
        let mut open = self.open.swap_remove(index);
        closed.push(open.firings);
        open.paths.clear();
        self.spare_paths = Some(open.paths);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::value::Value;

    fn firing(account: u64, job: &str, paths: &[&str]) -> Batch {
        Batch {
            account_id: Some(account),
            job_id: job.into(),
            entity_id: None,
            time: 0.0,
            values: paths.iter().map(|p| Value::new(*p, 1.0)).collect(),
            receipt: None,
        }
    }

    fn jobs(group: &[Batch]) -> Vec<&str> {
        group.iter().map(|b| b.job_id.as_str()).collect()
    }

    #[test]
    fn groups_close_at_the_value_count_the_time_bound_or_a_repeated_path() {
        let limits = Limits {
            max_values: 4,
            max_delay: Duration::from_millis(50),
        };
        let mut coalescer = Coalescer::new(limits);
        let start = Instant::now();
        let mut closed = Vec::new();
        coalescer.add(firing(1, "a", &["a.x"]), start, &mut closed);
        coalescer.add(firing(2, "b", &["b.x"]), start, &mut closed);
        coalescer.add(firing(1, "c", &["c.x", "c.y"]), start, &mut closed);
        assert!(closed.is_empty(), "below both bounds nothing is sent");
        assert_eq!(
            coalescer.next_deadline(),
            Some(start + Duration::from_millis(5)),
            "a tenth of the bound after the last firing"
        );
        coalescer.add(firing(1, "d", &["d.x"]), start, &mut closed);
        assert_eq!(closed.len(), 1, "account 1 reached 4 values");
        assert_eq!(jobs(&closed[0]), ["a", "c", "d"]);

        coalescer.add(firing(2, "e", &["b.x"]), start, &mut closed);
        assert_eq!(closed.len(), 2, "a repeated path closes the group first");
        assert_eq!(jobs(&closed[1]), ["b"]);

        coalescer.close_due(start + Duration::from_millis(4), &mut closed);
        assert_eq!(closed.len(), 2);
        coalescer.close_due(start + Duration::from_millis(5), &mut closed);
        assert_eq!(
            closed.len(),
            3,
            "5 ms without a new firing close account 2's group"
        );
        assert_eq!(jobs(&closed[2]), ["e"]);
        assert_eq!(coalescer.next_deadline(), None);
    }

    #[test]
    fn a_steady_stream_closes_at_the_time_bound() {
        let limits = Limits {
            max_values: 1000,
            max_delay: Duration::from_millis(50),
        };
        let mut coalescer = Coalescer::new(limits);
        let start = Instant::now();
        let mut closed = Vec::new();
        for ms in 0..60 {
            let now = start + Duration::from_millis(ms);
            coalescer.close_due(now, &mut closed);
            coalescer.add(
                firing(1, &format!("j{ms}"), &[&format!("p.{ms}")]),
                now,
                &mut closed,
            );
        }
        assert_eq!(
            closed.len(),
            1,
            "a firing every millisecond: one group per 50 ms"
        );
        assert_eq!(closed[0].len(), 50);
    }

    #[test]
    fn without_limits_every_firing_goes_alone() {
        let mut coalescer = Coalescer::new(Limits::none());
        let mut closed = Vec::new();
        let now = Instant::now();
        coalescer.add(firing(1, "a", &["a.x"]), now, &mut closed);
        coalescer.add(firing(1, "b", &["b.x"]), now, &mut closed);
        assert_eq!(closed.len(), 2);
        coalescer.close_all(&mut closed);
        assert_eq!(closed.len(), 2);
    }
}
