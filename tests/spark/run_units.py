"""Run the work units of a bloomlink plan as Spark tasks.

    python run_units.py BLOOMLINK_BINARY PLAN_DIR [SPARK_MASTER]

Each Spark task runs `bloomlink link --plan PLAN_DIR --unit I` for the units
of its partition (mapPartitions); the units write their results into
PLAN_DIR/units, which every executor must reach (a shared file system, or
copy them back). Afterwards run `bloomlink link --merge PLAN_DIR --out OUT`.
The master defaults to local[2] (the test); on a cluster pass its URL.
Spark only schedules: it never sees a filter, a key or an identifier.
"""

import json
import subprocess
import sys

from pyspark.sql import SparkSession


def main():
    binary, plan = sys.argv[1], sys.argv[2]
    master = sys.argv[3] if len(sys.argv) > 3 else "local[2]"
    with open(f"{plan}/plan.json", encoding="utf-8") as f:
        n = len(json.load(f)["prepared"]["chunks"])
    spark = (
        SparkSession.builder.master(master)
        .appName("bloomlink-units")
        .config("spark.ui.enabled", "false")
        .getOrCreate()
    )

    def run_partition(units):
        for i in units:
            r = subprocess.run(
                [binary, "-q", "link", "--plan", plan, "--unit", str(i)],
                capture_output=True,
                text=True,
            )
            if r.returncode != 0:
                raise RuntimeError(f"unit {i} failed: {r.stderr.strip()}")
            yield i

    done = (
        spark.sparkContext.parallelize(range(n), numSlices=min(n, 8))
        .mapPartitions(run_partition)
        .collect()
    )
    spark.stop()
    if sorted(done) != list(range(n)):
        sys.exit(f"units run: {sorted(done)}, expected 0..{n}")
    print(f"ran {len(done)} units")


if __name__ == "__main__":
    main()
