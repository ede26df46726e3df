"""Training input for end-to-end methods: pixels decoded once into a uint8 cache, augmented in the tf.data graph.

The thread pool of `generators.ImageBatches` decodes and warps every image in Python on every
epoch; at 384 px that is what keeps a GPU waiting (about 170 images/s on two cores). Here:

- each training image is decoded once per run and size into a uint8 memmap on local disk
  (`pixel_cache_dir`; in a kernel, the temp folder), keyed by the files and sizes, written
  whole to a partial folder and renamed into place (fileio.atomic_dir), so a killed build is redone,
  never half-used;
- each batch is gathered from it and augmented by TensorFlow ops compiled by XLA (one bilinear
  warp for flip, rotation, shift, shear and zoom; then saturation, contrast, brightness, gamma
  and noise; then the backbone's preprocessing), in parallel and without the GIL, and prefetched;
- the random draws are stateless, from (seed, epoch, batch), and the order of each epoch from
  (seed, epoch): a run is repeatable, and a run resumed at epoch k sees what an uninterrupted
  one saw from epoch k on. One draw serves every size of an image, so its views agree.

The transforms are `generators.Augment`'s, with its ranges, and three departures made for speed:
the warp's border repeats the edge pixel in the mirror (OpenCV's BORDER_REFLECT, where `augment`
uses BORDER_REFLECT_101); contrast pivots on the picture's mean before the warp rather than after;
and the Gaussian noise (same deviation) is cut from NOISE_FIELDS fields drawn per batch, each image
taking one at a random cyclic shift and sign, rather than drawn afresh for every pixel of every
image, which cost more than all the rest of the augmentation.

Batches split evenly across replicas, and every image counts once. A MirroredStrategy gives each
replica ceil(n / replicas) rows of a batch of n in turn, so a short last batch (1 row over 2
replicas) leaves a replica an empty batch, which a convolution rejects ("input depth must be
evenly divisible by filter depth"). So the global batch is a multiple of the replica count, and
the rows of an epoch (or of a validation pass) are padded up to one by repeating its first rows,
weighted 0; the real rows' weights make each step's loss the mean over its real rows, as one
replica's is (see `mean_weights`).
"""

from __future__ import annotations

import json
import math
import os
import shutil
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from kit import fileio
from kit.data import images
from kit.data.generators import Augment, decode_sizes
from kit.errors import KitError

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
    stats = [(path, os.stat(path)) for path in paths]
    return fileio.digest(json.dumps([CACHE_FORMAT, sorted(sizes), min_side])
                         + "".join(f"{path}\0{st.st_size}\0{st.st_mtime_ns}\n" for path, st in stats))


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
    with fileio.atomic_dir(folder) as partial:
        free = shutil.disk_usage(partial).free
        if need > free:
            raise KitError(f"the pixel cache needs {need / 2**30:.1f} GiB and {partial.parent} has "
                           f"{free / 2**30:.1f} GiB free: free some space or set pixel_cache_dir to a bigger disk")
        log(f"train input: decoding {len(paths)} images once into a {need / 2**30:.2f} GiB uint8 cache at "
            f"{', '.join(map(str, sizes))} px in {folder.parent}")
        arrays = {s: np.lib.format.open_memmap(partial / f"{s}.npy", "w+", np.uint8, (len(paths), s, s, 3))
                  for s in sizes}
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


def _open(folder: Path, n: int, sizes: list[int]) -> PixelCache:
    meta = json.loads((folder / DONE).read_text())
    if meta["n"] != n or meta["sizes"] != sizes:
        raise KitError(f"{folder} does not hold the images it is named for: delete it and run again")
    arrays = {s: np.load(folder / f"{s}.npy", mmap_mode="r") for s in sizes}
    skips = [images.Skip(*row) for row in meta["skips"]]
    return PixelCache(folder, arrays, np.load(folder / "ok.npy"), skips)


# --- random transforms as tensor ops ----------------------------------------------------------------
#
# All random draws happen in `draw`, outside the compiled function: XLA's CPU random numbers cost
# about 60 times TensorFlow's own. The transform itself is one XLA function (the warp's four taps,
# the colour maths, gamma, noise, clipping and the backbone's preprocessing fused into one pass);
# TensorFlow's ImageProjectiveTransformV3 gave the same pixels (to 3e-4) at three times the cost.

NOISE_FIELDS = 2   # Gaussian fields drawn per batch; each image takes one, shifted and signed at random


def draw(seed, count, aug: Augment) -> dict:
    """Per-image transform parameters for a batch of `count`, from a stateless seed (shape [2])."""
    import tensorflow as tf

    u = tf.random.stateless_uniform([count, 14], seed=seed)

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
        "gamma": tf.exp(between(9, -log_gamma, log_gamma)),
        "noise_pick": tf.cast(u[:, 10] * NOISE_FIELDS, tf.int32) % NOISE_FIELDS,
        "noise_offset": u[:, 11:13],       # fractions of the side
        "noise_sign": tf.where(u[:, 13] < 0.5, -1.0, 1.0),
        "noise_seed": tf.random.experimental.stateless_fold_in(seed, 2),
    }


def warp_matrices(params: dict, size: int):
    """What `generators.augment` builds with OpenCV (mirror, then rotation and zoom about the centre, shear,
    shift), inverted into output-to-input rows [count, 8] (ImageProjectiveTransformV3's layout)."""
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


def augment_batch(pixels, params: dict, aug: Augment, mapping=None):
    """uint8 [count, size, size, 3] -> float32, transformed as `generators.augment` does, in [0, 255]; or, with
    a `preprocess_map` mapping, preprocessed for that backbone."""
    import tensorflow as tf

    size = int(pixels.shape[1])
    noise = (tf.random.stateless_normal([NOISE_FIELDS, size, size, 3], seed=params["noise_seed"], stddev=aug.noise)
             if aug.noise else tf.zeros([NOISE_FIELDS, size, size, 3]))
    perm, scale, shift = mapping if mapping is not None else IDENTITY
    colour = tf.stack([params["saturation"], params["contrast"], params["brightness"],
                       params["gamma"] if aug.gamma else tf.ones_like(params["gamma"])], 1)
    # Contrast pivots on the picture's mean taken before the warp, which moves pixels, hardly their mean.
    mean = tf.reduce_mean(tf.cast(pixels, tf.float32), axis=[1, 2, 3])
    warp, finish = _compiled()
    # Two compiled functions, not one: fused into the warp, every later use of a pixel recomputed its taps.
    warped = warp(pixels, warp_matrices(params, size), size)
    return finish(warped, mean, colour, noise, params["noise_pick"], tf.cast(params["noise_offset"] * size, tf.int32),
                  params["noise_sign"], tf.constant(perm), tf.constant(scale), tf.constant(shift), bool(aug.gamma))


def _compiled():
    global _COMPILED
    if _COMPILED is None:
        import tensorflow as tf

        # Traced once per size and batch shape.
        _COMPILED = (tf.function(_bilinear_reflect, jit_compile=True), tf.function(_finish, jit_compile=True))
    return _COMPILED


_COMPILED = None
IDENTITY = (np.arange(3, dtype=np.int32), np.ones(3, np.float32), np.zeros(3, np.float32))


def _finish(x, mean, colour, noise, pick, offset, sign, perm, scale, shift, use_gamma: bool):
    """Saturation, contrast and brightness, gamma, noise, clipping, then the backbone's preprocessing."""
    import tensorflow as tf

    size = x.shape[1]
    saturation, contrast, brightness, gamma = (colour[:, i, None, None, None] for i in range(4))
    mean = mean[:, None, None, None]
    gray = (x[..., 0:1] + x[..., 1:2] + x[..., 2:3]) / 3
    x = gray + (x - gray) * saturation
    x = (x - mean) * contrast + mean + brightness
    if use_gamma:   # x ** gamma as exp(gamma * log x): the same curve, a third of the cost; 0 stays 0
        x = tf.clip_by_value(x, 0.0, 255.0) / 255.0
        x = 255.0 * tf.where(x > 0, tf.exp(gamma * tf.math.log(tf.maximum(x, 1e-12))), 0.0)
    rows = (tf.range(size)[None, :, None] + offset[:, 1, None, None]) % size
    cols = (tf.range(size)[None, None, :] + offset[:, 0, None, None]) % size
    field = tf.gather(tf.reshape(noise, [-1, 3]), pick[:, None, None] * size * size + rows * size + cols)
    x = tf.clip_by_value(x + field * sign[:, None, None, None], 0.0, 255.0)
    return tf.gather(x, perm, axis=-1) * scale + shift


def _bilinear_reflect(pixels, transforms, size: int):
    """Each output pixel from the four input pixels around where `transforms` sends it; outside the image
    the picture is mirrored (edge pixel repeated)."""
    import tensorflow as tf

    count = tf.shape(pixels)[0]
    t = tf.reshape(tf.concat([transforms, tf.ones([count, 1])], 1), [count, 3, 3])
    ys, xs = tf.meshgrid(tf.range(size, dtype=tf.float32), tf.range(size, dtype=tf.float32), indexing="ij")
    grid = tf.stack([tf.reshape(xs, [-1]), tf.reshape(ys, [-1]), tf.ones([size * size])], 0)
    source = tf.einsum("bij,jp->bip", t, grid)
    sx, sy = source[:, 0], source[:, 1]
    x0, y0 = tf.floor(sx), tf.floor(sy)
    wx, wy = (sx - x0)[..., None], (sy - y0)[..., None]
    x0, y0 = tf.cast(x0, tf.int32), tf.cast(y0, tf.int32)
    x1, y1 = _reflect(x0 + 1, size), _reflect(y0 + 1, size)
    x0, y0 = _reflect(x0, size), _reflect(y0, size)
    flat = tf.reshape(pixels, [count, size * size, 3])

    def tap(yy, xx):
        return tf.cast(tf.gather(flat, yy * size + xx, batch_dims=1), tf.float32)

    top = tap(y0, x0) * (1 - wx) + tap(y0, x1) * wx
    bottom = tap(y1, x0) * (1 - wx) + tap(y1, x1) * wx
    return tf.reshape(top * (1 - wy) + bottom * wy, [count, size, size, 3])


def _reflect(i, size: int):
    import tensorflow as tf

    period = 2 * size
    i = tf.math.floormod(i, period)
    return tf.where(i >= size, period - 1 - i, i)


def preprocess_map(preprocess):
    """A backbone's preprocessing (`preprocess(batch)`, float RGB in [0, 255]) as (channel order, scale, offset):
    y[..., c] = x[..., order[c]] * scale[c] + offset[c], read off the function itself, so the tensor pipeline
    takes preprocessing from the registry (kit/models/backbones.py) and nowhere else."""
    probe = np.array([[[0, 0, 0], [100, 0, 0], [0, 100, 0], [0, 0, 100]]], np.float32)
    out = preprocess(probe)[0]
    offset = out[0]
    matrix = (out[1:] - offset) / 100.0          # row: input channel, column: output channel
    order = np.abs(matrix).argmax(axis=0).astype(np.int32)
    scale = matrix[order, np.arange(3)].astype(np.float32)
    check = np.random.default_rng(0).uniform(0, 255, (1, 8, 3)).astype(np.float32)
    if not np.allclose(check[..., order] * scale + offset, preprocess(check), atol=1e-3):
        raise KitError(f"{preprocess!r} is not a per-channel scale and shift, so the tensor pipeline cannot apply it")
    return order, scale, offset.astype(np.float32)


def apply_preprocess(x, mapping):
    import tensorflow as tf

    order, scale, offset = mapping
    if np.array_equal(order, IDENTITY[0]) and np.array_equal(scale, IDENTITY[1]) and not offset.any():
        return x
    return tf.gather(x, order, axis=-1) * scale + offset


# --- datasets ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Plan:
    """How one fold's training rows become batches."""

    rows: np.ndarray            # rows of the cache, in index order
    batch_size: int             # global, a multiple of the replica count

    @property
    def steps(self) -> int:
        return math.ceil(len(self.rows) / self.batch_size)


def even_batch(batch_size: int, replicas: int) -> int:
    return max(replicas, batch_size // replicas * replicas)


def pad_to_replicas(rows, replicas: int):
    """`rows` (a 1-D tensor, not empty) repeated from its start up to a multiple of `replicas`, and a mask of
    the real ones. Batched by a multiple of `replicas`, only the last batch holds padding, and every
    replica gets at least one row of it."""
    import tensorflow as tf

    count = tf.shape(rows)[0]
    positions = tf.range((count + replicas - 1) // replicas * replicas)
    return tf.gather(rows, positions % count), positions < count


def mean_weights(real):
    """Weight 0 for padding and (rows / real rows) for each real row of `real`.

    Keras averages weighted losses over every row, padding included: a replica divides its weighted sum
    by its row count and the replicas' shares add up; a pass's loss weighs each batch by its rows. These
    weights turn that average into the mean over the real rows alone. Training weighs each batch (each
    step's gradient is the mean over its real rows, as one replica's is); validation weighs the whole pass.
    """
    import tensorflow as tf

    real = tf.cast(real, tf.float32)
    return real * tf.cast(tf.size(real), tf.float32) / tf.reduce_sum(real)


class TrainInput:
    """tf.data datasets over a pixel cache for one model's inputs: one per size, each with its backbone's
    `preprocess` (as `generators.ImageBatches` takes them)."""

    def __init__(self, cache: PixelCache, sizes: Sequence[int], preprocess: Sequence, labels: np.ndarray, seed: int,
                 aug: Augment | None, replicas: int = 1):
        self.cache, self.sizes, self.labels = cache, list(sizes), np.asarray(labels, np.float32)
        self.seed, self.aug, self.replicas = seed, aug, replicas
        self.maps = [preprocess_map(p) for p in preprocess]

    def plan(self, rows, batch_size: int) -> Plan:
        return Plan(np.asarray(rows, np.int64), even_batch(batch_size, self.replicas))

    def training(self, rows, batch_size: int, start_epoch: int, epochs: int):
        """Epochs start_epoch..epochs-1 back to back, shuffled and augmented, as (x, y, weight) batches;
        fit it with steps_per_epoch=plan.steps. Each batch's weights average its loss over its real rows."""
        import tensorflow as tf

        plan = self.plan(rows, batch_size)
        base = tf.constant([self.seed, 0], tf.int64)
        fold_in = tf.random.experimental.stateless_fold_in
        labels, rows_t, replicas = tf.constant(self.labels), tf.constant(plan.rows), self.replicas

        def one_epoch(epoch):
            keys = tf.random.stateless_uniform([len(plan.rows)], seed=fold_in(fold_in(base, 1), epoch))
            order, real = pad_to_replicas(tf.gather(rows_t, tf.argsort(keys)), replicas)
            batches = tf.data.Dataset.from_tensor_slices((order, real)).batch(plan.batch_size)
            return batches.enumerate().map(
                lambda step, batch: (fold_in(fold_in(fold_in(base, 2), epoch), step), *batch))

        def load(seed, idx, real):
            inputs = self._gather(idx)
            y, weights = tf.gather(labels, idx), mean_weights(real)
            if self.aug is None:
                return self._finish(inputs, y, weights)
            params = draw(seed, tf.shape(idx)[0], self.aug)
            xs = [augment_batch(x, params, self.aug, m) for x, m in zip(inputs, self.maps)]
            return (xs[0] if len(xs) == 1 else tuple(xs)), y, weights

        epochs_ds = tf.data.Dataset.range(start_epoch, epochs).flat_map(one_epoch)
        return epochs_ds.map(load, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True).prefetch(tf.data.AUTOTUNE)

    def evaluation(self, rows, batch_size: int):
        """One pass in order, no augmentation (validation during fit), as (x, y, weight) batches whose
        weights make the pass's loss and accuracy the means over its real rows."""
        import tensorflow as tf

        labels = tf.constant(self.labels)
        order, real = pad_to_replicas(tf.constant(np.asarray(rows, np.int64)), self.replicas)
        ds = tf.data.Dataset.from_tensor_slices((order, mean_weights(real)))
        ds = ds.batch(even_batch(batch_size, self.replicas))
        return ds.map(lambda idx, weights: self._finish(self._gather(idx), tf.gather(labels, idx), weights),
                      num_parallel_calls=tf.data.AUTOTUNE, deterministic=True).prefetch(tf.data.AUTOTUNE)

    def _gather(self, idx) -> list:
        import tensorflow as tf

        sizes = self.sizes
        # Reading the memmap is a copy of whole rows; numpy does it, TensorFlow cannot see the file.
        arrays = tf.numpy_function(lambda i: [self.cache.arrays[s][np.asarray(i)] for s in sizes], [idx],
                                   [tf.uint8] * len(sizes), stateful=False)
        return [tf.ensure_shape(a, [None, s, s, 3]) for a, s in zip(arrays, sizes)]

    def _finish(self, inputs: list, y, weights):
        import tensorflow as tf

        xs = [apply_preprocess(tf.cast(x, tf.float32), m) for x, m in zip(inputs, self.maps)]
        return (xs[0] if len(xs) == 1 else tuple(xs)), y, weights

    def fit_args(self, train_rows, val_rows, batch_size: int, start_epoch: int, epochs: int) -> dict:
        """model.fit's data arguments for epochs start_epoch..epochs-1 of one fold."""
        return {"x": self.training(train_rows, batch_size, start_epoch, epochs),
                "steps_per_epoch": self.plan(train_rows, batch_size).steps, "shuffle": False,   # shuffled here
                "validation_data": self.evaluation(val_rows, batch_size)}
