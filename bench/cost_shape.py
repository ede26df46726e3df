"""Cost shape: a head on cached features against the same frozen backbone trained end to end.

Seed 004 trained its frozen backbones end to end, paying every backbone's forward pass in
every epoch. Here: SqueezeNet@227 with ImageNet weights, the same training and held-out
images, 10 epochs each way, on this machine. `ratio` is time over the cached-features run.

    python bench/cost_shape.py [--images 800] [--epochs 10]
"""

from __future__ import annotations

import argparse
import tempfile


from common import WEIGHTS, fetched_real, print_table, timed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=800)
    parser.add_argument("--epochs", type=int, default=10)
    args = parser.parse_args()
    data = fetched_real()

    from kit import config, score
    from kit.data import dataset
    from kit.data.generators import keras_dataset
    from kit.fetch import read_index
    from kit.methods import finetune
    from kit.models import features, heads
    from kit.tfquiet import import_keras

    keras = import_keras()
    index = dataset.limit_index(read_index(data, "train"), args.images, seed=0)
    train, val = dataset.split_train_val(index, 0.2, seed=0)
    cfg = config.resolve("cpu", {"backbones": "squeezenet@227", "weights": str(WEIGHTS), "batch_size": 32,
                                 "augment": False, "epochs": args.epochs})
    extractor = features.Extractor("squeezenet", 227, str(WEIGHTS), views=("orig",))
    t = {}
    with tempfile.TemporaryDirectory() as cache:
        with timed(t, "extract"):
            f_train = features.extract(train["path"], extractor, cache, log=lambda *_: None)
            f_val = features.extract(val["path"], extractor, cache, log=lambda *_: None)
    with timed(t, "head"):
        x_train, x_val = features.image_vectors([f_train.features]), features.image_vectors([f_val.features])
        p_head, _ = heads.dense_fold(x_train, train["label"].to_numpy(), x_val, x_val[:1], epochs=args.epochs, seed=0)

    keras.utils.set_random_seed(0)
    model = finetune.build_model([extractor], cfg, 2)   # Redux: two classes
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="binary_crossentropy")
    batches = finetune._batches([extractor], train, cfg)   # decoded in order, labelled: no augmentation here
    with timed(t, "end_to_end"):
        model.fit(keras_dataset(batches), epochs=args.epochs, verbose=0)
    p_e2e, _ = finetune.predict_tta(model, [extractor], val, cfg, 2)
    # predict_tta averages the mirror too; score the head the same way for a like-for-like loss.
    y = val["label"].to_numpy()
    rows = [
        {"name": f"cached features: extract once + head x{args.epochs} epochs", "seconds": t["extract"] + t["head"],
         "val_log_loss": score.log_loss(y, p_head)},
        {"name": f"  of which the head's {args.epochs} epochs", "seconds": t["head"], "val_log_loss": float("nan")},
        {"name": f"frozen end to end x{args.epochs} epochs (seed 004's way)", "seconds": t["end_to_end"],
         "val_log_loss": score.log_loss(y, p_e2e)},
    ]
    print_table(f"cost shape on {len(train)} training / {len(val)} held-out real photos",
                rows, ["seconds", "val_log_loss"], rows[0]["name"], "seconds")
    print(f"end to end / head epochs alone: {t['end_to_end'] / t['head']:.1f}x")


if __name__ == "__main__":
    main()
