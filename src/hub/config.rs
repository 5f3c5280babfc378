//! The hub's job config (`--config JOB.toml`) with defaults that give a good
//! linkage for two extracts and no config at all. Unknown keys are errors.
//! Hub side: holds no key material except the path of the job key file.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// How pairs are scored and chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ScoringMode {
    /// Fellegi–Sunter on per-field Dice levels, m and λ by EM (default).
    Probabilistic,
    /// Record-level CLK Dice against a threshold (like anonlink).
    Dice,
}

/// Whether a shared salt is counted once (docs/decisions.md §16).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SaltCorrection {
    /// On when deduplicating or with record-level probabilities; off for
    /// one-to-one linkage with pairwise probabilities, where the plain
    /// model's surplus stands in for the missing record-level view
    /// (default).
    Auto,
    On,
    Off,
}

impl SaltCorrection {
    /// Whether it applies to a run.
    pub fn applies(self, dedup: bool, record_prior: bool) -> bool {
        match self {
            SaltCorrection::Auto => dedup || record_prior,
            SaltCorrection::On => true,
            SaltCorrection::Off => false,
        }
    }
}

/// How candidate pairs are generated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BlockingMethod {
    /// All pairs up to `all_pairs_max`, else keyed blocking keys plus Hamming LSH.
    Auto,
    /// Compare every pair, keeping each record's nearest CLK neighbours.
    All,
    /// Keyed blocking keys only.
    Keys,
    /// Hamming LSH on CLKs only (needs no keys).
    Lsh,
    /// Keyed blocking keys and LSH together.
    KeysAndLsh,
}

/// Scoring settings.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Scoring {
    pub mode: ScoringMode,
    /// Match-probability threshold (probabilistic mode).
    pub threshold: f64,
    /// CLK Dice threshold (dice mode).
    pub dice_threshold: f64,
    /// Per-field Dice cut-offs, descending, that define comparison levels.
    pub levels: Vec<f64>,
    /// Random pairs sampled to estimate u.
    pub u_sample_pairs: usize,
    /// EM iteration cap.
    pub em_max_iterations: usize,
    /// Frequency adjustment for exact field-filter matches.
    pub tf_adjustment: bool,
    /// Count a shared salt (year of birth) once, not once per salted field
    /// (docs/decisions.md §16): better-calibrated probabilities and fewer
    /// false links where many records have no partner or when
    /// deduplicating; lower recall in one-to-one linkage where nearly every
    /// record has a partner.
    pub salt_correction: SaltCorrection,
    /// Record-level probabilities in one-to-one linkage: a pair is as
    /// likely as its record's share of all its candidates' evidence, given
    /// the chance that the record has a partner at all (docs/decisions.md
    /// §17). Off in dedup.
    pub record_prior: bool,
    /// Blocking keys compared as evidence where the salted fields give none
    /// (docs/decisions.md §20): `["auto"]` takes every key built only from
    /// salted fields (the demo schemas' `names`); `[]` takes none.
    pub key_evidence: Vec<String>,
    /// Compare a date field at finer levels when the extracts carry its
    /// keyed variants (`year + day_month`, `month + day + even_year` /
    /// `odd_year`): a day and month swapped, or a year one off, count as
    /// such instead of as a middling Dice, and a year one off tells the hub
    /// that names salted by it cannot agree (docs/decisions.md §24).
    pub date_variants: bool,
    /// Pairs of fields that go wrong together, such as postcode and
    /// address, which a move changes at once: the model scores fields as
    /// independent, which takes the weight of "both disagree" off a match
    /// twice. For each pair the hub fits, from the training sessions' likely
    /// matches, how much likelier both are to disagree than independence
    /// says, and adds that back to pairs where both are below exact
    /// (docs/decisions.md §66). Empty: none.
    pub dependent: Vec<[String; 2]>,
}

impl Default for Scoring {
    fn default() -> Self {
        Scoring {
            mode: ScoringMode::Probabilistic,
            threshold: 0.5,
            dice_threshold: 0.8,
            levels: vec![1.0, 0.85, 0.7, 0.55, 0.4],
            u_sample_pairs: 200_000,
            em_max_iterations: 100,
            tf_adjustment: true,
            salt_correction: SaltCorrection::Auto,
            record_prior: true,
            key_evidence: vec!["auto".into()],
            date_variants: true,
            dependent: Vec::new(),
        }
    }
}

/// Blocking settings.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Blocking {
    pub method: BlockingMethod,
    /// Blocking-key passes to use (`bk_` names without the prefix); empty =
    /// all but keyed date variants (docs/decisions.md §24).
    pub passes: Vec<String>,
    /// Blocks producing more pairs than this are skipped (and reported).
    pub max_block_pairs: u64,
    /// `auto` compares all pairs when there are at most this many.
    pub all_pairs_max: u64,
    /// Nearest CLK neighbours kept per record when comparing all pairs.
    pub neighbours: usize,
    /// LSH bands (tables) and bits sampled per band.
    pub lsh_bands: usize,
    pub lsh_bits: usize,
    /// Candidate pairs (summed over passes) above which linking stops with
    /// an error rather than running for hours.
    pub max_candidates: u64,
    /// Candidate pairs compared per chunk: memory for comparison grows with
    /// this (about 25 bytes a pair), not with the job.
    pub chunk_pairs: u64,
}

impl Default for Blocking {
    fn default() -> Self {
        Blocking {
            method: BlockingMethod::Auto,
            passes: Vec::new(),
            max_block_pairs: 2_000_000,
            all_pairs_max: 1_000_000_000,
            neighbours: 8,
            lsh_bands: 64,
            lsh_bits: 16,
            max_candidates: 200_000_000,
            chunk_pairs: 8_000_000,
        }
    }
}

/// Resolution settings.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Resolve {
    /// Also link records within the same extract.
    pub dedup: bool,
    /// Attach a record left single by one-to-one matching to the cluster
    /// of its best refused link (a within-agency duplicate); see
    /// `hub::resolve`. Probabilistic mode only.
    pub attach_duplicates: bool,
    /// Match probability an attaching link needs.
    pub attach_min_probability: f64,
    /// A refused link above the threshold but below
    /// `attach_min_probability` also attaches when its single record and
    /// the cluster's record of the same agency score at least
    /// `attach_min_probability` as one person (docs/decisions.md §18).
    pub confirm_duplicates: bool,
    /// A refused link also attaches when its probability, weighed by the
    /// single record's agency's estimated duplicate rate, clears the
    /// threshold (docs/decisions.md §22).
    pub duplicate_prior: bool,
    /// After resolution, block the records left single again among
    /// themselves and weigh their pairs against each other only
    /// (docs/decisions.md §19, §31). One-to-one probabilistic linkage with
    /// `scoring.record_prior` only.
    pub second_look: bool,
    /// The second look also blocks the records left single on Hamming LSH
    /// bands of their CLKs (`blocking.lsh_bands` bands of
    /// `blocking.lsh_bits` bits; the job's own bands when it has them):
    /// what LSH finds that the keys miss, at the cost of a few percent of
    /// the records instead of all of them (docs/decisions.md §64).
    pub second_look_lsh: bool,
    /// With two agencies, the second look weighs a weak match between two
    /// single records up by the share of matches the first resolution left
    /// unlinked, fitted to be consistent with the matches it finds
    /// (docs/decisions.md §67).
    pub second_look_selection: bool,
}

impl Default for Resolve {
    fn default() -> Self {
        Resolve {
            dedup: false,
            attach_duplicates: true,
            attach_min_probability: 0.999,
            confirm_duplicates: true,
            duplicate_prior: true,
            second_look: true,
            second_look_lsh: false,
            second_look_selection: false,
        }
    }
}

/// Output settings.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Output {
    /// Pairs below this match probability (and not linked) are left out of pairs.parquet.
    pub pairs_min_probability: f64,
    /// File holding the hub's job key for entity pseudonyms (else
    /// BLOOMLINK_JOB_KEY, else `OUT/job.key`, created on first run).
    pub job_key_file: Option<PathBuf>,
    /// The report withholds the counts and rates of a declared group
    /// (stratum value) with fewer records, or fewer true pairs, than this:
    /// statistical disclosure control (0 shows every group).
    pub min_reported_group: u64,
}

impl Default for Output {
    fn default() -> Self {
        Output {
            pairs_min_probability: 0.01,
            job_key_file: None,
            min_reported_group: 10,
        }
    }
}

/// A link job's settings.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct JobConfig {
    pub scoring: Scoring,
    pub blocking: Blocking,
    pub resolve: Resolve,
    pub output: Output,
    /// Seed for sampling (u estimation, LSH bit choice).
    pub seed: u64,
}

impl JobConfig {
    /// Load and check a job config.
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::read(path, e))?;
        let c: JobConfig = toml::from_str(&text).map_err(|e| {
            Error::config(
                path,
                format!("invalid job config: {}", e.to_string().trim()),
            )
        })?;
        c.check(path)?;
        Ok(c)
    }

    /// Validate value ranges.
    pub fn check(&self, path: &Path) -> Result<()> {
        let s = &self.scoring;
        let bad = |m: &str| Err(Error::config(path, m.to_string()));
        if !(0.0..=1.0).contains(&s.threshold) {
            return bad("`scoring.threshold` must be between 0 and 1");
        }
        if !(0.0..=1.0).contains(&s.dice_threshold) {
            return bad("`scoring.dice_threshold` must be between 0 and 1");
        }
        if s.levels.is_empty()
            || s.levels.windows(2).any(|w| w[0] <= w[1])
            || s.levels.iter().any(|l| !(0.0..=1.0).contains(l))
        {
            return bad("`scoring.levels` must be Dice cut-offs in (0, 1], strictly decreasing");
        }
        if s.levels.len() > 14 {
            return bad("`scoring.levels` has at most 14 cut-offs");
        }
        if s.u_sample_pairs < 1000 {
            return bad("`scoring.u_sample_pairs` must be at least 1000");
        }
        let b = &self.blocking;
        if b.lsh_bits == 0 || b.lsh_bits > 64 || b.lsh_bands == 0 {
            return bad("`blocking.lsh_bits` must be 1..64 and `blocking.lsh_bands` at least 1");
        }
        if b.neighbours == 0 {
            return bad("`blocking.neighbours` must be at least 1");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_unknown_keys_fail() {
        JobConfig::default().check(Path::new("x")).unwrap();
        let e = toml::from_str::<JobConfig>("[scoring]\nfoo = 1").unwrap_err();
        assert!(e.to_string().contains("foo"));
        let c: JobConfig =
            toml::from_str("[scoring]\nmode = \"dice\"\n[resolve]\ndedup = true").unwrap();
        assert_eq!(c.scoring.mode, ScoringMode::Dice);
        assert!(c.resolve.dedup);
    }
}
