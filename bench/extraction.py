"""Feature extraction on the CPU: images per second per backbone, and memory that stays flat.

Part 1 runs every registry backbone (random weights: speed does not depend on them) on the
same real photos at its default input size: decode, preprocessing and forward pass, one view. Part 2 extracts SqueezeNet features for 1,000
and then 10,000 synthetic images, each in its own process, and compares peak RSS: the
pipeline streams batches and writes parts, so ten times the images must not cost ten times
the memory.

    python bench/extraction.py [--images 64] [--skip-throughput] [--skip-memory]
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import REPO, fetched_real, print_table


def throughput(n_images: int, tokens=()) -> list[dict]:
    """Decode + preprocess + forward pass, timed over whole batches after one warm-up batch.

    ``tokens`` ("name@size") limits the run to those; by default every entry at its default size."""
    from kit.data.generators import ImageBatches
    from kit.fetch import read_index
    from kit.models import backbones, features
    from kit.tfquiet import import_keras

    import_keras()
    paths = read_index(fetched_real(), "train")["path"].tolist()[:n_images]
    rows = []
    chosen = [t.partition("@") for t in tokens] or [(n, "", "") for n in backbones.names()]
    for name, _, size_text in chosen:
        entry = backbones.get(name)
        size = int(size_text) if size_text else entry.default_input_size
        model = features.feature_model(features.Extractor(name, size, weights=None))
        batches = ImageBatches(paths, sizes=(size,), batch_size=16,
                               preprocess=(lambda b, name=name: backbones.preprocess(name, b),))
        model.predict_on_batch(batches[0][0][0])   # trace once on the timed shape
        started = time.perf_counter()
        for i in range(1, len(batches)):
            model.predict_on_batch(batches[i][0][0])
        rate = (len(paths) - 16) / (time.perf_counter() - started)
        batches.close()
        rows.append({"name": f"{name}@{size}", "images_per_s": rate})
        print(f"{name}: {rate:.1f} img/s", file=sys.stderr)
    return rows


def peak_rss_for(n: int) -> float:
    """Run the memory probe for n images in a fresh process; the peak RSS it reports, in MB."""
    result = subprocess.run([sys.executable, __file__, "--probe", str(n)], check=True, cwd=REPO,
                            capture_output=True, text=True)
    return float(result.stdout.split("peak_rss_mb")[-1])


def probe(n: int) -> None:
    import cv2
    import numpy as np

    from kit.data import synthetic
    from kit.models import features
    from kit.tfquiet import import_keras

    import_keras()
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as folder:
        paths = []
        for i in range(n):
            path = Path(folder) / f"{i}.jpg"
            image = cv2.resize(synthetic.draw_image(rng, i % 2), (160, 120))
            path.write_bytes(synthetic.encode_jpeg(image))
            paths.append(str(path))
        result = features.extract(paths, features.Extractor("squeezenet", 227, None, views=("orig",)),
                                  Path(folder) / "cache", batch_size=32, log=lambda *_: None)
        print(f"probe {n}: {result.ok.sum()} images in {result.seconds:.0f} s "
              f"({n / result.seconds:.0f} img/s)", file=sys.stderr)
    print(f"peak_rss_mb {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=64, help="16 to warm up + whole batches of 16 timed")
    parser.add_argument("--skip-throughput", action="store_true")
    parser.add_argument("--backbones", default="", help="comma-separated name@size to time (default: every entry)")
    parser.add_argument("--skip-memory", action="store_true")
    parser.add_argument("--probe", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.probe:
        return probe(args.probe)
    if not args.skip_throughput:
        rows = throughput(args.images, [t for t in args.backbones.split(",") if t])
        print_table(f"feature extraction on 2 CPU cores, {args.images - 16} real photos, one view "
                    "(ratio: against squeezenet)", rows, ["images_per_s"], "squeezenet@227", "images_per_s")
    if not args.skip_memory:
        small, large = peak_rss_for(1000), peak_rss_for(10000)
        rows = [{"name": "1,000 synthetic images", "peak_rss_mb": small},
                {"name": "10,000 synthetic images", "peak_rss_mb": large}]
        print_table("peak memory of feature extraction (squeezenet@227, one process each)",
                    rows, ["peak_rss_mb"], "1,000 synthetic images", "peak_rss_mb")


if __name__ == "__main__":
    main()
