"""Training input: images per second delivered to model.fit at 384 px with augmentation, today's against the cache.

Side by side in one run, on the same real photos, labels and augmentation ranges:
- `generators.ImageBatches` (what fine-tuning used until now): decode, resize and augment every
  image in Python threads (OpenCV and numpy) on every epoch;
- `train_input.TrainInput`: decoded once into a uint8 memmap, augmented by TensorFlow ops in the
  tf.data graph, prefetched.
Both feed the same near-free model (global average pooling and one Dense), so what is timed is the
input; the first epoch (tracing, warm-up) is not timed. The cache's one-off build is shown beside.
The last line is `train-input ratio R`: the cache's images/s over today's.

    python bench/train_input.py [--limit 640] [--size 384] [--epochs 3]
"""

from __future__ import annotations

import argparse
import functools
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from common import fetched_real, print_table

BACKBONE = "efficientnetv2_s"     # gpu-modern's, at its 384 px


def consumer(size: int):
    from kit.tfquiet import import_keras

    keras = import_keras()
    inputs = keras.Input((size, size, 3))
    outputs = keras.layers.Dense(1, activation="sigmoid")(keras.layers.GlobalAveragePooling2D()(inputs))
    model = keras.Model(inputs, outputs)
    model.compile(optimizer="adam", loss="binary_crossentropy")
    return model


def epoch_seconds():
    from kit.tfquiet import import_keras

    keras = import_keras()

    class _Times(keras.callbacks.Callback):
        seconds: list = []

        def on_epoch_begin(self, epoch, logs=None):
            self._start = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            self.seconds.append(time.perf_counter() - self._start)

    return _Times()


def rate(images_per_epoch: int, times) -> float:
    """Images per second over every epoch but the first."""
    return images_per_epoch * (len(times.seconds) - 1) / sum(times.seconds[1:])


def today(paths, labels, size: int, epochs: int, workers: int) -> float:
    from kit.data.generators import Augment, ImageBatches, keras_dataset
    from kit.models import backbones

    batches = ImageBatches(paths, labels, sizes=[size], preprocess=[lambda b: backbones.preprocess(BACKBONE, b)],
                           batch_size=32, augment_with=Augment(), shuffle=True, seed=0, workers=workers)
    times = epoch_seconds()
    consumer(size).fit(keras_dataset(batches), epochs=epochs, callbacks=[times], verbose=0)
    batches.close()
    return rate(len(paths), times)


def cached(paths, labels, size: int, epochs: int, workers: int, root: Path, augment: bool) -> tuple[float, float]:
    from kit.data import train_input
    from kit.data.generators import Augment
    from kit.models import backbones

    started = time.perf_counter()
    cache = train_input.pixel_cache(paths, [size], root, workers=workers, log=lambda m: print(m, file=sys.stderr))
    build = len(paths) / (time.perf_counter() - started)
    source = train_input.TrainInput(cache, [size], [functools.partial(backbones.preprocess, BACKBONE)], labels, seed=0,
                                    aug=Augment() if augment else None)
    rows = np.arange(len(paths))
    plan = source.plan(rows, 32)
    times = epoch_seconds()
    consumer(size).fit(source.training(rows, 32, 0, epochs), steps_per_epoch=plan.steps, epochs=epochs,
                       callbacks=[times], verbose=0)
    return rate(len(rows), times), build   # one replica: every row, every epoch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit", type=int, default=640, help="training images")
    parser.add_argument("--size", type=int, default=384)
    parser.add_argument("--epochs", type=int, default=3, help="the first is not timed")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    data = fetched_real()
    from kit.fetch import read_index

    index = read_index(data, "train").head(args.limit)
    paths, labels = index["path"].tolist(), index["label"].to_numpy()
    for path in paths:   # the page cache warm for both: neither pays for a cold disk
        Path(path).read_bytes()
    root = Path(tempfile.mkdtemp(prefix="kit-bench-pixels-"))
    try:
        old = today(paths, labels, args.size, args.epochs, args.workers)
        new, build = cached(paths, labels, args.size, args.epochs, args.workers, root, augment=True)
        plain, _ = cached(paths, labels, args.size, args.epochs, args.workers, root, augment=False)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    rows = [{"name": "today: ImageBatches, decode + augment in threads every epoch", "images_per_s": old},
            {"name": "cache + tf.data tensor augmentation", "images_per_s": new},
            {"name": "cache + tf.data, no augmentation (for scale)", "images_per_s": plain},
            {"name": "cache build, once per run (decode + resize)", "images_per_s": build}]
    print_table(f"training input to model.fit: {len(paths)} real photos at {args.size} px, augmented, "
                f"{args.workers} loader threads, epochs 2..{args.epochs} timed (ratio: against today's)",
                rows, ["images_per_s"], rows[0]["name"], "images_per_s")
    print(f"train-input ratio {new / old:.2f}")


if __name__ == "__main__":
    main()
