//! What a job's runs need to tell the notifier. Nearly every run succeeds with only good checks
//! and no event, for a job that has no alert state: such a run would change nothing, so the
//! executor does not even build its report once the notifier has said that the job has no
//! state and no report of the job is still on its way.

use std::sync::atomic::{AtomicU32, AtomicU8, Ordering};

const NOT_KNOWN: u8 = 0;
const NO_STATE: u8 = 1;
const HAS_STATE: u8 = 2;

/// Kept in each job's [`JobState`](crate::scheduler::JobState): written by the notifier after it
/// handled a report of the job, read by the executor before it reports the next run.
#[derive(Debug, Default)]
pub struct AlertMemo {
    /// Whether the job has alert state, as of the last report handled; not known for a new job
    /// (it may have state from before a restart).
    state: AtomicU8,
    /// Reports of the job handed to the notifier and not handled yet.
    in_flight: AtomicU32,
}

impl AlertMemo {
    /// Whether a run that says nothing can go unreported: every report of the job was handled
    /// and the job had no alert state after the last one.
    pub fn quiet_run_needs_no_report(&self) -> bool {
        self.in_flight.load(Ordering::Acquire) == 0
            && self.state.load(Ordering::Acquire) == NO_STATE
    }

    /// A report of the job is on its way to the notifier.
    pub fn reporting(&self) {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
    }

    /// The notifier handled a report: `has_state` is the job's alert state after it (`None`:
    /// not known, e.g. the report was dropped or the state could not be written).
    pub fn handled(&self, has_state: Option<bool>) {
        let state = match has_state {
            Some(true) => HAS_STATE,
            Some(false) => NO_STATE,
            None => NOT_KNOWN,
        };
        self.state.store(state, Ordering::Release);
        self.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_quiet_run_goes_unreported_only_once_the_notifier_said_there_is_no_state() {
        let memo = AlertMemo::default();
        assert!(
            !memo.quiet_run_needs_no_report(),
            "a new job may have state"
        );
        memo.reporting();
        assert!(!memo.quiet_run_needs_no_report());
        memo.handled(Some(false));
        assert!(memo.quiet_run_needs_no_report());
        // A bad run is on its way: the quiet runs after it must reach the notifier (they end
        // the streak it may start).
        memo.reporting();
        memo.reporting();
        memo.handled(Some(false));
        assert!(
            !memo.quiet_run_needs_no_report(),
            "one report still in flight"
        );
        memo.handled(Some(true));
        assert!(!memo.quiet_run_needs_no_report(), "the job has state now");
        memo.reporting();
        memo.handled(None);
        assert!(
            !memo.quiet_run_needs_no_report(),
            "not known after a dropped report"
        );
    }
}
