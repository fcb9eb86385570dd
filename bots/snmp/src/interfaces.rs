//! Interface sync (contract §5.9): every 300 s, walk ifDescr and ifSpeed of a device (and
//! ifHighSpeed where ifSpeed saturates, see `if_speed`) and make its `interface` child entities
//! in the backend match: create, update, delete.
//!
//! A bot without permission to write entities (account bots by default) gets 403; that is
//! logged once per entity, not every 5 minutes, and the job itself does not fail.

use crate::if_speed;
use crate::interface_list::InterfaceLists;
use crate::merged::Exchange;
use crate::session::{Credential, SnmpEngine};
use crate::walk::{walk, WalkRow};
use async_snmp::Oid;
use collector::backend::{BackendClient, BackendError};
use collector::details;
use collector::entity::EntityRecord;
use collector::{Event, EventStatus, Firing};
use prometheus_client::metrics::counter::Counter;
use serde_json::{json, Map, Value as Json};
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

/// ifDescr and ifSpeed of IF-MIB's ifTable.
const IF_DESCR: [u32; 10] = [1, 3, 6, 1, 2, 1, 2, 2, 1, 2];
const IF_SPEED: [u32; 10] = [1, 3, 6, 1, 2, 1, 2, 2, 1, 5];

/// What an interface sync job needs: the device and how to reach its agent.
#[derive(Debug, Clone, PartialEq)]
pub struct InterfaceJob {
    pub entity_id: u64,
    pub account_id: u64,
    pub address: Option<String>,
    pub credential: Result<Credential, String>,
}

/// One interface as the agent lists it.
#[derive(Debug, Clone, PartialEq)]
pub struct InterfaceRow {
    pub index: String,
    pub name: String,
    pub speed: String,
}

/// One change to the backend's interface entities.
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    Create(Json),
    Update { id: u64, body: Json },
    Delete { id: u64 },
}

/// Pairs ifDescr and ifSpeed rows by position, as the original; `None` (no change at all) if
/// the lists differ in length or in any index.
pub fn pair_rows(descriptions: &[WalkRow], speeds: &[WalkRow]) -> Option<Vec<InterfaceRow>> {
    if descriptions.len() != speeds.len() {
        return None;
    }
    descriptions
        .iter()
        .zip(speeds)
        .map(|(description, speed)| {
            (description.index == speed.index).then(|| InterfaceRow {
                index: description.index.clone(),
                name: description.value.text().into_owned(),
                speed: speed.value.text().into_owned(),
            })
        })
        .collect()
}

/// An interface entity of the backend, kept in the small form a sync needs: one is held for
/// every interface of every device of the account while the syncs of a second run (a
/// `serde_json` map of two keys costs 632 bytes; 51,000 of them were 32 MB).
#[derive(Debug, Clone, PartialEq)]
pub struct InterfaceEntity {
    pub id: u64,
    pub name: String,
    pub parent: u64,
    /// `details.snmp_index` as text (the contract compares strings).
    pub snmp_index: String,
    /// `details.speed_bps` as text.
    pub speed_bps: Option<String>,
    /// The other `details` keys, which an update keeps (usually none).
    pub other_details: Option<Box<Map<String, Json>>>,
    /// `protocols` as an update sends them back (none when empty or incomplete).
    pub protocols: Option<Box<Json>>,
}

impl InterfaceEntity {
    /// The interface entity `entity` is, if it is one (an `interface` with a parent).
    pub fn of(entity: EntityRecord) -> Option<InterfaceEntity> {
        let parent = entity
            .parent
            .filter(|_| entity.entity_type == "interface")?;
        let protocols = protocols_for_put(&entity).filter(|p| p != &json!({}));
        let mut details = match entity.details {
            Json::Object(details) => details,
            _ => Map::new(),
        };
        let text = |value: Option<Json>| value.as_ref().and_then(details::text);
        let snmp_index = text(details.remove("snmp_index")).unwrap_or_default();
        let speed_bps = text(details.remove("speed_bps"));
        Some(InterfaceEntity {
            id: entity.id,
            name: entity.name,
            parent,
            snmp_index,
            speed_bps,
            other_details: (!details.is_empty()).then(|| Box::new(details)),
            protocols: protocols.map(Box::new),
        })
    }
}

/// The entity's `protocols` in the shape PUT accepts, or `None` if any binding is incomplete
/// (then PUT without `protocols` wipes them, as the original always did).
fn protocols_for_put(entity: &EntityRecord) -> Option<Json> {
    let mut protocols = Map::new();
    for (name, binding) in &entity.protocols {
        let credential = binding.credential.clone().filter(|c| !c.is_null())?;
        let bot = binding.bot.clone().filter(|b| !b.is_null())?;
        let mut sensors = Vec::with_capacity(binding.sensors.len());
        for sensor in &binding.sensors {
            sensors.push(json!({
                "sensor": sensor.sensor,
                "interval": sensor.interval.clone().unwrap_or(Json::Null),
            }));
        }
        protocols.insert(
            name.clone(),
            json!({"credential": credential, "bot": bot, "sensors": sensors}),
        );
    }
    Some(Json::Object(protocols))
}

/// The changes that make the backend's interfaces of device `parent` match `rows`: unknown
/// index -> create, other name or speed -> update, interfaces the agent no longer lists (and
/// duplicates of one index) -> delete. Updates keep other `details` keys and the protocols.
pub fn plan(parent: u64, rows: &[InterfaceRow], entities: &[InterfaceEntity]) -> Vec<Change> {
    let mut known: HashMap<&str, &InterfaceEntity> = HashMap::new();
    let mut changes = Vec::new();
    for entity in entities.iter().filter(|e| e.parent == parent) {
        match known.entry(entity.snmp_index.as_str()) {
            std::collections::hash_map::Entry::Occupied(_) => {
                changes.push(Change::Delete { id: entity.id })
            }
            std::collections::hash_map::Entry::Vacant(slot) => {
                slot.insert(entity);
            }
        }
    }
    for row in rows {
        match known.remove(row.index.as_str()) {
            None => changes.push(Change::Create(json!({
                "name": row.name,
                "entity_type": "interface",
                "parent": parent,
                "details": {"snmp_index": row.index, "speed_bps": row.speed},
            }))),
            Some(entity) => {
                let speed = entity.speed_bps.as_deref();
                if entity.name == row.name && speed == Some(row.speed.as_str()) {
                    continue;
                }
                let mut details = entity.other_details.as_deref().cloned().unwrap_or_default();
                details.insert("snmp_index".into(), Json::String(row.index.clone()));
                details.insert("speed_bps".into(), Json::String(row.speed.clone()));
                let mut body = json!({
                    "name": row.name,
                    "entity_type": "interface",
                    "details": details,
                });
                if let Some(protocols) = &entity.protocols {
                    body["protocols"] = Json::clone(protocols);
                }
                changes.push(Change::Update {
                    id: entity.id,
                    body,
                });
            }
        }
    }
    let mut stale: Vec<u64> = known.values().map(|e| e.id).collect();
    stale.sort_unstable();
    changes.extend(stale.into_iter().map(|id| Change::Delete { id }));
    changes
}

/// Counters of interface sync, registered with the framework's metrics by the bot.
#[derive(Clone, Default)]
pub struct InterfaceCounters {
    /// Interface entities created, updated or deleted.
    pub changes: Counter,
    /// Syncs refused by the backend with 403.
    pub forbidden: Counter,
}

/// Runs interface sync jobs against the backend.
pub struct InterfaceSync {
    backend: BackendClient,
    lists: InterfaceLists,
    /// Entities whose 403 was already logged.
    forbidden: Mutex<HashSet<u64>>,
    pub counters: InterfaceCounters,
}

impl InterfaceSync {
    pub fn new(backend: BackendClient, counters: InterfaceCounters) -> InterfaceSync {
        InterfaceSync {
            backend,
            lists: InterfaceLists::default(),
            forbidden: Mutex::new(HashSet::new()),
            counters,
        }
    }

    /// One sync of one device. Returns how many changes were made.
    pub async fn run(
        &self,
        engine: &Arc<SnmpEngine>,
        job: &InterfaceJob,
        firing: &Firing,
    ) -> Result<usize, String> {
        let credential = job
            .credential
            .as_ref()
            .map_err(|e| format!("unusable SNMP credential: {e}"))?;
        let address = job
            .address
            .as_deref()
            .ok_or("the entity has no details.ipv4 to poll")?;
        let _slot = engine.device_slot().await;
        let session = engine
            .session(address, credential)
            .await
            .map_err(|e| e.to_string())?;
        let columns = [Oid::from_slice(&IF_DESCR), Oid::from_slice(&IF_SPEED)];
        let exchange = Exchange::new(&session);
        let mut walked = exchange
            .walk_many(&columns)
            .await
            .map_err(|e| format!("walking ifDescr and ifSpeed: {e}"))?
            .into_iter();
        let (Some(descriptions), Some(speeds)) = (walked.next(), walked.next()) else {
            return Err("walking ifDescr and ifSpeed gave no result".to_string());
        };
        let descriptions = descriptions.map_err(|e| format!("walking ifDescr: {e}"))?;
        let speeds = speeds.map_err(|e| format!("walking ifSpeed: {e}"))?;
        let Some(mut rows) = pair_rows(&descriptions, &speeds) else {
            tracing::warn!(
                entity = job.entity_id,
                "interface sync skipped: ifDescr and ifSpeed list different interfaces"
            );
            return Ok(0);
        };
        if rows.iter().any(if_speed::needs_high_speed) {
            let high_speeds = walk(&session, &Oid::from_slice(&if_speed::IF_HIGH_SPEED))
                .await
                .map_err(|e| format!("walking ifHighSpeed: {e}"))?;
            if_speed::use_high_speeds(&mut rows, &high_speeds);
        }
        let listing = self
            .lists
            .for_sync(
                &self.backend,
                job.account_id,
                job.entity_id,
                firing.scheduled,
            )
            .await;
        let listing = match listing {
            Ok(listing) => listing,
            Err(error) => return self.refused(job, error),
        };
        let entities = listing.children(job.entity_id);
        let changes = plan(job.entity_id, &rows, entities);
        if !changes.is_empty() {
            listing.note_changed(job.entity_id);
        }
        let mut made = 0;
        for change in &changes {
            let result = match change {
                Change::Create(body) => self
                    .backend
                    .create_entity(job.account_id, body)
                    .await
                    .map(|_| ()),
                Change::Update { id, body } => {
                    self.backend.update_entity(job.account_id, *id, body).await
                }
                Change::Delete { id } => self.backend.delete_entity(job.account_id, *id).await,
            };
            match result {
                Ok(()) => {
                    made += 1;
                    self.counters.changes.inc();
                    if let Some(event) = change_event(change, entities, address) {
                        firing.event(event);
                    }
                }
                Err(error) if error.status() == Some(403) => {
                    return self.refused(job, error);
                }
                Err(error) => {
                    tracing::warn!(entity = job.entity_id, "interface change failed: {error}");
                }
            }
        }
        if made > 0 {
            tracing::info!(
                entity = job.entity_id,
                changes = made,
                interfaces = rows.len(),
                "interface entities synced"
            );
        }
        self.lock_forbidden().remove(&job.entity_id);
        Ok(made)
    }

    /// A 403 is logged once per entity; other backend errors fail the run.
    fn refused(&self, job: &InterfaceJob, error: BackendError) -> Result<usize, String> {
        if error.status() != Some(403) {
            return Err(format!("interface sync: {error}"));
        }
        self.counters.forbidden.inc();
        if self.lock_forbidden().insert(job.entity_id) {
            tracing::warn!(
                entity = job.entity_id,
                account = job.account_id,
                "interface sync is not allowed: the backend answered 403 ({error}). This bot may \
                 not write entities in this account (account bots only get values and reads by \
                 default). Logged once; syncing is retried every 5 minutes"
            );
        } else {
            tracing::debug!(
                entity = job.entity_id,
                "interface sync still forbidden (403)"
            );
        }
        Ok(0)
    }

    fn lock_forbidden(&self) -> std::sync::MutexGuard<'_, HashSet<u64>> {
        self.forbidden.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The event a user wants for an interface that appeared or disappeared (updates are quiet).
fn change_event(change: &Change, entities: &[InterfaceEntity], address: &str) -> Option<Event> {
    let (title, name) = match change {
        Change::Create(body) => ("interface appeared", body["name"].as_str()?.to_string()),
        Change::Delete { id } => (
            "interface disappeared",
            entities.iter().find(|e| e.id == *id)?.name.clone(),
        ),
        Change::Update { .. } => return None,
    };
    let message = format!("{title} on the device at {address}: {name}");
    Some(
        Event::new(EventStatus::Info, title, message)
            .tag("interface", name)
            .tag("address", address),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::walk::SnmpValue;
    use collector::entity::{ProtocolBinding, SensorBinding};

    fn row(index: &str, value: SnmpValue) -> WalkRow {
        WalkRow {
            index: index.into(),
            value,
        }
    }

    fn interface(id: u64, parent: u64, name: &str, index: Json, speed: Json) -> InterfaceEntity {
        InterfaceEntity::of(record(id, parent, name, index, speed)).unwrap()
    }

    fn record(id: u64, parent: u64, name: &str, index: Json, speed: Json) -> EntityRecord {
        EntityRecord {
            id,
            name: name.into(),
            entity_type: "interface".into(),
            parent: Some(parent),
            details: json!({"snmp_index": index, "speed_bps": speed}),
            protocols: HashMap::new(),
        }
    }

    #[test]
    fn appeared_and_disappeared_interfaces_are_events_updates_are_not() {
        let known = [interface(31, 7, "eth9", json!("9"), json!("100"))];
        let created = Change::Create(json!({"name": "eth1", "entity_type": "interface"}));
        let event = change_event(&created, &known, "10.0.0.1").unwrap();
        assert_eq!(event.title, "interface appeared");
        assert_eq!(event.tags["interface"], "eth1");
        assert_eq!(event.tags["address"], "10.0.0.1");
        let deleted = change_event(&Change::Delete { id: 31 }, &known, "10.0.0.1").unwrap();
        assert_eq!(deleted.title, "interface disappeared");
        assert_eq!(deleted.tags["interface"], "eth9");
        let update = Change::Update {
            id: 31,
            body: json!({}),
        };
        assert!(change_event(&update, &known, "10.0.0.1").is_none());
    }

    #[test]
    fn pairs_by_position_and_refuses_mismatches() {
        let descriptions = [
            row("1", SnmpValue::Text("lo".into())),
            row("2", SnmpValue::Text("eth0".into())),
        ];
        let speeds = [
            row("1", SnmpValue::Unsigned(10_000_000)),
            row("2", SnmpValue::Unsigned(1_000_000_000)),
        ];
        let rows = pair_rows(&descriptions, &speeds).unwrap();
        assert_eq!(
            rows[1],
            InterfaceRow {
                index: "2".into(),
                name: "eth0".into(),
                speed: "1000000000".into()
            }
        );
        assert_eq!(pair_rows(&descriptions, &speeds[..1]), None);
        let shifted = [
            row("1", SnmpValue::Unsigned(1)),
            row("3", SnmpValue::Unsigned(1)),
        ];
        assert_eq!(pair_rows(&descriptions, &shifted), None);
    }

    #[test]
    fn plans_create_update_delete() {
        let rows = vec![
            InterfaceRow {
                index: "1".into(),
                name: "lo".into(),
                speed: "10000000".into(),
            },
            InterfaceRow {
                index: "2".into(),
                name: "eth0".into(),
                speed: "1000000000".into(),
            },
            InterfaceRow {
                index: "3".into(),
                name: "eth1".into(),
                speed: "0".into(),
            },
        ];
        let mut renamed = record(21, 5, "eth0-old", json!("2"), json!("1000000000"));
        renamed.details["note"] = json!("kept");
        renamed.protocols.insert(
            "ping".into(),
            ProtocolBinding {
                credential: Some(json!(7)),
                sensors: vec![SensorBinding {
                    sensor: json!(8),
                    interval: Some(json!(60)),
                }],
                bot: Some(json!(9)),
            },
        );
        let device = EntityRecord {
            entity_type: "device".into(),
            ..record(25, 5, "x", json!("3"), json!("0"))
        };
        assert_eq!(InterfaceEntity::of(device), None, "not an interface");
        let entities = vec![
            interface(20, 5, "lo", json!(1), json!(10000000)),
            InterfaceEntity::of(renamed).unwrap(),
            interface(22, 5, "gone", json!("7"), json!("0")),
            interface(23, 5, "twin", json!("1"), json!("10000000")),
            interface(24, 6, "other device", json!("3"), json!("0")),
        ];
        let changes = plan(5, &rows, &entities);
        assert_eq!(
            changes,
            vec![
                Change::Delete { id: 23 },
                Change::Update {
                    id: 21,
                    body: json!({
                        "name": "eth0", "entity_type": "interface",
                        "details": {"snmp_index": "2", "speed_bps": "1000000000", "note": "kept"},
                        "protocols": {"ping": {"credential": 7, "bot": 9, "sensors": [{"sensor": 8, "interval": 60}]}},
                    }),
                },
                Change::Create(json!({
                    "name": "eth1", "entity_type": "interface", "parent": 5,
                    "details": {"snmp_index": "3", "speed_bps": "0"},
                })),
                Change::Delete { id: 22 },
            ]
        );
    }

    #[test]
    fn nothing_to_do_when_in_sync() {
        let rows = vec![InterfaceRow {
            index: "1".into(),
            name: "lo".into(),
            speed: "0".into(),
        }];
        let entities = vec![interface(20, 5, "lo", json!("1"), json!("0"))];
        assert!(plan(5, &rows, &entities).is_empty());
    }
}
