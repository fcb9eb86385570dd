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
/// `system.`: what nearly every path is. A path with an escape or any problem goes to the
/// segment rule. On x86_64 paths of up to 64 bytes are read 16 bytes per SSE2 instruction
/// ([`plain_masks`]): every value of every firing is checked, and a ping path's check took 131
/// instructions this way, 163 by the portable windows of [`is_plain_by_windows`].
fn is_plain_path(path: &str) -> bool {
    let bytes = path.as_bytes();
    let (Some(&first), Some(&last)) = (bytes.first(), bytes.last()) else {
        return false;
    };
    #[cfg(target_arch = "x86_64")]
    let plain = match plain_masks(bytes) {
        Some((bad, dots)) => bad == 0 && dots & (dots >> 1) == 0,
        None => is_plain_by_windows(bytes),
    };
    #[cfg(not(target_arch = "x86_64"))]
    let plain = is_plain_by_windows(bytes);
    plain && first != b'.' && last != b'.' && !path.starts_with("system.")
}

/// For a path of 1 to 64 bytes, a bit per byte: those out of `A-Z a-z 0-9 _ - .`, and the dots.
/// Read 16 bytes at a time; a path shorter than that is padded with letters, and the last 16
/// bytes of a longer one are read again where they overlap the previous step (the same bytes
/// give the same bits).
#[cfg(target_arch = "x86_64")]
fn plain_masks(bytes: &[u8]) -> Option<(u64, u64)> {
    let length = bytes.len();
    if length > 64 {
        return None;
    }
    if length < 16 {
        let mut padded = [b'a'; 16];
        padded[..length].copy_from_slice(bytes);
        let (bad, dots) = chunk_masks(&padded);
        return Some((u64::from(bad), u64::from(dots)));
    }
    let (mut bad, mut dots) = (0u64, 0u64);
    let last = length - 16;
    let mut offset = 0;
    loop {
        let at = offset.min(last);
        let (chunk_bad, chunk_dots) = chunk_masks(bytes[at..].first_chunk::<16>()?);
        bad |= u64::from(chunk_bad) << at;
        dots |= u64::from(chunk_dots) << at;
        if at == last {
            return Some((bad, dots));
        }
        offset += 16;
    }
}

/// A bit per byte of `chunk`: the bytes out of `A-Z a-z 0-9 _ - .`, and the dots.
#[cfg(target_arch = "x86_64")]
fn chunk_masks(chunk: &[u8; 16]) -> (u16, u16) {
    use std::arch::x86_64::*;
    // SAFETY: SSE2 is part of every x86_64 CPU; the load reads the 16 bytes of `chunk`.
    unsafe {
        let byte = _mm_loadu_si128(chunk.as_ptr().cast());
        let splat = |b: u8| _mm_set1_epi8(b as i8);
        // x is in 0..=max (unsigned) where min(x, max) == x.
        let at_most = |x: __m128i, max: u8| _mm_cmpeq_epi8(_mm_min_epu8(x, splat(max)), x);
        let letter = at_most(
            _mm_sub_epi8(_mm_or_si128(byte, splat(0x20)), splat(b'a')),
            25,
        );
        // '-', '.', '/' and the digits are 0x2d..=0x39: all but '/' are allowed.
        let dash_to_nine = at_most(_mm_sub_epi8(byte, splat(b'-')), b'9' - b'-');
        let slash = _mm_cmpeq_epi8(byte, splat(b'/'));
        let underscore = _mm_cmpeq_epi8(byte, splat(b'_'));
        let dot = _mm_cmpeq_epi8(byte, splat(b'.'));
        let allowed = _mm_or_si128(
            _mm_or_si128(letter, underscore),
            _mm_andnot_si128(slash, dash_to_nine),
        );
        (
            !(_mm_movemask_epi8(allowed) as u16),
            _mm_movemask_epi8(dot) as u16,
        )
    }
}

/// [`is_plain_path`]'s test of the bytes, portable: a window of 32 bytes at a time, each byte
/// tested the same way with no branch, so that the compiler tests 16 bytes per instruction.
fn is_plain_by_windows(bytes: &[u8]) -> bool {
    let mut plain = true;
    for start in (0..bytes.len()).step_by(WINDOW) {
        // The window and the byte after it (for a dot at its end), padded with a letter.
        let taken = &bytes[start..bytes.len().min(start + WINDOW + 1)];
        let mut window = [b'a'; WINDOW + 1];
        window[..taken.len()].copy_from_slice(taken);
        plain &= window_is_plain(&window);
    }
    plain
}

/// The bytes [`is_plain_by_windows`] reads at once.
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
        // Every piece of up to three characters at every place around the edges of the
        // 16-byte steps (x86_64) and of the 32-byte windows, in paths of every length about
        // them, up to beyond the 64 bytes read in steps.
        let mut checked = 0;
        for piece in &pieces {
            for before in [12, 28, 44, 60]
                .into_iter()
                .flat_map(|edge| edge..=edge + 5)
            {
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
        assert_eq!(checked, 585 * 24 * 4);
    }

    #[test]
    fn quick_check_agrees_with_the_segment_rule_for_every_character_at_every_place() {
        let characters = (0u8..128).map(char::from).chain(['\u{e9}', '\u{20ac}']);
        let mut checked = 0;
        for c in characters {
            for length in 1..=70 {
                for at in 0..length {
                    let path: String = (0..length).map(|i| if i == at { c } else { 'a' }).collect();
                    let valid = path_problem_by_segments(&path).is_none();
                    assert_eq!(path_problem(&path).is_none(), valid, "{path:?}");
                    // Plain: valid without escapes, which only the segment rule reads.
                    assert_eq!(is_plain_path(&path), valid && c != '%', "{path:?}");
                    checked += 1;
                }
            }
        }
        assert_eq!(checked, 130 * (70 * 71 / 2));
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
