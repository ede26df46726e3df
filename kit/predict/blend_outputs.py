"""`python -m kit blend DIR...`: one submission from the predictions of several kernels or runs.

Each DIR is a downloaded kernel output (submissions/<kernel>/) or a finished local run
(runs/<run>/) holding oof.csv and test_predictions.csv. Every model column of every DIR
is one input of the blend, named DIR:model, and the weights and the clip are fitted on
the out-of-fold predictions exactly as within one run, on the competition's metric, and the
submission takes its sample's layout as `predict` writes it. That is only sound when every DIR
predicted the same training images out of fold, so rows are aligned by id and DIRs that
cover different images (or a different number of classes) are refused rather than silently
intersected. The task is the fetched competition's, else the one a kernel output keeps beside its
predictions; outputs of Dogs vs. Cats Redux from before the kit saved a task are read as Redux.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pandas as pd

from kit import fetch, fileio, score
from kit.config import Config
from kit.errors import KitError
from kit.kaggle_env import DONE_NAME
from kit.predict import blend
from kit.run.rundir import BLEND, CONFIG, METRICS, OOF, model_columns, read_probabilities
from kit.run.rundir import TEST_PREDICTIONS as TEST
from kit.score import SAMPLE
from kit.task import layout, metrics as metric_registry
from kit.task.spec import Task


@dataclasses.dataclass
class Aligned:
    """Every model's OOF and test predictions, rows in one order for all of them."""

    names: list[str]
    ids: np.ndarray
    labels: np.ndarray
    oof: np.ndarray          # [n_train, n_models], or [n_train, n_models, classes] for more than two
    test_ids: np.ndarray
    test: np.ndarray         # [n_test, n_models(, classes)]


def blend_dirs(dirs, config: Config, name: str = "blend", log=print) -> Path:
    """Blend the DIRs' models on OOF, choose the clip, write submissions/<name>.csv and its sidecar."""
    from kit.predict.submission import (LocalScore, Submission, is_redux_layout, submission_path, write_submission,
                                        write_task_submission)

    folders = [Path(d) for d in dirs]
    task, task_dir = input_task(config, folders)
    redux = task is None or is_redux_layout(task)
    # Another task's ids are text ("007" is not 7); Redux's numbered test ids are read as numbers, as always.
    aligned = align({label: read_predictions(folder, None if redux else str)
                     for label, folder in labelled(folders).items()})
    fitted = blend.fit(aligned.oof, aligned.labels, aligned.test, task.metric if task else "log_loss")
    clip = blend.clip_bounds(config, fitted.chosen)
    losses = {n: metric_registry.log_loss(aligned.labels, aligned.oof[:, i]) for i, n in enumerate(aligned.names)}
    for model, loss in losses.items():
        log(f"blend: {model}: OOF log loss {loss:.4f}, weight {fitted.weights[aligned.names.index(model)]:.3f}")
    # The sidecar's provenance is the inputs', not this command's config (which trained nothing).
    sidecar = {"config": None, "blend": {
        "inputs": {label: describe_input(folder) for label, folder in labelled(folders).items()},
        "weights": {n: float(w) for n, w in zip(aligned.names, fitted.weights)},
        "clip": None if clip is None else list(clip), "clip_mode": config.clip_mode,
        "models_oof_log_loss": losses,
        "oof_log_loss_raw": metric_registry.log_loss(aligned.labels, fitted.held_out),
        "n_oof": int(len(aligned.ids)),
    }}
    local = LocalScore("oof", aligned.labels, fitted.held_out)
    named, path = dataclasses.replace(config, run=name), submission_path(config, name)
    if redux:
        sample = score.read_csv(sample_path(config, folders), "sample submission")
        submission = Submission(aligned.test_ids, fitted.test, sample["id"].to_numpy(), local, clip, config.clip_mode,
                                sidecar)
        return write_submission(submission, named, path, log)
    sample = layout.read_sample(task_dir, task)
    frame = layout.submission_frame(task, aligned.test_ids, fitted.test, clip, fitted.thresholds)
    frame = layout.check(frame, task, sample[task.id_column], source=f"the blend of {', '.join(map(str, folders))}")
    return write_task_submission(frame, task, local, clip, fitted.thresholds, named, path, sidecar, log)


def input_task(config: Config, folders: list[Path]) -> tuple[Task | None, Path | None]:
    """The task the inputs predict and the folder holding its sample: the fetched competition's, else
    the first input that keeps one (a kernel output); None where neither does (Redux, as read before)."""
    if fetch.is_complete(Path(config.data_dir)):
        return fetch.read_task(config.data_dir), Path(config.data_dir)
    for folder in folders:
        if (task := fetch.kept_task(folder)) is not None:
            return task, folder
    return None, None


def describe_input(folder: Path) -> dict:
    """Where one input came from: a run or a kernel output, the digests of its config and of what
    shaped it (from its metrics.json; None for outputs written before the kit recorded one), and
    its own blended OOF log loss."""
    config = fileio.read_json(folder / CONFIG)
    metrics = fileio.read_json(folder / METRICS)
    oof = _read(folder / OOF, ("id", "label"))
    return {
        "path": str(folder),
        "kind": "kernel output" if (folder / DONE_NAME).is_file() else "run",
        "config_digest": fileio.digest(config) if config else None,
        "digest": metrics.get("digest"),
        "oof_log_loss": _blend_log_loss(oof),
    }


def labelled(folders: list[Path]) -> dict[str, Path]:
    """A short label per folder (its name), or the path as given where two folders share a name."""
    names = [f.name for f in folders]
    if len(set(map(str, folders))) < len(folders):
        raise KitError("the same folder is named twice: each DIR is blended once")
    return {(f.name if names.count(f.name) == 1 else str(f)): f for f in folders}


def _blend_log_loss(oof: pd.DataFrame) -> float | None:
    try:
        return metric_registry.log_loss(oof["label"], read_probabilities(oof, BLEND))
    except KitError:   # written without a blend column
        return None


def read_predictions(folder: Path, id_dtype=None) -> tuple[pd.DataFrame, pd.DataFrame]:
    for name in (OOF, TEST):
        if not (folder / name).is_file():
            raise KitError(f"{folder} has no {name}: give folders of kernel outputs (`make kernel-output`) or "
                           "finished runs of a features, finetune or frozen preset")
    return _read(folder / OOF, ("id", "label"), id_dtype), _read(folder / TEST, ("id",), id_dtype)


def _read(path: Path, needed: tuple, id_dtype=None) -> pd.DataFrame:
    try:
        frame = pd.read_csv(path, dtype=None if id_dtype is None else {"id": id_dtype})
    except (pd.errors.EmptyDataError, pd.errors.ParserError, UnicodeDecodeError) as e:
        raise KitError(f"{path} is not a readable CSV: {str(e).splitlines()[0]}") from None
    missing = [c for c in needed if c not in frame.columns]
    if missing:
        raise KitError(f"{path} has no {missing[0]!r} column: is it a kit run's predictions?")
    return frame


def align(outputs: dict[str, tuple[pd.DataFrame, pd.DataFrame]]) -> Aligned:
    """Rows aligned by id across outputs, in the first output's order; refuses differing image sets."""
    first = next(iter(outputs))
    base_oof, base_test = outputs[first]
    names, oof_cols, test_cols = [], [], []
    for label, (oof, test) in outputs.items():
        models = model_columns(oof)
        if not models or model_columns(test) != models:
            raise KitError(f"{label}: {OOF} and {TEST} must hold the same model columns besides id, label, blend")
        oof = _by_id(oof, label, OOF, base_oof["id"], first, "training images out of fold")
        test = _by_id(test, label, TEST, base_test["id"], first, "test images")
        if not np.array_equal(oof["label"].to_numpy(), base_oof["label"].to_numpy()):
            raise KitError(f"{label} and {first} disagree on the labels of some training images: "
                           "they were trained on different data")
        names += [f"{label}:{m}" for m in models]
        oof_cols += [read_probabilities(oof, m) for m in models]
        test_cols += [read_probabilities(test, m) for m in models]
    shapes = {column.shape[1:] for column in oof_cols + test_cols}
    if len(shapes) > 1:
        raise KitError("the inputs predict different numbers of classes: blend only runs of one competition")
    return Aligned(names, base_oof["id"].to_numpy(), base_oof["label"].to_numpy(int),
                   np.stack(oof_cols, axis=1), base_test["id"].to_numpy(), np.stack(test_cols, axis=1))


def _by_id(frame: pd.DataFrame, label: str, file: str, ids: pd.Series, first: str, what: str) -> pd.DataFrame:
    if frame["id"].duplicated().any():
        raise KitError(f"{label}/{file} lists some ids twice")
    here, there = set(frame["id"]), set(ids)
    if here != there:
        raise KitError(f"{label} and {first} predicted different {what} ({_some(there - here)} only in {first}, "
                       f"{_some(here - there)} only in {label}): blend only runs made on the same images "
                       "(same data, exclusions and limit)")
    return frame.set_index("id").loc[ids].reset_index()


def _some(ids: set) -> str:
    shown = ", ".join(map(str, sorted(ids, key=str)[:3]))
    return f"{len(ids)}" + (f" e.g. {shown}" if ids else "")


def sample_path(config: Config, folders: list[Path]) -> Path:
    """The fetched competition's sample submission, else the copy a kernel wrote beside its output."""
    candidates = [Path(config.data_dir) / SAMPLE] + [f / SAMPLE for f in folders]
    for path in candidates:
        if path.is_file():
            return path
    raise KitError(f"no {SAMPLE} to check the blend against: run `python -m kit fetch` (or `make fetch`), "
                   f"or give a kernel output folder, which holds one")

