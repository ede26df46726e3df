"""The whole `cpu` preset on the real photos: fetch -> train -> predict, as a user runs them.

Each step is `python -m kit ...` in a subprocess, from a fresh data directory and feature
cache, so the times include everything. Prints each stage's time and peak memory (the
train process reports its own stages in metrics.json) and the OOF scores.

    python bench/cpu_preset.py [--keep] [--exclusions]
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import time

from common import DATA, REAL, REPO, WEIGHTS, need_real_data

BENCH = REPO / "data" / "bench-cpu"


def run(args: list[str]) -> float:
    started = time.time()
    subprocess.run([sys.executable, "-m", "kit", *args], cwd=REPO, check=True)
    return time.time() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--exclusions", action="store_true",
                        help=f"train with the exclusions.csv of {DATA} (from `make clean-data`)")
    args = parser.parse_args()
    need_real_data()
    shutil.rmtree(BENCH, ignore_errors=True)
    common = ["--preset", "cpu", "--set", f"weights={WEIGHTS}", "--set", f"data_dir={BENCH / 'data'}",
              "--set", f"cache_dir={BENCH / 'cache'}", "--set", f"runs_dir={BENCH / 'runs'}",
              "--set", f"submissions_dir={BENCH / 'submissions'}"]
    times = {"fetch": run(["fetch", "--from", str(REAL), *common])}
    if args.exclusions:
        shutil.copy(DATA / "exclusions.csv", BENCH / "data" / "exclusions.csv")
    times["train"] = run(["train", *common])
    times["predict"] = run(["predict", *common])
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    metrics = json.loads((BENCH / "runs" / "cpu" / "metrics.json").read_text())
    print(f"\n## cpu preset on {REAL} ({'with' if args.exclusions else 'without'} exclusions)")
    print("stage | seconds | peak RSS MB")
    print("--- | --- | ---")
    print(f"fetch (subprocess) | {times['fetch']:.0f} |")
    for row in metrics["stages"]:
        print(f"  train: {row['stage']} | {row['seconds']:.0f} | {row['peak_rss_mb']}")
    print(f"train (subprocess, incl. start-up) | {times['train']:.0f} |")
    print(f"predict (subprocess) | {times['predict']:.0f} |")
    print(f"**total** | {sum(times.values()):.0f} | {peak:.0f} (largest process)")
    print(f"\nOOF log loss: raw {metrics['oof_log_loss_raw']:.4f}, at [0.005, 0.995] {metrics['oof_log_loss_fixed_clip']:.4f}, "
          f"at the chosen clip {metrics['clip_chosen'][0]:g}: {metrics['oof_log_loss_chosen_clip']:.4f}; "
          f"accuracy {metrics['oof_accuracy']:.4f} on {metrics['n_train']} images")


if __name__ == "__main__":
    main()
