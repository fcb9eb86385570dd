//! The request pipeline of the backend: `/api/status/info` without auth, then authentication,
//! permission check and only then routing, with FastAPI's 404/405/422 answers (contract §1-§4).

use std::collections::BTreeMap;
use std::time::{SystemTime, UNIX_EPOCH};

use percent_encoding::percent_decode_str;
use serde::Serialize;
use serde_json::{json, Value};

use super::auth::{self, AuthFailure};
use super::reply::Reply;
use super::values::{self, ValuesRequest, WriteMethod};
use super::{entities, Shared};
use crate::fixture::{Bot, Credential, Entity, Fixture, Id, Sensor, SensorBinding};

/// The parts of an HTTP request the backend looks at.
pub(crate) struct ApiRequest<'a> {
    pub method: &'a str,
    /// Raw path, still percent-encoded.
    pub path: &'a str,
    /// Decoded query parameters in order, `b` included.
    pub query: &'a [(String, String)],
    pub authorization_present: bool,
    pub content_type: Option<&'a str>,
    pub body: &'a [u8],
}

/// The answer and who asked (for the request log).
pub(crate) struct Handled {
    pub reply: Reply,
    pub bot: Option<Id>,
}

/// Serves one request against the shared state.
pub(crate) fn handle(shared: &Shared, request: &ApiRequest<'_>) -> Handled {
    let path = percent_decode_str(request.path).decode_utf8_lossy();
    if request.method == "GET" && path == "/api/status/info" {
        let status = shared.lock_fixture().status.clone();
        return Handled {
            reply: Reply::json(200, &status_info(&status)),
            bot: None,
        };
    }

    let mut fixture = shared.lock_fixture();
    let token = values::last(request.query, "b");
    let bot_id = match auth::authenticate(&fixture, request.authorization_present, token) {
        Ok(id) => id,
        Err(AuthFailure::Unauthorized) => {
            return Handled {
                reply: Reply::unauthorized(),
                bot: None,
            }
        }
        Err(AuthFailure::CouldNotValidate) => {
            return Handled {
                reply: Reply::could_not_validate_access(),
                bot: None,
            }
        }
    };
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let Some(bot) = fixture.bots.get_mut(&bot_id) else {
        return Handled {
            reply: Reply::unauthorized(),
            bot: None,
        };
    };
    bot.last_login = Some(now.as_secs() as i64);
    let bot = bot.clone();

    if !auth::is_allowed(&bot, auth::resource_of(&path), request.method) {
        return Handled {
            reply: Reply::forbidden(),
            bot: Some(bot_id),
        };
    }

    let reply = route(
        shared,
        &mut fixture,
        &bot,
        &path,
        request,
        now.as_secs_f64(),
    );
    Handled {
        reply,
        bot: Some(bot_id),
    }
}

/// Which endpoint a path names.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Endpoint {
    StatusInfo,
    Profile,
    ProfilePermissions,
    Accounts,
    Bots,
    Account,
    Entities,
    Entity,
    Credentials,
    Credential,
    Sensors,
    Sensor,
    Values,
}

fn route(
    shared: &Shared,
    fixture: &mut Fixture,
    bot: &Bot,
    path: &str,
    request: &ApiRequest<'_>,
    now: f64,
) -> Reply {
    let Some(rest) = path.strip_prefix("/api/") else {
        return Reply::not_found();
    };
    // Every endpoint also answers with one trailing slash.
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    let segments: Vec<&str> = rest.split('/').collect();
    use Endpoint::*;
    let (endpoint, methods, params): (Endpoint, &[&str], Vec<(&str, &str)>) =
        match segments.as_slice() {
            ["status", "info"] => (StatusInfo, &["GET"], vec![]),
            ["profile"] => (Profile, &["GET"], vec![]),
            ["profile", "permissions"] => (ProfilePermissions, &["GET"], vec![]),
            ["accounts"] => (Accounts, &["GET"], vec![]),
            ["bots"] => (Bots, &["GET"], vec![]),
            ["accounts", a] => (Account, &["GET"], vec![("account_id", a)]),
            ["accounts", a, "entities"] => (Entities, &["GET", "POST"], vec![("account_id", a)]),
            ["accounts", a, "entities", e] => (
                Entity,
                &["GET", "PUT", "DELETE"],
                vec![("account_id", a), ("entity_id", e)],
            ),
            ["accounts", a, "credentials"] => (Credentials, &["GET"], vec![("account_id", a)]),
            ["accounts", a, "credentials", c] => (
                Credential,
                &["GET"],
                vec![("account_id", a), ("credential_id", c)],
            ),
            ["accounts", a, "sensors"] => (Sensors, &["GET"], vec![("account_id", a)]),
            ["accounts", a, "sensors", s] => {
                (Sensor, &["GET"], vec![("account_id", a), ("sensor_id", s)])
            }
            ["accounts", a, "values"] => (Values, &["POST", "PUT"], vec![("account_id", a)]),
            _ => return Reply::not_found(),
        };
    if segments.iter().any(|s| s.is_empty()) {
        return Reply::not_found();
    }
    if !methods.contains(&request.method) {
        return Reply::method_not_allowed();
    }
    let mut ids = Vec::with_capacity(params.len());
    let mut errors = Vec::new();
    for (name, raw) in &params {
        match parse_int(raw) {
            Some(id) => ids.push(id),
            None => errors.push(json!({
                "loc": ["path", name],
                "msg": "value is not a valid integer",
                "type": "type_error.integer",
            })),
        }
    }
    if !errors.is_empty() {
        return Reply::json(422, &json!({ "detail": errors }));
    }
    let account = ids.first().copied().unwrap_or_default();
    let item = ids.get(1).copied().unwrap_or_default();
    let json_content_type = request.content_type == Some("application/json");

    match (endpoint, request.method) {
        (StatusInfo, _) => Reply::json(200, &status_info(&fixture.status)),
        (Profile, _) => Reply::json(200, &profile(bot)),
        (ProfilePermissions, _) => {
            let list: Vec<Value> = bot
                .permissions
                .iter()
                .enumerate()
                .map(|(i, p)| json!({"id": i + 1, "resource_prefix": p.resource_prefix, "methods": p.methods}))
                .collect();
            Reply::json(200, &List { list })
        }
        (Accounts, _) => {
            let list: Vec<Value> = auth::visible_accounts(fixture, bot)
                .into_iter()
                .map(|a| json!({"id": a.id, "name": a.name}))
                .collect();
            Reply::json(200, &List { list })
        }
        (Bots, _) => {
            let list: Vec<BotRecord<'_>> = fixture
                .bots
                .values()
                .filter(|b| b.tied_to_account.is_none())
                .map(BotRecord::from)
                .collect();
            Reply::json(200, &List { list })
        }
        (Account, _) => match fixture.accounts.get(&account) {
            Some(a) => Reply::json(200, &json!({"id": a.id, "name": a.name})),
            None => Reply::detail(404, "No such account"),
        },
        (Entities, "GET") => {
            let list: Vec<EntityRecord<'_>> = fixture
                .entities_of(account)
                .map(EntityRecord::from)
                .collect();
            Reply::json(200, &List { list })
        }
        (Entities, _) => entities::create(fixture, account, request.body, json_content_type),
        (Entity, "GET") => match fixture.entities.get(&item).filter(|e| e.account == account) {
            Some(e) => Reply::json(200, &EntityRecord::from(e)),
            None => Reply::detail(404, "No such entity"),
        },
        (Entity, "PUT") => {
            entities::update(fixture, account, item, request.body, json_content_type)
        }
        (Entity, _) => entities::delete(fixture, account, item),
        (Credentials, _) => {
            let list: Vec<CredentialRecord<'_>> = fixture
                .credentials
                .values()
                .filter(|c| c.account == account)
                .map(CredentialRecord::from)
                .collect();
            Reply::json(200, &List { list })
        }
        (Credential, _) => match fixture
            .credentials
            .get(&item)
            .filter(|c| c.account == account)
        {
            Some(c) => Reply::json(200, &CredentialRecord::from(c)),
            None => Reply::detail(404, "No such credential"),
        },
        (Sensors, _) => {
            let list: Vec<SensorRecord<'_>> = fixture
                .sensors
                .values()
                .filter(|s| s.account == account)
                .map(SensorRecord::from)
                .collect();
            Reply::json(200, &List { list })
        }
        (Sensor, _) => match fixture.sensors.get(&item).filter(|s| s.account == account) {
            Some(s) => Reply::json(200, &SensorRecord::from(s)),
            None => Reply::detail(404, "No such sensor"),
        },
        (Values, method) => {
            let values_request = ValuesRequest {
                account,
                account_exists: fixture.accounts.contains_key(&account),
                method: if method == "PUT" {
                    WriteMethod::Put
                } else {
                    WriteMethod::Post
                },
                body: request.body,
                query: request.query,
                json_content_type,
                now,
            };
            let mut store = shared.lock_values();
            values::write(&mut store, &values_request)
        }
    }
}

/// Pydantic's integer parsing of a path parameter: optional whitespace and sign, ASCII digits.
fn parse_int(raw: &str) -> Option<Id> {
    let s = raw.trim();
    let digits = s.strip_prefix(['+', '-']).unwrap_or(s);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

fn status_info(status: &crate::fixture::StatusInfo) -> Value {
    json!({
        "alive": true,
        "db_migration_needed": status.db_migration_needed,
        "db_version": status.db_version,
        "user_exists": status.user_exists,
        "cors_domains": [],
        "mqtt_ws_hostname": "",
        "mqtt_ws_port": "",
        "enable_signup": false,
    })
}

fn profile(bot: &Bot) -> Value {
    json!({ "user_id": bot.id, "user_type": "bot", "record": BotRecord::from(bot) })
}

#[derive(Serialize)]
struct BotRecord<'a> {
    id: Id,
    name: &'a str,
    protocol: Option<&'a str>,
    tied_to_account: Option<Id>,
    config: Option<()>,
    insert_time: i64,
    last_login: Option<i64>,
}

impl<'a> From<&'a Bot> for BotRecord<'a> {
    fn from(bot: &'a Bot) -> Self {
        BotRecord {
            id: bot.id,
            name: &bot.name,
            protocol: bot.protocol.as_deref(),
            tied_to_account: bot.tied_to_account,
            config: None,
            insert_time: bot.insert_time,
            last_login: bot.last_login,
        }
    }
}

/// `{"list": [...]}` with the items' field order kept.
#[derive(Serialize)]
struct List<T: Serialize> {
    list: Vec<T>,
}

#[derive(Serialize)]
struct EntityRecord<'a> {
    id: Id,
    name: &'a str,
    entity_type: &'a str,
    parent: Option<Id>,
    details: &'a Value,
    protocols: BTreeMap<&'a str, BindingRecord<'a>>,
}

#[derive(Serialize)]
struct BindingRecord<'a> {
    credential: Option<Id>,
    sensors: &'a [SensorBinding],
    bot: Option<Id>,
}

impl<'a> From<&'a Entity> for EntityRecord<'a> {
    fn from(entity: &'a Entity) -> Self {
        let protocols = entity
            .protocols
            .iter()
            .map(|(name, binding)| {
                let record = BindingRecord {
                    credential: binding.credential,
                    sensors: &binding.sensors,
                    bot: binding.bot,
                };
                (name.as_str(), record)
            })
            .collect();
        EntityRecord {
            id: entity.id,
            name: &entity.name,
            entity_type: &entity.entity_type,
            parent: entity.parent,
            details: &entity.details,
            protocols,
        }
    }
}

#[derive(Serialize)]
struct CredentialRecord<'a> {
    id: Id,
    name: &'a str,
    protocol: &'a str,
    details: &'a Value,
}

impl<'a> From<&'a Credential> for CredentialRecord<'a> {
    fn from(c: &'a Credential) -> Self {
        CredentialRecord {
            id: c.id,
            name: &c.name,
            protocol: &c.protocol,
            details: &c.details,
        }
    }
}

#[derive(Serialize)]
struct SensorRecord<'a> {
    id: Id,
    name: &'a str,
    protocol: &'a str,
    default_interval: Option<i64>,
    details: &'a Value,
}

impl<'a> From<&'a Sensor> for SensorRecord<'a> {
    fn from(s: &'a Sensor) -> Self {
        SensorRecord {
            id: s.id,
            name: &s.name,
            protocol: &s.protocol,
            default_interval: s.default_interval,
            details: &s.details,
        }
    }
}
