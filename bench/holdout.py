"""The `cpu` preset scored on photos it never saw: the 3,000 shared training photos split into 2,000 to
train on and 1,000 labelled test photos, then fetch -> train -> predict -> score, as a user runs them.

The held-out third is every third photo of each class (so 500 cats and 500 dogs), renamed `test/<n>.jpg`
as Kaggle's test set is. The feature cache is keyed by each file's content, so `--cache DIR` pointing at a
cache that already holds these photos (say the one `make train` filled) measures the score without the
extraction time; without it the cache is fresh and the time is the whole cost.

    python bench/holdout.py [--cache DIR] [--set key=value ...]
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import time
import zipfile

from common import REAL, REPO, need_real_data

BENCH = REPO / "data" / "bench-holdout"


def split_competition(out) -> tuple:
    """train.zip (2/3 of each class), test.zip (the other third as test/<n>.jpg), the sample and the labels."""
    competition = out / "competition"
    competition.mkdir(parents=True)
    with zipfile.ZipFile(REAL / "train.zip") as source:
        names = sorted((n for n in source.namelist() if n.endswith(".jpg")),
                       key=lambda n: (n.split("/")[-1].split(".")[0], int(re.findall(r"\d+", n)[-1])))
        held = [n for i, n in enumerate(names) if i % 3 == 2]
        labels = []
        with zipfile.ZipFile(competition / "train.zip", "w") as train, \
                zipfile.ZipFile(competition / "test.zip", "w") as test:
            for name in names:
                if name in held:
                    image_id = len(labels) + 1
                    test.writestr(f"test/{image_id}.jpg", source.read(name))
                    labels.append((image_id, int(name.split("/")[-1].startswith("dog"))))
                else:
                    train.writestr(name, source.read(name))
    (competition / "sample_submission.csv").write_text("id,label\n" + "".join(f"{i},0.5\n" for i, _ in labels))
    (out / "labels.csv").write_text("id,label\n" + "".join(f"{i},{y}\n" for i, y in labels))
    return competition, out / "labels.csv", len(names) - len(held), len(held)


def kit(*args: str) -> tuple[float, str]:
    started = time.time()
    result = subprocess.run([sys.executable, "-m", "kit", *args], cwd=REPO, check=True, capture_output=True,
                            text=True)
    return time.time() - started, result.stdout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache", help="a feature cache to reuse (default: a fresh one)")
    parser.add_argument("--set", action="append", default=[], help="a config override passed to every step")
    args = parser.parse_args()
    need_real_data()
    shutil.rmtree(BENCH, ignore_errors=True)
    competition, labels, n_train, n_test = split_competition(BENCH)
    common = ["--preset", "cpu", *(a for kv in args.set for a in ("--set", kv)),
              "--set", f"data_dir={BENCH / 'data'}", "--set", f"cache_dir={args.cache or BENCH / 'cache'}",
              "--set", f"runs_dir={BENCH / 'runs'}", "--set", f"submissions_dir={BENCH / 'submissions'}"]
    times = {}
    times["fetch"], _ = kit("fetch", "--from", str(competition), *common)
    times["train"], trained = kit("train", *common)
    times["predict"], _ = kit("predict", *common)
    _, scored = kit("score", str(BENCH / "submissions" / "cpu.csv"), "--labels", str(labels))
    oof = next(line for line in trained.splitlines() if line.startswith("train: OOF log loss"))
    print(f"\n## cpu preset, {n_train} photos to train on, {n_test} labelled photos held out "
          f"({'warm cache ' + args.cache if args.cache else 'fresh feature cache'})")
    print("step | seconds")
    print("--- | ---")
    for step, seconds in times.items():
        print(f"{step} | {seconds:.0f}")
    print(f"**total** | {sum(times.values()):.0f}")
    print(f"\n{oof}\nheld out: {scored.strip()}")


if __name__ == "__main__":
    main()
