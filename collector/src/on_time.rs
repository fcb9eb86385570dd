//! Waking at a due second to the tens of microseconds, not to the millisecond or two.
//!
//! tokio's timer counts whole milliseconds: it rounds a deadline up to the next one, and its
//! driver then sleeps whole milliseconds, so a wait for the start of a second ends 1-2 ms into
//! it. A burst of due jobs is handed out from that moment, and every job of the burst starts
//! that much later. A `timerfd` is woken by the kernel's high-resolution timers (within the
//! thread's timer slack, 50 µs by default), and tokio's reactor waits for it like a socket.
//!
//! The wait races the `timerfd` against tokio's own timer for the same deadline. On the real
//! clock the `timerfd` wins; under a test's paused clock tokio's timer wins at once, as the
//! runtime moves its clock to the next deadline, so tests keep their simulated time.

use nix::sys::time::TimeSpec;
use nix::sys::timerfd::{ClockId, Expiration, TimerFd, TimerFlags, TimerSetTimeFlags};
use std::os::fd::{AsFd, AsRawFd, RawFd};
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;
use tokio::time::Instant;

/// Waits for instants on a `timerfd` of its own (made at the first wait), falling back to
/// tokio's timer alone where none can be made.
#[derive(Default)]
pub struct OnTime {
    timer: Option<AsyncFd<Timer>>,
    /// Set once making the `timerfd` failed: not tried again, not logged again.
    unavailable: bool,
}

/// A `timerfd` that tokio's reactor can watch.
struct Timer(TimerFd);

impl AsRawFd for Timer {
    fn as_raw_fd(&self) -> RawFd {
        self.0.as_fd().as_raw_fd()
    }
}

impl OnTime {
    /// Waits until `deadline`. Cancel-safe: a later wait re-arms the timer, which also clears
    /// an expiry nobody waited for.
    pub async fn sleep_until(&mut self, deadline: Instant) {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return;
        }
        let Some(timer) = self.timer() else {
            return tokio::time::sleep_until(deadline).await;
        };
        if let Err(err) = timer.get_ref().0.set(
            Expiration::OneShot(TimeSpec::from_duration(left)),
            TimerSetTimeFlags::empty(),
        ) {
            tracing::debug!(%err, "cannot arm the timerfd; waking with tokio's timer");
            return tokio::time::sleep_until(deadline).await;
        }
        tokio::select! {
            biased;
            () = expiry(timer) => {}
            () = tokio::time::sleep_until(deadline) => {}
        }
    }

    fn timer(&mut self) -> Option<&AsyncFd<Timer>> {
        if self.timer.is_none() && !self.unavailable {
            let made = TimerFd::new(
                ClockId::CLOCK_MONOTONIC,
                TimerFlags::TFD_NONBLOCK | TimerFlags::TFD_CLOEXEC,
            )
            .map_err(std::io::Error::from)
            .and_then(|timer| {
                // SAFETY: the descriptor is the `TimerFd`'s, which the `AsyncFd` owns; it stays
                // open and is never replaced while registered.
                unsafe { AsyncFd::register_with_interest(Timer(timer), Interest::READABLE) }
                    .map_err(std::io::Error::from)
            });
            match made {
                Ok(timer) => self.timer = Some(timer),
                Err(err) => {
                    tracing::debug!(%err, "no timerfd; due seconds wake with tokio's timer");
                    self.unavailable = true;
                }
            }
        }
        self.timer.as_ref()
    }
}

/// Resolves when the armed `timerfd` has expired. A read error other than "not yet" ends the
/// wait too; tokio's timer, raced against it, is then only a millisecond or two away anyway.
async fn expiry(timer: &AsyncFd<Timer>) {
    loop {
        let Ok(mut ready) = timer.readable().await else {
            return std::future::pending().await;
        };
        let read = ready.try_io(|timer| {
            nix::unistd::read(timer.get_ref().0.as_fd(), &mut [0u8; 8])
                .map_err(std::io::Error::from)
        });
        match read {
            Ok(Ok(_)) => return,
            Ok(Err(err)) if err.kind() == std::io::ErrorKind::Interrupted => {}
            Ok(Err(_)) => return std::future::pending().await,
            Err(_not_yet) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// Waits for 2.3 ms from now `rounds` times each way, in turn (so that a busy host slows
    /// both alike), and returns the median lateness of each: ours, tokio's.
    async fn median_lateness(rounds: usize) -> (Duration, Duration) {
        let mut on_time = OnTime::default();
        let (mut ours, mut tokio) = (Vec::new(), Vec::new());
        for _ in 0..rounds {
            let deadline = Instant::now() + Duration::from_micros(2_300);
            on_time.sleep_until(deadline).await;
            let woke = Instant::now();
            assert!(woke >= deadline, "never early");
            ours.push(woke - deadline);
            let deadline = Instant::now() + Duration::from_micros(2_300);
            tokio::time::sleep_until(deadline).await;
            tokio.push(Instant::now() - deadline);
        }
        assert!(on_time.timer.is_some(), "a timerfd was made");
        ours.sort();
        tokio.sort();
        (ours[rounds / 2], tokio[rounds / 2])
    }

    #[tokio::test]
    async fn wakes_closer_to_the_deadline_than_tokios_timer() {
        let (ours, tokio) = median_lateness(30).await;
        // tokio's timer alone is 1-2 ms late (whole milliseconds); ours tens of microseconds.
        assert!(
            ours + Duration::from_micros(400) < tokio,
            "median lateness: ours {ours:?}, tokio's {tokio:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_paused_clock_keeps_its_simulated_time() {
        let mut on_time = OnTime::default();
        let deadline = Instant::now() + Duration::from_secs(3600);
        let real = std::time::Instant::now();
        on_time.sleep_until(deadline).await;
        assert_eq!(Instant::now(), deadline, "woken at the simulated deadline");
        assert!(
            real.elapsed() < Duration::from_secs(5),
            "without waiting an hour"
        );
    }

    #[tokio::test]
    async fn a_cancelled_wait_does_not_wake_the_next_early() {
        let mut on_time = OnTime::default();
        let first = Instant::now() + Duration::from_millis(5);
        let cancelled =
            tokio::time::timeout(Duration::from_millis(1), on_time.sleep_until(first)).await;
        assert!(cancelled.is_err());
        tokio::time::sleep(Duration::from_millis(10)).await;
        let deadline = Instant::now() + Duration::from_millis(20);
        on_time.sleep_until(deadline).await;
        assert!(
            Instant::now() >= deadline,
            "the first wait's expiry did not count"
        );
    }
}
