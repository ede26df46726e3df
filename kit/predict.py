"""Predict the test set with a finished run and write a checked, clipped submission.

The submission is validated against sample_submission.csv before it is written, then
written atomically with a JSON sidecar recording how it was made.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from kit import dataset, fileio, images, provenance, score
from kit.config import Config
from kit.errors import KitError
from kit.fetch import SAMPLE, read_index
from kit.train import is_finished, keras_verbosity, run_dir, saved_metrics, write_skips

UNREADABLE_TEST_PROB = 0.5   # the least costly guess when a test picture cannot be read


def predict(config: Config, log=print) -> Path:
    import keras

    if not is_finished(config):
        raise KitError(f"run {config.run!r} has no finished model in {run_dir(config)}: run `python -m kit train` first")
    test = read_index(config.data_dir, "test")
    sample = score.read_csv(Path(config.data_dir) / SAMPLE, "sample submission")

    model = keras.models.load_model(run_dir(config) / "model.keras")
    x, ok, skips = dataset.load_arrays(test["path"], config.image_size, config.min_side,
                                       config.workers, desc="decode test")
    probs = np.full(len(test), UNREADABLE_TEST_PROB)
    if ok.any():
        probs[ok] = model.predict(x, batch_size=config.batch_size, verbose=keras_verbosity()).ravel()
    if skips:
        log(images.summarize_skips(skips, "test") + f"; predicted {UNREADABLE_TEST_PROB} for them")
        write_skips(run_dir(config) / "skipped_test.csv", skips)

    return write_submission(test["id"], probs, sample["id"], config, log)


def write_submission(ids, probs, sample_ids, config: Config, log=print) -> Path:
    """Clip, validate, then write submissions/<run>.csv and its .json sidecar atomically."""
    clipped = score.clip(probs, config.clip_low, config.clip_high)
    frame = score.validate_submission(pd.DataFrame({"id": ids, "label": clipped}), sample_ids,
                                      source=f"predictions of run {config.run}")
    path = Path(config.submissions_dir) / f"{config.run}.csv"
    metrics = saved_metrics(config)
    # Sidecar first, CSV last: a submission file on disk always has its sidecar beside it.
    with fileio.atomic_path(path) as tmp:
        frame.to_csv(tmp, index=False, float_format="%.6f")
        fileio.write_json(path.with_suffix(".json"), {
            "file": path.name,
            "sha256": fileio.sha256(tmp),
            "created": provenance.now(),
            "git_commit": provenance.git_commit(),
            "clip": [config.clip_low, config.clip_high],
            "val_log_loss": validation_log_loss(config),
            "val_log_loss_raw": metrics.get("val_log_loss_raw"),
            "val_accuracy": metrics.get("val_accuracy"),
            "n_rows": len(frame),
            "config": config.to_dict(),
        })
    log(f"predict: wrote {path} ({len(frame)} rows, clipped to [{config.clip_low}, {config.clip_high}])")
    return path


def validation_log_loss(config: Config) -> float | None:
    """Validation log loss at this submission's clip bounds, which may differ from training's."""
    path = run_dir(config) / "val_predictions.csv"
    if not path.is_file():
        return None
    val = pd.read_csv(path)
    return score.log_loss(val["label"], score.clip(val["prob"], config.clip_low, config.clip_high))
