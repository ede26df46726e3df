"""The competition metric, clipping, and the checks a submission must pass before it is written.

Log loss punishes a confident wrong answer without bound, so clipping is part of the
prediction, and the same code scores validation predictions and submission files.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from kit.errors import KitError

KAGGLE_EPS = 1e-15   # Kaggle clips to [eps, 1 - eps] before taking logs
SAMPLE = "sample_submission.csv"   # the competition's file whose ids every submission must match


def log_loss(labels, probs) -> float:
    y = np.asarray(labels, dtype=np.float64)
    p = np.clip(np.asarray(probs, dtype=np.float64), KAGGLE_EPS, 1 - KAGGLE_EPS)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))


def accuracy(labels, probs) -> float:
    return float(np.mean((np.asarray(probs) >= 0.5) == (np.asarray(labels) >= 0.5)))


def clip(probs, low: float, high: float) -> np.ndarray:
    return np.clip(np.asarray(probs, dtype=np.float64), low, high)


def read_csv(path: str | Path, what: str, other_columns: bool = False) -> pd.DataFrame:
    """Read an `id,label` CSV or end with one clear line saying what is wrong with it.

    With `other_columns` (a labels file, which often carries more), only `id` and `label` must be there and
    the rest is dropped; a submission or a sample must be exactly `id,label`, as Kaggle requires.
    """
    path = Path(path)
    if not path.is_file():
        raise KitError(f"{what} not found: {path}")
    try:
        frame = pd.read_csv(path)
    except pd.errors.EmptyDataError:
        raise KitError(f"{what} {path} is empty") from None
    except (pd.errors.ParserError, UnicodeDecodeError) as e:
        raise KitError(f"{what} {path} is not a readable CSV: {str(e).splitlines()[0]}") from None
    if other_columns and {"id", "label"} <= set(frame.columns):
        return frame[["id", "label"]]
    if list(frame.columns) != ["id", "label"]:
        needs = "columns 'id' and 'label'" if other_columns else "header must be 'id,label'"
        raise KitError(f"{what} {path}: {needs}, got {','.join(map(str, frame.columns))!r}")
    return frame


def validate_submission(frame: pd.DataFrame, sample_ids, source: str = "submission") -> pd.DataFrame:
    """Check every id exactly once and finite values in [0, 1]; return it sorted by id.

    `sample_ids=None` checks the file alone (scoring it against labels for some of its rows)."""
    if list(frame.columns) != ["id", "label"]:
        raise KitError(f"{source}: header must be 'id,label', got {','.join(map(str, frame.columns))!r}")
    ids = pd.to_numeric(frame["id"], errors="coerce")
    if ids.isna().any():
        raise KitError(f"{source}: non-numeric id {frame['id'][ids.isna()].iloc[0]!r}")
    duplicated = ids[ids.duplicated()]
    if len(duplicated):
        raise KitError(f"{source}: id {int(duplicated.iloc[0])} appears more than once ({len(duplicated)} duplicates)")
    expected = set(int(i) for i in ids) if sample_ids is None else set(int(i) for i in sample_ids)
    got = set(int(i) for i in ids)
    if got != expected:
        missing, extra = sorted(expected - got), sorted(got - expected)
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing (first {missing[0]})")
        if extra:
            parts.append(f"{len(extra)} not in {SAMPLE} (first {extra[0]})")
        raise KitError(f"{source}: ids do not match {SAMPLE}: {'; '.join(parts)}")
    labels = pd.to_numeric(frame["label"], errors="coerce").to_numpy(dtype=np.float64)
    if not np.isfinite(labels).all():
        raise KitError(f"{source}: {int((~np.isfinite(labels)).sum())} labels are NaN, infinite or not numbers")
    if (labels < 0).any() or (labels > 1).any():
        raise KitError(f"{source}: labels must lie in [0, 1]; found {labels.min():.4g} .. {labels.max():.4g}")
    out = pd.DataFrame({"id": ids.astype(int).to_numpy(), "label": labels})
    return out.sort_values("id").reset_index(drop=True)


def score_file(submission: str | Path, labels_csv: str | Path) -> dict:
    """Log loss and accuracy of a submission file against an `id,label` answer file, on the rows it labels
    (a hold-out may label only some of the test images)."""
    labels, probs = labelled_rows(submission, labels_csv)
    return {"log_loss": log_loss(labels, probs), "accuracy": accuracy(labels, probs), "n": len(labels)}


def labelled_rows(submission: str | Path, labels_csv: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """(true labels, the submission's probabilities) for every id the labels file has, checked."""
    truth = read_csv(labels_csv, "labels file", other_columns=True)
    labels = pd.to_numeric(truth["label"], errors="coerce")
    if labels.isna().any() or not labels.isin((0, 1)).all():
        bad = truth["label"][labels.isna() | ~labels.isin((0, 1))].iloc[0]
        raise KitError(f"labels file {labels_csv}: labels must be 0 or 1, found {bad!r}")
    if pd.to_numeric(truth["id"], errors="coerce").isna().any():
        raise KitError(f"labels file {labels_csv}: every id must be a number")
    sub = validate_submission(read_csv(submission, "submission"), None, source=str(submission))
    truth = truth.assign(id=pd.to_numeric(truth["id"]).astype(int))
    unmatched = sorted(set(truth["id"]) - set(sub["id"]))
    if unmatched:
        raise KitError(f"labels file {labels_csv}: {len(unmatched)} ids have no row in {submission} "
                       f"(first {unmatched[0]}): is it this competition's labels file?")
    merged = truth.merge(sub, on="id", suffixes=("_true", "_pred"))
    return merged["label_true"].to_numpy(np.int64), merged["label_pred"].to_numpy(np.float64)
