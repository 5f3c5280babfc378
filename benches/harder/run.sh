#!/usr/bin/env bash
# Harder-data comparison: bloomlink (encrypted) vs Splink (plaintext) vs
# anonlink (encrypted, best threshold), on the same records in one run.
# Needs ../shared (anchors + FEBRL pools) and the anchors' venv:
#   ../shared/anchors/setup.sh /path/venv && PYTHON=/path/venv/bin/python benches/harder/run.sh [N]
set -euo pipefail
cd "$(dirname "$0")/../.."
N=${1:-10000}
P=${PYTHON:-python3}
A=../shared/anchors
T=$(mktemp -d)
B=target/release/bloomlink
cargo build --release -q
$P $A/gen_synth.py ../shared/data/febrl "$T/base" "$N" "$N" $((N / 2)) 1 >/dev/null
$P benches/harder/harden.py "$T/base" "$T/hard"
head -c 24 /dev/urandom | base64 | tr -d "\n" > "$T/key"
for s in a b; do
  $B encode -q --schema config/febrl-nossn.toml --secret-file "$T/key" \
    --input "$T/hard/synth_$s.csv" --output "$T/$s.parquet" --agency "$s"
done
start=$(date +%s.%N)
$B link -q --extract "$T/a.parquet" --extract "$T/b.parquet" --out "$T/out"
end=$(date +%s.%N)
echo "bloomlink probabilistic: $(echo "$end - $start" | bc) s"
$B evaluate --links "$T/out/links.parquet" --truth "$T/hard/synth_truth.csv" | tr -d '\n '; echo
printf '[scoring]\nmode = "dice"\n' > "$T/dice.toml"
$B link -q --config "$T/dice.toml" --extract "$T/a.parquet" --extract "$T/b.parquet" --out "$T/outd"
echo "bloomlink dice mode (t=0.8):"
$B evaluate --links "$T/outd/links.parquet" --truth "$T/hard/synth_truth.csv" | tr -d '\n '; echo
echo "Splink (plaintext):"
$P $A/bench_splink.py "$T/hard/synth_a.csv" "$T/hard/synth_b.csv" "$T/hard/synth_truth.csv" 2 | tail -1
# anonlink: clkhash CLKs with the FEBRL4 doubleHash schema (soc_sec_id is blank, so it adds no bits).
for s in a b; do
  $P $A/gen_clks.py ../shared/data/clkhash-vectors/febrl4-schema-doublehash.json "$T/key" \
    "$T/hard/synth_$s.csv" "$T/ck_$s" 2 --no-validate >/dev/null
done
echo "anonlink (sweep; best greedy F1):"
$P $A/bench_anonlink.py febrl "$T/ck_a.clk.b64" "$T/ck_b.clk.b64" "$T/hard/synth_a.csv" "$T/hard/synth_b.csv" "$T/hard/synth_truth.csv" \
  | $P -c 'import json,sys; d=json.loads(sys.stdin.read().strip().splitlines()[-1]); b=max(d["sweep"], key=lambda s: s["greedy"]["f1"]); print({"best_threshold": b["threshold"], **b["greedy"]})'
rm -rf "$T"
