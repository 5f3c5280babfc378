#!/usr/bin/env python3
"""Splink 5 (DuckDB) on the plaintext of two `bloomlink synth` agencies
(social_care, school): the plaintext reference for bloomlink's F1 on the same
records. Same fields bloomlink's demo schemas encode (names, date of birth,
sex, postcode, address); blocking sized for a million records per side.

Usage: python splink_synth.py SYNTH_DIR [threads]
Prints one JSON line: phase timings, peak RSS, and F1 measured like
`bloomlink evaluate` (cross-agency pairs within clusters) for (a) connected
components of pairs with match probability >= 0.5 and (b) greedy one-to-one.
"""
import json, logging, resource, sys, time
from collections import defaultdict
import duckdb, pandas as pd, splink
import splink.comparison_library as cl
from splink import DuckDBAPI, Linker, SettingsCreator, block_on

src = sys.argv[1]
threads = int(sys.argv[2]) if len(sys.argv) > 2 else None
T = {}
t_all = time.perf_counter()


def load(name, idc, first, last, dob, fmt, sex, pc, addr):
    df = pd.read_csv(f"{src}/{name}.csv", dtype=str, keep_default_na=False).replace("", None)
    d = pd.to_datetime(df[dob], format=fmt, errors="coerce").dt.strftime("%Y-%m-%d")
    s = df[sex].str.lower().str[0].map({"m": "m", "f": "f", "1": "m", "2": "f"})
    return pd.DataFrame({"rec_id": df[idc], "first_name": df[first].str.lower(),
                         "surname": df[last].str.lower(), "dob": d, "yob": d.str[:4], "sex": s,
                         "postcode": df[pc].str.lower().str.replace(" ", ""),
                         "address": df[addr].str.lower()})


t0 = time.perf_counter()
dfa = load("social_care", "child_id", "forename", "surname", "dob", "%d/%m/%Y", "gender", "postcode", "address")
dfb = load("school", "UPN", "LegalForename", "LegalSurname", "DOB", "%Y-%m-%d", "Sex", "Postcode", "AddressLine1")
con = duckdb.connect()
con.execute("SET memory_limit = '14GB'")
if threads:
    con.execute(f"SET threads TO {threads}")
db = DuckDBAPI(connection=con)
sa = db.register(dfa, dataset_display_name="social_care")
sb = db.register(dfb, dataset_display_name="school")
settings = SettingsCreator(
    link_type="link_only",
    unique_id_column_name="rec_id",
    comparisons=[
        cl.NameComparison("first_name").configure(term_frequency_adjustments=True),
        cl.NameComparison("surname").configure(term_frequency_adjustments=True),
        cl.DateOfBirthComparison("dob", input_is_string=True),
        cl.ExactMatch("sex"),
        cl.PostcodeComparison("postcode"),
        cl.JaroWinklerAtThresholds("address", [0.9, 0.7]),
    ],
    blocking_rules_to_generate_predictions=[
        block_on("dob"),
        block_on("postcode"),
        block_on("first_name", "surname"),
        block_on("surname", "yob"),
    ],
    retain_intermediate_calculation_columns=False,
)
linker = Linker([sa, sb], settings, log_level=logging.WARNING)
T["load_setup_s"] = time.perf_counter() - t0
t0 = time.perf_counter()
linker.training.estimate_probability_two_random_records_match(
    [block_on("first_name", "surname", "dob"), block_on("dob", "postcode")], recall=0.8)
linker.training.estimate_u_using_random_sampling(max_pairs=1e7, seed=1)
linker.training.estimate_parameters_using_expectation_maximisation(block_on("dob"))
linker.training.estimate_parameters_using_expectation_maximisation(block_on("first_name", "surname"))
T["train_s"] = time.perf_counter() - t0
t0 = time.perf_counter()
pred = linker.inference.predict(threshold_match_probability=0.5).as_pandas_dataframe()
T["predict_s"] = time.perf_counter() - t0
T["total_s"] = time.perf_counter() - t_all

truth = pd.read_csv(f"{src}/truth.csv", dtype=str)
ent = dict(zip(zip(truth.agency, truth.record_id), truth.entity))
by = defaultdict(lambda: [0, 0])
for (ag, _), e in ent.items():
    by[e][0 if ag == "social_care" else 1] += 1
n_true = sum(x * y for x, y in by.values())
a_is_l = pred["source_dataset_l"] == "social_care"
pred["a"] = pred["rec_id_l"].where(a_is_l, pred["rec_id_r"])
pred["b"] = pred["rec_id_r"].where(a_is_l, pred["rec_id_l"])


def score(pairs):
    # clusters = connected components; count cross-agency pairs in clusters
    parent = {}
    def find(x):
        while parent.setdefault(x, x) != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x
    for a, b in pairs:
        ra, rb = find(("a", a)), find(("b", b))
        if ra != rb:
            parent[ra] = rb
    comp = defaultdict(list)
    for x in list(parent):
        comp[find(x)].append(x)
    pred_n = tp = 0
    for members in comp.values():
        A = [m[1] for m in members if m[0] == "a"]
        B = [m[1] for m in members if m[0] == "b"]
        pred_n += len(A) * len(B)
        for x in A:
            ex = ent.get(("social_care", x))
            tp += sum(1 for y in B if ent.get(("school", y)) == ex)
    p = tp / pred_n if pred_n else 0.0
    r = tp / n_true
    return {"pred": pred_n, "tp": tp, "precision": p, "recall": r, "f1": 2 * p * r / (p + r) if p + r else 0.0}


def greedy(df):
    ua, ub, out = set(), set(), []
    for a, b in df.sort_values("match_probability", ascending=False)[["a", "b"]].itertuples(index=False):
        if a not in ua and b not in ub:
            ua.add(a); ub.add(b); out.append((a, b))
    return out


res = {"splink": splink.__version__, "duckdb": duckdb.__version__, "threads": threads or "default",
       "records": [len(dfa), len(dfb)], "true_pairs": n_true, "timings": T,
       "lambda": linker._settings_obj._probability_two_random_records_match,
       "components@0.5": score(list(zip(pred.a, pred.b))), "greedy1to1@0.5": score(greedy(pred)),
       "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
print(json.dumps(res))
