"""Score a submission file against an answer file with a task's metric (any competition's layout).

The answer file has the id column (the task's, or `id`) and a class column (the labels CSV's, the
submission's single value column, or `label`), classes written as the training labels write them;
other columns are ignored. Dogs vs. Cats' `id,label` files without a task keep kit.score's
checks (`score_binary_file`), with any binary metric.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from kit import score
from kit.errors import KitError
from kit.task import csvfile, layout, metrics
from kit.task.spec import PROBABILITIES, Task


def score_file(submission: str | Path, answers: str | Path, task: Task, metric: str | None = None) -> dict:
    """The metric (the task's unless named) of a submission file against an answer file."""
    entry = metrics.get(metric or task.metric)
    ids, labels = read_answers(answers, task)
    rows = layout.check(csvfile.read(submission, "submission"), task, ids, source=str(submission))
    return _result(entry, labels, layout.as_probabilities(rows, task))


def score_binary_file(submission: str | Path, answers: str | Path, metric: str) -> dict:
    """A Dogs vs. Cats `id,label` submission (P(dog)) against `id,label` answers (0 or 1), by `metric`."""
    entry = metrics.get(metric)
    labels, probs = score.labelled_rows(submission, answers)
    return _result(entry, labels, metrics.as_matrix(probs))


def read_answers(path: str | Path, task: Task):
    """(ids as text, class indices) from an answer file, or one line saying what it lacks."""
    table = csvfile.read(path, "labels file")
    id_column = next((c for c in (task.id_column, "id") if c in table.columns), None)
    single = task.value_columns if task.submission_values != PROBABILITIES else []
    wanted = list(dict.fromkeys(c for c in (task.label_column, *single, "label") if c))
    label_column = next((c for c in wanted if c in table.columns), None)
    if id_column is None or label_column is None:
        raise KitError(f"labels file {path}: needs the id column {task.id_column!r} and a class column "
                       f"(one of: {', '.join(wanted)}); got {','.join(table.columns)!r}")
    ids = table[id_column].str.strip()
    duplicated = ids[ids.duplicated()]
    if (ids == "").any() or len(duplicated):
        raise KitError(f"labels file {path}: every row needs its own {id_column} "
                       f"({'an empty one' if (ids == '').any() else repr(duplicated.iloc[0]) + ' repeats'})")
    return ids, task.class_index(table[label_column], what=f"labels file {path}")


def _result(entry: metrics.Metric, labels: np.ndarray, probs: np.ndarray) -> dict:
    return {"metric": entry.name, "value": entry.evaluate(labels, probs), "n": len(labels),
            "higher_is_better": entry.higher_is_better}


def summary(result: dict) -> str:
    """One line, e.g. `roc_auc 0.93120 (higher is better)  (200 images)`."""
    return f"{result['metric']} {result['value']:.5f} ({metrics.get(result['metric']).direction})  ({result['n']} images)"
