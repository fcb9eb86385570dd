//! Agent addresses: `details.ipv4` with an optional port, and how a target is named in logs.

/// The agent port when `details.ipv4` carries none.
pub const DEFAULT_PORT: u16 = 161;

/// Host and port from `details.ipv4`: `192.0.2.1`, `192.0.2.1:16161`, `[2001:db8::1]:161`,
/// `2001:db8::1` or a host name.
pub fn parse_target(address: &str) -> Result<(String, u16), String> {
    let address = address.trim();
    if address.is_empty() {
        return Err("entity has no address (details.ipv4 is empty)".to_string());
    }
    let parse_port = |port: &str| {
        port.parse::<u16>()
            .ok()
            .filter(|&p| p != 0)
            .ok_or_else(|| format!("'{address}' has an invalid port '{port}'"))
    };
    if let Some(bracketed) = address.strip_prefix('[') {
        let (host, rest) = bracketed
            .split_once(']')
            .ok_or_else(|| format!("'{address}' lacks the closing ']'"))?;
        let port = match rest {
            "" => DEFAULT_PORT,
            _ => parse_port(
                rest.strip_prefix(':')
                    .ok_or_else(|| format!("'{address}' has text after ']'"))?,
            )?,
        };
        return Ok((host.to_string(), port));
    }
    match address.matches(':').count() {
        0 => Ok((address.to_string(), DEFAULT_PORT)),
        1 => {
            let (host, port) = address.split_once(':').unwrap_or((address, ""));
            if host.is_empty() {
                return Err(format!("'{address}' has no host"));
            }
            Ok((host.to_string(), parse_port(port)?))
        }
        _ => Ok((address.to_string(), DEFAULT_PORT)),
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
