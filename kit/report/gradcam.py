"""Grad-CAM, intermediate activations and first-layer filters, for any Keras functional model.

A heat map is only meaningful next to the score it explains, so `gradcam` returns that in
words with the map. It explains, in order of preference: a linear direction on the model's
output given by the caller (for a backbone that ends in pooled features, a logistic
regression fitted on them); the pre-sigmoid logit when the model ends in a one-unit sigmoid
Dense (the kit's CNN); otherwise the sum of the outputs. Logits rather than probabilities,
because a saturated sigmoid has no gradient left: a confident mistake, the picture most
worth explaining, would get a blank map. Each map shows evidence for one class: by default
the side the explained score comes out on, so a confident "cat" shows what looks like a cat
to the network; the caller may name the class instead (the answer of the run being explained).

Only the model's own layers are searched; a backbone nested as one layer in a bigger model is
explained by building the backbone on its own.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from kit.errors import KitError
from kit.tfquiet import import_keras


@dataclass
class Cam:
    heat: np.ndarray      # (n, H, W) in [0, 1], the input's spatial size
    score: np.ndarray     # (n,) the explained score (positive = class 1: dog in Dogs vs. Cats)
    layer: str
    target: str          # what the maps are computed against, in words


def conv_layers(model) -> list:
    keras = import_keras()
    kinds = (keras.layers.Conv2D, keras.layers.DepthwiseConv2D, keras.layers.SeparableConv2D)
    return [layer for layer in model.layers if isinstance(layer, kinds)]


def last_feature_map(model):
    """The last layer with a spatial (4-D) output that is not pooling or dropout.

    For a plain CNN that is the last Conv2D; where the last convolutions are merged or
    activated by a separate layer (SqueezeNet's fire9_concat, EfficientNet's top_activation,
    ResNet's last Add + ReLU) it is that layer, so the map covers every channel the pooling sees.
    """
    keras = import_keras()
    if not conv_layers(model):
        raise KitError(f"model {model.name} has no convolution layer to explain")
    skip = (keras.layers.MaxPooling2D, keras.layers.AveragePooling2D, keras.layers.Dropout,
            keras.layers.SpatialDropout2D, keras.layers.InputLayer)
    for layer in reversed(model.layers):
        shape = _output_shape(layer)
        if shape is not None and len(shape) == 4 and not isinstance(layer, skip):
            return layer
    raise KitError(f"model {model.name} has no spatial feature map to explain")


def default_activation_layer(model):
    """A convolution a third of the way in: past raw edges, before the maps shrink to a few pixels."""
    convs = conv_layers(model)
    if not convs:
        raise KitError(f"model {model.name} has no convolution layer")
    return convs[len(convs) // 3]


def layer_named(model, name: str):
    try:
        return model.get_layer(name)
    except ValueError:
        choices = ", ".join(layer.name for layer in conv_layers(model))
        raise KitError(f"model {model.name} has no layer {name!r}; its convolution layers: {choices}") from None


def first_conv_kernel(model) -> tuple[str, np.ndarray]:
    """The first convolution's name and kernel (kh, kw, in, out)."""
    convs = conv_layers(model)
    if not convs:
        raise KitError(f"model {model.name} has no convolution layer")
    return convs[0].name, np.asarray(convs[0].get_weights()[0], np.float32)


def activations(model, batch, layer) -> np.ndarray:
    """The output of `layer` (a layer or its name) for an input batch the model accepts."""
    keras = import_keras()
    layer = layer_named(model, layer) if isinstance(layer, str) else layer
    probe = keras.Model(_inputs(model), layer.output)
    # A direct call, not predict_on_batch: a fresh probe per call would retrace a tf.function each time.
    return np.asarray(probe(batch, training=False), np.float32)


def gradcam(model, batch, layer=None, direction: tuple[np.ndarray, float] | None = None,
            target: str | None = None, sides=None) -> Cam:
    """Grad-CAM maps for a batch the model accepts (already preprocessed as it expects).

    `layer`: a layer or its name; default `last_feature_map`. `direction` (w, b): explain
    output @ w + b instead of the model's own output; `target` then says what that is.
    `sides`: +1 (dog) or -1 (cat) per image, the class whose evidence to map, when it should
    be another model's answer rather than the sign of the explained score.
    """
    import tensorflow as tf

    keras = import_keras()
    layer = last_feature_map(model) if layer is None else (layer_named(model, layer) if isinstance(layer, str) else layer)
    head, default_target = _head(model, direction)
    probe = keras.Model(_inputs(model), [layer.output, head.input if head is not None else model.output])
    with tf.GradientTape() as tape:
        maps, out = probe(batch, training=False)
        maps = tf.cast(maps, tf.float32)
        tape.watch(maps)
        out = tf.cast(out, tf.float32)
        score = _score(out, head, direction)
        side = _sides(score, sides) if head is not None or direction is not None else 1.0
        total = tf.reduce_sum(side * score)
    grads = tape.gradient(total, maps)
    weights = tf.reduce_mean(grads, axis=(1, 2), keepdims=True)
    cams = tf.nn.relu(tf.reduce_sum(weights * maps, axis=-1)).numpy()
    size = _spatial_size(batch)
    return Cam(np.stack([_normalise(c, size) for c in cams]), score.numpy().astype(float), layer.name, target or default_target)


def _head(model, direction):
    """The final sigmoid Dense to undo, if the model has one and no direction overrides it."""
    keras = import_keras()
    if direction is not None:
        return None, "a linear direction on the model's output (positive = class 1: dog in Dogs vs. Cats)"
    final = model.layers[-1]
    if (isinstance(final, keras.layers.Dense) and final.units == 1
            and getattr(final.activation, "__name__", "") == "sigmoid"):
        return final, f"the logit of {final.name} before its sigmoid (positive = class 1: dog in Dogs vs. Cats)"
    return None, "the sum of the model's outputs (class-agnostic: what drives the features, not a decision)"


def _score(out, head, direction):
    import tensorflow as tf

    if direction is not None:
        w, b = direction
        return tf.linalg.matvec(out, tf.constant(np.asarray(w, np.float32))) + float(b)
    if head is not None:
        kernel, bias = (tf.cast(v, tf.float32) for v in head.weights[:2])
        return tf.squeeze(tf.matmul(out, kernel) + bias, axis=-1)
    return tf.reduce_sum(tf.reshape(out, (tf.shape(out)[0], -1)), axis=-1)


def _sides(score, sides):
    import tensorflow as tf

    if sides is not None:
        return tf.constant(np.where(np.asarray(sides) >= 0, 1.0, -1.0), tf.float32)
    return tf.stop_gradient(tf.where(score >= 0, 1.0, -1.0))


def _normalise(cam: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Scale to [0, 1] by the map's own maximum and resize to the input; all-zero stays zero."""
    import cv2

    peak = float(cam.max())
    cam = cam / peak if peak > 0 else np.zeros_like(cam)
    resized = cv2.resize(cam.astype(np.float32), (size[1], size[0]), interpolation=cv2.INTER_LINEAR)
    return np.clip(resized, 0.0, 1.0)


def _inputs(model):
    """A lone input unwrapped, so a plain array batch matches the probe's input structure."""
    return model.inputs[0] if len(model.inputs) == 1 else model.inputs


def _spatial_size(batch) -> tuple[int, int]:
    first = batch[0] if isinstance(batch, (list, tuple)) else batch
    return tuple(int(s) for s in np.shape(first)[1:3])


def _output_shape(layer):
    try:
        return tuple(layer.output.shape)
    except (AttributeError, ValueError):
        return None
