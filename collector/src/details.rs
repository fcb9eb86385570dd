//! Reading an entity's `details` the same way in every bot: the address in `details.ipv4` and
//! numbers that the Grafolean UI stores as text. The backend never validates `details`, so both
//! readers say clearly what they could not use.

use serde_json::Value as Json;
use std::fmt;
use std::net::IpAddr;

/// What `details.ipv4` names. Despite the field's name it may hold an IPv4 or IPv6 literal or a
/// host name, and users add a port for SNMP on the same entity (`192.0.2.1:16161`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Address {
    pub host: Host,
    /// The port after the host (`v4:port`, `[v6]:port`, `name:port`), if there is one.
    pub port: Option<u16>,
}

/// The host part of an [`Address`].
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Host {
    /// An IP literal (an IPv4-mapped IPv6 address becomes IPv4); `zone` is the IPv6 scope
    /// (`fe80::1%eth0`), an interface name or index.
    Ip { ip: IpAddr, zone: Option<String> },
    /// A host name, in lower case, for the system resolver.
    Name(String),
}

/// Why `details.ipv4` cannot be used; the message quotes the text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct AddressError(pub String);

impl fmt::Display for Host {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Host::Ip { ip, zone: None } => write!(f, "{ip}"),
            Host::Ip {
                ip,
                zone: Some(zone),
            } => write!(f, "{ip}%{zone}"),
            Host::Name(name) => f.write_str(name),
        }
    }
}

impl Address {
    /// Reads `details.ipv4` of an entity's `details`.
    pub fn from_details(details: &Json) -> Result<Address, AddressError> {
        match details.get("ipv4") {
            None | Some(Json::Null) => Err(AddressError(
                "the entity has no address: details.ipv4 is missing".into(),
            )),
            Some(Json::String(text)) => Address::parse(text),
            Some(other) => Err(AddressError(format!(
                "details.ipv4 must be text holding an address, not {other}"
            ))),
        }
    }

    /// Parses `v4`, `v4:port`, `v6`, `[v6]`, `[v6]:port`, `v6%zone`, `name` or `name:port`.
    pub fn parse(text: &str) -> Result<Address, AddressError> {
        let trimmed = text.trim();
        if trimmed.is_empty() {
            return Err(AddressError("details.ipv4 is empty".into()));
        }
        let bad = |why: &str| AddressError(format!("address `{trimmed}` {why}"));
        let (host, port) = split_port(trimmed).ok_or_else(|| bad("is malformed"))?;
        let (literal, zone) = match host.split_once('%') {
            Some((literal, zone)) if !zone.is_empty() => (literal, Some(zone.to_string())),
            Some(_) => return Err(bad("has an empty zone after `%`")),
            None => (host, None),
        };
        if let Ok(ip) = literal.parse::<IpAddr>() {
            let ip = ip.to_canonical();
            if zone.is_some() && ip.is_ipv4() {
                return Err(bad(
                    "has a zone (`%...`), which only IPv6 addresses can have",
                ));
            }
            return Ok(Address {
                host: Host::Ip { ip, zone },
                port,
            });
        }
        if zone.is_some() {
            return Err(bad(
                "is not an IPv6 address, so it cannot have a zone (`%...`)",
            ));
        }
        if literal.chars().all(|c| c.is_ascii_digit() || c == '.') {
            return Err(bad("is not a valid IPv4 address"));
        }
        if literal.contains(':') {
            return Err(bad("is not a valid IPv6 address"));
        }
        if !is_host_name(literal) {
            return Err(bad("is neither an IP address nor a host name"));
        }
        Ok(Address {
            host: Host::Name(literal.to_ascii_lowercase()),
            port,
        })
    }

    /// The IP address, when the host is a literal.
    pub fn ip(&self) -> Option<IpAddr> {
        match self.host {
            Host::Ip { ip, .. } => Some(ip),
            Host::Name(_) => None,
        }
    }
}

/// Host and port of `[v6]`, `[v6]:port`, `v4:port` and `name:port`; a text with several colons
/// outside brackets is an IPv6 literal. `None` for `[` without `]` or a bad port.
fn split_port(text: &str) -> Option<(&str, Option<u16>)> {
    let (host, port) = if let Some(rest) = text.strip_prefix('[') {
        let (host, after) = rest.split_once(']')?;
        (host, (!after.is_empty()).then_some(after))
    } else {
        match text.split_once(':') {
            Some((host, port)) if !port.contains(':') => (host, Some(&text[host.len()..])),
            _ => (text, None),
        }
    };
    let port = match port {
        None => None,
        Some(suffix) => Some(suffix.strip_prefix(':')?.parse::<u16>().ok()?),
    };
    (!host.is_empty()).then_some((host, port))
}

fn is_host_name(name: &str) -> bool {
    let name = name.strip_suffix('.').unwrap_or(name);
    name.len() <= 253
        && name.split('.').all(|label| {
            (1..=63).contains(&label.len())
                && label
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

/// A finite number given as a JSON number or as text holding one (`"3"`, `" 1.5 "`), as the
/// Grafolean UI stores credential and sensor fields; `None` for anything else.
pub fn number(value: &Json) -> Option<f64> {
    let parsed = match value {
        Json::Number(n) => n.as_f64(),
        Json::String(s) => s.trim().parse::<f64>().ok(),
        _ => None,
    };
    parsed.filter(|x| x.is_finite())
}

/// A field given as text or as a number, as text (`"1000000000"` and `1000000000` alike).
pub fn text(value: &Json) -> Option<String> {
    match value {
        Json::String(s) => Some(s.clone()),
        Json::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ip(text: &str, port: Option<u16>) -> Address {
        Address {
            host: Host::Ip {
                ip: text.parse().unwrap(),
                zone: None,
            },
            port,
        }
    }

    #[test]
    fn every_form_of_details_ipv4() {
        let named = |name: &str, port| Address {
            host: Host::Name(name.into()),
            port,
        };
        let cases = [
            ("192.0.2.1", ip("192.0.2.1", None)),
            (" 127.0.0.1 ", ip("127.0.0.1", None)),
            ("192.0.2.1:16161", ip("192.0.2.1", Some(16161))),
            ("2001:db8::1", ip("2001:db8::1", None)),
            ("[2001:db8::7]", ip("2001:db8::7", None)),
            ("[2001:db8::7]:161", ip("2001:db8::7", Some(161))),
            ("::ffff:192.0.2.9", ip("192.0.2.9", None)),
            ("Router-1.example.NET", named("router-1.example.net", None)),
            ("localhost:161", named("localhost", Some(161))),
            ("192.0.2.1:0", ip("192.0.2.1", Some(0))),
        ];
        for (text, expected) in cases {
            assert_eq!(Address::parse(text).unwrap(), expected, "{text:?}");
        }
        let zoned = Address::parse("fe80::1%eth0").unwrap();
        assert_eq!(zoned.host.to_string(), "fe80::1%eth0");
        assert_eq!(zoned.ip(), Some("fe80::1".parse().unwrap()));
        assert_eq!(Address::parse("example.org").unwrap().ip(), None);
    }

    #[test]
    fn unusable_text_is_a_clear_error() {
        let cases = [
            ("", "empty"),
            ("   ", "empty"),
            ("192.0.2.300", "not a valid IPv4 address"),
            ("1.2.3", "not a valid IPv4 address"),
            ("2001:db8::zz", "not a valid IPv6 address"),
            ("[::1", "malformed"),
            ("[::1]x", "malformed"),
            ("host:notaport", "malformed"),
            ("1.2.3.4:", "malformed"),
            ("1.2.3.4:70000", "malformed"),
            (":161", "malformed"),
            ("192.0.2.1%eth0", "only IPv6"),
            ("fe80::1%", "empty zone"),
            ("bad host", "neither an IP address nor a host name"),
            ("-bad.example", "neither"),
            ("a..b", "neither"),
        ];
        for (text, message) in cases {
            let err = Address::parse(text).unwrap_err();
            assert!(err.0.contains(message), "{text:?}: {err} lacks {message:?}");
        }
    }

    #[test]
    fn details_without_a_text_address_are_errors() {
        let err = |details| Address::from_details(&details).unwrap_err().0;
        assert!(err(json!({})).contains("missing"));
        assert!(err(json!({"ipv4": null})).contains("missing"));
        assert!(err(json!({"ipv4": 17})).contains("must be text"));
        assert_eq!(
            Address::from_details(&json!({"ipv4": "127.0.0.2"})).unwrap(),
            ip("127.0.0.2", None)
        );
    }

    #[test]
    fn numbers_as_numbers_or_text() {
        assert_eq!(number(&json!(3)), Some(3.0));
        assert_eq!(number(&json!(" 1.5 ")), Some(1.5));
        assert_eq!(number(&json!("1e3")), Some(1000.0));
        for bad in [
            json!("abc"),
            json!(""),
            json!(null),
            json!("NaN"),
            json!("inf"),
            json!([1]),
        ] {
            assert_eq!(number(&bad), None, "{bad}");
        }
        assert_eq!(text(&json!(1000000000)).as_deref(), Some("1000000000"));
        assert_eq!(text(&json!("2")).as_deref(), Some("2"));
        assert_eq!(text(&json!(null)), None);
    }
}
