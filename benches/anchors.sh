#!/usr/bin/env bash
# Every benchmark of issue 8 and issue 2 beside its peer tool, in one run,
# one tool after the other (nothing else should run meanwhile):
#
#   1. FEBRL4: Splink 5 on the plaintext, then bloomlink encode + link.
#   2. Encode 1M FEBRL-like rows: clkhash 0.18 (1 and 2 processes), then
#      bloomlink with the clkhash schema and with config/febrl4.toml, on one
#      core and on all cores.
#   3. Link 1M x 1M `bloomlink synth` records: anonlink 0.15 with its own
#      Hamming-LSH blocking on the same extracts' CLKs, then bloomlink with
#      config/job-large.toml.
#
# Needs ../shared (anchors and reference data) and the anchors' venv:
#   ../shared/anchors/setup.sh /path/venv
#   PYTHON=/path/venv/bin/python benches/anchors.sh [WORK_DIR]
# Environment: PEOPLE (default 1000000) sizes steps 2 and 3; SKIP_ANONLINK=1
# leaves out anonlink (about 16 minutes and 16 GB at 1M). Each step prints
# a line starting with `anchor:`; all of them are also in WORK_DIR/summary.txt.
# The build is made first: nothing compiles while anything is timed.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)
P=${PYTHON:-python3}
A=$repo/../shared/anchors
D=$repo/../shared/data
N=${PEOPLE:-1000000}
W=${1:-$(mktemp -d)}
mkdir -p "$W"
W=$(cd "$W" && pwd)
B=$repo/target/release/bloomlink
cargo build --release -q
summary=$W/summary.txt
: > "$summary"
say() { echo "anchor: $*" | tee -a "$summary"; }
# Wall seconds and peak resident kilobytes of a command; its output in $W/$1.log.
timed() {
  local name=$1
  shift
  /usr/bin/time -f "%e %M" -o "$W/$name.time" "$@" > "$W/$name.log" 2>&1
  read -r secs kb < "$W/$name.time"
}
head -c 32 /dev/urandom | base64 | tr -d '\n' > "$W/key"
say "host: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(nproc) cores; bloomlink $(git rev-parse --short HEAD)"

# 1. FEBRL4 against Splink on plaintext.
timed splink "$P" "$A/bench_splink.py" "$D/febrl/febrl4_a.csv" "$D/febrl/febrl4_b.csv" \
  "$D/febrl/febrl4_truth.csv" 2
say "FEBRL4 Splink: ${secs} s wall, ${kb} KB; $(tail -1 "$W/splink.log")"
for s in a b; do
  "$B" encode -q --schema config/febrl4.toml --secret-file "$W/key" \
    --input "$D/febrl/febrl4_$s.csv" --output "$W/febrl4_$s.parquet" --agency "$s"
done
rm -rf "$W/febrl4_out"
timed febrl4_link "$B" link --extract "$W/febrl4_a.parquet" --extract "$W/febrl4_b.parquet" \
  --out "$W/febrl4_out" --truth "$D/febrl/febrl4_truth.csv"
say "FEBRL4 bloomlink link: ${secs} s wall, ${kb} KB; $(grep 'against the truth' "$W/febrl4_link.log")"

# 2. Encoding N FEBRL-like rows against clkhash.
"$P" "$A/gen_synth.py" "$D/febrl" "$W/synth" "$N" "$N" $((N / 2)) 1 > /dev/null
in=$W/synth/synth_a.csv
ck=$D/clkhash-vectors
for workers in 1 2; do
  timed "clkhash_$workers" "$P" "$A/gen_clks.py" "$ck/febrl4-schema-doublehash.json" \
    "$ck/secret.txt" "$in" "$W/ck" "$workers" --no-write
  say "encode ${N} clkhash, ${workers} process(es): $(tail -1 "$W/clkhash_$workers.log")"
done
for schema in "$ck/febrl4-schema-doublehash.json" config/febrl4.toml; do
  for run in 1 2; do
    for cores in one all; do
      rm -f "$W/enc.parquet" "$W/enc.rejects.csv"
      if [ "$cores" = one ]; then
        timed enc env RAYON_NUM_THREADS=1 taskset -c 0 "$B" encode -q --schema "$schema" \
          --secret-file "$ck/secret.txt" --input "$in" --output "$W/enc.parquet" --agency a
      else
        timed enc "$B" encode -q --schema "$schema" --secret-file "$ck/secret.txt" \
          --input "$in" --output "$W/enc.parquet" --agency a
      fi
      rate=$(echo "$N / $secs" | bc)
      say "encode ${N} bloomlink $(basename "$schema"), $cores core(s), run $run: ${secs} s = ${rate} rec/s, ${kb} KB, extract md5 $(md5sum < "$W/enc.parquet" | cut -c1-8)"
    done
  done
done

# 3. Linking N x N synthetic records against anonlink with blocking.
"$B" -q synth --people "$N" --agencies 2 --overlap 1.0 --seed 5 --out "$W/link" > /dev/null 2>&1
for a in social_care school; do
  "$B" encode -q --schema "config/demo/$a.toml" --secret-file "$W/key" \
    --input "$W/link/$a.csv" --output "$W/link/$a.parquet" --agency "$a"
done
if [ "${SKIP_ANONLINK:-0}" != 1 ]; then
  timed anonlink "$P" benches/harder/anonlink_blocked.py "$W/link/social_care.parquet" \
    "$W/link/school.parquet" "$W/link/truth.csv" 16 22 0.7
  say "link ${N} x ${N} anonlink bit_blocking(16, 22), t=0.7: ${secs} s wall, ${kb} KB; $(tail -1 "$W/anonlink.log")"
fi
rm -rf "$W/link/out"
timed link "$B" -v link --config config/job-large.toml --extract "$W/link/social_care.parquet" \
  --extract "$W/link/school.parquet" --out "$W/link/out" --truth "$W/link/truth.csv"
say "link ${N} x ${N} bloomlink job-large: ${secs} s wall, ${kb} KB; $(grep -o 'compared [0-9]* candidate pairs[^;]*' "$W/link.log" | head -1); $(grep -o 'second look[^,]*' "$W/link.log" | head -1); $(grep 'against the truth' "$W/link.log")"
echo "summary: $summary"
