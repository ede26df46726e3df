"""The submission's exact layout: built from per-class probabilities, and checked against the sample.

Kaggle scores a file only when it has the sample's header, every sample id exactly once in the
sample's form, and values of the kind the metric reads: a probability, one probability column per
class summing to 1, or a class as the training labels write it (a name, an integer grade). A file
is built here in that layout and checked before it is written or scored.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from kit import fileio
from kit.errors import KitError
from kit.task import csvfile, metrics
from kit.task.spec import CLASS, PROBABILITIES, PROBABILITY, Task

ROW_SUM_TOLERANCE = 1e-3   # one-hot rows written to 6 digits still sum to 1 within this
FLOAT_FORMAT = "%.6g"      # six significant digits: a small probability keeps its size


def read_sample(competition_dir: str | Path, task: Task) -> pd.DataFrame:
    """The sample submission as text, checked to be the one the task was read from."""
    sample = csvfile.read(Path(competition_dir) / task.sample_file, "sample submission")
    if list(sample.columns) != list(task.header):
        raise KitError(f"{task.sample_file}'s header {','.join(sample.columns)!r} is not the task's "
                       f"{','.join(task.header)!r}: read the task again")
    return sample


def submission_frame(task: Task, ids, probs, clip: tuple[float, float] | None = None,
                     thresholds=None) -> pd.DataFrame:
    """The submission for test `ids` from per-class probabilities (n x classes, in task.classes order).

    `clip` bounds the probabilities where the metric clips (log loss); `thresholds` cut grades
    (quadratic kappa; None rounds the expected grade).
    """
    probs = metrics.as_matrix(probs)
    if probs.shape != (len(ids), task.n_classes):
        raise ValueError(f"probabilities of shape {probs.shape} for {len(ids)} ids and {task.n_classes} classes")
    values = metrics.get(task.metric).values(probs, clip, thresholds)
    frame = pd.DataFrame({task.id_column: [str(i) for i in ids]})
    if task.submission_values == PROBABILITIES:
        for j, column in enumerate(task.value_columns):
            frame[column] = values[:, j]
    elif task.submission_values == PROBABILITY:
        frame[task.value_columns[0]] = values
    else:
        frame[task.value_columns[0]] = [task.classes[i] for i in values]
    return frame[list(task.header)]


def write(frame: pd.DataFrame, path: str | Path) -> Path:
    """The submission CSV, whole or not at all."""
    with fileio.atomic_path(path) as tmp:
        frame.to_csv(tmp, index=False, float_format=FLOAT_FORMAT)
    return Path(path)


def check_file(path: str | Path, task: Task, sample: pd.DataFrame) -> pd.DataFrame:
    """A submission file checked against the sample submission and the task (see `check`)."""
    if list(sample.columns) != list(task.header):
        raise KitError(f"sample submission header {','.join(sample.columns)!r} is not the task's: read the task again")
    return check(csvfile.read(path, "submission"), task, sample[task.id_column], source=str(path))


def check(frame: pd.DataFrame, task: Task, expected_ids, source: str = "submission") -> pd.DataFrame:
    """The task's header, each expected id exactly once and no other, values of the right kind.

    Returns the rows in the order of `expected_ids`, ids as text and probabilities as numbers.
    """
    if list(frame.columns) != list(task.header):
        raise KitError(f"{source}: header must be {','.join(task.header)!r}, got {','.join(map(str, frame.columns))!r}")
    ids = frame[task.id_column].astype(str).str.strip()
    expected = pd.Series(list(expected_ids)).astype(str).str.strip()
    check_ids(ids, expected, task, source)
    out = frame.assign(**{task.id_column: ids}).set_index(task.id_column).loc[expected.tolist()]
    if task.submission_values == CLASS:
        out = check_classes(out, task, source)
    else:
        out = check_probabilities(out, task, source)
    return out.reset_index()


def check_ids(ids: pd.Series, expected: pd.Series, task: Task, source: str) -> None:
    if (ids == "").any():
        raise KitError(f"{source}: {int((ids == '').sum())} rows have no {task.id_column}")
    duplicated = ids[ids.duplicated()]
    if len(duplicated):
        raise KitError(f"{source}: {task.id_column} {duplicated.iloc[0]!r} appears more than once "
                       f"({len(duplicated)} duplicates)")
    expected_set, got = set(expected), set(ids)
    if got != expected_set:
        missing, extra = sorted(expected_set - got), sorted(got - expected_set)
        parts = [f"{len(missing)} missing (first {missing[0]!r})"] if missing else []
        parts += [f"{len(extra)} not in the sample submission (first {extra[0]!r})"] if extra else []
        raise KitError(f"{source}: ids do not match the sample submission's: {'; '.join(parts)}")


def check_probabilities(rows: pd.DataFrame, task: Task, source: str) -> pd.DataFrame:
    values = rows.apply(pd.to_numeric, errors="coerce").astype(np.float64)
    array = values.to_numpy()
    bad = ~np.isfinite(array)
    if bad.any():
        raise KitError(f"{source}: {int(bad.sum())} values are empty, NaN, infinite or not numbers "
                       f"(first at id {values.index[bad.any(axis=1)][0]!r})")
    if (array < 0).any() or (array > 1).any():
        raise KitError(f"{source}: probabilities must lie in [0, 1]; found {array.min():.4g} .. {array.max():.4g}")
    if task.submission_values == PROBABILITIES:
        sums = array.sum(axis=1)
        off = np.abs(sums - 1) > ROW_SUM_TOLERANCE
        if off.any():
            first = int(np.argmax(off))
            raise KitError(f"{source}: the {task.n_classes} class probabilities of {int(off.sum())} rows do not sum "
                           f"to 1 (id {values.index[first]!r} sums to {sums[first]:.4g})")
    return values


def check_classes(rows: pd.DataFrame, task: Task, source: str) -> pd.DataFrame:
    column = task.value_columns[0]
    text = rows[column].astype(str).str.strip()
    allowed = {str(c): c for c in task.classes}
    unknown = text[~text.isin(list(allowed))]
    if len(unknown):
        kind = "integer grades" if all(isinstance(c, int) for c in task.classes) else "classes"
        raise KitError(f"{source}: {len(unknown)} values in {column} are not one of the {kind} "
                       f"({', '.join(allowed)}); first {unknown.iloc[0]!r} at id {unknown.index[0]!r}")
    return rows.assign(**{column: [allowed[t] for t in text]})


def as_probabilities(rows: pd.DataFrame, task: Task) -> np.ndarray:
    """A checked submission as per-class probabilities (n x classes); a class becomes a one-hot row."""
    if task.submission_values == PROBABILITY:
        return metrics.as_matrix(rows[task.value_columns[0]].to_numpy(np.float64))
    if task.submission_values == PROBABILITIES:
        return rows[task.value_columns].to_numpy(np.float64)
    return np.eye(task.n_classes)[task.class_index(rows[task.value_columns[0]], "submission")]
