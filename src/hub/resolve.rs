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
//! refused link (docs/decisions.md §11).
//!
//! A refused link that clears the threshold but not the attachment score
//! may still attach when the caller *confirms* it: the single record and
//! the cluster's record of the same agency, compared with each other, score
//! at least the attachment score as one person (docs/decisions.md §18). A
//! second record of a person usually resembles the first more than either
//! resembles the person's record elsewhere.
//!
//! With `prior`, a refused link also attaches when its odds, multiplied by
//! the single record's agency's estimated duplicate rate, clear the
//! threshold: the link's record-level odds treat the cluster's record as
//! free, though it already has its partner in that agency, and a second
//! one is there only at the agency's duplicate rate, estimated from the
//! refused links themselves (`duplicate_rates`, docs/decisions.md §22).
//! Hub side: works on indices only; the confirming comparison is the
//! caller's.

use rustc_hash::{FxHashMap, FxHashSet};

use super::block::{pack, unpack};

/// Scores pairs of records of one agency ([`pack`]ed) as one person:
/// a probability per pair.
pub type Confirm<'a> = dyn Fn(&[u64]) -> Vec<f32> + Sync + 'a;

/// How the second pass attaches duplicates.
#[derive(Clone, Copy)]
pub struct Attach<'a> {
    /// A refused link scoring at least this attaches on its own.
    pub min: f32,
    /// Weigh each refused link by its agency's estimated duplicate rate
    /// ([`duplicate_rates`]) and attach when that probability clears the
    /// threshold (docs/decisions.md §22).
    pub prior: bool,
    /// Optional confirmation: given pairs of records of one agency
    /// ([`pack`]ed), the probability that each pair is one person.
    pub confirm: Option<&'a Confirm<'a>>,
}

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

    /// For a link between `a` and `b`: when exactly one of them is single,
    /// that record and the root of the other's cluster.
    fn single_side(&mut self, a: usize, b: usize) -> Option<(usize, u32)> {
        let (ra, rb) = (self.find(a as u32), self.find(b as u32));
        match (self.size[ra as usize] == 1, self.size[rb as usize] == 1) {
            (true, false) => Some((a, rb)),
            (false, true) => Some((b, ra)),
            _ => None,
        }
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
    /// Of those, the ones attached through confirmation (the link alone
    /// scored below the attachment score).
    pub confirmed: u64,
    /// Of those, the ones attached through the duplicate rate (neither the
    /// link alone nor a confirmation reached the attachment score).
    pub by_rate: u64,
    /// Estimated share of each agency's records that are a second record
    /// of a person (empty without [`Attach::prior`]).
    pub duplicate_rate: Vec<f64>,
}

/// Resolve `pairs` whose `score` ≥ `threshold`. `agency_of` must hold at
/// most 64 agencies. `attach`: attach single records through refused links
/// (see the module docs); no effect with `dedup`.
pub fn resolve(
    agency_of: &[u16],
    pairs: &[u64],
    score: &[f32],
    threshold: f32,
    dedup: bool,
    attach: Option<Attach>,
) -> Resolution {
    let order = ranked(pairs, score, threshold);
    resolve_ranked(agency_of, pairs, score, &order, threshold, dedup, attach)
}

/// The indices of the pairs whose `score` ≥ `threshold`, best first, ties
/// in pair order: the order [`resolve`] takes links in. Those of a higher
/// threshold are a prefix of these (cut where the score falls below it).
pub fn ranked(pairs: &[u64], score: &[f32], threshold: f32) -> Vec<usize> {
    let mut order: Vec<usize> = (0..pairs.len())
        .filter(|&i| score[i] >= threshold)
        .collect();
    order.sort_unstable_by(|&x, &y| score[y].total_cmp(&score[x]).then(pairs[x].cmp(&pairs[y])));
    order
}

/// [`resolve`] with its links already ranked: `order` must be what
/// [`ranked`] gives at `threshold` (a prefix of a lower threshold's).
/// Resolving one set of pairs at several thresholds then sorts once.
pub fn resolve_ranked(
    agency_of: &[u16],
    pairs: &[u64],
    score: &[f32],
    order: &[usize],
    threshold: f32,
    dedup: bool,
    attach: Option<Attach>,
) -> Resolution {
    debug_assert!(order.iter().all(|&i| score[i] >= threshold));
    let n = agency_of.len();
    let mut sets = Sets {
        parent: (0..n as u32).collect(),
        mask: agency_of.iter().map(|&a| 1u64 << (a % 64)).collect(),
        size: vec![1; n],
    };
    let mut merges = 0;
    let mut refused = Vec::new();
    for &i in order {
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
    let (mut attached, mut confirmed, mut by_rate) = (0, 0, 0);
    let mut duplicate_rate = Vec::new();
    if let Some(att) = attach.filter(|_| !dedup) {
        let confirm = att
            .confirm
            .map(|f| confirmations(&mut sets, agency_of, pairs, score, &refused, att.min, f));
        // The odds factor per agency: a refused link's record-level odds
        // treat its cluster's record as free, but that record already has
        // its partner in the single record's agency; a second one is
        // there with the agency's duplicate rate.
        if att.prior {
            duplicate_rate = duplicate_rates(&mut sets, agency_of, pairs, score, &refused);
        }
        let need = odds(threshold.clamp(1e-6, 1.0 - 1e-6));
        let rated: Option<Vec<bool>> = att.prior.then(|| {
            refused
                .iter()
                .map(|&i| {
                    let (a, b) = unpack(pairs[i]);
                    sets.single_side(a, b).is_some_and(|(single, _)| {
                        odds(score[i]) * duplicate_rate[agency_of[single] as usize] >= need
                    })
                })
                .collect()
        });
        for (j, &i) in refused.iter().enumerate() {
            let alone = score[i] >= att.min;
            let confirmed_here = !alone && confirm.as_ref().is_some_and(|c| c[j] >= att.min);
            let rate_here = rated.as_ref().is_some_and(|r| r[j]);
            if !alone && !confirmed_here && !rate_here {
                continue;
            }
            let (a, b) = unpack(pairs[i]);
            let (ra, rb) = (sets.find(a as u32), sets.find(b as u32));
            if ra == rb || (sets.size[ra as usize] > 1 && sets.size[rb as usize] > 1) {
                continue;
            }
            sets.union(ra, rb);
            merges += 1;
            attached += 1;
            confirmed += u64::from(confirmed_here);
            by_rate += u64::from(!alone && !confirmed_here);
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
        confirmed,
        by_rate,
        duplicate_rate,
    }
}

/// Odds of a probability (capped so that 1 stays finite).
fn odds(p: f32) -> f64 {
    let p = (p as f64).clamp(0.0, 1.0 - 1e-9);
    p / (1.0 - p)
}

/// Each agency's estimated duplicate rate `d`: the share of its records
/// that are a second record of a person, from the links the one-to-one
/// pass refused (after it). A record left single whose best refused link
/// (odds `o`, record-level: usually the single record's own view, its
/// other candidates and the chance of no partner included) goes to a
/// cluster holding a record of its own agency is that cluster's person's
/// second record with probability
/// `d·o / (1 + d·o)`; `d` is the fixed point of "expected second records
/// over the agency's records", found by iterating down from 0.5 (0 is a
/// fixed point too, and the wrong one). Agencies without such links get 0.
fn duplicate_rates(
    sets: &mut Sets,
    agency_of: &[u16],
    pairs: &[u64],
    score: &[f32],
    refused: &[usize],
) -> Vec<f64> {
    let na = agency_of.iter().map(|&a| a as usize + 1).max().unwrap_or(0);
    let mut records = vec![0usize; na];
    for &a in agency_of {
        records[a as usize] += 1;
    }
    // Best refused link per single record (`refused` is best first).
    let mut seen = FxHashSet::default();
    let mut by_agency: Vec<Vec<f64>> = vec![Vec::new(); na];
    for &i in refused {
        let (a, b) = unpack(pairs[i]);
        let Some((single, other)) = sets.single_side(a, b) else {
            continue;
        };
        let g = agency_of[single];
        if sets.mask[other as usize] & (1u64 << (g % 64)) == 0 || !seen.insert(single) {
            continue;
        }
        by_agency[g as usize].push(odds(score[i]));
    }
    by_agency
        .iter()
        .zip(&records)
        .map(|(o, &n)| {
            if o.is_empty() || n == 0 {
                return 0.0;
            }
            let mut d = 0.5f64;
            for _ in 0..200 {
                let next = o.iter().map(|&x| d * x / (1.0 + d * x)).sum::<f64>() / n as f64;
                if (next - d).abs() < 1e-9 {
                    d = next;
                    break;
                }
                d = next;
            }
            d
        })
        .collect()
}

/// Per refused link (after the first pass): the confirming probability
/// when the link alone falls short of `min`, one record is single and the
/// other's cluster holds a record of the single one's agency; else 0.
fn confirmations(
    sets: &mut Sets,
    agency_of: &[u16],
    pairs: &[u64],
    score: &[f32],
    refused: &[usize],
    min: f32,
    confirm: &Confirm<'_>,
) -> Vec<f32> {
    // The single record of each such link and the root of the other's cluster.
    let mut ask: Vec<(usize, u32, u32)> = Vec::new();
    for (j, &i) in refused.iter().enumerate() {
        if score[i] >= min {
            continue;
        }
        let (a, b) = unpack(pairs[i]);
        if let Some((single, other)) = sets.single_side(a, b) {
            ask.push((j, single as u32, other));
        }
    }
    let mut out = vec![0f32; refused.len()];
    if ask.is_empty() {
        return out;
    }
    // The record of each wanted (cluster, agency).
    let mut member: FxHashMap<(u32, u16), u32> = ask
        .iter()
        .map(|&(_, s, root)| ((root, agency_of[s as usize]), u32::MAX))
        .collect();
    for r in 0..agency_of.len() as u32 {
        let root = sets.find(r);
        if let Some(m) = member.get_mut(&(root, agency_of[r as usize])) {
            *m = (*m).min(r);
        }
    }
    let (slots, within): (Vec<usize>, Vec<u64>) = ask
        .iter()
        .filter_map(|&(j, s, root)| {
            let d = member[&(root, agency_of[s as usize])];
            (d != u32::MAX).then(|| (j, pack(s, d)))
        })
        .unzip();
    for (j, p) in slots.into_iter().zip(confirm(&within)) {
        out[j] = p;
    }
    out
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Resolution at threshold 0.5, one-to-one, attaching at `min`.
    fn one_to_one(agency: &[u16], pairs: &[u64], score: &[f32], min: f32) -> Resolution {
        let attach = Attach {
            min,
            prior: false,
            confirm: None,
        };
        resolve(agency, pairs, score, 0.5, false, Some(attach))
    }

    #[test]
    fn one_to_one_takes_the_best_link() {
        // Records 0,1 in agency 0; 2,3 in agency 1. 0-2 is best; 1-2 must be refused.
        let agency = [0u16, 0, 1, 1];
        let pairs = [pack(0, 2), pack(1, 2), pack(1, 3)];
        let r = one_to_one(&agency, &pairs, &[0.9, 0.8, 0.7], 0.5);
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
        let r = one_to_one(&[0, 1], &[pack(0, 1)], &[0.4], 0.5);
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
        let r = one_to_one(&agency, &pairs, &score, 0.5);
        assert_eq!(r.root[1], r.root[2], "the duplicate joins its person");
        assert_eq!(r.cluster_size[0], 3);
        // 1-3 was refused too, but 1 is no longer single: nothing chains.
        assert_ne!(r.root[1], r.root[3]);
        assert_eq!(r.cluster_size[3], 2);
        assert_eq!((r.refused, r.attached), (2, 1));
        // Attachment asks for its own, higher score.
        let strict = one_to_one(&agency, &pairs, &score, 0.985);
        assert_eq!(strict.cluster_size[1], 1);
        assert_eq!(strict.attached, 0);
    }

    #[test]
    fn refused_links_never_merge_two_clusters() {
        // 0-2 and 1-3 are pairs; 1-2 (refused) joins two clusters of two.
        let agency = [0u16, 0, 1, 1];
        let pairs = [pack(0, 2), pack(1, 3), pack(1, 2)];
        let r = one_to_one(&agency, &pairs, &[0.9, 0.9, 0.8], 0.5);
        assert_ne!(r.root[0], r.root[1]);
        assert_eq!(r.attached, 0);
    }

    #[test]
    fn first_pass_links_win_over_attachment() {
        // 1 links to 3 in the first pass even though its refused link to
        // 2 scores higher: attachment only takes records left single.
        let agency = [0u16, 0, 1, 1];
        let pairs = [pack(0, 2), pack(1, 2), pack(1, 3)];
        let r = one_to_one(&agency, &pairs, &[0.9, 0.8, 0.7], 0.5);
        assert_eq!(r.root[1], r.root[3]);
        assert_eq!(r.cluster_size[0], 2);
        assert_eq!(r.attached, 0);
    }

    /// Agency 0 holds records 0..n, agency 1 records n..2n, linked one to
    /// one at 0.99; agency 1 holds `dups` more records (2n..2n+dups), each
    /// a refused link to record `i` of agency 0 at `p`.
    fn with_duplicates(n: u32, dups: u32, p: f32) -> Resolution {
        let mut agency = vec![0u16; n as usize];
        agency.extend(std::iter::repeat_n(1u16, (n + dups) as usize));
        let mut pairs: Vec<u64> = (0..n).map(|i| pack(i, n + i)).collect();
        let mut score = vec![0.99f32; n as usize];
        pairs.extend((0..dups).map(|i| pack(i, 2 * n + i)));
        score.extend(std::iter::repeat_n(p, dups as usize));
        let att = Attach {
            min: 0.999,
            prior: true,
            confirm: None,
        };
        resolve(&agency, &pairs, &score, 0.5, false, Some(att))
    }

    #[test]
    fn duplicates_attach_on_their_agencys_estimated_duplicate_rate() {
        // 2 of agency 1's 12 records are second records whose links score
        // 0.99 (odds 99): the fixed point d = (2·99d / (1 + 99d)) / 12 is
        // d ≈ 0.158, and 99·d ≈ 15.7 clears even odds.
        let r = with_duplicates(10, 2, 0.99);
        assert!(
            (r.duplicate_rate[1] - (2.0 * 99.0 / 12.0 - 1.0) / 99.0).abs() < 1e-6,
            "{:?}",
            r.duplicate_rate
        );
        assert_eq!(r.duplicate_rate[0], 0.0, "agency 0 has no single records");
        assert_eq!((r.refused, r.attached, r.by_rate), (2, 2, 2));
        assert_eq!(r.root[20], r.root[0]);
        assert_eq!(r.cluster_size[0], 3);
        // Without the rate, 0.99 falls short of the attachment score.
        let mut agency = vec![0u16; 10];
        agency.extend(std::iter::repeat_n(1u16, 12));
        let r0 = one_to_one(
            &agency,
            &(0..10)
                .map(|i| pack(i, 10 + i))
                .chain((0..2).map(|i| pack(i, 20 + i)))
                .collect::<Vec<_>>(),
            &[[0.99f32; 10].as_slice(), &[0.99; 2]].concat(),
            0.999,
        );
        assert_eq!(r0.attached, 0);
    }

    #[test]
    fn a_lone_weak_duplicate_claim_does_not_attach() {
        // One refused link at 0.9 (odds 9) among 101 records of agency 1:
        // d = (9d / (1 + 9d)) / 101 has no positive solution, so d → 0.
        let r = with_duplicates(100, 1, 0.9);
        assert!(r.duplicate_rate[1] < 1e-6, "{:?}", r.duplicate_rate);
        assert_eq!((r.refused, r.attached, r.by_rate), (1, 0, 0));
        assert_eq!(r.cluster_size[200], 1);
    }

    #[test]
    fn a_confirmed_duplicate_attaches_below_the_attachment_score() {
        // Agency 0 holds one person twice (0, 1); agency 1 once (2). 1-2 is
        // refused and short of the attachment score; 3 (agency 0, single)
        // has a refused link to 2 as strong as 1's.
        let agency = [0u16, 0, 1, 0];
        let pairs = [pack(0, 2), pack(1, 2), pack(2, 3)];
        let score = [0.99, 0.8, 0.8];
        let asked = std::sync::Mutex::new(Vec::new());
        // Records 0 and 1 are one person; 0 and 3 are not.
        let confirm = |within: &[u64]| -> Vec<f32> {
            asked.lock().unwrap().extend_from_slice(within);
            within
                .iter()
                .map(|&p| if p == pack(0, 1) { 0.9999 } else { 0.2 })
                .collect()
        };
        let att = Attach {
            min: 0.999,
            prior: false,
            confirm: Some(&confirm),
        };
        let r = resolve(&agency, &pairs, &score, 0.5, false, Some(att));
        assert_eq!(r.root[1], r.root[0], "the confirmed duplicate attaches");
        assert_eq!(r.cluster_size[3], 1, "the unconfirmed record stays single");
        assert_eq!((r.refused, r.attached, r.confirmed), (2, 1, 1));
        let mut asked = asked.into_inner().unwrap();
        asked.sort_unstable();
        assert_eq!(
            asked,
            vec![pack(0, 1), pack(0, 3)],
            "each single record is compared with the cluster's record of its own agency"
        );
        // Without confirmation neither attaches.
        let alone = one_to_one(&agency, &pairs, &score, 0.999);
        assert_eq!((alone.attached, alone.confirmed), (0, 0));
    }

    /// Random pairs among `n` records of three agencies (both orders of
    /// agency, pairs of one agency too), scores with ties.
    pub(crate) fn random_run(n: usize, m: usize, seed: u64) -> (Vec<u16>, Vec<u64>, Vec<f32>) {
        let mut next = crate::testing::xorshift(seed | 1);
        let agency: Vec<u16> = (0..n).map(|g| (g * 3 / n) as u16).collect();
        let mut pairs = Vec::new();
        while pairs.len() < m {
            let (a, b) = ((next() % n as u64) as u32, (next() % n as u64) as u32);
            if a < b {
                pairs.push(pack(a, b));
            }
        }
        pairs.sort_unstable();
        pairs.dedup();
        // Twenty distinct scores, so that many pairs tie.
        let score = pairs.iter().map(|_| (next() % 20) as f32 / 20.0).collect();
        (agency, pairs, score)
    }

    /// Resolving with a prefix of the ranking made at a lower threshold
    /// gives what resolving afresh gives, at every threshold, with and
    /// without attaching duplicates and de-duplicating.
    #[test]
    fn resolving_a_prefix_of_a_lower_ranking_equals_resolving_afresh() {
        for seed in [3, 5, 7] {
            let (agency, pairs, score) = random_run(300, 900, seed);
            let all = ranked(&pairs, &score, 0.05);
            assert!(
                all.len() < pairs.len(),
                "some pairs rank below the lowest threshold"
            );
            for t in [0.05f32, 0.3, 0.5, 0.55, 0.9] {
                let prefix = &all[..all.partition_point(|&i| score[i] >= t)];
                assert_eq!(prefix, ranked(&pairs, &score, t).as_slice());
                for (dedup, min) in [(false, None), (false, Some(0.6)), (true, None)] {
                    let att = min.map(|min| Attach {
                        min,
                        prior: true,
                        confirm: None,
                    });
                    let a = resolve(&agency, &pairs, &score, t, dedup, att);
                    let b = resolve_ranked(&agency, &pairs, &score, prefix, t, dedup, att);
                    assert_eq!((&a.root, &a.cluster_size), (&b.root, &b.cluster_size));
                    assert_eq!(
                        (a.merges, a.refused, a.attached, a.by_rate),
                        (b.merges, b.refused, b.attached, b.by_rate)
                    );
                    assert_eq!(a.duplicate_rate, b.duplicate_rate);
                }
            }
        }
    }
}
