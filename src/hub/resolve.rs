//! Resolution: scored pairs into entities.
//!
//! Links are taken highest score first (ties broken by record order, so the
//! result is deterministic). Without deduplication a cluster may hold at most
//! one record per agency: with two agencies this is greedy one-to-one
//! matching, with more it is constrained clustering. With deduplication any
//! merge is allowed. Hub side: works on indices only.

use super::block::unpack;

/// Disjoint sets with an agency bitmask per set.
struct Sets {
    parent: Vec<u32>,
    mask: Vec<u64>,
    size: Vec<u32>,
}

impl Sets {
    fn find(&mut self, mut x: u32) -> u32 {
        while self.parent[x as usize] != x {
            let p = self.parent[x as usize];
            self.parent[x as usize] = self.parent[p as usize];
            x = p;
        }
        x
    }
}

/// The entities: a root index per record and each cluster's size.
#[derive(Debug, Clone)]
pub struct Resolution {
    /// Representative record of each record's cluster.
    pub root: Vec<u32>,
    /// Cluster size of each record's cluster.
    pub cluster_size: Vec<u32>,
    /// Merges made (links accepted).
    pub merges: u64,
    /// Above-threshold links refused because they would put two records of one agency in a cluster.
    pub refused: u64,
}

/// Resolve `pairs` whose `score` ≥ `threshold`. `agency_of` must hold at most 64 agencies.
pub fn resolve(
    agency_of: &[u16],
    pairs: &[u64],
    score: &[f32],
    threshold: f32,
    dedup: bool,
) -> Resolution {
    let n = agency_of.len();
    let mut sets = Sets {
        parent: (0..n as u32).collect(),
        mask: agency_of.iter().map(|&a| 1u64 << (a % 64)).collect(),
        size: vec![1; n],
    };
    let mut order: Vec<usize> = (0..pairs.len())
        .filter(|&i| score[i] >= threshold)
        .collect();
    order.sort_unstable_by(|&x, &y| score[y].total_cmp(&score[x]).then(pairs[x].cmp(&pairs[y])));
    let mut merges = 0;
    let mut refused = 0;
    for i in order {
        let (a, b) = unpack(pairs[i]);
        let (ra, rb) = (sets.find(a as u32), sets.find(b as u32));
        if ra == rb {
            continue;
        }
        if !dedup && sets.mask[ra as usize] & sets.mask[rb as usize] != 0 {
            refused += 1;
            continue;
        }
        // Union by size; the smaller index wins ties for determinism.
        let (big, small) = if sets.size[ra as usize] > sets.size[rb as usize]
            || (sets.size[ra as usize] == sets.size[rb as usize] && ra < rb)
        {
            (ra, rb)
        } else {
            (rb, ra)
        };
        sets.parent[small as usize] = big;
        sets.size[big as usize] += sets.size[small as usize];
        sets.mask[big as usize] |= sets.mask[small as usize];
        merges += 1;
    }
    let root: Vec<u32> = (0..n as u32).map(|x| sets.find(x)).collect();
    let cluster_size = root.iter().map(|&r| sets.size[r as usize]).collect();
    Resolution {
        root,
        cluster_size,
        merges,
        refused,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hub::block::pack;

    #[test]
    fn one_to_one_takes_the_best_link() {
        // Records 0,1 in agency 0; 2,3 in agency 1. 0-2 is best; 1-2 must be refused.
        let agency = [0u16, 0, 1, 1];
        let pairs = [pack(0, 2), pack(1, 2), pack(1, 3)];
        let r = resolve(&agency, &pairs, &[0.9, 0.8, 0.7], 0.5, false);
        assert_eq!(r.root[0], r.root[2]);
        assert_eq!(r.root[1], r.root[3]);
        assert_ne!(r.root[0], r.root[1]);
        assert_eq!(r.refused, 1);
    }

    #[test]
    fn clusters_hold_one_record_per_agency_unless_dedup() {
        let agency = [0u16, 1, 2, 0];
        let pairs = [pack(0, 1), pack(1, 2), pack(2, 3)];
        let r = resolve(&agency, &pairs, &[0.9, 0.9, 0.8], 0.5, false);
        assert_eq!(r.cluster_size[0], 3);
        assert_eq!(r.cluster_size[3], 1);
        let d = resolve(&agency, &pairs, &[0.9, 0.9, 0.8], 0.5, true);
        assert_eq!(d.cluster_size[3], 4);
    }

    #[test]
    fn below_threshold_stays_single() {
        let r = resolve(&[0, 1], &[pack(0, 1)], &[0.4], 0.5, false);
        assert_eq!(r.cluster_size, vec![1, 1]);
    }
}
