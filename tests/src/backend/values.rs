//! `POST` and `PUT /api/accounts/{a}/values/`: the path, value and timestamp rules, the batch semantics
//! (paths first, then pages of 100 with autocommit) and the store the test reads back (contract §4.8-4.9).

use std::collections::{HashMap, HashSet};

use serde_json::Value;

use super::python;
use super::reply::Reply;
use crate::fixture::Id;

/// Items per database page; a failing page leaves earlier pages stored.
const PAGE_SIZE: usize = 100;

/// Which request stored a value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WriteMethod {
    /// Stored at the server's time of the request.
    Post,
    /// Stored at the timestamp the client gave (backfill).
    Put,
}

/// One stored measurement, as the backend's database holds it.
#[derive(Clone, Debug, PartialEq)]
pub struct StoredValue {
    pub path: String,
    /// NaN is a legal stored value (sent as the string `"NaN"`).
    pub value: f64,
    /// Unix seconds with microsecond precision.
    pub t: f64,
    pub method: WriteMethod,
}

/// Values per account, keyed like the database: one value per (path, timestamp).
#[derive(Default)]
pub(crate) struct ValueStore {
    accounts: HashMap<Id, AccountValues>,
}

#[derive(Default)]
struct AccountValues {
    values: Vec<StoredValue>,
    index: HashMap<(String, i64), usize>,
}

impl ValueStore {
    pub(crate) fn values(&self, account: Id) -> Vec<StoredValue> {
        self.accounts
            .get(&account)
            .map(|a| a.values.clone())
            .unwrap_or_default()
    }

    pub(crate) fn total(&self) -> usize {
        self.accounts.values().map(|a| a.values.len()).sum()
    }

    pub(crate) fn clear(&mut self) {
        self.accounts.clear();
    }

    fn upsert(&mut self, account: Id, row: Row) {
        let values = self.accounts.entry(account).or_default();
        let stored = StoredValue {
            path: row.path,
            value: row.value,
            t: row.micros as f64 / 1e6,
            method: row.method,
        };
        match values.index.get(&(stored.path.clone(), row.micros)) {
            Some(&position) => values.values[position] = stored,
            None => {
                values
                    .index
                    .insert((stored.path.clone(), row.micros), values.values.len());
                values.values.push(stored);
            }
        }
    }
}

/// A request to write values, as the values endpoint received it.
pub(crate) struct ValuesRequest<'a> {
    pub account: Id,
    pub account_exists: bool,
    pub method: WriteMethod,
    pub body: &'a [u8],
    /// The query parameters except `b`, last occurrence of a name first found by [`last`].
    pub query: &'a [(String, String)],
    /// False adds the backend's Content-Type hint to validation messages.
    pub json_content_type: bool,
    /// Server time in Unix seconds.
    pub now: f64,
}

struct Item<'a> {
    path: &'a Value,
    time: ItemTime<'a>,
    value: &'a Value,
}

enum ItemTime<'a> {
    Server(f64),
    Given(&'a Value),
}

struct Row {
    path: String,
    micros: i64,
    value: f64,
    method: WriteMethod,
}

/// Outcome of one field check: usable, rejected by validation (400 with a message), or accepted by
/// validation but refused by the database (500 when the page is written).
enum Check<T> {
    Ok(T),
    Invalid(String),
    DatabaseRejects,
}

/// Handles a values write, storing into `store` exactly what the real backend would have committed.
pub(crate) fn write(store: &mut ValueStore, request: &ValuesRequest<'_>) -> Reply {
    let Ok(body) = serde_json::from_slice::<Value>(request.body) else {
        return Reply::internal_error();
    };
    let query_path = last(request.query, "p");
    let query_time = last(request.query, "t");
    let query_value = last(request.query, "v")
        .map(|v| Value::String(v.to_string()))
        .unwrap_or(Value::Null);
    let query_time_value = query_time
        .map(|t| Value::String(t.to_string()))
        .unwrap_or(Value::Null);
    let query_path_value = query_path
        .map(|p| Value::String(p.to_string()))
        .unwrap_or(Value::Null);

    let items: Vec<Item<'_>> = if python::truthy(&body) {
        let Value::Array(list) = &body else {
            // Iterating a dict, string or number does not give objects: the backend crashes.
            return Reply::internal_error();
        };
        if request.method == WriteMethod::Post {
            for item in list {
                let Value::Object(fields) = item else {
                    return Reply::internal_error();
                };
                if fields.get("t").is_some_and(python::truthy) {
                    return Reply::detail(400, "Parameter 't' shouldn't be specified with POST");
                }
            }
        }
        let mut items = Vec::with_capacity(list.len());
        for item in list {
            let Value::Object(fields) = item else {
                return Reply::internal_error();
            };
            let (Some(path), Some(value)) = (fields.get("p"), fields.get("v")) else {
                return Reply::internal_error();
            };
            let time = match request.method {
                WriteMethod::Post => ItemTime::Server(request.now),
                WriteMethod::Put => match fields.get("t") {
                    Some(t) => ItemTime::Given(t),
                    None => return Reply::internal_error(),
                },
            };
            items.push(Item { path, time, value });
        }
        items
    } else if query_path.is_some() {
        let time = match request.method {
            WriteMethod::Post => {
                if query_time.is_some_and(|t| !t.is_empty()) {
                    return Reply::detail(
                        400,
                        "Query parameter 't' shouldn't be specified with POST",
                    );
                }
                ItemTime::Server(request.now)
            }
            WriteMethod::Put => ItemTime::Given(&query_time_value),
        };
        vec![Item {
            path: &query_path_value,
            time,
            value: &query_value,
        }]
    } else {
        return Reply::detail(400, "Missing data");
    };

    store_items(store, request, &items)
}

fn store_items(store: &mut ValueStore, request: &ValuesRequest<'_>, items: &[Item<'_>]) -> Reply {
    let mut paths = Vec::with_capacity(items.len());
    for item in items {
        let Value::String(path) = item.path else {
            return Reply::internal_error();
        };
        match check_path(path) {
            Ok(path) => paths.push(path),
            Err(message) => return Reply::validation_failed(&message, request.json_content_type),
        }
    }
    if !request.account_exists {
        // The path rows reference the account: a foreign key violation.
        return Reply::internal_error();
    }
    for (page, page_paths) in items.chunks(PAGE_SIZE).zip(paths.chunks(PAGE_SIZE)) {
        let mut rows = Vec::with_capacity(page.len());
        let mut database_rejects = false;
        for (item, path) in page.iter().zip(page_paths) {
            let micros = match item.time {
                ItemTime::Server(now) => Check::Ok((now * 1e6).round() as i64),
                ItemTime::Given(t) => check_timestamp(t),
            };
            let value = check_value(item.value);
            let micros = match micros {
                Check::Ok(m) => Some(m),
                Check::Invalid(message) => {
                    return Reply::validation_failed(&message, request.json_content_type)
                }
                Check::DatabaseRejects => None,
            };
            let value = match value {
                Check::Ok(v) => Some(v),
                Check::Invalid(message) => {
                    return Reply::validation_failed(&message, request.json_content_type)
                }
                Check::DatabaseRejects => None,
            };
            match (micros, value) {
                (Some(micros), Some(value)) => rows.push(Row {
                    path: path.clone(),
                    micros,
                    value,
                    method: request.method,
                }),
                _ => database_rejects = true,
            }
        }
        if database_rejects {
            return Reply::internal_error();
        }
        let mut seen = HashSet::with_capacity(rows.len());
        if !rows
            .iter()
            .all(|row| seen.insert((row.path.as_str(), row.micros)))
        {
            // ON CONFLICT DO UPDATE cannot touch the same row twice in one statement.
            return Reply::internal_error();
        }
        for row in rows {
            store.upsert(request.account, row);
        }
    }
    Reply::no_content()
}

/// The backend's path rule; returns the path as stored (one trailing newline stripped).
pub(crate) fn check_path(path: &str) -> Result<String, String> {
    let stripped = path.strip_suffix('\n').unwrap_or(path);
    if !stripped.split('.').all(valid_segment) {
        return Err(format!("Invalid PathInputValue format: {path}"));
    }
    if stripped.starts_with("system.") {
        return Err("Invalid path - should not start with 'system.'!".to_string());
    }
    Ok(stripped.to_string())
}

fn valid_segment(segment: &str) -> bool {
    let bytes = segment.as_bytes();
    if bytes.is_empty() {
        return false;
    }
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b.is_ascii_alphanumeric() || b == b'_' || b == b'-' {
            i += 1;
        } else if bytes[i..].starts_with(b"%2e") || bytes[i..].starts_with(b"%3a") {
            i += 3;
        } else {
            return false;
        }
    }
    true
}

/// `v`: a number, or a string Python's `float()` accepts (else 400); the database (PostgreSQL 12
/// NUMERIC) then refuses booleans, infinities and strings such as `"1_000"` (500).
fn check_value(value: &Value) -> Check<f64> {
    match value {
        Value::Bool(_) => Check::DatabaseRejects,
        Value::Number(n) => match n.as_f64() {
            Some(f) if f.is_finite() => Check::Ok(f),
            _ => Check::DatabaseRejects,
        },
        Value::String(s) => {
            if !python::float_accepts(s) {
                Check::Invalid(format!("Invalid MeasuredValue format: {s}"))
            } else {
                match postgres_numeric(s) {
                    Some(f) => Check::Ok(f),
                    None => Check::DatabaseRejects,
                }
            }
        }
        other => Check::Invalid(format!(
            "Invalid MeasuredValue format: {}",
            python::str(other)
        )),
    }
}

/// PostgreSQL 12 `numeric_in`: optional whitespace, `NaN` (any case) or a signed decimal with optional
/// exponent, optional whitespace. No infinities, no underscores.
fn postgres_numeric(text: &str) -> Option<f64> {
    let is_space = |c: char| matches!(c, ' ' | '\t' | '\n' | '\r' | '\x0b' | '\x0c');
    let s = text.trim_matches(is_space);
    if s.eq_ignore_ascii_case("nan") {
        return Some(f64::NAN);
    }
    let bytes = s.as_bytes();
    let mut i = 0;
    if i < bytes.len() && (bytes[i] == b'+' || bytes[i] == b'-') {
        i += 1;
    }
    let mut digits = 0;
    let mut dot = false;
    while i < bytes.len() {
        match bytes[i] {
            b'0'..=b'9' => digits += 1,
            b'.' if !dot => dot = true,
            _ => break,
        }
        i += 1;
    }
    if digits == 0 {
        return None;
    }
    if i < bytes.len() && (bytes[i] == b'e' || bytes[i] == b'E') {
        i += 1;
        if i < bytes.len() && (bytes[i] == b'+' || bytes[i] == b'-') {
            i += 1;
        }
        let start = i;
        while i < bytes.len() && bytes[i].is_ascii_digit() {
            i += 1;
        }
        if i == start {
            return None;
        }
    }
    if i != bytes.len() {
        return None;
    }
    s.parse::<f64>().ok().filter(|f| f.is_finite())
}

/// `t` of a PUT: a JSON number, or a string `[1-9][0-9]{1,9}(.[0-9]{1,6})?`; anything else is 400.
/// Returns microseconds.
fn check_timestamp(t: &Value) -> Check<i64> {
    // PostgreSQL timestamps end in the year 294276.
    const MAX_SECONDS: f64 = 9_224_318_015_999.0;
    let seconds = match t {
        Value::Number(n) => match n.as_f64() {
            Some(f) => f,
            None => return Check::DatabaseRejects,
        },
        Value::Bool(_) => return Check::DatabaseRejects,
        Value::String(s) => {
            let stripped = s.strip_suffix('\n').unwrap_or(s);
            if !timestamp_string_ok(stripped) {
                return Check::Invalid(format!("Invalid Timestamp format: {s}"));
            }
            match stripped.parse::<f64>() {
                Ok(f) => f,
                Err(_) => return Check::Invalid(format!("Invalid Timestamp format: {s}")),
            }
        }
        other => {
            return Check::Invalid(format!("Invalid Timestamp format: {}", python::str(other)))
        }
    };
    if !seconds.is_finite() || seconds.abs() > MAX_SECONDS {
        return Check::DatabaseRejects;
    }
    Check::Ok((seconds * 1e6).round() as i64)
}

fn timestamp_string_ok(s: &str) -> bool {
    let (int_part, frac) = match s.split_once('.') {
        Some((i, f)) => (i, Some(f)),
        None => (s, None),
    };
    let int_ok = (2..=10).contains(&int_part.len())
        && int_part.bytes().all(|b| b.is_ascii_digit())
        && !int_part.starts_with('0');
    let frac_ok = match frac {
        None => true,
        Some(f) => (1..=6).contains(&f.len()) && f.bytes().all(|b| b.is_ascii_digit()),
    };
    int_ok && frac_ok
}

/// The last value of a query parameter, as the backend reads it.
pub(crate) fn last<'a>(query: &'a [(String, String)], name: &str) -> Option<&'a str> {
    query
        .iter()
        .rev()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn path_rule_examples_from_the_contract() {
        for ok in [
            "a",
            "entity.1.snmp.sysuptime",
            "a-b_C.9",
            "x.1%2e2%3a3",
            "a.b\n",
        ] {
            assert!(check_path(ok).is_ok(), "{ok:?}");
        }
        assert_eq!(check_path("a.b\n").ok().as_deref(), Some("a.b"));
        for bad in [
            "", "a..b", ".a", "a.", "a b", "a/b", "a:b", "x.%2E", "x.%41", "a.b\n\n", "ä",
        ] {
            assert!(check_path(bad).is_err(), "{bad:?}");
        }
        assert_eq!(
            check_path("system.x"),
            Err("Invalid path - should not start with 'system.'!".to_string())
        );
        assert!(check_path("system").is_ok());
    }

    #[test]
    fn value_rule_examples_from_the_contract() {
        assert!(matches!(check_value(&json!(12.5)), Check::Ok(v) if v == 12.5));
        assert!(matches!(check_value(&json!("1e3")), Check::Ok(v) if v == 1000.0));
        assert!(matches!(check_value(&json!(" 5 ")), Check::Ok(v) if v == 5.0));
        assert!(matches!(check_value(&json!("NaN")), Check::Ok(v) if v.is_nan()));
        for invalid in [json!(null), json!({}), json!([]), json!(""), json!("abc")] {
            assert!(
                matches!(check_value(&invalid), Check::Invalid(_)),
                "{invalid}"
            );
        }
        for refused in [json!(true), json!("inf"), json!("Infinity"), json!("1_000")] {
            assert!(
                matches!(check_value(&refused), Check::DatabaseRejects),
                "{refused}"
            );
        }
    }

    #[test]
    fn timestamp_strings_follow_the_pattern() {
        assert!(matches!(
            check_timestamp(&json!("1613291111.25")),
            Check::Ok(1_613_291_111_250_000)
        ));
        assert!(matches!(
            check_timestamp(&json!(1613291111)),
            Check::Ok(1_613_291_111_000_000)
        ));
        for bad in [
            json!("0123"),
            json!("1"),
            json!("1.1234567"),
            json!("abc"),
            json!(null),
        ] {
            assert!(matches!(check_timestamp(&bad), Check::Invalid(_)), "{bad}");
        }
    }
}
