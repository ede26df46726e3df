"""GPU check: one epoch of gpu-modern's fine-tuning on the real photos, and whether the GPU waited on its input.

For a machine with a GPU (`make gpu-check`, a few minutes on one). Fine-tunes the preset's first
backbone (EfficientNetV2-S at 384 px) whole, as its fine-tuning phase does, over one fold's worth
of the shared real photos, through the kit's own strategy, precision policy and training input.
Three rates, side by side (each over a second pass, so compiling is left out):
- input alone: the training input (pixel cache + augmentation + prefetch) drained with no model;
- model alone: training steps on one batch held in memory, repeated (the GPU never waits);
- together: an epoch as training runs it.
When together falls clearly below model alone, the GPU waited on the input.
Also: replicas, precision policy, peak GPU memory per device, the one-off cache build.
On a machine without a GPU it says so and exits 0.

    python bench/gpu_check.py [--images 2400] [--weights none|imagenet]
"""

from __future__ import annotations

import argparse
import functools
import sys
import tempfile
import time

from common import REPO  # noqa: F401  (puts the repository on sys.path)

WAITED_BELOW = 0.95   # together / model alone under this: the GPU spent time waiting for batches


def gpu_names() -> list[str]:
    from kit.run import accel

    return [g.name for g in accel.gpus()]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=2400, help="training images (one fold of the 3,000 photos)")
    parser.add_argument("--weights", default="none", help="none (random: the same speed) or imagenet")
    parser.add_argument("--backbone", default="", help="another backbone@size (tests: tiny@32)")
    parser.add_argument("--on-cpu", action="store_true", help="run the check without a GPU (tests of this script)")
    parser.add_argument("--source", help="a competition folder to fetch instead of the shared real photos (tests)")
    parser.add_argument("--data-dir", help="where --source is fetched to")
    args = parser.parse_args()
    if bool(args.source) != bool(args.data_dir):
        parser.error("--source and --data-dir go together")
    gpus = gpu_names()
    if not gpus and not args.on_cpu:
        print("gpu-check: no GPU visible to TensorFlow on this machine; nothing to check (exit 0)")
        return 0
    from common import fetched_real

    from kit import config, fetch
    from kit.data import train_input
    from kit.data.generators import Augment
    from kit.fetch import read_index
    from kit.methods.finetune import build_model, set_trainable
    from kit.models import backbones
    from kit.run import accel
    from kit.tfquiet import import_keras

    keras = import_keras()
    cfg = config.resolve("gpu-modern", {"weights": args.weights, **({"backbones": args.backbone} if args.backbone else {})})
    extractor = cfg.extractors()[0]
    data = fetch.fetch_from(args.source, args.data_dir, log=lambda *_: None) if args.source else fetched_real()
    index = read_index(data, "train").head(args.images)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="kit-gpu-check-") as scratch:
        cache = train_input.pixel_cache(index["path"], [extractor.size], scratch, workers=cfg.workers, log=print)
        build = time.perf_counter() - started
        with accel.precision(cfg.mixed_precision) as policy:
            strategy = accel.strategy()
            replicas = strategy.num_replicas_in_sync
            source = train_input.TrainInput(cache, [extractor.size],
                                            [functools.partial(backbones.preprocess, extractor.backbone)],
                                            index["label"].to_numpy(), cfg.seed, Augment(), replicas)
            rows = [i for i in range(len(index)) if cache.ok[i]]
            plan = source.plan(rows, cfg.batch_size)
            images = plan.steps * plan.batch_size
            input_rate = drain(source.training(rows, cfg.batch_size, 0, 1), plan.steps, plan.batch_size)
            with strategy.scope():
                model = build_model([extractor], cfg, 2)   # Redux: two classes
                for net in (layer for layer in model.layers if isinstance(layer, keras.Model)):
                    set_trainable(net, cfg.unfreeze)
                model.compile(optimizer=keras.optimizers.Adam(cfg.finetune_lr), loss="binary_crossentropy")
            one = source.training(rows, cfg.batch_size, 0, 1).take(1).cache().repeat()
            reset_memory(gpus)
            model_rate = second_epoch_rate(model, one, plan.steps, plan.batch_size)
            together = second_epoch_rate(model, source.training(rows, cfg.batch_size, 0, 2), plan.steps,
                                         plan.batch_size)
            memory = peak_memory(gpus)
    print(f"\n## gpu-check: {extractor.label} fine-tuned whole (gpu-modern's fine-tuning phase), "
          f"weights {args.weights}, {images} images of {len(index)}, batch {plan.batch_size}")
    print(f"devices: {len(gpus)} GPU(s), {replicas} replica(s); precision policy {policy}")
    print(f"pixel cache build (once per run): {build:.1f} s, {len(index) / build:.0f} images/s")
    print("what | images/s | ratio to together")
    print("--- | --- | ---")
    for name, value in (("input alone", input_rate), ("model alone (one batch repeated)", model_rate),
                        ("together (the epoch)", together)):
        print(f"{name} | {value:.1f} | {value / together:.2f}")
    for name, peak in memory.items():
        print(f"peak GPU memory {name}: {peak / 2**30:.2f} GiB")
    if not memory:
        print("peak GPU memory: no GPU (--on-cpu)")
    waited = together < WAITED_BELOW * model_rate
    print(f"the GPU {'waited' if waited else 'did not wait'} on input: together is {together / model_rate:.2f} of "
          f"model alone (waiting below {WAITED_BELOW})")
    print(f"gpu-check: done in {time.perf_counter() - started:.0f} s")
    return 0


def drain(dataset, steps: int, batch: int) -> float:
    iterator = iter(dataset)
    next(iterator)                                   # tracing and the first batch are not timed
    started = time.perf_counter()
    for _ in range(steps - 1):
        next(iterator)
    return (steps - 1) * batch / (time.perf_counter() - started)


def second_epoch_rate(model, dataset, steps: int, batch: int) -> float:
    """Two epochs; the second is timed, so compiling and the pipeline's start are left out."""
    from kit.tfquiet import import_keras

    keras = import_keras()
    seconds = []

    class _Time(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.started = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            seconds.append(time.perf_counter() - self.started)

    model.fit(dataset, steps_per_epoch=steps, epochs=2, callbacks=[_Time()], verbose=0)
    return steps * batch / seconds[-1]


def reset_memory(gpus) -> None:
    import tensorflow as tf

    for index in range(len(gpus)):
        tf.config.experimental.reset_memory_stats(f"GPU:{index}")


def peak_memory(gpus) -> dict:
    import tensorflow as tf

    return {f"GPU:{i}": tf.config.experimental.get_memory_info(f"GPU:{i}")["peak"] for i in range(len(gpus))}


if __name__ == "__main__":
    sys.exit(main())
