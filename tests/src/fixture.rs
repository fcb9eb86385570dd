//! The data a [`TestBackend`](crate::TestBackend) serves: accounts, bots with their permissions, entities
//! with protocol bindings, credentials and sensors, and the answer of `/api/status/info`.
//!
//! A test builds a [`Fixture`] in code, choosing every id itself, hands it to the backend, and may change
//! it later through [`TestBackend::update`](crate::TestBackend::update). Builder methods panic with a clear
//! message when the test refers to something it never added: that is a bug in the test, not in the bot.

use std::collections::BTreeMap;

use serde_json::{json, Value};

/// Every record id of the backend (accounts, bots, entities, credentials, sensors).
pub type Id = i64;

/// An account: the unit of data separation in Grafolean.
#[derive(Clone, Debug, PartialEq)]
pub struct Account {
    pub id: Id,
    pub name: String,
}

/// A permission grant as stored by the backend: `resource_prefix` None means everything, `methods` None
/// means every method.
#[derive(Clone, Debug, PartialEq)]
pub struct Permission {
    pub resource_prefix: Option<String>,
    pub methods: Option<Vec<String>>,
}

impl Permission {
    /// Every method on every resource (what an admin has).
    pub fn everything() -> Self {
        Permission {
            resource_prefix: None,
            methods: None,
        }
    }

    /// Every method on `prefix` and below.
    pub fn all_methods(prefix: &str) -> Self {
        Permission {
            resource_prefix: Some(prefix.to_string()),
            methods: None,
        }
    }

    /// Only the listed methods on `prefix` and below.
    pub fn methods(prefix: &str, methods: &[&str]) -> Self {
        Permission {
            resource_prefix: Some(prefix.to_string()),
            methods: Some(methods.iter().map(|m| m.to_string()).collect()),
        }
    }
}

/// A bot user: its token authenticates it, its permissions decide what it may touch.
#[derive(Clone, Debug, PartialEq)]
pub struct Bot {
    pub id: Id,
    /// A UUID string; compared case-insensitively by the backend.
    pub token: String,
    pub name: String,
    pub protocol: Option<String>,
    /// None for systemwide bots, the account for bots created inside an account.
    pub tied_to_account: Option<Id>,
    pub permissions: Vec<Permission>,
    pub insert_time: i64,
    /// Unix time of the last authenticated request; the backend updates it.
    pub last_login: Option<i64>,
}

impl Bot {
    /// A bot without any permission, with the token [`Bot::default_token`] of its id.
    pub fn new(id: Id, name: &str, protocol: Option<&str>) -> Self {
        Bot {
            id,
            token: Bot::default_token(id),
            name: name.to_string(),
            protocol: protocol.map(str::to_string),
            tied_to_account: None,
            permissions: Vec::new(),
            insert_time: 1_613_291_111,
            last_login: None,
        }
    }

    /// A systemwide bot as the installation creates it: prefix `accounts`, all methods.
    pub fn systemwide(id: Id, protocol: &str) -> Self {
        let mut bot = Bot::new(id, &format!("Systemwide {protocol} bot"), Some(protocol));
        bot.permissions = vec![Permission::all_methods("accounts")];
        bot
    }

    /// A bot created inside account `account` in the UI, with exactly the UI's grants: POST and PUT of
    /// values, GET of entities, credentials and sensors. Entity writes get 403.
    pub fn account_bot(id: Id, account: Id, protocol: &str) -> Self {
        let mut bot = Bot::new(
            id,
            &format!("{protocol} bot of account {account}"),
            Some(protocol),
        );
        bot.tied_to_account = Some(account);
        bot.permissions = vec![
            Permission::methods(&format!("accounts/{account}/values"), &["POST", "PUT"]),
            Permission::methods(&format!("accounts/{account}/entities"), &["GET"]),
            Permission::methods(&format!("accounts/{account}/credentials"), &["GET"]),
            Permission::methods(&format!("accounts/{account}/sensors"), &["GET"]),
        ];
        bot
    }

    /// Replaces the token (tests of case-insensitivity or of odd tokens).
    pub fn with_token(mut self, token: &str) -> Self {
        self.token = token.to_string();
        self
    }

    /// Replaces the permissions.
    pub fn with_permissions(mut self, permissions: Vec<Permission>) -> Self {
        self.permissions = permissions;
        self
    }

    /// A deterministic, valid UUID token derived from the bot id, so tests need not invent tokens.
    pub fn default_token(id: Id) -> String {
        format!(
            "00000000-0000-4000-8000-{:012x}",
            id as u64 & 0xffff_ffff_ffff
        )
    }
}

/// A sensor attached to an entity for one protocol, with the entity's own interval (None = the sensor's
/// default interval).
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct SensorBinding {
    pub sensor: Id,
    pub interval: Option<i64>,
}

/// What `protocols.<name>` of an entity holds. The backend always stores a credential and a bot for new
/// bindings; None reproduces legacy rows (null bot) or damaged data (null credential).
#[derive(Clone, Debug, PartialEq)]
pub struct ProtocolBinding {
    pub credential: Option<Id>,
    pub sensors: Vec<SensorBinding>,
    pub bot: Option<Id>,
}

/// An entity (a device, an interface...). `details` is stored verbatim, as the backend does.
#[derive(Clone, Debug, PartialEq)]
pub struct Entity {
    pub id: Id,
    pub account: Id,
    pub name: String,
    pub entity_type: String,
    pub parent: Option<Id>,
    pub details: Value,
    pub protocols: BTreeMap<String, ProtocolBinding>,
}

impl Entity {
    /// An entity without parent, details `{}` and protocols.
    pub fn new(account: Id, id: Id, name: &str, entity_type: &str) -> Self {
        Entity {
            id,
            account,
            name: name.to_string(),
            entity_type: entity_type.to_string(),
            parent: None,
            details: json!({}),
            protocols: BTreeMap::new(),
        }
    }

    /// Sets `details`.
    pub fn details(mut self, details: Value) -> Self {
        self.details = details;
        self
    }

    /// Sets `parent`.
    pub fn parent(mut self, parent: Id) -> Self {
        self.parent = Some(parent);
        self
    }
}

/// A credential of an account (community, v3 keys, ping settings...).
#[derive(Clone, Debug, PartialEq)]
pub struct Credential {
    pub id: Id,
    pub account: Id,
    pub name: String,
    pub protocol: String,
    pub details: Value,
}

/// A sensor of an account (what to collect, and how often by default).
#[derive(Clone, Debug, PartialEq)]
pub struct Sensor {
    pub id: Id,
    pub account: Id,
    pub name: String,
    pub protocol: String,
    pub default_interval: Option<i64>,
    pub details: Value,
}

/// What `GET /api/status/info` reports; bots wait until no migration is needed and a user exists.
#[derive(Clone, Debug, PartialEq)]
pub struct StatusInfo {
    pub db_migration_needed: bool,
    /// None while a migration is pending, as the backend reports it.
    pub user_exists: Option<bool>,
    pub db_version: i64,
}

impl StatusInfo {
    /// A backend ready for bots.
    pub fn ready() -> Self {
        StatusInfo {
            db_migration_needed: false,
            user_exists: Some(true),
            db_version: 30,
        }
    }

    /// A backend waiting for its database migration: bots must keep waiting.
    pub fn migration_needed() -> Self {
        StatusInfo {
            db_migration_needed: true,
            user_exists: None,
            db_version: 29,
        }
    }

    /// A freshly installed backend without an admin user: bots must keep waiting.
    pub fn no_user() -> Self {
        StatusInfo {
            db_migration_needed: false,
            user_exists: Some(false),
            db_version: 30,
        }
    }
}

impl Default for StatusInfo {
    fn default() -> Self {
        StatusInfo::ready()
    }
}

/// Ids of the records [`Fixture::seed_account_defaults`] creates, like the backend does for a new account.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SeededIds {
    pub ping_credential: Id,
    pub ping_sensor: Id,
    pub snmp_credential: Id,
    pub snmp_traffic_in: Id,
    pub snmp_traffic_out: Id,
    pub snmp_lmsensors: Id,
    pub netflow_credential: Id,
    pub netflow_sensor: Id,
}

/// Everything the test backend serves. Lists come out in ascending id order, as the backend's do.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Fixture {
    pub accounts: BTreeMap<Id, Account>,
    pub bots: BTreeMap<Id, Bot>,
    pub entities: BTreeMap<Id, Entity>,
    pub credentials: BTreeMap<Id, Credential>,
    pub sensors: BTreeMap<Id, Sensor>,
    pub status: StatusInfo,
}

/// The bot id of [`Fixture::generated`].
pub const GENERATED_BOT: Id = 1_620_000_011;

impl Fixture {
    /// An empty fixture whose backend reports ready.
    pub fn new() -> Self {
        Fixture::default()
    }

    /// Adds (or renames) an account.
    pub fn account(&mut self, id: Id, name: &str) -> &mut Self {
        self.accounts.insert(
            id,
            Account {
                id,
                name: name.to_string(),
            },
        );
        self
    }

    /// Adds a bot (see [`Bot::systemwide`], [`Bot::account_bot`]).
    pub fn bot(&mut self, bot: Bot) -> &mut Self {
        self.bots.insert(bot.id, bot);
        self
    }

    /// Shorthand for `bot(Bot::systemwide(id, protocol))`.
    pub fn systemwide_bot(&mut self, id: Id, protocol: &str) -> &mut Self {
        self.bot(Bot::systemwide(id, protocol))
    }

    /// Shorthand for `bot(Bot::account_bot(id, account, protocol))`.
    pub fn account_bot(&mut self, id: Id, account: Id, protocol: &str) -> &mut Self {
        self.bot(Bot::account_bot(id, account, protocol))
    }

    /// Adds any entity.
    pub fn entity(&mut self, entity: Entity) -> &mut Self {
        self.entities.insert(entity.id, entity);
        self
    }

    /// Adds a device with `details` `{"ipv4": ipv4}` (the UI's free text, so `"127.0.0.1:16161"` works).
    pub fn device(&mut self, account: Id, id: Id, name: &str, ipv4: &str) -> &mut Self {
        self.entity(Entity::new(account, id, name, "device").details(json!({ "ipv4": ipv4 })))
    }

    /// Adds an interface entity as the SNMP bot creates them (strings in details).
    pub fn interface(
        &mut self,
        account: Id,
        id: Id,
        parent: Id,
        name: &str,
        snmp_index: &str,
        speed_bps: &str,
    ) -> &mut Self {
        self.entity(
            Entity::new(account, id, name, "interface")
                .parent(parent)
                .details(json!({ "snmp_index": snmp_index, "speed_bps": speed_bps })),
        )
    }

    /// Adds a credential named after its protocol and id.
    pub fn credential(&mut self, account: Id, id: Id, protocol: &str, details: Value) -> &mut Self {
        let name = format!("{protocol} credential {id}");
        self.credentials.insert(
            id,
            Credential {
                id,
                account,
                name,
                protocol: protocol.to_string(),
                details,
            },
        );
        self
    }

    /// Adds a sensor named after its protocol and id.
    pub fn sensor(
        &mut self,
        account: Id,
        id: Id,
        protocol: &str,
        default_interval: Option<i64>,
        details: Value,
    ) -> &mut Self {
        let name = format!("{protocol} sensor {id}");
        self.sensors.insert(
            id,
            Sensor {
                id,
                account,
                name,
                protocol: protocol.to_string(),
                default_interval,
                details,
            },
        );
        self
    }

    /// Attaches `protocol` to an entity with a credential, sensors (each with its interval, None = the
    /// sensor's default) and the bot in charge (None = a legacy binding without bot). Replaces an existing
    /// binding of that protocol.
    pub fn bind(
        &mut self,
        entity: Id,
        protocol: &str,
        credential: Id,
        sensors: &[(Id, Option<i64>)],
        bot: impl Into<Option<Id>>,
    ) -> &mut Self {
        let binding = ProtocolBinding {
            credential: Some(credential),
            sensors: sensors
                .iter()
                .map(|&(sensor, interval)| SensorBinding { sensor, interval })
                .collect(),
            bot: bot.into(),
        };
        self.entity_mut(entity)
            .protocols
            .insert(protocol.to_string(), binding);
        self
    }

    /// Removes `protocol` from an entity.
    pub fn unbind(&mut self, entity: Id, protocol: &str) -> &mut Self {
        self.entity_mut(entity).protocols.remove(protocol);
        self
    }

    /// Changes the entity's interval of one bound sensor (None = the sensor's default).
    pub fn set_interval(
        &mut self,
        entity: Id,
        protocol: &str,
        sensor: Id,
        interval: Option<i64>,
    ) -> &mut Self {
        let binding = self.binding_mut(entity, protocol);
        match binding.sensors.iter_mut().find(|s| s.sensor == sensor) {
            Some(s) => s.interval = interval,
            None => panic!("fixture: entity {entity} has no sensor {sensor} for {protocol}"),
        }
        self
    }

    /// Changes a sensor's default interval.
    pub fn set_default_interval(&mut self, sensor: Id, interval: Option<i64>) -> &mut Self {
        match self.sensors.get_mut(&sensor) {
            Some(s) => s.default_interval = interval,
            None => panic!("fixture: no sensor {sensor}"),
        }
        self
    }

    /// Removes an entity and all its descendants, as `DELETE` does.
    pub fn remove_entity(&mut self, id: Id) -> &mut Self {
        self.delete_entity_cascade(id);
        self
    }

    /// Mutable access to an entity; panics when the fixture has none with that id.
    pub fn entity_mut(&mut self, id: Id) -> &mut Entity {
        match self.entities.get_mut(&id) {
            Some(e) => e,
            None => panic!("fixture: no entity {id}"),
        }
    }

    /// Mutable access to a bot (permissions, token, protocol); panics when absent.
    pub fn bot_mut(&mut self, id: Id) -> &mut Bot {
        match self.bots.get_mut(&id) {
            Some(b) => b,
            None => panic!("fixture: no bot {id}"),
        }
    }

    /// Mutable access to one protocol binding of an entity; panics when absent.
    pub fn binding_mut(&mut self, entity: Id, protocol: &str) -> &mut ProtocolBinding {
        match self.entity_mut(entity).protocols.get_mut(protocol) {
            Some(b) => b,
            None => panic!("fixture: entity {entity} has no {protocol} binding"),
        }
    }

    /// The entities of an account, ascending id.
    pub fn entities_of(&self, account: Id) -> impl Iterator<Item = &Entity> {
        self.entities.values().filter(move |e| e.account == account)
    }

    /// Adds the credentials and sensors the backend seeds into every new account (contract §4.7), with
    /// fresh ids that collide with nothing in the fixture.
    pub fn seed_account_defaults(&mut self, account: Id) -> SeededIds {
        let ids = SeededIds {
            ping_credential: self.unused_id_after(0),
            ping_sensor: self.unused_id_after(1),
            snmp_credential: self.unused_id_after(2),
            snmp_traffic_in: self.unused_id_after(3),
            snmp_traffic_out: self.unused_id_after(4),
            snmp_lmsensors: self.unused_id_after(5),
            netflow_credential: self.unused_id_after(6),
            netflow_sensor: self.unused_id_after(7),
        };
        self.credential(
            account,
            ids.ping_credential,
            "ping",
            default_credential_details("ping"),
        );
        self.sensor(account, ids.ping_sensor, "ping", Some(60), json!({}));
        self.credential(
            account,
            ids.snmp_credential,
            "snmp",
            default_credential_details("snmp"),
        );
        let traffic = |column: &str, name: &str| {
            json!({
                "oids": [
                    {"oid": "1.3.6.1.2.1.2.2.1.2", "fetch_method": "walk"},
                    {"oid": format!("1.3.6.1.2.1.2.2.1.{column}"), "fetch_method": "walk"}
                ],
                "expression": "$2",
                "output_path": format!("if.{name}.{{$index}}.{{$1}}"),
            })
        };
        self.sensor(
            account,
            ids.snmp_traffic_in,
            "snmp",
            Some(60),
            traffic("10", "in-octets"),
        );
        self.sensor(
            account,
            ids.snmp_traffic_out,
            "snmp",
            Some(60),
            traffic("16", "out-octets"),
        );
        self.sensor(
            account,
            ids.snmp_lmsensors,
            "snmp",
            Some(60),
            json!({
                "oids": [
                    {"oid": "1.3.6.1.4.1.2021.13.16.2.1.2", "fetch_method": "walk"},
                    {"oid": "1.3.6.1.4.1.2021.13.16.2.1.3", "fetch_method": "walk"}
                ],
                "expression": "$2 / 1000.0",
                "output_path": "lmsensors.temp.{$index}.{$1}",
            }),
        );
        self.credential(account, ids.netflow_credential, "netflow", json!({}));
        self.sensor(account, ids.netflow_sensor, "netflow", None, json!({}));
        for (id, name) in [
            (ids.ping_credential, "Ping default"),
            (ids.snmp_credential, "SNMP v2c public"),
            (ids.netflow_credential, "NetFlow"),
        ] {
            if let Some(c) = self.credentials.get_mut(&id) {
                c.name = name.to_string();
            }
        }
        for (id, name) in [
            (ids.ping_sensor, "Ping"),
            (ids.snmp_traffic_in, "Traffic IN"),
            (ids.snmp_traffic_out, "Traffic OUT"),
            (ids.snmp_lmsensors, "lm-sensors temperature"),
            (ids.netflow_sensor, "NetFlow"),
        ] {
            if let Some(s) = self.sensors.get_mut(&id) {
                s.name = name.to_string();
            }
        }
        ids
    }

    /// A fixture for load tests and benchmarks: `accounts` accounts (ids 1001, 1002...), each with one
    /// credential and one sensor of `protocol` (60 s) and `devices_per_account` devices bound to them
    /// for the systemwide bot [`GENERATED_BOT`]. Devices get distinct loopback addresses
    /// (127.x.y.z), so a ping bot can really probe all of them.
    pub fn generated(accounts: usize, devices_per_account: usize, protocol: &str) -> Fixture {
        let mut fixture = Fixture::new();
        fixture.systemwide_bot(GENERATED_BOT, protocol);
        let mut device_number: u32 = 0;
        for a in 0..accounts {
            let account = 1001 + a as Id;
            let credential = 700_000_000 + a as Id;
            let sensor = 800_000_000 + a as Id;
            fixture.account(account, &format!("Account {:05}", a + 1));
            fixture.credential(
                account,
                credential,
                protocol,
                default_credential_details(protocol),
            );
            let interval = if protocol == "netflow" {
                None
            } else {
                Some(60)
            };
            fixture.sensor(
                account,
                sensor,
                protocol,
                interval,
                default_sensor_details(protocol),
            );
            for d in 0..devices_per_account {
                device_number += 1;
                let id = 1_000_000_000 + Id::from(device_number);
                // 127.0.0.1 upwards; the last octet stays within 1..=254.
                let host = device_number - 1;
                let ip = format!(
                    "127.{}.{}.{}",
                    (host / (254 * 256)) % 256,
                    (host / 254) % 256,
                    host % 254 + 1
                );
                fixture.device(account, id, &format!("device-{a}-{d}"), &ip);
                fixture.bind(id, protocol, credential, &[(sensor, None)], GENERATED_BOT);
            }
        }
        fixture
    }

    /// Deletes an entity and, recursively, every entity whose parent it is. Returns whether it existed.
    pub(crate) fn delete_entity_cascade(&mut self, id: Id) -> bool {
        if self.entities.remove(&id).is_none() {
            return false;
        }
        let mut doomed = vec![id];
        while let Some(parent) = doomed.pop() {
            let children: Vec<Id> = self
                .entities
                .values()
                .filter(|e| e.parent == Some(parent))
                .map(|e| e.id)
                .collect();
            for child in children {
                self.entities.remove(&child);
                doomed.push(child);
            }
        }
        true
    }

    /// A random id in 1..2^31-1 that no record of the fixture uses.
    pub(crate) fn random_unused_id(&self) -> Id {
        use rand::Rng;
        let mut rng = rand::thread_rng();
        loop {
            let id: Id = rng.gen_range(1..(1i64 << 31) - 1);
            if !self.id_in_use(id) {
                return id;
            }
        }
    }

    fn id_in_use(&self, id: Id) -> bool {
        self.accounts.contains_key(&id)
            || self.bots.contains_key(&id)
            || self.entities.contains_key(&id)
            || self.credentials.contains_key(&id)
            || self.sensors.contains_key(&id)
    }

    /// Deterministic fresh ids for seeding: the smallest unused id above the fixture's largest id plus
    /// `offset`. Keeps seeded fixtures reproducible between runs.
    fn unused_id_after(&self, offset: Id) -> Id {
        let max = [
            self.accounts.keys().next_back(),
            self.bots.keys().next_back(),
            self.entities.keys().next_back(),
            self.credentials.keys().next_back(),
            self.sensors.keys().next_back(),
        ]
        .into_iter()
        .flatten()
        .copied()
        .max()
        .unwrap_or(0);
        max + 1 + offset
    }
}

/// Credential details as the UI stores them for a protocol (§4.6): ping settings as strings, SNMPv2c
/// community `public`, `{}` for NetFlow and anything else.
pub fn default_credential_details(protocol: &str) -> Value {
    match protocol {
        "ping" => json!({"n_packets": "3", "sleep_packets": "1.0", "timeout": "1.0", "retry": "0"}),
        "snmp" => json!({"version": "snmpv2c", "snmpv12_community": "public"}),
        _ => json!({}),
    }
}

/// Sensor details for generated fixtures: sysUpTime by GET for SNMP, `{}` otherwise.
pub fn default_sensor_details(protocol: &str) -> Value {
    match protocol {
        "snmp" => json!({
            "oids": [{"oid": "1.3.6.1.2.1.1.3.0", "fetch_method": "get"}],
            "expression": "$1",
            "output_path": "sysuptime",
        }),
        _ => json!({}),
    }
}
