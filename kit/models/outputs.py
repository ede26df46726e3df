"""The top of every network the kit trains, from the task's number of classes.

Two classes: one sigmoid unit, P(class 1), predictions of shape [n] (as the kit always had). More: a
softmax over the classes, predictions of shape [n, classes], trained on the class index. The loss and
the predictions' shape follow from the class count here, so heads, fine-tuned backbones and the
from-scratch network agree on them.
"""

from __future__ import annotations

import numpy as np

from kit.tfquiet import import_keras


def top(n_classes: int, name: str = "probabilities"):
    """The output layer, in float32 whatever the precision policy (softmax and sigmoid saturate in float16)."""
    keras = import_keras()
    if n_classes == 2:
        return keras.layers.Dense(1, activation="sigmoid", dtype="float32", name=name)
    return keras.layers.Dense(n_classes, activation="softmax", dtype="float32", name=name)


def loss(n_classes: int) -> str:
    return "binary_crossentropy" if n_classes == 2 else "sparse_categorical_crossentropy"


def probabilities(raw, n_classes: int) -> np.ndarray:
    """A model's raw output as the kit's predictions: [n] for two classes, [n, classes] for more."""
    raw = np.asarray(raw, dtype=np.float64)
    return raw.ravel() if n_classes == 2 else raw.reshape(len(raw), n_classes)


def empty(n: int, n_classes: int) -> np.ndarray:
    """Zeros shaped as `n` predictions, to fill or sum into."""
    return np.zeros(n if n_classes == 2 else (n, n_classes))
