//! Streaming aggregation: byte sums per exporter and direction along every dimension the value
//! paths of contract §5.11 need, with a bound on how many distinct keys an aggregate holds.
//!
//! Each receive thread adds its flows to a live [`Aggregate`]; the window jobs drain the live
//! aggregates into per-window ones ([`crate::windows`]). Nothing per flow is kept.
//!
//! Memory bound: an aggregate counts its distinct keys (interfaces, hosts, protocols,
//! connections, ports...). When it exceeds its limit, every list with more than a few entries
//! keeps its larger half by bytes and the smaller half is folded away (counted). The bytes stay
//! in the exporter's totals, which are exact; only the per-key lists lose their small entries,
//! so the top 10 stay right unless a key that was small when folded grows into the top later.

use crate::flow::{Direction, Flow, FlowSink};
use crate::sums::SumTable;
use rustc_hash::FxHashMap;
use std::collections::hash_map::Entry;
use std::hash::Hash;
use std::net::{IpAddr, Ipv6Addr};

/// Byte sums by key.
pub type Sums<K> = SumTable<K>;

/// Lists this short are never folded: interface lists and the like stay complete.
const FOLD_MIN: usize = 16;

/// An address as a compact, cheaply hashed key: IPv6 bits, IPv4 as its IPv4-mapped form.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct IpKey {
    high: u64,
    low: u64,
}

impl From<IpAddr> for IpKey {
    #[inline]
    fn from(ip: IpAddr) -> IpKey {
        let bits = match ip {
            IpAddr::V4(v4) => u128::from(v4.to_ipv6_mapped()),
            IpAddr::V6(v6) => u128::from(v6),
        };
        IpKey {
            high: (bits >> 64) as u64,
            low: bits as u64,
        }
    }
}

impl From<IpKey> for IpAddr {
    fn from(key: IpKey) -> IpAddr {
        let v6 = Ipv6Addr::from((u128::from(key.high) << 64) | u128::from(key.low));
        match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(v6),
        }
    }
}

/// Byte sums of one exporter in one direction. Interface is the input interface for ingress,
/// the output interface for egress; host is the source address for ingress, the destination
/// for egress (contract §5.11). Per-entity host and protocol sums are derived from the
/// per-interface ones ([`DirectionSums::hosts`], [`DirectionSums::protocols`]), which keeps
/// the work per flow to five map updates.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct DirectionSums {
    /// All bytes, exact whatever was folded.
    pub total: u64,
    pub interfaces: Sums<u32>,
    pub interface_hosts: Sums<(u32, IpKey)>,
    pub interface_protocols: Sums<(u32, u8)>,
    /// By (source, destination) address.
    pub connections: Sums<(IpKey, IpKey)>,
    pub dst_ports: Sums<u16>,
}

/// Adds `bytes` under `key`; 1 if the key is new.
#[inline(always)]
fn add<K: Hash + Eq + Copy + Default>(map: &mut Sums<K>, key: K, bytes: u64) -> usize {
    usize::from(map.add(key, bytes))
}

fn merge_map<K: Hash + Eq + Copy + Default>(into: &mut Sums<K>, from: &Sums<K>) -> usize {
    from.iter().map(|(k, v)| add(into, k, v)).sum()
}

/// Keeps the larger half (by bytes) of a list longer than [`FOLD_MIN`]; returns how many keys
/// were folded away.
fn fold_map<K: Hash + Eq + Copy + Default>(map: &mut Sums<K>) -> usize {
    let before = map.len();
    if before <= FOLD_MIN {
        return 0;
    }
    let keep = before / 2;
    let mut values: Vec<u64> = map.values().collect();
    let cut = before - keep;
    let (_, &mut threshold, _) = values.select_nth_unstable(cut);
    let above = values[cut + 1..].iter().filter(|&&v| v > threshold).count();
    let mut ties_kept = keep - above;
    map.retain(|_, v| {
        if v > threshold {
            true
        } else if v == threshold && ties_kept > 0 {
            ties_kept -= 1;
            true
        } else {
            false
        }
    });
    before - map.len()
}

impl DirectionSums {
    /// Adds one flow; returns the number of new keys.
    #[inline]
    pub fn add_flow(&mut self, flow: &Flow) -> usize {
        let bytes = flow.bytes;
        let interface = flow.interface();
        self.total = self.total.saturating_add(bytes);
        add(&mut self.interfaces, interface, bytes)
            + add(
                &mut self.interface_hosts,
                (interface, IpKey::from(flow.host())),
                bytes,
            )
            + add(
                &mut self.interface_protocols,
                (interface, flow.protocol),
                bytes,
            )
            + add(
                &mut self.connections,
                (IpKey::from(flow.src), IpKey::from(flow.dst)),
                bytes,
            )
            + add(&mut self.dst_ports, flow.dst_port, bytes)
    }

    /// Adds another aggregate's sums; returns the number of new keys.
    pub fn merge(&mut self, other: &DirectionSums) -> usize {
        self.total = self.total.saturating_add(other.total);
        merge_map(&mut self.interfaces, &other.interfaces)
            + merge_map(&mut self.interface_hosts, &other.interface_hosts)
            + merge_map(&mut self.interface_protocols, &other.interface_protocols)
            + merge_map(&mut self.connections, &other.connections)
            + merge_map(&mut self.dst_ports, &other.dst_ports)
    }

    /// Distinct keys held.
    pub fn keys(&self) -> usize {
        self.interfaces.len()
            + self.interface_hosts.len()
            + self.interface_protocols.len()
            + self.connections.len()
            + self.dst_ports.len()
    }

    /// Bytes per host over all interfaces.
    pub fn hosts(&self) -> Sums<IpKey> {
        let mut hosts = Sums::default();
        for ((_, host), bytes) in self.interface_hosts.iter() {
            hosts.add(host, bytes);
        }
        hosts
    }

    /// Bytes per protocol over all interfaces.
    pub fn protocols(&self) -> Sums<u8> {
        let mut protocols = Sums::default();
        for ((_, protocol), bytes) in self.interface_protocols.iter() {
            protocols.add(protocol, bytes);
        }
        protocols
    }

    fn fold(&mut self) -> usize {
        fold_map(&mut self.interfaces)
            + fold_map(&mut self.interface_hosts)
            + fold_map(&mut self.interface_protocols)
            + fold_map(&mut self.connections)
            + fold_map(&mut self.dst_ports)
    }
}

/// Sums of one exporter: per direction, and its record count.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct ExporterSums {
    pub directions: [DirectionSums; 2],
    pub records: u64,
}

impl ExporterSums {
    pub fn direction(&self, direction: Direction) -> &DirectionSums {
        &self.directions[direction.index()]
    }

    fn keys(&self) -> usize {
        self.directions.iter().map(DirectionSums::keys).sum()
    }
}

/// Sums per exporter with a bound on distinct keys: the live aggregate of a receive thread, or
/// the pending sums of one window of one account.
#[derive(Debug)]
pub struct Aggregate {
    exporters: FxHashMap<IpAddr, ExporterSums>,
    keys: usize,
    max_keys: usize,
    folded: u64,
    /// Records a sink holds until it adds them in one go (reused buffer).
    staged: Vec<Staged>,
}

impl Aggregate {
    /// An empty aggregate that folds when it holds more than `max_keys` distinct keys.
    pub fn new(max_keys: usize) -> Aggregate {
        Aggregate {
            exporters: FxHashMap::default(),
            keys: 0,
            max_keys: max_keys.max(1),
            folded: 0,
            staged: Vec::with_capacity(SINK_BATCH),
        }
    }

    /// Takes the contents, leaving an empty aggregate with the same limit.
    pub fn take(&mut self) -> Aggregate {
        std::mem::replace(self, Aggregate::new(self.max_keys))
    }

    pub fn is_empty(&self) -> bool {
        self.exporters.is_empty()
    }

    /// Distinct keys held.
    pub fn keys(&self) -> usize {
        self.keys
    }

    /// Keys folded away since this aggregate was created.
    pub fn folded(&self) -> u64 {
        self.folded
    }

    /// The sums of one exporter.
    pub fn exporter(&self, exporter: &IpAddr) -> Option<&ExporterSums> {
        self.exporters.get(exporter)
    }

    /// How many exporters it holds sums of.
    pub fn exporter_count(&self) -> usize {
        self.exporters.len()
    }

    /// Every exporter's sums.
    pub fn exporters(&self) -> impl Iterator<Item = (&IpAddr, &ExporterSums)> {
        self.exporters.iter()
    }

    /// A sink adding the flows of one exporter's datagram. The flow's own `exporter` field is
    /// not looked at: a receive thread resolves the exporter once per datagram.
    pub fn exporter_sink(&mut self, exporter: IpAddr) -> ExporterSink<'_> {
        let sums = match self.exporters.entry(exporter) {
            Entry::Occupied(e) => e.into_mut(),
            Entry::Vacant(e) => {
                self.keys += 1;
                e.insert(ExporterSums::default())
            }
        };
        ExporterSink {
            sums,
            keys: &mut self.keys,
            staged: &mut self.staged,
        }
    }

    /// Adds one exporter's sums from another aggregate, folding if the limit is exceeded.
    /// Returns the number of keys folded away.
    pub fn merge_exporter(&mut self, exporter: IpAddr, sums: &ExporterSums) -> u64 {
        let into = match self.exporters.entry(exporter) {
            Entry::Occupied(e) => e.into_mut(),
            Entry::Vacant(e) => {
                self.keys += 1;
                e.insert(ExporterSums::default())
            }
        };
        into.records += sums.records;
        for (to, from) in into.directions.iter_mut().zip(&sums.directions) {
            self.keys += to.merge(from);
        }
        self.enforce_limit()
    }

    /// Folds the smaller half of every long list if the aggregate holds more keys than its
    /// limit. Returns the number of keys folded away.
    pub fn enforce_limit(&mut self) -> u64 {
        if self.keys <= self.max_keys {
            return 0;
        }
        let mut folded = 0usize;
        for sums in self.exporters.values_mut() {
            for direction in &mut sums.directions {
                folded += direction.fold();
            }
        }
        self.keys = self.exporters.len()
            + self
                .exporters
                .values()
                .map(ExporterSums::keys)
                .sum::<usize>();
        self.folded += folded as u64;
        folded as u64
    }
}

/// Records a sink collects before adding them: enough to keep many memory fetches in flight.
const SINK_BATCH: usize = 64;
/// How many records ahead the slots are prefetched.
const PREFETCH_AHEAD: usize = 8;

/// One record waiting in a sink, with the hashes of its two large-table keys.
#[derive(Debug, Clone, Copy)]
struct Staged {
    direction: usize,
    interface: u32,
    protocol: u8,
    dst_port: u16,
    host: IpKey,
    src: IpKey,
    dst: IpKey,
    bytes: u64,
    host_hash: u64,
    connection_hash: u64,
}

/// Adds flows to one exporter's sums (see [`Aggregate::exporter_sink`]). Records are added in
/// groups: the slots of a group's keys in the two large tables (interface/host pairs,
/// connections) are prefetched before any is touched. Whatever is left is added when the sink
/// is dropped.
pub struct ExporterSink<'a> {
    sums: &'a mut ExporterSums,
    keys: &'a mut usize,
    staged: &'a mut Vec<Staged>,
}

impl ExporterSink<'_> {
    fn add_staged(&mut self) {
        let prefetch = |sums: &ExporterSums, s: &Staged| {
            let d = &sums.directions[s.direction];
            d.interface_hosts.prefetch(s.host_hash);
            d.connections.prefetch(s.connection_hash);
        };
        for s in self.staged.iter().take(PREFETCH_AHEAD) {
            prefetch(self.sums, s);
        }
        let mut new_keys = 0;
        for i in 0..self.staged.len() {
            if let Some(ahead) = self.staged.get(i + PREFETCH_AHEAD) {
                prefetch(self.sums, ahead);
            }
            let s = self.staged[i];
            let d = &mut self.sums.directions[s.direction];
            d.total = d.total.saturating_add(s.bytes);
            new_keys += usize::from(d.interfaces.add(s.interface, s.bytes))
                + usize::from(d.interface_hosts.add_hashed(
                    s.host_hash,
                    (s.interface, s.host),
                    s.bytes,
                ))
                + usize::from(
                    d.interface_protocols
                        .add((s.interface, s.protocol), s.bytes),
                )
                + usize::from(
                    d.connections
                        .add_hashed(s.connection_hash, (s.src, s.dst), s.bytes),
                )
                + usize::from(d.dst_ports.add(s.dst_port, s.bytes));
        }
        self.staged.clear();
        *self.keys += new_keys;
    }
}

impl FlowSink for ExporterSink<'_> {
    #[inline]
    fn flow(&mut self, flow: &Flow) {
        self.sums.records += 1;
        let interface = flow.interface();
        let host = IpKey::from(flow.host());
        let src = IpKey::from(flow.src);
        let dst = IpKey::from(flow.dst);
        self.staged.push(Staged {
            direction: flow.direction.index(),
            interface,
            protocol: flow.protocol,
            dst_port: flow.dst_port,
            host,
            src,
            dst,
            bytes: flow.bytes,
            host_hash: Sums::<(u32, IpKey)>::hash_of(&(interface, host)),
            connection_hash: Sums::<(IpKey, IpKey)>::hash_of(&(src, dst)),
        });
        if self.staged.len() >= SINK_BATCH {
            self.add_staged();
        }
    }
}

impl Drop for ExporterSink<'_> {
    fn drop(&mut self) {
        if !self.staged.is_empty() {
            self.add_staged();
        }
    }
}

/// Routes each flow by its `exporter` field; convenient where flows come from a list.
impl FlowSink for Aggregate {
    fn flow(&mut self, flow: &Flow) {
        self.exporter_sink(flow.exporter).flow(flow);
    }
}

/// The `n` largest entries by bytes, largest first; ties in key order so output is stable.
pub fn top<K: Ord + Copy>(entries: impl IntoIterator<Item = (K, u64)>, n: usize) -> Vec<(K, u64)> {
    let mut all: Vec<(K, u64)> = entries.into_iter().collect();
    let by_bytes = |a: &(K, u64), b: &(K, u64)| b.1.cmp(&a.1).then(a.0.cmp(&b.0));
    if all.len() > n {
        all.select_nth_unstable_by(n, by_bytes);
        all.truncate(n);
    }
    all.sort_unstable_by(by_bytes);
    all
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(ip: &str) -> IpKey {
        IpKey::from(ip.parse::<IpAddr>().unwrap())
    }

    #[test]
    fn ip_keys_round_trip() {
        for ip in ["192.0.2.1", "0.0.0.0", "2001:db8::1", "::1", "::"] {
            let ip: IpAddr = ip.parse().unwrap();
            assert_eq!(IpAddr::from(IpKey::from(ip)), ip);
        }
    }

    fn flow(src: &str, dst: &str, direction: Direction, bytes: u64) -> Flow {
        let mut f = Flow::empty("192.0.2.1".parse().unwrap());
        f.src = src.parse().unwrap();
        f.dst = dst.parse().unwrap();
        f.direction = direction;
        f.in_if = 1;
        f.out_if = 2;
        f.protocol = 6;
        f.dst_port = 443;
        f.bytes = bytes;
        f
    }

    #[test]
    fn sums_along_every_dimension() {
        let mut agg = Aggregate::new(1000);
        agg.flow(&flow("10.0.0.1", "10.0.0.2", Direction::Ingress, 100));
        agg.flow(&flow("10.0.0.1", "10.0.0.3", Direction::Ingress, 50));
        agg.flow(&flow("10.0.0.1", "10.0.0.3", Direction::Egress, 7));
        let sums = agg.exporter(&"192.0.2.1".parse().unwrap()).unwrap();
        let ingress = sums.direction(Direction::Ingress);
        assert_eq!(ingress.total, 150);
        assert_eq!(ingress.interfaces.get(&1), Some(150));
        assert_eq!(ingress.hosts().get(&key("10.0.0.1")), Some(150));
        assert_eq!(ingress.connections.len(), 2);
        let egress = sums.direction(Direction::Egress);
        assert_eq!(egress.interfaces.get(&2), Some(7));
        assert_eq!(egress.hosts().get(&key("10.0.0.3")), Some(7));
        assert_eq!(sums.records, 3);
        // exporter + 5 lists for ingress (1 + 1 + 1 + 2 + 1) + 5 for egress
        assert_eq!(agg.keys(), 1 + 6 + 5);
    }

    #[test]
    fn folding_keeps_totals_and_heavy_hitters() {
        let mut agg = Aggregate::new(200);
        // One heavy host and many light ones.
        agg.flow(&flow("10.9.9.9", "10.0.0.1", Direction::Ingress, 1_000_000));
        for i in 0..500u32 {
            let src = format!("10.1.{}.{}", i / 256, i % 256);
            agg.flow(&flow(
                &src,
                "10.0.0.1",
                Direction::Ingress,
                10 + u64::from(i),
            ));
            agg.enforce_limit();
        }
        assert!(agg.keys() <= 200 + 5, "{}", agg.keys());
        assert!(agg.folded() > 0);
        let sums = agg.exporter(&"192.0.2.1".parse().unwrap()).unwrap();
        let ingress = sums.direction(Direction::Ingress);
        let light: u64 = (0..500u64).map(|i| 10 + i).sum();
        assert_eq!(ingress.total, 1_000_000 + light);
        let top_hosts = top(ingress.hosts().iter(), 10);
        assert_eq!(top_hosts[0], (key("10.9.9.9"), 1_000_000));
        // The latest, largest light hosts survive in order.
        assert_eq!(top_hosts[1].1, 509);
        assert_eq!(top_hosts[9].1, 501);
    }

    #[test]
    fn merge_adds_and_counts_new_keys() {
        let mut a = Aggregate::new(1000);
        a.flow(&flow("10.0.0.1", "10.0.0.2", Direction::Ingress, 100));
        let mut b = Aggregate::new(1000);
        b.flow(&flow("10.0.0.1", "10.0.0.2", Direction::Ingress, 5));
        b.flow(&flow("10.0.0.4", "10.0.0.2", Direction::Ingress, 1));
        let keys_before = a.keys();
        for (exporter, sums) in b.exporters() {
            a.merge_exporter(*exporter, sums);
        }
        let sums = a.exporter(&"192.0.2.1".parse().unwrap()).unwrap();
        assert_eq!(sums.direction(Direction::Ingress).total, 106);
        assert_eq!(sums.records, 3);
        // New: the interface/host pair and the connection of 10.0.0.4.
        assert_eq!(a.keys(), keys_before + 2);
    }

    #[test]
    fn fold_map_keeps_exactly_half_with_ties() {
        let mut map: Sums<u32> = (0..40).map(|k| (k, 5)).collect();
        assert_eq!(fold_map(&mut map), 20);
        assert_eq!(map.len(), 20);
        let mut small: Sums<u32> = (0..10).map(|k| (k, k.into())).collect();
        assert_eq!(fold_map(&mut small), 0);
    }

    #[test]
    fn top_orders_by_bytes_then_key() {
        let entries = vec![(3u16, 10), (1, 10), (2, 30), (4, 1)];
        assert_eq!(top(entries.clone(), 3), vec![(2, 30), (1, 10), (3, 10)]);
        assert_eq!(top(entries, 10).len(), 4);
    }
}
