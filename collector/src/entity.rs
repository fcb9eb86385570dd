//! Job configs: what the backend (or a local jobs file) says about one entity, in the shape of the
//! Python collector's `fetch_job_configs` result (contract §5.2), and the skip rules that build them.

use crate::status::SkippedEntity;
use serde::{Deserialize, Serialize};
use serde_json::Value as Json;
use std::collections::HashMap;
use std::sync::Arc;

/// One monitored entity with everything a bot needs to poll it: the result of contract §5.2.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EntityConfig {
    pub entity_id: u64,
    pub account_id: u64,
    pub name: String,
    pub entity_type: String,
    pub parent: Option<u64>,
    /// `details` verbatim, e.g. `{"ipv4": "192.0.2.1"}`.
    pub details: Json,
    /// The attached credential's `details` verbatim, shared by every entity that uses the
    /// credential (10,000 entities with one credential held 10,000 copies: 6.3 MB).
    pub credential_details: Arc<Json>,
    /// The entity's sensors, in stored order.
    pub sensors: Vec<SensorConfig>,
}

/// One sensor attached to an entity, with its interval already resolved (contract §5.3).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SensorConfig {
    pub sensor_id: u64,
    /// The sensor's `details` verbatim, shared by every entity the sensor is attached to.
    pub details: Arc<Json>,
    /// The entity's interval for this sensor, else the sensor's default, else `None`.
    pub interval: Option<u64>,
}

impl EntityConfig {
    /// `details.ipv4` as text, the address field every Grafolean protocol uses.
    pub fn address(&self) -> Option<&str> {
        self.details.get("ipv4").and_then(Json::as_str)
    }

    /// `details.ipv4` read as host and port (see [`crate::details::Address`]).
    pub fn parsed_address(&self) -> Result<crate::details::Address, crate::details::AddressError> {
        crate::details::Address::from_details(&self.details)
    }
}

/// An entity as the backend lists it (contract §4.5).
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
pub struct EntityRecord {
    pub id: u64,
    pub name: String,
    pub entity_type: String,
    #[serde(default)]
    pub parent: Option<u64>,
    #[serde(default)]
    pub details: Json,
    #[serde(default)]
    pub protocols: HashMap<String, ProtocolBinding>,
}

/// The `protocols.<name>` object of an entity: which credential, sensors and bot serve it.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
pub struct ProtocolBinding {
    #[serde(default)]
    pub credential: Option<Json>,
    #[serde(default)]
    pub sensors: Vec<SensorBinding>,
    #[serde(default)]
    pub bot: Option<Json>,
}

/// One `{"sensor": id, "interval": seconds|null}` entry of a protocol binding.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
pub struct SensorBinding {
    pub sensor: Json,
    #[serde(default)]
    pub interval: Option<Json>,
}

/// A credential as the backend lists it (contract §4.6).
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
pub struct CredentialRecord {
    pub id: u64,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub protocol: String,
    #[serde(default)]
    pub details: Json,
}

/// A sensor as the backend lists it (contract §4.7).
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
pub struct SensorRecord {
    pub id: u64,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub protocol: String,
    #[serde(default)]
    pub default_interval: Option<Json>,
    #[serde(default)]
    pub details: Json,
}

/// Everything one account holds that matters for job configs: the three list endpoints' answers.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
pub struct AccountData {
    pub entities: Vec<EntityRecord>,
    pub credentials: Vec<CredentialRecord>,
    pub sensors: Vec<SensorRecord>,
}

/// Why an entity or one of its sensors was left out of the job configs. Skips that the contract
/// defines as normal (not a device, another bot's entity...) are not reported; these are the ones
/// where the data is inconsistent and a user would want to know.
#[derive(Debug, Clone, PartialEq)]
pub struct ConfigProblem {
    pub account_id: u64,
    pub entity_id: u64,
    pub message: String,
}

/// An id as the backend may send it: a number, or a string holding one (the entity schema accepts both).
pub fn json_id(value: &Json) -> Option<u64> {
    match value {
        Json::Number(n) => n.as_u64(),
        Json::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// A JSON value that Python would consider truthy, for the "credential is falsy" rule.
fn truthy(value: &Json) -> bool {
    match value {
        Json::Null => false,
        Json::Bool(b) => *b,
        Json::Number(n) => n.as_f64() != Some(0.0),
        Json::String(s) => !s.is_empty(),
        Json::Array(a) => !a.is_empty(),
        Json::Object(o) => !o.is_empty(),
    }
}

/// An interval in whole seconds from a JSON number or numeric string; `None` for null or nonsense.
fn interval_secs(value: Option<&Json>) -> Option<u64> {
    let secs = crate::details::number(value?)?;
    (secs >= 1.0).then_some(secs as u64)
}

/// A protocol key (`"snmp"`) with what it requires of an entity's binding. A plain `&str` is a
/// protocol that needs a credential, as every Grafolean protocol does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Protocol<'a> {
    pub name: &'a str,
    /// Whether an entity without a credential for this protocol is left out (contract §5.2).
    /// A protocol with nothing secret to hold (an HTTP check) says `false`: its entities then
    /// need only sensors, and `credential_details` is `null` when none is attached.
    pub needs_credential: bool,
}

impl<'a> From<&'a str> for Protocol<'a> {
    fn from(name: &'a str) -> Self {
        Protocol {
            name,
            needs_credential: true,
        }
    }
}

/// Builds the job configs of one account for `protocol`, applying the skip rules of contract §5.2:
/// only `device` entities, with the protocol key, served by `bot_id` (or legacy null), a truthy
/// credential and at least one sensor. The original aborted the whole refresh when a credential
/// or sensor could not be fetched; here such an entity (or sensor) is left out and reported.
pub fn build_configs<'a>(
    protocol: impl Into<Protocol<'a>>,
    bot_id: Option<u64>,
    account_id: u64,
    data: &AccountData,
) -> (Vec<EntityConfig>, Vec<ConfigProblem>) {
    let built = build_configs_explained(protocol, bot_id, account_id, data.clone());
    (built.configs, built.problems)
}

/// The job configs of one account, with the problems and every entity left out with the
/// reason (for the status page).
#[derive(Debug, Default)]
pub struct BuiltConfigs {
    pub configs: Vec<EntityConfig>,
    pub problems: Vec<ConfigProblem>,
    /// Devices and entities bound to the protocol that got no config.
    pub skipped: Vec<SkippedEntity>,
}

/// [`build_configs`], also saying why each device (or entity bound to `protocol`) was left out.
/// Takes the account's data by value: each config takes its entity's fields instead of a copy,
/// so a refresh of 10,000 entities does not hold every entity twice.
pub fn build_configs_explained<'a>(
    protocol: impl Into<Protocol<'a>>,
    bot_id: Option<u64>,
    account_id: u64,
    data: AccountData,
) -> BuiltConfigs {
    let AccountData {
        entities,
        credentials,
        sensors,
    } = data;
    let mut builder = ConfigBuilder::new(protocol, bot_id, account_id, credentials, sensors);
    for entity in entities {
        builder.add(entity);
    }
    builder.finish()
}

/// Builds an account's configs one entity at a time, as the entities are parsed: a refresh
/// then never holds the parsed list of an account's entities (1.4 KB each, 13 MiB at 10,000
/// devices) beside the configs made of them. Same rules as [`build_configs`].
pub struct ConfigBuilder<'a> {
    protocol: &'a str,
    needs_credential: bool,
    bot_id: Option<u64>,
    account_id: u64,
    credentials: HashMap<u64, Arc<Json>>,
    /// Every entity's copy of a sensor shares its details (1,000 devices with 36 sensors held
    /// 36,000 copies).
    sensors: HashMap<u64, (Option<Json>, Arc<Json>)>,
    no_credential: Arc<Json>,
    built: BuiltConfigs,
}

impl<'a> ConfigBuilder<'a> {
    /// A builder for `account_id`'s entities, with the account's credentials and sensors.
    pub fn new(
        protocol: impl Into<Protocol<'a>>,
        bot_id: Option<u64>,
        account_id: u64,
        credentials: Vec<CredentialRecord>,
        sensors: Vec<SensorRecord>,
    ) -> Self {
        let Protocol {
            name: protocol,
            needs_credential,
        } = protocol.into();
        ConfigBuilder {
            protocol,
            needs_credential,
            bot_id,
            account_id,
            credentials: credentials
                .into_iter()
                .map(|c| (c.id, Arc::new(c.details)))
                .collect(),
            sensors: sensors
                .into_iter()
                .map(|s| (s.id, (s.default_interval, Arc::new(s.details))))
                .collect(),
            no_credential: Arc::new(Json::Null),
            built: BuiltConfigs::default(),
        }
    }

    /// Makes the entity's config, or records why it gets none. Entities that neither are
    /// devices nor have the protocol enabled are dropped without a word.
    pub fn add(&mut self, mut entity: EntityRecord) {
        let protocol = self.protocol;
        let Some(binding) = entity.protocols.remove(protocol) else {
            if entity.entity_type == "device" {
                self.skip(&entity, format!("{protocol} is not enabled on this device"));
            }
            return;
        };
        if entity.entity_type != "device" {
            let reason = format!("not a device ({})", entity.entity_type);
            return self.skip(&entity, reason);
        }
        if let (Some(bot), Some(me)) = (binding.bot.as_ref(), self.bot_id) {
            if !bot.is_null() && json_id(bot) != Some(me) {
                return self.skip(&entity, format!("served by another bot ({bot})"));
            }
        }
        let credential_ref = binding.credential.as_ref().filter(|c| truthy(c));
        if credential_ref.is_none() && self.needs_credential {
            return self.skip(&entity, format!("no {protocol} credential chosen"));
        }
        if binding.sensors.is_empty() {
            return self.skip(&entity, format!("no {protocol} sensor attached"));
        }
        let Some(credential_details) = self.credential_of(&entity, credential_ref) else {
            return;
        };
        let sensors = self.sensors_of(&entity, &binding);
        if sensors.is_empty() {
            let reason = "none of its sensors is among the account's sensors".into();
            return self.skip(&entity, reason);
        }
        self.built.configs.push(EntityConfig {
            entity_id: entity.id,
            account_id: self.account_id,
            name: entity.name,
            entity_type: entity.entity_type,
            parent: entity.parent,
            details: entity.details,
            credential_details,
            sensors,
        });
    }

    /// The configs, the problems and the entities left out.
    pub fn finish(self) -> BuiltConfigs {
        self.built
    }

    /// The details of the entity's credential (`null` when it has none and needs none); `None`
    /// when the entity is left out for it.
    fn credential_of(
        &mut self,
        entity: &EntityRecord,
        credential_ref: Option<&Json>,
    ) -> Option<Arc<Json>> {
        let Some(credential_ref) = credential_ref else {
            return Some(self.no_credential.clone());
        };
        match json_id(credential_ref).and_then(|id| self.credentials.get(&id)) {
            Some(details) => Some(details.clone()),
            None if self.needs_credential => {
                let message =
                    format!("credential {credential_ref} is not among the account's credentials");
                self.problem(entity.id, message.clone());
                self.skip(entity, message);
                None
            }
            None => Some(self.no_credential.clone()),
        }
    }

    /// The entity's sensors that are among the account's, each missing one reported.
    fn sensors_of(
        &mut self,
        entity: &EntityRecord,
        binding: &ProtocolBinding,
    ) -> Vec<SensorConfig> {
        let mut sensors = Vec::with_capacity(binding.sensors.len());
        for binding in &binding.sensors {
            let found = json_id(&binding.sensor).and_then(|id| Some(id).zip(self.sensors.get(&id)));
            let Some((sensor_id, (default_interval, details))) = found else {
                let message = format!(
                    "sensor {} is not among the account's sensors",
                    binding.sensor
                );
                self.problem(entity.id, message);
                continue;
            };
            sensors.push(SensorConfig {
                sensor_id,
                details: details.clone(),
                interval: interval_secs(binding.interval.as_ref())
                    .or_else(|| interval_secs(default_interval.as_ref())),
            });
        }
        sensors
    }

    fn skip(&mut self, entity: &EntityRecord, reason: String) {
        self.built.skipped.push(SkippedEntity {
            account_id: self.account_id,
            entity_id: entity.id,
            name: entity.name.clone(),
            address: entity.details.get("ipv4").map(|a| match a {
                Json::String(text) => text.clone(),
                other => other.to_string(),
            }),
            reason,
        })
    }

    fn problem(&mut self, entity_id: u64, message: String) {
        self.built.problems.push(ConfigProblem {
            account_id: self.account_id,
            entity_id,
            message,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn data() -> AccountData {
        serde_json::from_value(json!({
            "entities": [
                {"id": 1, "name": "ok", "entity_type": "device", "parent": null, "details": {"ipv4": "192.0.2.1"},
                 "protocols": {"ping": {"credential": 7, "bot": 99, "sensors": [{"sensor": 20, "interval": null}, {"sensor": 21, "interval": 30}]}}},
                {"id": 2, "name": "interface", "entity_type": "interface", "parent": 1, "details": {},
                 "protocols": {"ping": {"credential": 7, "bot": 99, "sensors": [{"sensor": 21, "interval": 30}]}}},
                {"id": 3, "name": "no ping", "entity_type": "device", "details": {},
                 "protocols": {"snmp": {"credential": 7, "bot": 99, "sensors": [{"sensor": 21, "interval": 30}]}}},
                {"id": 4, "name": "other bot", "entity_type": "device", "details": {},
                 "protocols": {"ping": {"credential": 7, "bot": 98, "sensors": [{"sensor": 21, "interval": 30}]}}},
                {"id": 5, "name": "legacy", "entity_type": "device", "details": {},
                 "protocols": {"ping": {"credential": "7", "bot": null, "sensors": [{"sensor": "21", "interval": 30}]}}},
                {"id": 6, "name": "falsy credential", "entity_type": "device", "details": {},
                 "protocols": {"ping": {"credential": 0, "bot": 99, "sensors": [{"sensor": 21, "interval": 30}]}}},
                {"id": 7, "name": "no sensors", "entity_type": "device", "details": {},
                 "protocols": {"ping": {"credential": 7, "bot": 99, "sensors": []}}},
                {"id": 8, "name": "dangling credential", "entity_type": "device", "details": {},
                 "protocols": {"ping": {"credential": 12345, "bot": 99, "sensors": [{"sensor": 21, "interval": 30}]}}},
                {"id": 9, "name": "one dangling sensor", "entity_type": "device", "details": {},
                 "protocols": {"ping": {"credential": 7, "bot": 99, "sensors": [{"sensor": 999, "interval": 30}, {"sensor": 22, "interval": null}]}}}
            ],
            "credentials": [{"id": 7, "name": "c", "protocol": "ping", "details": {"n_packets": "3"}}],
            "sensors": [
                {"id": 20, "name": "s20", "protocol": "ping", "default_interval": 60, "details": {}},
                {"id": 21, "name": "s21", "protocol": "ping", "default_interval": null, "details": {"x": 1}},
                {"id": 22, "name": "s22", "protocol": "ping", "default_interval": null, "details": {}}
            ]
        }))
        .unwrap()
    }

    #[test]
    fn skip_rules_of_the_contract() {
        let (configs, problems) = build_configs("ping", Some(99), 1000, &data());
        let ids: Vec<u64> = configs.iter().map(|c| c.entity_id).collect();
        assert_eq!(
            ids,
            vec![1, 5, 9],
            "device + protocol + our/legacy bot + credential + sensors"
        );
        let first = &configs[0];
        assert_eq!(first.account_id, 1000);
        assert_eq!(*first.credential_details, json!({"n_packets": "3"}));
        let resolved: Vec<_> = first
            .sensors
            .iter()
            .map(|s| (s.sensor_id, s.interval))
            .collect();
        assert_eq!(
            resolved,
            vec![(20, Some(60)), (21, Some(30))],
            "entity interval, else default"
        );
        assert_eq!(
            configs[2].sensors.len(),
            1,
            "a dangling sensor costs only that sensor"
        );
        assert_eq!(
            configs[2].sensors[0].interval, None,
            "no interval anywhere stays None"
        );
        let bad: Vec<u64> = problems.iter().map(|p| p.entity_id).collect();
        assert_eq!(bad, vec![8, 9]);
    }

    #[test]
    fn entities_share_their_credential_and_sensor_details() {
        let (configs, _) = build_configs("ping", Some(99), 1000, &data());
        let (first, legacy) = (&configs[0], &configs[1]);
        assert_eq!(*first.sensors[1].details, json!({"x": 1}));
        assert!(Arc::ptr_eq(
            &first.sensors[1].details,
            &legacy.sensors[0].details
        ));
        assert!(Arc::ptr_eq(
            &first.credential_details,
            &legacy.credential_details
        ));
    }

    #[test]
    fn a_protocol_without_credentials_keeps_entities_that_have_none() {
        let protocol = Protocol {
            name: "ping",
            needs_credential: false,
        };
        let (configs, problems) = build_configs(protocol, Some(99), 1000, &data());
        let falsy = configs
            .iter()
            .find(|c| c.entity_id == 6)
            .expect("the entity with a falsy credential is kept");
        assert_eq!(*falsy.credential_details, Json::Null);
        let dangling = configs
            .iter()
            .find(|c| c.entity_id == 8)
            .expect("a dangling credential is no problem when none is needed");
        assert_eq!(*dangling.credential_details, Json::Null);
        assert!(problems.iter().all(|p| p.entity_id != 8), "{problems:?}");
        let with_one = configs.iter().find(|c| c.entity_id == 1).unwrap();
        assert_eq!(*with_one.credential_details, json!({"n_packets": "3"}));
    }

    #[test]
    fn every_entity_left_out_says_why() {
        let built = build_configs_explained("ping", Some(99), 1000, data());
        let reasons: Vec<(u64, &str)> = built
            .skipped
            .iter()
            .map(|s| (s.entity_id, s.reason.as_str()))
            .collect();
        assert_eq!(
            reasons,
            vec![
                (2, "not a device (interface)"),
                (3, "ping is not enabled on this device"),
                (4, "served by another bot (98)"),
                (6, "no ping credential chosen"),
                (7, "no ping sensor attached"),
                (8, "credential 12345 is not among the account's credentials"),
            ]
        );
        assert_eq!(built.skipped[0].name, "interface");
        let kept: Vec<u64> = built.configs.iter().map(|c| c.entity_id).collect();
        assert_eq!(kept, vec![1, 5, 9], "the same configs as build_configs");
    }

    #[test]
    fn standalone_without_bot_id_accepts_any_bot() {
        let (configs, _) = build_configs("ping", None, 1, &data());
        assert!(configs.iter().any(|c| c.entity_id == 4));
    }
}
