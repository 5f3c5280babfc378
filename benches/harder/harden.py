#!/usr/bin/env python3
"""Raise the corruption of gen_synth.py output for the "harder data" comparison.

Usage: python harden.py IN_DIR OUT_DIR [seed]
Reads IN_DIR/synth_a.csv, synth_b.csv, synth_truth.csv (from
../shared/anchors/gen_synth.py) and writes the same files to OUT_DIR with
soc_sec_id blanked (empty = missing for every tool) and, on every B record that has a true match, extra
corruption: each field gets a second and third edit with p=0.3 each, blanks
are raised to 8% per field, and day/month of birth are swapped with p=0.05
(when the day is 12 or less). A records are left as they are.
"""
import csv, random, string, sys
from pathlib import Path

src, out = Path(sys.argv[1]), Path(sys.argv[2])
rng = random.Random(int(sys.argv[3]) if len(sys.argv) > 3 else 7)
out.mkdir(parents=True, exist_ok=True)
truth = list(csv.reader(open(src / "synth_truth.csv")))
matched_b = {r[1] for r in truth[1:]}


def edit(s):
    if not s:
        return s
    alpha = string.digits if s.isdigit() else string.ascii_lowercase
    i = rng.randrange(len(s))
    op = rng.randrange(4)
    if op == 0:
        return s[:i] + rng.choice(alpha) + s[i:]
    if op == 1 and len(s) > 1:
        return s[:i] + s[i + 1:]
    if op == 2:
        return s[:i] + rng.choice(alpha) + s[i + 1:]
    if len(s) > 2:
        i = min(i, len(s) - 2)
        return s[:i] + s[i + 1] + s[i] + s[i + 2:]
    return s


for side in "ab":
    rows = list(csv.DictReader(open(src / f"synth_{side}.csv")))
    cols = list(rows[0].keys())
    with open(out / f"synth_{side}.csv", "w", newline="") as f:
        w = csv.DictWriter(f, cols)
        w.writeheader()
        for r in rows:
            r["soc_sec_id"] = ""
            if side == "b" and r["rec_id"] in matched_b:
                for c in cols[1:-1]:
                    if rng.random() < 0.05:  # 3% + 5% = 8% blanks
                        r[c] = ""
                        continue
                    for _ in range(2):
                        if rng.random() < 0.3:
                            r[c] = edit(r[c])
                d = r["date_of_birth"]
                if len(d) == 8 and d.isdigit() and int(d[6:]) <= 12 and rng.random() < 0.05:
                    r["date_of_birth"] = d[:4] + d[6:] + d[4:6]
            w.writerow(r)
open(out / "synth_truth.csv", "w").write("".join(",".join(r) + "\n" for r in truth))
