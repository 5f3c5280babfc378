#!/usr/bin/env bash
# Run every fuzz target for a fixed number of iterations, starting from seeds
# the project owns (its schemas, fixture CSVs, an extract encoded from them).
#
#   fuzz/run.sh [ITERATIONS [TARGET...]]   # default 20000 per target, all targets
#
# Needs cargo-fuzz (`cargo install cargo-fuzz`). libFuzzer's instrumentation
# flags are nightly-only; on a stable toolchain RUSTC_BOOTSTRAP=1 unlocks them
# (set here, for this build only). Exits non-zero on the first crash, leaving
# the input under fuzz/artifacts/TARGET/.
set -euo pipefail
N=${1:-20000}
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(schema_toml schema_clkhash csv_input extract)
cd "$(dirname "$0")/.."
export RUSTC_BOOTSTRAP=1
cargo build --release --quiet
seeds=fuzz/corpus
rm -rf "$seeds"
mkdir -p "$seeds"/{schema_toml,schema_clkhash,csv_input,extract}
cp config/*.toml config/demo/*.toml "$seeds/schema_toml/"
cp fuzz/seeds/schema_clkhash/*.json "$seeds/schema_clkhash/"
for f in fixtures/synth3/*.csv; do head -n 20 "$f" > "$seeds/csv_input/$(basename "$f")"; done
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
printf 'fuzz seed key' > "$tmp/key"
chmod 600 "$tmp/key"
head -n 20 fixtures/synth3/school.csv > "$tmp/school.csv"
target/release/bloomlink -q encode --schema config/demo/school.toml --secret-file "$tmp/key" \
    --input "$tmp/school.csv" --output "$seeds/extract/school.parquet" --agency school
rm -f "$seeds"/extract/*.rejects.csv
for t in "${targets[@]}"; do
    echo "fuzz $t: $N iterations"
    (cd fuzz && cargo fuzz run -O "$t" -- -runs="$N" -max_len=65536 -timeout=10 \
        2>&1 | grep -E "^(Done|#[0-9]+ +DONE)|ERROR|panicked|SUMMARY" || true)
    if [ -n "$(ls -A "fuzz/artifacts/$t" 2>/dev/null)" ]; then
        echo "fuzz $t: crash saved in fuzz/artifacts/$t" >&2
        exit 1
    fi
done
echo "fuzz: ${targets[*]} ran $N iterations each without a crash"
