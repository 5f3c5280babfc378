//! Records left single: a second look among them (docs/decisions.md §19,
//! §31, §64, §67).
//!
//! After resolution, the records left single are blocked again on every
//! key pass of the job, restricted to them: blocks too large to compare in
//! the whole job (a common surname's) are small among a few percent of the
//! records. With `resolve.second_look_lsh` they are also blocked on the
//! Hamming LSH bands of their CLKs. Those pairs, with the kept pairs of
//! two single records, are compared and scored under the job's model, then
//! made record-level among the single records only
//! ([`super::posterior::among_singles`]). The set depends only on which
//! records are single and on their keys and CLKs, never on which pairs an
//! earlier run kept, so an incremental refresh looks at the same pairs as
//! a full run. Hub side: indices, keys, filters and weights only; never
//! sees plaintext.

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use super::block::{PassStats, band_key, key_pass, key_passes, lsh_bands, unpack};
use super::config::JobConfig;
use super::load::Dataset;
use super::score::{Model, compare, cuts32, score};
use super::stream::group_keyed;
use crate::error::Result;

/// The second look's pairs (sorted) and their figures.
#[derive(Debug, Default)]
pub struct SecondLook {
    pub pairs: Vec<u64>,
    /// CLK Dice.
    pub dice: Vec<f32>,
    /// Pairwise probability (prior λ, as the job scores every pair).
    pub pairwise: Vec<f32>,
    /// Record-level weight and probability among the single records.
    pub weight: Vec<f32>,
    pub probability: Vec<f32>,
    /// The pass as the report's blocking table shows it.
    pub stats: PassStats,
    /// Per agency and other agency (`g·n + h`): the fitted share of g's
    /// single records with a partner among h's.
    pub share: Vec<f64>,
    /// Per agency and other agency: the estimated share of their matches
    /// the first resolution left unlinked (two agencies only).
    pub left_unlinked: Vec<Option<f64>>,
    /// Records left single, per agency.
    pub singles: Vec<u64>,
}

/// What the second look did, for the report.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    /// Records left single by the first resolution, per agency.
    pub single_records: Vec<(String, u64)>,
    /// Pairs compared among them.
    pub pairs: u64,
    /// Pairs not among the run's kept pairs that joined them.
    pub added: u64,
    /// Pairs that reached the threshold through the look.
    pub raised: u64,
    /// Per agency and other agency: the share of the agency's single
    /// records estimated to have their partner among the other's.
    pub partner_share: Vec<PartnerShare>,
}

/// One agency's single records' fitted share with a partner among another
/// agency's single records.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PartnerShare {
    pub agency: String,
    pub other: String,
    pub share: f64,
    /// The estimated share of the two agencies' matches that the first
    /// resolution left unlinked (docs/decisions.md §67); null with more
    /// than two agencies and in older reports.
    #[serde(default)]
    pub left_unlinked: Option<f64>,
}

impl Summary {
    /// The summary of `look` on `ds`, with what folding it in added and
    /// raised.
    pub fn of(ds: &Dataset, look: &SecondLook, added: u64, raised: u64) -> Summary {
        let na = ds.agencies.len();
        let name = |g: usize| ds.agencies[g].name.clone();
        Summary {
            single_records: (0..na).map(|g| (name(g), look.singles[g])).collect(),
            pairs: look.stats.pairs,
            added,
            raised,
            partner_share: (0..na * na)
                .filter(|k| k / na != k % na)
                .map(|k| PartnerShare {
                    agency: name(k / na),
                    other: name(k % na),
                    share: look.share[k],
                    left_unlinked: look.left_unlinked[k],
                })
                .collect(),
        }
    }
}

/// Pairs compared and scored at a time (their field levels, 8 bytes a
/// pair with eight fields, are only needed while they are scored).
const LOOK_CHUNK: usize = 1 << 22;

/// The look's pairs worth keeping, with their figures.
#[derive(Default)]
struct Scored {
    pairs: Vec<u64>,
    dice: Vec<f32>,
    weight: Vec<f32>,
    pairwise: Vec<f32>,
}

/// Count a pass's blocks among the look's (its pairs are counted once,
/// after the passes' overlaps are removed).
fn add_blocks(look: &mut PassStats, pass: &PassStats) {
    look.blocks += pass.blocks;
    look.skipped_blocks += pass.skipped_blocks;
    look.skipped_pairs += pass.skipped_pairs;
    look.largest_block_pairs = look.largest_block_pairs.max(pass.largest_block_pairs);
}

/// Name of the second look in the blocking table.
pub const PASS: &str = "records left single";

/// The resolution the second look follows.
#[derive(Debug, Clone, Copy)]
pub struct FirstResolution<'a> {
    /// Each record's entity (its representative record).
    pub root: &'a [u32],
    /// Each record's entity's size.
    pub cluster_size: &'a [u32],
    /// The probability it linked at.
    pub threshold: f64,
}

/// Per agency `g` and other agency `h` (at `g·na + h`): how many of g's
/// records share an entity with a record of h (`root`: each record's
/// entity).
pub fn linked_between(agency_of: &[u16], na: usize, root: &[u32]) -> Vec<f64> {
    // The agencies present in each entity, by its root.
    let mut present = vec![0u64; root.len()];
    for (r, &g) in agency_of.iter().enumerate() {
        present[root[r] as usize] |= 1 << g;
    }
    let mut linked = vec![0f64; na * na];
    for (r, &g) in agency_of.iter().enumerate() {
        let g = g as usize;
        let mut others = present[root[r] as usize] & !(1 << g);
        while others != 0 {
            let h = others.trailing_zeros() as usize;
            linked[g * na + h] += 1.0;
            others &= others - 1;
        }
    }
    linked
}

/// Which of `pairs` (pairwise `weight`, prior λ included) the first
/// resolution would have linked at `threshold` had neither record had
/// another candidate: record-level, an uncontested pair's odds are its
/// pairwise odds over `1 − π` ([`super::posterior::record_level`]).
pub fn strong_alone(
    ds: &Dataset,
    lambda: f64,
    threshold: f64,
    pairs: &[u64],
    weight: &[f32],
) -> Vec<bool> {
    let t = threshold.clamp(1e-9, 1.0 - 1e-9);
    let needed = (t / (1.0 - t)).log2();
    // What having no competitor adds, by the other record's agency.
    let lift: Vec<f64> = ds
        .agencies
        .iter()
        .map(|a| -super::posterior::none_among(lambda, a.len).log2())
        .collect();
    pairs
        .iter()
        .zip(weight)
        .map(|(&p, &w)| {
            let (a, b) = unpack(p);
            let (ga, gb) = (ds.agency_of[a] as usize, ds.agency_of[b] as usize);
            w as f64 + lift[gb].max(lift[ga]) >= needed
        })
        .collect()
}

/// The second look at the records `cluster_size` leaves single: the
/// cross-agency pairs of every key pass among them (and of every LSH band,
/// with `resolve.second_look_lsh`: the job's `lsh_positions` when it has
/// bands, else bands drawn as blocking draws them), and the `kept` pairs
/// of two single records whose `pairwise` probability reaches
/// `output.pairs_min_probability` (those a refresh carries over), scored
/// under `model` (value frequencies `tf` as the job's scoring used them).
/// `first` is that resolution. `None` where record-level probabilities do
/// not apply.
pub fn second_look(
    ds: &Dataset,
    cfg: &JobConfig,
    model: &Model,
    tf: Option<&[Vec<f32>]>,
    (kept, pairwise): (&[u64], &[f32]),
    first: FirstResolution,
    lsh_positions: &[Vec<u32>],
) -> Result<Option<SecondLook>> {
    let FirstResolution {
        root,
        cluster_size,
        threshold,
    } = first;
    let single = |g: usize| cluster_size[g] == 1;
    let min_p = cfg.output.pairs_min_probability as f32;
    let mut pairs: Vec<u64> = kept
        .iter()
        .zip(pairwise)
        .filter(|&(&p, &q)| {
            let (a, b) = unpack(p);
            q >= min_p && single(a) && single(b)
        })
        .map(|(&p, _)| p)
        .collect();
    let mut stats = PassStats {
        name: PASS.into(),
        kind: "key".into(),
        ..Default::default()
    };
    for (name, keys) in key_passes(ds, &cfg.blocking)? {
        let among = keys.keep(single);
        let st = key_pass(
            ds,
            &among,
            &name,
            "key",
            false,
            cfg.blocking.max_block_pairs,
            &mut pairs,
            usize::MAX,
        );
        add_blocks(&mut stats, &st);
    }
    if cfg.resolve.second_look_lsh {
        // The single records' keys in each LSH band, read for them only
        // (a few percent of the records).
        stats.kind = "key+lsh".into();
        let given = Some(lsh_positions).filter(|p| !p.is_empty());
        let singles: Vec<u32> = (0..ds.len() as u32)
            .filter(|&g| single(g as usize))
            .collect();
        let mut keyed: Vec<(u128, u32)> = Vec::with_capacity(singles.len());
        for (band, pos) in lsh_bands(ds, &cfg.blocking, cfg.seed, given)
            .iter()
            .enumerate()
        {
            keyed.clear();
            keyed.par_extend(
                singles
                    .par_iter()
                    .map(|&g| (band_key(ds, pos, g as usize), g)),
            );
            let name = format!("lsh{band}");
            let p = group_keyed(
                ds,
                &mut keyed,
                &name,
                "lsh",
                false,
                cfg.blocking.max_block_pairs,
            );
            p.push_pairs(ds, false, &mut pairs, usize::MAX);
            add_blocks(&mut stats, &p.stats);
        }
    }
    pairs.par_sort_unstable();
    pairs.dedup();
    stats.pairs = pairs.len() as u64;
    // Scored a chunk at a time, keeping only the pairs that could reach
    // `min_p` even as their records' only candidate under the largest
    // prior the single records allow (one in the larger agency's count):
    // where most records are single, the look may compare tens of
    // millions of pairs, nearly all hopeless.
    let na = ds.agencies.len();
    let mut singles = vec![0u64; na];
    for (g, &c) in cluster_size.iter().enumerate() {
        if c == 1 {
            singles[ds.agency_of[g] as usize] += 1;
        }
    }
    let logit2 = |p: f64| (p / (1.0 - p)).log2();
    let selection = cfg.resolve.second_look_selection && super::posterior::selection_applies(na);
    let least: Vec<f32> = (0..na * na)
        .map(|k| {
            let (g, h) = (k / na, k % na);
            let largest_prior = 1.0 / singles[g].max(singles[h]).max(1) as f64;
            let lift = (largest_prior / model.lambda).log2()
                + (1.0 / super::posterior::NONE_MIN).log2()
                + if selection {
                    super::posterior::SELECTION_MAX_BITS
                } else {
                    0.0
                };
            (logit2(min_p as f64) - lift.max(0.0)) as f32
        })
        .collect();
    let cuts = cuts32(&cfg.scoring.levels);
    let mut look = Scored::default();
    for chunk in pairs.chunks(LOOK_CHUNK) {
        let comps = compare(ds, chunk, &cuts);
        let (w, p) = score(model, &comps, chunk, tf);
        for (i, &pair) in chunk.iter().enumerate() {
            let (a, b) = unpack(pair);
            let (ga, gb) = (ds.agency_of[a] as usize, ds.agency_of[b] as usize);
            if w[i] >= least[ga * na + gb] {
                look.pairs.push(pair);
                look.dice.push(comps.dice[i]);
                look.weight.push(w[i]);
                look.pairwise.push(p[i]);
            }
        }
    }
    drop(pairs);
    let linked = linked_between(&ds.agency_of, na, root);
    // Only the selection factor asks which pairs were strong alone.
    let strong = if selection {
        strong_alone(ds, model.lambda, threshold, &look.pairs, &look.weight)
    } else {
        vec![false; look.pairs.len()]
    };
    let Some(among) = super::posterior::among_singles(
        &ds.agency_of,
        na,
        &look.pairs,
        &look.weight,
        (selection, &strong),
        (cluster_size, &linked),
        model.lambda,
    ) else {
        return Ok(None);
    };
    Ok(Some(SecondLook {
        pairs: look.pairs,
        dice: look.dice,
        pairwise: look.pairwise,
        weight: among.weight,
        probability: among.probability,
        stats,
        share: among.share,
        left_unlinked: among.left_unlinked,
        singles,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_are_counted_between_each_two_agencies() {
        // Entities {0, 3, 5} (agencies A, B, C), {1, 4} (A, B), {2} (A)
        // and {6} (C); roots are any member.
        let agency_of = [0u16, 0, 0, 1, 1, 2, 2];
        let root = [3u32, 1, 2, 3, 1, 3, 6];
        let l = linked_between(&agency_of, 3, &root);
        #[rustfmt::skip]
        let want = [
            0.0, 2.0, 1.0,
            2.0, 0.0, 1.0,
            1.0, 1.0, 0.0,
        ];
        assert_eq!(l, want);
    }
}
