#!/usr/bin/env python3
"""anonlink 0.15.3 with its own Hamming-LSH blocking, on bloomlink's CLKs.

    python anonlink_blocked.py A.parquet B.parquet TRUTH.csv G R THRESHOLD

Reads the record-level CLKs of two bloomlink extracts (what a hub holds),
blocks with anonlink.blocking.bit_blocking(G bands, R bits each), keeps
candidate pairs with Dice >= THRESHOLD (anonlink.candidate_generation.
find_candidate_pairs, native Dice), solves greedily one-to-one, and prints
one JSON line: seconds per phase, peak memory, candidates, P/R/F1 against a
`bloomlink synth` truth file (agency,record_id,entity). Single process:
anonlink's blocked candidate generation has no parallel path.
"""
import csv
import json
import resource
import sys
import time

import pyarrow.parquet as pq
from anonlink.blocking import bit_blocking
from anonlink.candidate_generation import find_candidate_pairs
from anonlink.similarities import dice_coefficient
from anonlink.solving import greedy_solve, pairs_from_groups
from bitarray import bitarray


def load(path):
    t = pq.read_table(path, columns=["record_id", "clk"])
    agency = pq.read_metadata(path).metadata[b"bloomlink.agency"].decode()
    ids = t.column("record_id").to_pylist()
    clks = []
    for b in t.column("clk").to_pylist():
        x = bitarray(endian="big")
        x.frombytes(b)
        clks.append(x)
    return agency, ids, clks


def main():
    pa, pb, truth_csv, g, r, thr = sys.argv[1:7]
    g, r, thr = int(g), int(r), float(thr)
    t0 = time.perf_counter()
    (ag_a, ids_a, a), (ag_b, ids_b, b) = load(pa), load(pb)
    load_s = time.perf_counter() - t0
    ent = {}
    with open(truth_csv, newline="") as f:
        for row in csv.DictReader(f):
            ent.setdefault(row["entity"], {})[row["agency"]] = row["record_id"]
    ia = {x: i for i, x in enumerate(ids_a)}
    ib = {x: i for i, x in enumerate(ids_b)}
    truth = {
        (ia[e[ag_a]], ib[e[ag_b]])
        for e in ent.values()
        if ag_a in e and ag_b in e and e[ag_a] in ia and e[ag_b] in ib
    }
    t1 = time.perf_counter()
    cands = find_candidate_pairs(
        [a, b], dice_coefficient, thr, blocking_f=bit_blocking(g, r, seed=5)
    )
    cand_s = time.perf_counter() - t1
    t2 = time.perf_counter()
    pred = set(pairs_from_groups(greedy_solve(cands)))
    solve_s = time.perf_counter() - t2
    tp = len(pred & truth)
    p = tp / len(pred) if pred else 0.0
    rec = tp / len(truth) if truth else 0.0
    print(
        json.dumps(
            {
                "na": len(a),
                "nb": len(b),
                "bands": g,
                "bits": r,
                "threshold": thr,
                "load_s": round(load_s, 2),
                "candidates_s": round(cand_s, 2),
                "solve_s": round(solve_s, 2),
                "candidates": len(cands[0]),
                "peak_rss_gb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6, 2),
                "precision": round(p, 4),
                "recall": round(rec, 4),
                "f1": round(2 * p * rec / (p + rec), 4) if p + rec else 0.0,
            }
        )
    )


if __name__ == "__main__":
    main()
