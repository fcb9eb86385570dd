//! Per-host ICMP sequence numbers. Datagram sockets replace our identifier with their own, so
//! the sequence number is what tells two requests to the same host apart; a counter per host
//! that only moves forward from a random start keeps a late reply from matching a newer request.

use rustc_hash::FxHashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// A host's sequence counter is forgotten once it has gone unused for a whole sweep period
/// (between one and two periods after its last request). A reply that late is not expected;
/// forgetting only bounds memory for targets that come and go.
const SEQUENCE_SWEEP_PERIOD: Duration = Duration::from_secs(600);
/// How often (in allocations) the clock is read to see whether a sweep is due.
const SEQUENCE_CLOCK_EVERY: u64 = 4096;

/// Per-host sequence counters. A counter starts at a random value and only moves forward, so a
/// reply that arrives after its request was given up cannot match a later request to the same
/// host unless 65,536 requests to that host were sent in between.
pub struct SequenceBook {
    /// FxHash: a lookup a request, and SipHash of the address was most of it.
    hosts: FxHashMap<IpAddr, HostSequence>,
    allocations: u64,
    /// Incremented at every sweep; entries remember the generation of their last use.
    generation: u64,
    last_sweep: Instant,
}

struct HostSequence {
    next: u16,
    generation: u64,
}

impl Default for SequenceBook {
    fn default() -> Self {
        SequenceBook {
            hosts: FxHashMap::default(),
            allocations: 0,
            generation: 0,
            last_sweep: Instant::now(),
        }
    }
}

impl SequenceBook {
    /// The next sequence number for `host`.
    pub fn allocate(&mut self, host: IpAddr) -> u16 {
        self.allocations += 1;
        if self.allocations % SEQUENCE_CLOCK_EVERY == 0
            && self.last_sweep.elapsed() >= SEQUENCE_SWEEP_PERIOD
        {
            self.sweep();
        }
        let generation = self.generation;
        let entry = self.hosts.entry(host).or_insert_with(|| HostSequence {
            next: rand::random(),
            generation,
        });
        let seq = entry.next;
        entry.next = entry.next.wrapping_add(1);
        entry.generation = generation;
        seq
    }

    /// Forgets the hosts not used since the previous sweep.
    fn sweep(&mut self) {
        let previous = self.generation;
        self.hosts.retain(|_, host| host.generation >= previous);
        self.generation += 1;
        self.last_sweep = Instant::now();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sequence_numbers_per_host_never_repeat_among_recent_requests() {
        let mut book = SequenceBook::default();
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        let first_a = book.allocate(a);
        let _ = book.allocate(b);
        let mut seen = std::collections::HashSet::new();
        seen.insert(first_a);
        for _ in 1..65536 {
            assert!(
                seen.insert(book.allocate(a)),
                "a sequence number repeated early"
            );
        }
        assert_eq!(book.allocate(a), first_a, "the counter wraps after 65,536");
    }

    #[test]
    fn hosts_unused_for_a_sweep_period_are_forgotten() {
        let mut book = SequenceBook::default();
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        book.allocate(a);
        book.allocate(b);
        book.sweep();
        book.allocate(a);
        book.sweep();
        assert!(book.hosts.contains_key(&a), "used since the previous sweep");
        assert!(!book.hosts.contains_key(&b), "unused for a whole period");
    }
}
