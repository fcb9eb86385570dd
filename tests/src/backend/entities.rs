//! Entity writes (contract §4.10): the backend's JSON schema with jsonschema's choice of the reported
//! error, the protocol binding checks, then the write (POST creates, PUT replaces, DELETE cascades).

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use super::python;
use super::reply::Reply;
use crate::fixture::{Entity, Fixture, Id, ProtocolBinding, SensorBinding};

/// `POST /api/accounts/{a}/entities/`.
pub(crate) fn create(
    fixture: &mut Fixture,
    account: Id,
    body: &[u8],
    json_content_type: bool,
) -> Reply {
    let input = match parse_and_validate(fixture, account, body, json_content_type) {
        Ok(input) => input,
        Err(reply) => return reply,
    };
    if !fixture.accounts.contains_key(&account) {
        return Reply::internal_error();
    }
    let parent = match &input.parent {
        ParentInput::None => None,
        ParentInput::Id(id) if fixture.entities.contains_key(id) => Some(*id),
        ParentInput::Id(_) | ParentInput::Unusable => return Reply::internal_error(),
    };
    let id = fixture.random_unused_id();
    let mut entity = Entity {
        id,
        account,
        name: input.name.clone(),
        entity_type: input.entity_type.clone(),
        parent,
        details: input.details.clone(),
        protocols: BTreeMap::new(),
    };
    let complete = write_protocols(&mut entity, &input.protocols);
    fixture.entities.insert(id, entity);
    if complete {
        Reply::json(201, &serde_json::json!({ "id": id }))
    } else {
        Reply::internal_error()
    }
}

/// `PUT /api/accounts/{a}/entities/{e}`: validates first, then 404 if absent; never changes `parent`,
/// replaces `protocols` (absent means none).
pub(crate) fn update(
    fixture: &mut Fixture,
    account: Id,
    entity_id: Id,
    body: &[u8],
    json_content_type: bool,
) -> Reply {
    let input = match parse_and_validate(fixture, account, body, json_content_type) {
        Ok(input) => input,
        Err(reply) => return reply,
    };
    let Some(entity) = fixture
        .entities
        .get_mut(&entity_id)
        .filter(|e| e.account == account)
    else {
        return Reply::detail(404, "No such entity");
    };
    entity.name = input.name;
    entity.entity_type = input.entity_type;
    entity.details = input.details;
    entity.protocols.clear();
    if write_protocols(entity, &input.protocols) {
        Reply::no_content()
    } else {
        Reply::internal_error()
    }
}

/// `DELETE /api/accounts/{a}/entities/{e}`: the entity and all its descendants.
pub(crate) fn delete(fixture: &mut Fixture, account: Id, entity_id: Id) -> Reply {
    if fixture
        .entities
        .get(&entity_id)
        .is_none_or(|e| e.account != account)
    {
        return Reply::detail(404, "No such entity");
    }
    fixture.delete_entity_cascade(entity_id);
    Reply::no_content()
}

struct EntityInput {
    name: String,
    entity_type: String,
    parent: ParentInput,
    details: Value,
    protocols: Vec<(String, BindingInput)>,
}

enum ParentInput {
    None,
    Id(Id),
    /// A fractional number: the database refuses it.
    Unusable,
}

struct BindingInput {
    credential: Id,
    bot: Id,
    /// `None` interval entry: the key was missing, which the schema allows and the write chokes on.
    sensors: Vec<(Id, Option<Option<i64>>)>,
}

/// Writes bindings in order; stops at the first sensor entry without `interval`, leaving the entity
/// half-written as the backend does. Returns whether everything was written.
fn write_protocols(entity: &mut Entity, protocols: &[(String, BindingInput)]) -> bool {
    for (protocol, input) in protocols {
        let mut sensors = Vec::with_capacity(input.sensors.len());
        for &(sensor, interval) in &input.sensors {
            match interval {
                Some(interval) => sensors.push(SensorBinding { sensor, interval }),
                None => return false,
            }
        }
        entity.protocols.insert(
            protocol.clone(),
            ProtocolBinding {
                credential: Some(input.credential),
                sensors,
                bot: Some(input.bot),
            },
        );
    }
    true
}

fn parse_and_validate(
    fixture: &Fixture,
    account: Id,
    body: &[u8],
    json_content_type: bool,
) -> Result<EntityInput, Reply> {
    let Ok(instance) = serde_json::from_slice::<Value>(body) else {
        return Err(Reply::internal_error());
    };
    if let Some(message) = best_schema_error(&instance) {
        return Err(Reply::validation_failed(&message, json_content_type));
    }
    let Value::Object(object) = &instance else {
        return Err(Reply::internal_error());
    };
    let text = |key: &str| {
        object
            .get(key)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    let parent = match object.get("parent") {
        None | Some(Value::Null) => ParentInput::None,
        Some(value) => match number_id(value) {
            Some(id) => ParentInput::Id(id),
            None => ParentInput::Unusable,
        },
    };
    let mut protocols = Vec::new();
    if let Some(Value::Object(bindings)) = object.get("protocols") {
        for (protocol, binding) in bindings {
            let Value::Object(binding) = binding else {
                return Err(Reply::internal_error());
            };
            protocols.push((
                protocol.clone(),
                check_binding(fixture, account, protocol, binding, json_content_type)?,
            ));
        }
    }
    Ok(EntityInput {
        name: text("name"),
        entity_type: text("entity_type"),
        parent,
        details: object
            .get("details")
            .cloned()
            .unwrap_or(Value::Object(Map::new())),
        protocols,
    })
}

/// Credential, bot and sensors of one protocol must belong to the account and the protocol.
fn check_binding(
    fixture: &Fixture,
    account: Id,
    protocol: &str,
    binding: &Map<String, Value>,
    json_content_type: bool,
) -> Result<BindingInput, Reply> {
    let invalid = |message: String| Reply::validation_failed(&message, json_content_type);
    let credential_value = binding.get("credential").unwrap_or(&Value::Null);
    let credential = lookup_id(credential_value)?;
    let credential_ok = credential
        .and_then(|id| fixture.credentials.get(&id))
        .is_some_and(|c| c.account == account && c.protocol == protocol);
    let Some(credential) = credential.filter(|_| credential_ok) else {
        return Err(invalid(format!(
            "Invalid credential for this account/protocol combination: {}",
            python::str(credential_value)
        )));
    };

    let bot_value = binding.get("bot").unwrap_or(&Value::Null);
    let bot_id = lookup_id(bot_value)?;
    let bot = bot_id
        .and_then(|id| fixture.bots.get(&id))
        .filter(|b| b.tied_to_account.is_none() || b.tied_to_account == Some(account));
    let Some(bot) = bot else {
        return Err(invalid(format!(
            "Invalid bot for this account: {}",
            python::str(bot_value)
        )));
    };
    if bot.protocol.as_deref() != Some(protocol) {
        return Err(invalid(format!(
            "Invalid bot for this protocol: {}",
            python::str(bot_value)
        )));
    }

    let mut sensors = Vec::new();
    if let Some(Value::Array(entries)) = binding.get("sensors") {
        for entry in entries {
            let Value::Object(entry) = entry else {
                return Err(Reply::internal_error());
            };
            let sensor_value = entry.get("sensor").unwrap_or(&Value::Null);
            let sensor = lookup_id(sensor_value)?;
            let sensor_ok = sensor
                .and_then(|id| fixture.sensors.get(&id))
                .is_some_and(|s| s.account == account && s.protocol == protocol);
            let Some(sensor) = sensor.filter(|_| sensor_ok) else {
                return Err(invalid(format!(
                    "Invalid sensor for this account/protocol combination: {}",
                    python::str(sensor_value)
                )));
            };
            let interval = entry
                .get("interval")
                .map(|i| i.as_f64().map(|f| f.round() as i64));
            sensors.push((sensor, interval));
        }
    }
    Ok(BindingInput {
        credential,
        bot: bot.id,
        sensors,
    })
}

/// An id given as number or string, as the database compares it: a fractional number matches nothing
/// (Ok(None)), a non-numeric string is an SQL error (500).
fn lookup_id(value: &Value) -> Result<Option<Id>, Reply> {
    match value {
        Value::Number(_) => Ok(number_id(value)),
        Value::String(s) => match s.trim().parse::<Id>() {
            Ok(id) => Ok(Some(id)),
            Err(_) => Err(Reply::internal_error()),
        },
        _ => Err(Reply::internal_error()),
    }
}

fn number_id(value: &Value) -> Option<Id> {
    if let Some(id) = value.as_i64() {
        return Some(id);
    }
    value
        .as_f64()
        .filter(|f| f.fract() == 0.0 && f.abs() < 9.0e18)
        .map(|f| f as Id)
}

/// One schema violation and how deep in the instance it sits (jsonschema's `len(error.path)`).
struct SchemaError {
    depth: usize,
    message: String,
}

/// The message `jsonschema.validate` reports: the shallowest error, the first one among equals, with
/// errors produced in the schema's keyword order (type, properties, additionalProperties, required).
fn best_schema_error(instance: &Value) -> Option<String> {
    let mut errors = Vec::new();
    entity_errors(instance, &mut errors);
    let shallowest = errors.iter().map(|e| e.depth).min()?;
    errors
        .into_iter()
        .find(|e| e.depth == shallowest)
        .map(|e| e.message)
}

#[derive(Clone, Copy)]
enum JsonType {
    String,
    Number,
    Null,
    Object,
    Array,
}

impl JsonType {
    fn name(self) -> &'static str {
        match self {
            JsonType::String => "string",
            JsonType::Number => "number",
            JsonType::Null => "null",
            JsonType::Object => "object",
            JsonType::Array => "array",
        }
    }

    fn matches(self, value: &Value) -> bool {
        matches!(
            (self, value),
            (JsonType::String, Value::String(_))
                | (JsonType::Number, Value::Number(_))
                | (JsonType::Null, Value::Null)
                | (JsonType::Object, Value::Object(_))
                | (JsonType::Array, Value::Array(_))
        )
    }
}

/// Pushes a type error unless `value` has one of `types`; returns whether it matched.
fn check_type(
    value: &Value,
    types: &[JsonType],
    depth: usize,
    errors: &mut Vec<SchemaError>,
) -> bool {
    if types.iter().any(|t| t.matches(value)) {
        return true;
    }
    let names: Vec<String> = types.iter().map(|t| format!("'{}'", t.name())).collect();
    errors.push(SchemaError {
        depth,
        message: format!(
            "{} is not of type {}",
            python::repr(value),
            names.join(", ")
        ),
    });
    false
}

fn check_object_keys(
    object: &Map<String, Value>,
    allowed: &[&str],
    required: &[&str],
    depth: usize,
    errors: &mut Vec<SchemaError>,
) {
    let extras: Vec<String> = object
        .keys()
        .filter(|k| !allowed.contains(&k.as_str()))
        .map(|k| python::repr(&Value::String(k.clone())))
        .collect();
    if !extras.is_empty() {
        let verb = if extras.len() == 1 { "was" } else { "were" };
        errors.push(SchemaError {
            depth,
            message: format!(
                "Additional properties are not allowed ({} {verb} unexpected)",
                extras.join(", ")
            ),
        });
    }
    for key in required {
        if !object.contains_key(*key) {
            errors.push(SchemaError {
                depth,
                message: format!("'{key}' is a required property"),
            });
        }
    }
}

fn entity_errors(instance: &Value, errors: &mut Vec<SchemaError>) {
    if !check_type(instance, &[JsonType::Object], 0, errors) {
        return;
    }
    let Value::Object(object) = instance else {
        return;
    };
    let properties: [(&str, &[JsonType]); 5] = [
        ("name", &[JsonType::String]),
        ("entity_type", &[JsonType::String]),
        ("parent", &[JsonType::Number, JsonType::Null]),
        ("details", &[JsonType::Object]),
        ("protocols", &[JsonType::Object]),
    ];
    for (key, types) in properties {
        let Some(value) = object.get(key) else {
            continue;
        };
        if check_type(value, types, 1, errors) && key == "protocols" {
            if let Value::Object(bindings) = value {
                for binding in bindings.values() {
                    binding_errors(binding, 2, errors);
                }
            }
        }
    }
    check_object_keys(
        object,
        &["name", "entity_type", "parent", "details", "protocols"],
        &["name", "entity_type", "details"],
        0,
        errors,
    );
}

fn binding_errors(binding: &Value, depth: usize, errors: &mut Vec<SchemaError>) {
    if !check_type(binding, &[JsonType::Object], depth, errors) {
        return;
    }
    let Value::Object(object) = binding else {
        return;
    };
    let id_types: &[JsonType] = &[JsonType::String, JsonType::Number];
    for key in ["credential", "bot"] {
        if let Some(value) = object.get(key) {
            check_type(value, id_types, depth + 1, errors);
        }
    }
    if let Some(sensors) = object.get("sensors") {
        if check_type(sensors, &[JsonType::Array], depth + 1, errors) {
            if let Value::Array(entries) = sensors {
                for entry in entries {
                    sensor_entry_errors(entry, depth + 2, errors);
                }
            }
        }
    }
    check_object_keys(
        object,
        &["credential", "bot", "sensors"],
        &["credential", "bot", "sensors"],
        depth,
        errors,
    );
}

fn sensor_entry_errors(entry: &Value, depth: usize, errors: &mut Vec<SchemaError>) {
    if !check_type(entry, &[JsonType::Object], depth, errors) {
        return;
    }
    let Value::Object(object) = entry else { return };
    if let Some(sensor) = object.get("sensor") {
        check_type(
            sensor,
            &[JsonType::String, JsonType::Number],
            depth + 1,
            errors,
        );
    }
    if let Some(interval) = object.get("interval") {
        check_type(
            interval,
            &[JsonType::Number, JsonType::Null],
            depth + 1,
            errors,
        );
    }
    check_object_keys(object, &["sensor", "interval"], &["sensor"], depth, errors);
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn best(value: Value) -> Option<String> {
        best_schema_error(&value)
    }

    #[test]
    fn reports_what_jsonschema_reports() {
        assert_eq!(
            best(json!({"name": "x", "entity_type": "device"})).as_deref(),
            Some("'details' is a required property")
        );
        assert_eq!(
            best(json!({"id": 1, "name": "x", "entity_type": "device", "details": {}})).as_deref(),
            Some("Additional properties are not allowed ('id' was unexpected)")
        );
        assert_eq!(
            best(json!([])).as_deref(),
            Some("[] is not of type 'object'")
        );
        // A root error wins over a deeper one.
        assert_eq!(
            best(json!({"name": 5, "entity_type": "device"})).as_deref(),
            Some("'details' is a required property")
        );
        assert_eq!(
            best(json!({"name": "x", "entity_type": "d", "details": {}, "parent": "7"})).as_deref(),
            Some("'7' is not of type 'number', 'null'")
        );
        assert_eq!(
            best(json!({"name": "x", "entity_type": "d", "details": {}, "protocols": {"snmp": {"credential": 1, "bot": 2}}}))
                .as_deref(),
            Some("'sensors' is a required property")
        );
        assert_eq!(
            best(json!({"name": "x", "entity_type": "d", "details": {},
                "protocols": {"snmp": {"credential": 1, "bot": 2, "sensors": [{"interval": 5}]}}}))
            .as_deref(),
            Some("'sensor' is a required property")
        );
        assert_eq!(
            best(json!({"name": "x", "entity_type": "d", "details": {}, "parent": null})),
            None
        );
    }
}
