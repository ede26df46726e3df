"""A run's folder: where one training run keeps everything, under names only this module spells.

runs/<run>/ holds config.json (the resolved config, written first), the method's own files,
oof.csv and test_predictions.csv (methods with out-of-fold predictions) or val_predictions.csv
(cnn), skipped.csv and, written last, metrics.json: a run without metrics.json is unfinished.
"""

from __future__ import annotations

import os
import resource
import time
from pathlib import Path

import numpy as np
import pandas as pd

from kit import fileio, provenance
from kit.config import Config
from kit.data import images
from kit.predict import blend, score
from kit.run import resume, seeding

CONFIG = "config.json"
METRICS = "metrics.json"
OOF = "oof.csv"
TEST_PREDICTIONS = "test_predictions.csv"
VAL_PREDICTIONS = "val_predictions.csv"
SKIPPED = "skipped.csv"
SKIPPED_TEST = "skipped_test.csv"
# The small files a run leaves beside its model: what a Kaggle kernel publishes as its output.
RUN_OUTPUTS = (OOF, TEST_PREDICTIONS, METRICS, CONFIG, SKIPPED, SKIPPED_TEST)


def run_dir(config: Config) -> Path:
    return Path(config.runs_dir) / config.run


def start_run(config: Config) -> Path:
    """The run directory, marked unfinished (no metrics.json) and holding the resolved config.

    Every method starts here, so every method is seeded (and deterministic when configured).
    """
    seeding.start(config)
    out = run_dir(config)
    out.mkdir(parents=True, exist_ok=True)
    (out / METRICS).unlink(missing_ok=True)
    fileio.write_json(out / CONFIG, config.to_dict())
    return out


def saved_metrics(config: Config) -> dict:
    return fileio.read_json(run_dir(config) / METRICS)


def is_finished(config: Config) -> bool:
    return os.path.isfile(run_dir(config) / METRICS)


def finished_runs(runs_dir: str | Path = "runs") -> list[Path]:
    """Run folders holding metrics.json, the most recently finished last."""
    return [p.parent for p in sorted(Path(runs_dir).glob(f"*/{METRICS}"), key=lambda p: p.stat().st_mtime)]


def write_skips(path: Path, skips: list[images.Skip]) -> None:
    with fileio.atomic_path(path) as tmp:
        pd.DataFrame([(s.path, s.reason, s.detail) for s in skips],
                     columns=["path", "reason", "detail"]).to_csv(tmp, index=False)


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class Stages:
    """Wall time and peak memory after each named stage, for the results table."""

    def __init__(self, log):
        self.log, self.rows, self._start = log, [], time.time()

    def done(self, name: str) -> None:
        now = time.time()
        self.rows.append({"stage": name, "seconds": round(now - self._start, 1), "peak_rss_mb": round(peak_rss_mb())})
        self.log(f"stage {name}: {now - self._start:.1f} s, peak memory {peak_rss_mb():.0f} MB")
        self._start = now


def finish_run(config: Config, kept: pd.DataFrame, test: pd.DataFrame, test_ok: np.ndarray,
               results: list, stages: Stages, log=print, extra: dict | None = None) -> dict:
    """Blend the models' OOF predictions, choose the clip, write oof/test predictions and metrics.

    Shared by every method that yields out-of-fold predictions (heads on features, fine-tuning);
    `extra` adds the method's own keys to metrics.json (fine-tuning: folds finished, devices).
    """
    out = run_dir(config)
    y = kept["label"].to_numpy()
    oof = np.stack([r.oof for r in results], axis=1)
    weights = blend.blend_weights(oof, y)
    oof_blend = oof @ weights
    test_blend = np.stack([r.test for r in results], axis=1) @ weights
    chosen, chosen_loss = blend.choose_clip(oof_blend, y)
    fixed = (config.clip_low, config.clip_high)
    stages.done("blend")

    oof_frame = kept[["id", "label"]].assign(**{r.name: r.oof for r in results}, blend=oof_blend)
    # A test image whose file could not be read keeps the uninformative 0.5.
    test_frame = test[["id"]].assign(**{r.name: np.where(test_ok, r.test, 0.5) for r in results},
                                     blend=np.where(test_ok, test_blend, 0.5))
    with fileio.atomic_path(out / OOF) as tmp:
        oof_frame.to_csv(tmp, index=False)
    with fileio.atomic_path(out / TEST_PREDICTIONS) as tmp:
        test_frame.to_csv(tmp, index=False)

    metrics = {
        "method": config.method,
        "models": {r.name: {"oof_log_loss": r.oof_log_loss, "oof_accuracy": score.accuracy(y, r.oof),
                            "params": r.detail, "seconds": round(r.seconds, 1)} for r in results},
        "blend_weights": {r.name: float(w) for r, w in zip(results, weights)},
        "oof_log_loss_raw": score.log_loss(y, oof_blend),
        "oof_log_loss_fixed_clip": score.log_loss(y, score.clip(oof_blend, *fixed)),
        "oof_accuracy": score.accuracy(y, oof_blend),
        "clip_fixed": list(fixed),
        "clip_chosen": [chosen, 1 - chosen],
        "oof_log_loss_chosen_clip": chosen_loss,
        "n_train": int(len(y)), "n_test": int(len(test)), "n_test_unreadable": int((~test_ok).sum()),
        "folds": config.folds, "folds_completed": config.folds, **(extra or {}),
        "stages": stages.rows,
        **resume.record(config),
        "git_commit": provenance.git_commit(), "finished": provenance.now(),
    }
    fileio.write_json(out / METRICS, metrics)
    log(f"train: OOF log loss {metrics['oof_log_loss_raw']:.4f} raw, "
        f"{metrics['oof_log_loss_fixed_clip']:.4f} at [{fixed[0]}, {fixed[1]}], "
        f"{chosen_loss:.4f} at the chosen clip [{chosen}, {1 - chosen:.4f}]; accuracy {metrics['oof_accuracy']:.4f}")
    log("train: blend weights " + ", ".join(f"{k} {v:.2f}" for k, v in metrics["blend_weights"].items()))
    log(f"train: run saved in {out}")
    return metrics
