//! The encoder's token cache: from a (salted) token to its keyed hashes.
//!
//! A token's bit positions follow from two numbers per filter (double
//! hashing: `(h1 + j·h2) mod l`), so a token seen before costs a lookup,
//! not an HMAC. Salted tokens (year of birth ‖ q-gram) number about a
//! hundred thousand per field and thread: the table is out of L2, and each
//! lookup is a cache miss. So the common case gets a table of its own:
//! tokens of at most 15 bytes packed into a `u128`, stored in 32-byte
//! slots (two to a cache line, open addressing), whose home slots can be
//! prefetched for all of a value's tokens before any is looked up, so that
//! their misses overlap. Anything else (longer tokens, BLAKE2b word hashes,
//! positions past `u32`) goes to a [`ByteMap`].
//!
//! Agency side: keys are plaintext fragments; they never leave the process
//! and are dropped with the encoder.

use std::borrow::Cow;

use super::bytemap::ByteMap;
use super::hash::Hashed;

/// What a token hashes to: the CLK's hash and the field filter's, if the
/// field has its own filter.
pub type Hashes = (Hashed, Option<Hashed>);

/// A slot: the packed token (0 when empty) and each filter's `(h1, h2)`
/// (`ff[0] == NONE` when the field has no filter of its own).
#[derive(Clone, Copy, Default)]
#[repr(C, align(32))]
struct Slot {
    key: u128,
    clk: [u32; 2],
    ff: [u32; 2],
}

/// In [`Slot::ff`]: no field filter.
const NONE: u32 = u32::MAX;

/// A packed token: [`ByteMap`]'s packing (its bytes, its length in byte
/// 15) with bit 127 set, so that no token packs to 0, the empty slot.
/// `None` past 15 bytes.
#[inline]
pub fn pack(token: &[u8]) -> Option<u128> {
    super::bytemap::pack(token).map(|k| k | 1 << 127)
}

/// The cache: packed tokens in slots, the rest in a map.
#[derive(Clone)]
pub struct TokenCache {
    slots: Vec<Slot>,
    len: usize,
    other: ByteMap<Hashes>,
}

impl Default for TokenCache {
    fn default() -> Self {
        TokenCache {
            slots: vec![Slot::default(); 1 << 12],
            len: 0,
            other: ByteMap::default(),
        }
    }
}

/// `(h1, h2)` of a double hash, if both fit a slot.
#[inline]
fn small(h: &Hashed) -> Option<[u32; 2]> {
    match *h {
        Hashed::Pair(h1, h2) if h1 < NONE as u64 && h2 < NONE as u64 => {
            Some([h1 as u32, h2 as u32])
        }
        _ => None,
    }
}

impl TokenCache {
    /// The home slot of `key`.
    #[inline]
    fn home(&self, key: u128) -> usize {
        let x = (key as u64) ^ ((key >> 64) as u64).rotate_left(29);
        let h = x.wrapping_mul(0x9E37_79B9_7F4A_7C15);
        (h >> 32) as usize & (self.slots.len() - 1)
    }

    /// The slot holding `key`, or the empty slot where it would go (open
    /// addressing, linear probing; the table is never full).
    #[inline]
    fn find(&self, key: u128) -> usize {
        let mask = self.slots.len() - 1;
        let mut i = self.home(key);
        while self.slots[i].key != 0 && self.slots[i].key != key {
            i = (i + 1) & mask;
        }
        i
    }

    /// Ask for `key`'s home slot to be brought into cache.
    #[inline]
    pub fn prefetch(&self, key: u128) {
        #[cfg(target_arch = "x86_64")]
        {
            let p = self.slots.as_ptr().wrapping_add(self.home(key));
            // SAFETY: a prefetch of an address in the table never faults.
            unsafe {
                std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(
                    p as *const i8,
                )
            };
        }
    }

    /// The hashes stored for `token` (`key` its packing, if it has one):
    /// built from a slot, or borrowed from the map (word hashes are not
    /// copied).
    #[inline]
    pub fn get(&self, token: &[u8], key: Option<u128>) -> Option<Cow<'_, Hashes>> {
        let Some(key) = key else {
            return self.other.get(token).map(Cow::Borrowed);
        };
        let s = &self.slots[self.find(key)];
        if s.key == key {
            let ff = (s.ff[0] != NONE).then(|| Hashed::Pair(s.ff[0] as u64, s.ff[1] as u64));
            return Some(Cow::Owned((
                Hashed::Pair(s.clk[0] as u64, s.clk[1] as u64),
                ff,
            )));
        }
        // Not in the slots; a hash too large for them is in the map.
        if self.other.is_empty() {
            None
        } else {
            self.other.get(token).map(Cow::Borrowed)
        }
    }

    /// Store `hashes` for `token` (`key` its packing, if it has one).
    pub fn insert(&mut self, token: &[u8], key: Option<u128>, hashes: Hashes) {
        let ff = match &hashes.1 {
            None => Some([NONE, 0]),
            Some(h) => small(h),
        };
        let (Some(key), Some(clk), Some(ff)) = (key, small(&hashes.0), ff) else {
            self.other.insert(token, hashes);
            return;
        };
        if 2 * (self.len + 1) > self.slots.len() {
            self.grow();
        }
        let i = self.find(key);
        if self.slots[i].key == 0 {
            self.len += 1;
        }
        self.slots[i] = Slot { key, clk, ff };
    }

    /// Twice the slots, every entry placed again.
    fn grow(&mut self) {
        let old = std::mem::take(&mut self.slots);
        self.slots = vec![Slot::default(); old.len() * 2];
        for s in old.into_iter().filter(|s| s.key != 0) {
            let i = self.find(s.key);
            self.slots[i] = s;
        }
    }

    /// Number of tokens stored.
    pub fn len(&self) -> usize {
        self.len + self.other.len()
    }

    /// Whether nothing is stored.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Remove every entry (the slots keep their size).
    pub fn clear(&mut self) {
        self.slots.fill(Slot::default());
        self.len = 0;
        self.other.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair(h: &Hashed) -> (u64, u64) {
        match *h {
            Hashed::Pair(a, b) => (a, b),
            Hashed::Words(_) => panic!("words"),
        }
    }

    #[test]
    fn every_kind_of_token_and_hash_comes_back_as_stored() {
        let mut c = TokenCache::default();
        // Short and long tokens (packed or not), tokens differing only in
        // length or trailing zeros, hashes that fit a slot and ones that do
        // not, with and without a field filter, word hashes; enough of them
        // that the slots grow several times.
        let mut tokens: Vec<Vec<u8>> = (0..20_000u32)
            .map(|i| {
                let n = (i % 24) as usize;
                let mut t = vec![0u8; n];
                for (j, b) in t.iter_mut().enumerate() {
                    *b = (i >> (j % 4 * 8)) as u8;
                }
                t
            })
            .collect();
        // A token always hashes the same way: each stored once.
        tokens.sort();
        tokens.dedup();
        let hashes = |i: usize| -> Hashes {
            let i = i as u64;
            let clk = match i % 5 {
                0 => Hashed::Words(vec![i as u16, 7]),
                1 => Hashed::Pair(u32::MAX as u64 + i, 3),
                _ => Hashed::Pair(i % 1024, ((i * 7) % 1024) | 1),
            };
            let ff = (!i.is_multiple_of(3)).then_some(Hashed::Pair(i % 512, i % 511 + 1));
            (clk, ff)
        };
        for (i, t) in tokens.iter().enumerate() {
            c.insert(t, pack(t), hashes(i));
        }
        assert_eq!(c.len(), tokens.len());
        for (i, t) in tokens.iter().enumerate() {
            let got = c.get(t, pack(t)).expect("stored");
            let exp = hashes(i);
            match (&got.0, &exp.0) {
                (Hashed::Words(a), Hashed::Words(b)) => assert_eq!(a, b),
                (a, b) => assert_eq!(pair(a), pair(b), "token {t:?}"),
            }
            assert_eq!(got.1.as_ref().map(pair), exp.1.as_ref().map(pair));
        }
        assert!(c.get(b"absent", pack(b"absent")).is_none());
        assert!(c.get(&[9u8; 20], None).is_none());
        c.clear();
        assert!(c.is_empty());
        assert!(c.get(&tokens[5], pack(&tokens[5])).is_none());
    }

    #[test]
    fn packing_keeps_lengths_apart_and_never_gives_zero() {
        assert_ne!(pack(b""), Some(0));
        assert_ne!(pack(b""), pack(b"\0"));
        assert_ne!(pack(b"a"), pack(b"a\0"));
        assert_eq!(pack(&[1u8; 16]), None);
    }
}
