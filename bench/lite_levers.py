"""What each lever gives a `cpu` preset built on EfficientNet-Lite: variant, scale, views, heads, blending, clip.

Runs on ../shared/data/dvc-real (fetched into data/) with the Lite weights from their pip packages.
Every (backbone, size) is extracted once into the feature cache (the first five with four views:
orig, flip, zoom, zoom-flip; the rest with orig and flip), so each variant picks views out of one
cached block. Prints one table:
variant, feature width, 5-fold OOF log loss (raw, at [0.005, 0.995], at the clip chosen on OOF),
accuracy, and the head's time; and the extraction time per (backbone, size) when it ran.

    python bench/lite_levers.py [--extract-only] [--only lite2@320,...] [--folds 5] [--seed 0]
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np

from common import DATA, REPO, WEIGHTS, fetched_real

from kit import score  # noqa: E402
from kit.config import Config  # noqa: E402
from kit.fetch import read_index  # noqa: E402
from kit.models import features, heads  # noqa: E402
from kit.predict import blend  # noqa: E402

FIXED = blend.fixed_clip(Config())   # the configured clip, which every score is reported at

ALL_VIEWS = ("orig", "flip", "zoom", "zoom-flip")
EXTRACTORS = ("lite2@320", "lite2@384", "lite0@224", "lite2@260", "lite1@240", "lite0@288", "lite1@300",
              "squeezenet@227", "squeezenet@299")
FOUR_VIEWS = EXTRACTORS[:5]
VIEW_SETS = {"orig": [0], "flip": [0, 1], "4": [0, 1, 2, 3], "zoom": [2, 3]}


def extractor(token: str) -> features.Extractor:
    """The first five are cached with all four views; the rest with orig + flip only (zoom views did not
    pay on the first five), which is also what the preset extracts, so the preset reuses those rows.
    "squeezenet@SIZE" is the old preset's network with the weights in ../shared/data/weights."""
    variant, size = token.split("@")
    if variant == "squeezenet":   # the old preset's network, to see whether it still adds anything
        return features.Extractor("squeezenet", int(size), str(WEIGHTS), (), ("orig", "flip"))
    views = ALL_VIEWS if token in FOUR_VIEWS else ("orig", "flip")
    return features.Extractor(f"efficientnet_{variant}", int(size), "imagenet", (), views)


def load_blocks(paths, tokens, cache_dir) -> dict[str, np.ndarray]:
    blocks = {}
    for token in tokens:
        started = time.time()
        f = features.extract(paths, extractor(token), cache_dir, batch_size=32, workers=2,
                             log=lambda m: print(m, file=sys.stderr))
        if f.computed:
            views = len(extractor(token).views)
            print(f"extract {token} x {views} views: {time.time() - started:.0f} s for {f.computed} images "
                  f"({f.computed * views / (time.time() - started):.1f} forward passes/s)", flush=True)
        if not f.ok.all():
            raise SystemExit(f"{token}: {int((~f.ok).sum())} photos could not be read")
        blocks[token] = f.features
    return blocks


def x_of(blocks, spec: str) -> np.ndarray:
    """A variant's features: "lite2@320:flip+lite2@384:zoom" = one root-unit block per term."""
    parts = []
    for term in spec.split("+"):
        token, _, views = term.partition(":")
        parts.append(blocks[token][:, VIEW_SETS[views or "flip"]])
    return features.image_vectors(parts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache-dir", default=str(REPO / "cache" / "features"))
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0, help="fold assignment: rerun with others to see the noise")
    parser.add_argument("--only", default=",".join(EXTRACTORS), help="comma-separated variant@size to extract")
    parser.add_argument("--extract-only", action="store_true")
    parser.add_argument("--variants", default="", help="comma-separated variant specs to evaluate (default: the table)")
    args = parser.parse_args()
    fetched_real()
    train = read_index(DATA, "train")
    y = train["label"].to_numpy()
    tokens = [t for t in args.only.split(",") if t]
    blocks = load_blocks(train["path"], tokens, args.cache_dir)
    if args.extract_only:
        return
    specs = [s for s in args.variants.split(",") if s] or default_variants(tokens)
    rows = [evaluate(blocks, spec, y, args) for spec in specs]
    print(f"\n{'variant':60} {'dims':>5} {'raw':>7} {'[.005]':>7} {'chosen':>14} {'acc':>7} {'C':>5} {'s':>4}")
    for r in rows:
        print(f"{r['name']:60} {r['dims']:5d} {r['raw']:7.4f} {r['fixed']:7.4f} {r['chosen']:7.4f}@{r['clip']:<6g} "
              f"{r['acc']:7.4f} {r['c']:5g} {r['s']:4.0f}", flush=True)


def evaluate(blocks, spec: str, y, args) -> dict:
    """One table row. A spec is features for logistic regression; "dense:SPEC" puts the Dropout + Dense
    head on them instead; "blend:SPEC|SPEC..." fits a logistic regression on each and blends them on OOF."""
    started = time.time()
    quiet = lambda *_: None
    if spec.startswith("blend:"):
        xs = [x_of(blocks, part) for part in spec[len("blend:"):].split("|")]
        oof = np.stack([heads.logreg(x, y, x[:1], args.folds, args.seed, log=quiet).oof for x in xs], axis=1)
        weights = blend.blend_weights(oof, y)
        return _row(f"{spec} (w={'/'.join(f'{w:.2f}' for w in weights)})", 0, oof @ weights, y,
                    time.time() - started, 0)
    if spec.startswith("dense:"):
        x = x_of(blocks, spec[len("dense:"):])
        result = heads.dense(x, y, x[:2], args.folds, args.seed, epochs=30, log=quiet)
        return _row(spec, x.shape[1], result.oof, y, time.time() - started, 0)
    x = x_of(blocks, spec)
    result = heads.logreg(x, y, x[:2], args.folds, args.seed, log=quiet)
    return _row(spec, x.shape[1], result.oof, y, time.time() - started, result.detail.get("c"))


# The README's table: one row per lever, each against the one before it or the preset.
TABLE = (
    "squeezenet@227:flip+squeezenet@299:flip",          # the old preset's network at two of its scales
    "lite0@224:flip", "lite1@240:flip", "lite2@260:flip",   # each at its native size
    "lite0@288:flip", "lite1@300:flip",                 # above the native size
    "lite2@320:orig", "lite2@320:flip", "lite2@320:4", "lite2@320:flip+lite2@320:zoom",
    "lite2@384:flip",
    "lite2@320:flip+lite2@260:flip", "lite2@320:flip+lite2@384:flip",   # two scales of Lite2
    "lite2@320:flip+lite0@224:flip", "lite2@384:flip+lite0@224:flip", "lite2@320:flip+lite0@288:flip",
    "lite2@320:flip+lite1@240:flip", "lite1@300:flip+lite0@224:flip", "lite1@300:flip+lite2@260:flip",
    "lite2@320:flip+lite1@300:flip",                    # the preset
    "lite2@320:flip+lite1@300:flip+lite0@224:flip",
    "lite2@320:flip+lite1@300:flip+squeezenet@227:flip",
    "blend:lite2@320:flip|lite1@300:flip", "dense:lite2@320:flip+lite1@300:flip",
)


def default_variants(tokens) -> list[str]:
    """The table, limited to the variants whose features were asked for."""
    return [spec for spec in TABLE if _tokens(spec) <= set(tokens)]


def _tokens(spec: str) -> set[str]:
    """The "variant@size" features a spec uses: "blend:a:flip|b:flip" -> {"a", "b"}."""
    body = spec.partition(":")[2] if spec.startswith(("blend:", "dense:")) else spec
    return {term.partition(":")[0] for term in body.replace("|", "+").split("+")}


def _row(name, dims, oof, y, seconds, c):
    (clip, _), chosen = blend.choose_clip(oof, y)
    return {"name": name, "dims": dims, "raw": score.log_loss(y, oof),
            "fixed": score.log_loss(y, score.clip(oof, *FIXED)), "chosen": chosen, "clip": clip,
            "acc": score.accuracy(y, oof), "s": seconds, "c": c or 0}


if __name__ == "__main__":
    main()
