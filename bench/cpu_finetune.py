"""Fine-tuning levers for the `cpu` preset on real photos, against logistic regression on pooled features.

Fine-tuning the whole of SqueezeNet with image augmentation pays a forward and a backward
pass through every layer for every image in every epoch; the throughput table shows what
that costs on this machine against the preset's 20-minute budget. Two cheaper levers fit:
- augmented copies: pooled features of K randomly augmented copies of each training image
  join the logistic regression's training rows (validation rows stay original + mirror);
- top block: fire9 fine-tuned on cached fire8 maps, under a head initialised from the
  fold's logistic regression; each step draws the mirrored or original map and a shifted
  crop of it, which is augmentation in feature space.
Everything is SqueezeNet@227 with the same 5 stratified folds; the last row blends the
top-block model with the cpu preset's three-scale logistic regression, weights chosen on OOF.

The whole network is fine-tuned on one fold only (about 8 minutes here), against the other
rows' predictions for the same validation photos.

    python bench/cpu_finetune.py [--copies 4] [--epochs 8] [--whole-epochs 3] [--cache-dir DIR]
"""

from __future__ import annotations

import argparse
import resource
import sys
import time

import numpy as np

from common import REPO, WEIGHTS, fetched_real

from kit import score  # noqa: E402
from kit.config import Config  # noqa: E402
from kit.data.generators import Augment, ImageBatches  # noqa: E402
from kit.fetch import read_index  # noqa: E402
from kit.models import backbones, features, heads  # noqa: E402
from kit.predict import blend  # noqa: E402
from kit.tfquiet import import_keras  # noqa: E402

FIXED = blend.fixed_clip(Config())   # the configured clip, which every score is reported at

SIZE = 227
TOP = "fire9"            # the block that is fine-tuned
BELOW = "fire8_concat"   # the cached map it reads


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache-dir", default=str(REPO / "cache" / "features"))
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--copies", type=int, default=4)
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--whole-epochs", type=int, default=3, help="0 skips fine-tuning the whole network")
    parser.add_argument("--whole-lr", type=float, default=3e-5)
    args = parser.parse_args()
    keras = import_keras()
    keras.utils.set_random_seed(0)

    train = read_index(fetched_real(), "train")
    paths, y = train["path"].tolist(), train["label"].to_numpy()
    rows, times = [], {}

    started = time.time()
    maps, pooled = top_inputs(paths)
    times["maps"] = time.time() - started
    x = features.image_vectors([pooled])
    reference = heads.logreg(x, y, x[:2], args.folds, 0, log=lambda *_: None)
    c = reference.detail["c"]
    rows.append(row(f"logistic regression on pooled fire9 (C={c:g})", reference.oof, y, 0.0))

    started = time.time()
    copies = augmented_copies(paths, args.copies)
    oof = logreg_with_copies(x, features.root_unit(copies), y, args.folds, c=c / 3)
    rows.append(row(f"+ {args.copies} augmented copies per training image", oof, y, time.time() - started))

    started = time.time()
    top = finetune_top(maps, pooled, y, args.folds, args.epochs, args.lr, c / 3)
    rows.append(row(f"{TOP} fine-tuned on cached {BELOW} maps, {args.epochs} epochs", top, y, time.time() - started))

    preset = [features.extract(paths, features.Extractor("squeezenet", s, str(WEIGHTS)), args.cache_dir,
                               log=lambda m: print(m, file=sys.stderr)).features for s in (227, 299, 384)]
    x3 = features.image_vectors(preset)
    lr3 = heads.logreg(x3, y, x3[:2], args.folds, 0, log=lambda *_: None).oof
    rows.append(row("cpu preset: logistic regression, 227 + 299 + 384", lr3, y, 0.0))
    both = np.stack([lr3, top], axis=1)
    w = blend.blend_weights(both, y)
    rows.append(row(f"blend: cpu preset {w[0]:.2f} + fine-tuned {TOP} {w[1]:.2f}", both @ w, y, 0.0))
    if args.whole_epochs:
        va, p, seconds = finetune_whole_fold(paths, pooled, y, args.folds, args.whole_epochs, args.whole_lr, c / 3)
        first = lambda oof: row("", oof[va], y[va], 0.0)
        whole = row(f"whole SqueezeNet fine-tuned, augmented, {args.whole_epochs} epochs", p, y[va], seconds)

    print(f"\n## Fine-tuning levers, SqueezeNet@{SIZE}, {args.folds}-fold OOF on {len(y)} real photos "
          f"(fire8/fire9 maps: {times['maps']:.0f} s)")
    print(f"variant | OOF log loss | at {list(FIXED)} | chosen clip | accuracy | seconds")
    print("--- | --- | --- | --- | --- | ---")
    for r in rows:
        print(f"{r['name']} | {r['raw']:.4f} | {r['fixed']:.4f} | {r['chosen']:.4f} @ {r['clip']:g} | "
              f"{r['acc']:.4f} | {r['s']:.0f}")

    if args.whole_epochs:
        print(f"\n## One fold only ({len(va)} validation photos): the whole network against the rows above")
        print("variant | log loss | chosen clip | accuracy | seconds")
        print("--- | --- | --- | --- | ---")
        for name, r in (("logistic regression on pooled fire9", first(reference.oof)),
                        (f"{TOP} fine-tuned on cached maps", first(top)), ("cpu preset", first(lr3)),
                        (whole["name"], whole)):
            print(f"{name} | {r['raw']:.4f} | {r['chosen']:.4f} @ {r['clip']:g} | {r['acc']:.4f} | {r['s']:.0f}")

    throughput(paths, maps, y, args.epochs, args.folds)
    print(f"\npeak memory of this process: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")


def row(name, oof, y, seconds) -> dict:
    (clip, _), chosen = blend.choose_clip(oof, y)
    return {"name": name, "raw": score.log_loss(y, oof), "fixed": score.log_loss(y, score.clip(oof, *FIXED)),
            "chosen": chosen, "clip": clip, "acc": score.accuracy(y, oof), "s": seconds}


def squeezenet():
    return backbones.build("squeezenet", weights=str(WEIGHTS), input_size=SIZE)


def batches(paths, augment_with=None, seed=0, flip=False, batch_size=32) -> ImageBatches:
    prep = lambda b: backbones.preprocess("squeezenet", b)
    return ImageBatches(paths, sizes=(SIZE,), preprocess=(prep,), batch_size=batch_size,
                        augment_with=augment_with, seed=seed, flip=flip)


def top_inputs(paths) -> tuple[np.ndarray, np.ndarray]:
    """fire8 maps [n, view, h, w, c] (float16: 1 GB for 3,000 images) and pooled fire9 [n, view, 512]."""
    keras = import_keras()
    net = squeezenet()
    model = keras.Model(net.inputs, [net.get_layer(BELOW).output, net.output])
    maps, pooled = None, None
    for view, flip in enumerate((False, True)):
        source = batches(paths, flip=flip)
        for i in range(len(source)):
            (batch,), _, kept = source[i]
            below, out = model.predict_on_batch(batch)
            if maps is None:
                maps = np.zeros((len(paths), 2, *below.shape[1:]), np.float16)
                pooled = np.zeros((len(paths), 2, out.shape[-1]), np.float32)
            maps[kept, view], pooled[kept, view] = below, out
        if source.skips:
            raise SystemExit(f"unreadable training files: {sorted(source.skips)}")
        source.close()
    return maps, pooled


def augmented_copies(paths, k: int) -> np.ndarray:
    """Pooled features of k augmented copies of every image: [n, k, 512]."""
    net = squeezenet()
    out = np.zeros((len(paths), k, net.output.shape[-1]), np.float32)
    for copy in range(k):
        source = batches(paths, augment_with=Augment(), seed=100 + copy)
        for i in range(len(source)):
            (batch,), _, kept = source[i]
            out[kept, copy] = net.predict_on_batch(batch)
        source.close()
    return out


def logreg_with_copies(x, copies, y, k, c) -> np.ndarray:
    from sklearn.linear_model import LogisticRegression

    oof = np.zeros(len(y))
    for tr, va in heads.folds(y, k, 0):
        train_x = np.concatenate([x[tr], *(copies[tr, j] for j in range(copies.shape[1]))])
        model = LogisticRegression(C=c, max_iter=3000).fit(train_x, np.tile(y[tr], 1 + copies.shape[1]))
        oof[va] = model.predict_proba(x[va])[:, 1]
    return oof


def classifier(inp, pooled):
    """Root, unit length (the logistic regression's inputs), dropout, sigmoid."""
    keras = import_keras()
    x = keras.layers.Lambda(lambda t: keras.ops.sqrt(t + 1e-6))(pooled)   # fire9 ends in ReLU: t >= 0
    x = keras.layers.UnitNormalization(name="unit")(x)
    x = keras.layers.Dropout(0.2)(x)
    return keras.Model(inp, keras.layers.Dense(1, activation="sigmoid", name="head")(x))


def top_model():
    """fire9 with its ImageNet weights, reading a fire8 map of any size."""
    keras = import_keras()
    net = squeezenet()
    inp = keras.Input((None, None, net.get_layer(BELOW).output.shape[-1]))
    squeeze = net.get_layer(f"{TOP}_squeeze1x1")(inp)
    x = net.get_layer(f"{TOP}_concat")([net.get_layer(f"{TOP}_expand1x1")(squeeze),
                                        net.get_layer(f"{TOP}_expand3x3")(squeeze)])
    return classifier(inp, keras.layers.GlobalAveragePooling2D()(x))


def init_head(model, pooled: np.ndarray, labels: np.ndarray, c: float) -> None:
    """Start the head where logistic regression on the untouched fire9's vectors ends, one row a view
    (twice the reference's rows, hence the callers' smaller C)."""
    from sklearn.linear_model import LogisticRegression

    vectors = features.root_unit(pooled).reshape(-1, pooled.shape[-1])
    labels = np.repeat(labels, pooled.shape[1])
    fit = LogisticRegression(C=c, max_iter=3000).fit(vectors, labels)
    model.get_layer("head").set_weights([fit.coef_.T.astype(np.float32), fit.intercept_.astype(np.float32)])


def feature_batches(maps, y, seed, batch_size=64, shift=2):
    """One epoch of (map, label) batches: a random view and a random (h - shift)^2 crop per batch."""
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(y))
    for start in range(0, len(order), batch_size):
        rows = order[start:start + batch_size]
        batch = maps[rows, rng.integers(0, 2, len(rows))].astype(np.float32)
        i, j = rng.integers(0, shift + 1, 2)
        side = batch.shape[1] - shift
        yield batch[:, i:i + side, j:j + side], y[rows].astype(np.float32)


def predict_maps(model, maps) -> np.ndarray:
    return np.mean([model.predict(maps[:, v].astype(np.float32), batch_size=256, verbose=0).ravel()
                    for v in range(maps.shape[1])], axis=0)


def finetune_top(maps, pooled, y, k, epochs, lr, c) -> np.ndarray:
    keras = import_keras()
    oof = np.zeros(len(y))
    for fold, (tr, va) in enumerate(heads.folds(y, k, 0)):
        keras.utils.set_random_seed(fold)
        model = top_model()
        init_head(model, pooled[tr], y[tr], c)
        model.compile(optimizer=keras.optimizers.Adam(lr), loss="binary_crossentropy")
        for epoch in range(epochs):
            for xb, yb in feature_batches(maps[tr], y[tr], seed=fold * 1000 + epoch):
                model.train_on_batch(xb, yb)
        oof[va] = predict_maps(model, maps[va])
        print(f"top block fold {fold + 1}/{k}: {score.log_loss(y[va], oof[va]):.4f}", file=sys.stderr)
    return oof


def finetune_whole_fold(paths, pooled, y, k, epochs, lr, c, fold=0) -> tuple[np.ndarray, np.ndarray, float]:
    """The whole of SqueezeNet on augmented images, one fold: (validation rows, predictions, seconds)."""
    from kit.data.generators import keras_dataset

    keras = import_keras()
    started = time.time()
    tr, va = heads.folds(y, k, 0)[fold]
    keras.utils.set_random_seed(fold)
    net = squeezenet()
    model = classifier(net.inputs, net.output)
    init_head(model, pooled[tr], y[tr], c)
    model.compile(optimizer=keras.optimizers.Adam(lr), loss="binary_crossentropy")
    prep = lambda b: backbones.preprocess("squeezenet", b)
    source = ImageBatches([paths[i] for i in tr], y[tr], sizes=(SIZE,), preprocess=(prep,), batch_size=32,
                          augment_with=Augment(), shuffle=True, seed=fold)
    model.fit(keras_dataset(source), epochs=epochs, verbose=0)
    source.close()
    views = []
    for flip in (False, True):
        val = batches([paths[i] for i in va], flip=flip)
        views.append(np.concatenate([model.predict_on_batch(val[i][0]).ravel() for i in range(len(val))]))
        val.close()
    return va, np.mean(views, axis=0), time.time() - started


def throughput(paths, maps, y, epochs, k, steps=12, batch_size=32) -> None:
    """Training images per second: whole network on augmented images against the top block on maps."""
    from kit.methods.finetune import set_trainable

    keras = import_keras()
    net = squeezenet()
    set_trainable(net, 1.0)
    whole = keras.Model(net.inputs, keras.layers.Dense(1, activation="sigmoid")(net.output))
    whole.compile(optimizer=keras.optimizers.Adam(1e-4), loss="binary_crossentropy")
    source = batches(paths[:batch_size * (steps + 2)], augment_with=Augment(), batch_size=batch_size)
    labels = y[:batch_size].astype(np.float32)

    def per_second(step, inputs) -> float:
        step(*inputs[0]), step(*inputs[1])            # build and trace outside the clock
        started = time.perf_counter()
        for xb, yb in inputs[2:]:
            step(xb, yb)
        return batch_size * (len(inputs) - 2) / (time.perf_counter() - started)

    started = time.perf_counter()
    images = [(source[i][0][0], labels[:len(source[i][2])]) for i in range(steps + 2)]
    decode = batch_size * (steps + 2) / (time.perf_counter() - started)
    source.close()
    top = top_model()
    top.compile(optimizer=keras.optimizers.Adam(1e-4), loss="binary_crossentropy")
    crops = [next(feature_batches(maps[i * batch_size:(i + 1) * batch_size], y[:batch_size], i, batch_size))
             for i in range(steps + 2)]
    table = [("whole SqueezeNet, augmented images (decode and augment not counted)",
              per_second(whole.train_on_batch, images)),
             (f"{TOP} on cached {BELOW} maps", per_second(top.train_on_batch, crops))]
    train_images = len(y) * (k - 1) / k
    print(f"\n## Training throughput, SqueezeNet@{SIZE} (decode + augment alone: {decode:.0f} img/s)")
    print(f"what trains | img/s | {k} folds x {epochs} epochs, minutes | ratio")
    print("--- | --- | --- | ---")
    for name, rate in table:
        print(f"{name} | {rate:.1f} | {k * epochs * train_images / rate / 60:.1f} | {rate / table[0][1]:.2f}")


if __name__ == "__main__":
    main()
