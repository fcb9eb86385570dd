//! The ping credential: how many echo requests a job sends and how long it waits for each
//! (contract §5.10). The Grafolean UI stores every field as a string; the API also accepts numbers.

use serde_json::Value as Json;
use std::fmt;
use std::time::Duration;

/// The original bot's defaults, used for a field that is missing, null or blank.
pub const DEFAULT_TIMEOUT_SECS: f64 = 2.0;
pub const DEFAULT_RETRY: u32 = 0;
pub const DEFAULT_N_PACKETS: u32 = 3;
pub const DEFAULT_SLEEP_PACKETS_SECS: f64 = 1.0;

/// The shortest wait for one attempt that the original accepted; shorter ones were an error.
pub const MIN_ATTEMPT_SECS: f64 = 0.1;
/// Upper bounds that keep one entity's typo (`n_packets = 300000`) from holding a job for days.
pub const MAX_SECONDS: f64 = 3600.0;
pub const MAX_N_PACKETS: u32 = 10_000;
pub const MAX_RETRY: u32 = 1_000;

/// How one job pings its target, read from the credential's `details`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ProbeSettings {
    /// The total wait for one packet, over all its attempts.
    pub timeout: Duration,
    /// Extra attempts per packet; the timeout is split evenly over `retry + 1` attempts.
    pub retry: u32,
    /// Packets per job run; each gives one `p{i}` pair of values.
    pub n_packets: u32,
    /// The pause after a packet's outcome is known, before the next packet.
    pub sleep_packets: Duration,
}

impl Default for ProbeSettings {
    fn default() -> Self {
        ProbeSettings {
            timeout: Duration::from_secs_f64(DEFAULT_TIMEOUT_SECS),
            retry: DEFAULT_RETRY,
            n_packets: DEFAULT_N_PACKETS,
            sleep_packets: Duration::from_secs_f64(DEFAULT_SLEEP_PACKETS_SECS),
        }
    }
}

/// A credential field that cannot be used, with the field's name and the offending text, so the
/// log line tells the user exactly what to fix in the UI.
#[derive(Debug, Clone, PartialEq)]
pub struct CredentialError {
    pub field: &'static str,
    pub problem: String,
}

impl fmt::Display for CredentialError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "ping credential field `{}`: {}",
            self.field, self.problem
        )
    }
}

impl std::error::Error for CredentialError {}

impl ProbeSettings {
    /// Reads `timeout`, `retry`, `n_packets` and `sleep_packets` from a credential's `details`.
    /// A missing, null or blank field takes the original default; anything else must be a
    /// number (or text holding one) in range.
    pub fn from_details(details: &Json) -> Result<Self, CredentialError> {
        let field = |name: &str| details.get(name).filter(|v| !is_blank(v));
        let timeout = match field("timeout") {
            None => DEFAULT_TIMEOUT_SECS,
            Some(v) => seconds("timeout", v)?,
        };
        let retry = match field("retry") {
            None => DEFAULT_RETRY,
            Some(v) => count("retry", v, 0, MAX_RETRY)?,
        };
        let n_packets = match field("n_packets") {
            None => DEFAULT_N_PACKETS,
            Some(v) => count("n_packets", v, 1, MAX_N_PACKETS)?,
        };
        let sleep_packets = match field("sleep_packets") {
            None => DEFAULT_SLEEP_PACKETS_SECS,
            Some(v) => seconds("sleep_packets", v)?,
        };
        // The tolerance keeps `0.3 / 3` (0.09999...) acceptable, as a user would expect.
        const TOLERANCE: f64 = 1e-9;
        if timeout < MIN_ATTEMPT_SECS - TOLERANCE {
            return Err(CredentialError {
                field: "timeout",
                problem: format!("{timeout} s is shorter than the minimum of {MIN_ATTEMPT_SECS} s"),
            });
        }
        let slice = timeout / f64::from(retry + 1);
        if slice < MIN_ATTEMPT_SECS - TOLERANCE {
            return Err(CredentialError {
                field: "retry",
                problem: format!(
                    "a timeout of {timeout} s split over {} attempts leaves {slice:.3} s per \
                     attempt, less than the minimum of {MIN_ATTEMPT_SECS} s; lower `retry` or \
                     raise `timeout`",
                    retry + 1
                ),
            });
        }
        Ok(ProbeSettings {
            timeout: Duration::from_secs_f64(timeout),
            retry,
            n_packets,
            sleep_packets: Duration::from_secs_f64(sleep_packets),
        })
    }

    /// How long each attempt of a packet waits before the next attempt is sent.
    pub fn attempt_slice(&self) -> Duration {
        self.timeout / (self.retry + 1)
    }

    /// The longest a job run can take: every packet lost, with the pauses between packets.
    pub fn worst_case_duration(&self) -> Duration {
        self.timeout * self.n_packets + self.sleep_packets * self.n_packets.saturating_sub(1)
    }
}

fn is_blank(value: &Json) -> bool {
    match value {
        Json::Null => true,
        Json::String(s) => s.trim().is_empty(),
        _ => false,
    }
}

fn number(field: &'static str, value: &Json) -> Result<f64, CredentialError> {
    collector::details::number(value).ok_or_else(|| CredentialError {
        field,
        problem: format!("{value} is not a number"),
    })
}

fn seconds(field: &'static str, value: &Json) -> Result<f64, CredentialError> {
    let secs = number(field, value)?;
    if !(0.0..=MAX_SECONDS).contains(&secs) {
        return Err(CredentialError {
            field,
            problem: format!("{value} seconds is outside 0..={MAX_SECONDS}"),
        });
    }
    Ok(secs)
}

fn count(field: &'static str, value: &Json, min: u32, max: u32) -> Result<u32, CredentialError> {
    let x = number(field, value)?;
    if x.fract() != 0.0 {
        return Err(CredentialError {
            field,
            problem: format!("{value} is not a whole number"),
        });
    }
    if x < f64::from(min) || x > f64::from(max) {
        return Err(CredentialError {
            field,
            problem: format!("{value} is outside {min}..={max}"),
        });
    }
    Ok(x as u32)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_ui_seed_credential_parses_from_strings() {
        let settings = ProbeSettings::from_details(
            &json!({"n_packets":"3","sleep_packets":"1.0","timeout":"1.0","retry":"0"}),
        )
        .unwrap();
        assert_eq!(
            settings,
            ProbeSettings {
                timeout: Duration::from_secs(1),
                retry: 0,
                n_packets: 3,
                sleep_packets: Duration::from_secs(1),
            }
        );
    }

    #[test]
    fn numbers_are_accepted_as_well_as_strings() {
        let settings = ProbeSettings::from_details(
            &json!({"n_packets":5,"sleep_packets":0.25,"timeout":1.5,"retry":2.0}),
        )
        .unwrap();
        assert_eq!(settings.n_packets, 5);
        assert_eq!(settings.retry, 2);
        assert_eq!(settings.timeout, Duration::from_millis(1500));
        assert_eq!(settings.sleep_packets, Duration::from_millis(250));
        assert_eq!(settings.attempt_slice(), Duration::from_millis(500));
    }

    #[test]
    fn missing_null_and_blank_fields_take_the_original_defaults() {
        for details in [
            json!({}),
            json!(null),
            json!({"timeout": null, "retry": " ", "n_packets": "", "sleep_packets": null}),
        ] {
            assert_eq!(
                ProbeSettings::from_details(&details).unwrap(),
                ProbeSettings {
                    timeout: Duration::from_secs(2),
                    retry: 0,
                    n_packets: 3,
                    sleep_packets: Duration::from_secs(1),
                },
                "{details}"
            );
        }
    }

    #[test]
    fn bad_values_name_the_field_and_the_value() {
        let cases = [
            (
                json!({"timeout": "fast"}),
                "timeout",
                "\"fast\" is not a number",
            ),
            (
                json!({"timeout": "0.05"}),
                "timeout",
                "shorter than the minimum",
            ),
            (json!({"timeout": -1}), "timeout", "outside"),
            (json!({"timeout": "inf"}), "timeout", "not a number"),
            (json!({"retry": "1.5"}), "retry", "not a whole number"),
            (json!({"retry": -1}), "retry", "outside"),
            (
                json!({"timeout": "1", "retry": "10"}),
                "retry",
                "per attempt",
            ),
            (json!({"n_packets": "0"}), "n_packets", "outside 1..="),
            (json!({"n_packets": [3]}), "n_packets", "not a number"),
            (json!({"n_packets": 1e9}), "n_packets", "outside"),
            (
                json!({"sleep_packets": "NaN"}),
                "sleep_packets",
                "not a number",
            ),
            (
                json!({"sleep_packets": true}),
                "sleep_packets",
                "not a number",
            ),
        ];
        for (details, field, message) in cases {
            let err = ProbeSettings::from_details(&details).unwrap_err();
            assert_eq!(err.field, field, "{details}");
            assert!(
                err.to_string().contains(message),
                "{details}: {err} lacks {message:?}"
            );
        }
    }

    #[test]
    fn the_attempt_slice_may_be_exactly_the_minimum() {
        let settings =
            ProbeSettings::from_details(&json!({"timeout": "0.3", "retry": "2"})).unwrap();
        assert_eq!(settings.attempt_slice(), Duration::from_millis(100));
        assert_eq!(
            settings.worst_case_duration(),
            Duration::from_millis(3 * 300 + 2 * 1000)
        );
    }
}
