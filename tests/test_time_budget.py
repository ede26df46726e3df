"""The time budget: its decisions on a fake clock, and a real fine-tuning run stopped by a tiny budget."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from kit import config, methods, score
from kit.errors import KitError
from kit.fetch import read_index
from kit.predict import submission
from kit.run import rundir
from kit.run.time_budget import UNFROZEN_OVER_FROZEN, Budget
from kit.score import SAMPLE


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_no_budget_never_refuses():
    clock = Clock()
    budget = Budget(0, clock)
    budget.record_epoch("m", "warmup", 1e9)
    clock.now = 1e12
    assert budget.may_start_round(["m"], first_of_run=False) and budget.may_start_epoch("m", "warmup", 1e9)
    assert budget.left() == float("inf") and not budget.refused


def test_epochs_are_judged_by_the_longest_one_plus_the_fold_tail():
    clock = Clock()
    budget = Budget(100, clock)
    budget.record_epoch("m", "warmup", 10)
    budget.record_epoch("m", "warmup", 30)
    budget.record_epoch("m", "warmup", 20)
    clock.now = 60                                   # 40 s left
    assert budget.may_start_epoch("m", "warmup", tail=10)        # 30 + 10 <= 40
    assert not budget.may_start_epoch("m", "warmup", tail=11)    # 30 + 11 > 40
    assert budget.refused[-1].startswith("time budget: not starting a warmup epoch of m")


def test_first_finetune_epoch_is_guessed_from_the_warmup():
    clock = Clock()
    budget = Budget(100, clock)
    budget.record_epoch("m", "warmup", 10)
    assert budget.epoch_estimate("m", "finetune") == 10 * UNFROZEN_OVER_FROZEN
    clock.now = 100 - 10 * UNFROZEN_OVER_FROZEN + 1
    assert not budget.may_start_epoch("m", "finetune", tail=0)
    budget.record_epoch("m", "finetune", 5)          # measured now: the guess gives way
    assert budget.may_start_epoch("m", "finetune", tail=0)


def test_unmeasured_work_runs_until_the_budget_is_spent():
    clock = Clock()
    budget = Budget(10, clock)
    assert budget.may_start_epoch("new", "warmup", tail=0) and budget.may_start_round(["new"], first_of_run=False)
    clock.now = 10
    assert not budget.may_start_epoch("new", "warmup", tail=0)
    assert not budget.may_start_round(["new"], first_of_run=False)
    assert budget.may_start_round(["new"], first_of_run=True), "the first fold always runs: a submission needs one"


def test_a_round_needs_the_next_fold_of_every_model():
    clock = Clock()
    budget = Budget(100, clock)
    budget.record_fold("a", 30)
    budget.record_fold("b", 40)
    clock.now = 25                                   # 75 left: a + b = 70 fits
    assert budget.may_start_round(["a", "b"], first_of_run=False)
    clock.now = 31                                   # 69 left
    assert not budget.may_start_round(["a", "b"], first_of_run=False)
    assert "the next fold of 2 models: it would take about 70 s" in budget.refused[-1]


def test_fold_tail_before_any_measure_scales_the_longest_epoch():
    budget = Budget(100, Clock())
    budget.record_epoch("m", "warmup", 10)
    assert budget.tail_estimate("m", images_per_epoch=100, images_to_predict=250) == 25
    budget.record_tail("m", 4)
    assert budget.tail_estimate("m", 100, 250) == 4


@pytest.mark.bad_input
def test_negative_budget_is_refused():
    with pytest.raises(KitError, match="time_budget_s must be 0"):
        config.resolve("cpu", {"time_budget_s": -1.0})


@pytest.mark.slow
def test_a_tiny_budget_keeps_the_first_fold_and_predicts_with_it(fetched, tmp_path):
    """A budget spent by the first epoch: fold 1 ends after it (its warm-up, no fine-tuning), no other fold
    starts, the OOF covers fold 1's held-out images, and the submission averages that fold alone. A rerun
    without a budget reuses the finished fold and trains the others."""
    overrides = {"method": "finetune", "backbones": "tiny@32", "weights": "none", "folds": 3, "epochs": 3,
                 "warmup_epochs": 2, "unfreeze": 0.5, "batch_size": 16, "data_dir": str(fetched),
                 "runs_dir": str(tmp_path / "runs"), "submissions_dir": str(tmp_path / "subs"),
                 "pixel_cache_dir": str(tmp_path / "pixels"), "time_budget_s": 0.01}
    cfg = config.resolve("cpu", overrides)
    lines = []
    metrics = methods.train(cfg, log=lines.append)
    run = rundir.run_dir(cfg)
    assert metrics["folds_completed"] == 1 and metrics["stopped_by_time_budget"]
    assert metrics["models"]["tiny@32"]["params"]["folds_completed"] == 1
    assert any("not starting a warmup epoch of tiny@32" in line for line in lines)
    assert any("not starting the next fold" in line for line in lines)
    fold = run / "tiny@32" / "fold0"
    assert len(pd.read_csv(fold / "history-warmup.csv")) == 1, "the second warm-up epoch was not started"
    assert not (fold / "history-finetune.csv").exists() and not (run / "tiny@32" / "fold1").exists()

    oof = pd.read_csv(run / "oof.csv")
    everything = read_index(str(fetched), "train")
    assert len(oof) == metrics["n_train"] and abs(len(oof) - len(everything) / 3) < 4   # one fold of three
    assert set(oof["id"]) < set(everything["id"])
    assert metrics["log_loss_raw"] == pytest.approx(score.log_loss(oof["label"], oof["blend"]))
    with np.load(fold / "predictions.npz") as saved:
        np.testing.assert_allclose(pd.read_csv(run / "test_predictions.csv")["blend"], saved["test"], rtol=1e-12)

    path = submission.predict(cfg, log=lambda *_: None)
    sample = pd.read_csv(fetched / SAMPLE)
    assert len(score.validate_submission(pd.read_csv(path), sample["id"], source="budget run")) == len(sample)
    assert json.loads(path.with_suffix(".json").read_text())["local_score_kind"] == "oof"

    stamp = (fold / "predictions.npz").stat().st_mtime_ns
    again = methods.train(config.resolve("cpu", {**overrides, "time_budget_s": 0.0}), log=lambda *_: None)
    assert again["folds_completed"] == 3 and not again["stopped_by_time_budget"]
    assert (fold / "predictions.npz").stat().st_mtime_ns == stamp, "the finished fold is kept, not trained again"
    assert len(pd.read_csv(run / "oof.csv")) == again["n_train"] > 2.5 * len(oof), "every usable image, all folds"
