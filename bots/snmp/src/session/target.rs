//! Agent addresses: `details.ipv4` with an optional port, and how a target is named in logs.

/// The agent port when `details.ipv4` carries none.
pub const DEFAULT_PORT: u16 = 161;

/// Host and port from `details.ipv4`: `192.0.2.1`, `192.0.2.1:16161`, `[2001:db8::1]:161`,
/// `2001:db8::1`, `fe80::1%eth0` or a host name (see [`collector::details::Address`]).
pub fn parse_target(address: &str) -> Result<(String, u16), String> {
    let parsed = collector::details::Address::parse(address).map_err(|e| e.0)?;
    match parsed.port {
        Some(0) => Err(format!("'{}' has an invalid port '0'", address.trim())),
        port => Ok((parsed.host.to_string(), port.unwrap_or(DEFAULT_PORT))),
    }
}

/// `host:port`, IPv6 hosts in brackets, as log lines name a target.
pub fn format_target(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets() {
        assert_eq!(parse_target("192.0.2.1"), Ok(("192.0.2.1".into(), 161)));
        assert_eq!(
            parse_target(" 127.0.0.1:16161 "),
            Ok(("127.0.0.1".into(), 16161))
        );
        assert_eq!(
            parse_target("router.example"),
            Ok(("router.example".into(), 161))
        );
        assert_eq!(parse_target("2001:db8::1"), Ok(("2001:db8::1".into(), 161)));
        assert_eq!(
            parse_target("[2001:db8::1]:1161"),
            Ok(("2001:db8::1".into(), 1161))
        );
        assert_eq!(parse_target("[::1]"), Ok(("::1".into(), 161)));
        assert_eq!(
            parse_target("fe80::1%eth0"),
            Ok(("fe80::1%eth0".into(), 161))
        );
        assert_eq!(
            parse_target("router.example:1161"),
            Ok(("router.example".into(), 1161))
        );
        for bad in [
            "",
            "1.2.3.4:",
            "1.2.3.4:x",
            "1.2.3.4:70000",
            ":161",
            "[::1",
            "[::1]x",
            "1.2.3.4:0",
        ] {
            assert!(parse_target(bad).is_err(), "{bad:?}");
        }
    }
}
