"""Blend weights and the clip: the one clip rule, and the one fit of both on held-out predictions.

For saturated predictions with error rate e the log loss is minimised by clipping at
about e, so the bound is a property of the model's errors, not a habit: `fit` picks it on
held-out predictions (out of fold, or the cnn's validation split) and every report sets it
beside the configured bounds (config.clip_low and clip_high).
`clip_bounds` is the rule every submission follows.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from kit import score

# Down to 1e-5: with real ImageNet features an OOF error rate of 0.1-0.5% is common, and the best bound
# follows the error rate down (0.0062 raw against 0.0065 at 0.0005 on the cleaned real photos).
CLIP_GRID = tuple(np.round(np.concatenate([[0.00001, 0.0001, 0.0002, 0.0003, 0.0004],
                                           np.arange(0.0005, 0.005, 0.0005),
                                           np.arange(0.005, 0.051, 0.0025)]), 5))


@dataclass(frozen=True)
class Blend:
    """The models' predictions blended, and the clip chosen on the blended held-out predictions."""

    weights: np.ndarray               # one per model, non-negative, summing to one
    held_out: np.ndarray              # [n_held_out], before clipping
    test: np.ndarray                  # [n_test], before clipping
    chosen: tuple[float, float]       # the symmetric bounds with the lowest held-out log loss
    chosen_loss: float


def fit(held_out: np.ndarray, labels: np.ndarray, test: np.ndarray) -> Blend:
    """Blend weights and the clip, both fitted on the held-out predictions [n, models]; applied to test [m, models]."""
    weights = blend_weights(held_out, labels)
    blended = held_out @ weights
    chosen, loss = choose_clip(blended, labels)
    return Blend(weights, blended, test @ weights, chosen, loss)


def blend_weights(oof: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Non-negative weights summing to one that minimise the held-out log loss of the blend.

    oof is [n_images, n_models]. Parametrised by a softmax so the optimiser is unconstrained.
    """
    from scipy.optimize import minimize

    n_models = oof.shape[1]
    if n_models == 1:
        return np.ones(1)

    def loss(theta):
        w = np.exp(theta - theta.max())
        return score.log_loss(labels, oof @ (w / w.sum()))

    result = minimize(loss, np.zeros(n_models), method="Nelder-Mead",
                      options={"xatol": 1e-4, "fatol": 1e-7, "maxiter": 2000})
    w = np.exp(result.x - result.x.max())
    return w / w.sum()


def symmetric(c: float) -> tuple[float, float]:
    """The bounds [c, 1 - c]."""
    return float(c), 1.0 - float(c)


def choose_clip(probs: np.ndarray, labels: np.ndarray, grid=CLIP_GRID) -> tuple[tuple[float, float], float]:
    """The symmetric bounds (predictions in [c, 1 - c]) with the lowest log loss, and that loss."""
    losses = [score.log_loss(labels, score.clip(probs, *symmetric(c))) for c in grid]
    best = int(np.argmin(losses))
    return symmetric(grid[best]), float(losses[best])


def fixed_clip(config) -> tuple[float, float]:
    """The configured bounds: what clip_mode=fixed submits, and what every score is also reported at."""
    return config.clip_low, config.clip_high


def clip_bounds(config, chosen) -> tuple[float, float]:
    """The rule every submission follows: the bounds chosen on held-out predictions (``chosen``, a
    (low, high) pair) when clip_mode is oof, else the configured ones."""
    if config.clip_mode == "oof":
        return float(chosen[0]), float(chosen[1])
    return fixed_clip(config)
