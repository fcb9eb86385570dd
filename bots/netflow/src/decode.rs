//! NetFlow v5, v9 and IPFIX decoding into [`Flow`] records.
//!
//! This is a template-compiled fast path (why: `docs/decisions.md`, NetFlow bot): a template is compiled once
//! into the offsets of the few fields we aggregate, and each data record is read at those
//! offsets. `netflow_parser` stays the reference: `crate::reference` decodes with it, and the
//! tests compare both on the softflowd captures and on mutated packets.
//!
//! Behaviour a collector needs and plain parsing does not give:
//! - templates are kept per (exporter address, version, source id / observation domain);
//! - options data carrying a sampling interval scales bytes and packets of that domain;
//! - sequence numbers are tracked per exporter and domain, gaps counted and logged;
//! - data sets that arrive before their template are buffered for a short while and decoded
//!   when the template arrives; those that never get one are counted and logged;
//! - malformed datagrams are counted and dropped, never a panic;
//! - a variable-length IPFIX field of length zero (legal, e.g. an empty string) is decoded as
//!   empty; `netflow_parser` 1.0 rejects it and drops the rest of that data set.

use crate::flow::{Direction, Flow, FlowSink};
use rustc_hash::FxHashMap;
use std::collections::VecDeque;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::{Duration, Instant};

/// The field length that marks an IPFIX variable-length field (RFC 7011 §7).
pub const VARIABLE_LENGTH: u16 = 65535;

/// One template namespace: the exporter, the protocol version and the source id (v9) or
/// observation domain (IPFIX). NetFlow v5 uses engine type and id as its domain.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DomainKey {
    pub exporter: IpAddr,
    pub version: u16,
    pub domain: u32,
}

/// A template's identity: its namespace and template id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TemplateKey {
    pub domain: DomainKey,
    pub template_id: u16,
}

/// Whether a template describes flow records or options records (with this many scope fields).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TemplateKind {
    Data,
    Options { scope_fields: u16 },
}

/// One field of a template as the exporter announced it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FieldSpec {
    /// Information element id (without the IPFIX enterprise bit), or a v9 scope type.
    pub id: u16,
    /// IPFIX private enterprise number; 0 for IANA elements and for v9.
    pub enterprise: u32,
    /// Length in bytes; [`VARIABLE_LENGTH`] marks a variable-length IPFIX field.
    pub length: u16,
}

/// A template as announced: what is persisted, and what a decoder compiles.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemplateDef {
    pub kind: TemplateKind,
    pub fields: Vec<FieldSpec>,
}

/// A template the decoder learned or forgot, for persistence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TemplateChange {
    Learned(TemplateKey, TemplateDef),
    Withdrawn(TemplateKey),
}

/// Bounds that keep the decoder's memory finite whatever arrives.
#[derive(Debug, Clone)]
pub struct DecoderLimits {
    /// Templates kept over all exporters; new ones beyond this are refused and counted.
    pub max_templates: usize,
    /// Fields in one template; longer templates are refused.
    pub max_template_fields: usize,
    /// Exporter/domain pairs whose sequence and sampling are tracked.
    pub max_domains: usize,
    /// Data sets buffered while their template is unknown.
    pub max_pending_sets: usize,
    /// Bytes of such data sets.
    pub max_pending_bytes: usize,
    /// How long such a data set waits for its template.
    pub pending_ttl: Duration,
}

impl Default for DecoderLimits {
    fn default() -> Self {
        DecoderLimits {
            max_templates: 16_384,
            max_template_fields: 512,
            max_domains: 65_536,
            max_pending_sets: 4_096,
            max_pending_bytes: 4 << 20,
            pending_ttl: Duration::from_secs(30),
        }
    }
}

/// What the decoder saw since the stats were last taken. Plain numbers: the decoder is owned by
/// one receive thread, which publishes them to the shared counters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DecodeStats {
    /// Datagrams handed to the decoder.
    pub datagrams: u64,
    /// Flow records decoded (and handed to the sink).
    pub records: u64,
    /// Options records decoded (sampling information and the like).
    pub option_records: u64,
    /// Datagrams with a problem (too short, unknown version, bad lengths, bad template or
    /// record). Whatever well-formed sets they held was still decoded.
    pub malformed: u64,
    /// Sequence number jumps forward, per exporter and domain.
    pub sequence_gaps: u64,
    /// Units missing in those jumps (v5 and IPFIX: records; v9: datagrams).
    pub sequence_missing: u64,
    /// Sequence numbers going backwards (reordering, duplicates, exporter restarts).
    pub sequence_resets: u64,
    /// Data sets that arrived before their template.
    pub sets_before_template: u64,
    /// Of those, decoded once their template arrived.
    pub sets_replayed: u64,
    /// Of those, dropped: no template in time, or the buffer was full.
    pub sets_dropped: u64,
    /// Templates learned or changed.
    pub templates_learned: u64,
    /// Templates refused (limits, invalid definitions).
    pub templates_refused: u64,
    /// Templates withdrawn by their exporter.
    pub templates_withdrawn: u64,
}

impl DecodeStats {
    /// Adds `other` into `self`.
    pub fn add(&mut self, other: &DecodeStats) {
        self.datagrams += other.datagrams;
        self.records += other.records;
        self.option_records += other.option_records;
        self.malformed += other.malformed;
        self.sequence_gaps += other.sequence_gaps;
        self.sequence_missing += other.sequence_missing;
        self.sequence_resets += other.sequence_resets;
        self.sets_before_template += other.sets_before_template;
        self.sets_replayed += other.sets_replayed;
        self.sets_dropped += other.sets_dropped;
        self.templates_learned += other.templates_learned;
        self.templates_refused += other.templates_refused;
        self.templates_withdrawn += other.templates_withdrawn;
    }
}

/// Why a datagram (or part of it) could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DecodeError {
    TooShort {
        length: usize,
    },
    UnsupportedVersion(u16),
    V5Count(u16),
    V5Truncated {
        count: u16,
        length: usize,
    },
    MessageLength {
        declared: usize,
        received: usize,
    },
    SetLength {
        set_id: u16,
        length: usize,
        remaining: usize,
    },
    BadTemplate {
        set_id: u16,
        reason: &'static str,
    },
    TruncatedRecord {
        template_id: u16,
    },
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DecodeError::TooShort { length } => write!(f, "datagram too short ({length} bytes)"),
            DecodeError::UnsupportedVersion(v) => write!(f, "unsupported NetFlow version {v}"),
            DecodeError::V5Count(c) => write!(f, "NetFlow v5 record count {c} outside 1..=30"),
            DecodeError::V5Truncated { count, length } => {
                write!(
                    f,
                    "NetFlow v5 datagram of {length} bytes cannot hold {count} records"
                )
            }
            DecodeError::MessageLength { declared, received } => write!(
                f,
                "IPFIX message length {declared} does not fit the {received} bytes received"
            ),
            DecodeError::SetLength {
                set_id,
                length,
                remaining,
            } => write!(
                f,
                "set {set_id} claims {length} bytes with {remaining} bytes left"
            ),
            DecodeError::BadTemplate { set_id, reason } => {
                write!(f, "bad template in set {set_id}: {reason}")
            }
            DecodeError::TruncatedRecord { template_id } => {
                write!(f, "data record of template {template_id} runs past its set")
            }
        }
    }
}

impl std::error::Error for DecodeError {}

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
    fn from_record(rec: &[u8], picks: &Picks) -> Option<Sampling> {
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
struct Pick {
    offset: u32,
    len: u16,
    priority: u8,
}

impl Pick {
    #[inline]
    fn present(self) -> bool {
        self.len != 0
    }
}

/// The fields we read from a record, compiled from a template.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Picks {
    src4: Pick,
    dst4: Pick,
    src6: Pick,
    dst6: Pick,
    in_if: Pick,
    out_if: Pick,
    protocol: Pick,
    dst_port: Pick,
    bytes: Pick,
    packets: Pick,
    direction: Pick,
    sampling_interval: Pick,
    sampler_random_interval: Pick,
    packet_interval: Pick,
    packet_space: Pick,
}

impl Picks {
    fn has_sampling(&self) -> bool {
        self.sampling_interval.present()
            || self.sampler_random_interval.present()
            || self.packet_interval.present()
    }

    /// Records that field `id` of `len` bytes sits at `offset`, if we read that field and the
    /// length makes sense for it. Of several candidates for one value the highest priority
    /// wins (octetDeltaCount over postOctetDeltaCount over octetTotalCount), then the first.
    fn offer(&mut self, id: u16, offset: usize, len: usize) {
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

/// How records of a template are laid out.
#[derive(Debug)]
enum Layout {
    /// Every field has a fixed length: records are `record_len` apart, fields at fixed offsets.
    Fixed { record_len: usize, picks: Picks },
    /// Some IPFIX field has a variable length: each record is walked field by field.
    Variable { min_record_len: usize },
}

/// A template compiled for decoding.
#[derive(Debug)]
struct Template {
    def: TemplateDef,
    layout: Layout,
    /// Per field: whether it is variable-length (IPFIX only).
    variable: Vec<bool>,
}

impl Template {
    fn compile(version: u16, def: TemplateDef) -> Result<Template, &'static str> {
        if def.fields.is_empty() {
            return Err("template without fields");
        }
        let scope_fields = match def.kind {
            TemplateKind::Data => 0,
            TemplateKind::Options { scope_fields } => usize::from(scope_fields),
        };
        let variable: Vec<bool> = def
            .fields
            .iter()
            .map(|f| version == 10 && f.length == VARIABLE_LENGTH)
            .collect();
        let layout = if variable.iter().any(|&v| v) {
            let min_record_len = def
                .fields
                .iter()
                .zip(&variable)
                .map(|(f, &var)| if var { 1 } else { usize::from(f.length) })
                .sum();
            Layout::Variable { min_record_len }
        } else {
            let mut picks = Picks::default();
            let mut offset = 0usize;
            for (index, field) in def.fields.iter().enumerate() {
                // Scope fields of v9 options templates carry scope types, not element ids.
                if field.enterprise == 0 && index >= scope_fields {
                    picks.offer(field.id, offset, usize::from(field.length));
                }
                offset += usize::from(field.length);
            }
            if offset == 0 {
                return Err("template whose records have no length");
            }
            Layout::Fixed {
                record_len: offset,
                picks,
            }
        };
        Ok(Template {
            def,
            layout,
            variable,
        })
    }

    fn is_options(&self) -> bool {
        matches!(self.def.kind, TemplateKind::Options { .. })
    }
}

/// Per exporter and domain: sequence tracking, the sampling rate, and log rate limits.
#[derive(Debug)]
struct DomainState {
    /// The last datagram's sequence number and units (flow records; flow and options records).
    last_sequence: Option<(u32, u32, u32)>,
    /// Which numbering the exporter follows, learnt from the last match (see [`expected`]).
    convention: usize,
    sampling: Sampling,
    missing_since_log: u64,
    last_gap_log: Option<Instant>,
    dropped_since_log: u64,
    last_drop_log: Option<Instant>,
}

impl Default for DomainState {
    fn default() -> Self {
        DomainState {
            last_sequence: None,
            convention: 0,
            sampling: Sampling::NONE,
            missing_since_log: 0,
            last_gap_log: None,
            dropped_since_log: 0,
            last_drop_log: None,
        }
    }
}

/// How often one exporter/domain may log the same kind of warning.
const LOG_EVERY: Duration = Duration::from_secs(60);

/// A data set waiting for its template.
#[derive(Debug)]
struct PendingSet {
    key: TemplateKey,
    received: Instant,
    body: Vec<u8>,
}

/// What decoding one data set produced.
struct SetOutcome {
    records: u64,
    option_records: u64,
    sampling: Option<Sampling>,
    error: Option<DecodeError>,
}

/// Decodes datagrams of every supported version from any number of exporters. Owned by one
/// receive thread; not shared.
#[derive(Debug)]
pub struct Decoder {
    limits: DecoderLimits,
    templates: FxHashMap<TemplateKey, Template>,
    domains: FxHashMap<DomainKey, DomainState>,
    pending: VecDeque<PendingSet>,
    pending_bytes: usize,
    changes: Vec<TemplateChange>,
    stats: DecodeStats,
}

impl Default for Decoder {
    fn default() -> Self {
        Decoder::new(DecoderLimits::default())
    }
}

#[inline]
fn be16(d: &[u8], at: usize) -> u16 {
    match d.get(at..at + 2) {
        Some(b) => u16::from_be_bytes([b[0], b[1]]),
        None => 0,
    }
}

#[inline]
fn be32(d: &[u8], at: usize) -> u32 {
    match d.get(at..at + 4) {
        Some(b) => u32::from_be_bytes([b[0], b[1], b[2], b[3]]),
        None => 0,
    }
}

/// An unsigned big-endian integer of 1 to 8 bytes at `pick`; 0 when absent.
#[inline(always)]
fn uint(rec: &[u8], pick: Pick) -> u64 {
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
fn ipv4(rec: &[u8], pick: Pick) -> Option<Ipv4Addr> {
    let at = pick.offset as usize;
    let b = rec.get(at..at + 4)?;
    Some(Ipv4Addr::new(b[0], b[1], b[2], b[3]))
}

#[inline(always)]
fn ipv6(rec: &[u8], pick: Pick) -> Option<Ipv6Addr> {
    let at = pick.offset as usize;
    let b: [u8; 16] = rec.get(at..at + 16)?.try_into().ok()?;
    Some(Ipv6Addr::from(b))
}

/// An address from the IPv4 field, else the IPv6 field (also when the IPv4 one is 0.0.0.0 and
/// an IPv6 one exists), else unspecified.
#[inline(always)]
fn address(rec: &[u8], v4: Pick, v6: Pick) -> IpAddr {
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
fn flow_from(rec: &[u8], picks: &Picks, exporter: IpAddr, domain_sampling: Sampling) -> Flow {
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
fn decode_records<S: FlowSink>(
    template: &Template,
    template_id: u16,
    exporter: IpAddr,
    sampling: Sampling,
    body: &[u8],
    sink: &mut S,
) -> SetOutcome {
    let mut outcome = SetOutcome {
        records: 0,
        option_records: 0,
        sampling: None,
        error: None,
    };
    let options = template.is_options();
    match &template.layout {
        Layout::Fixed { record_len, picks } => {
            // Whatever is shorter than a record at the end is padding.
            for rec in body.chunks_exact(*record_len) {
                if options {
                    outcome.option_records += 1;
                    if let Some(s) = Sampling::from_record(rec, picks) {
                        outcome.sampling = Some(s);
                    }
                } else {
                    outcome.records += 1;
                    sink.flow(&flow_from(rec, picks, exporter, sampling));
                }
            }
        }
        Layout::Variable { min_record_len } => {
            let scope_fields = match template.def.kind {
                TemplateKind::Data => 0,
                TemplateKind::Options { scope_fields } => usize::from(scope_fields),
            };
            let mut at = 0usize;
            while body.len() - at >= *min_record_len {
                let mut picks = Picks::default();
                let mut cursor = at;
                let mut complete = true;
                for (index, (field, &var)) in template
                    .def
                    .fields
                    .iter()
                    .zip(&template.variable)
                    .enumerate()
                {
                    let len = if var {
                        let Some(&first) = body.get(cursor) else {
                            complete = false;
                            break;
                        };
                        cursor += 1;
                        if first == 255 {
                            let long = usize::from(be16(body, cursor));
                            if body.len() < cursor + 2 {
                                complete = false;
                                break;
                            }
                            cursor += 2;
                            long
                        } else {
                            usize::from(first)
                        }
                    } else {
                        usize::from(field.length)
                    };
                    if body.len() - cursor < len {
                        complete = false;
                        break;
                    }
                    if field.enterprise == 0 && index >= scope_fields {
                        picks.offer(field.id, cursor - at, len);
                    }
                    cursor += len;
                }
                if !complete {
                    outcome.error = Some(DecodeError::TruncatedRecord { template_id });
                    break;
                }
                let rec = &body[at..cursor];
                if options {
                    outcome.option_records += 1;
                    if let Some(s) = Sampling::from_record(rec, &picks) {
                        outcome.sampling = Some(s);
                    }
                } else {
                    outcome.records += 1;
                    sink.flow(&flow_from(rec, &picks, exporter, sampling));
                }
                at = cursor;
            }
        }
    }
    outcome
}

/// Checks that the sets of a v9/IPFIX body tile it (trailing bytes shorter than a set header
/// are padding).
fn validate_sets(body: &[u8]) -> Result<(), DecodeError> {
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

/// The sequence numbers a datagram may carry after `previous` (sequence, flow records, all
/// records), by numbering convention: [0] the standard one (v5 records, v9 datagrams, IPFIX
/// data records sent before this message); for IPFIX also [1] without options records, and
/// [2], [3] counting this message's own records (softflowd 1.1 numbers IPFIX that way).
fn expected(version: u16, previous: (u32, u32, u32), units: (u32, u32)) -> [Option<u32>; 4] {
    let (sequence, prev_flows, prev_all) = previous;
    if version != 10 {
        return [Some(sequence.wrapping_add(prev_all)), None, None, None];
    }
    [
        Some(sequence.wrapping_add(prev_all)),
        Some(sequence.wrapping_add(prev_flows)),
        Some(sequence.wrapping_add(units.1)),
        Some(sequence.wrapping_add(units.0)),
    ]
}

impl Decoder {
    pub fn new(limits: DecoderLimits) -> Decoder {
        Decoder {
            limits,
            templates: FxHashMap::default(),
            domains: FxHashMap::default(),
            pending: VecDeque::new(),
            pending_bytes: 0,
            changes: Vec::new(),
            stats: DecodeStats::default(),
        }
    }

    /// The counts since the last call, resetting them.
    pub fn take_stats(&mut self) -> DecodeStats {
        std::mem::take(&mut self.stats)
    }

    /// Templates learned or withdrawn since the last call, for persistence.
    pub fn take_template_changes(&mut self) -> Vec<TemplateChange> {
        std::mem::take(&mut self.changes)
    }

    /// Number of templates known.
    pub fn template_count(&self) -> usize {
        self.templates.len()
    }

    /// Installs a template persisted by an earlier run. Returns false if the definition does
    /// not compile or the template limit is reached.
    pub fn install_template(&mut self, key: TemplateKey, def: TemplateDef) -> bool {
        if def.fields.len() > self.limits.max_template_fields
            || (self.templates.len() >= self.limits.max_templates
                && !self.templates.contains_key(&key))
        {
            return false;
        }
        match Template::compile(key.domain.version, def) {
            Ok(template) => {
                self.templates.insert(key, template);
                true
            }
            Err(_) => false,
        }
    }

    /// Decodes one datagram from `exporter`, handing every flow record to `sink`. An error
    /// means the datagram had a problem; it is counted, and whatever well-formed sets it held
    /// (v9/IPFIX) were still decoded. `now` is the receive time, for the pending buffer.
    pub fn decode<S: FlowSink>(
        &mut self,
        exporter: IpAddr,
        datagram: &[u8],
        now: Instant,
        sink: &mut S,
    ) -> Result<(), DecodeError> {
        self.stats.datagrams += 1;
        if !self.pending.is_empty() {
            self.expire_pending(now);
        }
        let result = if datagram.len() < 4 {
            Err(DecodeError::TooShort {
                length: datagram.len(),
            })
        } else {
            match be16(datagram, 0) {
                5 => self.decode_v5(exporter, datagram, now, sink),
                9 => self.decode_v9(exporter, datagram, now, sink),
                10 => self.decode_ipfix(exporter, datagram, now, sink),
                other => Err(DecodeError::UnsupportedVersion(other)),
            }
        };
        if result.is_err() {
            self.stats.malformed += 1;
        }
        result
    }

    fn decode_v5<S: FlowSink>(
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

    fn decode_v9<S: FlowSink>(
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

    fn decode_ipfix<S: FlowSink>(
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
    fn decode_sets<S: FlowSink>(
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
    fn decode_data_set<S: FlowSink>(
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

    /// Parses a template or options template set, installing each template and decoding any
    /// data sets that were waiting for it.
    fn learn_templates<S: FlowSink>(
        &mut self,
        domain: DomainKey,
        set_id: u16,
        content: &[u8],
        options: bool,
        now: Instant,
        sink: &mut S,
    ) -> Result<(), DecodeError> {
        let ipfix = domain.version == 10;
        let bad = |reason| DecodeError::BadTemplate { set_id, reason };
        let mut at = 0usize;
        while content.len() - at >= 4 {
            let template_id = be16(content, at);
            let field_count = usize::from(be16(content, at + 2));
            if !ipfix && options {
                // v9 options template: id, scope length, option length (bytes), then fields.
                if content.len() - at < 6 || template_id == 0 {
                    break; // padding
                }
                let scope_len = usize::from(be16(content, at + 2));
                let option_len = usize::from(be16(content, at + 4));
                at += 6;
                if scope_len % 4 != 0 || option_len % 4 != 0 {
                    return Err(bad("options template lengths not multiples of 4"));
                }
                if content.len() - at < scope_len + option_len {
                    return Err(bad("options template longer than its set"));
                }
                let fields = (0..(scope_len + option_len) / 4)
                    .map(|i| FieldSpec {
                        id: be16(content, at + 4 * i),
                        enterprise: 0,
                        length: be16(content, at + 4 * i + 2),
                    })
                    .collect();
                at += scope_len + option_len;
                let kind = TemplateKind::Options {
                    scope_fields: (scope_len / 4) as u16,
                };
                self.add_template(domain, set_id, template_id, kind, fields, now, sink)?;
                continue;
            }
            at += 4;
            if field_count == 0 {
                if ipfix {
                    self.withdraw(domain, set_id, template_id);
                    continue;
                }
                if template_id == 0 {
                    break; // padding
                }
                return Err(bad("template without fields"));
            }
            let mut scope_fields = 0u16;
            if options {
                if content.len() - at < 2 {
                    return Err(bad("options template cut short"));
                }
                scope_fields = be16(content, at);
                at += 2;
                if scope_fields == 0 || usize::from(scope_fields) > field_count {
                    return Err(bad("options template scope field count out of range"));
                }
            }
            let mut fields = Vec::with_capacity(field_count.min(self.limits.max_template_fields));
            for _ in 0..field_count {
                if content.len() - at < 4 {
                    return Err(bad("template longer than its set"));
                }
                let raw_id = be16(content, at);
                let length = be16(content, at + 2);
                at += 4;
                let (id, enterprise) = if ipfix && raw_id & 0x8000 != 0 {
                    if content.len() - at < 4 {
                        return Err(bad("template longer than its set"));
                    }
                    let pen = be32(content, at);
                    at += 4;
                    (raw_id & 0x7fff, pen)
                } else {
                    (raw_id, 0)
                };
                if fields.len() < self.limits.max_template_fields {
                    fields.push(FieldSpec {
                        id,
                        enterprise,
                        length,
                    });
                }
            }
            if field_count > self.limits.max_template_fields {
                self.stats.templates_refused += 1;
                tracing::warn!(
                    exporter = %domain.exporter,
                    domain = domain.domain,
                    template_id,
                    "template with {field_count} fields refused (limit {})",
                    self.limits.max_template_fields
                );
                continue;
            }
            let kind = if options {
                TemplateKind::Options { scope_fields }
            } else {
                TemplateKind::Data
            };
            self.add_template(domain, set_id, template_id, kind, fields, now, sink)?;
        }
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    fn add_template<S: FlowSink>(
        &mut self,
        domain: DomainKey,
        set_id: u16,
        template_id: u16,
        kind: TemplateKind,
        fields: Vec<FieldSpec>,
        now: Instant,
        sink: &mut S,
    ) -> Result<(), DecodeError> {
        if template_id < 256 {
            self.stats.templates_refused += 1;
            return Err(DecodeError::BadTemplate {
                set_id,
                reason: "template id below 256",
            });
        }
        let key = TemplateKey {
            domain,
            template_id,
        };
        let def = TemplateDef { kind, fields };
        if let Some(existing) = self.templates.get(&key) {
            if existing.def == def {
                return Ok(()); // a refresh
            }
        } else if self.templates.len() >= self.limits.max_templates {
            self.stats.templates_refused += 1;
            tracing::warn!(
                exporter = %domain.exporter,
                domain = domain.domain,
                template_id,
                "template refused: {} templates kept already",
                self.limits.max_templates
            );
            return Ok(());
        }
        let template = match Template::compile(domain.version, def.clone()) {
            Ok(t) => t,
            Err(reason) => {
                self.stats.templates_refused += 1;
                return Err(DecodeError::BadTemplate { set_id, reason });
            }
        };
        self.templates.insert(key, template);
        self.stats.templates_learned += 1;
        self.changes.push(TemplateChange::Learned(key, def));
        self.replay_pending(key, now, sink);
        Ok(())
    }

    /// Handles an IPFIX template withdrawal; template id 2 (in a template set) or 3 (in an
    /// options template set) withdraws all templates of that kind (RFC 7011 §8.1).
    fn withdraw(&mut self, domain: DomainKey, set_id: u16, template_id: u16) {
        let keys: Vec<TemplateKey> = if template_id == set_id {
            let options = set_id == 3;
            self.templates
                .iter()
                .filter(|(k, t)| k.domain == domain && t.is_options() == options)
                .map(|(k, _)| *k)
                .collect()
        } else {
            vec![TemplateKey {
                domain,
                template_id,
            }]
        };
        for key in keys {
            if self.templates.remove(&key).is_some() {
                self.stats.templates_withdrawn += 1;
                self.changes.push(TemplateChange::Withdrawn(key));
            }
        }
    }

    fn domain_state(&mut self, key: DomainKey) -> Option<&mut DomainState> {
        if !self.domains.contains_key(&key) && self.domains.len() >= self.limits.max_domains {
            return None;
        }
        Some(self.domains.entry(key).or_default())
    }

    /// Checks a datagram's sequence number against the previous one of its exporter and domain.
    /// `units` is what this datagram counts for (v5: records; v9: 1; IPFIX: flow records and
    /// flow plus options records), `None` if unknown (then tracking restarts).
    fn track_sequence(
        &mut self,
        key: DomainKey,
        sequence: u32,
        units: Option<(u32, u32)>,
        now: Instant,
    ) {
        let Some(state) = self.domain_state(key) else {
            return;
        };
        let previous = state.last_sequence;
        state.last_sequence = units.map(|(flows, all)| (sequence, flows, all));
        let (Some(previous), Some(units)) = (previous, units) else {
            return;
        };
        let candidates = expected(key.version, previous, units);
        if candidates[state.convention] == Some(sequence) {
            return;
        }
        // Several conventions agree whenever two datagrams carry as many records; switch only
        // when the one in use does not fit.
        if let Some(matched) = candidates.iter().position(|&c| c == Some(sequence)) {
            state.convention = matched;
            return;
        }
        let Some(expected) = candidates[state.convention].or(candidates[0]) else {
            return;
        };
        let ahead = sequence.wrapping_sub(expected);
        if ahead < 1 << 31 {
            state.missing_since_log += u64::from(ahead);
            let log_now = state
                .last_gap_log
                .is_none_or(|t| now.duration_since(t) >= LOG_EVERY);
            if log_now {
                tracing::warn!(
                    exporter = %key.exporter,
                    domain = key.domain,
                    version = key.version,
                    "sequence gap: {} {} missing (lost on the way or by the exporter)",
                    state.missing_since_log,
                    if key.version == 9 { "datagrams" } else { "records" }
                );
                state.missing_since_log = 0;
                state.last_gap_log = Some(now);
            }
            self.stats.sequence_gaps += 1;
            self.stats.sequence_missing += u64::from(ahead);
        } else {
            self.stats.sequence_resets += 1;
        }
    }

    fn buffer_pending(&mut self, key: TemplateKey, body: &[u8], now: Instant) {
        self.stats.sets_before_template += 1;
        if body.len() > self.limits.max_pending_bytes || self.limits.max_pending_sets == 0 {
            self.note_dropped(key, now);
            return;
        }
        while self.pending.len() >= self.limits.max_pending_sets
            || self.pending_bytes + body.len() > self.limits.max_pending_bytes
        {
            let Some(oldest) = self.pending.pop_front() else {
                break;
            };
            self.pending_bytes -= oldest.body.len();
            self.note_dropped(oldest.key, now);
        }
        self.pending_bytes += body.len();
        self.pending.push_back(PendingSet {
            key,
            received: now,
            body: body.to_vec(),
        });
    }

    fn expire_pending(&mut self, now: Instant) {
        while let Some(front) = self.pending.front() {
            if now.duration_since(front.received) < self.limits.pending_ttl {
                break;
            }
            let key = front.key;
            if let Some(expired) = self.pending.pop_front() {
                self.pending_bytes -= expired.body.len();
            }
            self.note_dropped(key, now);
        }
    }

    fn note_dropped(&mut self, key: TemplateKey, now: Instant) {
        self.stats.sets_dropped += 1;
        let ttl = self.limits.pending_ttl;
        let Some(state) = self.domain_state(key.domain) else {
            return;
        };
        state.dropped_since_log += 1;
        if state
            .last_drop_log
            .is_none_or(|t| now.duration_since(t) >= LOG_EVERY)
        {
            tracing::warn!(
                exporter = %key.domain.exporter,
                domain = key.domain.domain,
                version = key.domain.version,
                template_id = key.template_id,
                "{} data sets dropped: their template did not arrive within {ttl:?}",
                state.dropped_since_log
            );
            state.dropped_since_log = 0;
            state.last_drop_log = Some(now);
        }
    }

    fn replay_pending<S: FlowSink>(&mut self, key: TemplateKey, now: Instant, sink: &mut S) {
        if !self.pending.iter().any(|p| p.key == key) {
            return;
        }
        let (waiting, rest): (VecDeque<PendingSet>, VecDeque<PendingSet>) =
            std::mem::take(&mut self.pending)
                .into_iter()
                .partition(|p| p.key == key);
        self.pending = rest;
        for set in waiting {
            self.pending_bytes -= set.body.len();
            self.stats.sets_replayed += 1;
            if let Some(outcome) =
                self.decode_data_set(key.domain, key.template_id, &set.body, now, sink)
            {
                if outcome.error.is_some() {
                    self.stats.malformed += 1;
                }
            }
        }
    }
}
