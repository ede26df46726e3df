"""Predict the test set with a finished run and write a checked, clipped submission.

The submission is validated against sample_submission.csv before it is written, then
written atomically with a JSON sidecar recording how it was made.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from kit import faults, fileio, provenance
from kit.config import Config
from kit.data import dataset, images
from kit.errors import KitError
from kit.fetch import SAMPLE, read_index
from kit.predict import blend, score
from kit.run.rundir import (METRICS, OOF, SKIPPED_TEST, TEST_PREDICTIONS, VAL_PREDICTIONS, is_finished, run_dir, saved_metrics,
                            write_skips)
from kit.tfquiet import import_keras, keras_verbosity

UNREADABLE_TEST_PROB = 0.5   # the least costly guess when a test picture cannot be read


@dataclass(frozen=True)
class LocalScore:
    """The held-out labels and predictions a submission's local score comes from."""

    kind: str          # "validation" (the CNN's split) or "oof" (out-of-fold)
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
    clip_mode: str                                 # "fixed", or the mode that chose the clip on OOF
    sidecar: dict = field(default_factory=dict)    # keys the sidecar adds or replaces (a blend's inputs)


def predict(config: Config, log=print, path=None) -> Path:
    """submissions/<run>.csv (or `path`) and its sidecar, from a finished run."""
    if not is_finished(config):
        raise KitError(f"run {config.run!r} has no finished model in {run_dir(config)}: run `python -m kit train` first")
    path = Path(path or submission_path(config))
    made_from = {"run_metrics_sha256": fileio.sha256(run_dir(config) / METRICS)}
    if is_up_to_date(path, config, made_from):
        log(f"predict: {path} is up to date with run {config.run} and these settings")
        return path
    test = read_index(config.data_dir, "test")
    sample = score.read_csv(Path(config.data_dir) / SAMPLE, "sample submission")
    if config.method != "cnn":
        probs, local = _ensemble_predictions(config, test)
    else:
        probs, local = _cnn_predictions(config, test, log)
    chosen = saved_metrics(config).get("clip_chosen")
    submission = Submission(test["id"].to_numpy(), probs, sample["id"].to_numpy(), local,
                            blend.clip_bounds(config, chosen), config.clip_mode if chosen else "fixed", made_from)
    return write_submission(submission, config, path, log)


def is_up_to_date(path: Path, config: Config, made_from: dict) -> bool:
    """Whether `path` is the file predict wrote from this very run (its metrics.json) with this config."""
    sidecar = fileio.read_json(path.with_suffix(".json")) if path.is_file() else {}
    return (bool(sidecar) and sidecar.get("sha256") == fileio.sha256(path) and sidecar.get("config") == config.to_dict()
            and all(sidecar.get(key) == value for key, value in made_from.items()))


def submission_path(config: Config, name: str | None = None) -> Path:
    """submissions/<run>.csv: the run's submission, or that of `name` (a blend, a kernel's output)."""
    return Path(config.submissions_dir) / f"{name or config.run}.csv"


def _cnn_predictions(config: Config, test: pd.DataFrame, log):
    """The CNN on every test image; its local score is the held-out validation split's."""
    keras = import_keras()

    model = keras.models.load_model(run_dir(config) / "model.keras")
    x, ok, skips = dataset.load_arrays(test["path"], config.image_size, config.min_side,
                                       config.workers, desc="decode test")
    probs = np.full(len(test), UNREADABLE_TEST_PROB)
    if ok.any():
        probs[ok] = model.predict(x, batch_size=config.batch_size, verbose=keras_verbosity()).ravel()
    if skips:
        log(images.summarize_skips(skips, "test") + f"; predicted {UNREADABLE_TEST_PROB} for them")
        write_skips(run_dir(config) / SKIPPED_TEST, skips)
    val = pd.read_csv(run_dir(config) / VAL_PREDICTIONS)
    return probs, LocalScore("validation", val["label"].to_numpy(), val["prob"].to_numpy())


def _ensemble_predictions(config: Config, test: pd.DataFrame):
    """The blend computed at training time; its local score is out-of-fold."""
    predictions = pd.read_csv(run_dir(config) / TEST_PREDICTIONS)
    if predictions["id"].tolist() != test["id"].tolist():
        raise KitError(f"run {config.run!r} was trained on a different test set than {config.data_dir}: train again")
    oof = pd.read_csv(run_dir(config) / OOF)
    return predictions["blend"].to_numpy(), LocalScore("oof", oof["label"].to_numpy(), oof["blend"].to_numpy())


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
    fixed_loss = score.log_loss(local.labels, score.clip(local.probs, config.clip_low, config.clip_high))
    # Sidecar first, CSV last: a submission file on disk always has its sidecar beside it.
    with fileio.atomic_path(path) as tmp:
        frame.to_csv(tmp, index=False, float_format="%.6f")
        faults.point("submission")
        fileio.write_json(path.with_suffix(".json"), {
            "file": path.name,
            "sha256": fileio.sha256(tmp),
            "created": provenance.now(),
            "git_commit": provenance.git_commit(),
            "run": config.run,
            "clip": [low, high],
            "clip_mode": submission.clip_mode,
            "local_score_kind": local.kind,
            "local_log_loss": local_loss,
            "local_log_loss_fixed_clip": {"clip": [config.clip_low, config.clip_high], "log_loss": fixed_loss},
            "local_log_loss_raw": score.log_loss(local.labels, local.probs),
            "local_accuracy": score.accuracy(local.labels, local.probs),
            "n_rows": len(frame),
            "config": config.to_dict(),
            **submission.sidecar,
        })
    log(f"predict: wrote {path} ({len(frame)} rows, clipped to [{low:g}, {high:g}]); "
        f"local {local.kind} log loss {local_loss:.4f}")
    return path
