"""The `cpu` preset on the shared real photos re-laid out as two other competitions' layouts, each scored on its
own metric: Aerial Cactus's (a `train.csv` of `id,has_cactus` with ids keeping `.jpg`, ROC AUC) and Plant
Seedlings's (class folders, a zipped `file,species` sample, micro-averaged F1). Dog is the positive class /
the `Dog` species.

Every third photo of each class is held out as the test set, its answers in a labels file beside the
competition folder (as Kaggle keeps them), so each layout gets an out-of-fold score on 2,000 photos and a
held-out score on 1,000. Each step is `python -m kit ...` as a user runs it. The feature cache is keyed by
file content, so `--cache DIR` holding these photos' features (the one `make train` filled) leaves only the
training time; without it the cache is fresh.

    python bench/real_layouts.py [--cache DIR]
"""

from __future__ import annotations

import argparse
import io
import json
import shutil
import subprocess
import sys
import time
import zipfile

from common import REAL, REPO, need_real_data

BENCH = REPO / "data" / "bench-layouts"
LAYOUTS = ("aerial-cactus-identification", "plant-seedlings-classification")


def shared_photos() -> list[tuple[str, int, bytes]]:
    """(stem, label, bytes) of every shared training photo, cats and dogs in file-name order."""
    with zipfile.ZipFile(REAL / "train.zip") as source:
        names = sorted(n for n in source.namelist() if n.endswith(".jpg"))
        return [(n.split("/")[-1][:-4].replace(".", "_"), int("/dog." in n), source.read(n)) for n in names]


def write_cactus(out, photos) -> tuple:
    folder = out / "aerial-cactus-identification"
    for split in ("train", "test"):
        (folder / split).mkdir(parents=True)
    train_rows, test_rows = [], []
    for i, (stem, label, data) in enumerate(photos):
        split, rows = ("test", test_rows) if i % 3 == 2 else ("train", train_rows)
        (folder / split / f"{stem}.jpg").write_bytes(data)
        rows.append(f"{stem}.jpg,{label}\n")
    (folder / "train.csv").write_text("id,has_cactus\n" + "".join(train_rows))
    (folder / "sample_submission.csv").write_text("id,has_cactus\n" + "".join(r.split(",")[0] + ",0.5\n"
                                                                             for r in test_rows))
    (out / "cactus_answers.csv").write_text("id,has_cactus\n" + "".join(test_rows))
    return folder, out / "cactus_answers.csv"


def write_seedlings(out, photos) -> tuple:
    folder = out / "plant-seedlings-classification"
    species = {0: "Cat", 1: "Dog"}
    test_rows = []
    for i, (stem, label, data) in enumerate(photos):
        if i % 3 == 2:
            (folder / "test").mkdir(parents=True, exist_ok=True)
            (folder / "test" / f"{stem}.jpg").write_bytes(data)
            test_rows.append(f"{stem}.jpg,{species[label]}\n")
        else:
            (folder / "train" / species[label]).mkdir(parents=True, exist_ok=True)
            (folder / "train" / species[label] / f"{stem}.jpg").write_bytes(data)
    sample = "file,species\n" + "".join(r.split(",")[0] + ",Cat\n" for r in test_rows)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        zf.writestr("sample_submission.csv", sample)
    (folder / "sample_submission.csv.zip").write_bytes(buffer.getvalue())
    (out / "seedlings_answers.csv").write_text("file,species\n" + "".join(test_rows))
    return folder, out / "seedlings_answers.csv"


def kit(*args: str) -> tuple[float, str]:
    started = time.time()
    result = subprocess.run([sys.executable, "-m", "kit", *args], cwd=REPO, capture_output=True, text=True)
    if result.returncode != 0:
        sys.exit(f"python -m kit {' '.join(args)} failed:\n{result.stderr[-2000:]}")
    return time.time() - started, result.stdout


def run_layout(slug: str, folder, answers, cache: str, where=None, settings=()) -> dict:
    """fetch -> train -> predict -> score with the cpu preset in `where` (default under BENCH), timed;
    `settings` are --set arguments for what the competition's files cannot say."""
    where = where or BENCH / "work" / slug
    common = ["--preset", "cpu", *settings, "--set", f"competition={slug}", "--set", f"data_dir={where / 'data'}",
              "--set", f"cache_dir={cache}", "--set", f"runs_dir={where / 'runs'}",
              "--set", f"submissions_dir={where / 'submissions'}"]
    times = {}
    times["fetch"], _ = kit("fetch", "--from", str(folder), *common)
    times["train"], _ = kit("train", *common)
    times["predict"], _ = kit("predict", *common)
    _, scored = kit("score", str(where / "submissions" / "cpu.csv"), "--labels", str(answers),
                    "--task", str(where / "data" / "task.json"))
    metrics = json.loads((where / "runs" / "cpu" / "metrics.json").read_text())
    return {"slug": slug, "times": times, "metric": metrics.get("metric"), "oof": metrics.get("oof_score"),
            "held_out": scored.strip().splitlines()[-1], "n_train": metrics.get("n_train")}


def print_table(title: str, rows: list[dict]) -> None:
    print(f"\n## {title}")
    print("layout | metric | OOF (training images) | held out | fetch s | train s | predict s")
    print("--- | --- | --- | --- | --- | --- | ---")
    for r in rows:
        t = r["times"]
        print(f"{r['slug']} | {r['metric']} | {r['oof']:.5f} ({r['n_train']}) | {r['held_out']} | {t['fetch']:.0f} | "
              f"{t['train']:.0f} | {t['predict']:.0f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache", help="a feature cache to reuse (default: a fresh one)")
    args = parser.parse_args()
    need_real_data()
    shutil.rmtree(BENCH, ignore_errors=True)
    BENCH.mkdir(parents=True)
    photos = shared_photos()
    cache = args.cache or str(BENCH / "cache")
    rows = [run_layout("aerial-cactus-identification", *write_cactus(BENCH, photos), cache),
            run_layout("plant-seedlings-classification", *write_seedlings(BENCH, photos), cache)]
    print_table(f"the cpu preset on the shared photos in other layouts "
                f"({'warm cache ' + cache if args.cache else 'fresh cache'})", rows)


if __name__ == "__main__":
    main()
