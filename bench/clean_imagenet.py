"""Choosing K for the ImageNet anomaly check on the real photos, against the known lists and the label-noise check.

For each set of voters (EfficientNet-Lite tops on cached pooled features, orig + flip averaged) and
each K, prints how many photos the check flags, how many of those the published lists or the
label-noise check (OOF probability of the label below 0.05 from a logistic regression on the
noise features) also flag, and how many of the listed photos it finds. Writes the contact sheet of
the flags at --sheet-k to reports/clean-imagenet/ for looking at.

    python bench/clean_imagenet.py [--sheet-voters lite2@320,lite1@300] [--sheet-k 20] [--sheet-k-cat 20]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from common import DATA, REPO, fetched_real
from lite_levers import extractor

from kit import clean  # noqa: E402
from kit.fetch import read_index  # noqa: E402
from kit.models import backbones, features, heads  # noqa: E402

KS = (1, 2, 3, 5, 10, 20, 60)
VOTER_SETS = ("lite0@224", "lite2@260", "lite2@320", "lite2@320,lite1@300", "lite0@224,lite1@240,lite2@260",
              "lite0@224,lite1@240,lite2@260,lite2@320")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache-dir", default=str(REPO / "cache" / "features"))
    parser.add_argument("--noise-features", default="lite2@320,lite1@300",
                        help="features of the label-noise logistic regression (the cpu preset's)")
    parser.add_argument("--sheet-voters", default="lite2@320,lite1@300", help="the cpu preset's backbones")
    parser.add_argument("--sheet-k", type=int, default=20, help="K for dogs (and cats unless --sheet-k-cat)")
    parser.add_argument("--sheet-k-cat", type=int, default=0)
    args = parser.parse_args()
    fetched_real()
    train = read_index(DATA, "train")
    log = lambda m: print(m, file=sys.stderr)
    noise_tokens = args.noise_features.split(",")
    tokens = sorted({t for group in (*VOTER_SETS, args.sheet_voters) for t in group.split(",")} | set(noise_tokens))
    pooled = {t: features.extract(train["path"], extractor(t), args.cache_dir, log=log).features for t in tokens}
    probs = {t: clean.probs_from_pooled(pooled[t][:, :2], *backbones.top_dense(extractor(t).backbone)) for t in tokens}

    x = features.image_vectors([pooled[t][:, :2] for t in noise_tokens])
    oof = heads.logreg(x, train["label"].to_numpy(), x[:1], 5, 0, log=lambda *_: None).oof
    noise = {f.file for f in clean.check_label_noise(train[["id", "label"]].assign(blend=oof), 0.05)}
    known = {f.file for f in clean.check_known(train)}
    print(f"known lists name {len(known)} of the photos: {', '.join(sorted(known))}")
    print(f"label noise ({args.noise_features} logreg OOF < 0.05) flags {len(noise)}: {', '.join(sorted(noise))}")

    top1 = {t: p.argmax(axis=1) for t, p in probs.items()}
    labels = train["label"].to_numpy()
    print("\ntop-1 on all photos: voter | dogs with a dog class | cats with a cat class")
    for t in tokens:
        print(f"{t} | {np.isin(top1[t][labels == 1], clean.DOG_CLASSES).mean():.4f} | "
              f"{np.isin(top1[t][labels == 0], clean.CAT_CLASSES).mean():.4f}")

    print("\nvoters | K | flagged | dogs/cats | also on known lists | also label noise | known found | flagged ids")
    for group in VOTER_SETS:
        for k in KS:
            flags = clean.check_imagenet(train, {t: probs[t] for t in group.split(",")}, k, k)
            ids = {f.file for f in flags}
            dogs = sum(f.label == 1 for f in flags)
            shown = ", ".join(sorted(ids)) if len(ids) <= 12 else f"{len(ids)} ids"
            print(f"{group} | {k} | {len(ids)} | {dogs}/{len(ids) - dogs} | {len(ids & known)} | {len(ids & noise)} | "
                  f"{len(ids & known)}/{len(known)} | {shown}")

    voters = {t: probs[t] for t in args.sheet_voters.split(",")}
    print(f"\nper class with {args.sheet_voters}: K | dogs flagged | cats flagged")
    for k in KS:
        flagged = {f.file: f.label for f in clean.check_imagenet(train, voters, k, k)}
        listed = lambda label: sorted(i for i, l in flagged.items() if l == label)
        dogs, cats = listed(1), listed(0)
        print(f"{k} | {len(dogs)}: {', '.join(dogs) if len(dogs) <= 25 else '...'} | "
              f"{len(cats)}: {', '.join(cats) if len(cats) <= 25 else '...'}")
    flags = clean.check_imagenet(train, voters, args.sheet_k, args.sheet_k_cat or args.sheet_k)
    out = Path(REPO / "reports" / "clean-imagenet")
    out.mkdir(parents=True, exist_ok=True)
    k_cat = args.sheet_k_cat or args.sheet_k
    sheet = clean.contact_sheet(flags, train, out / f"contact_sheet_dog{args.sheet_k}_cat{k_cat}.png")
    print(f"\ncontact sheet of the {len(flags)} flags at K={args.sheet_k} for dogs, {k_cat} for cats "
          f"({args.sheet_voters}): {sheet}")


if __name__ == "__main__":
    main()
