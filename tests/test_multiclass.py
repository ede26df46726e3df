"""Any task from an index of class indices to a submission in the sample's exact layout: multinomial and
softmax heads, grouped folds, blend and clip on the task's metric, kappa thresholds, the layout gate.

The data dirs are built here from the synthetic layouts (index CSVs of class indices, task.json, the
sample) without fetch, so each test holds to the data folder's contract alone (index/train.csv
id,path,label(,group)); tests/test_layouts.py runs the same layouts through fetch as a user types it.
"""

import dataclasses
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from kit import config, fetch, methods
from kit.data import synthetic_layouts
from kit.errors import KitError
from kit.kaggle import submit
from kit.models import heads
from kit.predict import submission, task_score
from kit import report
from kit.run import rundir
from kit.task import layout, metrics, spec
from kit.task.read import read_task


def make_data_dir(root: Path, name: str, n_train: int, n_test: int, seed: int = 3) -> tuple[Path, spec.Task, Path]:
    """(data dir, task, answers CSV) for synthetic layout `name`: what fetch is to write for it."""
    competition = synthetic_layouts.make(root / "made", name, n_train, n_test, seed)
    task = read_task(competition, name)
    train_place, test_place = competition / task.train_images, competition / task.test_images
    if task.label_source == spec.CSV:
        table = pd.read_csv(competition / task.labels_file, dtype=str)
        names, values = table[task.id_column].map(task.image_name), table[task.label_column]
        paths = [train_place / n for n in names]
    else:   # class folders
        paths = sorted(train_place.glob(f"*/*{task.image_extension}"))
        values = [p.parent.name for p in paths]
    train = pd.DataFrame({"id": [p.stem for p in paths], "path": [str(p) for p in paths],
                          "label": task.class_index(values)})
    if task.group_column:
        groups = pd.read_csv(competition / task.groups_file, dtype=str)
        by_name = dict(zip(groups[task.id_column], groups[task.group_column]))
        train["group"] = [by_name[p.name] for p in paths]
    sample = pd.read_csv(competition / task.sample_file, dtype=str)
    test_ids = sample[task.id_column]
    # Ids are read back as text here, but pandas reads an all-digit id as a number (dropping leading zeros):
    # these seeds draw none, so the layout check below sees the sample's ids exactly.
    assert not any(re.fullmatch(r"\d+", i) for i in [*test_ids, *train["id"]]), "pick another seed"
    test = pd.DataFrame({"id": test_ids, "path": [str(test_place / task.image_name(i)) for i in test_ids]})
    data = root / "data"
    (data / "index").mkdir(parents=True)
    train.to_csv(data / "index" / "train.csv", index=False)
    test.to_csv(data / "index" / "test.csv", index=False)
    shutil.copyfile(competition / task.sample_file, data / task.sample_file)
    spec.save(task, data / fetch.TASK)
    (data / fetch.MARKER).write_text("{}")
    return data, task, root / "made" / synthetic_layouts.TEST_LABELS


def tiny_config(data: Path, tmp_path: Path, heads_: str = "logreg", **extra) -> config.Config:
    return config.resolve("cpu", {"backbones": "tiny@32", "weights": "none", "heads": heads_, "folds": 3,
                                  "head_epochs": 5, "data_dir": str(data), "runs_dir": str(tmp_path / "runs"),
                                  "submissions_dir": str(tmp_path / "subs"), "cache_dir": str(tmp_path / "cache"),
                                  **extra})


def trained(tmp_path, name, heads_="logreg", n_train=36, n_test=10):
    data, task, answers = make_data_dir(tmp_path, name, n_train, n_test)
    cfg = tiny_config(data, tmp_path, heads_)
    messages = []
    metrics_json = methods.train(cfg, log=messages.append)
    return cfg, task, answers, metrics_json, messages


# --------------------------------------------------------------------------- end to end, one per kind of value

def test_multiclass_probabilities_run_writes_one_hot_columns_scored_on_multi_log_loss(tmp_path):
    cfg, task, answers, m, _ = trained(tmp_path, "dog-breed-identification", "logreg,dense")
    k = task.n_classes
    assert k == 4 and m["metric"] == "multi_log_loss"
    oof = pd.read_csv(rundir.run_dir(cfg) / rundir.OOF)
    expected = {"id", "label", *rundir.prediction_columns("logreg", k), *rundir.prediction_columns("dense", k),
                *rundir.prediction_columns(rundir.BLEND, k)}
    assert set(oof.columns) == expected
    blended = rundir.read_probabilities(oof, rundir.BLEND)
    np.testing.assert_allclose(blended.sum(axis=1), 1, atol=1e-9)
    assert m["log_loss_raw"] == pytest.approx(metrics.get("multi_log_loss").evaluate(oof["label"], blended))
    low, high = m["clip_chosen"]
    assert m["oof_score"] == pytest.approx(m["log_loss_chosen_clip"])
    assert m["oof_score"] <= m["log_loss_raw"] + 1e-12
    assert set(m["models"]) == {"logreg", "dense"} and all("score" in v for v in m["models"].values())

    path = submission.predict(cfg, log=lambda *_: None)
    sub = pd.read_csv(path, dtype={task.id_column: str})
    sample = pd.read_csv(Path(cfg.data_dir) / task.sample_file, dtype=str)
    assert list(sub.columns) == list(task.header) and sub[task.id_column].tolist() == sample[task.id_column].tolist()
    values = sub[task.value_columns].to_numpy()
    np.testing.assert_allclose(values.sum(axis=1), 1, atol=1e-3)
    assert values.min() >= low / (1 + k * low) - 1e-6, "clipped then renormalised"
    sidecar = json.loads(path.with_suffix(".json").read_text())
    assert sidecar["task"] == task.to_dict() and sidecar["metric"] == "multi_log_loss"
    assert sidecar["local_score"] == pytest.approx(m["oof_score"])
    submit.check_file(path, Path(cfg.data_dir))   # the gate passes what predict wrote
    scored = task_score.score_file(path, answers, task)
    assert scored["metric"] == "multi_log_loss" and scored["n"] == 10 and np.isfinite(scored["value"])

    page = report.build(rundir.run_dir(cfg), tmp_path / "reports", log=lambda *_: None).read_text()
    assert "Confusion matrix" in page and "Per-class scores" in page and f"{m['oof_score']:.4f}" in page
    assert all(str(c) in page for c in task.classes)


def test_class_name_run_writes_names_scored_on_f1(tmp_path):
    cfg, task, answers, m, messages = trained(tmp_path, "plant-seedlings-classification")
    assert m["metric"] == "f1_micro" and m["clip_chosen"] is None
    oof = pd.read_csv(rundir.run_dir(cfg) / rundir.OOF)
    probs = rundir.read_probabilities(oof, rundir.BLEND)
    assert m["oof_score"] == pytest.approx(metrics.get("f1_micro").evaluate(oof["label"], probs))
    assert any("OOF f1_micro" in line for line in messages)
    path = submission.predict(cfg, log=lambda *_: None)
    sub = pd.read_csv(path, dtype=str)
    assert list(sub.columns) == ["file", "species"] and set(sub["species"]) <= set(task.classes)
    assert all(i.endswith(".png") for i in sub["file"]), "the sample's id form, extension kept"
    submit.check_file(path, Path(cfg.data_dir))
    assert task_score.score_file(path, answers, task)["metric"] == "f1_micro"


def test_integer_grade_run_fits_kappa_thresholds_and_writes_integers(tmp_path):
    cfg, task, answers, m, _ = trained(tmp_path, "aptos2019-blindness-detection", n_train=40)
    assert m["metric"] == "quadratic_kappa" and m["clip_chosen"] is None
    thresholds = m["grade_thresholds"]
    assert len(thresholds) == 4 and thresholds == sorted(thresholds)
    oof = pd.read_csv(rundir.run_dir(cfg) / rundir.OOF)
    probs = rundir.read_probabilities(oof, rundir.BLEND)
    entry = metrics.get("quadratic_kappa")
    assert m["oof_score"] == pytest.approx(entry.evaluate(oof["label"], probs, thresholds=thresholds))
    assert m["oof_score"] >= entry.evaluate(oof["label"], probs) - 1e-12, "fitted cuts never lose to rounding"
    path = submission.predict(cfg, log=lambda *_: None)
    sub = pd.read_csv(path, dtype=str)
    assert list(sub.columns) == ["id_code", "diagnosis"] and set(sub["diagnosis"]) <= {"0", "1", "2", "3", "4"}
    sidecar = json.loads(path.with_suffix(".json").read_text())
    assert sidecar["grade_thresholds"] == thresholds and sidecar["clip"] is None
    assert task_score.score_file(path, answers, task)["metric"] == "quadratic_kappa"


def test_binary_auc_run_does_not_clip(tmp_path):
    cfg, task, answers, m, _ = trained(tmp_path, "aerial-cactus-identification")
    assert task.binary and m["metric"] == "roc_auc" and m["clip_chosen"] is None
    oof = pd.read_csv(rundir.run_dir(cfg) / rundir.OOF)
    assert set(oof.columns) == {"id", "label", "logreg", rundir.BLEND}, "binary: one column per model, as ever"
    assert m["oof_score"] == pytest.approx(metrics.get("roc_auc").evaluate(oof["label"], oof[rundir.BLEND]))
    path = submission.predict(cfg, log=lambda *_: None)
    sub = pd.read_csv(path, dtype={"id": str})
    test = pd.read_csv(rundir.run_dir(cfg) / rundir.TEST_PREDICTIONS, dtype={"id": str})
    assert list(sub.columns) == ["id", "has_cactus"]
    np.testing.assert_allclose(sub["has_cactus"], test[rundir.BLEND], rtol=1e-5), "not clipped"
    assert json.loads(path.with_suffix(".json").read_text())["clip"] is None
    page = report.build(rundir.run_dir(cfg), tmp_path / "reports", log=lambda *_: None).read_text()
    assert "<h2>Calibration</h2>" in page and "<h2>Costliest mistakes</h2>" in page   # the binary page, unclipped


# --------------------------------------------------------------------------- folds, heads and the gate

def test_grouped_folds_keep_each_group_in_one_fold():
    rng = np.random.default_rng(0)
    labels = np.arange(60) % 3
    groups = rng.integers(0, 8, size=60).astype(str)
    splits = heads.folds(labels, 3, seed=1, groups=groups)
    held = np.zeros(60, int)
    for fold, (train_rows, val_rows) in enumerate(splits):
        assert not set(groups[train_rows]) & set(groups[val_rows])
        held[val_rows] += 1
    assert (held == 1).all(), "every image held out exactly once"
    with pytest.raises(KitError, match="at least 3 groups"):
        heads.folds(labels, 3, seed=1, groups=np.where(labels == 0, "a", "b"))


def test_grouped_run_keeps_drivers_apart(tmp_path, monkeypatch):
    seen = []
    folds = heads.folds
    monkeypatch.setattr(heads, "folds", lambda *a, **kw: seen.append(a[3] if len(a) > 3 else kw.get("groups"))
                        or folds(*a, **kw))
    data, task, _ = make_data_dir(tmp_path, "state-farm-distracted-driver-detection", 36, 8)[:3]
    cfg = config.resolve("cpu", {"backbones": "tiny@32", "weights": "none", "heads": "logreg", "folds": 3,
                                 "data_dir": str(data), "runs_dir": str(tmp_path / "runs"),
                                 "submissions_dir": str(tmp_path / "subs"), "cache_dir": str(tmp_path / "cache")})
    train = pd.read_csv(data / "index" / "train.csv")
    m = methods.train(cfg, log=lambda *_: None)
    assert m["metric"] == "multi_log_loss" and seen and all(g is not None for g in seen)
    assert sorted(set(seen[0])) == sorted(set(train["group"]))


def test_multinomial_logreg_chooses_c_on_the_metric_direction():
    rng = np.random.default_rng(0)
    y = np.arange(45) % 3
    x = rng.normal(size=(45, 6)) + np.eye(3)[y].repeat(2, axis=1) * 2
    lines = []
    result = heads.logreg(x, y, x[:5], 3, seed=0, grid=(0.001, 10.0), log=lines.append, metric="accuracy")
    assert result.oof.shape == (45, 3) and result.test.shape == (5, 3)
    np.testing.assert_allclose(result.oof.sum(axis=1), 1)
    # Here the weak C=0.001 is the more accurate (0.956 against 0.933) and C=10 the better calibrated:
    # each metric picks its own, higher accuracy, lower log loss.
    assert result.detail == {"c": 0.001}, lines
    assert any("OOF accuracy 0.9556" in line for line in lines)
    by_loss = heads.logreg(x, y, x[:5], 3, seed=0, grid=(0.001, 10.0), log=lines.append, metric="multi_log_loss")
    assert by_loss.detail == {"c": 10.0} and by_loss.oof_log_loss < result.oof_log_loss


def test_the_gate_refuses_a_file_off_the_task_layout(tmp_path):
    data, task, _ = make_data_dir(tmp_path, "dog-breed-identification", 8, 4)
    sample = pd.read_csv(data / task.sample_file, dtype=str)
    bad = sample.assign(**{task.value_columns[0]: "0.9"})   # rows no longer sum to 1
    bad.to_csv(tmp_path / "bad.csv", index=False)
    with pytest.raises(KitError, match="do not sum to 1"):
        submit.check_file(tmp_path / "bad.csv", data)
    sample[["id", task.value_columns[0]]].to_csv(tmp_path / "short.csv", index=False)
    with pytest.raises(KitError, match="header must be"):
        submit.check_file(tmp_path / "short.csv", data)


def test_score_defaults_to_the_fetched_tasks_metric(tmp_path, monkeypatch, capsys):
    from kit import cli

    data, task, answers = make_data_dir(tmp_path / "made", "aptos2019-blindness-detection", 10, 6)
    monkeypatch.chdir(tmp_path)
    shutil.copytree(data, tmp_path / config.Config().data_dir)   # where `kit score` looks without options
    assert cli.main(["score", str(data / task.sample_file), "--labels", str(answers)]) == 0
    line = capsys.readouterr().out.strip().splitlines()[-1]
    expected = task_score.summary(task_score.score_file(data / task.sample_file, answers, task))
    assert line == expected and line.startswith("quadratic_kappa")


def test_flip_views_only_where_the_task_allows_them():
    cfg = config.Config(backbones="tiny@32", views="orig,flip,zoom,zoom-flip")
    assert [e.views for e in cfg.extractors()] == [("orig", "flip", "zoom", "zoom-flip")], "flips on by default"
    no_flip = dataclasses.replace(cfg, flip=False)
    assert [e.views for e in no_flip.extractors()] == [("orig", "zoom")]
    assert dataclasses.replace(no_flip, views="flip").view_names() == ("orig",), "never no view at all"
