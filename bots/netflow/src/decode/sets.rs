//! NetFlow v9 and IPFIX messages: their sets, and the data records read at the offsets a
//! compiled template gives (with options records that announce a sampling rate).

use super::templates::{Layout, Template};
use super::{be16, be32, DecodeError, Decoder, DomainKey, TemplateKey, TemplateKind};
use crate::flow::{Direction, Flow, FlowSink};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Instant;

/// A sampling rate as a fraction: each sampled unit stands for `numerator / denominator` units.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sampling {
    pub numerator: u64,
    pub denominator: u64,
}

impl Sampling {
    /// No sampling.
    pub const NONE: Sampling = Sampling {
        numerator: 1,
        denominator: 1,
    };

    /// One packet in `interval` sampled.
    pub fn one_in(interval: u64) -> Sampling {
        Sampling {
            numerator: interval.max(1),
            denominator: 1,
        }
    }

    /// Scales a sampled count to an estimate of the real count.
    #[inline]
    pub fn apply(self, value: u64) -> u64 {
        if self.numerator == self.denominator {
            value
        } else {
            let scaled = u128::from(value) * u128::from(self.numerator)
                / u128::from(self.denominator.max(1));
            u64::try_from(scaled).unwrap_or(u64::MAX)
        }
    }

    /// Reads the sampling fields of one record: SAMPLING_INTERVAL (34),
    /// FLOW_SAMPLER_RANDOM_INTERVAL (50), or samplingPacketInterval (305) with
    /// samplingPacketSpace (306) (RFC 5477: select `interval` packets, skip `space`).
    pub(super) fn from_record(rec: &[u8], picks: &Picks) -> Option<Sampling> {
        if picks.sampling_interval.present() {
            let n = uint(rec, picks.sampling_interval);
            if n >= 1 {
                return Some(Sampling::one_in(n));
            }
        }
        if picks.sampler_random_interval.present() {
            let n = uint(rec, picks.sampler_random_interval);
            if n >= 1 {
                return Some(Sampling::one_in(n));
            }
        }
        if picks.packet_interval.present() {
            let selected = uint(rec, picks.packet_interval);
            let skipped = uint(rec, picks.packet_space);
            if selected >= 1 {
                return Some(Sampling {
                    numerator: selected.saturating_add(skipped),
                    denominator: selected,
                });
            }
        }
        None
    }
}

/// Where one field sits in a record; `len == 0` means the template lacks it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct Pick {
    pub(super) offset: u32,
    pub(super) len: u16,
    pub(super) priority: u8,
}

impl Pick {
    #[inline]
    pub(super) fn present(self) -> bool {
        self.len != 0
    }
}

/// The fields we read from a record, compiled from a template.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct Picks {
    src4: Pick,
    dst4: Pick,
    src6: Pick,
    dst6: Pick,
    pub(super) in_if: Pick,
    pub(super) out_if: Pick,
    pub(super) protocol: Pick,
    pub(super) dst_port: Pick,
    pub(super) bytes: Pick,
    pub(super) packets: Pick,
    pub(super) direction: Pick,
    pub(super) sampling_interval: Pick,
    pub(super) sampler_random_interval: Pick,
    pub(super) packet_interval: Pick,
    pub(super) packet_space: Pick,
}

impl Picks {
    pub(super) fn has_sampling(&self) -> bool {
        self.sampling_interval.present()
            || self.sampler_random_interval.present()
            || self.packet_interval.present()
    }

    /// Records that field `id` of `len` bytes sits at `offset`, if we read that field and the
    /// length makes sense for it. Of several candidates for one value the highest priority
    /// wins (octetDeltaCount over postOctetDeltaCount over octetTotalCount), then the first.
    pub(super) fn offer(&mut self, id: u16, offset: usize, len: usize) {
        let Ok(offset) = u32::try_from(offset) else {
            return;
        };
        let (slot, priority, valid) = match id {
            8 => (&mut self.src4, 1, len == 4),
            12 => (&mut self.dst4, 1, len == 4),
            27 => (&mut self.src6, 1, len == 16),
            28 => (&mut self.dst6, 1, len == 16),
            10 => (&mut self.in_if, 1, (1..=8).contains(&len)),
            14 => (&mut self.out_if, 1, (1..=8).contains(&len)),
            4 => (&mut self.protocol, 1, (1..=8).contains(&len)),
            11 => (&mut self.dst_port, 1, (1..=8).contains(&len)),
            1 => (&mut self.bytes, 3, (1..=8).contains(&len)),
            23 => (&mut self.bytes, 2, (1..=8).contains(&len)),
            85 => (&mut self.bytes, 1, (1..=8).contains(&len)),
            2 => (&mut self.packets, 3, (1..=8).contains(&len)),
            24 => (&mut self.packets, 2, (1..=8).contains(&len)),
            86 => (&mut self.packets, 1, (1..=8).contains(&len)),
            61 => (&mut self.direction, 1, (1..=8).contains(&len)),
            34 => (&mut self.sampling_interval, 1, (1..=8).contains(&len)),
            50 => (&mut self.sampler_random_interval, 1, (1..=8).contains(&len)),
            305 => (&mut self.packet_interval, 1, (1..=8).contains(&len)),
            306 => (&mut self.packet_space, 1, (1..=8).contains(&len)),
            _ => return,
        };
        if valid && slot.priority < priority {
            *slot = Pick {
                offset,
                len: len as u16,
                priority,
            };
        }
    }
}

/// What decoding one data set produced.
#[derive(Default)]
pub(super) struct SetOutcome {
    pub(super) records: u64,
    pub(super) option_records: u64,
    pub(super) sampling: Option<Sampling>,
    pub(super) error: Option<DecodeError>,
}

/// An unsigned big-endian integer of 1 to 8 bytes at `pick`; 0 when absent.
#[inline(always)]
pub(super) fn uint(rec: &[u8], pick: Pick) -> u64 {
    let at = pick.offset as usize;
    match pick.len {
        0 => 0,
        1 => rec.get(at).map_or(0, |&b| u64::from(b)),
        2 => rec
            .get(at..at + 2)
            .map_or(0, |b| u64::from(u16::from_be_bytes([b[0], b[1]]))),
        4 => rec.get(at..at + 4).map_or(0, |b| {
            u64::from(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
        }),
        len => rec.get(at..at + usize::from(len)).map_or(0, |b| {
            b.iter()
                .take(8)
                .fold(0u64, |acc, &x| (acc << 8) | u64::from(x))
        }),
    }
}

#[inline(always)]
pub(super) fn ipv4(rec: &[u8], pick: Pick) -> Option<Ipv4Addr> {
    let at = pick.offset as usize;
    let b = rec.get(at..at + 4)?;
    Some(Ipv4Addr::new(b[0], b[1], b[2], b[3]))
}

#[inline(always)]
pub(super) fn ipv6(rec: &[u8], pick: Pick) -> Option<Ipv6Addr> {
    let at = pick.offset as usize;
    let b: [u8; 16] = rec.get(at..at + 16)?.try_into().ok()?;
    Some(Ipv6Addr::from(b))
}

/// An address from the IPv4 field, else the IPv6 field (also when the IPv4 one is 0.0.0.0 and
/// an IPv6 one exists), else unspecified.
#[inline(always)]
pub(super) fn address(rec: &[u8], v4: Pick, v6: Pick) -> IpAddr {
    if v4.present() {
        if let Some(a) = ipv4(rec, v4) {
            if !(a.is_unspecified() && v6.present()) {
                return IpAddr::V4(a);
            }
        }
    }
    if v6.present() {
        if let Some(a) = ipv6(rec, v6) {
            return IpAddr::V6(a);
        }
    }
    IpAddr::V4(Ipv4Addr::UNSPECIFIED)
}

/// Builds the flow of one data record.
#[inline(always)]
pub(super) fn flow_from(
    rec: &[u8],
    picks: &Picks,
    exporter: IpAddr,
    domain_sampling: Sampling,
) -> Flow {
    let sampling = if picks.has_sampling() {
        Sampling::from_record(rec, picks).unwrap_or(domain_sampling)
    } else {
        domain_sampling
    };
    Flow {
        exporter,
        direction: if picks.direction.present() {
            Direction::from_field(uint(rec, picks.direction))
        } else {
            Direction::Ingress
        },
        in_if: u32::try_from(uint(rec, picks.in_if)).unwrap_or(u32::MAX),
        out_if: u32::try_from(uint(rec, picks.out_if)).unwrap_or(u32::MAX),
        src: address(rec, picks.src4, picks.src6),
        dst: address(rec, picks.dst4, picks.dst6),
        protocol: uint(rec, picks.protocol) as u8,
        dst_port: uint(rec, picks.dst_port) as u16,
        bytes: sampling.apply(uint(rec, picks.bytes)),
        packets: sampling.apply(uint(rec, picks.packets)),
    }
}

/// Decodes the records of one data set with a known template.
pub(super) fn decode_records<S: FlowSink>(
    template: &Template,
    template_id: u16,
    exporter: IpAddr,
    sampling: Sampling,
    body: &[u8],
    sink: &mut S,
) -> SetOutcome {
    let mut records = Records {
        options: template.is_options(),
        exporter,
        sampling,
        sink,
        outcome: SetOutcome::default(),
    };
    match &template.layout {
        Layout::Fixed { record_len, picks } => {
            // Whatever is shorter than a record at the end is padding.
            for rec in body.chunks_exact(*record_len) {
                records.take(rec, picks);
            }
        }
        Layout::Variable { min_record_len } => {
            let mut at = 0usize;
            while body.len() - at >= *min_record_len {
                let Some((picks, end)) = variable_record(template, body, at) else {
                    records.outcome.error = Some(DecodeError::TruncatedRecord { template_id });
                    break;
                };
                records.take(&body[at..end], &picks);
                at = end;
            }
        }
    }
    records.outcome
}

/// Where the records of one data set go: flows to the sink, options records to the sampling.
struct Records<'a, S> {
    options: bool,
    exporter: IpAddr,
    sampling: Sampling,
    sink: &'a mut S,
    outcome: SetOutcome,
}

impl<S: FlowSink> Records<'_, S> {
    fn take(&mut self, rec: &[u8], picks: &Picks) {
        if self.options {
            self.outcome.option_records += 1;
            if let Some(s) = Sampling::from_record(rec, picks) {
                self.outcome.sampling = Some(s);
            }
        } else {
            self.outcome.records += 1;
            self.sink
                .flow(&flow_from(rec, picks, self.exporter, self.sampling));
        }
    }
}

/// Reads one record of a template with variable-length fields (RFC 7011 §7) starting at `at`:
/// the fields we read and where the record ends; `None` when the set ends inside it.
fn variable_record(template: &Template, body: &[u8], at: usize) -> Option<(Picks, usize)> {
    let scope_fields = match template.def.kind {
        TemplateKind::Data => 0,
        TemplateKind::Options { scope_fields } => usize::from(scope_fields),
    };
    let mut picks = Picks::default();
    let mut cursor = at;
    let fields = template.def.fields.iter().zip(&template.variable);
    for (index, (field, &variable)) in fields.enumerate() {
        let len = if variable {
            let first = *body.get(cursor)?;
            cursor += 1;
            if first == 255 {
                if body.len() < cursor + 2 {
                    return None;
                }
                let long = usize::from(be16(body, cursor));
                cursor += 2;
                long
            } else {
                usize::from(first)
            }
        } else {
            usize::from(field.length)
        };
        if body.len() - cursor < len {
            return None;
        }
        if field.enterprise == 0 && index >= scope_fields {
            picks.offer(field.id, cursor - at, len);
        }
        cursor += len;
    }
    Some((picks, cursor))
}

/// Checks that the sets of a v9/IPFIX body tile it (trailing bytes shorter than a set header
/// are padding).
pub(super) fn validate_sets(body: &[u8]) -> Result<(), DecodeError> {
    let mut at = 0usize;
    while body.len() - at >= 4 {
        let set_id = be16(body, at);
        let length = usize::from(be16(body, at + 2));
        let remaining = body.len() - at;
        if length < 4 || length > remaining {
            return Err(DecodeError::SetLength {
                set_id,
                length,
                remaining,
            });
        }
        at += length;
    }
    Ok(())
}

impl Decoder {
    pub(super) fn decode_v9<S: FlowSink>(
        &mut self,
        exporter: IpAddr,
        d: &[u8],
        now: Instant,
        sink: &mut S,
    ) -> Result<(), DecodeError> {
        const HEADER: usize = 20;
        if d.len() < HEADER {
            return Err(DecodeError::TooShort { length: d.len() });
        }
        let body = &d[HEADER..];
        validate_sets(body)?;
        let domain = DomainKey {
            exporter,
            version: 9,
            domain: be32(d, 16),
        };
        // v9 sequence numbers count export datagrams (RFC 3954 §5.1).
        self.track_sequence(domain, be32(d, 12), Some((1, 1)), now);
        let (_, error) = self.decode_sets(domain, body, now, sink);
        error.map_or(Ok(()), Err)
    }

    pub(super) fn decode_ipfix<S: FlowSink>(
        &mut self,
        exporter: IpAddr,
        d: &[u8],
        now: Instant,
        sink: &mut S,
    ) -> Result<(), DecodeError> {
        const HEADER: usize = 16;
        if d.len() < HEADER {
            return Err(DecodeError::TooShort { length: d.len() });
        }
        let declared = usize::from(be16(d, 2));
        if declared < HEADER || declared > d.len() {
            return Err(DecodeError::MessageLength {
                declared,
                received: d.len(),
            });
        }
        let body = &d[HEADER..declared];
        validate_sets(body)?;
        let domain = DomainKey {
            exporter,
            version: 10,
            domain: be32(d, 12),
        };
        // IPFIX sequence numbers count data records (RFC 7011 §3.1); checked once this
        // message's records are counted.
        let (units, error) = self.decode_sets(domain, body, now, sink);
        self.track_sequence(domain, be32(d, 8), units, now);
        error.map_or(Ok(()), Err)
    }
    /// Decodes the sets of a v9/IPFIX body, already validated by [`validate_sets`]. Returns the
    /// numbers of flow records and of flow plus options records (`None` when a data set had to
    /// wait for its template, so the numbers are unknown), and the first problem met.
    pub(super) fn decode_sets<S: FlowSink>(
        &mut self,
        domain: DomainKey,
        body: &[u8],
        now: Instant,
        sink: &mut S,
    ) -> (Option<(u32, u32)>, Option<DecodeError>) {
        let (template_set, options_set) = if domain.version == 9 { (0, 1) } else { (2, 3) };
        let mut flow_records = 0u64;
        let mut all_records = 0u64;
        let mut complete = true;
        let mut first_error = None;
        let mut at = 0usize;
        while body.len() - at >= 4 {
            let set_id = be16(body, at);
            let length = usize::from(be16(body, at + 2));
            let content = &body[at + 4..at + length];
            at += length;
            let result = if set_id == template_set {
                self.learn_templates(domain, set_id, content, false, now, sink)
            } else if set_id == options_set {
                self.learn_templates(domain, set_id, content, true, now, sink)
            } else if set_id >= 256 {
                match self.decode_data_set(domain, set_id, content, now, sink) {
                    Some(outcome) => {
                        flow_records += outcome.records;
                        all_records += outcome.records + outcome.option_records;
                        outcome.error.map_or(Ok(()), Err)
                    }
                    None => {
                        complete = false;
                        Ok(())
                    }
                }
            } else {
                // Reserved set ids are skipped (RFC 3954 §5.2, RFC 7011 §3.3.2).
                Ok(())
            };
            if let Err(e) = result {
                first_error.get_or_insert(e);
            }
        }
        let units = complete.then_some((flow_records as u32, all_records as u32));
        (units, first_error)
    }

    /// Decodes one data set, or buffers it when its template is unknown (returns `None`).
    pub(super) fn decode_data_set<S: FlowSink>(
        &mut self,
        domain: DomainKey,
        template_id: u16,
        body: &[u8],
        now: Instant,
        sink: &mut S,
    ) -> Option<SetOutcome> {
        let key = TemplateKey {
            domain,
            template_id,
        };
        let sampling = self
            .domains
            .get(&domain)
            .map_or(Sampling::NONE, |d| d.sampling);
        let Some(template) = self.templates.get(&key) else {
            self.buffer_pending(key, body, now);
            return None;
        };
        let outcome = decode_records(template, template_id, domain.exporter, sampling, body, sink);
        self.stats.records += outcome.records;
        self.stats.option_records += outcome.option_records;
        if let Some(new_sampling) = outcome.sampling {
            if let Some(state) = self.domain_state(domain) {
                if state.sampling != new_sampling {
                    tracing::info!(
                        exporter = %domain.exporter,
                        domain = domain.domain,
                        version = domain.version,
                        "sampling rate {}/{} announced; bytes and packets are scaled by it",
                        new_sampling.numerator,
                        new_sampling.denominator
                    );
                    state.sampling = new_sampling;
                }
            }
        }
        Some(outcome)
    }
}
