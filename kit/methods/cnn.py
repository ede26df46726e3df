"""The cnn method: seed 003's network trained from scratch, with a validation split instead of folds.

Writes model.keras (the best epoch, kept atomically), history.csv, curves.png and
val_predictions.csv into the run folder, then metrics.json last.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from kit import faults, fileio, plots, provenance
from kit.config import Config
from kit.data import dataset, images
from kit.models import scratch
from kit.predict import score
from kit.run import resume
from kit.run.rundir import METRICS, SKIPPED, VAL_PREDICTIONS, start_run, write_skips
from kit.tfquiet import keras_verbosity


def train(config: Config, log=print) -> dict:
    """The cnn method: the from-scratch network on a validation split; keeps model.keras."""
    import keras

    index = dataset.training_index(config, log)
    out = start_run(config)

    train_df, val_df = dataset.split_train_val(index, config.val_fraction, config.seed)
    log(f"train: {len(train_df)} training and {len(val_df)} validation images at {config.image_size}px")
    x_train, ok_train, skipped = _load(train_df, config, "train")
    x_val, ok_val, skipped_val = _load(val_df, config, "val")
    skipped += skipped_val
    log(images.summarize_skips(skipped, "training"))
    write_skips(out / SKIPPED, skipped)
    y_train = train_df["label"].to_numpy()[ok_train]
    val_df = val_df[ok_val].reset_index(drop=True)

    model = scratch.build(config)
    model.fit(x_train, y_train, validation_data=(x_val, val_df["label"].to_numpy()),
              epochs=config.epochs, batch_size=config.batch_size, verbose=keras_verbosity(),
              callbacks=[keras.callbacks.CSVLogger(str(out / "history.csv")),
                         keep_best_callback(out / "model.keras"), plots.redraw_curves_callback(out / "history.csv", out / "curves.png", config.run)])

    best = keras.models.load_model(out / "model.keras")
    probs = best.predict(x_val, batch_size=config.batch_size, verbose=0).ravel()
    metrics = {
        "val_log_loss_raw": score.log_loss(val_df["label"], probs),
        "val_log_loss": score.log_loss(val_df["label"], score.clip(probs, config.clip_low, config.clip_high)),
        "val_accuracy": score.accuracy(val_df["label"], probs),
        "clip": [config.clip_low, config.clip_high],
        "n_train": int(len(y_train)), "n_val": int(len(val_df)), "n_skipped": len(skipped),
        **resume.record(config),
        "git_commit": provenance.git_commit(), "finished": provenance.now(),
    }
    with fileio.atomic_path(out / VAL_PREDICTIONS) as tmp:
        val_df.assign(prob=probs)[["id", "label", "prob"]].to_csv(tmp, index=False)
    fileio.write_json(out / METRICS, metrics)
    log(f"train: validation log loss {metrics['val_log_loss_raw']:.4f} raw, "
        f"{metrics['val_log_loss']:.4f} clipped to [{config.clip_low}, {config.clip_high}]; "
        f"accuracy {metrics['val_accuracy']:.3f}")
    log(f"train: run saved in {out}")
    return metrics


def _load(frame: pd.DataFrame, config: Config, what: str):
    return dataset.load_arrays(frame["path"], config.image_size, config.min_side, config.workers,
                               desc=f"decode {what}")


def keep_best_callback(path: Path):
    """A callback that saves the model whenever val_loss improves, atomically.

    Keras' ModelCheckpoint writes in place, so a run killed mid-save would leave a
    truncated model that looks finished.
    """
    import keras

    class _KeepBest(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.best = np.inf

        def on_epoch_end(self, epoch, logs=None):
            current = (logs or {}).get("val_loss", np.inf)
            if current < self.best:
                self.best = current
                with fileio.atomic_path(path) as tmp:
                    self.model.save(tmp)
            faults.point("train-epoch")

    return _KeepBest()
