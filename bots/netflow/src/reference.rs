//! Reference decoding with the `netflow_parser` crate, the yardstick for the fast path in
//! [`crate::decode`]: the tests decode the softflowd captures and mutated packets with both and
//! compare, and the benchmark prints both rates. It is not on the receive path.
//!
//! It maps the same fields as the fast path (v9/IPFIX octetDeltaCount and packetDeltaCount, no
//! fallbacks) and applies no sampling rate: enough for captures from an unsampled exporter.

use crate::flow::{canonical_ip, Direction, Flow};
use netflow_parser::variable_versions::field_value::FieldValue;
use netflow_parser::variable_versions::ipfix::lookup::{IANAIPFixField, IPFixField};
use netflow_parser::variable_versions::ipfix::FlowSetBody as IpfixBody;
use netflow_parser::variable_versions::v9::FlowSetBody as V9Body;
use netflow_parser::{AutoScopedParser, NetflowPacket};
use std::net::{IpAddr, SocketAddr};

/// `netflow_parser`'s scoped parser (templates per exporter and domain), producing [`Flow`]s.
#[derive(Debug, Default)]
pub struct ReferenceDecoder {
    parser: AutoScopedParser,
}

/// The fields of a v9/IPFIX record the fast path reads, by element id.
fn apply(flow: &mut Flow, id: u16, value: &FieldValue) {
    let number = || value.as_u64().unwrap_or(0);
    match id {
        8 | 27 => {
            if let Ok(ip) = IpAddr::try_from(value) {
                flow.src = ip;
            }
        }
        12 | 28 => {
            if let Ok(ip) = IpAddr::try_from(value) {
                flow.dst = ip;
            }
        }
        10 => flow.in_if = number() as u32,
        14 => flow.out_if = number() as u32,
        4 => flow.protocol = value.as_u8().unwrap_or(0),
        11 => flow.dst_port = number() as u16,
        1 => flow.bytes = number(),
        2 => flow.packets = number(),
        61 => flow.direction = Direction::from_field(number()),
        _ => {}
    }
}

fn ipfix_id(field: &IPFixField) -> Option<u16> {
    let IPFixField::IANA(field) = field else {
        return None;
    };
    Some(match field {
        IANAIPFixField::SourceIpv4address => 8,
        IANAIPFixField::SourceIpv6address => 27,
        IANAIPFixField::DestinationIpv4address => 12,
        IANAIPFixField::DestinationIpv6address => 28,
        IANAIPFixField::IngressInterface => 10,
        IANAIPFixField::EgressInterface => 14,
        IANAIPFixField::ProtocolIdentifier => 4,
        IANAIPFixField::DestinationTransportPort => 11,
        IANAIPFixField::OctetDeltaCount => 1,
        IANAIPFixField::PacketDeltaCount => 2,
        IANAIPFixField::FlowDirection => 61,
        _ => return None,
    })
}

impl ReferenceDecoder {
    pub fn new() -> ReferenceDecoder {
        ReferenceDecoder::default()
    }

    /// Decodes one datagram, appending its flow records to `out`. Returns the parser's error
    /// text if it reported one (records parsed before it are still appended).
    pub fn decode(
        &mut self,
        source: SocketAddr,
        datagram: &[u8],
        out: &mut Vec<Flow>,
    ) -> Result<(), String> {
        let exporter = canonical_ip(source.ip());
        let result = self.parser.parse_from_source(source, datagram);
        for packet in &result.packets {
            match packet {
                NetflowPacket::V5(v5) => {
                    for r in &v5.flowsets {
                        out.push(Flow {
                            exporter,
                            direction: Direction::Ingress,
                            in_if: u32::from(r.input),
                            out_if: u32::from(r.output),
                            src: IpAddr::V4(r.src_addr),
                            dst: IpAddr::V4(r.dst_addr),
                            protocol: r.protocol_number,
                            dst_port: r.dst_port,
                            bytes: u64::from(r.d_octets),
                            packets: u64::from(r.d_pkts),
                        });
                    }
                }
                NetflowPacket::V9(v9) => {
                    for set in &v9.flowsets {
                        if let V9Body::Data(data) = &set.body {
                            for record in &data.fields {
                                let mut flow = Flow::empty(exporter);
                                for (field, value) in record {
                                    apply(&mut flow, u16::from(*field), value);
                                }
                                out.push(flow);
                            }
                        }
                    }
                }
                NetflowPacket::IPFix(ipfix) => {
                    for set in &ipfix.flowsets {
                        match &set.body {
                            IpfixBody::Data(data) => {
                                for record in &data.fields {
                                    let mut flow = Flow::empty(exporter);
                                    for (field, value) in record {
                                        if let Some(id) = ipfix_id(field) {
                                            apply(&mut flow, id, value);
                                        }
                                    }
                                    out.push(flow);
                                }
                            }
                            IpfixBody::V9Data(data) => {
                                for record in &data.fields {
                                    let mut flow = Flow::empty(exporter);
                                    for (field, value) in record {
                                        apply(&mut flow, u16::from(*field), value);
                                    }
                                    out.push(flow);
                                }
                            }
                            _ => {}
                        }
                    }
                }
                _ => {}
            }
        }
        match result.error {
            Some(e) => Err(e.to_string()),
            None => Ok(()),
        }
    }
}
