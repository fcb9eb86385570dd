//! The aggregation windows of each account (`aggr/{label}/{account}`) and the values they
//! report, exactly the paths of contract §5.11.
//!
//! Each run of a window's job first drains the receive threads' live aggregates into the pending
//! sums of every window of every account whose entities include the exporter, then reports and
//! clears its own pending sums. So each window reports exactly the flows received since the
//! previous run of that window's job, whatever the other windows do. A window's first run only
//! starts it (the original stored a marker then), and a run when the bot received no flow at
//! all since the previous one reports nothing, as the original.
//!
//! Which exporters belong to which account comes from every job refresh ([`Windows::configure`]),
//! not from the window runs, so an exporter is aggregated from the refresh that first lists its
//! entity; what it sent before (held by the receive threads) is attributed at that refresh.

use crate::aggregate::{top, Aggregate, DirectionSums, ExporterSums, IpKey};
use crate::flow::Direction;
use crate::intake::Intake;
use crate::protocols;
use rustc_hash::{FxHashMap, FxHashSet};
use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How many entries each top list reports.
pub const TOP_N: usize = 10;

/// One aggregation window: its label, interval, and when its first run happens after the job
/// is (re)created (the original's offsets, so the windows' runs do not coincide).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WindowSpec {
    pub label: &'static str,
    pub interval: u64,
    pub first_run_after: u64,
}

/// The five windows of contract §5.11.
pub const WINDOWS: [WindowSpec; 5] = [
    WindowSpec {
        label: "1min",
        interval: 60,
        first_run_after: 60,
    },
    WindowSpec {
        label: "15min",
        interval: 900,
        first_run_after: 15,
    },
    WindowSpec {
        label: "1h",
        interval: 3600,
        first_run_after: 4 * 60 + 15,
    },
    WindowSpec {
        label: "4h",
        interval: 4 * 3600,
        first_run_after: 29 * 60 + 15,
    },
    WindowSpec {
        label: "24h",
        interval: 24 * 3600,
        first_run_after: 3600 + 29 * 60 + 15,
    },
];

/// The length of a minute of the bot's schedule (windows and exporter suggestions). Real minutes
/// by default; a test that cannot wait minutes for a window runs the bot with shorter ones
/// (`NETFLOW_MINUTE`): every interval and first run scale with it, and labels and value paths
/// stay those of the real windows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WindowClock {
    minute: u64,
}

impl Default for WindowClock {
    fn default() -> WindowClock {
        WindowClock { minute: 60 }
    }
}

impl WindowClock {
    /// A clock whose minute lasts `seconds` (at least 1).
    pub fn with_minute(seconds: u64) -> WindowClock {
        WindowClock {
            minute: seconds.max(1),
        }
    }

    /// `seconds` of a real schedule on this clock (at least 1).
    pub fn seconds(&self, seconds: u64) -> u64 {
        (seconds * self.minute / 60).max(1)
    }

    /// Seconds between two runs of `spec`'s window.
    pub fn interval(&self, spec: &WindowSpec) -> u64 {
        self.seconds(spec.interval)
    }

    /// Seconds from a window job's creation to its first run.
    pub fn first_run_after(&self, spec: &WindowSpec) -> u64 {
        self.seconds(spec.first_run_after)
    }
}

/// An account whose jobs have not run for this long is forgotten (its jobs were removed).
const FORGET_ACCOUNT_AFTER: Duration = Duration::from_secs(2 * 3600);

/// One value to report: a path and a byte count.
#[derive(Debug, Clone, PartialEq)]
pub struct PathValue {
    pub path: String,
    pub bytes: u64,
}

/// One NetFlow entity of an account: its id and the exporter address it stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EntityExporter {
    pub entity_id: u64,
    pub exporter: IpAddr,
}

#[derive(Debug)]
struct WindowState {
    started: bool,
    pending: Aggregate,
    records_at_last_run: u64,
}

#[derive(Debug)]
struct AccountWindows {
    entities: Vec<EntityExporter>,
    /// Whether `entities` comes from a job refresh ([`Windows::configure`]); if not, the
    /// window runs set it.
    configured: bool,
    windows: Vec<WindowState>,
    last_run: Instant,
}

impl AccountWindows {
    fn new(max_keys: usize, now: Instant) -> AccountWindows {
        AccountWindows {
            entities: Vec::new(),
            configured: false,
            windows: WINDOWS
                .iter()
                .map(|_| WindowState {
                    started: false,
                    pending: Aggregate::new(max_keys),
                    records_at_last_run: 0,
                })
                .collect(),
            last_run: now,
        }
    }

    fn has(&self, exporter: &IpAddr) -> bool {
        self.entities.iter().any(|e| e.exporter == *exporter)
    }
}

/// What a job refresh did with the flows held for exporters that were not known as entities.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct HeldOutcome {
    /// Records whose exporter is now an entity: added to its accounts' windows.
    pub attributed: u64,
    /// Records whose exporter is still no entity of any account: left out.
    pub discarded: u64,
    /// Those exporters, in address order.
    pub discarded_exporters: Vec<IpAddr>,
    /// Aggregation keys folded away while merging.
    pub folded: u64,
}

/// Adds `sums` of `exporter` to every window of every account that has it; false if none has.
fn merge_into_accounts(
    accounts: &mut BTreeMap<u64, AccountWindows>,
    exporter: IpAddr,
    sums: &ExporterSums,
    folded: &mut u64,
) -> bool {
    let mut found = false;
    for account in accounts.values_mut().filter(|a| a.has(&exporter)) {
        found = true;
        for w in &mut account.windows {
            *folded += w.pending.merge_exporter(exporter, sums);
        }
    }
    found
}

/// Moves the receive threads' live aggregates into the pending sums of the accounts' windows.
fn drain_live(accounts: &mut BTreeMap<u64, AccountWindows>, intake: &Intake) -> u64 {
    let mut folded = 0u64;
    for live in intake.drain() {
        for (exporter, sums) in live.exporters() {
            merge_into_accounts(accounts, *exporter, sums, &mut folded);
        }
    }
    folded
}

fn publish_aggregated(accounts: &BTreeMap<u64, AccountWindows>, intake: &Intake) {
    let aggregated: FxHashSet<IpAddr> = accounts
        .values()
        .flat_map(|a| a.entities.iter().map(|e| e.exporter))
        .collect();
    intake.set_aggregated(aggregated);
}

/// The pending sums of every window of every account.
#[derive(Debug, Default)]
pub struct Windows {
    accounts: Mutex<BTreeMap<u64, AccountWindows>>,
}

/// Encodes an address for a path segment as the original: `.` -> `%2e`, `:` -> `%3a`.
pub fn ip_segment(ip: &IpAddr) -> String {
    ip.to_string().replace('.', "%2e").replace(':', "%3a")
}

fn key_segment(key: IpKey) -> String {
    ip_segment(&key.into())
}

impl Windows {
    pub fn new() -> Windows {
        Windows::default()
    }

    /// Whether window `window` of `account` has had its first run (which only starts it, so
    /// it says nothing about the exporters' traffic).
    pub fn is_started(&self, account: u64, window: usize) -> bool {
        let accounts = self
            .accounts
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        accounts
            .get(&account)
            .and_then(|a| a.windows.get(window))
            .is_some_and(|w| w.started)
    }

    /// Runs window `window` (index into [`WINDOWS`]) of `account` whose NetFlow entities are
    /// `entities`: drains the live aggregates, then reports and clears this window's sums.
    /// Returns the values and the number of aggregation keys folded away while merging.
    pub fn run(
        &self,
        intake: &Intake,
        account: u64,
        window: usize,
        entities: &[EntityExporter],
        now: Instant,
    ) -> (Vec<PathValue>, u64) {
        let mut accounts = self
            .accounts
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        accounts.retain(|_, a| now.duration_since(a.last_run) < FORGET_ACCOUNT_AFTER);
        let state = accounts
            .entry(account)
            .or_insert_with(|| AccountWindows::new(intake.max_keys(), now));
        if !state.configured {
            state.entities = entities.to_vec();
        }
        state.last_run = now;

        // Drain under the lock, so concurrent runs of other windows cannot interleave.
        let folded = drain_live(&mut accounts, intake);
        publish_aggregated(&accounts, intake);

        let Some(state) = accounts.get_mut(&account) else {
            return (Vec::new(), folded);
        };
        let records = intake.records();
        let Some(w) = state.windows.get_mut(window) else {
            return (Vec::new(), folded);
        };
        let pending = w.pending.take();
        if !w.started {
            w.started = true;
            w.records_at_last_run = records;
            return (Vec::new(), folded);
        }
        if records == w.records_at_last_run {
            return (Vec::new(), folded);
        }
        w.records_at_last_run = records;
        if pending.folded() > 0 {
            tracing::warn!(
                account,
                window = WINDOWS[window].label,
                "{} aggregation keys were folded away to bound memory; top lists are approximate",
                pending.folded()
            );
        }
        (report(WINDOWS[window].label, entities, &pending), folded)
    }
}

impl Windows {
    /// Takes the NetFlow entities of every account from a job refresh (`entities`; accounts in
    /// `kept` could not be read and keep theirs), so the receive threads aggregate the new
    /// exporters at once. Flows received so far go where the previous configuration said; the
    /// flows held for exporters that were not entities go to the accounts that now have them,
    /// or are discarded.
    pub fn configure(
        &self,
        intake: &Intake,
        entities: &BTreeMap<u64, Vec<EntityExporter>>,
        kept: &HashSet<u64>,
        now: Instant,
    ) -> HeldOutcome {
        let mut accounts = self
            .accounts
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let mut outcome = HeldOutcome {
            folded: drain_live(&mut accounts, intake),
            ..HeldOutcome::default()
        };
        for (account, state) in accounts.iter_mut() {
            if !entities.contains_key(account) && !kept.contains(account) {
                state.entities.clear();
            }
        }
        for (account, list) in entities {
            let state = accounts
                .entry(*account)
                .or_insert_with(|| AccountWindows::new(intake.max_keys(), now));
            state.entities = list.clone();
            state.configured = true;
        }
        publish_aggregated(&accounts, intake);
        let mut discarded = BTreeSet::new();
        for held in intake.take_held() {
            for (exporter, sums) in held.exporters() {
                if merge_into_accounts(&mut accounts, *exporter, sums, &mut outcome.folded) {
                    outcome.attributed += sums.records;
                } else {
                    outcome.discarded += sums.records;
                    discarded.insert(*exporter);
                }
            }
        }
        outcome.discarded_exporters = discarded.into_iter().collect();
        outcome
    }
}

/// The values of one window of one account (contract §5.11), bytes per path.
pub fn report(label: &str, entities: &[EntityExporter], sums: &Aggregate) -> Vec<PathValue> {
    let mut values = Vec::new();
    let mut push = |path: String, bytes: u64| values.push(PathValue { path, bytes });
    for direction in Direction::ALL {
        let prefix = format!("netflow.{label}.{}", direction.label());
        let mut account_total = 0u64;
        for entity in entities {
            let entity_prefix = format!("{prefix}.entity.{}", entity.entity_id);
            let Some(d) = sums
                .exporter(&entity.exporter)
                .map(|s| s.direction(direction))
            else {
                push(entity_prefix, 0);
                continue;
            };
            account_total = account_total.saturating_add(d.total);
            push(entity_prefix.clone(), d.total);
            entity_values(&entity_prefix, d, &mut push);
        }
        push(prefix, account_total);
    }
    values
}

fn entity_values(prefix: &str, d: &DirectionSums, push: &mut impl FnMut(String, u64)) {
    let mut interfaces: Vec<(u32, u64)> = d.interfaces.iter().collect();
    interfaces.sort_unstable();
    for (interface, bytes) in &interfaces {
        push(format!("{prefix}.if.{interface}"), *bytes);
    }
    for (ip, bytes) in top(d.hosts().iter(), TOP_N) {
        push(format!("{prefix}.topip.{}", key_segment(ip)), bytes);
    }
    let mut by_interface: FxHashMap<u32, Vec<(IpKey, u64)>> = FxHashMap::default();
    for ((interface, ip), bytes) in d.interface_hosts.iter() {
        by_interface.entry(interface).or_default().push((ip, bytes));
    }
    let mut by_interface: Vec<_> = by_interface.into_iter().collect();
    by_interface.sort_unstable_by_key(|(interface, _)| *interface);
    for (interface, hosts) in by_interface {
        for (ip, bytes) in top(hosts, TOP_N) {
            push(
                format!("{prefix}.if.{interface}.topip.{}", key_segment(ip)),
                bytes,
            );
        }
    }
    for (protocol, bytes) in top(d.protocols().iter(), TOP_N) {
        push(
            format!("{prefix}.topprotocol.{}", protocols::segment(protocol)),
            bytes,
        );
    }
    let mut by_interface: FxHashMap<u32, Vec<(u8, u64)>> = FxHashMap::default();
    for ((interface, protocol), bytes) in d.interface_protocols.iter() {
        by_interface
            .entry(interface)
            .or_default()
            .push((protocol, bytes));
    }
    let mut by_interface: Vec<_> = by_interface.into_iter().collect();
    by_interface.sort_unstable_by_key(|(interface, _)| *interface);
    for (interface, list) in by_interface {
        for (protocol, bytes) in top(list, TOP_N) {
            push(
                format!(
                    "{prefix}.if.{interface}.topprotocol.{}",
                    protocols::segment(protocol)
                ),
                bytes,
            );
        }
    }
    for ((src, dst), bytes) in top(d.connections.iter(), TOP_N) {
        push(
            format!("{prefix}.topconn.{}.{}", key_segment(src), key_segment(dst)),
            bytes,
        );
    }
    for (port, bytes) in top(d.dst_ports.iter(), TOP_N) {
        push(format!("{prefix}.topdstports.{port}"), bytes);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_short_minute_scales_every_window_and_keeps_at_least_a_second() {
        let real = WindowClock::default();
        assert_eq!(real.interval(&WINDOWS[0]), 60);
        assert_eq!(real.first_run_after(&WINDOWS[1]), 15);
        let test = WindowClock::with_minute(2);
        let intervals: Vec<u64> = WINDOWS.iter().map(|w| test.interval(w)).collect();
        assert_eq!(intervals, [2, 30, 120, 480, 2880]);
        assert_eq!(test.first_run_after(&WINDOWS[0]), 2);
        assert_eq!(
            test.first_run_after(&WINDOWS[1]),
            1,
            "15 s / 30 rounds down to 0: kept at 1 s"
        );
    }
}
