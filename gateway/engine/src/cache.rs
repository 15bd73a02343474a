//! A bounded least-recently-used cache. Entries are evicted only by [`Lru::trim`], which the
//! engine calls after a step's writes are committed, so an entry never leaves while it holds
//! changes the store does not have yet.

use std::collections::BTreeMap;

/// At most `capacity` entries after each [`Lru::trim`].
#[derive(Debug)]
pub(crate) struct Lru<K: Ord + Clone, V> {
    entries: BTreeMap<K, (V, u64)>,
    order: BTreeMap<u64, K>,
    tick: u64,
    capacity: usize,
}

impl<K: Ord + Clone, V> Lru<K, V> {
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            entries: BTreeMap::new(),
            order: BTreeMap::new(),
            tick: 0,
            capacity: capacity.max(1),
        }
    }

    fn touch(&mut self, k: &K) {
        if let Some((_, t)) = self.entries.get_mut(k) {
            self.order.remove(t);
            self.tick += 1;
            *t = self.tick;
            self.order.insert(self.tick, k.clone());
        }
    }

    pub(crate) fn contains(&self, k: &K) -> bool {
        self.entries.contains_key(k)
    }

    pub(crate) fn get_mut(&mut self, k: &K) -> Option<&mut V> {
        self.touch(k);
        self.entries.get_mut(k).map(|(v, _)| v)
    }

    pub(crate) fn get(&mut self, k: &K) -> Option<&V> {
        self.touch(k);
        self.entries.get(k).map(|(v, _)| v)
    }

    /// Without marking it used (for `&self` readers).
    pub(crate) fn get_ref(&self, k: &K) -> Option<&V> {
        self.entries.get(k).map(|(v, _)| v)
    }

    pub(crate) fn insert(&mut self, k: K, v: V) {
        self.remove(&k);
        self.tick += 1;
        self.order.insert(self.tick, k.clone());
        self.entries.insert(k, (v, self.tick));
    }

    pub(crate) fn remove(&mut self, k: &K) -> Option<V> {
        let (v, t) = self.entries.remove(k)?;
        self.order.remove(&t);
        Some(v)
    }

    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    /// Evicts the least recently used entries beyond the capacity.
    pub(crate) fn trim(&mut self) {
        while self.entries.len() > self.capacity {
            let Some((_, k)) = self.order.pop_first() else {
                break;
            };
            self.entries.remove(&k);
        }
    }

    pub(crate) fn clear(&mut self) {
        self.entries.clear();
        self.order.clear();
    }

    pub(crate) fn values_mut(&mut self) -> impl Iterator<Item = &mut V> {
        self.entries.values_mut().map(|(v, _)| v)
    }

    pub(crate) fn values(&self) -> impl Iterator<Item = &V> {
        self.entries.values().map(|(v, _)| v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn evicts_least_recently_used_only_on_trim() {
        let mut c = Lru::new(2);
        c.insert(1, "a");
        c.insert(2, "b");
        c.insert(3, "c");
        assert_eq!(c.len(), 3, "no eviction before trim");
        assert!(c.get(&1).is_some());
        c.trim();
        assert_eq!(c.len(), 2);
        assert!(c.contains(&1) && c.contains(&3) && !c.contains(&2));
        c.clear();
        assert_eq!(c.len(), 0);
    }
}
