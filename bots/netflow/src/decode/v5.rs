//! NetFlow v5: a fixed header and fixed 48-byte records, no templates.

use super::sets::Sampling;
use super::{be16, be32, DecodeError, Decoder, DomainKey};
use crate::flow::{Direction, Flow, FlowSink};
use std::net::{IpAddr, Ipv4Addr};
use std::time::Instant;

impl Decoder {
    pub(super) fn decode_v5<S: FlowSink>(
        &mut self,
        exporter: IpAddr,
        d: &[u8],
        now: Instant,
        sink: &mut S,
    ) -> Result<(), DecodeError> {
        const HEADER: usize = 24;
        const RECORD: usize = 48;
        if d.len() < HEADER {
            return Err(DecodeError::TooShort { length: d.len() });
        }
        let count = be16(d, 2);
        if count == 0 || count > 30 {
            return Err(DecodeError::V5Count(count));
        }
        let end = HEADER + RECORD * usize::from(count);
        if d.len() < end {
            return Err(DecodeError::V5Truncated {
                count,
                length: d.len(),
            });
        }
        let domain = DomainKey {
            exporter,
            version: 5,
            domain: u32::from(be16(d, 20)),
        };
        let count32 = u32::from(count);
        self.track_sequence(domain, be32(d, 16), Some((count32, count32)), now);
        let interval = u64::from(be16(d, 22) & 0x3fff);
        let sampling = if interval > 1 {
            Sampling::one_in(interval)
        } else {
            Sampling::NONE
        };
        for rec in d[HEADER..end].chunks_exact(RECORD) {
            let flow = Flow {
                exporter,
                direction: Direction::Ingress,
                in_if: u32::from(be16(rec, 12)),
                out_if: u32::from(be16(rec, 14)),
                src: IpAddr::V4(Ipv4Addr::new(rec[0], rec[1], rec[2], rec[3])),
                dst: IpAddr::V4(Ipv4Addr::new(rec[4], rec[5], rec[6], rec[7])),
                protocol: rec[38],
                dst_port: be16(rec, 34),
                bytes: sampling.apply(u64::from(be32(rec, 20))),
                packets: sampling.apply(u64::from(be32(rec, 16))),
            };
            sink.flow(&flow);
        }
        self.stats.records += u64::from(count);
        Ok(())
    }
}
