//! Whether a sink or an upload endpoint is failing, so that its log says when it starts failing
//! and when it works again, not at every retry (the counters count every failure).

/// What one attempt's result changed.
#[derive(Debug, PartialEq)]
pub enum Turn {
    /// It worked, as before.
    Working,
    /// The first failure after working: log it.
    StartedFailing(String),
    /// Another failure (log at debug at most).
    StillFailing(String),
    /// It works again after failures that cost this much (sends, points).
    Recovered(u64),
}

/// The failures since it last worked, weighed by what each cost.
#[derive(Debug, Default)]
pub struct FailureStreak {
    cost: Option<u64>,
}

impl FailureStreak {
    /// Records one attempt; a failure adds `cost` to the streak.
    pub fn record(&mut self, result: Result<(), String>, cost: u64) -> Turn {
        match (result, self.cost.as_mut()) {
            (Ok(()), None) => Turn::Working,
            (Ok(()), Some(_)) => Turn::Recovered(self.cost.take().unwrap_or_default()),
            (Err(e), Some(total)) => {
                *total += cost;
                Turn::StillFailing(e)
            }
            (Err(e), None) => {
                self.cost = Some(cost);
                Turn::StartedFailing(e)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_turn_when_it_starts_failing_and_one_when_it_recovers() {
        let mut streak = FailureStreak::default();
        assert_eq!(streak.record(Ok(()), 1), Turn::Working);
        assert_eq!(
            streak.record(Err("503".into()), 3),
            Turn::StartedFailing("503".into())
        );
        assert_eq!(
            streak.record(Err("refused".into()), 2),
            Turn::StillFailing("refused".into())
        );
        assert_eq!(streak.record(Ok(()), 1), Turn::Recovered(5));
        assert_eq!(streak.record(Ok(()), 1), Turn::Working);
    }
}
