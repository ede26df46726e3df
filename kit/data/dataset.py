"""Indexed images -> a stratified split and decoded, resized uint8 arrays.

Decoding runs in a thread pool (OpenCV releases the GIL) with a progress bar, and every
file that cannot be used is returned as a named Skip, never dropped silently.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from kit.data import images
from kit.errors import KitError


def split_train_val(index: pd.DataFrame, val_fraction: float, seed: int):
    """Stratified, seeded split: same seed, same files on every machine."""
    from sklearn.model_selection import train_test_split

    counts = index["label"].value_counts()
    if len(counts) < 2 or counts.min() < 2:
        raise KitError(f"need at least 2 images of each class to split, got {dict(counts)}")
    train, val = train_test_split(index, test_size=val_fraction, random_state=seed, stratify=index["label"])
    return train.reset_index(drop=True), val.reset_index(drop=True)


def training_index(config, log=print) -> pd.DataFrame:
    """The fetched training index, less the cleaning exclusions, limited for quick runs."""
    from kit.data.exclusions import apply_exclusions
    from kit.fetch import read_index

    index = read_index(config.data_dir, "train")
    if config.use_exclusions:
        index = apply_exclusions(index, config.data_dir, log)
    return limit_index(index, config.limit, config.seed)


def fold_groups(index: pd.DataFrame):
    """Each row's fold group (fetch's group column: State Farm's driver), or None where the task has none."""
    from kit.fetch import GROUP

    return index[GROUP].to_numpy() if GROUP in index.columns else None


def exclusions_applied(config) -> dict:
    """The ids `kit clean` took out of training (exclusions.csv) and added to it (additions.csv)."""
    from kit.data.exclusions import read_exclusions

    if not config.use_exclusions:
        return {"used": False, "excluded": [], "added": []}
    excluded, added = read_exclusions(config.data_dir)
    return {"used": True, "excluded": sorted(map(str, excluded or ())),
            "added": [] if added is None else sorted(map(str, added["id"]))}


def limit_index(index: pd.DataFrame, limit: int, seed: int) -> pd.DataFrame:
    """At most `limit` rows, keeping the class balance (for quick runs)."""
    if not limit or limit >= len(index):
        return index
    fraction = limit / len(index)
    return (index.groupby("label", group_keys=False)
                 .sample(frac=fraction, random_state=seed)
                 .reset_index(drop=True))


def load_arrays(paths, size: int, min_side: int = 16, workers: int = 2, desc: str = "decode"):
    """Decode and resize every path. Returns (array[N_ok, size, size, 3] uint8, ok mask, skips in path order)."""
    from tqdm import tqdm

    from kit.data.generators import ImageBatches, predicted

    paths = [str(p) for p in paths]
    batches = ImageBatches(paths, sizes=(size,), preprocess=(np.asarray,), batch_size=64, min_side=min_side,
                           workers=workers)
    out = np.zeros((len(paths), size, size, 3), np.uint8)
    ok = np.zeros(len(paths), bool)
    with tqdm(total=len(paths), desc=desc, unit="img", mininterval=1, leave=False) as bar:
        for kept, (x,) in predicted(batches, lambda inputs: inputs):
            out[kept], ok[kept] = x, True
            bar.update(len(kept))
    position = {path: i for i, path in enumerate(paths)}
    skips: list[images.Skip] = sorted(batches.skips.values(), key=lambda skip: position[skip.path])
    return out[ok], ok, skips
