//! Resolution: scored pairs into entities.
//!
//! Links are taken highest score first (ties broken by record order, so the
//! result is deterministic). Without deduplication a cluster may hold at most
//! one record per agency: with two agencies this is greedy one-to-one
//! matching, with more it is constrained clustering. With deduplication any
//! merge is allowed.
//!
//! Agencies hold some people twice. One-to-one matching leaves the second
//! record single although it matches its person's record elsewhere as well
//! as the first does. With `attach` (the default in probabilistic mode), a
//! second pass goes over the links the first pass refused that score at
//! least the attachment score (match probability 0.999 by default: a second
//! record of one person in one agency is the exception, so it needs more
//! evidence than a first link), best first, and attaches a record that is
//! still single to the cluster it links to. An entity may then hold two
//! records of one agency, but two clusters are never merged through a
//! refused link (docs/decisions.md §11). Hub side: works on indices only.

use super::block::unpack;

/// Disjoint sets with an agency bitmask per set.
struct Sets {
    parent: Vec<u32>,
    mask: Vec<u64>,
    size: Vec<u32>,
}

impl Sets {
    /// Merge two roots: union by size, the smaller index wins ties (for
    /// determinism).
    fn union(&mut self, ra: u32, rb: u32) {
        let (big, small) = if self.size[ra as usize] > self.size[rb as usize]
            || (self.size[ra as usize] == self.size[rb as usize] && ra < rb)
        {
            (ra, rb)
        } else {
            (rb, ra)
        };
        self.parent[small as usize] = big;
        self.size[big as usize] += self.size[small as usize];
        self.mask[big as usize] |= self.mask[small as usize];
    }

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
    /// Of the refused links, those that attached a single record to a
    /// cluster already holding a record of its agency (a within-agency
    /// duplicate).
    pub attached: u64,
}

/// Resolve `pairs` whose `score` ≥ `threshold`. `agency_of` must hold at
/// most 64 agencies. `attach`: attach single records through refused links
/// scoring at least this (see the module docs); no effect with `dedup`.
pub fn resolve(
    agency_of: &[u16],
    pairs: &[u64],
    score: &[f32],
    threshold: f32,
    dedup: bool,
    attach: Option<f32>,
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
    let mut refused = Vec::new();
    for i in order {
        let (a, b) = unpack(pairs[i]);
        let (ra, rb) = (sets.find(a as u32), sets.find(b as u32));
        if ra == rb {
            continue;
        }
        if !dedup && sets.mask[ra as usize] & sets.mask[rb as usize] != 0 {
            refused.push(i);
            continue;
        }
        sets.union(ra, rb);
        merges += 1;
    }
    // Second pass: a record left single by the first pass joins the cluster
    // of its best refused link.
    let mut attached = 0;
    if let Some(min) = attach.filter(|_| !dedup) {
        for &i in refused.iter().filter(|&&i| score[i] >= min) {
            let (a, b) = unpack(pairs[i]);
            let (ra, rb) = (sets.find(a as u32), sets.find(b as u32));
            if ra == rb || (sets.size[ra as usize] > 1 && sets.size[rb as usize] > 1) {
                continue;
            }
            sets.union(ra, rb);
            merges += 1;
            attached += 1;
        }
    }
    let root: Vec<u32> = (0..n as u32).map(|x| sets.find(x)).collect();
    let cluster_size = root.iter().map(|&r| sets.size[r as usize]).collect();
    Resolution {
        root,
        cluster_size,
        merges,
        refused: refused.len() as u64,
        attached,
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
        let r = resolve(&agency, &pairs, &[0.9, 0.8, 0.7], 0.5, false, Some(0.5));
        assert_eq!(r.root[0], r.root[2]);
        assert_eq!(r.root[1], r.root[3]);
        assert_ne!(r.root[0], r.root[1]);
        assert_eq!(r.refused, 1);
    }

    #[test]
    fn clusters_hold_one_record_per_agency_unless_dedup() {
        let agency = [0u16, 1, 2, 0];
        let pairs = [pack(0, 1), pack(1, 2), pack(2, 3)];
        let r = resolve(&agency, &pairs, &[0.9, 0.9, 0.8], 0.5, false, None);
        assert_eq!(r.cluster_size[0], 3);
        assert_eq!(r.cluster_size[3], 1);
        let d = resolve(&agency, &pairs, &[0.9, 0.9, 0.8], 0.5, true, None);
        assert_eq!(d.cluster_size[3], 4);
    }

    #[test]
    fn below_threshold_stays_single() {
        let r = resolve(&[0, 1], &[pack(0, 1)], &[0.4], 0.5, false, Some(0.5));
        assert_eq!(r.cluster_size, vec![1, 1]);
    }

    #[test]
    fn a_duplicate_left_single_attaches_to_its_persons_cluster() {
        // Agency 0 holds one person twice (0, 1); agency 1 once (2).
        // Agency 1 also holds 3, linked to 4 of agency 0.
        let agency = [0u16, 0, 1, 1, 0];
        let pairs = [pack(0, 2), pack(1, 2), pack(3, 4), pack(1, 3)];
        let score = [0.99, 0.98, 0.97, 0.6];
        let one = resolve(&agency, &pairs, &score, 0.5, false, None);
        assert_eq!(
            one.cluster_size[1], 1,
            "one-to-one leaves the duplicate single"
        );
        assert_eq!((one.refused, one.attached), (2, 0));
        let r = resolve(&agency, &pairs, &score, 0.5, false, Some(0.5));
        assert_eq!(r.root[1], r.root[2], "the duplicate joins its person");
        assert_eq!(r.cluster_size[0], 3);
        // 1-3 was refused too, but 1 is no longer single: nothing chains.
        assert_ne!(r.root[1], r.root[3]);
        assert_eq!(r.cluster_size[3], 2);
        assert_eq!((r.refused, r.attached), (2, 1));
        // Attachment asks for its own, higher score.
        let strict = resolve(&agency, &pairs, &score, 0.5, false, Some(0.985));
        assert_eq!(strict.cluster_size[1], 1);
        assert_eq!(strict.attached, 0);
    }

    #[test]
    fn refused_links_never_merge_two_clusters() {
        // 0-2 and 1-3 are pairs; 1-2 (refused) joins two clusters of two.
        let agency = [0u16, 0, 1, 1];
        let pairs = [pack(0, 2), pack(1, 3), pack(1, 2)];
        let r = resolve(&agency, &pairs, &[0.9, 0.9, 0.8], 0.5, false, Some(0.5));
        assert_ne!(r.root[0], r.root[1]);
        assert_eq!(r.attached, 0);
    }

    #[test]
    fn first_pass_links_win_over_attachment() {
        // 1 links to 3 in the first pass even though its refused link to
        // 2 scores higher: attachment only takes records left single.
        let agency = [0u16, 0, 1, 1];
        let pairs = [pack(0, 2), pack(1, 2), pack(1, 3)];
        let r = resolve(&agency, &pairs, &[0.9, 0.8, 0.7], 0.5, false, Some(0.5));
        assert_eq!(r.root[1], r.root[3]);
        assert_eq!(r.cluster_size[0], 2);
        assert_eq!(r.attached, 0);
    }
}
