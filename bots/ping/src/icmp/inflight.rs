//! Requests in flight, keyed by (target address, sequence number), and the hand-over of what
//! the receive task matched to the task that waits for it: a slot in one map holds the outcome
//! and the waiter's `Waker`, so a reply costs no allocation and no channel.

use rustc_hash::FxHashMap;
use std::future::poll_fn;
use std::net::IpAddr;
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

#[derive(Default)]
struct Slot {
    arrival: Option<Arrival>,
    waker: Option<Waker>,
}

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
}

impl InFlight {
    fn lock(&self) -> MutexGuard<'_, FxHashMap<Key, Slot>> {
        // A poisoned lock only means a thread panicked between map operations; the map is whole.
        self.slots.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Registers a request under the first free key that `next_key` gives, trying at most
    /// `tries` keys; `None` when all were taken.
    pub fn register(
        &self,
        tries: u32,
        mut next_key: impl FnMut() -> Key,
    ) -> Option<Registration<'_>> {
        let mut slots = self.lock();
        for _ in 0..tries {
            let key = next_key();
            if let std::collections::hash_map::Entry::Vacant(entry) = slots.entry(key) {
                entry.insert(Slot::default());
                return Some(Registration { table: self, key });
            }
        }
        None
    }

    /// Takes a batch of arrivals under one lock. Returns how many matched a request in flight
    /// that had no arrival yet; the others are late, duplicate or not ours.
    pub fn deliver(&self, arrivals: impl IntoIterator<Item = (Key, Arrival)>) -> (u64, u64) {
        let (mut matched, mut unmatched) = (0, 0);
        let mut slots = self.lock();
        for (key, arrival) in arrivals {
            match slots.get_mut(&key) {
                Some(slot) if slot.arrival.is_none() => {
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

    /// Requests in flight now.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether nothing is in flight.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Registration<'_> {
    /// Waits for what arrives for this request (bound it with a timeout).
    pub async fn arrival(&self) -> Arrival {
        poll_fn(|cx| {
            let mut slots = self.table.lock();
            let Some(slot) = slots.get_mut(&self.key) else {
                // Unreachable while the registration lives; wait for the timeout rather than panic.
                return Poll::Pending;
            };
            match slot.arrival {
                Some(arrival) => Poll::Ready(arrival),
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
        self.table.lock().remove(&self.key);
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
        let first = table.register(4, || (host, 10)).expect("free");
        let second = table
            .register(4, || {
                next += 1;
                (host, next - 1)
            })
            .expect("skips the taken key");
        assert_eq!(second.key, (host, 11));
        assert!(table.register(1, || (host, 10)).is_none());
        let reply = Arrival::Reply {
            kernel_time_ns: Some(5),
        };
        assert_eq!(
            table.deliver([
                ((host, 11), reply),
                ((host, 11), reply),
                ((host, 12), reply)
            ]),
            (1, 2)
        );
        assert_eq!(second.arrival().await, reply);
        drop(second);
        drop(first);
        assert!(table.is_empty());
    }
}
