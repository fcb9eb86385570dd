//! One sensor's fetched OIDs joined by index into values (contract §5.7), without any I/O:
//! the first walked OID gives the rows, the others are looked up by index, GETs apply to every
//! row; counters are replaced by their rates, then the expression and the output path are
//! applied.

use super::SensorSpec;
use crate::walk::{SnmpValue, WalkRow};
use collector::value::path_problem;
use collector::Value;
use std::borrow::Cow;
use std::collections::{HashMap, HashSet};

/// The result of one OID in one firing, shared by the sensors that ask for the same OID.
#[derive(Debug, Clone, PartialEq)]
pub enum Fetched {
    Get(SnmpValue),
    Walk(Vec<WalkRow>),
}

/// Rows a sensor left out in one firing, summarised in one log line.
#[derive(Debug, Default)]
pub struct SkippedRows {
    pub count: u64,
    pub first_index: String,
    pub first_reason: String,
}

impl SkippedRows {
    fn note(&mut self, index: &str, reason: String) {
        if self.count == 0 {
            self.first_index = index.to_string();
            self.first_reason = reason;
        }
        self.count += 1;
    }
}

/// A value of one OID at one index, ready for the expression and the template.
struct Cell<'a> {
    number: Option<f64>,
    text: Cow<'a, str>,
}

/// The rows of a sensor: each index of the first walked OID with its value there, or the
/// single row `0` of a sensor that only GETs.
fn sensor_rows<'f>(fetched: &[&'f Fetched]) -> Vec<(&'f str, Option<&'f SnmpValue>)> {
    match fetched.iter().find_map(|f| match f {
        Fetched::Walk(rows) => Some(rows),
        Fetched::Get(_) => None,
    }) {
        None => vec![("0", None)],
        Some(rows) => rows
            .iter()
            .map(|r| (r.index.as_str(), Some(&r.value)))
            .collect(),
    }
}

/// Joins one sensor's fetched OIDs (in the sensor's order) into `values`. `rates` holds the
/// rate of each counter by (OID position, index; `0` for a GET); a counter without a rate
/// (first sample, agent restart) leaves its row out this time. Paths already in `paths` (from
/// other sensors of the firing) are not repeated.
pub fn join_rows(
    entity_id: u64,
    spec: &SensorSpec,
    fetched: &[&Fetched],
    rates: &HashMap<(usize, &str), f64>,
    paths: &mut HashSet<String>,
    values: &mut Vec<Value>,
) -> SkippedRows {
    let first_walked = fetched.iter().position(|f| matches!(f, Fetched::Walk(_)));
    // Index lookups for every walked OID but the first, whose order gives the rows.
    let lookups: Vec<Option<HashMap<&str, &SnmpValue>>> = fetched
        .iter()
        .enumerate()
        .map(|(position, f)| match f {
            Fetched::Walk(rows) if Some(position) != first_walked => {
                Some(rows.iter().map(|r| (r.index.as_str(), &r.value)).collect())
            }
            _ => None,
        })
        .collect();
    let mut skipped = SkippedRows::default();
    let mut cells: Vec<Cell> = Vec::with_capacity(fetched.len());
    'rows: for (index, first_walked_value) in sensor_rows(fetched) {
        cells.clear();
        for (position, result) in fetched.iter().enumerate() {
            let (value, rate_index) = match result {
                Fetched::Get(value) => (Some(value), "0"),
                Fetched::Walk(_) if Some(position) == first_walked => (first_walked_value, index),
                Fetched::Walk(_) => (
                    lookups[position]
                        .as_ref()
                        .and_then(|lookup| lookup.get(index).copied()),
                    index,
                ),
            };
            let Some(value) = value else { continue 'rows };
            let number = if value.is_counter() {
                match rates.get(&(position, rate_index)) {
                    Some(rate) => Some(*rate),
                    None => continue 'rows,
                }
            } else {
                value.as_number()
            };
            cells.push(Cell {
                number,
                text: value.text(),
            });
        }
        let result = match spec
            .expression
            .evaluate(|p| cells.get(p).and_then(|c| c.number))
        {
            Ok(result) => result,
            Err(error) => {
                skipped.note(index, error.to_string());
                continue;
            }
        };
        let Some(rendered) = spec
            .template
            .render(index, |p| cells.get(p).map(|c| c.text.as_ref()))
        else {
            continue;
        };
        let path = format!("entity.{entity_id}.snmp.{rendered}");
        if let Some(problem) = path_problem(&path) {
            skipped.note(index, format!("path '{path}' is invalid: {problem}"));
            continue;
        }
        if paths.contains(&path) {
            skipped.note(
                index,
                format!("path '{path}' repeats (does output_path lack {{$index}}?)"),
            );
            continue;
        }
        paths.insert(path.clone());
        values.push(Value::new(path, result));
    }
    skipped
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sensor::parse_sensor;
    use collector::SensorConfig;
    use serde_json::json;

    fn spec(oids: &[&str], expression: &str, output_path: &str) -> SensorSpec {
        let oids: Vec<_> = oids
            .iter()
            .map(|o| {
                let (oid, method) = o.split_once(' ').unwrap_or((o, "walk"));
                json!({"oid": oid, "fetch_method": method})
            })
            .collect();
        parse_sensor(&SensorConfig {
            sensor_id: 9,
            details: json!({"oids": oids, "expression": expression, "output_path": output_path})
                .into(),
            interval: Some(60),
        })
        .unwrap()
    }

    fn rows(rows: &[(&str, SnmpValue)]) -> Fetched {
        Fetched::Walk(
            rows.iter()
                .map(|(index, value)| WalkRow {
                    index: index.to_string(),
                    value: value.clone(),
                })
                .collect(),
        )
    }

    fn text(t: &str) -> SnmpValue {
        SnmpValue::Text(t.to_string())
    }

    #[test]
    fn rows_come_from_the_first_walk_and_holes_leave_rows_out() {
        let spec = spec(
            &[
                "1.3.6.1.2.1.2.2.1.2",
                "1.3.6.1.2.1.2.2.1.5",
                "1.3.6.1.2.1.1.3.0 get",
            ],
            "$2 + $3",
            "if.{$index}.{$1}",
        );
        let names = rows(&[
            ("1", text("eth0")),
            ("2", text("eth1")),
            ("3", text("eth2")),
        ]);
        // Row 2 has no speed: that interface gives no value; row 9 has no name: never a row.
        let speeds = rows(&[
            ("1", SnmpValue::Unsigned(10)),
            ("3", SnmpValue::Unsigned(30)),
            ("9", SnmpValue::Unsigned(90)),
        ]);
        let uptime = Fetched::Get(SnmpValue::Integer(1));
        let mut paths = HashSet::new();
        let mut values = Vec::new();
        let skipped = join_rows(
            5,
            &spec,
            &[&names, &speeds, &uptime],
            &HashMap::new(),
            &mut paths,
            &mut values,
        );
        assert_eq!(skipped.count, 0);
        assert_eq!(
            values,
            vec![
                Value::new("entity.5.snmp.if.1.eth0", 11.0),
                Value::new("entity.5.snmp.if.3.eth2", 31.0)
            ]
        );
    }

    #[test]
    fn counters_need_their_rate_and_paths_are_not_repeated() {
        let spec = spec(&["1.3.6.1.2.1.2.2.1.10"], "$1 * 8", "traffic.{$1}");
        let octets = rows(&[
            ("1", SnmpValue::Counter32(5)),
            ("2", SnmpValue::Counter32(7)),
            ("3", SnmpValue::Counter32(7)),
        ]);
        let rates = HashMap::from([((0, "1"), 100.0), ((0, "3"), 100.0)]);
        let mut paths = HashSet::from(["entity.5.snmp.traffic.5".to_string()]);
        let mut values = Vec::new();
        let skipped = join_rows(5, &spec, &[&octets], &rates, &mut paths, &mut values);
        // Row 1: its path repeats another sensor's; row 2: no rate yet; row 3: 100/s.
        assert_eq!(values, vec![Value::new("entity.5.snmp.traffic.7", 800.0)]);
        assert_eq!((skipped.count, skipped.first_index.as_str()), (1, "1"));
        assert!(
            skipped.first_reason.contains("repeats"),
            "{}",
            skipped.first_reason
        );
    }
}
