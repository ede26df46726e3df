"""Transfer learning on cached features: extract -> heads by K-fold -> blend -> clip.

The run directory gets oof.csv (every training image's out-of-fold prediction per model
and blended), test_predictions.csv, and metrics.json (written last) with each stage's time
and peak memory, each model's OOF log loss, the blend weights and the chosen clip.
"""

from __future__ import annotations

import resource
import time

import numpy as np
import pandas as pd

from kit import blend, dataset, features, fileio, heads, images, provenance, resume, score
from kit.config import Config
from kit.fetch import read_index
from kit.train import METRICS, run_dir, start_run, write_skips


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


def train_features(config: Config, log=print) -> dict:
    stages = Stages(log)
    out = start_run(config)

    train = dataset.training_index(config, log)
    test = read_index(config.data_dir, "test")
    stages.done("index")

    blocks_train, blocks_test, skips = [], [], []
    for extractor in config.extractors():
        for frame, blocks in ((train, blocks_train), (test, blocks_test)):
            feats = features.extract(frame["path"], extractor, config.cache_dir, config.batch_size,
                                     config.workers, config.min_side, log)
            blocks.append(feats)
            skips.extend(feats.skips)
        stages.done(f"features {extractor.label}")
    train_ok = np.logical_and.reduce([b.ok for b in blocks_train])
    test_ok = np.logical_and.reduce([b.ok for b in blocks_test])
    skips = list({s.path: s for s in skips}.values())   # one row per file, not per extractor
    log(images.summarize_skips(skips, "train and test"))
    write_skips(out / "skipped.csv", skips)

    x = features.image_vectors([b.features for b in blocks_train])[train_ok]
    x_test = features.image_vectors([b.features for b in blocks_test])
    y = train["label"].to_numpy()[train_ok]
    log(f"heads: {len(y)} training images, {x.shape[1]} features (views averaged), {config.folds} folds")

    results = []
    for name in config.head_names():
        if name == "dense":
            results.append(heads.dense(x, y, x_test, config.folds, config.seed, config.head_epochs, log=log))
        else:
            results.append(heads.HEADS[name](x, y, x_test, config.folds, config.seed, log=log))
        stages.done(f"head {name}")

    return finish_run(config, train[train_ok].reset_index(drop=True), test, test_ok, results, stages, log)


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
    with fileio.atomic_path(out / "oof.csv") as tmp:
        oof_frame.to_csv(tmp, index=False)
    with fileio.atomic_path(out / "test_predictions.csv") as tmp:
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
        **resume.record(config, kept, test),
        "git_commit": provenance.git_commit(), "finished": provenance.now(),
    }
    fileio.write_json(out / METRICS, metrics)
    log(f"train: OOF log loss {metrics['oof_log_loss_raw']:.4f} raw, "
        f"{metrics['oof_log_loss_fixed_clip']:.4f} at [{fixed[0]}, {fixed[1]}], "
        f"{chosen_loss:.4f} at the chosen clip [{chosen}, {1 - chosen:.4f}]; accuracy {metrics['oof_accuracy']:.4f}")
    log("train: blend weights " + ", ".join(f"{k} {v:.2f}" for k, v in metrics["blend_weights"].items()))
    log(f"train: run saved in {out}")
    return metrics
