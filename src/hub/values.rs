//! Records grouped by equal filter in one field: the value counts that
//! term-frequency weights and the report's data-quality and privacy
//! sections read.
//!
//! Equal keyed filters are equal values, so the hub can count values
//! without knowing them. The groups are found by sorting a 64-bit
//! fingerprint of each filter with its record, then checking every
//! group's filters word for word: a fingerprint shared by different
//! filters (a collision) splits into the exact groups, so the counts are
//! exact. The hash map over the filters' words this replaces probed its
//! table at random once a record and compared filters by `memcmp`, once
//! per agency and once more over all records; the report now groups each
//! column once (docs/decisions.md §62).
//!
//! Never sees plaintext; never changes a filter.

use rayon::prelude::*;

use super::load::Filters;

/// The valid records of one field, grouped by equal filter.
pub struct EqualGroups {
    /// The records, group after group; ascending within each group.
    order: Vec<u32>,
    /// Where each group ends in `order`.
    ends: Vec<u32>,
}

/// A fingerprint of a filter's words (not keyed: it only sorts filters
/// the hub already holds).
#[inline]
fn fingerprint(words: &[u64]) -> u64 {
    let mut h = 0x243F_6A88_85A3_08D3u64;
    for &w in words {
        h = (h ^ w).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        h ^= h >> 29;
    }
    h
}

impl EqualGroups {
    /// Group the valid records of `f` by equal filter.
    pub fn of(f: &Filters) -> EqualGroups {
        Self::by(f, fingerprint)
    }

    /// [`EqualGroups::of`] with the fingerprint given (the tests make
    /// every filter collide).
    fn by(f: &Filters, fingerprint: impl Fn(&[u64]) -> u64 + Sync) -> EqualGroups {
        let n = f.valid.len();
        let mut keys: Vec<(u64, u32)> = (0..n)
            .into_par_iter()
            .filter(|&g| f.valid[g])
            .map(|g| (fingerprint(f.get(g)), g as u32))
            .collect();
        // Records are distinct, so the order is total: ascending records
        // within a fingerprint.
        keys.par_sort_unstable();
        let mut order = Vec::with_capacity(keys.len());
        let mut ends = Vec::new();
        let mut i = 0;
        while i < keys.len() {
            let h = keys[i].0;
            let j = i + keys[i..].partition_point(|k| k.0 == h);
            let run = &keys[i..j];
            // The others against the first: a record alone under its
            // fingerprint (most of a CLK's records) reads nothing.
            let first = f.get(run[0].1 as usize);
            if run[1..].iter().all(|k| f.get(k.1 as usize) == first) {
                order.extend(run.iter().map(|k| k.1));
                ends.push(order.len() as u32);
            } else {
                // A collision: the run's exact groups, records ascending
                // within each (the sort is stable and they came ascending).
                let mut members: Vec<u32> = run.iter().map(|k| k.1).collect();
                members.sort_by(|&x, &y| f.get(x as usize).cmp(f.get(y as usize)));
                for group in members.chunk_by(|&x, &y| f.get(x as usize) == f.get(y as usize)) {
                    order.extend_from_slice(group);
                    ends.push(order.len() as u32);
                }
            }
            i = j;
        }
        EqualGroups { order, ends }
    }

    /// How many valid records the field has.
    pub fn valid(&self) -> usize {
        self.order.len()
    }

    /// How many distinct values (groups) it has.
    pub fn distinct(&self) -> usize {
        self.ends.len()
    }

    /// Each group's records, ascending.
    pub fn iter(&self) -> impl Iterator<Item = &[u32]> {
        let starts = std::iter::once(0).chain(self.ends.iter().copied());
        starts
            .zip(self.ends.iter().copied())
            .map(|(s, e)| &self.order[s as usize..e as usize])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;
    use std::sync::Arc;

    /// A field of `values.len()` records of `words` words, record `g`
    /// holding `values[g]` (None: no value).
    fn field(values: &[Option<Vec<u64>>], words: usize) -> Filters {
        let mut data = Vec::new();
        for v in values {
            match v {
                Some(w) => data.extend_from_slice(w),
                None => data.extend(std::iter::repeat_n(0xdead_beef, words)),
            }
        }
        Filters {
            name: "f".into(),
            words,
            stride: words,
            offset: 0,
            data: Arc::new(data),
            pop: values
                .iter()
                .map(|v| {
                    v.as_ref()
                        .map_or(0, |w| w.iter().map(|x| x.count_ones()).sum())
                })
                .collect(),
            valid: values.iter().map(|v| v.is_some()).collect(),
            exact: false,
            fallback_for: None,
            date: None,
        }
    }

    /// The groups as a hash map over the filters finds them.
    fn by_map(f: &Filters) -> Vec<Vec<u32>> {
        let mut m: HashMap<&[u64], Vec<u32>> = HashMap::new();
        for g in 0..f.valid.len() {
            if f.valid[g] {
                m.entry(f.get(g)).or_default().push(g as u32);
            }
        }
        let mut groups: Vec<Vec<u32>> = m.into_values().collect();
        groups.sort();
        groups
    }

    fn sorted(g: &EqualGroups) -> Vec<Vec<u32>> {
        let mut v: Vec<Vec<u32>> = g.iter().map(|s| s.to_vec()).collect();
        v.sort();
        v
    }

    #[test]
    fn groups_are_the_records_of_each_distinct_filter() {
        // 3,000 records over about 700 values, some missing.
        let mut next = crate::testing::xorshift(0x9E37_79B9_7F4A_7C15u64);
        let pool: Vec<Vec<u64>> = (0..700).map(|_| (0..4).map(|_| next()).collect()).collect();
        let values: Vec<Option<Vec<u64>>> = (0..3000)
            .map(|_| {
                let r = next();
                (!r.is_multiple_of(10)).then(|| pool[((r >> 8) % 700) as usize].clone())
            })
            .collect();
        let f = field(&values, 4);
        let g = EqualGroups::of(&f);
        assert_eq!(sorted(&g), by_map(&f));
        assert_eq!(g.valid(), values.iter().filter(|v| v.is_some()).count());
        assert_eq!(g.distinct(), by_map(&f).len());
        for group in g.iter() {
            assert!(
                group.windows(2).all(|w| w[0] < w[1]),
                "ascending within a group"
            );
        }
    }

    #[test]
    fn filters_sharing_a_fingerprint_are_told_apart() {
        // Every filter given one fingerprint: the groups come from
        // comparing the filters alone.
        let values = vec![
            Some(vec![1, 2]),
            Some(vec![2, 1]),
            Some(vec![1, 2]),
            None,
            Some(vec![2, 1]),
            Some(vec![3, 3]),
            Some(vec![1, 2]),
        ];
        let f = field(&values, 2);
        let g = EqualGroups::by(&f, |_| 7);
        assert_eq!(sorted(&g), vec![vec![0, 2, 6], vec![1, 4], vec![5]]);
        assert_eq!(sorted(&g), by_map(&f));
        for group in g.iter() {
            assert!(
                group.windows(2).all(|w| w[0] < w[1]),
                "ascending within a group"
            );
        }
        // And with two fingerprints, each shared by two values.
        let g = EqualGroups::by(&f, |w| w[0] & 1);
        assert_eq!(sorted(&g), by_map(&f));
    }

    #[test]
    fn no_valid_record_gives_no_group() {
        let f = field(&[None, None], 1);
        let g = EqualGroups::of(&f);
        assert_eq!((g.valid(), g.distinct(), g.iter().count()), (0, 0, 0));
    }
}
