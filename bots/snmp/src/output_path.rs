//! Output-path templates of SNMP sensors (contract §5.7): `if.in-octets.{$index}.{$1}` becomes
//! `if.in-octets.3.eth0` for the row with index 3 whose first OID's value is `eth0`.

use crate::slug::slugify;
use std::fmt;

/// A parsed `output_path` template, checked once against the sensor's number of OIDs.
#[derive(Clone, PartialEq)]
pub struct OutputTemplate {
    text: String,
    parts: Vec<Part>,
}

#[derive(Clone, Debug, PartialEq)]
enum Part {
    Literal(String),
    Index,
    /// 0-based position of the OID whose value (slugified) goes here.
    Value(usize),
}

/// Why a template cannot be used; the sensor then produces nothing and the problem is logged.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("invalid output path template '{template}': {reason}")]
pub struct TemplateError {
    pub template: String,
    pub reason: String,
}

impl OutputTemplate {
    /// Parses `template`. Outside `{...}` only `.0-9A-Za-z_-` are allowed; the only groups are
    /// `{$index}` and `{$N}` with 1 <= N <= `oid_count`.
    pub fn compile(template: &str, oid_count: usize) -> Result<OutputTemplate, TemplateError> {
        let error = |reason: String| TemplateError {
            template: template.to_string(),
            reason,
        };
        if template.is_empty() {
            return Err(error("empty template".to_string()));
        }
        let mut parts = Vec::new();
        let mut literal = String::new();
        let mut rest = template;
        while let Some(c) = rest.chars().next() {
            if c == '{' {
                let close = rest
                    .find('}')
                    .ok_or_else(|| error("'{' without a closing '}'".to_string()))?;
                let group = &rest[1..close];
                let part = match group {
                    "$index" => Part::Index,
                    _ => {
                        let position = group
                            .strip_prefix('$')
                            .filter(|digits| digits.bytes().all(|b| b.is_ascii_digit()))
                            .and_then(|digits| digits.parse::<usize>().ok())
                            .ok_or_else(|| {
                                error(format!(
                                    "unknown group '{{{group}}}' (use {{$index}} or {{$N}})"
                                ))
                            })?;
                        if position == 0 || position > oid_count {
                            return Err(error(format!(
                                "'{{{group}}}' refers to OID {position} but the sensor has {oid_count}"
                            )));
                        }
                        Part::Value(position - 1)
                    }
                };
                if !literal.is_empty() {
                    parts.push(Part::Literal(std::mem::take(&mut literal)));
                }
                parts.push(part);
                rest = &rest[close + 1..];
            } else if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                literal.push(c);
                rest = &rest[1..];
            } else {
                return Err(error(format!("character '{c}' is not allowed")));
            }
        }
        if !literal.is_empty() {
            parts.push(Part::Literal(literal));
        }
        Ok(OutputTemplate {
            text: template.to_string(),
            parts,
        })
    }

    /// The template as configured.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// Whether `{$index}` occurs; without it every row of a walk gets the same path.
    pub fn uses_index(&self) -> bool {
        self.parts.contains(&Part::Index)
    }

    /// Fills in the template for one row: `index` verbatim, `{$N}` with the slug of
    /// `value_text(N-1)`. Returns `None` if a referenced value is missing.
    pub fn render<'v>(
        &self,
        index: &str,
        mut value_text: impl FnMut(usize) -> Option<&'v str>,
    ) -> Option<String> {
        let mut out = String::with_capacity(self.text.len() + index.len() + 16);
        for part in &self.parts {
            match part {
                Part::Literal(text) => out.push_str(text),
                Part::Index => out.push_str(index),
                Part::Value(position) => out.push_str(&slugify(value_text(*position)?)),
            }
        }
        Some(out)
    }
}

impl fmt::Debug for OutputTemplate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("OutputTemplate").field(&self.text).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_index_and_slugged_values() {
        let template = OutputTemplate::compile("if.in-octets.{$index}.{$1}", 2).unwrap();
        assert!(template.uses_index());
        let values = ["GigabitEthernet0/0.100", "12345"];
        let path = template.render("3", |i| values.get(i).copied());
        assert_eq!(
            path.as_deref(),
            Some("if.in-octets.3.GigabitEthernet0-0-100")
        );
    }

    #[test]
    fn multi_arc_index_and_adjacent_groups() {
        let template = OutputTemplate::compile("t.{$index}x{$2}_{$1}", 2).unwrap();
        let values = ["a b", "Core 6"];
        let path = template.render("1.4.2", |i| values.get(i).copied());
        assert_eq!(path.as_deref(), Some("t.1.4.2xCore-6_a-b"));
    }

    #[test]
    fn without_index() {
        let template = OutputTemplate::compile("sysuptime", 1).unwrap();
        assert!(!template.uses_index());
        assert_eq!(template.render("0", |_| None).as_deref(), Some("sysuptime"));
    }

    #[test]
    fn missing_value_gives_nothing() {
        let template = OutputTemplate::compile("x.{$1}", 1).unwrap();
        assert_eq!(template.render("1", |_| None), None);
    }

    #[test]
    fn invalid_templates() {
        for (bad, oid_count) in [
            ("x.{$0}", 1),
            ("x.{$x}", 1),
            ("x.{$3}", 2),
            ("x.{$}", 1),
            ("x.{index}", 1),
            ("x.{$1", 1),
            ("x y", 1),
            ("x/y", 1),
            ("x.}", 1),
            ("", 1),
            ("x.{$-1}", 1),
            ("ü", 1),
        ] {
            let result = OutputTemplate::compile(bad, oid_count);
            assert!(result.is_err(), "{bad:?} accepted");
        }
        let message = OutputTemplate::compile("x.{$3}", 2)
            .unwrap_err()
            .to_string();
        assert!(
            message.contains("x.{$3}") && message.contains("has 2"),
            "{message}"
        );
    }
}
