"""The Makefile's defaults: `make train` trains the cpu preset; predict, score and submit follow the run
the user made last. Checked with `make -n` (nothing runs but the latest-run lookup) in a scratch folder."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def make_n(work: Path, *args: str) -> str:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    for name in ("RUN", "PRESET"):   # as a user types it: nothing set unless on the command line
        env.pop(name, None)
    result = subprocess.run(["make", "-n", "-f", str(REPO / "Makefile"), f"PY={sys.executable}", "STAMP=", *args],
                            cwd=work, env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return result.stdout


def finish_run(work: Path, name: str) -> None:
    folder = work / "runs" / name
    folder.mkdir(parents=True)
    (folder / "config.json").write_text("{}")
    (folder / "metrics.json").write_text("{}")
    time.sleep(0.02)   # distinct mtimes: "latest" is by finishing time


def test_train_without_preset_trains_the_cpu_preset(tmp_path):
    out = make_n(tmp_path, "train")
    assert "-m kit train --preset cpu" in out
    assert "--set run=" not in out


def test_predict_follows_the_latest_finished_run_and_trains_nothing(tmp_path):
    finish_run(tmp_path, "gpu-classic")
    finish_run(tmp_path, "mine")
    out = make_n(tmp_path, "predict")
    assert "predict follows the latest finished run, RUN=mine" in out
    assert "-m kit predict --preset cpu --set run=mine" in out
    assert "kit train" not in out and "kit fetch" not in out


def test_score_and_submit_follow_it_too(tmp_path):
    finish_run(tmp_path, "mine")
    assert "kit score submissions/mine.csv" in make_n(tmp_path, "score", "LABELS=labels.csv")
    assert "kit submit submissions/mine.csv" in make_n(tmp_path, "submit")


def test_a_named_run_or_preset_wins_over_the_latest(tmp_path):
    finish_run(tmp_path, "gpu-classic")
    finish_run(tmp_path, "mine")
    assert "--set run=gpu-classic" in make_n(tmp_path, "predict", "RUN=gpu-classic")
    out = make_n(tmp_path, "predict", "PRESET=demo")
    assert "-m kit predict --preset demo" in out and "run=mine" not in out


def test_train_then_predict_in_one_command_predicts_what_it_trains(tmp_path):
    finish_run(tmp_path, "mine")
    out = make_n(tmp_path, "train", "predict")
    assert "-m kit train --preset cpu" in out and "-m kit predict --preset cpu" in out
    assert "run=mine" not in out


def test_without_a_finished_run_predict_falls_back_to_the_cpu_preset(tmp_path):
    out = make_n(tmp_path, "predict")
    assert "follows the latest" not in out
    assert "-m kit train --preset cpu" in out and "-m kit predict --preset cpu" in out


def test_help_lists_the_range_targets_and_the_defaults(tmp_path):
    out = subprocess.run(["make", "-s", "-f", str(REPO / "Makefile"), "help"], cwd=tmp_path,
                         capture_output=True, text=True, timeout=60).stdout
    for target in ("lock", "test-oldest", "test-latest", "train", "predict"):
        assert f"  {target} " in out
    assert "cpu (default)" in out and "baseline (the from-scratch CNN)" in out
