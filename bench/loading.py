"""Image loading: the kit's OpenCV pipeline against keras.utils.image_dataset_from_directory.

Same files (the fetched real training images), decoded and resized to 224 and 299, images
per second measured side by side in one run. `ratio` is throughput over Keras' at the same size.

    python bench/loading.py [--limit 1500]
"""

from __future__ import annotations

import argparse
import sys

from common import fetched_real, print_table, timed


def kit_rate(paths, sizes, workers, reduced=True) -> float:
    from kit.data import generators, images

    if not reduced:   # decode at full scale: what the loader would cost without IMREAD_REDUCED_*
        original = images._reduction_flag
        images._reduction_flag = lambda header, target: __import__("cv2").IMREAD_COLOR
    try:
        batches = generators.ImageBatches(paths, sizes=sizes, batch_size=64, workers=workers)
        t = {}
        with timed(t, "s"):
            for i in range(len(batches)):
                batches[i]
        batches.close()
    finally:
        if not reduced:
            images._reduction_flag = original
    return len(paths) / t["s"]


def keras_rate(folder, size, limit) -> float:
    from kit.tfquiet import import_keras

    keras = import_keras()
    ds = keras.utils.image_dataset_from_directory(folder, labels=None, image_size=(size, size), batch_size=64,
                                                  shuffle=False, verbose=False)
    n, t = 0, {}
    with timed(t, "s"):
        for batch in ds:
            n += int(batch.shape[0])
            if n >= limit:
                break
    return n / t["s"]


def warm_page_cache(paths) -> None:
    """Read every file once, so no contender pays for the cold disk cache of whoever runs first."""
    for path in paths:
        with open(path, "rb") as f:
            f.read()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit", type=int, default=1500, help="images per measurement")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    data = fetched_real()
    from kit.fetch import read_index

    all_paths = read_index(data, "train")["path"].tolist()
    paths = all_paths[: args.limit]
    warm_page_cache(all_paths)
    keras = {}
    for size in (224, 299):
        keras_rate(data / "train", size, 128)                  # build tf.data once before timing
        keras[size] = keras_rate(data / "train", size, args.limit)
        rows = [{"name": f"keras image_dataset_from_directory @{size}", "images_per_s": keras[size]},
                {"name": f"kit loader @{size}, full-scale decode", "images_per_s": kit_rate(paths, (size,), args.workers, reduced=False)},
                {"name": f"kit loader @{size}", "images_per_s": kit_rate(paths, (size,), args.workers)}]
        print_table(f"loading {args.limit} real photos at {size} px, {args.workers} workers (ratio: against Keras)",
                    rows, ["images_per_s"], rows[0]["name"], "images_per_s")
        print(f"measured {size}", file=sys.stderr)
    both = 1 / (1 / keras[224] + 1 / keras[299])
    rows = [{"name": "keras @224 then @299 (two decodes)", "images_per_s": both},
            {"name": "kit loader @224+299 from one decode", "images_per_s": kit_rate(paths, (224, 299), args.workers)}]
    print_table("two input sizes per image (seed 004 fed 299 and 224 to one model)", rows, ["images_per_s"],
                rows[0]["name"], "images_per_s")


if __name__ == "__main__":
    main()
