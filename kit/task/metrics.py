"""Competition metrics: one registry entry per name holds how it scores, which way is better, what it
takes, and how per-class probabilities become that.

A model predicts per-class probabilities (n images x k classes, in the task's class order). Each metric
takes one of four things, made from those probabilities:
- "probability": P(the second class), for binary metrics (binary log loss, ROC AUC);
- "probabilities": the whole matrix (multi-class log loss);
- "class": the most probable class's index (accuracy, F1);
- "grade": an ordered class's index, cut from the expected grade by thresholds (quadratic weighted
  kappa), thresholds that are fitted on out-of-fold predictions (`fit_grade_thresholds`).
Only log-loss metrics clip: a confident miss costs without bound there and nowhere else; a clipped
multi-class row is renormalised to sum to 1, as Kaggle does before scoring.

numpy here, scikit-learn inside the functions (its import takes seconds); no kit module but errors and
score (both base), so any layer may import this one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from kit.errors import KitError

PROBABILITY, PROBABILITIES, CLASS, GRADE = "probability", "probabilities", "class", "grade"
TAKES = (PROBABILITY, PROBABILITIES, CLASS, GRADE)
KAGGLE_EPS = 1e-15   # Kaggle clips to [eps, 1 - eps] before taking logs


@dataclass(frozen=True)
class Metric:
    name: str
    higher_is_better: bool
    takes: str                                            # one of TAKES
    function: Callable[[np.ndarray, np.ndarray], float]   # (class indices, what it takes) -> score
    clips: bool = False                                   # whether clip bounds apply to its input
    description: str = ""

    @property
    def direction(self) -> str:
        return "higher is better" if self.higher_is_better else "lower is better"

    def better(self, a: float, b: float) -> bool:
        """Whether score `a` beats score `b`."""
        return a > b if self.higher_is_better else a < b

    def values(self, probs, clip: tuple[float, float] | None = None, thresholds=None) -> np.ndarray:
        """What this metric takes, from per-class probabilities (a 1-d array is P(second class)).

        `clip` (low, high) applies only where the metric clips; `thresholds` only to grades (None:
        rounding the expected grade).
        """
        probs = as_matrix(probs)
        clip = clip if self.clips else None
        if self.takes == PROBABILITY:
            if probs.shape[1] != 2:
                raise KitError(f"metric {self.name} needs two classes, got {probs.shape[1]}")
            return probs[:, 1] if clip is None else np.clip(probs[:, 1], *clip)
        if self.takes == PROBABILITIES:
            return probs if clip is None else clip_rows(probs, *clip)
        if self.takes == CLASS:
            return np.argmax(probs, axis=1)
        return grades(probs, thresholds)

    def score(self, labels, values) -> float:
        """The metric of `values` (what it takes) against class indices."""
        return float(self.function(np.asarray(labels, dtype=np.int64), np.asarray(values)))

    def evaluate(self, labels, probs, clip=None, thresholds=None) -> float:
        """The metric of per-class probabilities against class indices."""
        return self.score(labels, self.values(probs, clip, thresholds))


def as_matrix(probs) -> np.ndarray:
    """n x k probabilities as float64; a 1-d array is P(second class) of a binary task."""
    probs = np.asarray(probs, dtype=np.float64)
    if probs.ndim == 1:
        return np.stack([1 - probs, probs], axis=1)
    if probs.ndim != 2 or probs.shape[1] < 2:
        raise ValueError(f"probabilities must be n x k with k >= 2, got shape {probs.shape}")
    return probs


def clip_rows(probs, low: float, high: float) -> np.ndarray:
    """Each probability clipped to [low, high], then each row renormalised to sum to 1."""
    clipped = np.clip(as_matrix(probs), low, high)
    return clipped / clipped.sum(axis=1, keepdims=True)


def grades(probs, thresholds=None) -> np.ndarray:
    """Ordered class indices: the expected grade (sum of index x probability) cut at the thresholds."""
    probs = as_matrix(probs)
    cuts = rounding_thresholds(probs.shape[1]) if thresholds is None else np.asarray(thresholds, np.float64)
    if len(cuts) != probs.shape[1] - 1 or np.any(np.diff(cuts) < 0):
        raise KitError(f"grade thresholds must be {probs.shape[1] - 1} non-decreasing numbers, got {list(cuts)}")
    return np.digitize(expected_grade(probs), cuts)


def expected_grade(probs) -> np.ndarray:
    probs = as_matrix(probs)
    return probs @ np.arange(probs.shape[1], dtype=np.float64)


def rounding_thresholds(k: int) -> np.ndarray:
    """0.5, 1.5, ...: cutting the expected grade there rounds it to the nearest grade."""
    return np.arange(k - 1, dtype=np.float64) + 0.5


def fit_grade_thresholds(labels, probs, metric: str = "quadratic_kappa", passes: int = 2,
                         candidates: int = 21) -> tuple[float, ...]:
    """Thresholds on the expected grade that maximise the metric on these (out-of-fold) predictions.

    Coordinate ascent from the rounding thresholds: each threshold in turn moves to the best of
    `candidates` evenly spaced points between its neighbours, and only when that is strictly better,
    so the fit is deterministic and never worse than rounding on the predictions it is fitted on.
    """
    entry = get(metric)
    labels = np.asarray(labels, dtype=np.int64)
    expected = expected_grade(probs)
    k = as_matrix(probs).shape[1]
    thresholds = rounding_thresholds(k)
    best = entry.score(labels, np.digitize(expected, thresholds))
    for _ in range(passes):
        for i in range(k - 1):
            low = thresholds[i - 1] if i > 0 else 0.0
            high = thresholds[i + 1] if i < k - 2 else k - 1.0
            for value in np.linspace(low, high, candidates):
                trial = thresholds.copy()
                trial[i] = value
                score = entry.score(labels, np.digitize(expected, trial))
                if entry.better(score, best):
                    best, thresholds = score, trial
    return tuple(float(t) for t in thresholds)


def _log_loss(labels, probs) -> float:
    """Kaggle's multi-class log loss: clip to [eps, 1 - eps], renormalise, mean of -log p(true class)."""
    p = clip_rows(probs, KAGGLE_EPS, 1 - KAGGLE_EPS)
    return float(-np.mean(np.log(p[np.arange(len(labels)), labels])))


def log_loss(labels, probs) -> float:
    """The log loss of a model's predictions whatever the metric: of P(class 1) exactly as kit.score
    has always computed it (every binary number the kit reported stays the same), of per-class rows
    as Kaggle's multi-class log loss. Blend weights and the clip are fitted on it."""
    from kit import score

    probs = np.asarray(probs)
    return score.log_loss(labels, probs) if probs.ndim == 1 else _log_loss(np.asarray(labels, np.int64), probs)


def _binary_log_loss(labels, p) -> float:
    return _log_loss(labels, as_matrix(p))


def _roc_auc(labels, p) -> float:
    from sklearn.metrics import roc_auc_score

    present = np.unique(labels)
    if len(present) < 2:
        raise KitError(f"roc_auc needs labels of both classes; these hold only class index {present.tolist()}")
    return roc_auc_score(labels, p)


def _accuracy(labels, classes) -> float:
    from sklearn.metrics import accuracy_score

    return accuracy_score(labels, classes)


def _f1(average: str):
    def f1(labels, classes) -> float:
        from sklearn.metrics import f1_score

        return f1_score(labels, classes, average=average)
    return f1


def _quadratic_kappa(labels, grades_) -> float:
    from sklearn.metrics import cohen_kappa_score

    return cohen_kappa_score(labels, grades_, weights="quadratic")


REGISTRY: dict[str, Metric] = {m.name: m for m in (
    Metric("log_loss", False, PROBABILITY, _binary_log_loss, clips=True, description="binary log loss"),
    Metric("multi_log_loss", False, PROBABILITIES, _log_loss, clips=True, description="multi-class log loss"),
    Metric("roc_auc", True, PROBABILITY, _roc_auc, description="area under the ROC curve"),
    Metric("accuracy", True, CLASS, _accuracy, description="fraction of images given their class"),
    Metric("f1_micro", True, CLASS, _f1("micro"), description="micro-averaged F1"),
    Metric("f1_macro", True, CLASS, _f1("macro"), description="macro-averaged F1"),
    Metric("quadratic_kappa", True, GRADE, _quadratic_kappa, description="quadratic weighted kappa"),
)}


def names() -> tuple[str, ...]:
    return tuple(REGISTRY)


def get(name: str) -> Metric:
    try:
        return REGISTRY[name]
    except KeyError:
        raise KitError(f"unknown metric {name!r}; choose one of: {', '.join(REGISTRY)}") from None


# Words in Kaggle's names for its metrics (ApiCompetition.evaluation_metric, written for people and not a
# fixed vocabulary), lower-cased with spaces, dashes and underscores taken out, and the entry each means.
KAGGLE_WORDS = (("kappa", "quadratic_kappa"), ("auc", "roc_auc"), ("areaunder", "roc_auc"),
                ("macrof1", "f1_macro"), ("f1macro", "f1_macro"), ("f1", "f1_micro"), ("fscore", "f1_micro"),
                ("accuracy", "accuracy"), ("logloss", "log_loss"), ("logarithmicloss", "log_loss"),
                ("crossentropy", "log_loss"), ("multiclassloss", "log_loss"))


def from_kaggle(kaggle_name: str, value_columns: int) -> str | None:
    """The registry's name for the metric Kaggle calls `kaggle_name`, or None when none matches. A log
    loss is multi-class where the sample has a probability column per class (`value_columns` > 1)."""
    words = "".join(ch for ch in kaggle_name.lower() if ch.isalnum())
    for word, name in KAGGLE_WORDS:
        if word in words:
            return "multi_log_loss" if name == "log_loss" and value_columns > 1 else name
    return None
