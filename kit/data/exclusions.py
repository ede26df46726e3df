"""What training leaves out of the fetched index and adds to it, as `kit clean` decided: the two
files in the data folder, read by training and feature extraction alike.

Kept apart from the checks that write them, so a training run (and a Kaggle kernel) carries
these few lines and not the checks.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

EXCLUSIONS = "exclusions.csv"    # in the data dir: what training leaves out
ADDITIONS = "additions.csv"      # in the data dir: rebalancing copies training adds


def read_exclusions(data_dir) -> tuple[set | None, pd.DataFrame | None]:
    """The ids <data_dir>/exclusions.csv lists and the rows of additions.csv (None where absent)."""
    data_dir = Path(data_dir)
    excluded = set(pd.read_csv(data_dir / EXCLUSIONS)["id"]) if (data_dir / EXCLUSIONS).is_file() else None
    added = pd.read_csv(data_dir / ADDITIONS) if (data_dir / ADDITIONS).is_file() else None
    return excluded, added


def apply_exclusions(index: pd.DataFrame, data_dir, log=print) -> pd.DataFrame:
    """The training index less <data_dir>/exclusions.csv, plus additions.csv when present."""
    data_dir = Path(data_dir)
    out = index
    excluded, added = read_exclusions(data_dir)
    if excluded is not None:
        out = out[~out["id"].isin(excluded)]
        log(f"clean: excluded {len(index) - len(out)} training images listed in {data_dir / EXCLUSIONS}")
    if added is not None:
        out = pd.concat([out, added], ignore_index=True)
        log(f"clean: added {len(added)} rebalancing images from {data_dir / ADDITIONS}")
    return out.reset_index(drop=True)
