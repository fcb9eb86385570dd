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
