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

mod pending;
mod sequence;
mod sets;
mod templates;
mod v5;

pub use sets::Sampling;

use crate::flow::FlowSink;
use pending::PendingSet;
use rustc_hash::FxHashMap;
use sequence::DomainState;
use std::collections::VecDeque;
use std::fmt;
use std::net::IpAddr;
use std::time::{Duration, Instant};
use templates::Template;

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
}
