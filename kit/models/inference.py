"""A Keras model's predictions, batch by batch: the one way the kit runs a model forward.

A plain call inside a compiled function, not `predict_on_batch` nor `predict`: under a
MirroredStrategy (Keras 3.15.1) predict_on_batch returns every replica's output for the whole
batch, concatenated, and a plain call runs the batch once, on one device. Compiled once per model
(reduce_retracing: a short last batch does not trace it again), with no training-mode layers.
"""

from __future__ import annotations

import numpy as np


def predictor(model):
    """batch (an array, or a tuple of arrays for a model of several inputs) -> the model's output as numpy."""
    import tensorflow as tf

    call = tf.function(lambda x: model(x, training=False), reduce_retracing=True)
    return lambda batch: np.asarray(call(batch))


def predict(model, x: np.ndarray, batch_size: int) -> np.ndarray:
    """The model on every row of `x`, `batch_size` rows at a time, outputs stacked in row order."""
    run = predictor(model)
    return np.concatenate([run(x[start:start + batch_size]) for start in range(0, max(len(x), 1), batch_size)])
