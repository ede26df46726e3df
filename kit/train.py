"""Train a model on the fetched competition and record how well it does on held-out images.

A run directory holds everything about one training run: the resolved config, the best
model, the per-epoch history, validation predictions, skipped files and, written last,
metrics.json. A run without metrics.json is unfinished.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from kit import dataset, faults, fileio, images, models, plots, provenance, resume, score, seeding
from kit.config import Config

METRICS = "metrics.json"


def run_dir(config: Config) -> Path:
    return Path(config.runs_dir) / config.run


def train(config: Config, log=print) -> dict:
    if config.method == "features":
        from kit.ensemble import train_features

        return train_features(config, log)
    if config.method in ("finetune", "frozen"):
        from kit.finetune import train_end_to_end

        return train_end_to_end(config, log)
    return train_cnn(config, log)


def start_run(config: Config) -> Path:
    """The run directory, marked unfinished (no metrics.json) and holding the resolved config.

    Every method starts here, so every method is seeded (and deterministic when configured).
    """
    seeding.start(config)
    out = run_dir(config)
    out.mkdir(parents=True, exist_ok=True)
    (out / METRICS).unlink(missing_ok=True)
    fileio.write_json(out / "config.json", config.to_dict())
    return out


def train_cnn(config: Config, log=print) -> dict:
    import keras

    index = dataset.training_index(config, log)
    out = start_run(config)

    train_df, val_df = dataset.split_train_val(index, config.val_fraction, config.seed)
    log(f"train: {len(train_df)} training and {len(val_df)} validation images at {config.image_size}px")
    x_train, ok_train, skipped = _load(train_df, config, "train")
    x_val, ok_val, skipped_val = _load(val_df, config, "val")
    skipped += skipped_val
    log(images.summarize_skips(skipped, "training"))
    write_skips(out / "skipped.csv", skipped)
    y_train = train_df["label"].to_numpy()[ok_train]
    val_df = val_df[ok_val].reset_index(drop=True)

    model = models.build(config)
    model.fit(x_train, y_train, validation_data=(x_val, val_df["label"].to_numpy()),
              epochs=config.epochs, batch_size=config.batch_size, verbose=keras_verbosity(),
              callbacks=[keras.callbacks.CSVLogger(str(out / "history.csv")),
                         KeepBest(out / "model.keras"), plots.WatchCurves(out / "history.csv", out / "curves.png", config.run)])

    best = keras.models.load_model(out / "model.keras")
    probs = best.predict(x_val, batch_size=config.batch_size, verbose=0).ravel()
    metrics = {
        "val_log_loss_raw": score.log_loss(val_df["label"], probs),
        "val_log_loss": score.log_loss(val_df["label"], score.clip(probs, config.clip_low, config.clip_high)),
        "val_accuracy": score.accuracy(val_df["label"], probs),
        "clip": [config.clip_low, config.clip_high],
        "n_train": int(len(y_train)), "n_val": int(len(val_df)), "n_skipped": len(skipped),
        **resume.record(config, index, None, extractors=[]),
        "git_commit": provenance.git_commit(), "finished": provenance.now(),
    }
    with fileio.atomic_path(out / "val_predictions.csv") as tmp:
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


def write_skips(path: Path, skips: list[images.Skip]) -> None:
    with fileio.atomic_path(path) as tmp:
        pd.DataFrame([(s.path, s.reason, s.detail) for s in skips],
                     columns=["path", "reason", "detail"]).to_csv(tmp, index=False)


def KeepBest(path: Path):
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


def keras_verbosity() -> int:
    """A live progress bar on a terminal; one line an epoch in logs and CI."""
    return 1 if sys.stdout.isatty() else 2


def saved_metrics(config: Config) -> dict:
    return fileio.read_json(run_dir(config) / METRICS)


def is_finished(config: Config) -> bool:
    return os.path.isfile(run_dir(config) / METRICS)
