"""Saved work carries what shaped it: matching work is reused, other work is set aside with a reason."""

import dataclasses
import json

import numpy as np
import pandas as pd
import pytest

from kit import config, fetch, fileio, methods
from kit.run import resume, rundir, seeding

TINY = {"backbones": "tiny@32", "weights": "none", "heads": "logreg", "folds": 2}


def _frames():
    train_frame = pd.DataFrame({"id": ["cat.1", "dog.1", "cat.2", "dog.2"], "path": list("abcd"), "label": [0, 1, 0, 1]})
    return train_frame, pd.DataFrame({"id": [1, 2], "path": ["e", "f"]})


def _identity(tmp_path, **overrides):
    cfg = config.resolve("cpu", {**TINY, "method": "finetune", "data_dir": str(tmp_path / "data"), **overrides})
    return resume.run_identity(cfg, *_frames())


def test_identity_counts_what_trains_and_nothing_else(tmp_path):
    base = fileio.digest(_identity(tmp_path))
    moved = {"data_dir": str(tmp_path / "elsewhere"), "runs_dir": "r", "submissions_dir": "s", "cache_dir": "c",
             "run": "other", "clip_low": 0.01, "clip_high": 0.99, "clip_mode": "fixed", "workers": 7,
             "heads": "dense"}   # heads: the features method's, unused by fine-tuning
    assert fileio.digest(_identity(tmp_path, **moved)) == base
    for key, value in {"seed": 7, "learning_rate": 3e-4, "augment": False, "epochs": 5, "deterministic": False}.items():
        assert fileio.digest(_identity(tmp_path, **{key: value})) != base, key
    train_frame, test_frame = _frames()
    cfg = config.resolve("cpu", {**TINY, "method": "finetune", "data_dir": str(tmp_path / "data")})
    relabelled = train_frame.assign(label=[1, 1, 0, 1])
    assert fileio.digest(resume.run_identity(cfg, relabelled, test_frame)) != base


def test_digests_keep_the_values_saved_work_was_named_by():
    # Fold identities, run digests and cache folders on disk were named by these values before fileio.digest
    # owned them: a changed value would set every saved fold aside and miss every cache.
    identity = {"config": {"seed": 42}, "train": "abc", "test": None}
    assert fileio.digest(identity) == "4620481a5c5d1452"
    assert fileio.digest(identity, 12) == fileio.digest(identity)[:12]
    assert len(fileio.digest(identity, length=None)) == 64
    assert fileio.digest("id,label\ncat.1,0\n") == fileio.digest(b"id,label\ncat.1,0\n") == "057fa6be52e14fea"


def test_a_fold_identity_ignores_the_other_backbones(tmp_path):
    one = config.resolve("cpu", {**TINY, "method": "finetune"})
    two = dataclasses.replace(one, backbones="tiny@32,tiny@40")
    first = lambda cfg: resume.fold_identity(resume.run_identity(cfg, *_frames()), cfg.extractors()[:1], 0)
    assert fileio.digest(first(one)) == fileio.digest(first(two)), "adding a backbone retrains nothing already there"


def test_work_under_another_identity_is_set_aside_with_the_reason(tmp_path):
    run = tmp_path / "run"
    folder = run / "tiny@32" / "fold0"
    old = _identity(tmp_path)
    resume.claim(folder, old, run, "fold 1", log=pytest.fail)   # an empty folder: nothing to set aside
    (folder / "predictions.npz").write_bytes(b"old work")
    resume.claim(folder, old, run, "fold 1", log=pytest.fail)   # the same identity: kept, silently
    assert (folder / "predictions.npz").read_bytes() == b"old work"

    (tmp_path / "data").mkdir()
    pd.DataFrame({"id": ["cat.2"], "reason": ["known:seed004"]}).to_csv(tmp_path / "data" / "exclusions.csv", index=False)
    new = _identity(tmp_path, seed=7)
    lines = []
    resume.claim(folder, new, run, "fold 1", log=lines.append)
    assert len(lines) == 1 and lines[0].startswith("fold 1: config changed (seed 42 -> 7), exclusions changed, training again")
    assert sorted(p.name for p in folder.iterdir()) == ["identity.json"]
    assert (run / "set-aside" / "tiny@32" / "fold0" / "predictions.npz").read_bytes() == b"old work"
    assert json.loads((folder / "identity.json").read_text())["digest"] == fileio.digest(new)


def test_work_without_a_record_is_not_trusted(tmp_path):
    folder = tmp_path / "run" / "m" / "fold1"
    folder.mkdir(parents=True)
    (folder / "state-warmup.json").write_text("{}")
    lines = []
    resume.claim(folder, _identity(tmp_path), tmp_path / "run", "fold 2", log=lines.append)
    assert lines and lines[0].startswith("fold 2: no record of what shaped it, training again")


def test_derived_seeds_depend_on_every_part():
    assert seeding.derive(42, "tiny@32", 0) == seeding.derive(42, "tiny@32", 0)
    seeds = {seeding.derive(42, "tiny@32", 0), seeding.derive(43, "tiny@32", 0),
             seeding.derive(42, "tiny@40", 0), seeding.derive(42, "tiny@32", 1)}
    assert len(seeds) == 4 and all(0 <= s < 2 ** 31 for s in seeds)


def test_metrics_record_the_digest_and_the_exclusions(competition, tmp_path):
    data = fetch.fetch_from(competition, tmp_path / "data", log=lambda *_: None)
    cfg = config.resolve("cpu", {**TINY, "data_dir": str(data), "runs_dir": str(tmp_path / "runs"),
                                 "cache_dir": str(tmp_path / "cache")})
    first = methods.train(cfg, log=lambda *_: None)
    assert first["exclusions"] == {"used": True, "excluded": [], "added": []}
    pd.DataFrame({"id": ["cat.0", "dog.1"], "reason": ["known", "known"]}).to_csv(data / "exclusions.csv", index=False)
    second = methods.train(cfg, log=lambda *_: None)
    saved = json.loads((rundir.run_dir(cfg) / "metrics.json").read_text())
    assert saved["exclusions"] == {"used": True, "excluded": ["cat.0", "dog.1"], "added": []}
    assert saved["digest"] == second["digest"] != first["digest"]
    assert saved["digest"] == fileio.digest(saved["identity"])
    assert second["n_train"] == first["n_train"] - 2
    oof = pd.read_csv(rundir.run_dir(cfg) / "oof.csv")
    assert not {"cat.0", "dog.1"} & set(oof["id"]) and np.isfinite(oof["blend"]).all()
