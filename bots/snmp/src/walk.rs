//! SNMP values in the form the sensors use, and GET and WALK of a single OID on one session
//! (the merged requests of `merged` with one OID): walks stop at the end of the subtree, fail
//! on OIDs that do not increase (a broken agent would loop forever) and on more rows than
//! allowed.

use crate::merged::Exchange;
use crate::session::{Session, SnmpError};
use async_snmp::{Oid, Value};
use std::borrow::Cow;
use std::fmt::Write;

/// One SNMP value, kept in the form the sensors need: numbers for expressions and counters,
/// text for output-path slugs.
#[derive(Debug, Clone, PartialEq)]
pub enum SnmpValue {
    Integer(i64),
    /// Gauge32, Unsigned32.
    Unsigned(u64),
    Counter32(u32),
    Counter64(u64),
    TimeTicks(u32),
    /// OCTET STRING, Opaque, IpAddress, OBJECT IDENTIFIER: text as the original bot saw it.
    Text(String),
    Null,
}

impl SnmpValue {
    /// Converts what async-snmp decoded; `None` for the exceptions (noSuchObject...).
    pub fn from_value(value: Value) -> Option<SnmpValue> {
        Some(match value {
            Value::Integer(i) => SnmpValue::Integer(i64::from(i)),
            Value::Gauge32(u) | Value::UInteger32(u) => SnmpValue::Unsigned(u64::from(u)),
            Value::Counter32(c) => SnmpValue::Counter32(c),
            Value::Counter64(c) => SnmpValue::Counter64(c),
            Value::TimeTicks(t) => SnmpValue::TimeTicks(t),
            Value::OctetString(bytes) | Value::Opaque(bytes) | Value::Nsap(bytes) => {
                SnmpValue::Text(String::from_utf8_lossy(&bytes).into_owned())
            }
            Value::IpAddress([a, b, c, d]) => SnmpValue::Text(format!("{a}.{b}.{c}.{d}")),
            Value::ObjectIdentifier(oid) => SnmpValue::Text(format!(".{oid}")),
            Value::Null => SnmpValue::Null,
            Value::NoSuchObject | Value::NoSuchInstance | Value::EndOfMibView => return None,
            other => SnmpValue::Text(format!("{other:?}")),
        })
    }

    /// The value as a number, as Python's `float()` would read the original's value string.
    pub fn as_number(&self) -> Option<f64> {
        match self {
            SnmpValue::Integer(i) => Some(*i as f64),
            SnmpValue::Unsigned(u) => Some(*u as f64),
            SnmpValue::Counter32(c) => Some(f64::from(*c)),
            SnmpValue::Counter64(c) => Some(*c as f64),
            SnmpValue::TimeTicks(t) => Some(f64::from(*t)),
            SnmpValue::Text(text) => text.trim().parse::<f64>().ok(),
            SnmpValue::Null => None,
        }
    }

    /// The value as text, for `{$N}` in output paths.
    pub fn text(&self) -> Cow<'_, str> {
        match self {
            SnmpValue::Text(text) => Cow::Borrowed(text),
            SnmpValue::Null => Cow::Borrowed(""),
            SnmpValue::Integer(i) => Cow::Owned(i.to_string()),
            SnmpValue::Unsigned(u) => Cow::Owned(u.to_string()),
            SnmpValue::Counter32(c) => Cow::Owned(c.to_string()),
            SnmpValue::Counter64(c) => Cow::Owned(c.to_string()),
            SnmpValue::TimeTicks(t) => Cow::Owned(t.to_string()),
        }
    }

    /// Counters become per-second rates before expressions see them.
    pub fn is_counter(&self) -> bool {
        matches!(self, SnmpValue::Counter32(_) | SnmpValue::Counter64(_))
    }
}

/// One row of a walk: the index (the whole OID suffix after the walked OID, e.g. `3` or
/// `1.4.2`) and its value.
#[derive(Debug, Clone, PartialEq)]
pub struct WalkRow {
    pub index: String,
    pub value: SnmpValue,
}

/// Parses an OID as sensors write it (`1.3.6.1.2.1.2.2.1.2`, optionally with a leading dot).
pub fn parse_oid(text: &str) -> Result<Oid, String> {
    let oid = Oid::parse(text.trim()).map_err(|_| format!("'{text}' is not a numeric OID"))?;
    if oid.len() < 2 {
        return Err(format!("'{text}' is not a numeric OID"));
    }
    Ok(oid)
}

/// GET of one OID. A missing object or instance is [`SnmpError::NoSuchObject`].
pub async fn get(session: &Session, oid: &Oid) -> Result<SnmpValue, SnmpError> {
    let values = Exchange::new(session)
        .get_many(std::slice::from_ref(oid))
        .await?;
    values.into_iter().next().unwrap_or_else(|| {
        Err(SnmpError::Other {
            target: session.target().to_string(),
            reason: format!("no answer to GET {oid}"),
        })
    })
}

/// Walks the subtree under `base`, in agent order.
pub async fn walk(session: &Session, base: &Oid) -> Result<Vec<WalkRow>, SnmpError> {
    let columns = Exchange::new(session)
        .walk_many(std::slice::from_ref(base))
        .await?;
    columns.into_iter().next().unwrap_or_else(|| Ok(Vec::new()))
}

/// The index of a walked row: the OID arcs after the walked OID, dot-separated.
pub fn index_text(arcs: &[u32]) -> String {
    let mut text = String::with_capacity(arcs.len() * 4);
    for (i, arc) in arcs.iter().enumerate() {
        if i > 0 {
            text.push('.');
        }
        let _ = write!(text, "{arc}");
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn value_numbers_and_text() {
        assert_eq!(SnmpValue::Integer(-3).as_number(), Some(-3.0));
        assert_eq!(
            SnmpValue::Counter64(u64::MAX).text(),
            "18446744073709551615"
        );
        assert_eq!(SnmpValue::Text(" 1e3 ".into()).as_number(), Some(1000.0));
        assert_eq!(SnmpValue::Text("eth0".into()).as_number(), None);
        assert_eq!(SnmpValue::TimeTicks(12345).text(), "12345");
        assert!(SnmpValue::Counter32(1).is_counter());
        assert!(!SnmpValue::Unsigned(1).is_counter());
        assert_eq!(
            SnmpValue::from_value(Value::IpAddress([10, 0, 0, 1])),
            Some(SnmpValue::Text("10.0.0.1".into()))
        );
        assert_eq!(SnmpValue::from_value(Value::NoSuchInstance), None);
    }

    #[test]
    fn oids_and_indexes() {
        assert!(parse_oid(".1.3.6.1.2.1.2.2.1.2").is_ok());
        assert!(parse_oid("1.3.6.1").is_ok());
        assert!(parse_oid("ifDescr").is_err());
        assert!(parse_oid("").is_err());
        assert!(parse_oid("1..3").is_err());
        assert_eq!(index_text(&[3]), "3");
        assert_eq!(index_text(&[1, 4, 192, 0, 2, 1]), "1.4.192.0.2.1");
        assert_eq!(index_text(&[]), "");
    }
}
