//! Sensor expressions (contract §5.8): `$1 * 8`, `$2 / 1000.0`, `max($1, $2)`... compiled once
//! with exmex and evaluated per index.
//!
//! Differences from the original (mathjspy 0.0.9), all in the direction of accepting more:
//! standard precedence (`^` binds tightest, then `*` `/` `%` from left to right, then `+` `-`
//! from left to right), unary minus (`0 - $1` and `-$1` both work; a unary minus binds tighter
//! than `^`, so `-2^2` is 4), and signed exponents (`1e-3`). Like the original, `^` chains are
//! evaluated left to right (`2^3^2` is 64).

use exmex::{BinOp, Express, FlatEx, MakeOperators, MatchLiteral, Operator};
use std::fmt;
use std::sync::Arc;

/// A compiled expression over the sensor's values `$1..$n`.
#[derive(Clone)]
pub struct Expression {
    text: String,
    /// Shared, not inline: exmex's compiled form is about 20 KB (inline operator tables), and
    /// each of thousands of entities holds every sensor's expression.
    compiled: Arc<FlatEx<f64, SensorOps, NumberLiteral>>,
    /// For each exmex variable (in exmex's order), the 0-based position of the `$N` it stands for.
    bindings: Vec<usize>,
}

/// Why an expression cannot be compiled or evaluated. Names the expression text, never a value
/// that could be a secret (SNMP values are not secrets, but the message stays short).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ExpressionError {
    #[error("invalid expression '{text}': {reason}")]
    Invalid { text: String, reason: String },
    #[error("expression '{text}' uses ${position} but the sensor has only {available} OIDs")]
    MissingVariable {
        text: String,
        position: usize,
        available: usize,
    },
    #[error("expression '{text}' failed: {reason}")]
    Evaluation { text: String, reason: String },
    #[error("expression '{text}' gave {value}, which is not a finite number")]
    NotFinite { text: String, value: f64 },
}

const VARIABLE_PREFIX: &str = "_v";

impl Expression {
    /// Compiles `source`. `$N` (N >= 1) are the sensor's values in OID order.
    pub fn compile(source: &str) -> Result<Expression, ExpressionError> {
        let invalid = |reason: String| ExpressionError::Invalid {
            text: source.to_string(),
            reason,
        };
        let rewritten = rewrite_variables(source).map_err(invalid)?;
        let compiled = FlatEx::<f64, SensorOps, NumberLiteral>::parse(&rewritten)
            .map_err(|e| invalid(e.msg().to_string()))?;
        let mut bindings = Vec::with_capacity(compiled.var_names().len());
        for name in compiled.var_names() {
            let position = name
                .strip_prefix(VARIABLE_PREFIX)
                .and_then(|digits| digits.parse::<usize>().ok())
                .filter(|&n| n >= 1)
                .ok_or_else(|| invalid(format!("unknown name '{name}' (use $1, $2, ...)")))?;
            bindings.push(position - 1);
        }
        Ok(Expression {
            text: source.to_string(),
            compiled: Arc::new(compiled),
            bindings,
        })
    }

    /// The expression as the user wrote it.
    pub fn source(&self) -> &str {
        &self.text
    }

    /// Whether `$N` (1-based) occurs in the expression: only those values must be numeric.
    pub fn uses(&self, position_1based: usize) -> bool {
        self.bindings.contains(&(position_1based.wrapping_sub(1)))
    }

    /// The largest `$N` used, so a sensor with fewer OIDs can be rejected up front.
    pub fn highest_variable(&self) -> usize {
        self.bindings.iter().map(|p| p + 1).max().unwrap_or(0)
    }

    /// Checks that every `$N` refers to one of `oid_count` OIDs.
    pub fn check_variables(&self, oid_count: usize) -> Result<(), ExpressionError> {
        let highest = self.highest_variable();
        if highest > oid_count {
            return Err(ExpressionError::MissingVariable {
                text: self.text.clone(),
                position: highest,
                available: oid_count,
            });
        }
        Ok(())
    }

    /// Evaluates with `value(i)` giving `$i+1`; `None` for a value that is missing or not a
    /// number, which fails the evaluation.
    pub fn evaluate(
        &self,
        mut value: impl FnMut(usize) -> Option<f64>,
    ) -> Result<f64, ExpressionError> {
        let mut arguments = Vec::with_capacity(self.bindings.len());
        for &position in &self.bindings {
            match value(position) {
                Some(v) => arguments.push(v),
                None => {
                    return Err(ExpressionError::Evaluation {
                        text: self.text.clone(),
                        reason: format!("${} is not a number", position + 1),
                    })
                }
            }
        }
        let result = self
            .compiled
            .eval(&arguments)
            .map_err(|e| ExpressionError::Evaluation {
                text: self.text.clone(),
                reason: e.msg().to_string(),
            })?;
        if !result.is_finite() {
            return Err(ExpressionError::NotFinite {
                text: self.text.clone(),
                value: result,
            });
        }
        Ok(result)
    }
}

impl fmt::Debug for Expression {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Expression").field(&self.text).finish()
    }
}

impl PartialEq for Expression {
    fn eq(&self, other: &Self) -> bool {
        self.text == other.text
    }
}

/// `$12` -> `_v12`, a name exmex accepts; anything else starting with `$` is an error.
fn rewrite_variables(source: &str) -> Result<String, String> {
    let mut out = String::with_capacity(source.len() + 8);
    let mut chars = source.char_indices().peekable();
    while let Some((at, c)) = chars.next() {
        if c != '$' {
            out.push(c);
            continue;
        }
        let mut digits = String::new();
        while let Some(&(_, d)) = chars.peek() {
            if !d.is_ascii_digit() {
                break;
            }
            digits.push(d);
            chars.next();
        }
        match digits.parse::<usize>() {
            Ok(n) if n >= 1 => {
                out.push_str(VARIABLE_PREFIX);
                out.push_str(&n.to_string());
            }
            Ok(_) => return Err("variables start at $1".to_string()),
            Err(_) => return Err(format!("'$' at position {at} is not followed by a number")),
        }
    }
    if out.trim().is_empty() {
        return Err("empty expression".to_string());
    }
    Ok(out)
}

/// Numbers as mathjs writes them: `100`, `1000.0`, `.5`, `1e3`, `1.5e-3`.
#[derive(Clone, Debug)]
struct NumberLiteral;

impl MatchLiteral for NumberLiteral {
    fn is_literal(text: &str) -> Option<&str> {
        let bytes = text.as_bytes();
        let digits_from = |mut i: usize| {
            while i < bytes.len() && bytes[i].is_ascii_digit() {
                i += 1;
            }
            i
        };
        let mut end = digits_from(0);
        let integer_digits = end;
        if end < bytes.len() && bytes[end] == b'.' {
            let fraction_end = digits_from(end + 1);
            if fraction_end > end + 1 || integer_digits > 0 {
                end = fraction_end;
            }
        }
        if end == 0 {
            return None;
        }
        if end < bytes.len() && (bytes[end] == b'e' || bytes[end] == b'E') {
            let mut exponent = end + 1;
            if exponent < bytes.len() && (bytes[exponent] == b'+' || bytes[exponent] == b'-') {
                exponent += 1;
            }
            let exponent_end = digits_from(exponent);
            if exponent_end > exponent {
                end = exponent_end;
            }
        }
        Some(&text[..end])
    }
}

/// The operators and functions of contract §5.8 with standard precedence.
#[derive(Clone, Debug)]
struct SensorOps;

fn divide(a: f64, b: f64) -> f64 {
    if b == 0.0 {
        0.0
    } else {
        a / b
    }
}

/// Python's `%` (the result takes the divisor's sign); by zero gives 0 like division.
fn modulo(a: f64, b: f64) -> f64 {
    if b == 0.0 {
        0.0
    } else {
        a - b * (a / b).floor()
    }
}

/// mathjs `round(x, n)`: round to n decimals.
fn round_to(a: f64, decimals: f64) -> f64 {
    let factor = 10f64.powf(decimals.trunc());
    (a * factor).round() / factor
}

/// mathjs `log(x, base)`.
fn log_base(a: f64, base: f64) -> f64 {
    a.ln() / base.ln()
}

const PRIO_ADDITIVE: i64 = 1;
const PRIO_MULTIPLICATIVE: i64 = 2;
const PRIO_POWER: i64 = 4;
/// Functions are only meant to be called as `f(a, b)`, which exmex parenthesizes itself.
const PRIO_FUNCTION: i64 = 0;

/// Every operator is declared non-commutative: exmex evaluates a commutative operator between two
/// literals before its equal-priority neighbours (`10 - 2 + 3` would give 5), so this keeps
/// strict left-to-right evaluation within a priority level.
fn bin(apply: fn(f64, f64) -> f64, prio: i64) -> BinOp<f64> {
    BinOp {
        apply,
        prio,
        is_commutative: false,
    }
}

impl MakeOperators<f64> for SensorOps {
    fn make<'a>() -> Vec<Operator<'a, f64>> {
        vec![
            Operator::make_bin("^", bin(f64::powf, PRIO_POWER)),
            Operator::make_bin("*", bin(|a, b| a * b, PRIO_MULTIPLICATIVE)),
            Operator::make_bin("/", bin(divide, PRIO_MULTIPLICATIVE)),
            Operator::make_bin("%", bin(modulo, PRIO_MULTIPLICATIVE)),
            Operator::make_bin_unary("+", bin(|a, b| a + b, PRIO_ADDITIVE), |a| a),
            Operator::make_bin_unary("-", bin(|a, b| a - b, PRIO_ADDITIVE), |a| -a),
            Operator::make_bin("add", bin(|a, b| a + b, PRIO_FUNCTION)),
            Operator::make_bin("sub", bin(|a, b| a - b, PRIO_FUNCTION)),
            Operator::make_bin("mul", bin(|a, b| a * b, PRIO_FUNCTION)),
            Operator::make_bin("div", bin(divide, PRIO_FUNCTION)),
            Operator::make_bin("mod", bin(modulo, PRIO_FUNCTION)),
            Operator::make_bin("pow", bin(f64::powf, PRIO_FUNCTION)),
            Operator::make_bin("min", bin(f64::min, PRIO_FUNCTION)),
            Operator::make_bin("max", bin(f64::max, PRIO_FUNCTION)),
            Operator::make_bin_unary("log", bin(log_base, PRIO_FUNCTION), f64::ln),
            Operator::make_bin_unary("round", bin(round_to, PRIO_FUNCTION), f64::round),
            Operator::make_unary("sqrt", f64::sqrt),
            Operator::make_unary("sin", f64::sin),
            Operator::make_unary("cos", f64::cos),
            Operator::make_unary("tan", f64::tan),
            Operator::make_unary("trunc", f64::trunc),
            Operator::make_constant("pi", std::f64::consts::PI),
            Operator::make_constant("e", std::f64::consts::E),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn eval(source: &str, values: &[f64]) -> Result<f64, ExpressionError> {
        Expression::compile(source)?.evaluate(|i| values.get(i).copied())
    }

    fn assert_close(source: &str, values: &[f64], expected: f64) {
        let got = eval(source, values).unwrap_or_else(|e| panic!("{source}: {e}"));
        assert!(
            (got - expected).abs() <= 1e-9 * expected.abs().max(1.0),
            "{source} = {got}, expected {expected}"
        );
    }

    #[test]
    fn expressions_seen_in_practice() {
        assert_close("$1", &[42.0], 42.0);
        assert_close("$2", &[1.0, 7.0], 7.0);
        assert_close("$2 / 1000.0", &[0.0, 45500.0], 45.5);
        assert_close("$1 * 8", &[125.0], 1000.0);
        assert_close("$1 / 100", &[250.0], 2.5);
    }

    #[test]
    fn numbers() {
        assert_close("1e3", &[], 1000.0);
        assert_close("1.5e-3 * 2", &[], 0.003);
        assert_close(".5 + 1.", &[], 1.5);
        assert_close("2 * e", &[], 2.0 * std::f64::consts::E);
        assert_close("pi", &[], std::f64::consts::PI);
    }

    #[test]
    fn standard_precedence() {
        assert_close("1 + 2 * 3", &[], 7.0);
        assert_close("10 - 2 - 3", &[], 5.0);
        assert_close("10 - 2 + 3", &[], 11.0);
        assert_close("8 / 2 * 4", &[], 16.0);
        assert_close("8 / 2 / 2", &[], 2.0);
        assert_close("2 * 3 % 4", &[], 2.0);
        assert_close("7 % 4 * 2", &[], 6.0);
        assert_close("2 ^ 3 * 2", &[], 16.0);
        assert_close("2 * 3 ^ 2", &[], 18.0);
        assert_close("(1 + 2) * 3", &[], 9.0);
        assert_close("0 - $1", &[5.0], -5.0);
        assert_close("-$1 + 1", &[5.0], -4.0);
        assert_close("$1 - $2 + $3", &[10.0, 2.0, 3.0], 11.0);
        assert_close("$1 / $2 * $3", &[8.0, 2.0, 4.0], 16.0);
        // Documented quirks: `^` chains left to right (as mathjspy), unary minus binds tightest.
        assert_close("2 ^ 3 ^ 2", &[], 64.0);
        assert_close("-2 ^ 2", &[], 4.0);
    }

    #[test]
    fn functions() {
        assert_close("add($1, 2)", &[1.0], 3.0);
        assert_close("sub(5, $1) * 2", &[1.0], 8.0);
        assert_close("mul(2, 3) + div(9, 3)", &[], 9.0);
        assert_close("mod(7, 3)", &[], 1.0);
        assert_close("pow(2, 10)", &[], 1024.0);
        assert_close("sqrt(16)", &[], 4.0);
        assert_close("log(e)", &[], 1.0);
        assert_close("log(8, 2)", &[], 3.0);
        assert_close("sin(0) + cos(0) + tan(0)", &[], 1.0);
        assert_close("min($1, $2) + max($1, $2)", &[3.0, 9.0], 12.0);
        assert_close("round(2.6) + trunc(2.6)", &[], 5.0);
        assert_close("round(2.71828, 2)", &[], 2.72);
        assert_close("max($1 * 2, 10) / 2", &[7.0], 7.0);
    }

    #[test]
    fn division_by_zero_gives_zero() {
        assert_close("$1 / $2", &[5.0, 0.0], 0.0);
        assert_close("$1 % 0", &[5.0], 0.0);
        assert_close("div(1, 0)", &[], 0.0);
    }

    #[test]
    fn python_modulo_sign() {
        assert_close("-7 % 3", &[], 2.0);
        assert_close("7 % -3", &[], -2.0);
    }

    #[test]
    fn variables_are_bound_by_name_not_alphabet() {
        // exmex orders variables alphabetically (_v10 < _v2); binding must not care.
        let values: Vec<f64> = (1..=10).map(f64::from).collect();
        assert_close("$10 - $2", &values, 8.0);
        assert_close("$2 * 100 + $10", &values, 210.0);
        let expression = Expression::compile("$3 + $1").unwrap();
        assert!(expression.uses(1) && expression.uses(3) && !expression.uses(2));
        assert_eq!(expression.highest_variable(), 3);
        assert!(expression.check_variables(2).is_err());
        assert!(expression.check_variables(3).is_ok());
    }

    #[test]
    fn unused_values_need_not_be_numbers() {
        let expression = Expression::compile("$2").unwrap();
        let got = expression.evaluate(|i| if i == 1 { Some(4.0) } else { None });
        assert_eq!(got, Ok(4.0));
    }

    #[test]
    fn bad_expressions_are_errors_not_panics() {
        for bad in [
            "", "$", "$0", "$a", "x + 1", "$1 +", "(($1)", "$1 $2", "foo($1)", "1 +* 2", "$1e3",
        ] {
            assert!(Expression::compile(bad).is_err(), "{bad:?} compiled");
        }
    }

    #[test]
    fn non_numbers_and_non_finite_results_fail() {
        let expression = Expression::compile("$1 * 2").unwrap();
        assert!(matches!(
            expression.evaluate(|_| None),
            Err(ExpressionError::Evaluation { .. })
        ));
        assert!(matches!(
            eval("sqrt($1)", &[-1.0]),
            Err(ExpressionError::NotFinite { .. })
        ));
        assert!(matches!(
            eval("log(0)", &[]),
            Err(ExpressionError::NotFinite { .. })
        ));
    }
}
