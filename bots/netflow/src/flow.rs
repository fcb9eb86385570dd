//! The flow record we aggregate: only the fields the value paths of contract §5.11 need.

use std::net::{IpAddr, Ipv4Addr};

/// Which way the traffic crossed the exporter's interface (v9/IPFIX field 61, DIRECTION).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Direction {
    Ingress = 0,
    Egress = 1,
}

impl Direction {
    /// Both directions, in the order values are produced.
    pub const ALL: [Direction; 2] = [Direction::Ingress, Direction::Egress];

    /// Reads field 61: 1 is egress; 0, any other value, or an absent field is ingress, as the
    /// original writer defaulted it.
    pub fn from_field(value: u64) -> Direction {
        if value == 1 {
            Direction::Egress
        } else {
            Direction::Ingress
        }
    }

    /// The path segment: `ingress` or `egress`.
    pub fn label(self) -> &'static str {
        match self {
            Direction::Ingress => "ingress",
            Direction::Egress => "egress",
        }
    }

    /// 0 for ingress, 1 for egress, for per-direction arrays.
    pub fn index(self) -> usize {
        self as usize
    }
}

/// One decoded flow record, already scaled by the exporter's sampling interval.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Flow {
    /// The datagram's source address (IPv4-mapped IPv6 addresses are unmapped).
    pub exporter: IpAddr,
    pub direction: Direction,
    /// Input interface index (field 10); 0 if absent.
    pub in_if: u32,
    /// Output interface index (field 14); 0 if absent.
    pub out_if: u32,
    /// Source address (field 8 or 27); unspecified if absent.
    pub src: IpAddr,
    /// Destination address (field 12 or 28); unspecified if absent.
    pub dst: IpAddr,
    /// IP protocol number (field 4).
    pub protocol: u8,
    /// Destination transport port (field 11); 0 if absent.
    pub dst_port: u16,
    /// Octets (field 1, else 23, else 85) times the sampling interval.
    pub bytes: u64,
    /// Packets (field 2, else 24, else 86) times the sampling interval.
    pub packets: u64,
}

impl Flow {
    /// A zeroed flow from `exporter`, for decoders to fill in.
    pub fn empty(exporter: IpAddr) -> Flow {
        Flow {
            exporter,
            direction: Direction::Ingress,
            in_if: 0,
            out_if: 0,
            src: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            dst: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            protocol: 0,
            dst_port: 0,
            bytes: 0,
            packets: 0,
        }
    }

    /// The interface the flow is counted on: input for ingress, output for egress.
    pub fn interface(&self) -> u32 {
        match self.direction {
            Direction::Ingress => self.in_if,
            Direction::Egress => self.out_if,
        }
    }

    /// The address the flow is counted for in "top IPs": source for ingress, destination for egress.
    pub fn host(&self) -> IpAddr {
        match self.direction {
            Direction::Ingress => self.src,
            Direction::Egress => self.dst,
        }
    }
}

/// Where a decoder puts the flows it finds; the aggregator implements it, so records are
/// aggregated without being collected first.
pub trait FlowSink {
    fn flow(&mut self, flow: &Flow);
}

impl FlowSink for Vec<Flow> {
    fn flow(&mut self, flow: &Flow) {
        self.push(*flow);
    }
}

/// Turns an IPv4-mapped IPv6 address (`::ffff:a.b.c.d`, as a dual-stack socket reports IPv4
/// peers) into the IPv4 address, so exporters match entities' `details.ipv4`.
pub fn canonical_ip(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(v6),
        },
        v4 => v4,
    }
}

/// The exporter an entity stands for: the IP address of its `details.ipv4`, whose port (users
/// add one for SNMP on the same device) plays no part. The error says why no flow can match it.
pub fn exporter_address(details: &serde_json::Value) -> Result<IpAddr, String> {
    let address = collector::details::Address::from_details(details).map_err(|e| e.0)?;
    address.ip().ok_or_else(|| {
        format!(
            "details.ipv4 `{}` is a host name, not an IP address",
            address.host
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn direction_field() {
        assert_eq!(Direction::from_field(0), Direction::Ingress);
        assert_eq!(Direction::from_field(1), Direction::Egress);
        assert_eq!(Direction::from_field(7), Direction::Ingress);
    }

    #[test]
    fn interface_and_host_follow_direction() {
        let mut flow = Flow::empty("192.0.2.1".parse().unwrap());
        flow.in_if = 3;
        flow.out_if = 4;
        flow.src = "10.0.0.1".parse().unwrap();
        flow.dst = "10.0.0.2".parse().unwrap();
        assert_eq!((flow.interface(), flow.host()), (3, flow.src));
        flow.direction = Direction::Egress;
        assert_eq!((flow.interface(), flow.host()), (4, flow.dst));
    }

    #[test]
    fn mapped_addresses_become_ipv4() {
        assert_eq!(
            canonical_ip("::ffff:192.0.2.7".parse().unwrap()),
            "192.0.2.7".parse::<IpAddr>().unwrap()
        );
        let v6: IpAddr = "2001:db8::1".parse().unwrap();
        assert_eq!(canonical_ip(v6), v6);
    }
}
