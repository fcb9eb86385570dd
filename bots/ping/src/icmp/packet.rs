//! ICMP echo packets: building requests and reading what the sockets deliver (echo replies and
//! the errors that quote a request). Layouts are those of RFC 792 (ICMPv4) and RFC 4443 (ICMPv6);
//! every read is bounds-checked, so a short or malformed packet is `None`, never a panic.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Bytes of an ICMP echo header: type, code, checksum, identifier, sequence.
pub const ECHO_HEADER_LEN: usize = 8;
/// Bytes after the ICMP header, as `ping` and `fping` send by default. The first 8 carry the
/// request's token (see `icmp::inflight`).
pub const ECHO_PAYLOAD_LEN: usize = 56;
/// A whole echo request as we send it.
pub const ECHO_REQUEST_LEN: usize = ECHO_HEADER_LEN + ECHO_PAYLOAD_LEN;

const ICMPV4_ECHO_REPLY: u8 = 0;
const ICMPV4_ECHO_REQUEST: u8 = 8;
const ICMPV6_ECHO_REQUEST: u8 = 128;
const ICMPV6_ECHO_REPLY: u8 = 129;
const IPV6_HEADER_LEN: usize = 40;
const IPPROTO_ICMP: u8 = 1;
const IPPROTO_ICMPV6: u8 = 58;

/// The RFC 1071 Internet checksum of `data` (an odd last byte is padded with zero).
pub fn internet_checksum(data: &[u8]) -> u16 {
    let mut sum: u32 = 0;
    let mut chunks = data.chunks_exact(2);
    for pair in &mut chunks {
        sum += u32::from(u16::from_be_bytes([pair[0], pair[1]]));
    }
    if let [last] = chunks.remainder() {
        sum += u32::from(u16::from_be_bytes([*last, 0]));
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// Writes an echo request into `buf`. The ICMPv4 checksum is filled in; for ICMPv6 the kernel
/// computes it (it covers a pseudo-header only the kernel knows), and on datagram sockets the
/// kernel also replaces the identifier and redoes the checksum.
pub fn write_echo_request(
    buf: &mut [u8; ECHO_REQUEST_LEN],
    v6: bool,
    identifier: u16,
    sequence: u16,
    token: u64,
) {
    buf.fill(0);
    buf[0] = if v6 {
        ICMPV6_ECHO_REQUEST
    } else {
        ICMPV4_ECHO_REQUEST
    };
    buf[4..6].copy_from_slice(&identifier.to_be_bytes());
    buf[6..8].copy_from_slice(&sequence.to_be_bytes());
    buf[8..16].copy_from_slice(&token.to_be_bytes());
    if !v6 {
        let checksum = internet_checksum(buf);
        buf[2..4].copy_from_slice(&checksum.to_be_bytes());
    }
}

/// What a received ICMP message says about one of our requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Incoming {
    /// An echo reply: the sender is the host that answered.
    Reply {
        identifier: u16,
        sequence: u16,
        token: u64,
    },
    /// An error message quoting an echo request that was sent to `target`; with the request's
    /// token when the quote goes that far (RFC 792 asks only for the first 8 bytes).
    Error {
        icmp_type: u8,
        code: u8,
        target: IpAddr,
        identifier: u16,
        sequence: u16,
        token: Option<u64>,
    },
}

/// Reads one ICMP message as a socket delivered it. `with_ip_header`: raw IPv4 sockets deliver
/// the IPv4 header first; datagram sockets and IPv6 sockets deliver the ICMP message alone.
/// `None` for anything that is neither an echo reply nor an error quoting an echo request.
pub fn parse(packet: &[u8], v6: bool, with_ip_header: bool) -> Option<Incoming> {
    let icmp = if with_ip_header {
        packet.get(ipv4_header_len(packet)?..)?
    } else {
        packet
    };
    let (&icmp_type, rest) = icmp.split_first()?;
    let code = *rest.first()?;
    match (v6, icmp_type) {
        (false, ICMPV4_ECHO_REPLY) | (true, ICMPV6_ECHO_REPLY) => {
            let (identifier, sequence) = echo_ids(icmp)?;
            Some(Incoming::Reply {
                identifier,
                sequence,
                token: token_of(icmp)?,
            })
        }
        (false, 3 | 11 | 12) => {
            let quoted = icmp.get(ECHO_HEADER_LEN..)?;
            let header_len = ipv4_header_len(quoted)?;
            if *quoted.get(9)? != IPPROTO_ICMP {
                return None;
            }
            let target: [u8; 4] = quoted.get(16..20)?.try_into().ok()?;
            let request = quoted.get(header_len..)?;
            quoted_echo(
                request,
                ICMPV4_ECHO_REQUEST,
                icmp_type,
                code,
                Ipv4Addr::from(target).into(),
            )
        }
        (true, 1..=4) => {
            let quoted = icmp.get(ECHO_HEADER_LEN..)?;
            if quoted.first()? >> 4 != 6 || *quoted.get(6)? != IPPROTO_ICMPV6 {
                return None;
            }
            let target: [u8; 16] = quoted.get(24..40)?.try_into().ok()?;
            let request = quoted.get(IPV6_HEADER_LEN..)?;
            quoted_echo(
                request,
                ICMPV6_ECHO_REQUEST,
                icmp_type,
                code,
                Ipv6Addr::from(target).into(),
            )
        }
        _ => None,
    }
}

fn quoted_echo(
    request: &[u8],
    request_type: u8,
    icmp_type: u8,
    code: u8,
    target: IpAddr,
) -> Option<Incoming> {
    if *request.first()? != request_type {
        return None;
    }
    let (identifier, sequence) = echo_ids(request)?;
    Some(Incoming::Error {
        icmp_type,
        code,
        target,
        identifier,
        sequence,
        token: token_of(request),
    })
}

/// The token at the start of an echo message's payload (ours, or the reply's copy of it).
pub fn token_of(icmp: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(icmp.get(8..16)?.try_into().ok()?))
}

fn echo_ids(icmp: &[u8]) -> Option<(u16, u16)> {
    let identifier = u16::from_be_bytes(icmp.get(4..6)?.try_into().ok()?);
    let sequence = u16::from_be_bytes(icmp.get(6..8)?.try_into().ok()?);
    Some((identifier, sequence))
}

/// The length of an IPv4 header (IHL), if `packet` starts with a plausible one.
fn ipv4_header_len(packet: &[u8]) -> Option<usize> {
    let first = *packet.first()?;
    let len = usize::from(first & 0x0f) * 4;
    (first >> 4 == 4 && len >= 20 && packet.len() >= len).then_some(len)
}

/// A human name for an ICMP error, for logs and the run's first problem.
pub fn error_kind(v6: bool, icmp_type: u8, code: u8) -> String {
    if v6 {
        return match (icmp_type, code) {
            (1, 0) => "no route to destination".into(),
            (1, 1) => "administratively prohibited".into(),
            (1, 3) => "address unreachable".into(),
            (1, c) => format!("destination unreachable (code {c})"),
            (2, _) => "packet too big".into(),
            (3, _) => "time exceeded".into(),
            (4, _) => "parameter problem".into(),
            (t, c) => format!("ICMPv6 type {t} code {c}"),
        };
    }
    match (icmp_type, code) {
        (3, 0) => "network unreachable".into(),
        (3, 1) => "host unreachable".into(),
        (3, 3) => "port unreachable".into(),
        (3, 9 | 10 | 13) => "administratively prohibited".into(),
        (3, c) => format!("destination unreachable (code {c})"),
        (11, _) => "time exceeded".into(),
        (12, _) => "parameter problem".into(),
        (t, c) => format!("ICMP type {t} code {c}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksum_matches_rfc_1071_examples() {
        // RFC 1071 section 3: the sum of 0001 f203 f4f5 f6f7 is ddf2, checksum its complement.
        assert_eq!(
            internet_checksum(&[0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7]),
            !0xddf2
        );
        // An odd length pads with zero; a packet with its checksum in place sums to zero.
        assert_eq!(internet_checksum(&[0xff]), !0xff00);
        let mut request = [0u8; ECHO_REQUEST_LEN];
        write_echo_request(&mut request, false, 0x1234, 0xabcd, 42);
        assert_eq!(internet_checksum(&request), 0);
    }

    #[test]
    fn a_request_turned_into_a_reply_parses_with_its_ids_and_token() {
        for v6 in [false, true] {
            let mut packet = [0u8; ECHO_REQUEST_LEN];
            write_echo_request(&mut packet, v6, 7, 65535, 0xdead_beef_0102_0304);
            packet[0] = if v6 {
                ICMPV6_ECHO_REPLY
            } else {
                ICMPV4_ECHO_REPLY
            };
            assert_eq!(
                parse(&packet, v6, false),
                Some(Incoming::Reply {
                    identifier: 7,
                    sequence: 65535,
                    token: 0xdead_beef_0102_0304
                })
            );
            // Our own request (raw sockets on loopback see it) is not a reply.
            packet[0] = if v6 {
                ICMPV6_ECHO_REQUEST
            } else {
                ICMPV4_ECHO_REQUEST
            };
            assert_eq!(parse(&packet, v6, false), None);
        }
    }

    #[test]
    fn an_ipv4_error_names_the_target_and_ids_of_the_request_it_quotes() {
        let mut ip = vec![
            0x45,
            0,
            0,
            84,
            0,
            0,
            0,
            0,
            64,
            IPPROTO_ICMP,
            0,
            0,
            10,
            0,
            0,
            1,
            192,
            0,
            2,
            9,
        ];
        let mut request = [0u8; ECHO_REQUEST_LEN];
        write_echo_request(&mut request, false, 5, 6, 0x0102_0304_0506_0708);
        ip.extend_from_slice(&request[..8]);
        let mut error = vec![3, 1, 0, 0, 0, 0, 0, 0];
        error.extend_from_slice(&ip);
        let mut outer = vec![
            0x45,
            0,
            0,
            0,
            0,
            0,
            0,
            0,
            64,
            IPPROTO_ICMP,
            0,
            0,
            10,
            0,
            0,
            254,
            10,
            0,
            0,
            1,
        ];
        outer.extend_from_slice(&error);
        let expected = Some(Incoming::Error {
            icmp_type: 3,
            code: 1,
            target: "192.0.2.9".parse().unwrap(),
            identifier: 5,
            sequence: 6,
            token: None,
        });
        assert_eq!(parse(&outer, false, true), expected);
        assert_eq!(parse(&error, false, false), expected);
        // A quote that goes on into the payload (Linux quotes up to 576 bytes) gives the token.
        error.extend_from_slice(&request[8..16]);
        let Some(Incoming::Error { token, .. }) = parse(&error, false, false) else {
            panic!("not parsed as an error");
        };
        assert_eq!(token, Some(0x0102_0304_0506_0708));
    }

    #[test]
    fn an_ipv6_error_names_the_target_and_ids_of_the_request_it_quotes() {
        let target: Ipv6Addr = "2001:db8::9".parse().unwrap();
        let mut error = vec![
            3,
            0,
            0,
            0,
            0,
            0,
            0,
            0,
            0x60,
            0,
            0,
            0,
            0,
            64,
            IPPROTO_ICMPV6,
            1,
        ];
        error.extend_from_slice(&Ipv6Addr::LOCALHOST.octets());
        error.extend_from_slice(&target.octets());
        error.extend_from_slice(&[ICMPV6_ECHO_REQUEST, 0, 0, 0, 0, 9, 1, 2]);
        assert_eq!(
            parse(&error, true, false),
            Some(Incoming::Error {
                icmp_type: 3,
                code: 0,
                target: target.into(),
                identifier: 9,
                sequence: 0x0102,
                token: None,
            })
        );
    }

    #[test]
    fn every_truncation_and_corruption_of_real_packets_is_rejected_without_panic() {
        let mut reply = [0u8; ECHO_REQUEST_LEN];
        write_echo_request(&mut reply, false, 1, 2, 3);
        reply[0] = ICMPV4_ECHO_REPLY;
        let mut with_ip = vec![
            0x45,
            0,
            0,
            84,
            0,
            0,
            0,
            0,
            64,
            IPPROTO_ICMP,
            0,
            0,
            127,
            0,
            0,
            1,
            127,
            0,
            0,
            1,
        ];
        with_ip.extend_from_slice(&reply);
        for cut in 0..with_ip.len() {
            let short = &with_ip[..cut];
            for v6 in [false, true] {
                for header in [false, true] {
                    let parsed = parse(short, v6, header);
                    if cut < 36 {
                        assert_eq!(parsed, None, "cut {cut}");
                    }
                }
            }
        }
        // Every single-byte value at every position: never a panic.
        for position in 0..with_ip.len() {
            for byte in 0..=255u8 {
                let mut bent = with_ip.clone();
                bent[position] = byte;
                let _ = parse(&bent, false, true);
                let _ = parse(&bent[20..], true, false);
            }
        }
    }
}
