//! What the receive threads share with the jobs: one live aggregate per thread, the exporters
//! seen (for entity suggestions), which exporters are worth aggregating, and the counters.

use crate::aggregate::Aggregate;
use crate::decode::DecodeStats;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use rustc_hash::FxHashSet;
use std::collections::BTreeSet;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};

/// Distinct exporters remembered for suggestions; more are counted, not kept.
pub const MAX_EXPORTERS: usize = 10_000;
/// Keys each receive thread's holding area keeps for exporters not known to be entities (yet),
/// until the next job refresh attributes or discards them; past it, lists are folded as in any
/// aggregate (totals stay exact). At 55 to 130 bytes a key: at most 6.5 MB per thread.
pub const HELD_MAX_KEYS: usize = 50_000;
/// Distinct exporters each receive thread's holding area keeps; records of more are discarded
/// at once and counted as unattributed.
pub const HELD_MAX_EXPORTERS: usize = 1_024;

/// The bot's counters, registered with the framework's metrics (prefix `netflow_`).
#[derive(Debug, Default, Clone)]
pub struct Counters {
    pub datagrams: Counter,
    pub records: Counter,
    /// Records from exporters that are no entity of any account: decoded, held until the next
    /// job refresh, then left out.
    pub records_unattributed: Counter,
    /// Records held because their exporter was not known to be an entity when they arrived.
    pub records_held: Counter,
    /// Held records attributed at a job refresh that found their exporter's entity.
    pub records_held_attributed: Counter,
    pub option_records: Counter,
    pub decode_errors: Counter,
    pub sequence_gaps: Counter,
    pub sequence_missing: Counter,
    pub sequence_resets: Counter,
    pub unknown_template_sets: Counter,
    pub unknown_template_sets_replayed: Counter,
    pub unknown_template_sets_dropped: Counter,
    pub templates_learned: Counter,
    pub templates_refused: Counter,
    pub templates_withdrawn: Counter,
    pub template_store_errors: Counter,
    pub kernel_drops: Counter,
    pub truncated_datagrams: Counter,
    pub keys_folded: Counter,
    pub exporters_over_limit: Counter,
    pub exporters: Gauge,
}

impl Counters {
    /// Registers every counter; `register(name, help, metric)` is the framework's
    /// `Metrics::register`.
    pub fn register(&self, metrics: &collector::metrics::Metrics) {
        let c = self;
        metrics.register(
            "netflow_datagrams",
            "Datagrams received",
            c.datagrams.clone(),
        );
        metrics.register("netflow_records", "Flow records decoded", c.records.clone());
        metrics.register(
            "netflow_records_unattributed",
            "Flow records from exporters that are no entity",
            c.records_unattributed.clone(),
        );
        metrics.register(
            "netflow_records_held",
            "Flow records held until a job refresh: their exporter was not known to be an entity",
            c.records_held.clone(),
        );
        metrics.register(
            "netflow_records_held_attributed",
            "Held flow records attributed once their exporter's entity was known",
            c.records_held_attributed.clone(),
        );
        metrics.register(
            "netflow_option_records",
            "Options records decoded",
            c.option_records.clone(),
        );
        metrics.register(
            "netflow_decode_errors",
            "Datagrams malformed or of an unknown version",
            c.decode_errors.clone(),
        );
        metrics.register(
            "netflow_sequence_gaps",
            "Forward jumps of exporters' sequence numbers",
            c.sequence_gaps.clone(),
        );
        metrics.register(
            "netflow_sequence_missing",
            "Records (v9: datagrams) missing in sequence gaps",
            c.sequence_missing.clone(),
        );
        metrics.register(
            "netflow_sequence_resets",
            "Sequence numbers going backwards",
            c.sequence_resets.clone(),
        );
        metrics.register(
            "netflow_unknown_template_sets",
            "Data sets that arrived before their template",
            c.unknown_template_sets.clone(),
        );
        metrics.register(
            "netflow_unknown_template_sets_replayed",
            "Data sets decoded once their template arrived",
            c.unknown_template_sets_replayed.clone(),
        );
        metrics.register(
            "netflow_unknown_template_sets_dropped",
            "Data sets dropped: no template in time",
            c.unknown_template_sets_dropped.clone(),
        );
        metrics.register(
            "netflow_templates_learned",
            "Templates learned or changed",
            c.templates_learned.clone(),
        );
        metrics.register(
            "netflow_templates_refused",
            "Templates refused (invalid or over the limit)",
            c.templates_refused.clone(),
        );
        metrics.register(
            "netflow_templates_withdrawn",
            "Templates withdrawn by exporters",
            c.templates_withdrawn.clone(),
        );
        metrics.register(
            "netflow_template_store_errors",
            "Failed writes of templates to the data directory",
            c.template_store_errors.clone(),
        );
        metrics.register(
            "netflow_kernel_drops",
            "Datagrams the kernel dropped (socket buffer full)",
            c.kernel_drops.clone(),
        );
        metrics.register(
            "netflow_truncated_datagrams",
            "Datagrams larger than the receive buffer",
            c.truncated_datagrams.clone(),
        );
        metrics.register(
            "netflow_keys_folded",
            "Aggregation keys folded away by the memory bound",
            c.keys_folded.clone(),
        );
        metrics.register(
            "netflow_exporters_over_limit",
            "Exporters not remembered for suggestions (limit reached)",
            c.exporters_over_limit.clone(),
        );
        metrics.register("netflow_exporters", "Exporters seen", c.exporters.clone());
    }

    /// Adds a decoder's counts.
    pub fn add_decode(&self, s: &DecodeStats) {
        self.datagrams.inc_by(s.datagrams);
        self.records.inc_by(s.records);
        self.option_records.inc_by(s.option_records);
        self.decode_errors.inc_by(s.malformed);
        self.sequence_gaps.inc_by(s.sequence_gaps);
        self.sequence_missing.inc_by(s.sequence_missing);
        self.sequence_resets.inc_by(s.sequence_resets);
        self.unknown_template_sets.inc_by(s.sets_before_template);
        self.unknown_template_sets_replayed.inc_by(s.sets_replayed);
        self.unknown_template_sets_dropped.inc_by(s.sets_dropped);
        self.templates_learned.inc_by(s.templates_learned);
        self.templates_refused.inc_by(s.templates_refused);
        self.templates_withdrawn.inc_by(s.templates_withdrawn);
    }
}

/// State shared by the receive threads and the jobs.
#[derive(Debug)]
pub struct Intake {
    live: Vec<Mutex<Aggregate>>,
    /// Per receive thread: flows of exporters not (yet) aggregated, until the next refresh.
    held: Vec<Mutex<Aggregate>>,
    aggregated: RwLock<Arc<FxHashSet<IpAddr>>>,
    aggregated_generation: AtomicU64,
    exporters: Mutex<BTreeSet<IpAddr>>,
    records: AtomicU64,
    max_keys: usize,
    pub counters: Counters,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Intake {
    /// Room for `threads` receive threads, each aggregate bounded to `max_keys` keys.
    pub fn new(threads: usize, max_keys: usize) -> Intake {
        Intake {
            live: (0..threads.max(1))
                .map(|_| Mutex::new(Aggregate::new(max_keys)))
                .collect(),
            held: (0..threads.max(1))
                .map(|_| Mutex::new(Aggregate::new(HELD_MAX_KEYS)))
                .collect(),
            aggregated: RwLock::new(Arc::new(FxHashSet::default())),
            aggregated_generation: AtomicU64::new(0),
            exporters: Mutex::new(BTreeSet::new()),
            records: AtomicU64::new(0),
            max_keys,
            counters: Counters::default(),
        }
    }

    /// The key bound of every aggregate.
    pub fn max_keys(&self) -> usize {
        self.max_keys
    }

    /// The number of receive threads this intake serves.
    pub fn threads(&self) -> usize {
        self.live.len()
    }

    /// The live aggregate of receive thread `thread`.
    pub fn live(&self, thread: usize) -> MutexGuard<'_, Aggregate> {
        lock(&self.live[thread % self.live.len()])
    }

    /// Takes every live aggregate's contents.
    pub fn drain(&self) -> Vec<Aggregate> {
        self.live
            .iter()
            .map(|m| lock(m).take())
            .filter(|a| !a.is_empty())
            .collect()
    }

    /// The holding area of receive thread `thread`: flows of exporters that are not aggregated.
    pub fn held(&self, thread: usize) -> MutexGuard<'_, Aggregate> {
        lock(&self.held[thread % self.held.len()])
    }

    /// Takes every holding area's contents (at a job refresh).
    pub fn take_held(&self) -> Vec<Aggregate> {
        self.held
            .iter()
            .map(|m| lock(m).take())
            .filter(|a| !a.is_empty())
            .collect()
    }

    /// Sets which exporters are aggregated (the entities' addresses); flows of others are
    /// decoded and counted, but not aggregated.
    pub fn set_aggregated(&self, exporters: FxHashSet<IpAddr>) {
        let mut current = self
            .aggregated
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if **current != exporters {
            *current = Arc::new(exporters);
            self.aggregated_generation.fetch_add(1, Ordering::Release);
        }
    }

    /// Changes whenever the aggregated set changes, so threads re-read it only then.
    pub fn aggregated_generation(&self) -> u64 {
        self.aggregated_generation.load(Ordering::Acquire)
    }

    /// The current aggregated set.
    pub fn aggregated(&self) -> Arc<FxHashSet<IpAddr>> {
        self.aggregated
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    /// Records an exporter whose datagram decoded; returns false when it was known already.
    pub fn note_exporter(&self, exporter: IpAddr) -> bool {
        let mut exporters = lock(&self.exporters);
        if exporters.contains(&exporter) {
            return false;
        }
        if exporters.len() >= MAX_EXPORTERS {
            self.counters.exporters_over_limit.inc();
            return false;
        }
        exporters.insert(exporter);
        self.counters.exporters.set(exporters.len() as i64);
        tracing::info!(%exporter, "new NetFlow exporter");
        true
    }

    /// Every exporter seen, in address order.
    pub fn exporters(&self) -> Vec<IpAddr> {
        lock(&self.exporters).iter().copied().collect()
    }

    /// Adds to the count of records received (any exporter).
    pub fn add_records(&self, n: u64) {
        self.records.fetch_add(n, Ordering::Relaxed);
    }

    /// Records received since start (any exporter): a window with no change reports nothing.
    pub fn records(&self) -> u64 {
        self.records.load(Ordering::Relaxed)
    }
}
