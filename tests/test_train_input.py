"""The training input: the pixel cache, the tensor-op augmentation against OpenCV's, seeding and even batches."""

from __future__ import annotations

import functools
import math

import numpy as np
import pytest

from kit.data import train_input
from kit.data.generators import Augment, decode_sizes
from kit.fetch import read_index
from kit.models import backbones

STILL = Augment(flip=False, rotation=0, shift=0, shear=0, zoom=0, brightness=0, contrast=0, saturation=0, gamma=0,
                noise=0)


def tf():
    from kit.tfquiet import import_keras

    import_keras()
    import tensorflow

    return tensorflow


def smooth_image(size: int) -> np.ndarray:
    """Gradients and a blob: bilinear sampling of it is close to exact, so two warps can be compared."""
    y, x = np.mgrid[0:size, 0:size].astype(np.float32)
    image = np.stack([x / size * 200 + 20, y / size * 180 + 30,
                      120 + 80 * np.exp(-((x - size * 0.6) ** 2 + (y - size * 0.4) ** 2) / (size * 2.0))], -1)
    return image.astype(np.uint8)


def opencv_warp(image: np.ndarray, p: dict) -> np.ndarray:
    """generators.augment's geometric part, with given parameters instead of its own draws."""
    import cv2

    size = image.shape[0]
    if p["flip"]:
        image = image[:, ::-1]
    matrix = cv2.getRotationMatrix2D((size / 2, size / 2), math.degrees(p["angle"]), p["scale"])
    matrix[0, 1] += p["shear"]
    matrix[0, 2] += -p["shear"] * size / 2 + p["shift_x"] * size
    matrix[1, 2] += p["shift_y"] * size
    return cv2.warpAffine(np.ascontiguousarray(image), matrix, (size, size), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_REFLECT)


@pytest.mark.parametrize("flip", [False, True])
def test_the_warp_is_the_one_opencv_makes(flip):
    t = tf()
    size = 64
    image = smooth_image(size)
    p = {"flip": flip, "angle": math.radians(10.0), "scale": 1.12, "shear": math.tan(math.radians(5.0)),
         "shift_x": 0.06, "shift_y": -0.05}
    params = {**train_input.draw(t.constant([0, 0], t.int64), 1, STILL),
              **{k: t.constant([v], t.bool if k == "flip" else t.float32) for k, v in p.items()}}
    ours = train_input.augment_batch(t.constant(image[None]), params, STILL).numpy()[0]
    theirs = opencv_warp(image, p).astype(np.float32)
    inner = slice(8, size - 8)     # the borders reflect a little differently (see train_input)
    assert np.abs(ours[inner, inner] - theirs[inner, inner]).mean() < 1.0
    assert np.abs(ours[inner, inner] - image[inner, inner]).mean() > 5, "the warp did move the picture"


def test_colour_changes_match_generators_augment():
    t = tf()
    rng = np.random.default_rng(3)
    image = rng.integers(0, 256, (1, 16, 16, 3)).astype(np.uint8)
    aug = Augment(flip=False, rotation=0, shift=0, shear=0, zoom=0, noise=0)
    params = train_input.draw(t.constant([7, 7], t.int64), 1, aug)
    ours = train_input.augment_batch(t.constant(image), params, aug).numpy()[0]
    s, c, b, g = (float(params[k][0]) for k in ("saturation", "contrast", "brightness", "gamma"))
    x = image[0].astype(np.float32)
    gray = x.mean(axis=2, keepdims=True)
    x = gray + (x - gray) * s
    x = (x - x.mean()) * c + x.mean() + b
    x = 255.0 * (np.clip(x, 0, 255) / 255.0) ** g
    np.testing.assert_allclose(ours, np.clip(x, 0, 255), atol=0.05)


def test_draws_stay_inside_augments_ranges():
    t = tf()
    aug = Augment()
    p = {k: v.numpy() for k, v in train_input.draw(t.constant([1, 2], t.int64), 4000, aug).items() if k != "noise_seed"}
    assert 0.4 < p["flip"].mean() < 0.6
    assert np.abs(np.degrees(p["angle"])).max() <= aug.rotation and np.abs(np.degrees(p["angle"])).max() > 11
    assert np.all(np.abs(p["scale"] - 1) <= aug.zoom) and np.all(np.abs(p["brightness"]) <= aug.brightness * 255)
    assert np.all(np.abs(np.log(p["gamma"])) <= math.log1p(aug.gamma) + 1e-6)


@pytest.mark.parametrize("name", ["tiny", "squeezenet", "resnet50", "convnext_tiny", "efficientnetv2_s"])
def test_tensor_preprocessing_is_the_registry_s(name):
    t = tf()
    pixels = np.random.default_rng(0).uniform(0, 255, (2, 5, 5, 3)).astype(np.float32)
    mapping = train_input.preprocess_map(functools.partial(backbones.preprocess, name))
    mapped = train_input.apply_preprocess(t.constant(pixels), mapping)
    np.testing.assert_allclose(np.asarray(mapped), backbones.preprocess(name, pixels), atol=1e-4)


def test_cache_is_built_once_and_holds_the_decoded_pixels(fetched, tmp_path):
    index = read_index(fetched, "train")
    built = []
    cache = train_input.pixel_cache(index["path"], [32, 24], tmp_path, log=built.append)
    again = train_input.pixel_cache(index["path"], [24, 32], tmp_path, log=built.append)
    assert len(built) == 1 and again.folder == cache.folder
    assert not list(tmp_path.glob("*.partial"))
    # The synthetic set's planted files that cannot be read (its PNG, grayscale and CMYK ones can).
    assert sorted(s.reason for s in cache.skips) == ["empty-file", "not-an-image", "too-small", "truncated"]
    assert (~cache.ok).sum() == 4
    row = int(np.flatnonzero(cache.ok)[0])
    expected = decode_sizes(index["path"][row], [24, 32])
    for size in (24, 32):
        np.testing.assert_array_equal(cache.arrays[size][row], expected[size])
        assert cache.arrays[size].dtype == np.uint8 and not cache.arrays[size].flags.writeable


def test_a_killed_build_is_redone_not_used(fetched, tmp_path):
    index = read_index(fetched, "train")
    paths = index["path"].head(6)
    folder = tmp_path / f"{train_input.cache_key(paths.tolist(), [16], 16)}-16"
    partial = folder.with_name(f".{folder.name}.partial")   # where fileio.atomic_dir builds it
    partial.mkdir(parents=True)
    (partial / "16.npy").write_bytes(b"half")
    cache = train_input.pixel_cache(paths, [16], tmp_path, log=lambda *_: None)
    assert cache.folder == folder and not partial.exists() and cache.arrays[16].shape == (6, 16, 16, 3)


def source_for(fetched, tmp_path, replicas=1, aug=Augment()):
    index = read_index(fetched, "train")
    cache = train_input.pixel_cache(index["path"], [32], tmp_path, log=lambda *_: None)
    rows = np.flatnonzero(cache.ok)
    return train_input.TrainInput(cache, [32], [functools.partial(backbones.preprocess, "tiny")],
                                  index["label"].to_numpy(), seed=5, aug=aug, replicas=replicas), rows


def batches(dataset) -> list:
    return [(np.asarray(x), np.asarray(y)) for x, y, _ in dataset]


def test_augmented_epochs_are_seeded_and_a_resumed_run_sees_the_same_batches(fetched, tmp_path):
    source, rows = source_for(fetched, tmp_path)
    steps = source.plan(rows, 16).steps
    first = batches(source.training(rows, 16, 0, 2))
    assert len(first) == 2 * steps
    again = batches(source.training(rows, 16, 0, 2))
    resumed = batches(source.training(rows, 16, 1, 2))
    for (x1, y1), (x2, y2) in zip(first, again):
        np.testing.assert_array_equal(x1, x2)
        np.testing.assert_array_equal(y1, y2)
    for (x1, _), (x2, _) in zip(first[steps:], resumed):
        np.testing.assert_array_equal(x1, x2)
    assert not np.array_equal(first[0][0], first[steps][0]), "epochs differ: order and transforms"
    x = np.concatenate([b[0] for b in first[:steps]])
    assert x.dtype == np.float32 and x.min() >= -1 - 1e-6 and x.max() <= 1 + 1e-6     # tiny's "tf" preprocessing
    assert len(x) == len(rows)


def cache_rows(x: np.ndarray, cache) -> list[int]:
    """The cache row each image of a batch came from (un-augmented, tiny's "tf" preprocessing undone)."""
    pixels = np.rint((x + 1) * 127.5).astype(np.uint8)
    where = {cache.arrays[32][row].tobytes(): row for row in range(len(cache.ok))}
    return [where[image.tobytes()] for image in pixels]


@pytest.mark.parametrize("count, batch_size, replicas", [(23, 16, 3), (9, 4, 2), (5, 1, 2), (1, 16, 2), (7, 2, 4)])
def test_every_row_counts_once_in_batches_that_split_evenly_across_replicas(fetched, tmp_path, count, batch_size,
                                                                             replicas):
    source, rows = source_for(fetched, tmp_path, replicas=replicas, aug=None)
    rows = rows[:count]
    plan = source.plan(rows, batch_size)
    assert plan.batch_size % replicas == 0 and plan.batch_size >= replicas
    for name, dataset in (("training", source.training(rows, batch_size, 0, 1)),
                          ("evaluation", source.evaluation(rows, batch_size))):
        batches_ = [(np.asarray(x), np.asarray(w)) for x, _, w in dataset]
        assert len(batches_) == plan.steps == math.ceil(count / plan.batch_size), name
        assert all(len(w) % replicas == 0 for _, w in batches_), f"{name}: every replica gets rows"
        assert all(len(w) == plan.batch_size for _, w in batches_[:-1]), f"{name}: only the last batch is short"
        real = [(row, weight) for x, w in batches_ for row, weight in zip(cache_rows(x, source.cache), w) if weight]
        assert sorted(row for row, _ in real) == sorted(rows), f"{name}: each row once, none left out"
        padding = sum(len(w) for _, w in batches_) - count
        assert padding == -count % replicas
        weights = np.concatenate([w for _, w in batches_])
        if name == "evaluation":   # the pass's mean: every real row alike
            np.testing.assert_allclose(sorted(weights)[padding:], (count + padding) / count, rtol=1e-6)
        else:                      # each batch's mean: a batch's weights add up to its length
            for _, w in batches_:
                assert w.sum() == pytest.approx(len(w), rel=1e-6)
        assert (weights == 0).sum() == padding


def test_noise_has_augments_deviation_and_differs_between_images():
    t = tf()
    aug = Augment(flip=False, rotation=0, shift=0, shear=0, zoom=0, brightness=0, contrast=0, saturation=0, gamma=0)
    grey = np.full((8, 48, 48, 3), 128, np.uint8)
    out = train_input.augment_batch(t.constant(grey), train_input.draw(t.constant([4, 4], t.int64), 8, aug), aug)
    noise = out.numpy() - 128
    assert abs(noise.std() - aug.noise) < 0.1 and abs(noise.mean()) < 0.1
    assert all(not np.array_equal(noise[0], noise[i]) for i in range(1, 8))


def test_fused_preprocessing_is_the_registry_s():
    t = tf()
    pixels = np.random.default_rng(1).integers(0, 256, (2, 8, 8, 3)).astype(np.uint8)
    params = train_input.draw(t.constant([1, 1], t.int64), 2, STILL)
    mapping = train_input.preprocess_map(functools.partial(backbones.preprocess, "squeezenet"))
    fused = train_input.augment_batch(t.constant(pixels), params, STILL, mapping).numpy()
    np.testing.assert_allclose(fused, backbones.preprocess("squeezenet", pixels), atol=1e-3)
