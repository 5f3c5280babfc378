//! The self-contained HTML report: inline CSS and SVG, real headings,
//! table headers and chart descriptions; prints cleanly; needs no network.

use std::fmt::Write;

use super::*;

fn table(out: &mut String, caption: &str, head: &[&str], rows: Vec<Vec<String>>) {
    let _ = write!(out, "<table><caption>{}</caption><thead><tr>", esc(caption));
    for h in head {
        let _ = write!(out, "<th scope=\"col\">{}</th>", esc(h));
    }
    out.push_str("</tr></thead><tbody>");
    for r in rows {
        out.push_str("<tr>");
        for (i, c) in r.iter().enumerate() {
            if i == 0 {
                let _ = write!(out, "<th scope=\"row\">{}</th>", esc(c));
            } else {
                let _ = write!(out, "<td>{}</td>", esc(c));
            }
        }
        out.push_str("</tr>");
    }
    out.push_str("</tbody></table>");
}

const CSS: &str = "body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;max-width:960px;margin:2em auto;padding:0 1em;color:#1a1a1a;line-height:1.45}
h1{font-size:1.7em;margin-bottom:.2em}h2{border-bottom:2px solid #1f4e79;padding-bottom:.2em;margin-top:2em}
table{border-collapse:collapse;margin:1em 0;width:100%;font-size:.92em}caption{text-align:left;font-weight:600;margin-bottom:.3em}
th,td{border:1px solid #bbb;padding:.3em .5em;text-align:left}thead th{background:#e8eef5}tbody th{font-weight:normal}
.summary{background:#f3f7fb;border-left:5px solid #1f4e79;padding:.8em 1.2em}.ok{color:#185c1e;font-weight:600}.bad{color:#a00;font-weight:600}
.flag{background:#fff1e6}.chart{width:100%;max-width:100%;height:auto;border:1px solid #ddd}pre{white-space:pre-wrap;word-break:break-all}td,th{overflow-wrap:anywhere}code{font-size:.9em;word-break:break-all}
@media print{body{max-width:none;margin:0}h2{page-break-after:avoid}table,svg{page-break-inside:avoid}}";

/// Render the report as one HTML document.
pub fn render(r: &Report) -> String {
    let mut s = String::new();
    // Groups too small to show (statistical disclosure control).
    let min = r.run.config["output"]["min_reported_group"]
        .as_u64()
        .unwrap_or(0);
    let withheld = format!("withheld (fewer than {min})");
    let _ = write!(
        s,
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width,initial-scale=1\"><title>bloomlink linkage quality report</title><style>{CSS}</style></head><body><main>"
    );
    s.push_str("<h1>Linkage quality report</h1>");
    let _ = write!(
        s,
        "<p>bloomlink {} · schema <code>{}</code> · key check <code>{}</code></p>",
        esc(&r.run.bloomlink_version),
        esc(&r.run.schema_fingerprint[..16.min(r.run.schema_fingerprint.len())]),
        esc(&r.run.key_check)
    );
    // 8. Summary first.
    s.push_str("<section class=\"summary\" aria-labelledby=\"h-summary\"><h2 id=\"h-summary\">Summary</h2>");
    let _ = write!(
        s,
        "<p><strong>{}</strong></p><ul>",
        esc(&r.summary.headline)
    );
    for p in &r.summary.points {
        let _ = write!(s, "<li>{}</li>", esc(p));
    }
    s.push_str("</ul><h3>Check before use</h3><ul>");
    for c in &r.summary.checks {
        let _ = write!(s, "<li>{}</li>", esc(c));
    }
    s.push_str("</ul></section>");
    // 2. Reconciliation.
    s.push_str(
        "<section aria-labelledby=\"h-rec\"><h2 id=\"h-rec\">Every record accounted for</h2>",
    );
    let _ = write!(
        s,
        "<p>Counts {}.</p>",
        if r.reconciliation.balanced {
            "<span class=\"ok\">balance for every agency</span>"
        } else {
            "<span class=\"bad\">do NOT balance</span>"
        }
    );
    table(
        &mut s,
        "Rows per agency: read = rejected at encode + linked + single",
        &[
            "agency",
            "rows read",
            "rejected at encode",
            "in extract",
            "linked",
            "single",
            "balances",
        ],
        r.reconciliation
            .agencies
            .iter()
            .map(|a| {
                vec![
                    a.agency.clone(),
                    a.rows_read.to_string(),
                    a.rejected_at_encode.to_string(),
                    a.in_extract.to_string(),
                    a.linked.to_string(),
                    a.single.to_string(),
                    if a.balanced { "yes" } else { "NO" }.into(),
                ]
            })
            .collect(),
    );
    let _ = write!(
        s,
        "<p>{} entities in all.</p></section>",
        r.reconciliation.entities
    );
    // 3. Scores.
    s.push_str("<section aria-labelledby=\"h-scores\"><h2 id=\"h-scores\">Score distribution and threshold</h2>");
    let _ = write!(
        s,
        "<p>Mode: <strong>{:?}</strong>; threshold {} (pairs at or above it may be linked; each record links at most once per other agency).</p>",
        r.model.mode, r.model.threshold
    );
    s.push_str(&svg::histogram(
        &r.scores.histogram,
        false,
        "Candidate pairs by score",
    ));
    s.push_str(&svg::histogram(
        &r.scores.histogram,
        true,
        "Candidate pairs by score, log scale",
    ));
    table(
        &mut s,
        "Threshold sensitivity (estimated from the model)",
        &[
            "threshold",
            "pairs at or above",
            "linked after resolution",
            "est. precision",
            "est. recall",
        ],
        r.scores
            .sensitivity
            .iter()
            .map(|t| {
                vec![
                    format!("{}", t.threshold),
                    t.pairs_above.to_string(),
                    t.linked_pairs.to_string(),
                    pct(t.est_precision),
                    pct(t.est_recall),
                ]
            })
            .collect(),
    );
    s.push_str("</section>");
    // 4. Estimates.
    s.push_str("<section aria-labelledby=\"h-est\"><h2 id=\"h-est\">Precision and recall</h2>");
    let e = &r.estimates;
    let _ = write!(
        s,
        "<p>Without ground truth: estimated precision <strong>{}</strong> (chance band {}–{}), estimated recall <strong>{}</strong> (chance band {}–{}), over {} linked pairs. The bands cover chance given the fitted model, not the model's own error.</p><p>{}</p>",
        pct(e.precision),
        pct(e.precision_band[0]),
        pct(e.precision_band[1]),
        pct(e.recall),
        pct(e.recall_band[0]),
        pct(e.recall_band[1]),
        e.linked_pairs,
        esc(&e.method)
    );
    if let Some(t) = &r.truth {
        let v = &t.evaluation;
        let mut rows = vec![
            vec!["precision".into(), format!("{:.4}", v.precision)],
            vec!["recall".into(), format!("{:.4}", v.recall)],
            vec!["F1".into(), format!("{:.4}", v.f1)],
            vec!["true positives".into(), v.true_positives.to_string()],
            vec!["false positives".into(), v.false_positives.to_string()],
            vec!["false negatives".into(), v.false_negatives.to_string()],
        ];
        if let Some(m) = &t.missed {
            for (what, k) in [
                (
                    "missed: a record never reached the hub",
                    m.record_not_linked,
                ),
                (
                    "missed: never compared, or scored under the pairs floor",
                    m.not_scored,
                ),
                ("missed: scored under the threshold", m.under_threshold),
                (
                    "missed: cleared the threshold, a record linked elsewhere",
                    m.cleared_threshold,
                ),
            ] {
                rows.push(vec![what.into(), k.to_string()]);
            }
        }
        table(
            &mut s,
            &format!("Against the truth file {}", t.file),
            &["measure", "value"],
            rows,
        );
        if !t.recall_by_stratum.is_empty() {
            table(
                &mut s,
                "True recall by group",
                &["stratum", "value", "true pairs", "found", "recall"],
                t.recall_by_stratum
                    .iter()
                    .map(|x| match (x.true_pairs, x.found, x.recall) {
                        (Some(n), Some(k), Some(rec)) => vec![
                            x.stratum.clone(),
                            x.value.clone(),
                            n.to_string(),
                            k.to_string(),
                            pct(rec),
                        ],
                        _ => vec![
                            x.stratum.clone(),
                            x.value.clone(),
                            withheld.clone(),
                            String::new(),
                            String::new(),
                        ],
                    })
                    .collect(),
            );
        } else if !r.match_rates.strata.is_empty() {
            s.push_str("<p>True recall by group is counted when <code>bloomlink link</code> runs with <code>--truth</code>; <code>bloomlink report --truth</code> re-renders a finished run and cannot count it.</p>");
        }
    } else {
        s.push_str("<p>No truth file was given, so true precision and recall are not shown.</p>");
    }
    s.push_str("</section>");
    // 5. Match rates.
    s.push_str("<section aria-labelledby=\"h-rates\"><h2 id=\"h-rates\">Match rates by agency and group</h2>");
    let mr = &r.match_rates;
    let _ = write!(
        s,
        "<p>Overall, {} of records are linked to another record.</p>",
        pct(mr.overall.rate)
    );
    table(
        &mut s,
        "Share of one agency's records linked to another agency",
        &["from", "to", "records", "linked", "rate (95% CI)"],
        mr.agency_pairs
            .iter()
            .map(|p| {
                vec![
                    p.from.clone(),
                    p.to.clone(),
                    p.rate.n.to_string(),
                    p.rate.k.to_string(),
                    format!(
                        "{} ({}–{})",
                        pct(p.rate.rate),
                        pct(p.rate.ci[0]),
                        pct(p.rate.ci[1])
                    ),
                ]
            })
            .collect(),
    );
    if mr.strata.is_empty() {
        s.push_str(
            "<p>The extracts declare no strata, so match rates by group cannot be shown.</p>",
        );
    } else {
        s.push_str("<table><caption>Match rate by declared group (flagged: differs from overall beyond chance, p &lt; 0.001, by 2+ points)</caption><thead><tr><th scope=\"col\">stratum</th><th scope=\"col\">value</th><th scope=\"col\">records</th><th scope=\"col\">rate (95% CI)</th><th scope=\"col\">z</th><th scope=\"col\">flag</th></tr></thead><tbody>");
        for x in &mr.strata {
            let (records, rate, z) = match (&x.rate, x.z) {
                (Some(r), Some(z)) => (
                    r.n.to_string(),
                    format!("{} ({}–{})", pct(r.rate), pct(r.ci[0]), pct(r.ci[1])),
                    format!("{z:.1}"),
                ),
                _ => (withheld.clone(), String::new(), String::new()),
            };
            let _ = write!(
                s,
                "<tr{}><th scope=\"row\">{}</th><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                if x.flagged { " class=\"flag\"" } else { "" },
                esc(&x.stratum),
                esc(&x.value),
                records,
                rate,
                z,
                if x.flagged { "FLAG" } else { "" }
            );
        }
        s.push_str("</tbody></table>");
        if mr.strata.iter().any(|x| x.withheld) {
            s.push_str(&format!(
                "<p>Groups of fewer than {min} records are withheld: a rate over a handful of people can tell whether a given person was linked (statistical disclosure control; set by <code>output.min_reported_group</code> in the job config).</p>"
            ));
        }
    }
    s.push_str("</section>");
    // 6. Input quality.
    s.push_str(
        "<section aria-labelledby=\"h-quality\"><h2 id=\"h-quality\">Input data quality</h2>",
    );
    let q = &r.input_quality;
    table(
        &mut s,
        "Per field and agency (from the encoded filters)",
        &[
            "agency",
            "field",
            "completeness",
            "unique values",
            "most common value",
            "filter fill",
            "flags",
        ],
        q.fields
            .iter()
            .map(|f| {
                vec![
                    f.agency.clone(),
                    f.field.clone(),
                    pct(f.completeness),
                    pct(f.distinct_share),
                    pct(f.top_value_share),
                    pct(f.mean_fill),
                    f.flags.join("; "),
                ]
            })
            .collect(),
    );
    table(
        &mut s,
        "Duplicate record ids rejected at encode",
        &["agency", "duplicate ids"],
        q.duplicate_ids
            .iter()
            .map(|(a, n)| vec![a.clone(), n.to_string()])
            .collect(),
    );
    let mut rej = Vec::new();
    for (a, m) in &q.reject_reasons {
        for (why, n) in m {
            rej.push(vec![a.clone(), why.clone(), n.to_string()]);
        }
    }
    if !rej.is_empty() {
        table(
            &mut s,
            "Rows rejected at encode, by reason",
            &["agency", "reason", "rows"],
            rej,
        );
    }
    table(
        &mut s,
        &format!(
            "Plausibility of the {} linked pairs: links whose declared strata disagree",
            q.linked_pairs
        ),
        &["stratum", "disagreeing links"],
        q.strata_disagreements
            .iter()
            .map(|(k, v)| vec![k.clone(), v.to_string()])
            .collect(),
    );
    let _ = write!(
        s,
        "<p>Implausibly large entities: {} (largest entity: {} records). Records attached to an entity already holding a record of their agency (likely duplicates in that agency): {}, of which {} were confirmed by comparing the record with the entity's other record of its agency and {} attached on the agency's estimated duplicate rate.</p>",
        q.large_clusters,
        q.largest_cluster,
        q.attached_duplicates,
        q.confirmed_duplicates,
        q.rate_duplicates
    );
    if !q.estimated_duplicate_rate.is_empty() {
        table(
            &mut s,
            "Estimated share of each agency's records that are a second record of a person (from the links one-to-one matching refused)",
            &["agency", "estimated duplicate rate"],
            q.estimated_duplicate_rate
                .iter()
                .map(|(k, v)| vec![k.clone(), format!("{:.2}%", 100.0 * v)])
                .collect(),
        );
    }
    s.push_str("</section>");
    // 7. Privacy.
    s.push_str("<section aria-labelledby=\"h-privacy\"><h2 id=\"h-privacy\">Privacy audit of the encodings</h2>");
    table(
        &mut s,
        "Bit frequencies and fill",
        &[
            "filter",
            "bits",
            "mean fill",
            "bit frequency min–max",
            "spread (sd)",
            "unique values",
            "most common value",
        ],
        r.privacy
            .filters
            .iter()
            .map(|f| {
                vec![
                    f.column.clone(),
                    f.bits.to_string(),
                    pct(f.mean_fill),
                    format!("{}–{}", pct(f.bit_frequency_min), pct(f.bit_frequency_max)),
                    format!("{:.3}", f.bit_frequency_sd),
                    pct(f.unique_share),
                    pct(f.top_value_share),
                ]
            })
            .collect(),
    );
    if !r.privacy.frequency_attack.is_empty() {
        table(
            &mut s,
            "Simulated frequency attack (an attacker with the filters and a public name-frequency list)",
            &[
                "field",
                "reference list",
                "records",
                "distinct values",
                "exposed: hold a common value (upper-bound estimate)",
            ],
            r.privacy
                .frequency_attack
                .iter()
                .map(|a| {
                    vec![
                        a.field.clone(),
                        a.reference.clone(),
                        a.records.to_string(),
                        a.distinct.to_string(),
                        format!("{} ({})", a.estimated_reidentified, pct(a.estimated_share)),
                    ]
                })
                .collect(),
        );
    }
    s.push_str("<ul>");
    for n in &r.privacy.notes {
        let _ = write!(s, "<li>{}</li>", esc(n));
    }
    s.push_str("</ul></section>");
    // Model and blocking.
    s.push_str("<section aria-labelledby=\"h-model\"><h2 id=\"h-model\">Blocking and the scoring model</h2>");
    let _ = write!(
        s,
        "<p>Candidates: {} ({} of {} possible pairs compared in detail).</p>",
        esc(&r.blocking.method),
        r.blocking.candidate_pairs,
        r.blocking.eligible_pairs
    );
    table(
        &mut s,
        "Blocking passes",
        &[
            "pass",
            "kind",
            "blocks",
            "pairs",
            "oversized blocks skipped",
            "pairs skipped",
            "pairs compared",
        ],
        r.blocking
            .passes
            .iter()
            .map(|p| {
                vec![
                    p.name.clone(),
                    p.kind.clone(),
                    p.blocks.to_string(),
                    p.pairs.to_string(),
                    p.skipped_blocks.to_string(),
                    p.skipped_pairs.to_string(),
                    p.compared.to_string(),
                ]
            })
            .collect(),
    );
    let _ = write!(
        s,
        "<p>Prior probability that two random records match: {:.3e} ({:.1} bits), from an estimated {:.0} matches among all eligible pairs. Comparison levels by per-field Dice: {:?} (level 0 = missing, no evidence).</p>",
        r.model.prior, r.model.prior_weight, r.model.expected_matches, r.model.level_cutoffs
    );
    if let Some(salt) = &r.model.em.salt {
        let _ = write!(
            s,
            "<p>Names are salted by year of birth: a pair whose salts agree has its shared year counted once, not once per salted field and again in the date ({:.1} bits per extra count; docs/decisions.md §16).</p>",
            salt.salt_bits
        );
    }
    for d in &r.model.em.dependent {
        let name = |f: usize| r.model.em.fields.get(f).map_or("?", String::as_str);
        let _ = write!(
            s,
            "<p>`{}` and `{}` go wrong together (a move changes both), which scoring fields independently would count twice: a pair where both are below exact gets {:+.2} bits, fitted on the training sessions' near-certain matches (docs/decisions.md §66).</p>",
            esc(name(d.fields[0])),
            esc(name(d.fields[1])),
            d.bits
        );
    }
    if r.model.record_level {
        s.push_str("<p>Match probabilities are record-level: each pair is weighed against its records' other candidates and the chance that a record has a partner in the other agency at all (docs/decisions.md §17).</p>");
    }
    if let Some(look) = &r.model.second_look {
        let singles: Vec<String> = look
            .single_records
            .iter()
            .map(|(a, n)| format!("{} {n}", esc(a)))
            .collect();
        let shares: Vec<String> = look
            .partner_share
            .iter()
            .map(|p| {
                format!(
                    "{} to {} {:.1}%",
                    esc(&p.agency),
                    esc(&p.other),
                    100.0 * p.share
                )
            })
            .collect();
        // One figure per agency pair (the same both ways), two agencies only.
        let left: Vec<String> = look
            .partner_share
            .iter()
            .filter(|p| p.agency < p.other)
            .filter_map(|p| {
                p.left_unlinked
                    .map(|x| format!("{} and {} {:.1}%", esc(&p.agency), esc(&p.other), 100.0 * x))
            })
            .collect();
        let left = if left.is_empty() {
            String::new()
        } else {
            format!(
                " Estimated share of the matches between the agencies that the first resolution alone left unlinked: {} (the second look weighs a weak match between single records up by its inverse; docs/decisions.md §67).",
                left.join("; ")
            )
        };
        let _ = write!(
            s,
            "<p>Second look at the records left single ({}): {} pairs among them compared, {} new pairs kept, {} pairs raised over the threshold. Estimated share of single records whose partner is a single record of the other agency: {} (docs/decisions.md §31).{}</p>",
            singles.join(", "),
            look.pairs,
            look.added,
            look.raised,
            shares.join("; "),
            left
        );
    }
    table(
        &mut s,
        "Match weights (log2 m/u) per field and level",
        &["field", "levels 1..n", "weights by level 1..n", "m", "u"],
        r.model
            .fields
            .iter()
            .map(|f| {
                let fmt = |v: &[f64], d: usize| {
                    v.iter()
                        .skip(1)
                        .map(|x| format!("{x:.d$}"))
                        .collect::<Vec<_>>()
                        .join(" / ")
                };
                vec![
                    f.field.clone(),
                    f.levels.join(" / "),
                    fmt(&f.weights, 1),
                    fmt(&f.m, 3),
                    fmt(&f.u, 4),
                ]
            })
            .collect(),
    );
    s.push_str("</section>");
    if let Some(c) = &r.changes {
        s.push_str("<section aria-labelledby=\"h-changes\"><h2 id=\"h-changes\">Changes since the previous run</h2>");
        let _ = write!(
            s,
            "<p>Previous run: <code>{}</code> ({} entities).</p>",
            esc(&c.previous),
            c.previous_entities
        );
        table(
            &mut s,
            "Entity pseudonyms",
            &["change", "entities", "why"],
            vec![
                vec![
                    "kept".into(),
                    c.kept.to_string(),
                    "same records as before".into(),
                ],
                vec![
                    "kept, records changed".into(),
                    c.kept_changed.to_string(),
                    "the id stays with the entity holding most of its previous records".into(),
                ],
                vec![
                    "merged".into(),
                    c.merged.to_string(),
                    "a new or corrected record joined previous entities; the larger keeps its id"
                        .into(),
                ],
                vec![
                    "split".into(),
                    c.split.to_string(),
                    "a previous entity's records no longer link; the largest part keeps the id"
                        .into(),
                ],
                vec![
                    "created".into(),
                    c.created.to_string(),
                    "only records the previous run did not have".into(),
                ],
                vec![
                    "renamed".into(),
                    c.renamed.to_string(),
                    "split-off parts that get a new id".into(),
                ],
                vec![
                    "retired".into(),
                    c.retired.to_string(),
                    "previous ids no longer used (merged away or records gone)".into(),
                ],
            ],
        );
        if let Some(w) = &c.work {
            match (&w.why_full, w.incremental) {
                (_, true) => {
                    let _ = write!(
                        s,
                        "<p>Incremental refresh: only pairs holding a new or changed record were compared ({} pairs), with the previous run's model; the previous run's {} likely pairs between unchanged records were carried over and scored again.</p>",
                        w.pairs_compared, w.pairs_carried
                    );
                    table(
                        &mut s,
                        "Records since the previous run",
                        &["records", "count", "meaning"],
                        vec![
                            vec![
                                "new".into(),
                                w.records_new.to_string(),
                                "record id not in the previous run".into(),
                            ],
                            vec![
                                "changed".into(),
                                w.records_changed.to_string(),
                                "same record id, different encodings (a corrected record)".into(),
                            ],
                            vec![
                                "unchanged".into(),
                                w.records_unchanged.to_string(),
                                "identical encodings; their pairs were not compared again".into(),
                            ],
                            vec![
                                "removed".into(),
                                w.records_removed.to_string(),
                                "in the previous run, in no extract now".into(),
                            ],
                        ],
                    );
                }
                (Some(why), false) => {
                    let _ = write!(s, "<p>Every record was linked again: {}.</p>", esc(why));
                }
                (None, false) => {}
            }
        }
        s.push_str("</section>");
    }
    // 1. Audit trail.
    s.push_str("<section aria-labelledby=\"h-audit\"><h2 id=\"h-audit\">Run and audit trail</h2>");
    let _ = write!(
        s,
        "<p>Command: <code>{}</code></p><p>Schema fingerprint: <code>{}</code><br>Key check: <code>{}</code><br>Comparison kernel: {} on {} threads</p>",
        esc(&r.run.command.join(" ")),
        esc(&r.run.schema_fingerprint),
        esc(&r.run.key_check),
        esc(&r.run.kernel),
        r.run.threads
    );
    table(
        &mut s,
        "Input extracts",
        &["agency", "file", "rows", "SHA-256", "encoded with"],
        r.run
            .inputs
            .iter()
            .map(|i| {
                vec![
                    i.agency.clone(),
                    i.path.clone(),
                    i.rows.to_string(),
                    i.sha256.clone(),
                    i.encoded_with.clone(),
                ]
            })
            .collect(),
    );
    table(
        &mut s,
        "Time per stage",
        &["stage", "seconds"],
        r.run
            .timings
            .iter()
            .map(|t| vec![t.stage.clone(), format!("{:.3}", t.seconds)])
            .collect(),
    );
    let _ = write!(
        s,
        "<details><summary>Job configuration</summary><pre>{}</pre></details></section>",
        esc(&serde_json::to_string_pretty(&r.run.config).unwrap_or_default())
    );
    s.push_str("</main></body></html>\n");
    s
}
