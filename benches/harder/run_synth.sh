#!/usr/bin/env bash
# bloomlink vs Splink on `bloomlink synth` data (two agencies), same plaintext.
#   PYTHON=/path/venv/bin/python benches/harder/run_synth.sh [PEOPLE]
set -euo pipefail
cd "$(dirname "$0")/../.."
N=${1:-10000}
P=${PYTHON:-python3}
T=$(mktemp -d)
B=target/release/bloomlink
cargo build --release -q
$B synth --people "$N" --agencies 2 --seed 11 --out "$T/synth" 2>/dev/null
$P benches/harder/synth_to_febrl.py "$T/synth" "$T/f"
head -c 24 /dev/urandom | base64 | tr -d "\n" > "$T/key"
for s in a b; do
  $B encode -q --schema config/febrl-nossn.toml --secret-file "$T/key" \
    --input "$T/f/$s.csv" --output "$T/$s.parquet" --agency "$s"
done
$B link -q --extract "$T/a.parquet" --extract "$T/b.parquet" --out "$T/out"
echo "bloomlink (encrypted, same columns as Splink):"
$B evaluate --links "$T/out/links.parquet" --truth "$T/f/truth.csv" | tr -d '\n '; echo
echo "Splink (plaintext):"
$P ../shared/anchors/bench_splink.py "$T/f/a.csv" "$T/f/b.csv" "$T/f/truth.csv" 2 | tail -1 \
  | $P -c 'import json,sys; d=json.loads(sys.stdin.read()); print({"total_s": d["timings"]["total_s"], "blocking_recall": d["blocking_recall"], **d["greedy1to1@0.5"]})'
for s in a b; do
  $P ../shared/anchors/gen_clks.py ../shared/data/clkhash-vectors/febrl4-schema-doublehash.json "$T/key" \
    "$T/f/$s.csv" "$T/ck_$s" 2 --no-validate >/dev/null
done
echo "anonlink (sweep; best greedy F1):"
$P ../shared/anchors/bench_anonlink.py febrl "$T/ck_a.clk.b64" "$T/ck_b.clk.b64" "$T/f/a.csv" "$T/f/b.csv" "$T/f/truth.csv" \
  | $P -c 'import json,sys; d=json.loads(sys.stdin.read().strip().splitlines()[-1]); b=max(d["sweep"], key=lambda s: s["greedy"]["f1"]); print({"best_threshold": b["threshold"], **b["greedy"]})'
rm -rf "$T"
