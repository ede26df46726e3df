"""Pooled backbone features, computed once per image and view, cached on disk.

Heads train in seconds on cached features, where seed 004 recomputed three frozen
backbones in every epoch. The cache is keyed so that only what changed is recomputed:
- a folder per extractor: backbone, input size, weights (by content digest), layers;
- inside it, rows keyed by a digest of each image file's bytes, so an edited or replaced
  image is extracted again and a renamed one is not.
Rows are written in parts, each atomically, so an interrupted extraction resumes after
the last finished part.
"""

from __future__ import annotations

import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from kit import faults, fileio
from kit.data import images
from kit.data.generators import ImageBatches, predicted, view_of

PART_ROWS = 512   # images per part file: the most work an interruption can lose


@dataclass(frozen=True)
class Extractor:
    backbone: str
    size: int
    weights: str | None = "imagenet"
    layers: tuple[str, ...] = ()          # intermediate layers to pool as well as the output
    views: tuple[str, ...] = ("orig", "flip")

    @property
    def label(self) -> str:
        extra = "+" + "+".join(self.layers) if self.layers else ""
        return f"{self.backbone}@{self.size}{extra}"


@dataclass
class Features:
    """features[i, v] is image i's vector for view v; ok[i] is False for a skipped image."""
    extractor: Extractor
    features: np.ndarray
    ok: np.ndarray
    skips: list = field(default_factory=list)
    seconds: float = 0.0
    computed: int = 0


def file_key(path: str) -> str:
    return fileio.file_digest(path, "blake2b", digest_size=16)


def weights_id(extractor: Extractor) -> str:
    """What the weights are, by content where there is a file, so a swapped file misses the cache."""
    from kit.models import backbones

    if extractor.weights is None:
        return "random"
    path = backbones.resolve_weights(extractor.backbone, extractor.weights)
    if path is None:
        return "random"
    return fileio.file_digest(path)[:16]


def cache_dir_for(root: Path, extractor: Extractor) -> Path:
    # "format" changes whenever decoding or resizing changes, so old rows are never mixed in.
    identity = {"backbone": extractor.backbone, "size": extractor.size, "weights": weights_id(extractor),
                "layers": list(extractor.layers), "views": list(extractor.views), "format": 2}
    folder = Path(root) / f"{extractor.backbone}-{extractor.size}-{fileio.digest(identity, 12)}"
    folder.mkdir(parents=True, exist_ok=True)
    fileio.write_json(folder / "identity.json", identity)
    return folder


def read_parts(folder: Path) -> dict[str, np.ndarray]:
    """Every cached row, by image key. A part that cannot be read is ignored and recomputed."""
    rows: dict[str, np.ndarray] = {}
    for part in sorted(folder.glob("part-*.npz")):
        try:
            with np.load(part) as data:
                rows.update(zip(data["keys"].tolist(), data["features"]))
        except (OSError, ValueError, KeyError):
            continue
    return rows


def write_part(folder: Path, keys: list[str], rows: np.ndarray) -> None:
    fileio.write_npz(folder / f"part-{uuid.uuid4().hex[:12]}.npz", keys=np.asarray(keys), features=rows)


def feature_model(extractor: Extractor):
    """The backbone with its pooled output, plus global-average-pooled intermediate layers."""
    from kit.models import backbones
    from kit.tfquiet import import_keras

    keras = import_keras()
    if extractor.weights is None:
        # Random weights must be the same random weights every time, or cached rows from two
        # builds would be mixed; weights=None is for tests and smoke runs.
        keras.utils.set_random_seed(0)
    model = backbones.build(extractor.backbone, weights=extractor.weights, input_size=extractor.size)
    if not extractor.layers:
        return model
    pooled = [keras.layers.GlobalAveragePooling2D(name=f"pool_{name.replace('/', '_')}")(model.get_layer(name).output)
              for name in extractor.layers]
    return keras.Model(model.inputs, keras.layers.Concatenate()([*pooled, model.output]))


def extract(paths: Sequence[str], extractor: Extractor, cache_root: str | Path, batch_size: int = 32,
            workers: int = 2, min_side: int = 16, log=print) -> Features:
    """Features for every path, computing only the images the cache lacks."""
    from tqdm import tqdm

    from kit.models import backbones, inference

    started = time.time()
    paths = [str(p) for p in paths]
    folder = cache_dir_for(Path(cache_root), extractor)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        keys = list(pool.map(_key_or_none, paths))
    cached = read_parts(folder)
    todo = [i for i, key in enumerate(keys) if key is not None and key not in cached]
    skips = [images.Skip(p, images.UNREADABLE) for p, k in zip(paths, keys) if k is None]

    if todo:
        log(f"features: {extractor.label}: {len(paths) - len(todo)} cached, computing {len(todo)}")
        predict = inference.predictor(feature_model(extractor))
        prep = lambda batch: backbones.preprocess(extractor.backbone, batch)
        bar = tqdm(total=len(todo), desc=f"features {extractor.label}", unit="img", mininterval=2)
        for start in range(0, len(todo), PART_ROWS):
            part = todo[start:start + PART_ROWS]
            batches = ImageBatches([paths[i] for i in part], sizes=(extractor.size,), preprocess=(prep,),
                                   batch_size=batch_size, min_side=min_side, workers=workers)
            part_keys, part_rows = [], []
            for kept, rows in predicted(batches, lambda inputs: _views(predict, inputs[0], extractor.views)):
                part_rows.append(rows)
                part_keys.extend(keys[part[j]] for j in kept)
                bar.update(len(kept))
            skips.extend(batches.skips.values())
            if part_keys:
                rows = np.concatenate(part_rows).astype(np.float32)
                write_part(folder, part_keys, rows)
                faults.point("features")
                cached.update(zip(part_keys, rows))
        bar.close()

    dim = next(iter(cached.values())).shape[-1] if cached else 0
    out = np.zeros((len(paths), len(extractor.views), dim), np.float32)
    ok = np.zeros(len(paths), bool)
    for i, key in enumerate(keys):
        if key in cached:
            out[i], ok[i] = cached[key], True
    return Features(extractor, out, ok, skips, time.time() - started, len(todo))


def _views(predict, batch: np.ndarray, views: Sequence[str]) -> np.ndarray:
    """The model (`predict`, inference.predictor) on each test-time view of a preprocessed batch: [n, views, dim]."""
    return np.stack([predict(view_of(batch, view)).astype(np.float32) for view in views], axis=1)


def _key_or_none(path: str):
    try:
        return file_key(path)
    except OSError:
        return None


def image_vectors(blocks: Sequence[np.ndarray]) -> np.ndarray:
    """One row per image from several extractors' [n, views, d] blocks.

    Views are averaged (test-time augmentation at the feature level), then each block gets
    a signed square root and unit length, so no backbone dominates by scale and a few huge
    activations do not swamp the rest. On the real photos this took SqueezeNet 227+299 with
    logistic regression from 0.068 to 0.062 OOF log loss, against per-feature standardising.
    """
    return np.concatenate([root_unit(block.mean(axis=1)) for block in blocks], axis=1).astype(np.float32)


def root_unit(x: np.ndarray) -> np.ndarray:
    """Signed square root, then unit length along the last axis."""
    x = np.sign(x) * np.sqrt(np.abs(x))
    return x / (np.linalg.norm(x, axis=-1, keepdims=True) + 1e-12)
