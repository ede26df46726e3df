"""More than one replica on a CPU: KIT_LOGICAL_DEVICES=2 splits it into two devices the kit mirrors over.

The real `finetune` and `frozen` methods run in mixed precision with two replicas, are killed
(SIGKILL) after a checkpoint, resumed and predicted with, and must match a one-replica run:
every out-of-fold and test probability within REPLICA_TOLERANCE. Seeded runs with one replica
are bit-identical; two replicas split each batch and sum their gradients in another order in
float16, which moved probabilities by at most 2.6e-4 (finetune) and 3.5e-5 (frozen) here
(tiny@32 and tiny@40, 43 images, 2 folds). For scale: one replica with twice the fine-tuning
learning rate moved them by 1.7e-3, another seed by 0.07.

Image counts that do not split evenly (a fold's training or validation images, the test set, a
last batch of 1, a batch smaller than the replica count) must train and predict on two replicas,
every image once, and, in float32 without dropout, as one replica does.
"""

from __future__ import annotations

import dataclasses

import json
import signal
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from conftest import run_kit
from kit import config, fetch, methods, score
from kit.data import synthetic, train_input
from kit.fetch import read_index
from kit.methods import finetune
from kit.models import heads
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


def outputs(root: Path, run: str = "cpu") -> tuple[dict, pd.DataFrame, pd.DataFrame]:
    run = root / "runs_dir" / run
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


# The methods that train under accel.strategy(), and every preset that trains with one of them.
REPLICA_METHODS = ("finetune", "frozen")
REPLICA_PRESETS = [name for name, preset in config.PRESETS.items()
                   if preset.get("method", config.Config.method) in REPLICA_METHODS]
AWKWARD_TRAIN, AWKWARD_TEST = 18, 9     # 2 folds of 9 (train 9, validation 9), and 9 test images
# Each method on every such preset: finetune at batch 4 (batches of 4, 4 and 1), frozen at batch 1, below the
# replica count (the kit raises it to 2: batches of 2, 2, 2, 2 and 1), on two backbones (two inputs).
AWKWARD_RUNS = {"finetune": {"batch_size": 4, "backbones": "tiny@32"},
                "frozen": {"batch_size": 1, "backbones": "tiny@32,tiny@24"}}
# One replica and two, in float32 without dropout, differed by at most 3e-8 here (finetune: 0); with the
# padding row weighted like a real one (an image trained twice per epoch) they differed by 5e-4.
AWKWARD_TOLERANCE = 1e-5


@pytest.fixture(scope="module")
def awkward(tmp_path_factory) -> Path:
    source = synthetic.make_competition(tmp_path_factory.mktemp("awkward-src"), n_train=AWKWARD_TRAIN,
                                        n_test=AWKWARD_TEST, seed=3, planted=False)
    return fetch.fetch_from(source, tmp_path_factory.mktemp("awkward") / "data", log=lambda *_: None)


def awkward_overrides(preset: str, method: str, data: Path, root: Path) -> dict:
    """Tiny and quick; float32 and no dropout, so that two replicas differ from one only in the order of sums
    (each replica would draw its own dropout masks, and float16 rounds the sums apart)."""
    return {"method": method, **AWKWARD_RUNS[method], "weights": "none", "folds": 2, "warmup_epochs": 1,
            "epochs": 1, "unfreeze": 0.5, "dropout": 0.0, "mixed_precision": "off", "run": preset,
            "data_dir": str(data), **{key: str(root / key) for key in ("runs_dir", "submissions_dir",
                                                                       "pixel_cache_dir")}}


def test_the_presets_that_train_on_replicas_are_found():
    assert REPLICA_PRESETS, "the awkward-count test below has a preset to run"


@pytest.mark.slow
@pytest.mark.parametrize("method", REPLICA_METHODS)
@pytest.mark.parametrize("preset", REPLICA_PRESETS)
def test_awkward_counts_train_and_predict_every_image_once_on_two_replicas(awkward, tmp_path, preset, method):
    one, two = tmp_path / "one", tmp_path / "two"
    overrides = awkward_overrides(preset, method, awkward, two)
    cfg, replicas = config.resolve(preset, overrides), 2
    batch = train_input.even_batch(cfg.batch_size, replicas)   # what two replicas train on
    train_index, test_index = read_index(awkward, "train"), read_index(awkward, "test")
    counts = [len(part) for fold in heads.folds(train_index["label"].to_numpy(), cfg.folds, cfg.seed) for part in fold]
    assert all(count % batch == 1 for count in counts), f"each fold's last batch holds 1 image: {counts}"
    assert len(test_index) % 2 == 1 and (len(test_index) - 1) % cfg.batch_size == 0, "predicting: a last batch of 1"

    sets = [arg for key, value in overrides.items() for arg in ("--set", f"{key}={value}")]
    ok(kit("train", "--preset", preset, *sets, devices=replicas))
    metrics, oof, test = outputs(two, preset)
    assert metrics["replicas"] == replicas and metrics["n_test_unreadable"] == 0
    assert oof["id"].tolist() == train_index["id"].tolist(), "every training image has one OOF prediction"
    assert test["id"].tolist() == test_index["id"].tolist(), "every test image has one prediction"
    models = [c for c in oof.columns if c not in ("id", "label")]
    for frame in (oof, test):
        values = frame[models].to_numpy()
        assert np.isfinite(values).all() and ((values > 0) & (values < 1)).all()
        assert (values != 0.5).all(), "a row predict_tta left unfilled keeps exactly 0.5"

    # One replica at the batch two trained at (a batch below the replica count is raised to it).
    methods.train(config.resolve(preset, {**awkward_overrides(preset, method, awkward, one), "batch_size": batch}),
                log=lambda *_: None)
    m1, oof1, test1 = outputs(one, preset)
    assert m1["replicas"] == 1
    for column in models:
        for name, a, b in (("oof", oof1, oof), ("test", test1, test)):
            gap = np.abs(a[column] - b[column]).max()
            assert gap <= AWKWARD_TOLERANCE, f"{name} {column}: one and two replicas differ by {gap:.2e}"


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
    with pytest.raises(KeyboardInterrupt):   # another run: the finished one would not train again
        methods.train(dataclasses.replace(cfg, run="interrupted"), log=lambda *_: None)
    assert keras.mixed_precision.global_policy().name == "float32"
