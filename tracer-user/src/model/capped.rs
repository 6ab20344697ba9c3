//! A map with a fixed capacity: past it, the entry seen least recently is evicted and counted.
//! Every per-site, per-channel or per-goroutine table of the model is one, so that a session
//! attached for a week holds no more than one attached for an hour.

use std::{hash::Hash, num::NonZeroUsize};

use lru::LruCache;

pub struct Capped<K: Hash + Eq, V> {
    map: LruCache<K, V>,
    evicted: u64,
}

impl<K: Hash + Eq, V> Capped<K, V> {
    pub fn new(capacity: usize) -> Self {
        Capped {
            map: LruCache::new(NonZeroUsize::new(capacity).unwrap_or(NonZeroUsize::MIN)),
            evicted: 0,
        }
    }

    /// Makes room for `key` if it is new and the map is full.
    fn make_room(&mut self, key: &K) {
        if !self.map.contains(key) && self.map.len() == self.map.cap().get() {
            self.map.pop_lru();
            self.evicted += 1;
        }
    }

    /// The entry for `key` (marked as seen now), inserted from `default` if absent.
    pub fn entry(&mut self, key: K, default: impl FnOnce() -> V) -> &mut V {
        self.make_room(&key);
        self.map.get_or_insert_mut(key, default)
    }

    /// Inserts or replaces (marked as seen now).
    pub fn insert(&mut self, key: K, value: V) {
        self.make_room(&key);
        self.map.put(key, value);
    }

    pub fn get(&self, key: &K) -> Option<&V> {
        self.map.peek(key)
    }

    /// Looks an entry up without marking it as seen.
    pub fn get_mut(&mut self, key: &K) -> Option<&mut V> {
        self.map.peek_mut(key)
    }

    pub fn remove(&mut self, key: &K) -> Option<V> {
        self.map.pop(key)
    }

    pub fn contains(&self, key: &K) -> bool {
        self.map.contains(key)
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Entries dropped to stay within capacity since creation.
    pub fn evicted(&self) -> u64 {
        self.evicted
    }

    /// Every entry, most recently seen first.
    pub fn iter(&self) -> impl Iterator<Item = (&K, &V)> {
        self.map.iter()
    }

    pub fn keys(&self) -> impl Iterator<Item = &K> {
        self.map.iter().map(|(k, _)| k)
    }

    pub fn values_mut(&mut self) -> impl Iterator<Item = &mut V> {
        self.map.iter_mut().map(|(_, v)| v)
    }

    pub fn iter_mut(&mut self) -> impl Iterator<Item = (&K, &mut V)> {
        self.map.iter_mut()
    }

    /// Keeps the entries for which `keep` is true (not counted as evicted: they ended).
    pub fn retain(&mut self, mut keep: impl FnMut(&K, &mut V) -> bool)
    where
        K: Clone,
    {
        let gone: Vec<K> = self
            .map
            .iter_mut()
            .filter_map(|(k, v)| (!keep(k, v)).then(|| k.clone()))
            .collect();
        for k in gone {
            self.map.pop(&k);
        }
    }
}

impl<K: Hash + Eq, V> std::fmt::Debug for Capped<K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Capped({} of {}, {} evicted)",
            self.map.len(),
            self.map.cap(),
            self.evicted
        )
    }
}

#[cfg(test)]
mod tests {
    use super::Capped;

    #[test]
    fn evicts_the_least_recently_seen() {
        let mut m = Capped::new(2);
        *m.entry(1, || 0) += 1;
        *m.entry(2, || 0) += 1;
        *m.entry(1, || 0) += 1;
        *m.entry(3, || 0) += 1;
        assert!(m.contains(&1) && m.contains(&3) && !m.contains(&2));
        assert_eq!(m.evicted(), 1);
        assert_eq!(m.get(&1), Some(&2));
        m.retain(|k, _| *k != 1);
        assert_eq!(m.len(), 1);
        assert_eq!(m.evicted(), 1);
    }
}
