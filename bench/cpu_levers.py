"""What each lever gives the `cpu` preset on real photos: scales, test-time views, layers, heads, blending, clip.

Runs on ../shared/data/dvc-real (fetched into data/) with the SqueezeNet weights in
../shared/data/weights. Features are cached, so only the first run pays for extraction.
Prints one table: variant, feature width, 5-fold OOF log loss (raw, at [0.005, 0.995],
at the clip chosen on OOF), accuracy, and the head's time.

    python bench/cpu_levers.py [--data-dir DIR] [--weights DIR] [--folds 5] [--seed 0]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from kit import score  # noqa: E402
from kit.config import Config  # noqa: E402
from kit.fetch import read_index  # noqa: E402
from kit.models import features, heads  # noqa: E402
from kit.predict import blend  # noqa: E402
from kit.tfquiet import import_keras  # noqa: E402

FIXED = blend.fixed_clip(Config())   # the configured clip, which every score is reported at

REPO = Path(__file__).resolve().parents[1]
LAYERS = ("fire7_concat", "fire8_concat")
ZOOM_VIEWS = ("zoom", "zoom-flip")   # the central 80%, resized back (generators.ZOOM), and its mirror


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=str(REPO / "data" / "dogs-vs-cats-redux-kernels-edition"))
    parser.add_argument("--weights", default=str(REPO.parent / "shared" / "data" / "weights"))
    parser.add_argument("--cache-dir", default=str(REPO / "cache" / "features"))
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--head-epochs", type=int, default=30)
    parser.add_argument("--seed", type=int, default=0, help="fold assignment: rerun with others to see the noise")
    args = parser.parse_args()
    import_keras()

    train = read_index(args.data_dir, "train")
    y = train["label"].to_numpy()
    extract = lambda size, layers=(), views=("orig", "flip"): features.extract(
        train["path"], features.Extractor("squeezenet", size, args.weights, layers, views), args.cache_dir,
        log=lambda m: print(m, file=sys.stderr))

    blocks = {}
    for size in (227, 299, 384):
        f = extract(size)
        blocks[f"{size}"] = f
        print(f"extract squeezenet@{size}: {f.seconds:.0f} s ({f.computed} computed)", file=sys.stderr)
    for size in (227, 299):
        f = extract(size, LAYERS)
        blocks[f"{size}+layers"] = f
        print(f"extract squeezenet@{size}+layers: {f.seconds:.0f} s ({f.computed} computed)", file=sys.stderr)
        f = extract(size, views=ZOOM_VIEWS)
        blocks[f"{size}-zoom"] = f
        print(f"extract squeezenet@{size}, zoom views: {f.seconds:.0f} s ({f.computed} computed)", file=sys.stderr)

    def x_of(*names, views=slice(None)):
        return features.image_vectors([blocks[n].features[:, views] for n in names])

    def four_views(size):
        return features.image_vectors([np.concatenate([blocks[f"{size}"].features, blocks[f"{size}-zoom"].features], 1)])

    def standardised(*names):
        """The same features with per-feature standardising instead of sqrt + unit length."""
        from sklearn.preprocessing import StandardScaler

        raw = np.concatenate([blocks[n].features.mean(axis=1) for n in names], axis=1)
        return StandardScaler().fit_transform(raw)

    variants = [
        ("227, original view only", lambda: x_of("227", views=slice(0, 1)), "logreg"),
        ("227, flip-averaged", lambda: x_of("227"), "logreg"),
        ("227 + 299, standardised instead of sqrt + L2", lambda: standardised("227", "299"), "logreg-std"),
        ("227 + 299", lambda: x_of("227", "299"), "logreg"),
        ("227 + 299 + 384", lambda: x_of("227", "299", "384"), "logreg"),
        ("227, four views averaged (orig, flip, zoom, zoom-flip)", lambda: four_views(227), "logreg"),
        ("227 + 299, zoom views as blocks of their own", lambda: x_of("227", "299", "227-zoom", "299-zoom"), "logreg"),
        ("227 + 299 + 384 + the zoom blocks", lambda: x_of("227", "299", "384", "227-zoom", "299-zoom"), "logreg"),
        ("227 + 299, fire7/8 pooled too", lambda: x_of("227+layers", "299+layers"), "logreg"),
        ("227 + 299 + 384, dense head", lambda: x_of("227", "299", "384"), "dense"),
    ]
    rows, oofs = [], {}
    for name, make_x, head in variants:
        x = make_x()
        started = time.time()
        if head == "dense":
            result = heads.dense(x, y, x[:2], args.folds, args.seed, epochs=args.head_epochs, log=lambda *_: None)
        else:
            grid = (0.001, 0.003, 0.01, 0.03, 0.1) if head == "logreg-std" else heads.LOGREG_C_GRID
            result = heads.logreg(x, y, x[:2], args.folds, args.seed, grid=grid, log=lambda *_: None)
        oofs[name] = result.oof
        rows.append(_row(name, x.shape[1], result.oof, y, time.time() - started))
    lr, dense = variants[4][0], variants[-1][0]
    both = np.stack([oofs[lr], oofs[dense]], axis=1)
    w = blend.blend_weights(both, y)
    rows.append(_row(f"blend: 227+299+384 logreg and dense (w={w[0]:.2f}/{w[1]:.2f})", 0, both @ w, y, 0))

    print(f"\n{'variant':58} {'dims':>5} {'raw':>7} {'[.005]':>7} {'chosen':>13} {'acc':>7} {'s':>5}")
    for r in rows:
        print(f"{r['name']:58} {r['dims']:5d} {r['raw']:7.4f} {r['fixed']:7.4f} {r['chosen']:7.4f}@{r['clip']:<5g} "
              f"{r['acc']:7.4f} {r['s']:5.0f}")


def _row(name, dims, oof, y, seconds):
    (clip, _), chosen = blend.choose_clip(oof, y)
    return {"name": name, "dims": dims, "raw": score.log_loss(y, oof),
            "fixed": score.log_loss(y, score.clip(oof, *FIXED)), "chosen": chosen, "clip": clip,
            "acc": score.accuracy(y, oof), "s": seconds}


if __name__ == "__main__":
    main()
