"""Every competition layout the kit knows, through the commands a user types: `kit synth --layout SLUG`, then
fetch -> train -> predict -> score in a subprocess, with tiny backbones. The submission must be in the
sample's exact layout and scored on the competition's own metric."""

from __future__ import annotations

import re

import pandas as pd
import pytest

from conftest import run_kit
from kit.data import synthetic_layouts
from kit.task import layout, metrics, spec

TINY = ["--set", "backbones=tiny@32", "--set", "weights=none", "--set", "heads=logreg", "--set", "folds=2"]
# What no file can say about a competition the registry does not know.
SETTINGS = {"grayscale-shapes": ["--set", "metric=accuracy"]}


@pytest.mark.slow
@pytest.mark.parametrize("slug", synthetic_layouts.NAMES)
def test_fetch_train_predict_score_on_every_layout(slug, tmp_path):
    made = run_kit("synth", tmp_path / "source", "--layout", slug, "--train", "24", "--test", "8", "--seed", "5")
    assert made.returncode == 0, made.stderr
    paths = [arg for key in ("data_dir", "runs_dir", "submissions_dir", "cache_dir")
             for arg in ("--set", f"{key}={tmp_path / key}")]
    common = ["--preset", "cpu", "--set", f"competition={slug}", *SETTINGS.get(slug, []), *TINY, *paths]
    for step in (["fetch", "--from", tmp_path / "source" / "competition"], ["train"], ["predict"]):
        result = run_kit(*step, *common)
        assert result.returncode == 0, f"{step[0]}: {result.stderr[-2000:]}"

    task = spec.load(tmp_path / "data_dir" / "task.json")
    submission = tmp_path / "submissions_dir" / "cpu.csv"
    sample = layout.read_sample(tmp_path / "data_dir", task)
    checked = layout.check_file(submission, task, sample)
    assert list(pd.read_csv(submission, dtype=str).columns) == list(task.header) and len(checked) == len(sample)

    scored = run_kit("score", submission, "--labels", tmp_path / "source" / "test_labels.csv",
                     "--task", tmp_path / "data_dir" / "task.json")
    assert scored.returncode == 0, scored.stderr
    line = scored.stdout.strip().splitlines()[-1]   # Redux's own `log loss .. accuracy ..` line: test_acceptance
    entry = metrics.get(task.metric)
    assert re.match(rf"{entry.name} -?[\d.]+ \((higher|lower) is better\)  \(8 images\)", line), line
