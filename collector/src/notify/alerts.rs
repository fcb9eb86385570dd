//! Alert state per (check name, entity, labels), kept in the store so that a restart neither
//! re-announces a firing alert nor forgets one. Runs inside the notifier's write transaction, so a
//! state change and the notifications it causes are committed together.

use super::notice::{AlertNotice, AlertState};
use redb::{ReadableDatabase, ReadableTable, TableDefinition, WriteTransaction};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashSet};

pub(crate) const ALERTS: TableDefinition<&str, &[u8]> = TableDefinition::new("alerts");

/// When an alert fires and repeats.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AlertRules {
    /// Bad runs in a row before an alert fires.
    pub if_in_a_row: u32,
    /// Seconds between repeats of a firing alert; 0 never repeats.
    pub renotify: u64,
}

/// What one check says, with every label resolved.
#[derive(Debug, Clone, PartialEq)]
pub struct Observation {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub job: String,
    pub bad: bool,
    pub message: String,
    /// The check's own bad-runs-in-a-row rule, if any.
    pub in_a_row: Option<u32>,
}

impl Observation {
    /// The alert's identity: its name and labels (as Alertmanager identifies alerts). Labels that
    /// change with every run must not be given to a check.
    pub fn key(&self) -> String {
        let labels: Vec<String> = self
            .labels
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        format!("{}|{}", self.name, labels.join(","))
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct AlertRecord {
    name: String,
    labels: BTreeMap<String, String>,
    job: String,
    bad_in_a_row: u32,
    firing: bool,
    starts_at: f64,
    last_notified: f64,
    message: String,
}

impl AlertRecord {
    fn notice(&self, state: AlertState, now: f64, renotify: bool) -> AlertNotice {
        let subject = self
            .labels
            .get("entity_name")
            .or_else(|| self.labels.get("entity"))
            .unwrap_or(&self.job);
        AlertNotice {
            state,
            name: self.name.clone(),
            labels: self.labels.clone(),
            summary: format!("{} on {subject}", self.name),
            description: self.message.clone(),
            starts_at: self.starts_at,
            ends_at: (state == AlertState::Resolved).then_some(now),
            renotify,
        }
    }
}

fn storage(e: impl std::fmt::Display) -> String {
    format!("alert state storage: {e}")
}

/// The job a stored alert record belongs to (`None`: not a record this version can read).
pub fn job_of(record: &[u8]) -> Option<String> {
    #[derive(Deserialize)]
    struct JobOnly {
        job: String,
    }
    serde_json::from_slice::<JobOnly>(record)
        .ok()
        .map(|r| r.job)
}

/// Applies one check outcome; returns the notice to send, if the alert changed state.
pub fn observe(
    txn: &WriteTransaction,
    observation: &Observation,
    rules: AlertRules,
    now: f64,
) -> Result<Option<AlertNotice>, String> {
    let key = observation.key();
    let mut table = txn.open_table(ALERTS).map_err(storage)?;
    let existing: Option<AlertRecord> = match table.get(key.as_str()).map_err(storage)? {
        Some(bytes) => serde_json::from_slice(bytes.value()).ok(),
        None => None,
    };
    if !observation.bad {
        let Some(record) = existing else {
            return Ok(None);
        };
        table.remove(key.as_str()).map_err(storage)?;
        return Ok(record
            .firing
            .then(|| record.notice(AlertState::Resolved, now, false)));
    }
    let mut record = existing.unwrap_or(AlertRecord {
        name: observation.name.clone(),
        labels: observation.labels.clone(),
        job: observation.job.clone(),
        bad_in_a_row: 0,
        firing: false,
        starts_at: now,
        last_notified: now,
        message: String::new(),
    });
    record.message = observation.message.clone();
    record.job = observation.job.clone();
    let notice = if !record.firing {
        record.bad_in_a_row += 1;
        let needed = observation.in_a_row.unwrap_or(rules.if_in_a_row);
        if record.bad_in_a_row >= needed.max(1) {
            record.firing = true;
            record.starts_at = now;
            record.last_notified = now;
            Some(record.notice(AlertState::Firing, now, false))
        } else {
            None
        }
    } else if rules.renotify > 0 && now - record.last_notified >= rules.renotify as f64 {
        record.last_notified = now;
        Some(record.notice(AlertState::Firing, now, true))
    } else {
        return Ok(None);
    };
    let bytes = serde_json::to_vec(&record).map_err(storage)?;
    table
        .insert(key.as_str(), bytes.as_slice())
        .map_err(storage)?;
    Ok(notice)
}

/// Forgets the alerts of jobs that no longer exist; those that were firing resolve.
pub fn resolve_removed_jobs(
    txn: &WriteTransaction,
    jobs: &HashSet<String>,
    now: f64,
) -> Result<Vec<AlertNotice>, String> {
    let mut table = txn.open_table(ALERTS).map_err(storage)?;
    let mut gone = Vec::new();
    for item in table.iter().map_err(storage)? {
        let (key, value) = item.map_err(storage)?;
        let Ok(record) = serde_json::from_slice::<AlertRecord>(value.value()) else {
            continue;
        };
        if !jobs.contains(&record.job) {
            gone.push((key.value().to_string(), record));
        }
    }
    let mut notices = Vec::new();
    for (key, record) in gone {
        table.remove(key.as_str()).map_err(storage)?;
        if record.firing {
            let mut notice = record.notice(AlertState::Resolved, now, false);
            notice.description = format!("the job {} was removed", record.job);
            notices.push(notice);
        }
    }
    Ok(notices)
}

/// The alerts firing now (for Alertmanager's re-sends and the `alerts_firing` gauge).
pub fn firing(db: &redb::Database, now: f64) -> Result<Vec<AlertNotice>, String> {
    let txn = db.begin_read().map_err(storage)?;
    let table = match txn.open_table(ALERTS) {
        Ok(table) => table,
        Err(redb::TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
        Err(e) => return Err(storage(e)),
    };
    let mut notices = Vec::new();
    for item in table.iter().map_err(storage)? {
        let (_, value) = item.map_err(storage)?;
        if let Ok(record) = serde_json::from_slice::<AlertRecord>(value.value()) {
            if record.firing {
                notices.push(record.notice(AlertState::Firing, now, false));
            }
        }
    }
    Ok(notices)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(bad: bool) -> Observation {
        Observation {
            name: "PingHostDown".into(),
            labels: BTreeMap::from([("entity".to_string(), "7".to_string())]),
            job: "7".into(),
            bad,
            message: "no answer".into(),
            in_a_row: None,
        }
    }

    fn apply(db: &redb::Database, bad: bool, rules: AlertRules, now: f64) -> Option<AlertNotice> {
        let txn = db.begin_write().unwrap();
        let notice = observe(&txn, &check(bad), rules, now).unwrap();
        txn.commit().unwrap();
        notice
    }

    #[test]
    fn fires_after_n_bad_resolves_on_first_good_renotifies_and_survives_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.redb");
        let rules = AlertRules {
            if_in_a_row: 2,
            renotify: 100,
        };
        let db = redb::Database::create(&path).unwrap();
        assert_eq!(apply(&db, false, rules, 1.0), None);
        assert_eq!(
            apply(&db, true, rules, 2.0),
            None,
            "one bad run is not enough"
        );
        assert_eq!(
            apply(&db, false, rules, 3.0),
            None,
            "a good run resets the count"
        );
        assert_eq!(apply(&db, true, rules, 4.0), None);
        let fired = apply(&db, true, rules, 5.0).unwrap();
        assert_eq!((fired.state, fired.starts_at), (AlertState::Firing, 5.0));
        assert_eq!(
            apply(&db, true, rules, 50.0),
            None,
            "no repeat before 100 s"
        );
        assert!(apply(&db, true, rules, 105.0).unwrap().renotify);
        drop(db);
        let db = redb::Database::create(&path).unwrap();
        assert_eq!(firing(&db, 106.0).unwrap().len(), 1, "kept over a restart");
        assert_eq!(apply(&db, true, rules, 107.0), None, "not announced again");
        let resolved = apply(&db, false, rules, 108.0).unwrap();
        assert_eq!(resolved.state, AlertState::Resolved);
        assert_eq!((resolved.starts_at, resolved.ends_at), (5.0, Some(108.0)));
        assert!(firing(&db, 109.0).unwrap().is_empty());
    }

    #[test]
    fn removed_jobs_resolve_their_firing_alerts() {
        let dir = tempfile::tempdir().unwrap();
        let db = redb::Database::create(dir.path().join("s.redb")).unwrap();
        let rules = AlertRules {
            if_in_a_row: 1,
            renotify: 0,
        };
        assert!(apply(&db, true, rules, 1.0).is_some());
        let txn = db.begin_write().unwrap();
        let kept = resolve_removed_jobs(&txn, &HashSet::from(["7".to_string()]), 2.0).unwrap();
        assert!(kept.is_empty());
        let gone = resolve_removed_jobs(&txn, &HashSet::new(), 3.0).unwrap();
        txn.commit().unwrap();
        assert_eq!(gone.len(), 1);
        assert_eq!(gone[0].state, AlertState::Resolved);
        assert!(firing(&db, 4.0).unwrap().is_empty());
    }
}
