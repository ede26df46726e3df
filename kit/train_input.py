"""Training input for end-to-end methods: pixels decoded once into a uint8 cache, augmented in the tf.data graph.

The thread pool of `generators.ImageBatches` decodes and warps every image in Python on every
epoch; at 384 px that is what keeps a GPU waiting (about 170 images/s on two cores). Here:

- each training image is decoded once per run and size into a uint8 memmap on local disk
  (`pixel_cache_dir`; in a kernel, the temp folder), keyed by the files and sizes, written
  whole to a partial folder and renamed into place, so a killed build is redone, never half-used;
- each batch is gathered from it and augmented by TensorFlow ops (one projective warp for
  flip, rotation, shift, shear and zoom; then saturation, contrast, brightness, gamma and
  noise), in parallel and without the GIL, then preprocessed for its backbone and prefetched;
- the random draws are stateless, from (seed, epoch, batch), and the order of each epoch from
  (seed, epoch): a run is repeatable, and a run resumed at epoch k sees what an uninterrupted
  one saw from epoch k on. One draw serves every size of an image, so its views agree.

The transforms are `generators.Augment`'s, with its ranges; the warp's border reflects the
edge pixel too (OpenCV's BORDER_REFLECT, where `augment` uses BORDER_REFLECT_101).

Batches split evenly across replicas: the global batch is a multiple of the replica count and
an epoch's short last batch is cut to one (Keras 3.15's first-batch build under a
MirroredStrategy fails on an uneven split).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from kit import backbones, images
from kit.errors import KitError
from kit.generators import Augment, decode_sizes

CACHE_FORMAT = 1
DONE = "cache.json"


# --- the pixel cache -------------------------------------------------------------------------------

@dataclass
class PixelCache:
    """arrays[size][row] is image `row`'s pixels at that size (uint8, read-only memmap); ok[row] False if unusable."""

    folder: Path
    arrays: dict
    ok: np.ndarray
    skips: list


def cache_key(paths: Sequence[str], sizes: Sequence[int], min_side: int) -> str:
    """Files by path, size and modification time: a refetched or edited file changes the key."""
    digest = hashlib.sha256(json.dumps([CACHE_FORMAT, sorted(sizes), min_side]).encode())
    for path in paths:
        stat = os.stat(path)
        digest.update(f"{path}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:16]


def pixel_cache(paths: Sequence[str], sizes: Sequence[int], root: str | Path, min_side: int = 16, workers: int = 2,
                log=print) -> PixelCache:
    """The cache for these files at these sizes, built first if it is not on disk."""
    paths, sizes = [str(p) for p in paths], sorted(set(sizes))
    folder = Path(root) / f"{cache_key(paths, sizes, min_side)}-{'-'.join(map(str, sizes))}"
    if not (folder / DONE).is_file():
        _build(folder, paths, sizes, min_side, workers, log)
    return _open(folder, len(paths), sizes)


def _build(folder: Path, paths: list[str], sizes: list[int], min_side: int, workers: int, log) -> None:
    need = sum(len(paths) * s * s * 3 for s in sizes)
    partial = folder.with_name(folder.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    free = shutil.disk_usage(partial).free
    if need > free:
        shutil.rmtree(partial)
        raise KitError(f"the pixel cache needs {need / 2**30:.1f} GiB and {partial.parent} has "
                       f"{free / 2**30:.1f} GiB free: free some space or set pixel_cache_dir to a bigger disk")
    log(f"train input: decoding {len(paths)} images once into a {need / 2**30:.2f} GiB uint8 cache at "
        f"{', '.join(map(str, sizes))} px in {folder.parent}")
    arrays = {s: np.lib.format.open_memmap(partial / f"{s}.npy", "w+", np.uint8, (len(paths), s, s, 3)) for s in sizes}
    ok = np.zeros(len(paths), bool)
    skips = []
    with ThreadPoolExecutor(max_workers=workers) as pool:   # OpenCV decodes and resizes without the GIL
        for row, result in enumerate(pool.map(lambda p: decode_sizes(p, sizes, min_side), paths)):
            if isinstance(result, images.Skip):
                skips.append([result.path, result.reason, result.detail])
                continue
            for size, pixels in result.items():
                arrays[size][row] = pixels
            ok[row] = True
    for array in arrays.values():
        array.flush()
    np.save(partial / "ok.npy", ok)
    (partial / DONE).write_text(json.dumps({"format": CACHE_FORMAT, "n": len(paths), "sizes": sizes,
                                            "skips": skips}) + "\n")
    shutil.rmtree(folder, ignore_errors=True)
    os.replace(partial, folder)


def _open(folder: Path, n: int, sizes: list[int]) -> PixelCache:
    meta = json.loads((folder / DONE).read_text())
    if meta["n"] != n or meta["sizes"] != sizes:
        raise KitError(f"{folder} does not hold the images it is named for: delete it and run again")
    arrays = {s: np.load(folder / f"{s}.npy", mmap_mode="r") for s in sizes}
    skips = [images.Skip(*row) for row in meta["skips"]]
    return PixelCache(folder, arrays, np.load(folder / "ok.npy"), skips)


# --- random transforms as tensor ops ----------------------------------------------------------------

def draw(seed, count, aug: Augment) -> dict:
    """Per-image transform parameters for a batch of `count`, from a stateless seed (shape [2])."""
    import tensorflow as tf

    u = tf.random.stateless_uniform([count, 9], seed=seed)

    def between(column, low, high):
        return low + (high - low) * u[:, column]

    log_gamma = math.log1p(aug.gamma)
    return {
        "flip": (u[:, 0] < 0.5) if aug.flip else tf.zeros([count], tf.bool),
        "angle": between(1, -aug.rotation, aug.rotation) * (math.pi / 180),
        "scale": between(2, 1 - aug.zoom, 1 + aug.zoom),
        "shear": tf.tan(between(3, -aug.shear, aug.shear) * (math.pi / 180)),
        "shift_x": between(4, -aug.shift, aug.shift),
        "shift_y": between(5, -aug.shift, aug.shift),
        "saturation": between(6, 1 - aug.saturation, 1 + aug.saturation),
        "contrast": between(7, 1 - aug.contrast, 1 + aug.contrast),
        "brightness": between(8, -aug.brightness, aug.brightness) * 255.0,
        "gamma": tf.exp(tf.random.stateless_uniform([count], seed=tf.random.experimental.stateless_fold_in(seed, 1),
                                                    minval=-log_gamma, maxval=log_gamma)),
        "noise_seed": tf.random.experimental.stateless_fold_in(seed, 2),
    }


def warp_matrices(params: dict, size: int):
    """What `generators.augment` builds with OpenCV (mirror, then rotation and zoom about the centre, shear,
    shift), inverted into the output-to-input rows ImageProjectiveTransformV3 takes: [count, 8]."""
    import tensorflow as tf

    centre = size / 2
    alpha, beta = params["scale"] * tf.cos(params["angle"]), params["scale"] * tf.sin(params["angle"])
    shear = params["shear"]
    zero, one = tf.zeros_like(alpha), tf.ones_like(alpha)
    # cv2.getRotationMatrix2D, then the shear and shift terms `augment` adds to it.
    a0, a1 = alpha, beta + shear
    a2 = (1 - alpha) * centre - beta * centre - shear * centre + params["shift_x"] * size
    b0, b1 = -beta, alpha
    b2 = beta * centre + (1 - alpha) * centre + params["shift_y"] * size
    forward = tf.stack([tf.stack([a0, a1, a2], -1), tf.stack([b0, b1, b2], -1), tf.stack([zero, zero, one], -1)], 1)
    # The mirror comes first: x -> size - 1 - x on the input side.
    flip = tf.where(params["flip"][:, None, None],
                    tf.constant([[-1.0, 0.0, size - 1.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]),
                    tf.eye(3)[None])
    inverse = tf.matmul(flip, tf.linalg.inv(forward))   # output -> input: un-warp, then un-mirror
    return tf.reshape(inverse, [-1, 9])[:, :8]


def augment_batch(pixels, params: dict, aug: Augment):
    """uint8 [count, size, size, 3] -> float32 in [0, 255], transformed as `generators.augment` does."""
    import tensorflow as tf

    size = int(pixels.shape[1])
    warped = tf.raw_ops.ImageProjectiveTransformV3(
        images=pixels, transforms=warp_matrices(params, size), output_shape=[size, size],
        fill_value=0.0, interpolation="BILINEAR", fill_mode="REFLECT")
    x = tf.cast(warped, tf.float32)
    gray = tf.reduce_mean(x, axis=-1, keepdims=True)
    x = gray + (x - gray) * params["saturation"][:, None, None, None]
    mean = tf.reduce_mean(x, axis=[1, 2, 3], keepdims=True)
    x = (x - mean) * params["contrast"][:, None, None, None] + mean + params["brightness"][:, None, None, None]
    if aug.gamma:
        x = 255.0 * tf.pow(tf.clip_by_value(x, 0.0, 255.0) / 255.0, params["gamma"][:, None, None, None])
    if aug.noise:
        x += tf.random.stateless_normal(tf.shape(x), seed=params["noise_seed"], stddev=aug.noise)
    return tf.clip_by_value(x, 0.0, 255.0)


def preprocess_map(backbone: str):
    """`backbones.preprocess` as y = x @ matrix + offset per pixel, read off the function itself, so the
    tensor pipeline takes preprocessing from the registry and nowhere else."""
    probe = np.array([[[0, 0, 0], [100, 0, 0], [0, 100, 0], [0, 0, 100]]], np.float32)
    out = backbones.preprocess(backbone, probe)[0]
    offset = out[0]
    matrix = (out[1:] - offset) / 100.0
    check = np.random.default_rng(0).uniform(0, 255, (1, 8, 3)).astype(np.float32)
    if not np.allclose(check @ matrix + offset, backbones.preprocess(backbone, check), atol=1e-3):
        raise KitError(f"the preprocessing of {backbone} is not per-pixel linear, so the tensor pipeline cannot apply it")
    return matrix.astype(np.float32), offset.astype(np.float32)


def apply_preprocess(x, mapping):
    import tensorflow as tf

    matrix, offset = mapping
    if np.array_equal(matrix, np.eye(3)) and not offset.any():
        return x
    return tf.tensordot(x, tf.constant(matrix), axes=1) + tf.constant(offset)


# --- datasets ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Plan:
    """How one fold's training rows become batches."""

    rows: np.ndarray            # rows of the cache, in index order
    batch_size: int             # global, a multiple of `replicas`
    replicas: int

    @property
    def steps(self) -> int:
        full, rest = divmod(len(self.rows), self.batch_size)
        return full + (rest // self.replicas > 0)


def even_batch(batch_size: int, replicas: int) -> int:
    return max(replicas, batch_size // replicas * replicas)


class TrainInput:
    """tf.data datasets over a pixel cache for one model's inputs (one per extractor: backbone and size)."""

    def __init__(self, cache: PixelCache, extractors, labels: np.ndarray, seed: int, aug: Augment | None,
                 replicas: int = 1):
        self.cache, self.extractors, self.labels = cache, list(extractors), np.asarray(labels, np.float32)
        self.seed, self.aug, self.replicas = seed, aug, replicas
        self.maps = [preprocess_map(ex.backbone) for ex in self.extractors]

    def plan(self, rows, batch_size: int) -> Plan:
        return Plan(np.asarray(rows, np.int64), even_batch(batch_size, self.replicas), self.replicas)

    def training(self, rows, batch_size: int, start_epoch: int, epochs: int):
        """Epochs start_epoch..epochs-1 back to back, shuffled and augmented; fit it with steps_per_epoch=plan.steps."""
        import tensorflow as tf

        plan = self.plan(rows, batch_size)
        base = tf.constant([self.seed, 0], tf.int64)
        fold_in = tf.random.experimental.stateless_fold_in
        labels, rows_t, replicas = tf.constant(self.labels), tf.constant(plan.rows), self.replicas

        def one_epoch(epoch):
            keys = tf.random.stateless_uniform([len(plan.rows)], seed=fold_in(fold_in(base, 1), epoch))
            order = tf.gather(rows_t, tf.argsort(keys))
            batches = tf.data.Dataset.from_tensor_slices(order).batch(plan.batch_size).map(
                lambda idx: idx[:tf.shape(idx)[0] // replicas * replicas])
            return batches.filter(lambda idx: tf.size(idx) > 0).enumerate().map(
                lambda step, idx: (fold_in(fold_in(fold_in(base, 2), epoch), step), idx))

        def load(seed, idx):
            inputs = self._gather(idx)
            if self.aug is not None:
                params = draw(seed, tf.shape(idx)[0], self.aug)
                inputs = [augment_batch(x, params, self.aug) for x in inputs]
            return self._finish(inputs, tf.gather(labels, idx))

        epochs_ds = tf.data.Dataset.range(start_epoch, epochs).flat_map(one_epoch)
        return epochs_ds.map(load, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True).prefetch(tf.data.AUTOTUNE)

    def evaluation(self, rows, batch_size: int):
        """One pass in order, no augmentation (validation during fit)."""
        import tensorflow as tf

        labels = tf.constant(self.labels)
        ds = tf.data.Dataset.from_tensor_slices(np.asarray(rows, np.int64)).batch(even_batch(batch_size, self.replicas))
        return ds.map(lambda idx: self._finish(self._gather(idx), tf.gather(labels, idx)),
                      num_parallel_calls=tf.data.AUTOTUNE, deterministic=True).prefetch(tf.data.AUTOTUNE)

    def _gather(self, idx) -> list:
        import tensorflow as tf

        sizes = [ex.size for ex in self.extractors]
        # Reading the memmap is a copy of whole rows; numpy does it, TensorFlow cannot see the file.
        arrays = tf.numpy_function(lambda i: [self.cache.arrays[s][np.asarray(i)] for s in sizes], [idx],
                                   [tf.uint8] * len(sizes), stateful=False)
        return [tf.ensure_shape(a, [None, s, s, 3]) for a, s in zip(arrays, sizes)]

    def _finish(self, inputs: list, y):
        import tensorflow as tf

        xs = [apply_preprocess(tf.cast(x, tf.float32), m) for x, m in zip(inputs, self.maps)]
        return (xs[0] if len(xs) == 1 else tuple(xs)), y

    def fit_args(self, train_rows, val_rows, batch_size: int, start_epoch: int, epochs: int) -> dict:
        """model.fit's data arguments for epochs start_epoch..epochs-1 of one fold."""
        return {"x": self.training(train_rows, batch_size, start_epoch, epochs),
                "steps_per_epoch": self.plan(train_rows, batch_size).steps, "shuffle": False,   # shuffled here
                "validation_data": self.evaluation(val_rows, batch_size)}
