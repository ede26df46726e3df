"""More than one replica on a CPU: KIT_LOGICAL_DEVICES=2 splits it into two devices the kit mirrors over.

The real `finetune` and `frozen` methods run in mixed precision with two replicas, are killed
(SIGKILL) after a checkpoint, resumed and predicted with, and must match a one-replica run:
every out-of-fold and test probability within REPLICA_TOLERANCE. Seeded runs with one replica
are bit-identical; two replicas split each batch and sum their gradients in another order in
float16, which moved probabilities by at most 2.6e-4 (finetune) and 3.5e-5 (frozen) here
(tiny@32 and tiny@40, 43 images, 2 folds). For scale: one replica with twice the fine-tuning
learning rate moved them by 1.7e-3, another seed by 0.07.
"""

from __future__ import annotations

import json
import signal
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from conftest import run_kit
from kit import config, methods, score
from kit.data import synthetic
from kit.methods import finetune
from kit.tfquiet import import_keras

REPLICA_TOLERANCE = 1e-3     # absolute, on probabilities
TINY = ["--preset", "cpu", "--set", "backbones=tiny@32,tiny@40", "--set", "weights=none", "--set", "folds=2",
        "--set", "warmup_epochs=2", "--set", "epochs=2", "--set", "unfreeze=0.5", "--set", "batch_size=16",
        "--set", "mixed_precision=mixed"]


@pytest.fixture(scope="module")
def source(tmp_path_factory) -> Path:
    return synthetic.make_competition(tmp_path_factory.mktemp("replicas-src"), n_train=40, n_test=8, seed=5)


def paths(root: Path) -> list[str]:
    return [arg for key in ("data_dir", "runs_dir", "submissions_dir", "pixel_cache_dir")
            for arg in ("--set", f"{key}={root / key}")]


def kit(*args, devices: int, crash_at: str | None = None):
    env = {"KIT_LOGICAL_DEVICES": str(devices), **({"KIT_CRASH_AT": crash_at} if crash_at else {})}
    return run_kit(*args, env=env)


def ok(result):
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    return result


def outputs(root: Path) -> tuple[dict, pd.DataFrame, pd.DataFrame]:
    run = root / "runs_dir" / "cpu"
    return (json.loads((run / "metrics.json").read_text()), pd.read_csv(run / "oof.csv"),
            pd.read_csv(run / "test_predictions.csv"))


@pytest.mark.slow
@pytest.mark.fault
@pytest.mark.parametrize("method", ["finetune", "frozen"])
def test_two_replicas_in_mixed_precision_killed_and_resumed_match_one(source, tmp_path, method):
    one, two = tmp_path / "one", tmp_path / "two"
    for root in (one, two):
        ok(run_kit("fetch", "--from", source, "--data-dir", root / "data_dir"))
    args = ["train", *TINY, "--set", f"method={method}"]
    ok(kit(*args, *paths(one), devices=1))

    killed = kit(*args, *paths(two), devices=2, crash_at="train-epoch")
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    assert list((two / "runs_dir").rglob("last-warmup*.keras")), "a checkpoint was written before the kill"
    assert not (two / "runs_dir" / "cpu" / "metrics.json").exists()
    resumed = ok(kit(*args, *paths(two), devices=2))
    assert "resuming" in resumed.stdout and "at epoch 2" in resumed.stdout
    ok(kit("predict", *TINY, "--set", f"method={method}", *paths(two), devices=2))

    (m1, oof1, test1), (m2, oof2, test2) = outputs(one), outputs(two)
    assert (m1["replicas"], m2["replicas"]) == (1, 2)
    assert m1["precision"] == m2["precision"] == "mixed_float16"
    assert oof1["id"].tolist() == oof2["id"].tolist() and test1["id"].tolist() == test2["id"].tolist()
    models = [c for c in oof1.columns if c not in ("id", "label")]
    assert len(models) == (3 if method == "finetune" else 2)     # each model and the blend
    for column in models:
        for name, a, b in (("oof", oof1, oof2), ("test", test1, test2)):
            gap = np.abs(a[column] - b[column]).max()
            assert gap <= REPLICA_TOLERANCE, f"{name} {column}: one and two replicas differ by {gap:.2e}"
    assert m2["log_loss_raw"] == pytest.approx(m1["log_loss_raw"], abs=REPLICA_TOLERANCE * 5)
    submission = pd.read_csv(two / "submissions_dir" / "cpu.csv")
    sample = pd.read_csv(two / "data_dir" / "sample_submission.csv")
    assert len(score.validate_submission(submission, sample["id"], source="two replicas")) == len(sample)


@pytest.mark.bad_input
def test_a_bad_device_count_is_one_line(tmp_path):
    result = run_kit("train", *TINY, "--set", "method=finetune", *paths(tmp_path), env={"KIT_LOGICAL_DEVICES": "two"})
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1] == \
        "error: KIT_LOGICAL_DEVICES must be a whole number of CPU devices (1 or more), got 'two'"


@pytest.mark.slow
def test_mixed_precision_leaves_the_global_policy_as_it_was(fetched, tmp_path, monkeypatch):
    keras = import_keras()
    assert keras.mixed_precision.global_policy().name == "float32"
    cfg = config.resolve("cpu", {"method": "finetune", "backbones": "tiny@32", "weights": "none", "folds": 2,
                                 "epochs": 1, "warmup_epochs": 1, "batch_size": 16, "mixed_precision": "mixed",
                                 **{key: str(tmp_path / key) for key in ("runs_dir", "submissions_dir",
                                                                         "pixel_cache_dir")},
                                 "data_dir": str(fetched)})
    metrics = methods.train(cfg, log=lambda *_: None)
    assert metrics["precision"] == "mixed_float16" and metrics["replicas"] == 1
    assert keras.mixed_precision.global_policy().name == "float32"

    def interrupted(*args, **kwargs):
        assert keras.mixed_precision.global_policy().name == "mixed_float16"
        raise KeyboardInterrupt

    monkeypatch.setattr(finetune, "train_fold", interrupted)
    with pytest.raises(KeyboardInterrupt):
        methods.train(cfg, log=lambda *_: None)
    assert keras.mixed_precision.global_policy().name == "float32"
