"""Heads on cached features, trained by stratified K-fold.

Every training image gets an out-of-fold (OOF) prediction from a head that never saw it,
which is what blending and clip selection are fitted on; test predictions are averaged
over the K fold heads. Test-time views (original, flip) are extra training rows for a
head and are averaged at prediction time. Folds split images, never views of one image, and
never a group (the task's group column, e.g. State Farm's driver) across folds.

Predictions are P(class 1), shape [n], for two classes (as they always were) and per-class
probabilities, shape [n, classes], for more.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from kit.errors import KitError
from kit.models import outputs
from kit.task import metrics

# Inverse regularisation for unit-length features: measured best at 30-100 on the real photos, and at
# 300 or more once the mislabelled and off-topic photos are cleaned out (nothing left to be robust to).
LOGREG_C_GRID = (3.0, 10.0, 30.0, 100.0, 300.0, 1000.0)


@dataclass
class HeadResult:
    name: str
    oof: np.ndarray            # [n_train], or [n_train, classes] for more than two
    test: np.ndarray           # [n_test], or [n_test, classes]
    oof_log_loss: float        # binary or multi-class log loss, whatever the task's metric
    detail: dict
    seconds: float


def folds(labels: np.ndarray, k: int, seed: int, groups=None) -> list[tuple[np.ndarray, np.ndarray]]:
    """Stratified K-fold; with `groups` (one value per image), every group inside one fold."""
    from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold

    if k < 2:
        raise KitError(f"folds must be at least 2, got {k}")
    counts = np.bincount(labels.astype(int), minlength=2)
    if counts.min() < k:
        raise KitError(f"{k}-fold needs at least {k} images of each class, got {counts.tolist()}")
    if groups is None:
        splitter = StratifiedKFold(n_splits=k, shuffle=True, random_state=seed)
        return list(splitter.split(np.zeros(len(labels)), labels))
    groups = np.asarray(groups).astype(str)
    if len(set(groups)) < k:
        raise KitError(f"{k}-fold grouped folds need at least {k} groups, got {len(set(groups))}")
    splitter = StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed)
    return list(splitter.split(np.zeros(len(labels)), labels, groups))


def n_classes_of(y: np.ndarray) -> int:
    return max(2, int(np.max(y)) + 1)


def per_class(probs: np.ndarray, seen: np.ndarray, k: int) -> np.ndarray:
    """A model's probabilities over the classes it saw, as columns of all k (a grouped fold can lack one)."""
    out = np.zeros((len(probs), k))
    out[:, seen.astype(int)] = probs
    return out


def logreg_fold(x_train, y_train, x_val, x_test, c: float, seed: int, n_classes: int = 2):
    """Logistic regression; multinomial (scikit-learn's lbfgs default) for more than two classes."""
    from sklearn.linear_model import LogisticRegression

    model = LogisticRegression(C=c, max_iter=3000)
    model.fit(x_train, y_train)
    if n_classes == 2:
        return model.predict_proba(x_val)[:, 1], model.predict_proba(x_test)[:, 1]
    return tuple(per_class(model.predict_proba(x), model.classes_, n_classes) for x in (x_val, x_test))


def dense_fold(x_train, y_train, x_val, x_test, epochs: int, seed: int, dropout: float = 0.5,
               learning_rate: float = 1e-3, batch_size: int = 64, n_classes: int = 2):
    """Seed 004's head: Dropout + Dense sigmoid (softmax for more than two classes), on standardised features."""
    from kit.models import inference
    from kit.tfquiet import import_keras

    keras = import_keras()
    keras.utils.set_random_seed(seed)
    mean, std = x_train.mean(axis=0), x_train.std(axis=0) + 1e-6
    # Layers made in this order (Dropout, then Dense): each draws its seed as it is made.
    model = keras.Sequential([keras.Input((x_train.shape[1],)), keras.layers.Dropout(dropout), outputs.top(n_classes)])
    model.compile(optimizer=keras.optimizers.Adam(learning_rate), loss=outputs.loss(n_classes))
    model.fit((x_train - mean) / std, y_train, epochs=epochs, batch_size=batch_size, verbose=0, shuffle=True)
    predict = lambda x: outputs.probabilities(inference.predict(model, (x - mean) / std, batch_size=1024), n_classes)
    return predict(x_val), predict(x_test)


def run_kfold(name: str, fit_fold, x: np.ndarray, y: np.ndarray, x_test: np.ndarray,
              k: int, seed: int, groups=None, **params) -> HeadResult:
    started = time.time()
    n_classes = n_classes_of(y)
    oof, test = outputs.empty(len(y), n_classes), outputs.empty(len(x_test), n_classes)
    extra = {} if n_classes == 2 else {"n_classes": n_classes}
    for train_rows, val_rows in folds(y, k, seed, groups):
        val_pred, test_pred = fit_fold(x[train_rows], y[train_rows], x[val_rows], x_test, seed=seed, **params, **extra)
        oof[val_rows] = val_pred
        test += test_pred / k
    return HeadResult(name, oof, test, metrics.log_loss(y, oof), dict(params), time.time() - started)


def metric_score(metric: str, y: np.ndarray, probs: np.ndarray) -> float:
    """The task's metric of out-of-fold predictions; log loss exactly as it was always computed.

    A grade metric (kappa) is scored here at rounding thresholds: the fitted ones come later, on the blend.
    """
    entry = metrics.get(metric)
    return metrics.log_loss(y, probs) if entry.clips else entry.evaluate(y, probs)


def logreg(x, y, x_test, k: int, seed: int, grid=LOGREG_C_GRID, log=print, metric: str = "log_loss",
           groups=None) -> HeadResult:
    """Logistic regression with C picked by the OOF score on the task's metric over a small grid.

    Picking C on the same OOF predictions is optimistic by a hair; with five values on a
    log scale the effect is far below the fold-to-fold noise. A tie keeps the smaller C.
    """
    entry = metrics.get(metric)
    best, best_score = None, None
    for c in grid:
        result = run_kfold("logreg", logreg_fold, x, y, x_test, k, seed, groups, c=c)
        value = metric_score(metric, y, result.oof)
        shown = "" if entry.clips else f", OOF {metric} {value:.4f}"
        log(f"heads: logreg C={c:g}: OOF log loss {result.oof_log_loss:.4f}{shown}")
        if best is None or entry.better(value, best_score):
            best, best_score = result, value
    return best


def dense(x, y, x_test, k: int, seed: int, epochs: int = 30, learning_rate: float = 1e-3, dropout: float = 0.5,
          batch_size: int = 64, log=print, groups=None) -> HeadResult:
    result = run_kfold("dense", dense_fold, x, y, x_test, k, seed, groups, epochs=epochs, learning_rate=learning_rate,
                       dropout=dropout, batch_size=batch_size)
    log(f"heads: dense ({epochs} epochs): OOF log loss {result.oof_log_loss:.4f}")
    return result


HEADS = {"logreg": logreg, "dense": dense}
