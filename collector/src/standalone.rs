//! Standalone mode's jobs file: entities, credentials and sensors in the backend's own shapes,
//! written as TOML, so the same bot runs with no backend.
//!
//! ```toml
//! [[credentials]]
//! id = 1
//! protocol = "ping"
//! details = { n_packets = 3, timeout = 1.0 }
//!
//! [[sensors]]
//! id = 10
//! protocol = "ping"
//! default_interval = 60
//!
//! [[entities]]
//! id = 100
//! name = "localhost"
//! details = { ipv4 = "127.0.0.1" }
//! protocols.ping = { credential = 1, sensors = [{ sensor = 10, interval = 10 }] }
//! ```
//!
//! `entity_type` defaults to `device` and `account` to 1. Credentials and sensors are shared by
//! every account of the file.

use crate::entity::{AccountData, CredentialRecord, EntityRecord, SensorRecord};
use serde::Deserialize;
use std::collections::BTreeMap;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct JobsFile {
    #[serde(default)]
    entities: Vec<FileEntity>,
    #[serde(default)]
    credentials: Vec<CredentialRecord>,
    #[serde(default)]
    sensors: Vec<SensorRecord>,
}

#[derive(Deserialize)]
struct FileEntity {
    #[serde(default = "default_account")]
    account: u64,
    id: u64,
    name: String,
    #[serde(default = "default_entity_type")]
    entity_type: String,
    #[serde(default)]
    parent: Option<u64>,
    #[serde(default)]
    details: serde_json::Value,
    #[serde(default)]
    protocols: std::collections::HashMap<String, crate::entity::ProtocolBinding>,
}

fn default_account() -> u64 {
    1
}

fn default_entity_type() -> String {
    "device".to_string()
}

/// Parses a jobs file into per-account data, as the backend's list endpoints would give it.
/// The error names the problem and its place in the file.
pub fn parse_jobs_file(text: &str) -> Result<BTreeMap<u64, AccountData>, String> {
    let file: JobsFile = toml::from_str(text).map_err(|e| e.to_string())?;
    let mut accounts: BTreeMap<u64, AccountData> = BTreeMap::new();
    for entity in file.entities {
        let data = accounts.entry(entity.account).or_default();
        data.entities.push(EntityRecord {
            id: entity.id,
            name: entity.name,
            entity_type: entity.entity_type,
            parent: entity.parent,
            details: entity.details,
            protocols: entity.protocols,
        });
    }
    for data in accounts.values_mut() {
        data.credentials = file.credentials.clone();
        data.sensors = file.sensors.clone();
    }
    Ok(accounts)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::entity::build_configs;

    const FILE: &str = r#"
[[credentials]]
id = 1
protocol = "ping"
details = { n_packets = "3", timeout = 1.0 }

[[sensors]]
id = 10
protocol = "ping"
default_interval = 60

[[sensors]]
id = 11
protocol = "ping"

[[entities]]
id = 100
name = "localhost"
details = { ipv4 = "127.0.0.1" }
protocols.ping = { credential = 1, sensors = [{ sensor = 10, interval = 10 }, { sensor = 11 }] }

[[entities]]
account = 2
id = 200
name = "other"
details = { ipv4 = "::1" }
[entities.protocols.ping]
credential = 1
sensors = [{ sensor = 10 }]
"#;

    #[test]
    fn jobs_file_gives_backend_shaped_configs() {
        let accounts = parse_jobs_file(FILE).unwrap();
        assert_eq!(accounts.keys().copied().collect::<Vec<_>>(), vec![1, 2]);
        let (configs, problems) = build_configs("ping", None, 1, &accounts[&1]);
        assert!(problems.is_empty());
        assert_eq!(configs.len(), 1);
        let c = &configs[0];
        assert_eq!(
            (c.entity_id, c.account_id, c.address()),
            (100, 1, Some("127.0.0.1"))
        );
        assert_eq!(c.credential_details["n_packets"], "3");
        let intervals: Vec<_> = c.sensors.iter().map(|s| s.interval).collect();
        assert_eq!(intervals, vec![Some(10), None]);
        let (configs, _) = build_configs("ping", None, 2, &accounts[&2]);
        assert_eq!(configs[0].sensors[0].interval, Some(60));
    }

    #[test]
    fn bad_file_names_the_problem() {
        let err = parse_jobs_file("[[entities]]\nid = \"x\"\n").unwrap_err();
        assert!(err.contains("id") || err.contains("line"), "{err}");
        assert!(parse_jobs_file("[[entitys]]\nid = 1\n").is_err());
    }
}
