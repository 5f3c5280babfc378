//! A hash map keyed by short byte strings, for the encoder's caches.
//!
//! Most cache keys (q-grams, names, postcodes, dates) are under 16 bytes.
//! Those are packed into a `u128` held in the table itself, so a lookup
//! compares integers instead of chasing a pointer to the key; longer keys go
//! to an ordinary map. Agency side: keys are plaintext fragments and never
//! leave the process.

use rustc_hash::FxHashMap;

/// Map from byte strings to `V`, fast for keys of at most 15 bytes.
#[derive(Clone)]
pub struct ByteMap<V> {
    short: FxHashMap<u128, V>,
    long: FxHashMap<Box<[u8]>, V>,
}

impl<V> Default for ByteMap<V> {
    fn default() -> Self {
        ByteMap {
            short: FxHashMap::default(),
            long: FxHashMap::default(),
        }
    }
}

/// `key` packed with its length in the top byte, when it fits (at most
/// 15 bytes).
#[inline]
pub(crate) fn pack(key: &[u8]) -> Option<u128> {
    if key.len() > 15 {
        return None;
    }
    let mut b = [0u8; 16];
    b[..key.len()].copy_from_slice(key);
    b[15] = key.len() as u8;
    Some(u128::from_le_bytes(b))
}

impl<V> ByteMap<V> {
    /// The value stored under `key`.
    #[inline]
    pub fn get(&self, key: &[u8]) -> Option<&V> {
        match pack(key) {
            Some(p) => self.short.get(&p),
            None => self.long.get(key),
        }
    }

    /// Store `value` under `key` and return a reference to it.
    #[inline]
    pub fn insert(&mut self, key: &[u8], value: V) -> &V {
        match pack(key) {
            Some(p) => self.short.entry(p).insert_entry(value).into_mut(),
            None => self.long.entry(key.into()).insert_entry(value).into_mut(),
        }
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.short.len() + self.long.len()
    }

    /// Whether the map is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Remove every entry.
    pub fn clear(&mut self) {
        self.short.clear();
        self.long.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_of_every_length_round_trip_and_stay_distinct() {
        let mut m = ByteMap::default();
        // Keys that differ only in length or in trailing zero bytes must
        // not collide after packing.
        let keys: Vec<Vec<u8>> = (0..40)
            .flat_map(|n| [vec![0u8; n], vec![b'a'; n]])
            .collect();
        for (i, k) in keys.iter().enumerate() {
            assert_eq!(*m.insert(k, i), i);
        }
        // [] appears twice (n = 0): the later insert wins.
        assert_eq!(m.len(), keys.len() - 1);
        for (i, k) in keys.iter().enumerate().skip(2) {
            assert_eq!(m.get(k), Some(&i), "key of {} bytes", k.len());
        }
        assert_eq!(m.get(&[]), Some(&1));
        assert_eq!(m.get(b"b"), None);
        assert_eq!(m.get(&[b'a'; 16][..]), Some(&33));
        m.clear();
        assert!(m.is_empty());
        assert_eq!(m.get(b"a"), None);
    }
}
