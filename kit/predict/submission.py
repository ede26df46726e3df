"""Predict the test set with a finished run and write a checked, clipped submission.

The submission is validated against sample_submission.csv before it is written, then
written atomically with a JSON sidecar recording how it was made.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from kit import faults, fileio, provenance
from kit.config import Config
from kit.data import dataset, images
from kit.errors import KitError
from kit.fetch import SAMPLE, read_index
from kit.predict import blend, score
from kit.run.rundir import OOF, TEST_PREDICTIONS, VAL_PREDICTIONS, is_finished, run_dir, saved_metrics, write_skips
from kit.tfquiet import keras_verbosity

UNREADABLE_TEST_PROB = 0.5   # the least costly guess when a test picture cannot be read


def predict(config: Config, log=print, path=None) -> Path:
    if not is_finished(config):
        raise KitError(f"run {config.run!r} has no finished model in {run_dir(config)}: run `python -m kit train` first")
    test = read_index(config.data_dir, "test")
    sample = score.read_csv(Path(config.data_dir) / SAMPLE, "sample submission")
    if config.method != "cnn":
        probs, local = _ensemble_predictions(config, test)
    else:
        probs, local = _cnn_predictions(config, test, log)
    return write_submission(test["id"], probs, sample["id"], config, local, log, path=path)


def _cnn_predictions(config: Config, test: pd.DataFrame, log):
    """The CNN on every test image; its local score is the held-out validation split's."""
    import keras

    model = keras.models.load_model(run_dir(config) / "model.keras")
    x, ok, skips = dataset.load_arrays(test["path"], config.image_size, config.min_side,
                                       config.workers, desc="decode test")
    probs = np.full(len(test), UNREADABLE_TEST_PROB)
    if ok.any():
        probs[ok] = model.predict(x, batch_size=config.batch_size, verbose=keras_verbosity()).ravel()
    if skips:
        log(images.summarize_skips(skips, "test") + f"; predicted {UNREADABLE_TEST_PROB} for them")
        write_skips(run_dir(config) / "skipped_test.csv", skips)
    val = pd.read_csv(run_dir(config) / VAL_PREDICTIONS)
    return probs, {"kind": "validation", "labels": val["label"], "probs": val["prob"]}


def _ensemble_predictions(config: Config, test: pd.DataFrame):
    """The blend computed at training time; its local score is out-of-fold."""
    predictions = pd.read_csv(run_dir(config) / TEST_PREDICTIONS)
    if predictions["id"].tolist() != test["id"].tolist():
        raise KitError(f"run {config.run!r} was trained on a different test set than {config.data_dir}: train again")
    oof = pd.read_csv(run_dir(config) / OOF)
    return predictions["blend"].to_numpy(), {"kind": "oof", "labels": oof["label"], "probs": oof["blend"]}


def clip_bounds(config: Config) -> tuple[float, float]:
    """The bounds this run's submission is clipped to (blend.clip_bounds)."""
    return blend.clip_bounds(config, saved_metrics(config).get("clip_chosen"))


def write_submission(ids, probs, sample_ids, config: Config, local: dict, log=print, *, path=None, clip=None,
                     extra: dict | None = None) -> Path:
    """Clip, validate, then write submissions/<run>.csv (or `path`) and its .json sidecar atomically.

    `local` holds the labels and predictions the local score comes from (validation split or
    out-of-fold), so the sidecar's score uses exactly this submission's clip bounds. A caller
    with no run behind it (a blend of kernel outputs) passes the `clip` it chose and `extra`
    sidecar keys.
    """
    low, high = clip or clip_bounds(config)
    frame = score.validate_submission(pd.DataFrame({"id": ids, "label": score.clip(probs, low, high)}), sample_ids,
                                      source=f"predictions of run {config.run}")
    path = Path(path or Path(config.submissions_dir) / f"{config.run}.csv")
    metrics = saved_metrics(config)
    local_loss = score.log_loss(local["labels"], score.clip(local["probs"], low, high))
    fixed_loss = score.log_loss(local["labels"], score.clip(local["probs"], config.clip_low, config.clip_high))
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
            "clip_mode": config.clip_mode if clip or metrics.get("clip_chosen") else "fixed",
            "local_score_kind": local["kind"],
            "local_log_loss": local_loss,
            "local_log_loss_fixed_clip": {"clip": [config.clip_low, config.clip_high], "log_loss": fixed_loss},
            "local_log_loss_raw": score.log_loss(local["labels"], local["probs"]),
            "local_accuracy": score.accuracy(local["labels"], local["probs"]),
            "n_rows": len(frame),
            "config": config.to_dict(),
            **(extra or {}),
        })
    log(f"predict: wrote {path} ({len(frame)} rows, clipped to [{low:g}, {high:g}]); "
        f"local {local['kind']} log loss {local_loss:.4f}")
    return path
