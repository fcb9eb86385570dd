//! Task records: one structured record per firing (job, entity, trigger time, start, end, wait,
//! run and total cost, status), as a log line and, when asked, as values in Grafolean itself so a
//! bot's own health can be charted next to what it measures.

use crate::executor::Outcome;
use crate::value::Value;

/// What one firing cost and how it ended. Times are Unix seconds.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskRecord<'a> {
    pub job: &'a str,
    pub entity: Option<u64>,
    /// The second the firing was due.
    pub trigger: u64,
    pub start: f64,
    pub end: f64,
    pub outcome: Outcome,
}

impl TaskRecord<'_> {
    /// Due time to start: time spent waiting for the timer and for a free slot.
    pub fn wait_cost(&self) -> f64 {
        (self.start - self.trigger as f64).max(0.0)
    }

    pub fn run_cost(&self) -> f64 {
        (self.end - self.start).max(0.0)
    }

    pub fn total_cost(&self) -> f64 {
        (self.end - self.trigger as f64).max(0.0)
    }
}

/// Where task records go, from the settings.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TaskRecords {
    /// Log every record at INFO (otherwise at DEBUG).
    pub log: bool,
    /// Also emit them as values under `<prefix>.job.<job id>.*`.
    pub prefix: Option<String>,
}

/// A job id as one path segment: characters the backend refuses become `_`
/// (`aggr/1min/5` -> `aggr_1min_5`).
pub fn job_segment(job: &str) -> String {
    job.chars()
        .map(|c| match c {
            'A'..='Z' | 'a'..='z' | '0'..='9' | '_' | '-' => c,
            _ => '_',
        })
        .collect()
}

impl TaskRecords {
    /// Logs the record and, with a prefix, appends it to the firing's values.
    pub fn emit(&self, record: &TaskRecord<'_>, values: &mut Vec<Value>) {
        macro_rules! record {
            ($level:ident) => {
                tracing::$level!(
                    job = record.job,
                    entity = record.entity,
                    trigger = record.trigger,
                    start = record.start,
                    end = record.end,
                    wait_cost = record.wait_cost(),
                    run_cost = record.run_cost(),
                    total_cost = record.total_cost(),
                    status = record.outcome.as_str(),
                    "task record"
                )
            };
        }
        if self.log {
            record!(info);
        } else {
            record!(debug);
        }
        if let Some(prefix) = &self.prefix {
            let base = format!("{prefix}.job.{}", job_segment(record.job));
            let ok = if record.outcome == Outcome::Success {
                1.0
            } else {
                0.0
            };
            values.push(Value::new(format!("{base}.success"), ok));
            if record.outcome != Outcome::Skip {
                values.push(Value::new(format!("{base}.wait_cost"), record.wait_cost()));
                values.push(Value::new(format!("{base}.run_cost"), record.run_cost()));
                values.push(Value::new(
                    format!("{base}.total_cost"),
                    record.total_cost(),
                ));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::value::path_problem;

    #[test]
    fn records_become_valid_values_under_the_prefix() {
        let records = TaskRecords {
            log: false,
            prefix: Some("bot.ping".into()),
        };
        let record = TaskRecord {
            job: "aggr/1min/5",
            entity: None,
            trigger: 100,
            start: 100.5,
            end: 102.0,
            outcome: Outcome::Success,
        };
        let mut values = Vec::new();
        records.emit(&record, &mut values);
        let expected = vec![
            Value::new("bot.ping.job.aggr_1min_5.success", 1.0),
            Value::new("bot.ping.job.aggr_1min_5.wait_cost", 0.5),
            Value::new("bot.ping.job.aggr_1min_5.run_cost", 1.5),
            Value::new("bot.ping.job.aggr_1min_5.total_cost", 2.0),
        ];
        assert_eq!(values, expected);
        assert!(values.iter().all(|v| path_problem(&v.path).is_none()));
        let mut skipped = Vec::new();
        let skip = TaskRecord {
            outcome: Outcome::Skip,
            ..record
        };
        records.emit(&skip, &mut skipped);
        assert_eq!(
            skipped,
            vec![Value::new("bot.ping.job.aggr_1min_5.success", 0.0)]
        );
    }
}
