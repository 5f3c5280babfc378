//! Stable pseudonyms across refreshes (`link --previous DIR`).
//!
//! After a run has resolved its entities, each new entity takes over the
//! pseudonym of the previous entity that shares most of its records, so
//! people already linked keep their ids month after month. Every change is
//! counted: kept, merged (a new link joined previous entities; the larger
//! keeps its id), split (a previous entity's records now fall in several
//! entities; the largest part keeps the id), created (no record seen before)
//! and retired. Hub side: record ids and pseudonyms only.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::evaluate::read_links;
use super::load::Dataset;
use super::resolve::Resolution;
use crate::error::Result;

/// What changed since the previous run.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Changes {
    pub previous: String,
    pub previous_entities: u64,
    /// Previous ids carried over unchanged in membership.
    pub kept: u64,
    /// Previous ids carried over to an entity whose records changed (grown, shrunk or merged into it).
    pub kept_changed: u64,
    /// Previous entities absorbed into another previous entity's id.
    pub merged: u64,
    /// Previous entities whose records now sit in more than one entity.
    pub split: u64,
    /// Entities made only of records the previous run did not have.
    pub created: u64,
    /// Entities with records seen before but no previous id left to take (split-off parts).
    pub renamed: u64,
    /// Previous ids no longer used.
    pub retired: u64,
    /// How much work the refresh did, and why.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub work: Option<Work>,
}

/// The records a refresh found changed and the pairs it compared.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Work {
    /// Only pairs holding a new or changed record were compared.
    pub incremental: bool,
    /// Why every record was linked again, when it was.
    pub why_full: Option<String>,
    pub records_new: u64,
    /// Same record id, different encodings (a corrected record).
    pub records_changed: u64,
    pub records_unchanged: u64,
    /// Previous records no longer in any extract.
    pub records_removed: u64,
    /// New candidate pairs (holding a new or changed record) compared.
    pub pairs_compared: u64,
    /// The previous run's likely pairs between unchanged records, carried
    /// over and scored again.
    pub pairs_carried: u64,
}

/// Re-assign pseudonyms from the previous run's links; returns the changes.
pub fn carry_over(
    ds: &Dataset,
    r: &Resolution,
    entity: &mut [String],
    previous: &Path,
) -> Result<Changes> {
    let links = previous.join("links.parquet");
    let (old, _) = read_links(&links)?;
    let mut old_of: HashMap<(&str, &str), &str> = HashMap::new();
    let mut old_members: HashMap<&str, u64> = HashMap::new();
    for l in &old {
        old_of.insert(
            (l.agency.as_str(), l.record_id.as_str()),
            l.entity_id.as_str(),
        );
        *old_members.entry(&l.entity_id).or_default() += 1;
    }
    // An agency of the previous run missing from this one (a forgotten
    // --extract?) takes all its records out of their entities.
    let now: HashSet<&str> = ds.agencies.iter().map(|a| a.name.as_str()).collect();
    let mut gone: BTreeMap<&str, u64> = BTreeMap::new();
    for l in old.iter().filter(|l| !now.contains(l.agency.as_str())) {
        *gone.entry(l.agency.as_str()).or_default() += 1;
    }
    for (a, n) in &gone {
        tracing::warn!(
            "agency `{a}` of the previous run ({}) is not in this one: its {n} records leave their entities; give its extract with --extract if it was left out by mistake",
            previous.display()
        );
    }
    // Members of each new cluster, and their previous ids.
    let mut clusters: BTreeMap<u32, Vec<usize>> = BTreeMap::new();
    for g in 0..ds.len() {
        clusters.entry(r.root[g]).or_default().push(g);
    }
    let agency = |g: usize| ds.agencies[ds.agency_of[g] as usize].name.as_str();
    let mut overlap: Vec<(u64, &str, u32)> = Vec::new();
    let mut parts_of_old: HashMap<&str, u64> = HashMap::new();
    let mut fresh: HashSet<u32> = HashSet::new();
    for (&root, members) in &clusters {
        let mut counts: BTreeMap<&str, u64> = BTreeMap::new();
        for &g in members {
            if let Some(o) = old_of.get(&(agency(g), ds.ids.get(g))) {
                *counts.entry(o).or_default() += 1;
            }
        }
        if counts.is_empty() {
            fresh.insert(root);
        }
        for (o, c) in counts {
            overlap.push((c, o, root));
            *parts_of_old.entry(o).or_default() += 1;
        }
    }
    // Greedy: the largest overlaps claim ids first; ties by id then cluster.
    overlap.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(b.1)).then(a.2.cmp(&b.2)));
    let mut id_of_cluster: HashMap<u32, &str> = HashMap::new();
    let mut taken: HashMap<&str, u32> = HashMap::new();
    for &(_, o, root) in &overlap {
        if id_of_cluster.contains_key(&root) || taken.contains_key(o) {
            continue;
        }
        id_of_cluster.insert(root, o);
        taken.insert(o, root);
    }
    let mut ch = Changes {
        previous: previous.display().to_string(),
        previous_entities: old_members.len() as u64,
        ..Default::default()
    };
    for (&root, members) in &clusters {
        match id_of_cluster.get(&root) {
            Some(&o) => {
                let same = members.len() as u64 == old_members[o]
                    && members
                        .iter()
                        .all(|&g| old_of.get(&(agency(g), ds.ids.get(g))) == Some(&o));
                if same {
                    ch.kept += 1;
                } else {
                    ch.kept_changed += 1;
                }
                for &g in members {
                    entity[g] = o.to_string();
                }
            }
            None if fresh.contains(&root) => ch.created += 1,
            None => ch.renamed += 1,
        }
    }
    for (o, parts) in &parts_of_old {
        if *parts > 1 {
            ch.split += 1;
        }
        if !taken.contains_key(o) {
            // Its records all went to clusters that carry another id.
            ch.merged += 1;
        }
    }
    ch.retired = old_members
        .keys()
        .filter(|o| !taken.contains_key(*o))
        .count() as u64;
    Ok(ch)
}
