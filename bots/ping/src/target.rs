//! The address a ping job sends to: `details.ipv4` of the entity, which despite its name may hold
//! an IPv4 or IPv6 literal or a host name (the UI does not validate it).

use collector::details::{Address, AddressError, Host};
use serde_json::Value as Json;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Duration;

/// How long a host name lookup may take before the job run is given up.
pub const RESOLVE_TIMEOUT: Duration = Duration::from_secs(5);

/// The host `details.ipv4` names, checked once when the job is built (an address no single host
/// answers for is refused). Names are resolved on every run, so a changed DNS record is followed
/// without a restart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target(pub Host);

/// The resolved address of one echo request: an IP and, for link-local IPv6, its interface.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Destination {
    pub ip: IpAddr,
    pub scope_id: u32,
}

impl From<IpAddr> for Destination {
    fn from(ip: IpAddr) -> Self {
        Destination { ip, scope_id: 0 }
    }
}

impl fmt::Display for Destination {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.scope_id {
            0 => write!(f, "{}", self.ip),
            scope => write!(f, "{}%{scope}", self.ip),
        }
    }
}

/// Why an entity's address cannot be pinged; the message quotes the address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetError(pub String);

impl fmt::Display for TargetError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for TargetError {}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl Target {
    /// Reads the target from an entity's `details` (`{"ipv4": "..."}`).
    pub fn from_details(details: &Json) -> Result<Target, TargetError> {
        Target::checked(Address::from_details(details))
    }

    /// Parses an IPv4 or IPv6 literal (optionally `[v6]`, `v6%zone`) or a host name. A `:port`
    /// suffix, which users add for SNMP on the same entity, is ignored: ICMP has no ports.
    pub fn parse(text: &str) -> Result<Target, TargetError> {
        Target::checked(Address::parse(text))
    }

    fn checked(address: Result<Address, AddressError>) -> Result<Target, TargetError> {
        let host = address.map_err(|e| TargetError(e.0))?.host;
        if let Host::Ip { ip, .. } = host {
            usable(ip).map_err(|why| TargetError(format!("address `{ip}` {why}")))?;
        }
        Ok(Target(host))
    }

    /// The address to send to now: the literal, or the first address the resolver gives.
    pub async fn resolve(&self) -> Result<Destination, TargetError> {
        match &self.0 {
            Host::Ip { ip, zone } => {
                let scope_id = match zone {
                    None => 0,
                    Some(zone) => scope_index(zone).ok_or_else(|| {
                        TargetError(format!(
                            "address `{self}`: there is no network interface `{zone}`"
                        ))
                    })?,
                };
                Ok(Destination { ip: *ip, scope_id })
            }
            Host::Name(name) => {
                let lookup = tokio::net::lookup_host((name.as_str(), 0));
                let addresses = match tokio::time::timeout(RESOLVE_TIMEOUT, lookup).await {
                    Err(_) => {
                        return Err(TargetError(format!(
                            "host name `{name}` did not resolve within {} s",
                            RESOLVE_TIMEOUT.as_secs()
                        )))
                    }
                    Ok(Err(err)) => {
                        return Err(TargetError(format!(
                            "host name `{name}` does not resolve: {err}"
                        )))
                    }
                    Ok(Ok(addresses)) => addresses,
                };
                let mut first_problem = None;
                for address in addresses {
                    let ip = address.ip().to_canonical();
                    match usable(ip) {
                        Ok(()) => return Ok(Destination::from(ip)),
                        Err(why) => {
                            first_problem.get_or_insert(format!("{ip} {why}"));
                        }
                    }
                }
                Err(TargetError(match first_problem {
                    Some(problem) => format!("host name `{name}` resolves to {problem}"),
                    None => format!("host name `{name}` resolves to no address"),
                }))
            }
        }
    }
}

/// Addresses that no single host answers for: pinging them cannot say whether a device is up.
fn usable(ip: IpAddr) -> Result<(), String> {
    match ip {
        IpAddr::V4(v4) if v4.is_unspecified() => Err("is the unspecified address".into()),
        IpAddr::V4(v4) if v4 == Ipv4Addr::BROADCAST => Err("is the broadcast address".into()),
        IpAddr::V4(v4) if v4.is_multicast() => Err("is a multicast address".into()),
        IpAddr::V6(v6) if v6 == Ipv6Addr::UNSPECIFIED => Err("is the unspecified address".into()),
        IpAddr::V6(v6) if v6.is_multicast() => Err("is a multicast address".into()),
        _ => Ok(()),
    }
}

/// An IPv6 zone as an interface index: a number, or an interface name known to the kernel.
fn scope_index(zone: &str) -> Option<u32> {
    if let Ok(index) = zone.parse::<u32>() {
        return Some(index);
    }
    let name = std::ffi::CString::new(zone).ok()?;
    // SAFETY: `name` is a valid NUL-terminated string that outlives the call.
    let index = unsafe { libc::if_nametoindex(name.as_ptr()) };
    (index != 0).then_some(index)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn literal(ip: &str) -> Target {
        Target(Host::Ip {
            ip: ip.parse().unwrap(),
            zone: None,
        })
    }

    #[test]
    fn ip_literals_parse_with_and_without_decoration() {
        assert_eq!(Target::parse("192.0.2.1").unwrap(), literal("192.0.2.1"));
        assert_eq!(Target::parse(" 127.0.0.1 ").unwrap(), literal("127.0.0.1"));
        assert_eq!(
            Target::parse("127.0.0.1:16161").unwrap(),
            literal("127.0.0.1")
        );
        assert_eq!(Target::parse("::1").unwrap(), literal("::1"));
        assert_eq!(
            Target::parse("[2001:db8::7]").unwrap(),
            literal("2001:db8::7")
        );
        assert_eq!(
            Target::parse("[2001:db8::7]:161").unwrap(),
            literal("2001:db8::7")
        );
        assert_eq!(
            Target::parse("::ffff:192.0.2.9").unwrap(),
            literal("192.0.2.9")
        );
        assert_eq!(
            Target::parse("fe80::1%eth0").unwrap(),
            Target(Host::Ip {
                ip: "fe80::1".parse().unwrap(),
                zone: Some("eth0".into())
            })
        );
    }

    #[test]
    fn host_names_are_kept_for_resolution() {
        assert_eq!(
            Target::parse("Router-1.example.NET").unwrap(),
            Target(Host::Name("router-1.example.net".into()))
        );
        assert_eq!(
            Target::parse("localhost:161").unwrap(),
            Target(Host::Name("localhost".into()))
        );
    }

    #[test]
    fn unusable_addresses_are_clear_errors() {
        let cases = [
            ("", "empty"),
            ("   ", "empty"),
            ("0.0.0.0", "unspecified"),
            ("::", "unspecified"),
            ("255.255.255.255", "broadcast"),
            ("224.0.0.1", "multicast"),
            ("ff02::1", "multicast"),
            ("[::]:161", "unspecified"),
            ("192.0.2.300", "not a valid IPv4 address"),
            ("host:notaport", "malformed"),
        ];
        for (text, message) in cases {
            let err = Target::parse(text).unwrap_err();
            assert!(err.0.contains(message), "{text:?}: {err} lacks {message:?}");
        }
    }

    #[tokio::test]
    async fn localhost_resolves_to_a_loopback_address() {
        let destination = Target::parse("localhost").unwrap().resolve().await.unwrap();
        assert!(destination.ip.is_loopback(), "{destination}");
    }

    #[tokio::test]
    async fn a_name_that_does_not_exist_is_an_error_naming_it() {
        let err = Target::parse("no-such-host.invalid")
            .unwrap()
            .resolve()
            .await
            .unwrap_err();
        assert!(err.0.contains("no-such-host.invalid"), "{err}");
    }

    #[tokio::test]
    async fn zones_resolve_to_interface_indexes() {
        let lo = Target::parse("fe80::1%lo")
            .unwrap()
            .resolve()
            .await
            .unwrap();
        assert_eq!(
            lo.scope_id, 1,
            "lo is interface 1 in every network namespace"
        );
        let numeric = Target::parse("fe80::1%7").unwrap().resolve().await.unwrap();
        assert_eq!(numeric.scope_id, 7);
        let err = Target::parse("fe80::1%nosuchif0")
            .unwrap()
            .resolve()
            .await
            .unwrap_err();
        assert!(err.0.contains("no network interface `nosuchif0`"), "{err}");
    }
}
