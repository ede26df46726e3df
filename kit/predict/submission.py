"""A finished run's test predictions as a checked, clipped submission.

Every method leaves its test predictions (test_predictions.csv) and its held-out ones beside
metrics.json (kit/predict/finish.py); the submission is clipped by the one rule
(kit/predict/blend.py), validated against sample_submission.csv, then written atomically with a
JSON sidecar recording how it was made and its local score.

Dogs vs. Cats Redux (`id,label`, binary log loss) is written as it always was (`write_submission`);
any other task's submission takes its sample's exact layout (kit.task.layout: header, id form, one
probability column per class, a class name or an integer grade), is checked against the sample, and
its sidecar holds the task and the local score on the task's metric (`write_task_submission`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from kit import faults, fileio, provenance, score
from kit.config import Config
from kit.errors import KitError
from kit.fetch import read_index, read_task
from kit.predict import blend
from kit.predict.finish import accuracy, score_on
from kit.run.rundir import (BLEND, HELD_OUT, METRICS, TEST_PREDICTIONS, is_finished, read_probabilities, run_dir,
                            saved_metrics)
from kit.score import SAMPLE
from kit.task import layout, metrics as metric_registry
from kit.task.spec import Task


@dataclass(frozen=True)
class LocalScore:
    """The held-out labels and predictions a submission's local score comes from."""

    kind: str          # "oof" (out-of-fold) or "validation" (the cnn's split): metrics.json's scored_on
    labels: np.ndarray
    probs: np.ndarray


@dataclass(frozen=True)
class Submission:
    """What a submission file is written from: raw test predictions, the sample's ids they must match,
    the local score's predictions, and the clip both are scored and written with."""

    ids: np.ndarray
    probs: np.ndarray
    sample_ids: np.ndarray
    local: LocalScore
    clip: tuple[float, float]
    clip_mode: str                                 # "fixed", or "oof": chosen on the held-out predictions
    sidecar: dict = field(default_factory=dict)    # keys the sidecar adds or replaces (a blend's inputs)


def predict(config: Config, log=print, path=None) -> Path:
    """submissions/<run>.csv (or `path`) and its sidecar, from a finished run."""
    if not is_finished(config):
        raise KitError(f"run {config.run!r} has no finished model in {run_dir(config)}: run `python -m kit train` first")
    path = Path(path or submission_path(config))
    made_from = {"run_metrics_sha256": fileio.file_digest(run_dir(config) / METRICS)}
    if is_up_to_date(path, config, made_from):
        log(f"predict: {path} is up to date with run {config.run} and these settings")
        return path
    task = read_task(config.data_dir)
    if not is_redux_layout(task):
        return predict_task(config, task, path, made_from, log)
    test = read_index(config.data_dir, "test")
    sample = score.read_csv(Path(config.data_dir) / SAMPLE, "sample submission")
    metrics = saved_metrics(config)
    predictions = pd.read_csv(run_dir(config) / TEST_PREDICTIONS)
    if predictions["id"].tolist() != test["id"].tolist():
        raise KitError(f"run {config.run!r} was trained on a different test set than {config.data_dir}: train again")
    held_out = pd.read_csv(run_dir(config) / HELD_OUT[metrics["scored_on"]])
    local = LocalScore(metrics["scored_on"], held_out["label"].to_numpy(), held_out[BLEND].to_numpy())
    submission = Submission(predictions["id"].to_numpy(), predictions[BLEND].to_numpy(), sample["id"].to_numpy(), local,
                            blend.clip_bounds(config, metrics["clip_chosen"]), config.clip_mode, made_from)
    return write_submission(submission, config, path, log)


def is_redux_layout(task: Task) -> bool:
    """Whether the task's submission is Dogs vs. Cats Redux's: `id,label`, P(class 1) on binary log loss."""
    return task.header == ("id", "label") and task.metric == "log_loss"


def predict_task(config: Config, task: Task, path: Path, made_from: dict, log=print) -> Path:
    """Any task's submission in its sample's layout, from a finished run's blended predictions."""
    test = read_index(config.data_dir, "test")
    sample = layout.read_sample(config.data_dir, task)
    metrics = saved_metrics(config)
    predictions = pd.read_csv(run_dir(config) / TEST_PREDICTIONS, dtype={"id": str})
    if predictions["id"].tolist() != test["id"].astype(str).tolist():
        raise KitError(f"run {config.run!r} was trained on a different test set than {config.data_dir}: train again")
    held_out = pd.read_csv(run_dir(config) / HELD_OUT[metrics["scored_on"]])
    local = LocalScore(metrics["scored_on"], held_out["label"].to_numpy(), read_probabilities(held_out, BLEND))
    thresholds = metrics.get("grade_thresholds")
    clip = blend.clip_bounds(config, metrics["clip_chosen"])
    frame = layout.submission_frame(task, predictions["id"], read_probabilities(predictions, BLEND), clip, thresholds)
    frame = layout.check(frame, task, sample[task.id_column], source=f"predictions of run {config.run}")
    return write_task_submission(frame, task, local, clip, thresholds, config, path, made_from, log)


def write_task_submission(frame: pd.DataFrame, task: Task, local: LocalScore, clip, thresholds, config: Config,
                          path: Path, made_from: dict, log=print) -> Path:
    """`path` in the task's layout and its sidecar (the task, the local score on its metric), atomically."""
    metric = metric_registry.get(task.metric)
    local_score = score_on(metric, local.labels, local.probs, clip, thresholds)
    write_with_sidecar(path, config, lambda tmp: layout.write(frame, tmp), {
        "task": task.to_dict(),
        "metric": metric.name,
        "local_score": local_score,
        "local_score_kind": local.kind,
        "clip": None if clip is None else list(clip),
        "clip_mode": config.clip_mode if clip is not None else "none",
        **({} if thresholds is None else {"grade_thresholds": list(thresholds)}),
        "local_log_loss_raw": metric_registry.log_loss(local.labels, local.probs),
        "local_accuracy": accuracy(local.labels, local.probs),
        "n_rows": len(frame),
        "config": config.to_dict(),
        **made_from,
    })
    log(f"predict: wrote {path} ({len(frame)} rows, {task.submission_values} in {task.sample_file}'s layout"
        + ("" if clip is None else f", clipped to [{clip[0]:g}, {clip[1]:g}]")
        + f"); local {local.kind} {metric.name} {local_score:.4f}")
    return path


def is_up_to_date(path: Path, config: Config, made_from: dict) -> bool:
    """Whether `path` is the file predict wrote from this very run (its metrics.json) with this config."""
    sidecar = fileio.read_json(path.with_suffix(".json")) if path.is_file() else {}
    return (bool(sidecar) and sidecar.get("sha256") == fileio.file_digest(path)
            and sidecar.get("config") == config.to_dict()
            and all(sidecar.get(key) == value for key, value in made_from.items()))


def submission_path(config: Config, name: str | None = None) -> Path:
    """submissions/<run>.csv: the run's submission, or that of `name` (a blend, a kernel's output)."""
    return Path(config.submissions_dir) / f"{name or config.run}.csv"


def write_submission(submission: Submission, config: Config, path: Path, log=print) -> Path:
    """Clip, validate, then write `path` and its .json sidecar atomically.

    The sidecar's local score uses exactly this submission's clip bounds, on the held-out
    predictions the submission carries (validation split or out-of-fold).
    """
    low, high = submission.clip
    local = submission.local
    clipped = pd.DataFrame({"id": submission.ids, "label": score.clip(submission.probs, low, high)})
    frame = score.validate_submission(clipped, submission.sample_ids, source=f"predictions of run {config.run}")
    local_loss = score.log_loss(local.labels, score.clip(local.probs, low, high))
    fixed = blend.fixed_clip(config)
    fixed_loss = score.log_loss(local.labels, score.clip(local.probs, *fixed))
    write_with_sidecar(path, config, lambda tmp: frame.to_csv(tmp, index=False, float_format="%.6f"), {
        "clip": [low, high],
        "clip_mode": submission.clip_mode,
        "local_score_kind": local.kind,
        "local_log_loss": local_loss,
        "local_log_loss_fixed_clip": {"clip": list(fixed), "log_loss": fixed_loss},
        "local_log_loss_raw": score.log_loss(local.labels, local.probs),
        "local_accuracy": score.accuracy(local.labels, local.probs),
        "n_rows": len(frame),
        "config": config.to_dict(),
        **submission.sidecar,
    })
    log(f"predict: wrote {path} ({len(frame)} rows, clipped to [{low:g}, {high:g}]); "
        f"local {local.kind} log loss {local_loss:.4f}")
    return path


def write_with_sidecar(path: Path, config: Config, write_csv, keys: dict) -> None:
    """The CSV (`write_csv(tmp)`) and its sidecar: which file, its digest, when, from what, then `keys`.

    Sidecar first, CSV last: a submission file on disk always has its sidecar beside it.
    """
    with fileio.atomic_path(path) as tmp:
        write_csv(tmp)
        faults.point("submission")
        fileio.write_json(path.with_suffix(".json"), {
            "file": path.name,
            "sha256": fileio.file_digest(tmp),
            "created": provenance.now(),
            "git_commit": provenance.git_commit(),
            "run": config.run,
            **keys,
        })
