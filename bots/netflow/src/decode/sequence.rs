//! Sequence numbers per exporter and domain: gaps counted and logged, resets, and the numbering
//! convention each exporter follows.

use super::sets::Sampling;
use super::{Decoder, DomainKey};
use std::time::{Duration, Instant};

/// Per exporter and domain: sequence tracking, the sampling rate, and log rate limits.
#[derive(Debug)]
pub(super) struct DomainState {
    /// The last datagram's sequence number and units (flow records; flow and options records).
    pub(super) last_sequence: Option<(u32, u32, u32)>,
    /// Which numbering the exporter follows, learnt from the last match (see [`expected`]).
    pub(super) convention: usize,
    pub(super) sampling: Sampling,
    pub(super) missing_since_log: u64,
    pub(super) last_gap_log: Option<Instant>,
    pub(super) dropped_since_log: u64,
    pub(super) last_drop_log: Option<Instant>,
}

impl Default for DomainState {
    fn default() -> Self {
        DomainState {
            last_sequence: None,
            convention: 0,
            sampling: Sampling::NONE,
            missing_since_log: 0,
            last_gap_log: None,
            dropped_since_log: 0,
            last_drop_log: None,
        }
    }
}

/// How often one exporter/domain may log the same kind of warning.
pub(super) const LOG_EVERY: Duration = Duration::from_secs(60);

/// The sequence numbers a datagram may carry after `previous` (sequence, flow records, all
/// records), by numbering convention: [0] the standard one (v5 records, v9 datagrams, IPFIX
/// data records sent before this message); for IPFIX also [1] without options records, and
/// [2], [3] counting this message's own records (softflowd 1.1 numbers IPFIX that way).
pub(super) fn expected(
    version: u16,
    previous: (u32, u32, u32),
    units: (u32, u32),
) -> [Option<u32>; 4] {
    let (sequence, prev_flows, prev_all) = previous;
    if version != 10 {
        return [Some(sequence.wrapping_add(prev_all)), None, None, None];
    }
    [
        Some(sequence.wrapping_add(prev_all)),
        Some(sequence.wrapping_add(prev_flows)),
        Some(sequence.wrapping_add(units.1)),
        Some(sequence.wrapping_add(units.0)),
    ]
}

impl Decoder {
    pub(super) fn domain_state(&mut self, key: DomainKey) -> Option<&mut DomainState> {
        if !self.domains.contains_key(&key) && self.domains.len() >= self.limits.max_domains {
            return None;
        }
        Some(self.domains.entry(key).or_default())
    }

    /// Checks a datagram's sequence number against the previous one of its exporter and domain.
    /// `units` is what this datagram counts for (v5: records; v9: 1; IPFIX: flow records and
    /// flow plus options records), `None` if unknown (then tracking restarts).
    pub(super) fn track_sequence(
        &mut self,
        key: DomainKey,
        sequence: u32,
        units: Option<(u32, u32)>,
        now: Instant,
    ) {
        let Some(state) = self.domain_state(key) else {
            return;
        };
        let previous = state.last_sequence;
        state.last_sequence = units.map(|(flows, all)| (sequence, flows, all));
        let (Some(previous), Some(units)) = (previous, units) else {
            return;
        };
        let candidates = expected(key.version, previous, units);
        if candidates[state.convention] == Some(sequence) {
            return;
        }
        // Several conventions agree whenever two datagrams carry as many records; switch only
        // when the one in use does not fit.
        if let Some(matched) = candidates.iter().position(|&c| c == Some(sequence)) {
            state.convention = matched;
            return;
        }
        let Some(expected) = candidates[state.convention].or(candidates[0]) else {
            return;
        };
        let ahead = sequence.wrapping_sub(expected);
        if ahead < 1 << 31 {
            state.missing_since_log += u64::from(ahead);
            let log_now = state
                .last_gap_log
                .is_none_or(|t| now.duration_since(t) >= LOG_EVERY);
            if log_now {
                tracing::warn!(
                    exporter = %key.exporter,
                    domain = key.domain,
                    version = key.version,
                    "sequence gap: {} {} missing (lost on the way or by the exporter)",
                    state.missing_since_log,
                    if key.version == 9 { "datagrams" } else { "records" }
                );
                state.missing_since_log = 0;
                state.last_gap_log = Some(now);
            }
            self.stats.sequence_gaps += 1;
            self.stats.sequence_missing += u64::from(ahead);
        } else {
            self.stats.sequence_resets += 1;
        }
    }
}
