"""EfficientNet-Lite0/1/2 (Tan & Le 2019; the Lite variants 2020) in Keras, with the lukemelas layout's weights.

Lite is EfficientNet-B0..B2 made friendly to integer accelerators: ReLU6 instead of swish, no
squeeze-excitation, and a stem (32 filters) and head (1280) that are not scaled with the width; the
first and last stages keep their block count too. The ImageNet weights are PyTorch state dicts
(``kit.models.torchfile`` reads them) whose names follow the lukemelas EfficientNet-PyTorch layout
(``_conv_stem``, ``_bn0``, ``_blocks.N._expand_conv`` ...). Layer names here are those names with
"." turned into "_", so the mapping from one to the other is mechanical.

The original networks were trained in TensorFlow: convolutions pad the TensorFlow way ("same",
more on the bottom and right when the padding is odd), which Keras' ``padding="same"`` is, and
BatchNormalization uses epsilon 1e-3.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import numpy as np

from kit.errors import KitError

BN_EPSILON = 1e-3
STEM, HEAD = 32, 1280


@dataclass(frozen=True)
class Stage:
    kernel: int
    stride: int
    expand: int
    filters_in: int
    filters_out: int
    repeats: int


# EfficientNet-B0's stages; Lite scales the middle ones' depth and all filter counts but the stem and head.
STAGES = (Stage(3, 1, 1, 32, 16, 1), Stage(3, 2, 6, 16, 24, 2), Stage(5, 2, 6, 24, 40, 2),
          Stage(3, 2, 6, 40, 80, 3), Stage(5, 1, 6, 80, 112, 3), Stage(5, 2, 6, 112, 192, 4),
          Stage(3, 1, 6, 192, 320, 1))

# variant -> (width multiplier, depth multiplier); the native input sizes are the backbone registry's
VARIANTS = {"lite0": (1.0, 1.0), "lite1": (1.0, 1.1), "lite2": (1.1, 1.2)}


def round_filters(filters: int, width: float, divisor: int = 8) -> int:
    """Scale a filter count and round it to a multiple of 8, never more than 10% down (as the reference does)."""
    scaled = filters * width
    rounded = max(divisor, int(scaled + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < 0.9 * scaled else rounded


def block_plan(variant: str) -> list[tuple[int, int, int, int, int]]:
    """(kernel, stride, expand, filters in, filters out) for every block of ``variant``, in order."""
    width, depth = VARIANTS[variant]
    plan = []
    for n, stage in enumerate(STAGES):
        fixed = n in (0, len(STAGES) - 1)
        repeats = stage.repeats if fixed else int(math.ceil(depth * stage.repeats))
        filters_in, filters_out = round_filters(stage.filters_in, width), round_filters(stage.filters_out, width)
        if n == 0:
            filters_in = STEM
        for r in range(repeats):
            plan.append((stage.kernel, stage.stride if r == 0 else 1, stage.expand,
                         filters_in if r == 0 else filters_out, filters_out))
    return plan


def build(variant: str, input_size: int, weights_path: Optional[str], include_top: bool):
    """The Keras model: pooled 1280 features, or with the top the 1000 ImageNet class probabilities.

    Takes images preprocessed the "tf" way ([-1, 1]), as the TensorFlow originals were trained.
    Each BatchNormalization is folded into the convolution before it (kernel scaled, a bias added):
    the same function in inference, and 1.6-2x the throughput on a CPU, where the separate
    normalisation passes over every activation map cost as much as the depthwise convolutions. The
    kit never trains these statistics (fine-tuning keeps BatchNormalization frozen), so nothing is lost.
    """
    import keras
    from keras import layers

    def conv(x, filters, kernel, stride, name, activate=True):
        x = layers.Conv2D(filters, kernel, strides=stride, padding="same", name=name)(x)
        return layers.ReLU(6.0, name=f"{name}_relu6")(x) if activate else x

    inputs = keras.Input((input_size, input_size, 3), name="input")
    x = conv(inputs, STEM, 3, 2, "_conv_stem")
    for i, (kernel, stride, expand, filters_in, filters_out) in enumerate(block_plan(variant)):
        prefix = f"_blocks_{i}_"
        y = conv(x, filters_in * expand, 1, 1, prefix + "_expand_conv") if expand != 1 else x
        y = layers.DepthwiseConv2D(kernel, strides=stride, padding="same", name=prefix + "_depthwise_conv")(y)
        y = layers.ReLU(6.0, name=prefix + "_depthwise_relu6")(y)
        y = conv(y, filters_out, 1, 1, prefix + "_project_conv", activate=False)
        # Lite keeps the identity skip (drop-connect is training-only) wherever shapes allow.
        x = layers.Add(name=prefix + "add")([x, y]) if stride == 1 and filters_in == filters_out else y
    x = conv(x, HEAD, 1, 1, "_conv_head")
    x = layers.GlobalAveragePooling2D(name="avg_pool")(x)
    if include_top:
        x = layers.Dense(1000, activation="softmax", name="_fc")(x)
    model = keras.Model(inputs, x, name=f"efficientnet_{variant}")
    if weights_path is not None:
        load_weights(model, weights_path)
    return model


def load_weights(model, path: str) -> None:
    """Copy a lukemelas-layout state dict into ``model``, checking that every layer and shape matches."""
    from kit.models import torchfile

    state = torchfile.load_state_dict(path)
    used = set()
    for layer in model.layers:
        if not layer.weights:
            continue
        names, arrays = _layer_arrays(layer, _torch_name(layer.name), state, path)
        expected = [tuple(w.shape) for w in layer.get_weights()]
        found = [a.shape for a in arrays]
        if found != expected:
            raise KitError(f"{path}: {_torch_name(layer.name)} has shapes {found}, {model.name} expects {expected} "
                           "(weights of another variant?)")
        layer.set_weights(arrays)
        used.update(names)
    has_top = any(layer.name == "_fc" for layer in model.layers)
    unused = sorted(n for n in set(state) - used
                    if not n.endswith("num_batches_tracked") and (has_top or not n.startswith("_fc.")))
    if unused:
        raise KitError(f"{path} has {len(unused)} tensors {model.name} does not use, e.g. {unused[0]} "
                       "(weights of another variant?)")


def _torch_name(layer_name: str) -> str:
    """Keras "_blocks_3__expand_conv" -> torch "_blocks.3._expand_conv"; top-level names are unchanged."""
    if layer_name.startswith("_blocks_"):
        index, _, rest = layer_name[len("_blocks_"):].partition("_")
        return f"_blocks.{index}.{rest}"
    return layer_name


# The BatchNormalization after each convolution, by the convolution's (last) name.
_BN_AFTER = {"_conv_stem": "_bn0", "_expand_conv": "_bn0", "_depthwise_conv": "_bn1", "_project_conv": "_bn2",
             "_conv_head": "_bn1"}


def _layer_arrays(layer, torch_name: str, state: dict, path: str) -> tuple[list[str], list[np.ndarray]]:
    """The state-dict tensors a Keras layer is made of, converted to its layout (and BN folded in)."""
    from keras import layers

    def tensor(name):
        if name not in state:
            raise KitError(f"{path} has no {name} for layer {layer.name}: not an EfficientNet-Lite state dict")
        return state[name]

    if isinstance(layer, layers.Dense):              # torch (out, in) -> keras (in, out)
        names = [f"{torch_name}.weight", f"{torch_name}.bias"]
        return names, [tensor(names[0]).T, tensor(names[1])]
    if not isinstance(layer, (layers.Conv2D, layers.DepthwiseConv2D)):
        raise KitError(f"no weights mapping for layer {layer.name} ({type(layer).__name__})")
    parent, _, last = torch_name.rpartition(".")
    bn = f"{parent}.{_BN_AFTER[last]}" if parent else _BN_AFTER[last]
    names = [f"{torch_name}.weight"] + [f"{bn}.{s}" for s in ("weight", "bias", "running_mean", "running_var")]
    kernel, gamma, beta, mean, var = (tensor(n) for n in names)
    scale = gamma / np.sqrt(var + BN_EPSILON)
    if isinstance(layer, layers.DepthwiseConv2D):    # torch (C, 1, kh, kw) -> keras (kh, kw, C, 1)
        kernel = kernel.transpose(2, 3, 0, 1) * scale[None, None, :, None]
    else:                                            # torch (out, in, kh, kw) -> keras (kh, kw, in, out)
        kernel = kernel.transpose(2, 3, 1, 0) * scale
    return names, [kernel.astype(np.float32), (beta - mean * scale).astype(np.float32)]
