"""Anomaly removal with evidence: what is flagged, why, how strongly, and a picture of each.

Nothing is deleted. Checks produce rows (file, label, reason, score, action); the rows whose
action is `exclude` become `<data_dir>/exclusions.csv`, which training and feature
extraction honour, so a removal can be reviewed and undone by editing or deleting a file.

Checks, each with its own reason code:
- files:        unusable files, with the loader's reason (empty-file, truncated, ...)
- known:        published lists of known anomalies (kit/clean/known_anomalies.csv)
- imagenet:     an ImageNet classifier's top-K holds no class of the image's label
- label-noise:  out-of-fold predictions that contradict the label most strongly
- duplicates:   perceptual-hash twins with conflicting labels, and train images also in test
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from kit import COMPETITION, fileio
from kit.data import images
from kit.data.exclusions import ADDITIONS, EXCLUSIONS
from kit.errors import KitError
from kit.run.rundir import BLEND, OOF, prediction_columns, read_probabilities

KNOWN_LISTS = Path(__file__).parent / "known_anomalies.csv"
DOG_CLASSES = range(151, 269)          # ImageNet-1k, Keras order: Chihuahua .. Mexican hairless
CAT_CLASSES = range(281, 286)          # tabby, tiger cat, Persian, Siamese, Egyptian cat
BIG_CATS = range(286, 288)             # cougar, lynx: optional for cats
# Top-K for the imagenet check, chosen on the 3,000 real photos with the cpu preset's two Lite tops
# (bench/clean_imagenet.py): at 20 it flags 12, among them 4 of the 6 listed photos and 3 of the 5
# label-noise flags; at 10 the flags double (cats in cages, kittens), at 60 half the listed ones slip through.
DEFAULT_K = 20
CHECKS = ("files", "known", "imagenet", "label-noise", "duplicates")
# Checks that know Dogs vs. Cats itself: its published anomaly lists, and ImageNet's dog and cat classes.
REDUX_ONLY = {"known": "the published lists are Dogs vs. Cats Redux's",
              "imagenet": "the classes are not ImageNet's dog and cat classes"}
COLUMNS = ["file", "label", "reason", "score", "action"]


@dataclass(frozen=True)
class Flag:
    file: str            # the image id, e.g. cat.4085
    label: int
    reason: str
    score: float         # how strongly; the meaning depends on the reason (documented per check)
    action: str = "exclude"   # exclude | review

    def row(self):
        return {"file": self.file, "label": self.label, "reason": self.reason, "score": self.score, "action": self.action}


# --------------------------------------------------------------------------- checks

def check_files(index: pd.DataFrame, min_side: int = 16) -> list[Flag]:
    """Files the loader cannot use; score is 0 (there is no degree to it)."""
    labels = dict(zip(index["id"], index["label"]))
    return [Flag(file, labels[file], skip.reason, 0.0) for file, skip in images.unusable(index, min_side).items()]


def check_known(index: pd.DataFrame, lists=("seed004", "consensus", "mislabelled")) -> list[Flag]:
    """Images named in the published lists; score is how many of the chosen lists name it."""
    known = pd.read_csv(KNOWN_LISTS)
    unknown = sorted(set(lists) - set(known["list"]))
    if unknown:
        raise KitError(f"unknown anomaly list {unknown[0]!r}; lists: {', '.join(sorted(set(known['list'])))}")
    known = known[known["list"].isin(lists)]
    counts = known.groupby("id")["list"].agg(lambda s: sorted(set(s)))
    labels = dict(zip(index["id"], index["label"]))
    return [Flag(i, labels[i], "known:" + "+".join(named), float(len(named)))
            for i, named in counts.items() if i in labels]


def imagenet_flags(ids, labels, probs: np.ndarray, k_dog: int = DEFAULT_K, k_cat: int = DEFAULT_K,
                   big_cats: bool = False) -> np.ndarray:
    """Per image: True when its label's ImageNet classes are all outside its top-K.

    probs is [n, 1000] softmax output. Cats get their own K because ImageNet has only five
    domestic cat classes against 118 dog breeds, so a cat's rank is noisier.
    """
    probs = np.asarray(probs)
    order = np.argsort(-probs, axis=1)
    cat_set = set(CAT_CLASSES) | (set(BIG_CATS) if big_cats else set())
    flags = np.zeros(len(probs), bool)
    for i, label in enumerate(labels):
        k, wanted = (k_dog, set(DOG_CLASSES)) if label == 1 else (k_cat, cat_set)
        flags[i] = not (set(order[i, :k].tolist()) & wanted)
    return flags


def check_imagenet(index: pd.DataFrame, probs_by_model: dict[str, np.ndarray], k_dog: int = DEFAULT_K,
                   k_cat: int = DEFAULT_K, big_cats: bool = False) -> list[Flag]:
    """Flag where a majority of the classifiers flag; score is the share that did."""
    if not probs_by_model:
        return []
    votes = np.mean([imagenet_flags(index["id"], index["label"], p, k_dog, k_cat, big_cats)
                     for p in probs_by_model.values()], axis=0)
    return [Flag(i, int(l), "imagenet", float(v)) for i, l, v in zip(index["id"], index["label"], votes) if v > 0.5]


def imagenet_probs(index: pd.DataFrame, extractor, config, log=print) -> np.ndarray:
    """A backbone's 1000-class softmax for every image, [n, 1000] (1/1000 for an unreadable file).

    Where the top is a Dense layer on the pooled features (EfficientNet-Lite), the probabilities
    come from the feature cache, averaged over the extractor's views: free when the preset
    already extracted them. Other backbones run their whole classifier at the extractor's size.
    """
    from kit.models import backbones, features

    if not backbones.get(extractor.backbone).top_on_pooled:
        return _classifier_probs(index, extractor.backbone, extractor.weights, extractor.size, config.batch_size)
    feats = features.extract(index["path"], extractor, config.cache_dir, config.batch_size, config.workers,
                             config.min_side, log)
    probs = probs_from_pooled(feats.features, *backbones.top_dense(extractor.backbone, extractor.weights))
    probs[~feats.ok] = 1 / 1000
    return probs


def probs_from_pooled(pooled: np.ndarray, kernel: np.ndarray, bias: np.ndarray) -> np.ndarray:
    """Softmax of a Dense top over pooled features [n, views, d], averaged over the views: [n, classes]."""
    logits = pooled @ kernel + bias
    logits -= logits.max(axis=-1, keepdims=True)
    probs = np.exp(logits)
    return (probs / probs.sum(axis=-1, keepdims=True)).mean(axis=1).astype(np.float32)


def imagenet_voters(config, tokens=()) -> list:
    """The classifiers that vote: ``tokens`` ("name@size", size optional) or, by default, every
    backbone of the preset that has an ImageNet top, at the preset's size and views."""
    import dataclasses

    from kit.models import backbones

    if tokens:
        return dataclasses.replace(config, backbones=",".join(tokens)).extractors()
    return [e for e in config.extractors() if backbones.get(e.backbone).has_imagenet_top]


def _classifier_probs(index: pd.DataFrame, backbone: str, weights, size: int, batch_size: int = 32) -> np.ndarray:
    from kit.data.generators import ImageBatches, predicted
    from kit.models import backbones, inference

    predict = inference.predictor(backbones.build(backbone, weights=weights, input_size=size, include_top=True))
    batches = ImageBatches(index["path"], sizes=(size,), batch_size=batch_size,
                           preprocess=(lambda b: backbones.preprocess(backbone, b),))
    out = np.full((len(index), 1000), 1 / 1000, np.float32)
    for kept, probs in predicted(batches, lambda inputs: predict(inputs[0])):
        out[kept] = probs
    return out


def check_label_noise(oof: pd.DataFrame, threshold: float = 0.05, top: int = 0,
                      exclude_below: float = 0.01) -> list[Flag]:
    """OOF predictions giving the labelled class less than `threshold`; score is that probability.

    oof has columns id, label, blend (a run's oof.csv; `blend:<k>` per class beyond two classes). Sorted most contradictory first;
    `top` > 0 keeps only that many. Only the strongest contradictions (below `exclude_below`)
    are excluded; the rest are hard but often genuine pictures, flagged for review.
    """
    frame = oof.assign(p=labelled_probability(oof["label"].to_numpy(), read_probabilities(oof, BLEND)))
    frame = frame.sort_values("p", kind="stable")
    frame = frame[frame["p"] < threshold]
    if top:
        frame = frame.head(top)
    return [Flag(r.id, int(r.label), "label-noise", float(r.p), "exclude" if r.p < exclude_below else "review")
            for r in frame.itertuples()]


def labelled_probability(labels: np.ndarray, probs: np.ndarray) -> np.ndarray:
    """What the predictions give each image's own label: P(class 1) or its complement, or its row's entry."""
    if probs.ndim == 1:
        return np.where(labels == 1, probs, 1 - probs)
    return probs[np.arange(len(labels)), labels.astype(int)]


def phash(image: np.ndarray) -> int:
    """64-bit perceptual hash: signs of the low-frequency DCT of a 32x32 grey thumbnail."""
    import cv2

    gray = cv2.cvtColor(cv2.resize(image, (32, 32), interpolation=cv2.INTER_AREA), cv2.COLOR_RGB2GRAY)
    low = cv2.dct(np.float32(gray))[:8, :8].ravel()
    bits = low > np.median(low[1:])
    return int(np.packbits(bits).view(">u8")[0])


def hashes(paths, min_side: int = 16) -> np.ndarray:
    out = np.zeros(len(paths), np.uint64)
    ok = np.zeros(len(paths), bool)
    for i, path in enumerate(paths):
        image = images.load_image(path, target=32, min_side=min_side)
        if not isinstance(image, images.Skip):
            out[i], ok[i] = phash(image), True
    return out, ok


def near_pairs(a: np.ndarray, b: np.ndarray, max_distance: int, same: bool = False, block: int = 2048):
    """Index pairs (i, j) with Hamming distance <= max_distance, in blocks to bound memory."""
    pairs = []
    for start in range(0, len(a), block):
        chunk = a[start:start + block, None] ^ b[None, :]
        distance = np.bitwise_count(chunk)
        i, j = np.nonzero(distance <= max_distance)
        i = i + start
        keep = i < j if same else np.ones(len(i), bool)
        pairs.extend(zip(i[keep].tolist(), j[keep].tolist(), distance[i[keep] - start, j[keep]].tolist()))
    return pairs


def check_duplicates(train: pd.DataFrame, test: pd.DataFrame, max_distance: int = 4) -> list[Flag]:
    """Twins in train with different labels (both excluded: which one is right is unknown),
    same-label twins and train images that also appear in test (kept, for review). Score is
    the Hamming distance between the perceptual hashes."""
    h_train, ok_train = hashes(train["path"])
    h_test, ok_test = hashes(test["path"])
    flags = []
    ids, labels = train["id"].to_numpy(), train["label"].to_numpy()
    tr = np.nonzero(ok_train)[0]
    for i, j, d in near_pairs(h_train[tr], h_train[tr], max_distance, same=True):
        a, b = tr[i], tr[j]
        if labels[a] != labels[b]:
            flags.append(Flag(ids[a], int(labels[a]), f"duplicate-conflict:{ids[b]}", float(d)))
            flags.append(Flag(ids[b], int(labels[b]), f"duplicate-conflict:{ids[a]}", float(d)))
        else:   # harmless to train on, but a twin split across folds flatters the OOF score
            flags.append(Flag(ids[b], int(labels[b]), f"duplicate:{ids[a]}", float(d), "review"))
    te = np.nonzero(ok_test)[0]
    for i, j, d in near_pairs(h_train[tr], h_test[te], max_distance):
        a, b = tr[i], te[j]
        flags.append(Flag(ids[a], int(labels[a]), f"duplicate-of-test:{test['id'].iloc[b]}", float(d), "review"))
    return flags


# --------------------------------------------------------------------------- outputs

def write_report(flags: list[Flag], report_dir: Path, data_dir: Path) -> tuple[Path, Path]:
    """report.csv (every flag) and the data dir's exclusions.csv (one row per excluded image)."""
    report = pd.DataFrame([f.row() for f in flags], columns=COLUMNS)
    report_path = Path(report_dir) / "report.csv"
    with fileio.atomic_path(report_path) as tmp:
        report.to_csv(tmp, index=False)
    excluded = (report[report["action"] == "exclude"].groupby("file")["reason"]
                .agg(lambda s: ";".join(sorted(set(s)))).reset_index().rename(columns={"file": "id"}))
    exclusions = Path(data_dir) / EXCLUSIONS
    with fileio.atomic_path(exclusions) as tmp:
        excluded.to_csv(tmp, index=False)
    return report_path, exclusions


def contact_sheet(flags: list[Flag], index: pd.DataFrame, path: Path, thumb: int = 160, columns: int = 8,
                  limit: int = 200) -> Path:
    """One PNG of the flagged images, one tile per file, captioned with file, label, action,
    and each reason with its score."""
    import cv2

    paths = dict(zip(index["id"], index["path"]))
    by_file: dict[str, list[Flag]] = {}
    for flag in flags:
        by_file.setdefault(flag.file, []).append(flag)
    chosen = list(by_file.values())[:limit]
    rows = max(1, -(-len(chosen) // columns))
    caption = 44
    sheet = np.full((rows * (thumb + caption), columns * thumb, 3), 255, np.uint8)
    for n, group in enumerate(chosen):
        flag = group[0]
        r, c = divmod(n, columns)
        y, x = r * (thumb + caption), c * thumb
        image = images.load_image(paths.get(flag.file, ""), target=thumb, min_side=1)
        if isinstance(image, images.Skip):
            tile = np.full((thumb, thumb, 3), 200, np.uint8)
            cv2.putText(tile, image.reason, (6, thumb // 2), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 160), 1)
        else:
            tile = images.resize_square(image, thumb)
        sheet[y:y + thumb, x:x + thumb] = tile
        action = "excluded" if any(f.action == "exclude" for f in group) else "review"
        lines = [f"{flag.file} ({'dog' if flag.label else 'cat'}) {action}",
                 " ".join(f"{f.reason.split(':')[0]}:{f.score:.2g}" for f in group)[:30]]
        for k, text in enumerate(lines):
            cv2.putText(sheet, text, (x + 4, y + thumb + 16 + 18 * k), cv2.FONT_HERSHEY_SIMPLEX, 0.4,
                        (30, 30, 30) if k == 0 else (0, 0, 170), 1, cv2.LINE_AA)
    with fileio.atomic_path(path) as tmp:
        cv2.imwrite(str(tmp), cv2.cvtColor(sheet, cv2.COLOR_RGB2BGR))
    return path


def rebalance(index: pd.DataFrame, excluded_ids, data_dir: Path, seed: int = 0) -> Path:
    """Seed 004's way: each removed image is replaced by an augmented copy of a random kept
    image of the same class, so the class counts stay as they were. Written to additions.csv."""
    import cv2

    from kit.data.generators import Augment, augment

    rng = np.random.default_rng(seed)
    folder = Path(data_dir) / "rebalanced"
    folder.mkdir(parents=True, exist_ok=True)
    excluded = index[index["id"].isin(set(excluded_ids))]
    kept = index[~index["id"].isin(set(excluded_ids))]
    rows = []
    for n, row in enumerate(excluded.itertuples()):
        pool = kept[kept["label"] == row.label]
        source = pool.iloc[int(rng.integers(len(pool)))]
        image = images.load_image(source["path"])
        if isinstance(image, images.Skip):
            continue
        side = max(image.shape[:2])
        square = images.resize_square(image, side)
        new_id = f"{'dog' if row.label else 'cat'}.aug{n}"
        target = folder / f"{new_id}.jpg"
        with fileio.atomic_path(target) as tmp:
            cv2.imwrite(str(tmp), cv2.cvtColor(augment(square, rng, Augment()), cv2.COLOR_RGB2BGR))
        rows.append((new_id, str(target.resolve()), int(row.label)))
    additions = Path(data_dir) / ADDITIONS
    with fileio.atomic_path(additions) as tmp:
        pd.DataFrame(rows, columns=["id", "path", "label"]).to_csv(tmp, index=False)
    return additions


# --------------------------------------------------------------------------- the command

def oof_from_features(index: pd.DataFrame, config, log=print) -> pd.DataFrame:
    """Out-of-fold probabilities from a logistic regression on the preset's cached features."""
    from kit.models import features, heads

    if not config.extractors():
        raise KitError(f"label-noise needs a preset with backbones (e.g. --preset cpu), not {config.run!r}")
    blocks = [features.extract(index["path"], ex, config.cache_dir, config.batch_size, config.workers,
                               config.min_side, log) for ex in config.extractors()]
    ok = np.logical_and.reduce([b.ok for b in blocks])
    x = features.image_vectors([b.features for b in blocks])[ok]
    kept = index[ok].reset_index(drop=True)
    result = heads.run_kfold("logreg", heads.logreg_fold, x, kept["label"].to_numpy(), x[:1],
                             config.folds, config.seed, c=config.label_noise_c)
    oof = np.asarray(result.oof)
    if oof.ndim == 1:
        return kept[["id", "label"]].assign(**{BLEND: oof})
    return kept[["id", "label"]].assign(**dict(zip(prediction_columns(BLEND, oof.shape[1]), oof.T)))


def imagenet_classifiers(config, tokens=(), log=print) -> tuple[list, str]:
    """The voters that can classify ImageNet here (imagenet_voters), and why none can when none can.

    A backbone without a 1000-class top (or random weights) does not apply: it is reported
    and left out, not counted as a check that ran. An unknown name is an error.
    """
    from kit.models import backbones

    named = imagenet_voters(config, tokens) if tokens else config.extractors()   # an unknown name: KitError
    if config.weights.lower() == "none":
        return [], "weights=none: random weights classify nothing"
    usable = [v for v in named if backbones.get(v.backbone).has_imagenet_top]
    lacking = sorted({v.backbone for v in named} - {v.backbone for v in usable})
    for name in lacking:
        log(f"clean: imagenet: {name} has no 1000-class ImageNet top; left out of the vote")
    if not named:
        return [], f"preset {config.run!r} has no backbones: pass --imagenet-backbones, e.g. efficientnet_lite2"
    return usable, f"{', '.join(lacking)} {'has' if len(lacking) == 1 else 'have'} no 1000-class ImageNet top"


def read_noise_run(config, run: str) -> pd.DataFrame:
    path = Path(config.runs_dir) / run / OOF
    if not path.is_file():
        raise KitError(f"--noise-run {run}: no {path}; name a finished features, finetune or frozen run")
    return pd.read_csv(path)


def run_clean(config, checks=("files", "known", "imagenet", "label-noise", "duplicates"), known_lists=("seed004", "consensus", "mislabelled"),
              imagenet_backbones=(), k_dog: int = DEFAULT_K, k_cat: int = DEFAULT_K, big_cats: bool = False,
              noise_run: str | None = None, noise_threshold: float = 0.05, max_distance: int = 4,
              rebalance_classes: bool = False, report_dir: str | Path = "reports/clean", log=print) -> dict:
    """Run the chosen checks on the full training index; write report, exclusions and contact sheet."""
    from kit.fetch import read_index, read_task

    unknown = sorted(set(checks) - set(CHECKS))
    if unknown:
        raise KitError(f"unknown check {unknown[0]!r}; checks: {', '.join(CHECKS)}")
    train, test = read_index(config.data_dir, "train"), read_index(config.data_dir, "test")
    task = read_task(config.data_dir)
    redux = task.slug == COMPETITION and tuple(task.classes) == ("cat", "dog")
    flags, ran, not_applicable = [], [], {}
    for check in checks:
        before = len(flags)
        # A check that cannot run ends the command before anything is written: a typo or a
        # missing file must not quietly change what training leaves out.
        try:
            if check == "files":
                flags += check_files(train, config.min_side)
            elif check in REDUX_ONLY and not redux:
                not_applicable[check] = REDUX_ONLY[check]
                log(f"clean: {check}: does not apply ({REDUX_ONLY[check]}); not run")
                continue
            elif check == "known":
                flags += check_known(train, known_lists)
            elif check == "imagenet":
                voters, why_not = imagenet_classifiers(config, imagenet_backbones, log)
                if not voters:
                    not_applicable[check] = why_not
                    log(f"clean: imagenet: does not apply ({why_not}); not run")
                    continue
                probs = {v.label: imagenet_probs(train, v, config, log) for v in voters}
                flags += check_imagenet(train, probs, k_dog, k_cat, big_cats)
            elif check == "label-noise":
                oof = read_noise_run(config, noise_run) if noise_run else oof_from_features(train, config, log)
                flags += check_label_noise(oof, noise_threshold)
            elif check == "duplicates":
                flags += check_duplicates(train, test, max_distance)
        except KitError as e:
            raise KitError(f"clean: the {check} check cannot run: {e} (nothing written; "
                           f"{Path(config.data_dir) / EXCLUSIONS} is as it was)") from None
        ran.append(check)
        log(f"clean: {check}: flagged {len(flags) - before}")
    log(f"clean: ran {len(ran)} check(s): {', '.join(ran) or 'none'}"
        + (f"; not applicable: {', '.join(not_applicable)}" if not_applicable else ""))

    report_dir = Path(report_dir)
    report_path, exclusions = write_report(flags, report_dir, config.data_dir)
    sheet = contact_sheet(flags, train, report_dir / "contact_sheet.png")
    excluded = sorted(set(pd.read_csv(exclusions)["id"]))
    review = set(f.file for f in flags) - set(excluded)
    log(f"clean: {len(excluded)} of {len(train)} training images excluded; {len(review)} more flagged for review")
    if rebalance_classes:
        additions = rebalance(train, excluded, config.data_dir, config.seed)
        log(f"clean: rebalanced with {len(pd.read_csv(additions))} augmented copies in {additions}")
    elif (Path(config.data_dir) / ADDITIONS).exists():
        (Path(config.data_dir) / ADDITIONS).unlink()   # stale copies from an earlier --rebalance
    log(f"clean: report {report_path}")
    log(f"clean: contact sheet {sheet}")
    log(f"clean: exclusion list {exclusions} (delete it to train on everything)")
    by_reason = pd.Series([f.reason.split(":")[0] for f in flags], dtype=object).value_counts().to_dict()
    return {"flags": len(flags), "excluded": len(excluded), "by_reason": by_reason, "ran": ran,
            "not_applicable": not_applicable,
            "report": str(report_path), "contact_sheet": str(sheet), "exclusions": str(exclusions)}
