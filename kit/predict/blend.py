"""Blend weights and the clip: the one clip rule, and the one fit of both on held-out predictions.

For saturated predictions with error rate e the log loss is minimised by clipping at
about e, so the bound is a property of the model's errors, not a habit: `fit` picks it on
held-out predictions (out of fold, or the cnn's validation split) and every report sets it
beside the configured bounds (config.clip_low and clip_high).
`clip_bounds` is the rule every submission follows.

Only log-loss metrics clip (kit.task.metrics `clips`): elsewhere a bound changes no ranking, class or
grade. Multi-class predictions ([n, models, classes]) are clipped then renormalised row by row. For
quadratic kappa the grade thresholds are fitted on the blended held-out predictions here too.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from kit import score
from kit.task import metrics
from kit.task.metrics import log_loss

# Down to 1e-5: with real ImageNet features an OOF error rate of 0.1-0.5% is common, and the best bound
# follows the error rate down (0.0062 raw against 0.0065 at 0.0005 on the cleaned real photos).
CLIP_GRID = tuple(np.round(np.concatenate([[0.00001, 0.0001, 0.0002, 0.0003, 0.0004],
                                           np.arange(0.0005, 0.005, 0.0005),
                                           np.arange(0.005, 0.051, 0.0025)]), 5))


@dataclass(frozen=True)
class Blend:
    """The models' predictions blended, and the clip chosen on the blended held-out predictions."""

    weights: np.ndarray               # one per model, non-negative, summing to one
    held_out: np.ndarray              # [n_held_out] (P(class 1)) or [n_held_out, classes], before clipping
    test: np.ndarray                  # [n_test] or [n_test, classes], before clipping
    chosen: tuple[float, float] | None   # the symmetric bounds with the lowest held-out log loss; None: no clip
    chosen_loss: float | None            # the held-out log loss at them
    thresholds: tuple | None = None      # grade metrics: cuts of the expected grade fitted on held_out


def fit(held_out: np.ndarray, labels: np.ndarray, test: np.ndarray, metric: str = "log_loss") -> Blend:
    """Blend weights and the clip (where `metric` clips) or the grade thresholds (where it grades), fitted
    on the held-out predictions [n, models] ([n, models, classes]); applied to test [m, models(, classes)]."""
    entry = metrics.get(metric)
    weights = blend_weights(held_out, labels)
    blended, blended_test = combine(held_out, weights), combine(test, weights)
    chosen, loss = choose_clip(blended, labels) if entry.clips else (None, None)
    thresholds = metrics.fit_grade_thresholds(labels, blended, metric) if entry.takes == metrics.GRADE else None
    return Blend(weights, blended, blended_test, chosen, loss, thresholds)


def combine(predictions: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """The weighted blend of [n, models] or [n, models, classes] predictions."""
    return predictions @ weights if predictions.ndim == 2 else np.einsum("nmk,m->nk", predictions, weights)


def clip(probs, low: float, high: float) -> np.ndarray:
    """Binary: P(class 1) into [low, high]; multi-class: each probability, then rows renormalised."""
    probs = np.asarray(probs)
    return score.clip(probs, low, high) if probs.ndim == 1 else metrics.clip_rows(probs, low, high)


def blend_weights(oof: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Non-negative weights summing to one that minimise the held-out log loss of the blend.

    oof is [n_images, n_models] (or [n_images, n_models, classes]). Parametrised by a softmax so the
    optimiser is unconstrained. Log loss whatever the task's metric: AUC, F1, accuracy and kappa are
    step functions of the weights (a ranking, an argmax, a cut), flat almost everywhere, so a
    derivative-free search on them stalls at the start; log loss is smooth, and the better calibrated
    blend it finds is what those metrics are then scored on (finish reports the task's metric).
    """
    from scipy.optimize import minimize

    n_models = oof.shape[1]
    if n_models == 1:
        return np.ones(1)

    def loss(theta):
        w = np.exp(theta - theta.max())
        return log_loss(labels, combine(oof, w / w.sum()))

    result = minimize(loss, np.zeros(n_models), method="Nelder-Mead",
                      options={"xatol": 1e-4, "fatol": 1e-7, "maxiter": 2000})
    w = np.exp(result.x - result.x.max())
    return w / w.sum()


def symmetric(c: float) -> tuple[float, float]:
    """The bounds [c, 1 - c]."""
    return float(c), 1.0 - float(c)


def choose_clip(probs: np.ndarray, labels: np.ndarray, grid=CLIP_GRID) -> tuple[tuple[float, float], float]:
    """The symmetric bounds (predictions in [c, 1 - c]) with the lowest log loss, and that loss."""
    losses = [log_loss(labels, clip(probs, *symmetric(c))) for c in grid]
    best = int(np.argmin(losses))
    return symmetric(grid[best]), float(losses[best])


def fixed_clip(config) -> tuple[float, float]:
    """The configured bounds: what clip_mode=fixed submits, and what every score is also reported at."""
    return config.clip_low, config.clip_high


def clip_bounds(config, chosen) -> tuple[float, float] | None:
    """The rule every submission follows: the bounds chosen on held-out predictions (``chosen``, a
    (low, high) pair) when clip_mode is oof, else the configured ones; None (no clip) where the
    metric does not clip (fit chose none)."""
    if chosen is None:
        return None
    if config.clip_mode == "oof":
        return float(chosen[0]), float(chosen[1])
    return fixed_clip(config)
