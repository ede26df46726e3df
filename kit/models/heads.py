"""Heads on cached features, trained by stratified K-fold.

Every training image gets an out-of-fold (OOF) prediction from a head that never saw it,
which is what blending and clip selection are fitted on; test predictions are averaged
over the K fold heads. Test-time views (original, flip) are extra training rows for a
head and are averaged at prediction time. Folds split images, never views of one image.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from kit import score
from kit.errors import KitError

# Inverse regularisation for unit-length features: measured best at 30-100 on the real photos, and at
# 300 or more once the mislabelled and off-topic photos are cleaned out (nothing left to be robust to).
LOGREG_C_GRID = (3.0, 10.0, 30.0, 100.0, 300.0, 1000.0)


@dataclass
class HeadResult:
    name: str
    oof: np.ndarray            # [n_train]
    test: np.ndarray           # [n_test]
    oof_log_loss: float
    detail: dict
    seconds: float


def folds(labels: np.ndarray, k: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    from sklearn.model_selection import StratifiedKFold

    if k < 2:
        raise KitError(f"folds must be at least 2, got {k}")
    counts = np.bincount(labels.astype(int), minlength=2)
    if counts.min() < k:
        raise KitError(f"{k}-fold needs at least {k} images of each class, got {counts.tolist()}")
    splitter = StratifiedKFold(n_splits=k, shuffle=True, random_state=seed)
    return list(splitter.split(np.zeros(len(labels)), labels))


def logreg_fold(x_train, y_train, x_val, x_test, c: float, seed: int):
    from sklearn.linear_model import LogisticRegression

    model = LogisticRegression(C=c, max_iter=3000)
    model.fit(x_train, y_train)
    return model.predict_proba(x_val)[:, 1], model.predict_proba(x_test)[:, 1]


def dense_fold(x_train, y_train, x_val, x_test, epochs: int, seed: int, dropout: float = 0.5,
               learning_rate: float = 1e-3, batch_size: int = 64):
    """Seed 004's head: Dropout + Dense sigmoid, on standardised features."""
    from kit.models import inference
    from kit.tfquiet import import_keras

    keras = import_keras()
    keras.utils.set_random_seed(seed)
    mean, std = x_train.mean(axis=0), x_train.std(axis=0) + 1e-6
    model = keras.Sequential([keras.Input((x_train.shape[1],)), keras.layers.Dropout(dropout),
                              keras.layers.Dense(1, activation="sigmoid", dtype="float32")])
    model.compile(optimizer=keras.optimizers.Adam(learning_rate), loss="binary_crossentropy")
    model.fit((x_train - mean) / std, y_train, epochs=epochs, batch_size=batch_size, verbose=0, shuffle=True)
    predict = lambda x: inference.predict(model, (x - mean) / std, batch_size=1024).ravel()
    return predict(x_val), predict(x_test)


def run_kfold(name: str, fit_fold, x: np.ndarray, y: np.ndarray, x_test: np.ndarray,
              k: int, seed: int, **params) -> HeadResult:
    started = time.time()
    oof = np.zeros(len(y))
    test = np.zeros(len(x_test))
    for train_rows, val_rows in folds(y, k, seed):
        val_pred, test_pred = fit_fold(x[train_rows], y[train_rows], x[val_rows], x_test, seed=seed, **params)
        oof[val_rows] = val_pred
        test += test_pred / k
    return HeadResult(name, oof, test, score.log_loss(y, oof), dict(params), time.time() - started)


def logreg(x, y, x_test, k: int, seed: int, grid=LOGREG_C_GRID, log=print) -> HeadResult:
    """Logistic regression with C picked by OOF log loss over a small grid.

    Picking C on the same OOF predictions is optimistic by a hair; with five values on a
    log scale the effect is far below the fold-to-fold noise.
    """
    best = None
    for c in grid:
        result = run_kfold("logreg", logreg_fold, x, y, x_test, k, seed, c=c)
        log(f"heads: logreg C={c:g}: OOF log loss {result.oof_log_loss:.4f}")
        if best is None or result.oof_log_loss < best.oof_log_loss:
            best = result
    return best


def dense(x, y, x_test, k: int, seed: int, epochs: int = 30, learning_rate: float = 1e-3, dropout: float = 0.5,
          batch_size: int = 64, log=print) -> HeadResult:
    result = run_kfold("dense", dense_fold, x, y, x_test, k, seed, epochs=epochs, learning_rate=learning_rate,
                       dropout=dropout, batch_size=batch_size)
    log(f"heads: dense ({epochs} epochs): OOF log loss {result.oof_log_loss:.4f}")
    return result


HEADS = {"logreg": logreg, "dense": dense}
