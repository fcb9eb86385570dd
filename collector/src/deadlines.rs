//! Deadlines for many waits at once, kept by one timer: the time limit of every run, or of every
//! ICMP echo request, without a tokio timer each.
//!
//! A tokio `timeout` registers a timer in the runtime's wheel at its first poll and removes it
//! when dropped, each time under the driver's lock; at 10,000 runs a second that was about 2 % of
//! the ping bot's CPU. Here a wait is an entry pushed on a queue and marked when it ends, under
//! one short lock, and a single task ([`Deadlines::start_keeping`]) sleeps until the earliest
//! deadline.
//!
//! The waits of one length are started in time order, so each length's queue is sorted by
//! deadline as it grows: the earliest deadline of a queue is near its front, and entries leave it
//! from the front. Lengths are few (a bot's job intervals, a ping timeout), one queue each.

use std::collections::VecDeque;
use std::future::{poll_fn, Future};
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};
use std::time::Duration;
use tokio::time::Instant;
use tokio_util::task::AbortOnDropHandle;

/// The waits in progress and the expiry task's wake-up.
#[derive(Default)]
pub struct Deadlines {
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    queues: Vec<Queue>,
    /// What the expiry task sleeps until (`None`: nothing to wait for), and its waker.
    armed: Option<Instant>,
    expiry: Option<Waker>,
}

/// The waits of one length, in the order they started (so in deadline order).
struct Queue {
    length: Duration,
    /// The number of `entries[0]`: a wait's number never changes, its entry is at
    /// `number - first`.
    first: u64,
    entries: VecDeque<Entry>,
    /// The number of the first entry the expiry task has not passed yet: those before it ended
    /// or expired.
    unexpired: u64,
}

struct Entry {
    at: Instant,
    stage: Stage,
}

enum Stage {
    /// Running, with the waker of the task to tell when the deadline passes.
    Waiting(Option<Waker>),
    /// The deadline passed while the wait was in progress.
    Expired,
    /// The wait is over (its [`Wait`] was dropped).
    Ended,
}

/// One wait in progress: its deadline is `length` after [`Deadlines::start`]. Dropping it ends it.
pub struct Wait<'a> {
    deadlines: &'a Deadlines,
    queue: usize,
    number: u64,
}

/// The task that keeps a set of deadlines (see [`Deadlines::start_keeping`]); dropping it ends
/// the task.
pub struct Expiry {
    _task: AbortOnDropHandle<()>,
}

pin_project_lite::pin_project! {
    /// The future of [`Deadlines::limit`]. A type of its own rather than an `async fn`'s, which
    /// would keep its arguments twice: it lives inside every run's task, and the task is moved
    /// whole as it is spawned and as it ends.
    pub struct Limited<'a, F> {
        deadlines: &'a Deadlines,
        length: Duration,
        wait: Option<Wait<'a>>,
        #[pin]
        future: F,
    }
}

impl<F: Future> Future for Limited<'_, F> {
    type Output = Result<F::Output, Elapsed>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        // The first poll starts the wait with this task's waker, which the deadline wakes:
        // nothing to check after the future's first poll.
        let started = this.wait.is_none();
        let wait = this
            .wait
            .get_or_insert_with(|| this.deadlines.start_waking(*this.length, Some(cx.waker())));
        if let Poll::Ready(output) = this.future.poll(cx) {
            return Poll::Ready(Ok(output));
        }
        if started {
            return Poll::Pending;
        }
        wait.poll_expired(cx).map(|()| Err(Elapsed))
    }
}

/// The error of [`Deadlines::limit`]: the deadline passed first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Elapsed;

impl Deadlines {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A poisoned lock only means a thread panicked between plain updates of the queues.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Starts a wait that expires `length` from now.
    pub fn start(&self, length: Duration) -> Wait<'_> {
        self.start_waking(length, None)
    }

    /// [`Deadlines::start`], with the waker to wake at the deadline given at once: one turn of
    /// the lock instead of two.
    fn start_waking(&self, length: Duration, waker: Option<&Waker>) -> Wait<'_> {
        let mut state = self.lock();
        let now = Instant::now();
        // A length too long to add is as good as thirty years, as with tokio's timers.
        let at = now
            .checked_add(length)
            .unwrap_or_else(|| now + Duration::from_secs(30 * 365 * 86_400));
        let queue = match state.queues.iter().position(|q| q.length == length) {
            Some(queue) => queue,
            None => {
                state.queues.push(Queue {
                    length,
                    first: 0,
                    entries: VecDeque::new(),
                    unexpired: 0,
                });
                state.queues.len() - 1
            }
        };
        let q = &mut state.queues[queue];
        let number = q.first + q.entries.len() as u64;
        q.entries.push_back(Entry {
            at,
            stage: Stage::Waiting(waker.cloned()),
        });
        if state.armed.is_none_or(|armed| at < armed) {
            state.armed = Some(at);
            if let Some(expiry) = state.expiry.take() {
                expiry.wake();
            }
        }
        Wait {
            deadlines: self,
            queue,
            number,
        }
    }

    /// Runs `future` for at most `length`: `Err(Elapsed)` (and `future` dropped) if the
    /// deadline passes first, as `tokio::time::timeout` does. The deadline counts from the
    /// first poll.
    pub fn limit<F: Future>(&self, length: Duration, future: F) -> Limited<'_, F> {
        Limited {
            deadlines: self,
            length,
            wait: None,
            future,
        }
    }

    /// Makes a set of deadlines and starts the one task that keeps them; the task ends when the
    /// returned [`Expiry`] is dropped. Must be called inside a Tokio runtime.
    pub fn start_keeping() -> (Arc<Deadlines>, Expiry) {
        let deadlines = Arc::new(Deadlines::default());
        let task = tokio::spawn({
            let deadlines = deadlines.clone();
            async move { deadlines.expire().await }
        });
        (
            deadlines,
            Expiry {
                _task: AbortOnDropHandle::new(task),
            },
        )
    }

    /// Ends the waits whose deadline passed, for as long as it runs: the body of the task of
    /// [`Deadlines::start_keeping`].
    async fn expire(&self) {
        let mut timer = std::pin::pin!(tokio::time::sleep(Duration::ZERO));
        loop {
            let next = self.expire_due(Instant::now());
            if let Some(at) = next {
                timer.as_mut().reset(at);
            }
            poll_fn(|cx| {
                if next.is_some() && timer.as_mut().poll(cx).is_ready() {
                    return Poll::Ready(());
                }
                // A deadline earlier than the one slept for started since: `start` wakes this
                // task, and this check covers a start between `expire_due` and here.
                let mut state = self.lock();
                if state
                    .armed
                    .is_some_and(|armed| next.is_none_or(|at| armed < at))
                {
                    return Poll::Ready(());
                }
                state.expiry = Some(cx.waker().clone());
                Poll::Pending
            })
            .await
        }
    }

    /// Marks the waits due at `now` expired and wakes them; returns the next deadline.
    fn expire_due(&self, now: Instant) -> Option<Instant> {
        let mut state = self.lock();
        let mut next: Option<Instant> = None;
        for q in &mut state.queues {
            while let Some(entry) = q.entries.get_mut((q.unexpired - q.first) as usize) {
                match &mut entry.stage {
                    Stage::Ended => {}
                    Stage::Expired => {}
                    Stage::Waiting(_) if entry.at > now => {
                        next = Some(next.map_or(entry.at, |n| n.min(entry.at)));
                        break;
                    }
                    Stage::Waiting(waker) => {
                        if let Some(waker) = waker.take() {
                            waker.wake();
                        }
                        entry.stage = Stage::Expired;
                    }
                }
                q.unexpired += 1;
            }
        }
        state.armed = next;
        next
    }

    /// Waits in progress, expired or not (tests).
    #[cfg(test)]
    fn in_progress(&self) -> usize {
        self.lock()
            .queues
            .iter()
            .flat_map(|q| &q.entries)
            .filter(|e| !matches!(e.stage, Stage::Ended))
            .count()
    }

    /// Entries kept, ended ones included (tests).
    #[cfg(test)]
    fn kept(&self) -> usize {
        self.lock().queues.iter().map(|q| q.entries.len()).sum()
    }
}

impl Wait<'_> {
    /// `Ready` once the deadline passed; else registers `cx`'s waker to be woken then.
    pub fn poll_expired(&self, cx: &mut Context<'_>) -> Poll<()> {
        let mut state = self.deadlines.lock();
        let q = &mut state.queues[self.queue];
        let Some(entry) = q.entries.get_mut((self.number - q.first) as usize) else {
            return Poll::Ready(());
        };
        match &mut entry.stage {
            Stage::Waiting(waker) => {
                if !waker.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                    *waker = Some(cx.waker().clone());
                }
                Poll::Pending
            }
            Stage::Expired | Stage::Ended => Poll::Ready(()),
        }
    }

    /// Waits until the deadline passed.
    pub async fn expired(&self) {
        poll_fn(|cx| self.poll_expired(cx)).await
    }
}

impl Drop for Wait<'_> {
    fn drop(&mut self) {
        let mut state = self.deadlines.lock();
        let q = &mut state.queues[self.queue];
        if let Some(entry) = q.entries.get_mut((self.number - q.first) as usize) {
            entry.stage = Stage::Ended;
        }
        // Waits end about in the order they started: the ended ones leave from the front.
        while q
            .entries
            .front()
            .is_some_and(|e| matches!(e.stage, Stage::Ended))
        {
            q.entries.pop_front();
            q.first += 1;
        }
        q.unexpired = q.unexpired.max(q.first);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `future`, or a failed test if it is not done within a minute (of paused time): a wait
    /// that nothing wakes must fail the test, not hang it.
    async fn within_a_minute<T>(future: impl Future<Output = T>) -> T {
        tokio::time::timeout(Duration::from_secs(60), future)
            .await
            .expect("not done within a minute")
    }

    #[tokio::test(start_paused = true)]
    async fn a_wait_expires_at_its_deadline_and_one_that_ends_first_leaves_nothing() {
        let (deadlines, _expiry) = Deadlines::start_keeping();
        let begin = Instant::now();
        let slow = deadlines.limit(Duration::from_millis(300), std::future::pending::<()>());
        assert_eq!(within_a_minute(slow).await, Err(Elapsed));
        assert_eq!(Instant::now() - begin, Duration::from_millis(300));

        let quick = deadlines.limit(Duration::from_millis(300), async {
            tokio::time::sleep(Duration::from_millis(10)).await;
            7
        });
        assert_eq!(within_a_minute(quick).await, Ok(7));
        assert_eq!(deadlines.kept(), 0, "ended waits leave the queue");
    }

    #[tokio::test(start_paused = true)]
    async fn waits_of_several_lengths_expire_in_deadline_order() {
        let (deadlines, _expiry) = Deadlines::start_keeping();
        let begin = Instant::now();
        let ends = Arc::new(Mutex::new(Vec::new()));
        let mut tasks = Vec::new();
        // A long wait first, then shorter ones: the expiry task is woken for the earlier ones.
        for ms in [500u64, 100, 300, 100, 50] {
            let (deadlines, ends) = (deadlines.clone(), ends.clone());
            tasks.push(tokio::spawn(async move {
                let wait = deadlines.start(Duration::from_millis(ms));
                wait.expired().await;
                ends.lock()
                    .unwrap()
                    .push((ms, (Instant::now() - begin).as_millis()));
            }));
            tokio::task::yield_now().await;
        }
        for task in tasks {
            within_a_minute(task).await.unwrap();
        }
        assert_eq!(
            *ends.lock().unwrap(),
            [(50, 50), (100, 100), (100, 100), (300, 300), (500, 500)]
        );
        assert_eq!(deadlines.in_progress(), 0);
        assert_eq!(deadlines.kept(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn an_early_wait_that_goes_on_does_not_keep_later_ones_from_expiring() {
        let (deadlines, _expiry) = Deadlines::start_keeping();
        let long = deadlines.start(Duration::from_secs(1));
        let ended = deadlines.start(Duration::from_secs(1));
        drop(ended);
        tokio::time::sleep(Duration::from_millis(10)).await;
        let later = deadlines.start(Duration::from_secs(1));
        assert_eq!(deadlines.kept(), 3, "the first wait still runs");
        within_a_minute(later.expired()).await;
        let mut cx = Context::from_waker(Waker::noop());
        assert_eq!(long.poll_expired(&mut cx), Poll::Ready(()), "expired first");
        drop(long);
        drop(later);
        assert_eq!(deadlines.kept(), 0);
    }
}
