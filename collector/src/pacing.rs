//! Asmon's `max_starts_per_sec`: at most N job starts per second, so firings that fall due in the
//! same second (thousands of devices on one interval) are spread over it instead of starting at
//! once. A run that waits for its slot shows the wait in its `wait_cost`.

use std::sync::Mutex;
use std::time::Duration;
use tokio::time::Instant;

/// Hands out start slots `1 / rate` seconds apart.
#[derive(Debug)]
pub struct Pacer {
    gap: Duration,
    next: Mutex<Option<Instant>>,
}

impl Pacer {
    /// A pacer for `starts_per_second` (at least 1).
    pub fn new(starts_per_second: u32) -> Pacer {
        Pacer {
            gap: Duration::from_secs(1) / starts_per_second.max(1),
            next: Mutex::new(None),
        }
    }

    /// Waits for this caller's slot: the first free one at or after now.
    pub async fn wait(&self) {
        let now = Instant::now();
        let slot = match self.next.lock() {
            Ok(mut next) => {
                let slot = next.map_or(now, |n| n.max(now));
                *next = Some(slot + self.gap);
                slot
            }
            Err(_) => now,
        };
        tokio::time::sleep_until(slot).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[tokio::test(start_paused = true)]
    async fn starts_that_fall_due_together_are_spread_over_the_second() {
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
        assert_eq!(started, [0, 250, 500, 750, 1000, 1250, 1500, 1750]);
        tokio::time::sleep(Duration::from_secs(5)).await;
        let idle = Instant::now();
        pacer.wait().await;
        assert_eq!(Instant::now(), idle, "an idle pacer does not delay");
    }
}
