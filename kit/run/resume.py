"""What shaped a piece of saved work, so that a rerun reuses only work that matches.

An identity is a JSON object of everything that decides a result: the config keys that
affect training, digests of the training and test index, the exclusions applied and the
weights' content digests. A fold folder holds its identity beside its epoch states and
predictions; a rerun whose identity differs sets the folder aside (under
<run>/set-aside/) and trains again, saying why. metrics.json records the run's digest.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pandas as pd

from kit import fileio

IDENTITY = "identity.json"
SET_ASIDE = "set-aside"
# Where things go, how fast, how long a run may take, how predictions are clipped afterwards, and what
# `kit clean` alone reads: none of these changes what a model learns (a fold the time budget cut short is
# kept as it is). Every other key counts, including ones added later.
NOT_SHAPING = ("competition", "data_dir", "runs_dir", "submissions_dir", "cache_dir", "pixel_cache_dir", "run",
               "workers", "time_budget_s", "clip_mode", "clip_low", "clip_high", "label_noise_c")
# Keys added after runs were recorded: each counts only when set away from its default, so a run recorded
# before the key existed (trained as its default does) is still the same run.
ADDED_LATER = ("metric", "id_column", "labels_from", "label_column", "group_column", "train_images", "test_images",
               "flip")
# Keys only the cnn and features methods read: a fine-tuned fold does not depend on them.
END_TO_END_UNUSED = ("model", "image_size", "width", "dense", "val_fraction", "heads", "head_epochs",
                     "head_learning_rate", "head_dropout", "head_batch_size")


def shaping_config(config) -> dict:
    unused = NOT_SHAPING + (END_TO_END_UNUSED if config.method in ("finetune", "frozen") else ())
    defaults = type(config)()
    return {key: value for key, value in config.to_dict().items()
            if key not in unused and not (key in ADDED_LATER and value == getattr(defaults, key))}


def frame_digest(frame: pd.DataFrame, columns=("id", "label")) -> str:
    """The rows' ids (and labels), in order: which images, labelled how."""
    present = [c for c in columns if c in frame.columns]
    return fileio.digest(frame[present].to_csv(index=False))


def run_identity(config, train: pd.DataFrame, test: pd.DataFrame | None, extractors=None) -> dict:
    """Everything that shaped a run trained on `train` (and predicting `test`)."""
    from kit.data import dataset
    from kit.models import features

    extractors = config.extractors() if extractors is None else extractors
    return {
        "config": shaping_config(config),
        "train": frame_digest(train),
        "test": None if test is None else frame_digest(test, ("id",)),
        "exclusions": fileio.digest(dataset.exclusions_applied(config)),
        "weights": {ex.label: features.weights_id(ex) for ex in extractors},
    }


def requested_identity(config) -> dict:
    """What a run of `config` is shaped by, known before any image is read: the training index less the
    exclusions, the test index, the config and the weights. A finished run whose metrics.json records this
    digest needs no training."""
    from kit.data import dataset
    from kit.fetch import read_index

    train = dataset.training_index(config, log=lambda *_: None)
    return run_identity(config, train, read_index(config.data_dir, "test"))


def record(config) -> dict:
    """metrics.json's account of what shaped a run: its digest, identity and the exclusions applied."""
    from kit.data import dataset

    identity = requested_identity(config)
    return {"digest": fileio.digest(identity), "identity": identity, "exclusions": dataset.exclusions_applied(config)}


def fold_identity(run: dict, extractors, fold: int) -> dict:
    """A run's identity narrowed to one model's fold: its own backbones and weights only,
    so adding a backbone to the preset does not retrain the models already there."""
    labels = [ex.label for ex in extractors]
    config = {**run["config"], "backbones": ",".join(labels)}
    return {**run, "config": config, "weights": {k: run["weights"][k] for k in labels}, "fold": fold}


def differences(old: dict, new: dict) -> list[str]:
    """Why saved work shaped by `old` does not fit `new`, in words for the log."""
    if not old:
        return ["no record of what shaped it"]
    reasons = []
    before, after = old.get("config", {}), new.get("config", {})
    keys = sorted(k for k in set(before) | set(after) if before.get(k) != after.get(k))
    if keys:
        reasons.append("config changed (" + ", ".join(f"{k} {before.get(k)!r} -> {after.get(k)!r}" for k in keys) + ")")
    for part, words in (("train", "training images"), ("test", "test images"), ("exclusions", "exclusions"),
                        ("weights", "weights"), ("fold", "fold")):
        if old.get(part) != new.get(part):
            reasons.append(f"{words} changed")
    return reasons or ["its record differs"]


def claim(folder: Path, identity: dict, runs_root: Path, label: str, log=print) -> None:
    """Make `folder` hold only work shaped by `identity`.

    Matching work stays to be reused; any other work is moved to <run>/set-aside/ (replacing
    what an earlier mismatch left there) and the log says why.
    """
    folder = Path(folder)
    saved = fileio.read_json(folder / IDENTITY)
    if saved.get("digest") == fileio.digest(identity):
        return
    work = [p for p in folder.iterdir() if p.name != IDENTITY] if folder.is_dir() else []
    if work:
        saved.pop("digest", None)
        aside = set_aside(folder, Path(runs_root))
        log(f"{label}: {', '.join(differences(saved, identity))}, training again (the old work is in {aside})")
    folder.mkdir(parents=True, exist_ok=True)
    fileio.write_json(folder / IDENTITY, {**identity, "digest": fileio.digest(identity)})


def set_aside(folder: Path, run: Path) -> Path:
    target = run / SET_ASIDE / folder.relative_to(run)
    if target.exists():
        shutil.rmtree(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    os.replace(folder, target)
    return target
