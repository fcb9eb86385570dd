//! A hash table of byte sums, made for the aggregation's hot path: open addressing with linear
//! probing, each slot holding its key, its sum and a hash tag in one place, and a prefetch
//! hint so that a datagram's records can ask for all their slots before touching any. With
//! hundreds of thousands of keys the tables outgrow the CPU caches, and waiting for memory one
//! record at a time was most of the cost per record; this keeps several misses in flight.

use rustc_hash::FxBuildHasher;
use std::fmt;
use std::hash::{BuildHasher, Hash};

/// A sum per key. Keys are small `Copy` values; an empty slot holds `K::default()` and tag 0.
#[derive(Clone)]
pub struct SumTable<K> {
    slots: Vec<Slot<K>>,
    len: usize,
    /// `64 - log2(slots.len())`: the index is the top bits of the mixed hash.
    shift: u32,
}

#[derive(Clone, Copy)]
struct Slot<K> {
    /// Low bits of the hash, never 0 for a used slot.
    tag: u32,
    key: K,
    sum: u64,
}

const MIN_SLOTS: usize = 16;
/// Maximum load: 3/4 of the slots (more probes beyond; more memory below).
const LOAD_NUM: usize = 3;
const LOAD_DEN: usize = 4;

impl<K> Default for SumTable<K> {
    fn default() -> Self {
        SumTable {
            slots: Vec::new(),
            len: 0,
            shift: 64,
        }
    }
}

impl<K: Copy + Eq + Hash + Default> SumTable<K> {
    /// The hash of a key, for [`SumTable::prefetch`] and [`SumTable::add_hashed`].
    #[inline]
    pub fn hash_of(key: &K) -> u64 {
        FxBuildHasher.hash_one(key)
    }

    #[inline]
    fn index(&self, hash: u64) -> usize {
        // Fibonacci hashing spreads the weak low bits of FxHash over the index.
        (hash.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> self.shift) as usize
    }

    #[inline]
    fn tag(hash: u64) -> u32 {
        (hash as u32) | 1
    }

    /// Asks the CPU to fetch the slot `hash` starts probing at; no effect on the contents.
    #[inline]
    pub fn prefetch(&self, hash: u64) {
        if self.slots.is_empty() {
            return;
        }
        let slot = &self.slots[self.index(hash)];
        #[cfg(target_arch = "x86_64")]
        // SAFETY: a prefetch is only a hint; the address is that of a live slot.
        unsafe {
            std::arch::x86_64::_mm_prefetch(
                (slot as *const Slot<K>).cast::<i8>(),
                std::arch::x86_64::_MM_HINT_T0,
            );
        }
        #[cfg(not(target_arch = "x86_64"))]
        let _ = slot;
    }

    /// Adds `sum` to `key`'s sum; true if the key is new.
    #[inline]
    pub fn add(&mut self, key: K, sum: u64) -> bool {
        self.add_hashed(Self::hash_of(&key), key, sum)
    }

    /// [`SumTable::add`] with the key's hash already computed.
    #[inline]
    pub fn add_hashed(&mut self, hash: u64, key: K, sum: u64) -> bool {
        if (self.len + 1) * LOAD_DEN > self.slots.len() * LOAD_NUM {
            self.grow();
        }
        let tag = Self::tag(hash);
        let mask = self.slots.len() - 1;
        let mut i = self.index(hash);
        loop {
            let slot = &mut self.slots[i];
            if slot.tag == 0 {
                *slot = Slot { tag, key, sum };
                self.len += 1;
                return true;
            }
            if slot.tag == tag && slot.key == key {
                // Saturating: a hostile exporter's byte counts must not wrap a sum around.
                slot.sum = slot.sum.saturating_add(sum);
                return false;
            }
            i = (i + 1) & mask;
        }
    }

    fn grow(&mut self) {
        let slots = (self.slots.len() * 2).max(MIN_SLOTS);
        self.rebuild(slots);
    }

    /// Re-inserts every entry into a table of `slots` slots (a power of two).
    fn rebuild(&mut self, slots: usize) {
        let old = std::mem::replace(
            &mut self.slots,
            vec![
                Slot {
                    tag: 0,
                    key: K::default(),
                    sum: 0,
                };
                slots
            ],
        );
        self.shift = 64 - slots.trailing_zeros();
        self.len = 0;
        for slot in old.into_iter().filter(|s| s.tag != 0) {
            self.add_hashed(Self::hash_of(&slot.key), slot.key, slot.sum);
        }
    }

    /// The sum of `key`, if it is in the table.
    pub fn get(&self, key: &K) -> Option<u64> {
        if self.slots.is_empty() {
            return None;
        }
        let hash = Self::hash_of(key);
        let tag = Self::tag(hash);
        let mask = self.slots.len() - 1;
        let mut i = self.index(hash);
        loop {
            let slot = &self.slots[i];
            if slot.tag == 0 {
                return None;
            }
            if slot.tag == tag && slot.key == *key {
                return Some(slot.sum);
            }
            i = (i + 1) & mask;
        }
    }

    /// Keeps the entries `keep` says yes to, in a table sized for them.
    pub fn retain(&mut self, mut keep: impl FnMut(&K, u64) -> bool) {
        let kept: Vec<(K, u64)> = self.iter().filter(|(k, s)| keep(k, *s)).collect();
        let slots = ((kept.len() * 4 / 3) + 1)
            .next_power_of_two()
            .max(MIN_SLOTS);
        self.slots.clear();
        self.len = 0;
        self.rebuild(slots);
        for (k, s) in kept {
            self.add(k, s);
        }
    }
}

impl<K: Copy> SumTable<K> {
    /// Number of keys.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Every (key, sum), in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = (K, u64)> + '_ {
        self.slots
            .iter()
            .filter(|s| s.tag != 0)
            .map(|s| (s.key, s.sum))
    }

    /// Every sum.
    pub fn values(&self) -> impl Iterator<Item = u64> + '_ {
        self.slots.iter().filter(|s| s.tag != 0).map(|s| s.sum)
    }
}

impl<K: Copy + Eq + Hash + Default> FromIterator<(K, u64)> for SumTable<K> {
    fn from_iter<I: IntoIterator<Item = (K, u64)>>(entries: I) -> Self {
        let mut table = SumTable::default();
        for (k, s) in entries {
            table.add(k, s);
        }
        table
    }
}

impl<K: Copy + Eq + Hash + Default> PartialEq for SumTable<K> {
    fn eq(&self, other: &Self) -> bool {
        self.len == other.len && self.iter().all(|(k, s)| other.get(&k) == Some(s))
    }
}

impl<K: Copy + fmt::Debug> fmt::Debug for SumTable<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn sums_like_a_hash_map() {
        let mut table: SumTable<u32> = SumTable::default();
        let mut reference: HashMap<u32, u64> = HashMap::new();
        let mut x = 12345u64;
        for _ in 0..50_000 {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let key = (x >> 40) as u32 % 7000;
            let new = table.add(key, x & 0xff);
            let old = reference.insert(key, reference.get(&key).copied().unwrap_or(0) + (x & 0xff));
            assert_eq!(new, old.is_none());
        }
        assert_eq!(table.len(), reference.len());
        for (k, v) in &reference {
            assert_eq!(table.get(k), Some(*v));
        }
        assert_eq!(table.get(&99_999), None);
        assert_eq!(table.iter().count(), reference.len());
        assert_eq!(table.values().sum::<u64>(), reference.values().sum::<u64>());
    }

    #[test]
    fn retain_keeps_what_it_is_told() {
        let mut table: SumTable<u16> = (0..1000u16).map(|k| (k, u64::from(k))).collect();
        table.retain(|_, s| s % 3 == 0);
        assert_eq!(table.len(), 334);
        assert_eq!(table.get(&999), Some(999));
        assert_eq!(table.get(&998), None);
        // Still usable after shrinking.
        assert!(table.add(998, 1));
        assert!(!table.add(999, 1));
        assert_eq!(table.get(&999), Some(1000));
    }

    #[test]
    fn equality_ignores_order_and_capacity() {
        let a: SumTable<u8> = [(1, 10), (2, 20)].into_iter().collect();
        let mut b: SumTable<u8> = (0..100u8).map(|k| (k, 1)).collect();
        b.retain(|k, _| *k == 1 || *k == 2);
        b.add(1, 9);
        b.add(2, 19);
        assert_eq!(a, b);
        b.add(3, 1);
        assert_ne!(a, b);
        assert!(SumTable::<u8>::default().is_empty());
        assert_eq!(SumTable::<u8>::default().get(&1), None);
    }
}
