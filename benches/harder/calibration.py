#!/usr/bin/env python3
"""Calibration of bloomlink's match probabilities, and a record-level prior
prototype, against a `bloomlink synth` truth file (two agencies:
social_care, school).

Usage: python calibration.py SYNTH_DIR LINK_OUT_DIR

Prints (1) per band of `match_probability` in LINK_OUT_DIR/pairs.parquet,
the number of pairs, the share that are true matches and the mean
probability (a calibrated model has the two equal); (2) precision, recall
and F1 of greedy one-to-one matching at 0.5 (no attachment of
within-agency duplicates, so below `bloomlink evaluate`'s figure) on the
probabilities as written, and on a record-level posterior:
x / (c + S) with x = 2^match_weight, S the sum of x over the record's
pairs, c = 1 - pi (pi = estimated matches / agency size), from the less
contested record's side (docs/decisions.md §16).
"""
import json, sys

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

base, out = sys.argv[1], sys.argv[2]
truth = pd.read_csv(f"{base}/truth.csv")
ent = pd.Series(truth.entity.values, index=truth.record_id)
p = pq.read_table(f"{out}/pairs.parquet").to_pandas()
p["true"] = ent.reindex(p.record_id_a).values == ent.reindex(p.record_id_b).values
bands = pd.cut(p.match_probability, [0, 0.01, 0.1, 0.3, 0.5, 0.7, 0.9, 0.99, 0.999, 1.0])
g = p.groupby(bands, observed=True).agg(
    pairs=("true", "size"), true_share=("true", "mean"), mean_p=("match_probability", "mean")
)
print(g.round(4).T.to_string())

pairs_true = truth.merge(truth, on="entity").query('agency_x == "social_care" and agency_y == "school"')
T = len(pairs_true)
ra, rb, t = p.record_id_a.values, p.record_id_b.values, p.true.values


def greedy(q, thr=0.5):
    used_a, used_b, tp, fp = set(), set(), 0, 0
    for i in np.argsort(-q, kind="stable"):
        if q[i] < thr:
            break
        if ra[i] in used_a or rb[i] in used_b:
            continue
        used_a.add(ra[i])
        used_b.add(rb[i])
        tp += t[i]
        fp += not t[i]
    prec, rec = tp / max(tp + fp, 1), tp / T
    return prec, rec, 2 * prec * rec / max(prec + rec, 1e-12)


print("as written:          P %.4f R %.4f F1 %.4f" % greedy(p.match_probability.values))
n = json.load(open(f"{out}/report.json"))["model"]["expected_matches"]
na, nb = (truth.agency == "social_care").sum(), (truth.agency == "school").sum()
x = np.exp2(p.match_weight.values.astype(float))
sa = pd.Series(x).groupby(ra).transform("sum").values
sb = pd.Series(x).groupby(rb).transform("sum").values
ca, cb = 1 - min(n / na, 1), 1 - min(n / nb, 1)
q = np.maximum(x / (ca + sa), x / (cb + sb))
print("record-level prior:  P %.4f R %.4f F1 %.4f" % greedy(q))
