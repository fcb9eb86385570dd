//! `PING_MAX_RATE`: echo requests leave at most at this many per second, bot-wide, as a paced
//! stream (as fping's `-i`) instead of a burst when many jobs fire in the same instant.

use std::sync::Mutex;
use tokio::time::{Duration, Instant};

/// How far the schedule may fall behind the clock and still be caught up: a sender woken late
/// (a busy machine) does not cost the rate, while an idle engine does not save up a burst.
const CATCH_UP: Duration = Duration::from_millis(2);

/// Hands out send slots `1 / rate` apart.
pub struct Pacer {
    gap: Duration,
    next: Mutex<Option<Instant>>,
}

impl Pacer {
    /// A pacer for `rate` packets per second (at least 1).
    pub fn new(rate: u32) -> Pacer {
        Pacer {
            gap: Duration::from_secs(1) / rate.max(1),
            next: Mutex::new(None),
        }
    }

    /// Reserves the next slot and waits for it.
    pub async fn wait_turn(&self) {
        let slot = self.reserve(Instant::now());
        if slot > Instant::now() {
            tokio::time::sleep_until(slot).await;
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
}
