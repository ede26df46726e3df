"""The demo flow end to end on a tiny synthetic competition: fetch -> train -> predict -> score."""

import json

import pandas as pd
import pytest

from conftest import run_kit
from kit import config
from kit.errors import KitError
from kit.predict import score, submission
from kit.run import rundir, train

TINY = {"image_size": 32, "width": 8, "dense": 16, "epochs": 2, "batch_size": 16, "learning_rate": 1e-3}


def head_commit() -> str:
    """The checkout's HEAD, asked of git directly (the tests run from a clone)."""
    import subprocess

    from conftest import REPO

    return subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True,
                          check=True).stdout.strip()


@pytest.fixture(scope="module")
def trained(fetched, tmp_path_factory):
    root = tmp_path_factory.mktemp("work")
    cfg = config.resolve("demo", {**TINY, "data_dir": str(fetched), "runs_dir": str(root / "runs"),
                                  "submissions_dir": str(root / "submissions")})
    messages = []
    metrics = train.train(cfg, log=messages.append)
    return cfg, metrics, messages


def test_training_reports_skips_and_validation_loss(trained):
    cfg, metrics, messages = trained
    run = rundir.run_dir(cfg)
    assert any(m.startswith("4 training images skipped: 1 empty-file, 1 not-an-image, 1 too-small, 1 truncated") for m in messages)
    skipped = pd.read_csv(run / "skipped.csv")
    assert sorted(skipped["reason"]) == ["empty-file", "not-an-image", "too-small", "truncated"]
    val = pd.read_csv(run / "val_predictions.csv")
    assert len(val) == metrics["n_val"]
    assert metrics["val_log_loss_raw"] == pytest.approx(score.log_loss(val["label"], val["prob"]))
    assert metrics["val_log_loss"] == pytest.approx(
        score.log_loss(val["label"], score.clip(val["prob"], cfg.clip_low, cfg.clip_high)))
    assert metrics["n_train"] + metrics["n_val"] + metrics["n_skipped"] == 80 + 7
    history = pd.read_csv(run / "history.csv")
    assert len(history) == cfg.epochs and {"loss", "val_loss"} <= set(history.columns)
    # model.keras keeps the epoch with the lowest validation loss, and the scores are that model's
    assert metrics["val_log_loss_raw"] == pytest.approx(history["val_loss"].min(), abs=1e-4)
    assert json.loads((run / "config.json").read_text()) == cfg.to_dict()


def test_validation_split_is_stratified_and_seeded(fetched):
    from kit.data import dataset
    from kit.fetch import read_index

    index = read_index(fetched, "train")
    a_train, a_val = dataset.split_train_val(index, 0.2, seed=5)
    b_train, b_val = dataset.split_train_val(index, 0.2, seed=5)
    assert a_val["id"].tolist() == b_val["id"].tolist()
    assert abs(a_val["label"].mean() - index["label"].mean()) < 0.05
    assert not set(a_train["id"]) & set(a_val["id"])


def test_prediction_writes_a_valid_clipped_submission_with_sidecar(trained, fetched):
    cfg, metrics, _ = trained
    cfg = config.Config(**{**cfg.to_dict(), "clip_low": 0.02, "clip_high": 0.98})
    messages = []
    path = submission.predict(cfg, log=messages.append)
    sub = pd.read_csv(path)
    assert list(sub.columns) == ["id", "label"] and sub["id"].tolist() == list(range(1, 25))
    assert sub["label"].between(0.02, 0.98).all()
    assert any("2 test images skipped" in m and "predicted 0.5" in m for m in messages)
    sidecar = json.loads(path.with_suffix(".json").read_text())
    assert sidecar["clip"] == [0.02, 0.98]
    assert sidecar["config"]["clip_low"] == 0.02
    assert sidecar["git_commit"] == head_commit() or sidecar["git_commit"] == head_commit() + "-dirty"
    assert sidecar["sha256"] == __import__("kit.fileio", fromlist=["sha256"]).sha256(path)
    val = pd.read_csv(rundir.run_dir(cfg) / "val_predictions.csv")
    assert sidecar["local_log_loss"] == pytest.approx(score.log_loss(val["label"], score.clip(val["prob"], 0.02, 0.98)))
    assert not list(path.parent.glob(".*.tmp*")), "no temp files left behind"


def test_predict_without_training_says_so(fetched, tmp_path):
    cfg = config.resolve("demo", {"data_dir": str(fetched), "runs_dir": str(tmp_path)})
    with pytest.raises(KitError, match="run `python -m kit train` first"):
        submission.predict(cfg)


@pytest.mark.slow
def test_demo_command_end_to_end(tmp_path):
    """What `make demo` runs, shrunk: a fresh folder, the real CLI, scored against held-out labels."""
    sets = [a for k, v in TINY.items() for a in ("--set", f"{k}={v}")]
    result = run_kit("demo", *sets, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "demo: test log loss" in result.stdout
    submission = tmp_path / "submissions" / "demo.csv"
    scored = score.score_file(submission, tmp_path / "data" / "demo-source" / "test_labels.csv")
    # Measured 0.325 and 87% here: well clear of all-0.5 (0.693), with room for other machines' rounding.
    assert 0 < scored["log_loss"] < 0.5 and scored["accuracy"] > 0.75
    assert "demo: submission submissions/demo.csv" in result.stdout
