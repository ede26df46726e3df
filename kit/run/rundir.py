"""A run's folder: where one training run keeps everything, under names only this module spells.

runs/<run>/ holds config.json (the resolved config, written first), task.json (the competition's task,
kit.fetch.TASK), the method's own files,
its held-out predictions (oof.csv, out of fold, or val_predictions.csv, the cnn's validation
split: metrics.json's `scored_on` says which), test_predictions.csv, skipped.csv and, written
last, metrics.json: a run without metrics.json is unfinished. kit/predict/finish.py writes the
predictions and metrics.json, the same way for every method.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np
import pandas as pd

from kit import fetch, fileio
from kit.config import Config
from kit.data import images
from kit.errors import KitError
from kit.run import seeding

CONFIG = "config.json"
METRICS = "metrics.json"
OOF = "oof.csv"
VAL_PREDICTIONS = "val_predictions.csv"
TEST_PREDICTIONS = "test_predictions.csv"
SKIPPED = "skipped.csv"
# The held-out predictions' file, by metrics.json's `scored_on`.
HELD_OUT = {"oof": OOF, "validation": VAL_PREDICTIONS}
# The small files a run leaves beside its models: what a Kaggle kernel publishes as its output.
RUN_OUTPUTS = (OOF, VAL_PREDICTIONS, TEST_PREDICTIONS, METRICS, CONFIG, fetch.TASK, SKIPPED)
BLEND = "blend"              # prediction files: the blended models' column, beside id, label and one per model
CLASS_SEPARATOR = ":"        # more than two classes: a column `<model>:<k>` per model and class index k

MODEL = "model.keras"        # cnn: the best epoch's network
HISTORY = "history.csv"      # cnn: one row per epoch
CURVES = "curves.png"        # loss and accuracy per epoch, redrawn while training
PHASES = ("warmup", "finetune")   # end to end: a fold's training phases, in order; each logs its own history
FOLD = "fold"                     # end to end: runs/<run>/<model>/fold<n>/ holds one fold's work


def run_dir(config: Config) -> Path:
    return Path(config.runs_dir) / config.run


def start_run(config: Config) -> Path:
    """The run directory, marked unfinished (no metrics.json) and holding the resolved config and task.

    Every method starts here, so every method is seeded (and deterministic when configured).
    """
    seeding.start(config)
    out = run_dir(config)
    out.mkdir(parents=True, exist_ok=True)
    (out / METRICS).unlink(missing_ok=True)
    fileio.write_json(out / CONFIG, config.to_dict())
    fileio.write_json(out / fetch.TASK, fetch.read_task(config.data_dir).to_dict())
    return out


def read_metrics(folder: Path) -> dict:
    """A finished run's metrics.json. One that cannot be read, or was written before every method shared its
    schema (kit/predict/finish.py), is refused in one line."""
    path = Path(folder) / METRICS
    metrics = fileio.read_json(path)
    if "scored_on" not in metrics:
        raise KitError(f"{path} is missing, unreadable or written by an older kit (no scored_on): train the run again")
    return metrics


def saved_metrics(config: Config) -> dict:
    return read_metrics(run_dir(config))


def is_finished(config: Config) -> bool:
    return os.path.isfile(run_dir(config) / METRICS)


def finished_runs(runs_dir: str | Path = "runs") -> list[Path]:
    """Run folders holding metrics.json, the most recently finished last."""
    return [p.parent for p in sorted(Path(runs_dir).glob(f"*/{METRICS}"), key=lambda p: p.stat().st_mtime)]


def model_columns(frame: pd.DataFrame) -> list[str]:
    """The models of a prediction file: its per-model columns (two classes), or their `<model>` prefixes
    (per-class columns `<model>:<k>`, more than two)."""
    names = [c.rsplit(CLASS_SEPARATOR, 1)[0] if CLASS_SEPARATOR in c else c for c in frame.columns]
    return [n for n in dict.fromkeys(names) if n not in ("id", "label", BLEND)]


def prediction_columns(name: str, n_classes: int) -> list[str]:
    """A model's (or the blend's) per-class columns in a prediction file of more than two classes."""
    return [f"{name}{CLASS_SEPARATOR}{k}" for k in range(n_classes)]


def read_probabilities(frame: pd.DataFrame, name: str) -> np.ndarray:
    """A model's (or the blend's) predictions from a prediction file: [n] P(class 1), or [n, classes]."""
    if name in frame.columns:
        return frame[name].to_numpy(np.float64)
    k = sum(1 for c in frame.columns if c.startswith(f"{name}{CLASS_SEPARATOR}"))
    if not k:
        raise KitError(f"the predictions have no column {name!r} (nor {name}{CLASS_SEPARATOR}0 ...)")
    return frame[prediction_columns(name, k)].to_numpy(np.float64)


def fold_dir(config: Config, model: str, fold: int) -> Path:
    return run_dir(config) / model / f"{FOLD}{fold}"


def fold_dirs(model_dir: Path) -> list[Path]:
    """A model's fold folders, in fold order."""
    found = [(int(m.group(1)), p) for p in Path(model_dir).iterdir()
             if p.is_dir() and (m := re.fullmatch(FOLD + r"(\d+)", p.name))]
    return [p for _, p in sorted(found)]


def phase_history(phase: str) -> str:
    return f"history-{phase}.csv"


def write_skips(path: Path, skips: list[images.Skip]) -> None:
    with fileio.atomic_path(path) as tmp:
        pd.DataFrame([(s.path, s.reason, s.detail) for s in skips],
                     columns=["path", "reason", "detail"]).to_csv(tmp, index=False)
