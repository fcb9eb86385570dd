//! How the Python backend prints and parses JSON values, for error messages and value rules that must
//! read exactly like the real ones.

use serde_json::Value;

/// Python's `repr()` of the object `json.loads` would produce: `None`, `True`, `'text'`, `[1, 2]`,
/// `{'a': 1}`, `1.5`, `1e+16`.
pub(crate) fn repr(value: &Value) -> String {
    match value {
        Value::Null => "None".to_string(),
        Value::Bool(true) => "True".to_string(),
        Value::Bool(false) => "False".to_string(),
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                i.to_string()
            } else if let Some(u) = n.as_u64() {
                u.to_string()
            } else {
                float_repr(n.as_f64().unwrap_or(f64::NAN))
            }
        }
        Value::String(s) => string_repr(s),
        Value::Array(items) => format!(
            "[{}]",
            items.iter().map(repr).collect::<Vec<_>>().join(", ")
        ),
        Value::Object(map) => format!(
            "{{{}}}",
            map.iter()
                .map(|(k, v)| format!("{}: {}", string_repr(k), repr(v)))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// Python's `str()`: like [`repr`] except that a top-level string is printed bare.
pub(crate) fn str(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => repr(other),
    }
}

fn string_repr(s: &str) -> String {
    let quote = if s.contains('\'') && !s.contains('"') {
        '"'
    } else {
        '\''
    };
    let mut out = String::with_capacity(s.len() + 2);
    out.push(quote);
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c == quote => {
                out.push('\\');
                out.push(c);
            }
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                out.push_str(&format!("\\x{:02x}", c as u32))
            }
            c => out.push(c),
        }
    }
    out.push(quote);
    out
}

/// Python's float repr: shortest round-trip digits, scientific below 1e-4 and from 1e16 on.
pub(crate) fn float_repr(f: f64) -> String {
    if f.is_nan() {
        return "nan".to_string();
    }
    if f.is_infinite() {
        return if f > 0.0 { "inf" } else { "-inf" }.to_string();
    }
    if f == 0.0 {
        return if f.is_sign_negative() { "-0.0" } else { "0.0" }.to_string();
    }
    // Rust's `{:e}` gives the shortest round-trip digits: "1.2345e3".
    let sci = format!("{:e}", f);
    let (mantissa, exponent) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exponent: i32 = exponent.parse().unwrap_or(0);
    if (-4..16).contains(&exponent) {
        let plain = format!("{}", f);
        if plain.contains('.') {
            plain
        } else {
            format!("{plain}.0")
        }
    } else {
        let sign = if exponent < 0 { '-' } else { '+' };
        format!("{mantissa}e{sign}{:02}", exponent.abs())
    }
}

/// Whether Python's `float(text)` accepts the string: surrounding whitespace, a sign, digits with
/// single underscores between them, an optional fraction and exponent, or inf/infinity/nan.
pub(crate) fn float_accepts(text: &str) -> bool {
    let s = text.trim();
    let unsigned = s.strip_prefix(['+', '-']).unwrap_or(s);
    let lower = unsigned.to_ascii_lowercase();
    if matches!(lower.as_str(), "inf" | "infinity" | "nan") {
        return true;
    }
    let bytes = unsigned.as_bytes();
    let mut i = 0;
    let int_digits = digit_part(bytes, &mut i);
    let mut frac_digits = 0;
    if i < bytes.len() && bytes[i] == b'.' {
        i += 1;
        frac_digits = digit_part(bytes, &mut i);
    }
    if int_digits == 0 && frac_digits == 0 {
        return false;
    }
    if i < bytes.len() && (bytes[i] == b'e' || bytes[i] == b'E') {
        i += 1;
        if i < bytes.len() && (bytes[i] == b'+' || bytes[i] == b'-') {
            i += 1;
        }
        if digit_part(bytes, &mut i) == 0 {
            return false;
        }
    }
    i == bytes.len()
}

/// Consumes `digit (['_'] digit)*`, returning the number of digits (0 and no progress if none, or if
/// an underscore is not followed by a digit the underscore is left unconsumed).
fn digit_part(bytes: &[u8], i: &mut usize) -> usize {
    let mut count = 0;
    while *i < bytes.len() {
        if bytes[*i].is_ascii_digit() {
            count += 1;
            *i += 1;
        } else if bytes[*i] == b'_'
            && count > 0
            && *i + 1 < bytes.len()
            && bytes[*i + 1].is_ascii_digit()
        {
            *i += 1;
        } else {
            break;
        }
    }
    count
}

/// Python's truthiness of a JSON value.
pub(crate) fn truthy(value: &Value) -> bool {
    match value {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64().is_some_and(|f| f != 0.0),
        Value::String(s) => !s.is_empty(),
        Value::Array(a) => !a.is_empty(),
        Value::Object(o) => !o.is_empty(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reprs_read_like_python() {
        assert_eq!(repr(&json!(null)), "None");
        assert_eq!(repr(&json!({"a": [1, 2.5, "x"]})), "{'a': [1, 2.5, 'x']}");
        assert_eq!(repr(&json!("it's")), "\"it's\"");
        assert_eq!(str(&json!("abc")), "abc");
        assert_eq!(float_repr(1e16), "1e+16");
        assert_eq!(float_repr(1.5e-5), "1.5e-05");
        assert_eq!(float_repr(1234.0), "1234.0");
        assert_eq!(float_repr(0.0001), "0.0001");
    }

    #[test]
    fn float_grammar_is_pythons() {
        for ok in [
            "1e3", " 5 ", "NaN", "-inf", "Infinity", "1_000", ".5", "5.", "+1.5E-3",
        ] {
            assert!(float_accepts(ok), "{ok}");
        }
        for bad in [
            "", "abc", "1__0", "_1", "1_", "1e", ".", "0x10", "1 2", "e5",
        ] {
            assert!(!float_accepts(bad), "{bad}");
        }
    }
}
