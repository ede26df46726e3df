"""Batches of images for a backbone: one decode, several input sizes, seeded augmentation.

Preprocessing is never chosen here: each size's batch goes through the function the
caller passes, which for a backbone is `backbones.preprocess` with that backbone's mode.
Files that cannot be used are left out of their batch and recorded in `skips`, which
the caller reports; they are never dropped silently.
"""

from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, fields, replace
from typing import Callable, Sequence

import numpy as np

from kit.data import images


@dataclass(frozen=True)
class Augment:
    """Ranges of the random training transforms; zero turns one off."""
    flip: bool = True
    rotation: float = 12.0      # degrees either way
    shift: float = 0.08         # fraction of the side
    shear: float = 6.0          # degrees
    zoom: float = 0.15          # scale in [1 - zoom, 1 + zoom]; > 1 crops in
    brightness: float = 0.12    # fraction of full scale
    contrast: float = 0.15
    saturation: float = 0.15
    gamma: float = 0.15         # log-uniform in [1 / (1 + g), 1 + g]
    noise: float = 3.0          # Gaussian noise std in pixel levels

    def scaled(self, factor: float) -> "Augment":
        """Every range times `factor`; the mirror stays as it is."""
        return replace(self, **{f.name: getattr(self, f.name) * factor for f in fields(self) if f.name != "flip"})


NO_AUGMENT = None


def augment(image: np.ndarray, rng: np.random.Generator, aug: Augment) -> np.ndarray:
    """One random geometric warp then colour changes, on an RGB uint8 square image."""
    import cv2

    size = image.shape[0]
    if aug.flip and rng.random() < 0.5:
        image = image[:, ::-1]
    angle = rng.uniform(-aug.rotation, aug.rotation)
    scale = rng.uniform(1 - aug.zoom, 1 + aug.zoom)
    matrix = cv2.getRotationMatrix2D((size / 2, size / 2), angle, scale)
    shear = math.tan(math.radians(rng.uniform(-aug.shear, aug.shear)))
    matrix[0, 1] += shear
    matrix[0, 2] += -shear * size / 2 + rng.uniform(-aug.shift, aug.shift) * size
    matrix[1, 2] += rng.uniform(-aug.shift, aug.shift) * size
    image = cv2.warpAffine(np.ascontiguousarray(image), matrix, (size, size),
                           flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101)

    x = image.astype(np.float32)
    gray = x.mean(axis=2, keepdims=True)
    x = gray + (x - gray) * rng.uniform(1 - aug.saturation, 1 + aug.saturation)
    x = (x - x.mean()) * rng.uniform(1 - aug.contrast, 1 + aug.contrast) + x.mean()
    x += rng.uniform(-aug.brightness, aug.brightness) * 255
    if aug.gamma:
        gamma = math.exp(rng.uniform(-math.log1p(aug.gamma), math.log1p(aug.gamma)))
        x = 255.0 * (np.clip(x, 0, 255) / 255.0) ** gamma
    if aug.noise:
        x += rng.normal(0, aug.noise, size=x.shape)
    return np.clip(x, 0, 255).astype(np.uint8)


def decode_sizes(path: str, sizes: Sequence[int], min_side: int = 16):
    """Decode once (at reduced scale when the file is big) and resize to every size.

    Returns {size: uint8 image} or a Skip.
    """
    result = images.load_image(path, target=max(sizes), min_side=min_side)
    if isinstance(result, images.Skip):
        return result
    return {size: images.resize_square(result, size) for size in sizes}


class ImageBatches:
    """Indexable batches over `paths`: batch i -> (inputs, labels, kept rows).

    `inputs` holds one array per entry of `sizes` (each passed through the matching
    `preprocess` function), in the same order. With `shuffle`, the order is reshuffled
    each epoch from `seed + epoch`, so a run is repeatable; augmentation draws from a
    generator seeded by (seed, epoch, row), so it does not depend on thread timing.
    """

    def __init__(self, paths, labels=None, sizes: Sequence[int] = (224,),
                 preprocess: Sequence[Callable] | None = None, batch_size: int = 32,
                 augment_with: Augment | None = NO_AUGMENT, shuffle: bool = False, seed: int = 0,
                 min_side: int = 16, workers: int = 2):
        self.paths = [str(p) for p in paths]
        self.labels = None if labels is None else np.asarray(labels, np.float32)
        self.sizes = tuple(sizes)
        self.preprocess = tuple(preprocess) if preprocess else tuple(_as_float for _ in self.sizes)
        if len(self.preprocess) != len(self.sizes):
            raise ValueError("one preprocess function per size")
        self.batch_size = batch_size
        self.augment_with = augment_with
        self.shuffle = shuffle
        self.seed = seed
        self.min_side = min_side
        self.skips: dict[str, images.Skip] = {}
        self.epoch = 0
        self._pool = ThreadPoolExecutor(max_workers=workers)
        self._order = self._make_order()

    def __len__(self) -> int:
        return math.ceil(len(self.paths) / self.batch_size)

    def __getitem__(self, i: int):
        rows = self._order[i * self.batch_size:(i + 1) * self.batch_size]
        decoded = list(self._pool.map(self._load, rows))
        kept = [row for row, item in zip(rows, decoded) if item is not None]
        items = [item for item in decoded if item is not None]
        inputs = []
        for size, prep in zip(self.sizes, self.preprocess):
            stack = np.stack([item[size] for item in items]) if items else np.zeros((0, size, size, 3), np.uint8)
            inputs.append(prep(stack))
        labels = None if self.labels is None else self.labels[kept]
        return inputs, labels, np.asarray(kept, dtype=np.int64)

    def on_epoch_end(self) -> None:
        self.set_epoch(self.epoch + 1)

    def set_epoch(self, epoch: int) -> None:
        """Order and augment as epoch `epoch` does, whichever epochs ran before in this process."""
        self.epoch = epoch
        self._order = self._make_order()

    def _make_order(self) -> np.ndarray:
        order = np.arange(len(self.paths))
        if self.shuffle:
            np.random.default_rng([self.seed, self.epoch]).shuffle(order)
        return order

    def _load(self, row: int):
        result = decode_sizes(self.paths[row], self.sizes, self.min_side)
        if isinstance(result, images.Skip):
            self.skips[result.path] = result
            return None
        if self.augment_with is not None:
            rng = np.random.default_rng([self.seed, self.epoch, row])
            state = rng.bit_generator.state
            # The same random draw for every size, so a 299 and a 224 view of one image agree.
            for size in result:
                rng.bit_generator.state = state
                result[size] = augment(result[size], rng, self.augment_with)
        return result

    def close(self) -> None:
        self._pool.shutdown(wait=False)


def _as_float(batch: np.ndarray) -> np.ndarray:
    return batch.astype(np.float32)


def keras_dataset(batches: ImageBatches, workers: int = 1):
    """Wrap ImageBatches as a keras.utils.PyDataset yielding (x, y) for model.fit.

    A batch whose files were all unusable still yields arrays (empty), and Keras skips
    none silently: the unusable files are in `batches.skips`.
    """
    import keras

    class _Dataset(keras.utils.PyDataset):
        def __init__(self):
            super().__init__(workers=workers, use_multiprocessing=False)

        def __len__(self):
            return len(batches)

        def __getitem__(self, i):
            inputs, labels, _ = batches[i]
            x = inputs[0] if len(inputs) == 1 else tuple(inputs)
            return (x,) if labels is None else (x, labels)

        def on_epoch_end(self):
            batches.on_epoch_end()

    return _Dataset()


def predicted(batches: ImageBatches, predict: Callable):
    """(kept rows, predict(inputs)) for each batch that has a usable image, decoding the next batch
    while `predict` runs on this one; the batches are closed at the end."""
    try:
        with ThreadPoolExecutor(max_workers=1) as ahead:
            pending = ahead.submit(batches.__getitem__, 0) if len(batches) else None
            for i in range(len(batches)):
                inputs, _, kept = pending.result()
                pending = ahead.submit(batches.__getitem__, i + 1) if i + 1 < len(batches) else None
                if len(kept):
                    yield kept, predict(inputs)
    finally:
        batches.close()


# --------------------------------------------------------------------------- test-time views

VIEWS = ("orig", "flip", "zoom", "zoom-flip")
ZOOM = 0.8        # the zoom views: the central 80% of each side, resized back to the input size


def view_of(batch: np.ndarray, view: str) -> np.ndarray:
    """One test-time view (see VIEWS) of a batch [n, side, side, channels]."""
    if view.startswith("zoom"):
        batch = _centre_zoom(batch)
    if view.endswith("flip"):
        batch = batch[:, :, ::-1]
    return np.ascontiguousarray(batch)


def _centre_zoom(batch: np.ndarray) -> np.ndarray:
    import cv2

    side = batch.shape[1]
    margin = int(round(side * (1 - ZOOM) / 2))
    return np.stack([cv2.resize(image[margin:side - margin, margin:side - margin], (side, side),
                                interpolation=cv2.INTER_LINEAR) for image in batch])
