"""The cnn method: seed 003's network trained from scratch, with a validation split instead of folds.

Writes model.keras (the best epoch, kept atomically), history.csv and curves.png into the run
folder; then, as every method does (kit/predict/finish.py), its predictions of the validation
split (val_predictions.csv: the held-out predictions its clip is chosen on) and of the test set,
and metrics.json last.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pandas as pd

from kit import faults, fileio, plots
from kit.config import Config
from kit.data import dataset, images
from kit.fetch import read_index, read_task
from kit.models import heads, inference, outputs, scratch
from kit.predict.finish import UNREADABLE_TEST_PROB, finish_run, guess_unreadable
from kit.run.rundir import CURVES, HISTORY, MODEL, SKIPPED, start_run, write_skips
from kit.run.stages import Stages
from kit.task import metrics
from kit.tfquiet import keras_verbosity


def train(config: Config, log=print) -> dict:
    """The cnn method: the from-scratch network on a validation split; keeps model.keras."""
    import keras

    stages = Stages(log)
    index = dataset.training_index(config, log)
    test = read_index(config.data_dir, "test")
    out = start_run(config)
    n_classes = read_task(config.data_dir).n_classes
    stages.done("index")

    train_df, val_df = dataset.split_train_val(index, config.val_fraction, config.seed)
    log(f"train: {len(train_df)} training and {len(val_df)} validation images at {config.image_size}px")
    x_train, ok_train, skipped = _load(train_df, config, "train")
    x_val, ok_val, skipped_val = _load(val_df, config, "val")
    skipped += skipped_val
    log(images.summarize_skips(skipped, "training"))
    write_skips(out / SKIPPED, skipped)
    y_train = train_df["label"].to_numpy()[ok_train]
    val_df = val_df[ok_val].reset_index(drop=True)
    stages.done("decode")

    started = time.time()
    model = scratch.build(config, n_classes)
    model.fit(x_train, y_train, validation_data=(x_val, val_df["label"].to_numpy()),
              epochs=config.epochs, batch_size=config.batch_size, verbose=keras_verbosity(),
              callbacks=[keras.callbacks.CSVLogger(str(out / HISTORY)), keep_best_callback(out / MODEL),
                         plots.redraw_curves_callback(out / HISTORY, out / CURVES, config.run)])
    del x_train
    best = keras.models.load_model(out / MODEL)
    val_probs = outputs.probabilities(inference.predict(best, x_val, config.batch_size), n_classes)
    test_probs, test_ok = _predict_test(best, test, config, n_classes, out, skipped, log)
    result = heads.HeadResult(config.model, val_probs, test_probs, metrics.log_loss(val_df["label"], val_probs),
                              {"image_size": config.image_size, "epochs": config.epochs}, time.time() - started)
    stages.done("model")
    return finish_run(config, val_df, test, test_ok, [result], stages, log, scored_on="validation",
                      n_train=len(y_train))


def _load(frame: pd.DataFrame, config: Config, what: str):
    return dataset.load_arrays(frame["path"], config.image_size, config.min_side, config.workers,
                               desc=f"decode {what}")


def _predict_test(model, test: pd.DataFrame, config: Config, n_classes: int, out: Path, skipped: list, log):
    """The network on every readable test image (the rest get finish's guess); their skips join skipped.csv."""
    x, ok, skips = _load(test, config, "test")
    probs = outputs.empty(len(test), n_classes)
    if ok.any():
        probs[ok] = outputs.probabilities(inference.predict(model, x, config.batch_size), n_classes)
    probs = guess_unreadable(probs, ok)
    if skips:
        guess = f"{UNREADABLE_TEST_PROB}" if n_classes == 2 else f"1/{n_classes} for each class"
        log(images.summarize_skips(skips, "test") + f"; predicted {guess} for them")
        write_skips(out / SKIPPED, skipped + skips)
    return probs, ok


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
