//! Values: what a job measured, before delivery gives them a timestamp and a destination.

use serde::Serialize;

/// One measurement: a Grafolean path and a number.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Value {
    #[serde(rename = "p")]
    pub path: String,
    #[serde(rename = "v")]
    pub value: f64,
}

impl Value {
    pub fn new(path: impl Into<String>, value: f64) -> Self {
        Value {
            path: path.into(),
            value,
        }
    }
}

/// Why the backend would reject a path (contract §4.8), or `None` if it would accept it:
/// dot-separated segments of `A-Z a-z 0-9 _ -` or the lowercase escapes `%2e` / `%3a`,
/// not starting with `system.`. Delivery checks every value: most paths pass the quick check of
/// [`is_plain_path`], the rest are read segment by segment.
pub fn path_problem(path: &str) -> Option<&'static str> {
    if is_plain_path(path) {
        return None;
    }
    path_problem_by_segments(path)
}

/// The rule as the contract states it, segment by segment.
fn path_problem_by_segments(path: &str) -> Option<&'static str> {
    if path.is_empty() {
        return Some("empty path");
    }
    if path.starts_with("system.") {
        return Some("path starts with 'system.'");
    }
    for segment in path.split('.') {
        if segment.is_empty() {
            return Some("empty path segment");
        }
        let bytes = segment.as_bytes();
        let mut i = 0;
        while i < bytes.len() {
            match bytes[i] {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'_' | b'-' => i += 1,
                b'%' if bytes[i + 1..].starts_with(b"2e") || bytes[i + 1..].starts_with(b"3a") => {
                    i += 3
                }
                _ => return Some("character not allowed in a path"),
            }
        }
    }
    None
}

/// Whether `path` is dot-separated words of `A-Z a-z 0-9 _ -` only, not starting with
/// `system.`: what nearly every path is. Read a window of 32 bytes at a time, each byte tested
/// the same way with no branch, so the compiler tests 16 bytes per instruction; a path with an
/// escape or any problem goes to the segment rule.
fn is_plain_path(path: &str) -> bool {
    let bytes = path.as_bytes();
    let (Some(&first), Some(&last)) = (bytes.first(), bytes.last()) else {
        return false;
    };
    let mut plain = true;
    for start in (0..bytes.len()).step_by(WINDOW) {
        // The window and the byte after it (for a dot at its end), padded with a letter.
        let taken = &bytes[start..bytes.len().min(start + WINDOW + 1)];
        let mut window = [b'a'; WINDOW + 1];
        window[..taken.len()].copy_from_slice(taken);
        plain &= window_is_plain(&window);
    }
    plain && first != b'.' && last != b'.' && !path.starts_with("system.")
}

/// The bytes [`is_plain_path`] reads at once.
const WINDOW: usize = 32;

/// Whether none of the first [`WINDOW`] bytes is out of `A-Z a-z 0-9 _ - .` or a dot
/// followed by a dot.
fn window_is_plain(window: &[u8; WINDOW + 1]) -> bool {
    let mut bad = [0u8; WINDOW];
    for (at, flag) in bad.iter_mut().enumerate() {
        let byte = window[at];
        let letter = (byte | 0x20).wrapping_sub(b'a') < 26;
        let digit = byte.wrapping_sub(b'0') < 10;
        let dot = byte == b'.';
        let allowed = letter | digit | dot | (byte == b'_') | (byte == b'-');
        *flag = u8::from(!allowed | (dot & (window[at + 1] == b'.')));
    }
    bad == [0u8; WINDOW]
}

/// Encodes text for use inside one path segment the way the NetFlow bot does: `.` -> `%2e`,
/// `:` -> `%3a` (IP addresses), nothing else.
pub fn escape_segment(text: &str) -> String {
    text.replace('.', "%2e").replace(':', "%3a")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quick_check_agrees_with_the_segment_rule_on_every_short_path() {
        let alphabet = ['a', '.', '%', '2', 'e', '3', ':', ' ', '_', 'Z'];
        let mut paths = vec![String::new()];
        let mut checked = 0;
        for _ in 0..5 {
            let mut longer = Vec::new();
            for path in &paths {
                for c in alphabet {
                    longer.push(format!("{path}{c}"));
                }
            }
            for path in &longer {
                assert_eq!(
                    path_problem(path),
                    path_problem_by_segments(path),
                    "{path:?}"
                );
                checked += 1;
            }
            paths = longer;
        }
        for path in ["system.x", "system", "systemx.y", "a.system.b", ""] {
            assert_eq!(
                path_problem(path),
                path_problem_by_segments(path),
                "{path:?}"
            );
        }
        assert_eq!(checked, 111_110);
    }

    #[test]
    fn quick_check_agrees_with_the_segment_rule_across_its_windows() {
        let alphabet = ['a', '.', '%', '2', 'e', ' ', '_', '\u{e9}'];
        let mut pieces = vec![String::new()];
        let mut longest = pieces.clone();
        for _ in 0..3 {
            longest = longest
                .iter()
                .flat_map(|piece| alphabet.iter().map(move |c| format!("{piece}{c}")))
                .collect();
            pieces.extend(longest.iter().cloned());
        }
        // Every piece of up to three characters at every place around the first and the
        // second window's edges, in paths of every length about them.
        let mut checked = 0;
        for piece in &pieces {
            for before in (WINDOW - 4..=WINDOW + 1).chain(2 * WINDOW - 3..=2 * WINDOW) {
                for after in [0, 1, 2, 5] {
                    let path = format!("{}{piece}{}", "a".repeat(before), "b".repeat(after));
                    assert_eq!(
                        path_problem(&path),
                        path_problem_by_segments(&path),
                        "{path:?}"
                    );
                    checked += 1;
                }
            }
        }
        assert_eq!(checked, 585 * 10 * 4);
    }

    #[test]
    fn backend_path_rule() {
        for ok in [
            "entity.1.snmp.x",
            "a",
            "netflow.1min.egress.entity.5.topip.10%2e0%2e0%2e1",
            "a-b_C.9",
            "x.%3a%3a1",
        ] {
            assert_eq!(path_problem(ok), None, "{ok}");
        }
        for bad in [
            "", "a..b", ".a", "a.", "system.x", "a b", "a/b", "a:b", "a.%2E", "a.%20", "a.%2", "a%",
        ] {
            assert!(path_problem(bad).is_some(), "{bad}");
        }
    }

    #[test]
    fn segment_escape() {
        assert_eq!(escape_segment("192.0.2.1"), "192%2e0%2e2%2e1");
        assert_eq!(escape_segment("2001:db8::1"), "2001%3adb8%3a%3a1");
        assert_eq!(path_problem(&escape_segment("fe80::1.x")), None);
    }
}
