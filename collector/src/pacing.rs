//! Paced starts: at most N a second, as a stream of slots `1 / N` apart, so that what falls due in
//! the same instant is spread out instead of starting at once. The framework paces job starts
//! with it (Asmon's `max_starts_per_sec`, `JOB_MAX_STARTS_PER_SECOND`, or the bot's own
//! [`crate::Collector::max_starts_per_second`]; the wait shows in a run's `wait_cost`), and the
//! ping engine its echo requests (`PING_MAX_RATE`, as fping's `-i`).

use std::sync::Mutex;
use std::time::Duration;
use tokio::time::Instant;

/// How far the schedule may fall behind the clock and still be caught up. Tokio's timer wakes a
/// waiter on its 1 ms tick, after its slot: without this, every wake would start the schedule
/// again from "now", one slot per tick, 1,000 a second whatever the rate. An idle pacer still
/// saves up no burst beyond it.
const CATCH_UP: Duration = Duration::from_millis(2);

/// Hands out slots `1 / rate` seconds apart.
#[derive(Debug)]
pub struct Pacer {
    per_second: u32,
    gap: Duration,
    next: Mutex<Option<Instant>>,
}

impl Pacer {
    /// A pacer for `per_second` slots a second (at least 1).
    pub fn new(per_second: u32) -> Pacer {
        let per_second = per_second.max(1);
        Pacer {
            per_second,
            gap: Duration::from_secs(1) / per_second,
            next: Mutex::new(None),
        }
    }

    /// Slots a second.
    pub fn per_second(&self) -> u32 {
        self.per_second
    }

    /// Reserves this caller's slot and waits for it; a slot already reached is taken at once
    /// (a timer, even an expired one, would wait for the next tick). The timer is boxed: it is
    /// rarely needed and four times the size of the rest, and this future is part of each
    /// echo request's in the ping engine.
    pub async fn wait(&self) {
        let now = Instant::now();
        let slot = self.reserve(now);
        if slot > now {
            Box::pin(tokio::time::sleep_until(slot)).await;
        }
    }

    fn reserve(&self, now: Instant) -> Instant {
        // A poisoned lock only means a thread panicked between two plain assignments.
        let mut next = self.next.lock().unwrap_or_else(|p| p.into_inner());
        let earliest = now.checked_sub(CATCH_UP).unwrap_or(now);
        let slot = next.map_or(earliest, |scheduled| scheduled.max(earliest));
        *next = Some(slot + self.gap);
        slot
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[tokio::test(start_paused = true)]
    async fn what_falls_due_together_is_spread_over_the_second() {
        let pacer = Arc::new(Pacer::new(4));
        let begin = Instant::now();
        let mut tasks = Vec::new();
        for _ in 0..8 {
            let pacer = pacer.clone();
            tasks.push(tokio::spawn(async move {
                pacer.wait().await;
                Instant::now() - begin
            }));
        }
        let mut started = Vec::new();
        for task in tasks {
            started.push(task.await.unwrap().as_millis());
        }
        started.sort();
        assert_eq!(started, [0, 248, 498, 748, 998, 1248, 1498, 1748]);
        tokio::time::sleep(Duration::from_secs(5)).await;
        let idle = Instant::now();
        pacer.wait().await;
        assert_eq!(Instant::now(), idle, "an idle pacer does not delay");
    }

    #[test]
    fn slots_are_one_gap_apart_and_an_idle_pacer_saves_no_burst() {
        let pacer = Pacer::new(1000);
        let now = Instant::now();
        let slots: Vec<Instant> = (0..5).map(|_| pacer.reserve(now)).collect();
        for pair in slots.windows(2) {
            assert_eq!(pair[1] - pair[0], Duration::from_millis(1));
        }
        let later = now + Duration::from_secs(1);
        let after_idle = pacer.reserve(later);
        assert_eq!(after_idle, later - CATCH_UP);
        assert_eq!(pacer.reserve(later) - after_idle, Duration::from_millis(1));
    }

    #[tokio::test(start_paused = true)]
    async fn one_waiter_after_another_keeps_the_rate_despite_the_timer_tick() {
        let pacer = Pacer::new(100_000);
        let begin = Instant::now();
        for _ in 0..10_000 {
            pacer.wait().await;
        }
        let took = Instant::now() - begin;
        assert!(
            took <= Duration::from_millis(101),
            "10,000 slots took {took:?}"
        );
    }
}
