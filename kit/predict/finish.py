"""The end of every training run, whatever its method: the models' held-out predictions blended, the
clip chosen on them, the predictions written and metrics.json last, in one schema.

Held-out means out of fold (features, finetune, frozen: every training image predicted by a model
that never saw it) or the cnn's validation split; `scored_on` ("oof" or "validation") says which,
so a reader never needs to know the method. Two classes: predictions are P(class 1), one column
per model; more: per-class probabilities, a column `<model>:<k>` per model and class (rundir's
names). Log loss and accuracy are those of the probabilities whatever the metric. metrics.json holds:

- method, scored_on; models: per model its held-out log_loss and accuracy, params and seconds;
  blend_weights;
- log_loss_raw, log_loss_fixed_clip (at clip_fixed, the configured bounds), log_loss_chosen_clip
  (at clip_chosen, the symmetric bounds chosen on the held-out predictions) and accuracy, all of
  the blend on the held-out images;
- n_train (images the models learned from), n_held_out, n_test, n_test_unreadable;
- metric (the task's), oof_score (the blend on it, as the submission is made: at the clip it
  follows, with the fitted grade thresholds), models' score on it, grade_thresholds (kappa);
- the method's own keys (folds, folds_completed, replicas, ...), stages (time and peak memory each),
  the run's digest, identity and exclusions (kit/run/resume.py), git_commit and finished.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from kit import fileio, provenance, score
from kit.fetch import read_task
from kit.predict import blend
from kit.run import resume
from kit.run.rundir import BLEND, HELD_OUT, METRICS, TEST_PREDICTIONS, prediction_columns, run_dir
from kit.task import metrics as metric_registry

UNREADABLE_TEST_PROB = 0.5   # the least costly guess when a test picture cannot be read (1/classes for more)


def guess_unreadable(probs, ok: np.ndarray) -> np.ndarray:
    """The predictions, with the least costly guess where the picture could not be read (`ok` False)."""
    probs = np.asarray(probs, dtype=np.float64)
    if probs.ndim == 1:
        return np.where(ok, probs, UNREADABLE_TEST_PROB)
    return np.where(ok[:, None], probs, 1.0 / probs.shape[1])


def finish_run(config, held_out: pd.DataFrame, test: pd.DataFrame, test_ok: np.ndarray, results: list, stages,
               log=print, scored_on: str = "oof", n_train: int | None = None, extra: dict | None = None) -> dict:
    """Blend the models' held-out predictions, choose the clip, write the predictions and metrics.json.

    `held_out` holds the id and label of the rows each result's `oof` predicts, `test` the id of the rows
    its `test` predicts (where `test_ok`). `n_train` defaults to the held-out count (every image trained
    some fold); `extra` adds the method's own keys.
    """
    out = run_dir(config)
    task = read_task(config.data_dir)
    metric = metric_registry.get(task.metric)
    y = held_out["label"].to_numpy()
    fitted = blend.fit(np.stack([r.oof for r in results], axis=1), y, np.stack([r.test for r in results], axis=1),
                       metric.name)
    stages.done("blend")
    write_predictions(out, scored_on, held_out, test, test_ok, results, fitted)

    fixed = blend.fixed_clip(config)
    applied = blend.clip_bounds(config, fitted.chosen)
    oof_score = score_on(metric, y, fitted.held_out, applied, fitted.thresholds)
    metrics = {
        "method": config.method,
        "scored_on": scored_on,
        "models": {r.name: {"log_loss": r.oof_log_loss, "accuracy": accuracy(y, r.oof),
                            "score": score_on(metric, y, r.oof),
                            "params": r.detail, "seconds": round(r.seconds, 1)} for r in results},
        "blend_weights": {r.name: float(w) for r, w in zip(results, fitted.weights)},
        "metric": metric.name,
        "oof_score": oof_score,
        "log_loss_raw": metric_registry.log_loss(y, fitted.held_out),
        "log_loss_fixed_clip": metric_registry.log_loss(y, blend.clip(fitted.held_out, *fixed)),
        "log_loss_chosen_clip": fitted.chosen_loss,
        "accuracy": accuracy(y, fitted.held_out),
        "clip_fixed": list(fixed),
        "clip_chosen": None if fitted.chosen is None else list(fitted.chosen),
        **({} if fitted.thresholds is None else {"grade_thresholds": list(fitted.thresholds)}),
        "n_train": int(len(y) if n_train is None else n_train), "n_held_out": int(len(y)),
        "n_test": int(len(test)), "n_test_unreadable": int((~test_ok).sum()),
        **(extra or {}),
        "stages": stages.rows,
        **resume.record(config),
        "git_commit": provenance.git_commit(), "finished": provenance.now(),
    }
    fileio.write_json(out / METRICS, metrics)
    where = {"oof": "OOF", "validation": "validation"}[scored_on]
    if fitted.chosen is not None:
        low, high = fitted.chosen
        log(f"train: {where} log loss {metrics['log_loss_raw']:.4f} raw, {metrics['log_loss_fixed_clip']:.4f} at "
            f"[{fixed[0]}, {fixed[1]}], {fitted.chosen_loss:.4f} at the chosen clip [{low}, {high:.4f}]; "
            f"accuracy {metrics['accuracy']:.4f}")
    if metric.name != "log_loss":
        log(f"train: {where} {metric.name} {oof_score:.4f} ({metric.description}; {metric.direction})")
    log("train: blend weights " + ", ".join(f"{k} {v:.2f}" for k, v in metrics["blend_weights"].items()))
    log(f"train: run saved in {out}")
    return metrics


def score_on(metric, y: np.ndarray, probs: np.ndarray, clip=None, thresholds=None) -> float:
    """The metric of held-out predictions; a log loss exactly as log_loss_raw and the clip's are computed."""
    if metric.clips:
        return metric_registry.log_loss(y, probs if clip is None else blend.clip(probs, *clip))
    return metric.evaluate(y, probs, thresholds=thresholds)


def accuracy(y: np.ndarray, probs: np.ndarray) -> float:
    """The fraction of images whose most probable class is theirs (P(class 1) >= 0.5 for two)."""
    probs = np.asarray(probs)
    return score.accuracy(y, probs) if probs.ndim == 1 else float(np.mean(np.argmax(probs, axis=1) == y))


def write_predictions(out, scored_on: str, held_out: pd.DataFrame, test: pd.DataFrame, test_ok: np.ndarray,
                      results: list, fitted: blend.Blend) -> None:
    """The held-out and test predictions, a column per model and the blend (per class for more than two),
    before clipping. An unreadable test picture gets the least costly guess: 0.5, or 1/classes each."""
    def columns(name, probs, ok=None):
        probs = np.asarray(probs, dtype=np.float64) if ok is None else guess_unreadable(probs, ok)
        if probs.ndim == 1:
            return {name: probs}
        return dict(zip(prediction_columns(name, probs.shape[1]), probs.T))

    held_out_frame = held_out[["id", "label"]].assign(
        **{k: v for r in results for k, v in columns(r.name, r.oof).items()}, **columns(BLEND, fitted.held_out))
    test_frame = test[["id"]].assign(**{k: v for r in results for k, v in columns(r.name, r.test, test_ok).items()},
                                     **columns(BLEND, fitted.test, test_ok))
    with fileio.atomic_path(out / HELD_OUT[scored_on]) as tmp:
        held_out_frame.to_csv(tmp, index=False)
    with fileio.atomic_path(out / TEST_PREDICTIONS) as tmp:
        test_frame.to_csv(tmp, index=False)
