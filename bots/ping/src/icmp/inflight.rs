//! Requests in flight, keyed by (target address, sequence number), and the hand-over of what
//! the receive task matched to the task that waits for it: a slot in one map holds the outcome
//! and the waiter's `Waker`, so a reply costs no allocation and no channel.
//!
//! Each request also carries a token of its own at the start of its payload, which the reply
//! echoes: a reply is taken only by the request whose token it carries, so a late reply never
//! answers a later request that happens to have the same address and sequence number.

use rustc_hash::FxHashMap;
use std::future::poll_fn;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::task::{Poll, Waker};

/// What arrived for a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arrival {
    /// Its echo reply, with the kernel's receive time (`CLOCK_REALTIME`, ns) if it had one.
    Reply { kernel_time_ns: Option<i64> },
    /// An ICMP error quoting it, sent by `from`.
    Error {
        from: IpAddr,
        icmp_type: u8,
        code: u8,
    },
}

/// A request's identity: where it went and its sequence number.
pub type Key = (IpAddr, u16);

struct Slot {
    /// What the request's payload starts with, and its reply's.
    token: u64,
    arrival: Option<Arrival>,
    waker: Option<Waker>,
}

/// Something received about a request: its key, the token it carries when it carries one (an
/// ICMP error may quote too little of the request), and what it says.
pub type Identified = (Key, Option<u64>, Arrival);

/// The table of requests in flight, shared by the senders and the receive tasks.
#[derive(Default)]
pub struct InFlight {
    /// FxHash: SipHash of the four map operations of every ping was a visible part of the
    /// bot's CPU, and keys are our own sequence numbers, not chosen by others.
    slots: Mutex<FxHashMap<Key, Slot>>,
}

/// A request's place in the table; dropping it (reply, timeout or cancelled run) frees it.
pub struct Registration<'a> {
    table: &'a InFlight,
    pub key: Key,
    pub token: u64,
    /// The waker given at registration, as [`Waker::will_wake`] compares it (data and vtable
    /// addresses): a first wait from that task needs no turn of the lock.
    registered_waker: (usize, usize),
    /// The slot was taken with its arrival, so dropping has nothing to free.
    taken: AtomicBool,
}

/// What [`Waker::will_wake`] compares, as plain numbers.
fn waker_identity(waker: &Waker) -> (usize, usize) {
    (
        waker.data() as usize,
        std::ptr::from_ref(waker.vtable()) as usize,
    )
}

impl InFlight {
    fn lock(&self) -> MutexGuard<'_, FxHashMap<Key, Slot>> {
        // A poisoned lock only means a thread panicked between map operations; the map is whole.
        self.slots.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Registers a request under the first free key that `next` gives (with the request's
    /// token), trying at most `tries` keys; `None` when all were taken. `waker` is woken when
    /// something arrives for it: the task that will wait with [`Registration::arrival`].
    pub fn register(
        &self,
        tries: u32,
        mut next: impl FnMut() -> (Key, u64),
        waker: &Waker,
    ) -> Option<Registration<'_>> {
        let mut slots = self.lock();
        for _ in 0..tries {
            let (key, token) = next();
            if let std::collections::hash_map::Entry::Vacant(entry) = slots.entry(key) {
                entry.insert(Slot {
                    token,
                    arrival: None,
                    waker: Some(waker.clone()),
                });
                return Some(Registration {
                    table: self,
                    key,
                    token,
                    registered_waker: waker_identity(waker),
                    taken: AtomicBool::new(false),
                });
            }
        }
        None
    }

    /// Hands each arrival to its request, if one is in flight under its key, carries the same
    /// token and has nothing yet. Returns how many were matched and how many were not (late,
    /// duplicate, or not ours).
    pub fn deliver(&self, arrivals: impl IntoIterator<Item = Identified>) -> (u64, u64) {
        let (mut matched, mut unmatched) = (0, 0);
        let mut slots = self.lock();
        for (key, token, arrival) in arrivals {
            match slots.get_mut(&key) {
                Some(slot)
                    if slot.arrival.is_none() && token.is_none_or(|token| token == slot.token) =>
                {
                    slot.arrival = Some(arrival);
                    if let Some(waker) = slot.waker.take() {
                        waker.wake();
                    }
                    matched += 1;
                }
                _ => unmatched += 1,
            }
        }
        (matched, unmatched)
    }

    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether nothing is in flight.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Registration<'_> {
    /// Waits for what arrives for this request (bound it with a deadline). Once: what arrived
    /// is taken, and the slot freed with it.
    pub async fn arrival(&self) -> Arrival {
        let mut first = true;
        poll_fn(|cx| {
            // The slot wakes the registering task when something arrives, even before this
            // first poll: that task need not look yet.
            if std::mem::take(&mut first) && waker_identity(cx.waker()) == self.registered_waker {
                return Poll::Pending;
            }
            let mut slots = self.table.lock();
            let Some(slot) = slots.get_mut(&self.key) else {
                // Unreachable while the registration lives; wait for the timeout rather than panic.
                return Poll::Pending;
            };
            match slot.arrival {
                Some(arrival) => {
                    slots.remove(&self.key);
                    self.taken.store(true, Ordering::Relaxed);
                    Poll::Ready(arrival)
                }
                None => {
                    match &slot.waker {
                        Some(waker) if waker.will_wake(cx.waker()) => {}
                        _ => slot.waker = Some(cx.waker().clone()),
                    }
                    Poll::Pending
                }
            }
        })
        .await
    }
}

impl Drop for Registration<'_> {
    fn drop(&mut self) {
        if !self.taken.load(Ordering::Relaxed) {
            self.table.lock().remove(&self.key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_arrival_reaches_its_waiter_once_and_a_dropped_registration_frees_its_key() {
        let table = InFlight::default();
        let host: IpAddr = "192.0.2.1".parse().unwrap();
        let mut next = 10u16;
        let first = table
            .register(4, || ((host, 10), 100), Waker::noop())
            .expect("free");
        let second = table
            .register(
                4,
                || {
                    next += 1;
                    ((host, next - 1), 200)
                },
                Waker::noop(),
            )
            .expect("skips the taken key");
        assert_eq!((second.key, second.token), ((host, 11), 200));
        assert!(table
            .register(1, || ((host, 10), 300), Waker::noop())
            .is_none());
        let reply = Arrival::Reply {
            kernel_time_ns: Some(5),
        };
        assert_eq!(
            table.deliver([
                ((host, 11), Some(200), reply),
                ((host, 11), Some(200), reply),
                ((host, 12), Some(200), reply)
            ]),
            (1, 2)
        );
        assert_eq!(second.arrival().await, reply);
        drop(second);
        drop(first);
        assert!(table.is_empty());
    }

    #[tokio::test]
    async fn what_arrives_before_the_registering_task_first_waits_wakes_it_and_frees_the_slot() {
        let table = InFlight::default();
        let host: IpAddr = "192.0.2.1".parse().unwrap();
        let request =
            poll_fn(|cx| Poll::Ready(table.register(1, || ((host, 3), 9), cx.waker()))).await;
        let request = request.expect("free");
        let reply = Arrival::Reply {
            kernel_time_ns: Some(2),
        };
        assert_eq!(table.deliver([((host, 3), Some(9), reply)]), (1, 0));
        // Not `timeout`, which would poll the arrival again when it gives up.
        let arrived = tokio::select! {
            biased;
            () = tokio::time::sleep(std::time::Duration::from_secs(2)) => None,
            arrival = request.arrival() => Some(arrival),
        };
        assert_eq!(arrived, Some(reply), "the arrival woke its task");
        assert!(table.is_empty(), "taking the arrival freed the slot");
        drop(request);
        assert!(table.is_empty());
    }

    #[tokio::test]
    async fn a_reply_with_another_token_is_not_taken_but_an_error_without_one_is() {
        let table = InFlight::default();
        let host: IpAddr = "192.0.2.1".parse().unwrap();
        let request = table
            .register(1, || ((host, 7), 42), Waker::noop())
            .expect("free");
        let late = Arrival::Reply {
            kernel_time_ns: Some(1),
        };
        // The reply to an earlier request given up under the same key: not this one's.
        assert_eq!(table.deliver([((host, 7), Some(41), late)]), (0, 1));
        let error = Arrival::Error {
            from: "198.51.100.1".parse().unwrap(),
            icmp_type: 3,
            code: 1,
        };
        assert_eq!(table.deliver([((host, 7), None, error)]), (1, 0));
        assert_eq!(request.arrival().await, error);
    }
}
