//! A strict parser of InfluxDB/DataKit line protocol, for the DataKit stand-in of the tests:
//! every line a bot sends must parse, with escaped tags, quoted string fields, typed numbers and
//! a nanosecond timestamp.

use std::collections::BTreeMap;

/// A field's value, typed as line protocol types it.
#[derive(Debug, Clone, PartialEq)]
pub enum Field {
    Str(String),
    Int(i64),
    Float(f64),
    Bool(bool),
}

/// One parsed line.
#[derive(Debug, Clone, PartialEq)]
pub struct Point {
    pub measurement: String,
    pub tags: BTreeMap<String, String>,
    pub fields: BTreeMap<String, Field>,
    pub time_ns: i64,
}

impl Point {
    pub fn tag(&self, name: &str) -> Option<&str> {
        self.tags.get(name).map(String::as_str)
    }

    pub fn str_field(&self, name: &str) -> Option<&str> {
        match self.fields.get(name)? {
            Field::Str(s) => Some(s),
            _ => None,
        }
    }

    pub fn number(&self, name: &str) -> Option<f64> {
        match self.fields.get(name)? {
            Field::Float(f) => Some(*f),
            Field::Int(i) => Some(*i as f64),
            _ => None,
        }
    }
}

/// Splits `text` at unescaped `sep` outside double quotes.
fn split(text: &str, sep: char) -> Vec<String> {
    let (mut parts, mut current) = (Vec::new(), String::new());
    let (mut escaped, mut quoted) = (false, false);
    for c in text.chars() {
        if escaped {
            current.push('\\');
            current.push(c);
            escaped = false;
        } else if c == '\\' {
            escaped = true;
        } else if c == '"' {
            quoted = !quoted;
            current.push(c);
        } else if c == sep && !quoted {
            parts.push(std::mem::take(&mut current));
        } else {
            current.push(c);
        }
    }
    parts.push(current);
    parts
}

fn unescape(text: &str) -> String {
    let mut out = String::new();
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            if let Some(next) = chars.next() {
                out.push(next);
            }
        } else {
            out.push(c);
        }
    }
    out
}

fn field(value: &str) -> Result<Field, String> {
    if let Some(inner) = value.strip_prefix('"').and_then(|v| v.strip_suffix('"')) {
        return Ok(Field::Str(unescape(inner)));
    }
    if let Some(int) = value.strip_suffix('i') {
        return int
            .parse()
            .map(Field::Int)
            .map_err(|e| format!("bad integer {value}: {e}"));
    }
    match value {
        "t" | "true" | "T" | "True" => return Ok(Field::Bool(true)),
        "f" | "false" | "F" | "False" => return Ok(Field::Bool(false)),
        _ => {}
    }
    value
        .parse::<f64>()
        .ok()
        .filter(|f| f.is_finite())
        .map(Field::Float)
        .ok_or_else(|| format!("bad field value {value:?}"))
}

/// Parses one line.
pub fn parse_line(line: &str) -> Result<Point, String> {
    let sections = split(line, ' ');
    let [series, fields, time] = sections.as_slice() else {
        return Err(format!("not 3 sections: {line:?}"));
    };
    let mut series = split(series, ',').into_iter();
    let measurement = unescape(&series.next().unwrap_or_default());
    if measurement.is_empty() {
        return Err(format!("no measurement: {line:?}"));
    }
    let mut tags = BTreeMap::new();
    for pair in series {
        let kv = split(&pair, '=');
        let [k, v] = kv.as_slice() else {
            return Err(format!("bad tag {pair:?} in {line:?}"));
        };
        tags.insert(unescape(k), unescape(v));
    }
    let mut parsed = BTreeMap::new();
    for pair in split(fields, ',') {
        let Some((k, v)) = pair.split_once('=') else {
            return Err(format!("bad field {pair:?} in {line:?}"));
        };
        parsed.insert(unescape(k), field(v)?);
    }
    if parsed.is_empty() {
        return Err(format!("no fields: {line:?}"));
    }
    let time_ns = time
        .parse()
        .map_err(|e| format!("bad timestamp {time:?}: {e}"))?;
    Ok(Point {
        measurement,
        tags,
        fields: parsed,
        time_ns,
    })
}

/// Parses a request body of lines; any bad line is an error naming it.
pub fn parse_body(body: &str) -> Result<Vec<Point>, String> {
    body.lines()
        .filter(|l| !l.is_empty())
        .map(parse_line)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaped_tags_and_typed_fields() {
        let p =
            parse_line(r#"m,a\ b=c\,d,x=1 s="q \"r\", t",i=3i,f=1.5 1700000000000000000"#).unwrap();
        assert_eq!(p.tag("a b"), Some("c,d"));
        assert_eq!(p.str_field("s"), Some(r#"q "r", t"#));
        assert_eq!(p.fields["i"], Field::Int(3));
        assert_eq!(p.number("f"), Some(1.5));
        assert!(parse_line("m x=1").is_err(), "no timestamp");
        assert!(parse_line("m x=nope 1").is_err());
    }
}
