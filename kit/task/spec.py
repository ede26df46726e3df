"""The competition's facts in one frozen value: `Task`.

Where the images are, how an image is named by its id, where the training labels come from, the
classes in the order the model's outputs take, the metric, the submission's columns and what they
hold, and the column that groups images for folds. `kit.task.read.read_task` reads it from the
competition's files; it is saved as JSON beside runs and submissions (`to_dict`, `from_dict`), so
every later step reads the same facts instead of guessing them again.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields, MISSING
from pathlib import Path

import numpy as np

from kit import fileio
from kit.errors import KitError
from kit.task import metrics

FILE_NAMES, CSV, FOLDERS = "file-names", "csv", "folders"
LABEL_SOURCES = (FILE_NAMES, CSV, FOLDERS)
# What the submission's value columns hold: P(second class), one probability column per class, a class.
PROBABILITY, PROBABILITIES, CLASS = "probability", "probabilities", "class"
SUBMISSION_VALUES = (PROBABILITY, PROBABILITIES, CLASS)
# What a submission holds for a metric that takes this (kit.task.metrics TAKES).
SUBMISSION_FOR = {metrics.PROBABILITY: PROBABILITY, metrics.PROBABILITIES: PROBABILITIES,
                  metrics.CLASS: CLASS, metrics.GRADE: CLASS}
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".tif", ".tiff")


@dataclass(frozen=True)
class Task:
    slug: str
    metric: str                          # a name in kit.task.metrics
    id_column: str                       # the sample submission's id column (and the labels CSV's)
    id_with_extension: bool              # an id names its file ("a1.jpg") or its stem ("a1")
    image_extension: str                 # ".jpg", ".png", ".tif" (lower case)
    train_images: str                    # folder or .zip holding them, relative to the competition folder
    test_images: str
    label_source: str                    # one of LABEL_SOURCES
    classes: tuple                       # the model's output order: one-hot columns' order, else sorted
    header: tuple                        # the sample submission's header, exactly
    submission_values: str               # one of SUBMISSION_VALUES
    labels_file: str = ""                # label_source csv: the CSV and its class column
    label_column: str = ""
    group_column: str = ""               # folds keep images sharing its value together
    groups_file: str = ""                # the CSV holding group_column beside id_column
    channels: int = 3                    # 1 for grayscale pictures, 3 for colour
    sample_file: str = "sample_submission.csv"

    def __post_init__(self):
        object.__setattr__(self, "classes", tuple(self.classes))
        object.__setattr__(self, "header", tuple(self.header))
        takes = metrics.get(self.metric).takes   # an unknown name is an error listing the valid ones
        _check_choice("label_source", self.label_source, LABEL_SOURCES)
        _check_choice("submission_values", self.submission_values, SUBMISSION_VALUES)
        if SUBMISSION_FOR[takes] != self.submission_values:
            raise KitError(f"task: metric {self.metric} takes a {takes}, so the submission holds "
                           f"{SUBMISSION_FOR[takes]}, not {self.submission_values}")
        if len(self.classes) < 2 or len(set(map(str, self.classes))) != len(self.classes):
            raise KitError(f"task: classes must be two or more distinct values, got {list(self.classes)[:10]}")
        if self.label_source == CSV and not (self.labels_file and self.label_column):
            raise KitError("task: label_source csv needs labels_file and label_column")
        if self.id_column not in self.header or len(self.header) < 2:
            raise KitError(f"task: header {list(self.header)} needs the id column {self.id_column!r} "
                           f"and a value column")
        if self.submission_values == PROBABILITIES and self.value_columns != [str(c) for c in self.classes]:
            raise KitError(f"task: one probability column per class, in class order; got {self.value_columns}")
        if self.submission_values != PROBABILITIES and len(self.value_columns) != 1:
            raise KitError(f"task: a {self.submission_values} submission has one value column, "
                           f"got {self.value_columns}")
        if self.submission_values == PROBABILITY and not self.binary:
            raise KitError(f"task: a probability submission needs two classes, got {self.n_classes}")
        if bool(self.group_column) != bool(self.groups_file):
            raise KitError("task: group_column and groups_file go together")

    @property
    def n_classes(self) -> int:
        return len(self.classes)

    @property
    def binary(self) -> bool:
        return self.n_classes == 2

    @property
    def value_columns(self) -> list[str]:
        """The header less the id column: one value column, or one probability column per class."""
        return [c for c in self.header if c != self.id_column]

    def image_name(self, image_id) -> str:
        """The file name an id names."""
        return str(image_id) if self.id_with_extension else f"{image_id}{self.image_extension}"

    def class_index(self, values, what: str = "labels") -> np.ndarray:
        """Class values (names or integers, as the labels write them) as indices into `classes`.

        Where the classes are names, an integer in range is taken as an index (the Redux answer
        files write 1 for a dog).
        """
        lookup = {str(c): i for i, c in enumerate(self.classes)}
        named = not all(isinstance(c, int) for c in self.classes)
        out = np.empty(len(values), dtype=np.int64)
        for n, value in enumerate(values):
            text = str(value).strip()
            if text in lookup:
                out[n] = lookup[text]
            elif named and text.isdigit() and int(text) < self.n_classes:
                out[n] = int(text)
            else:
                shown = ", ".join(map(str, self.classes[:10])) + (" ..." if self.n_classes > 10 else "")
                raise KitError(f"{what}: {text!r} is not one of the {self.n_classes} classes ({shown})")
        return out

    def to_dict(self) -> dict:
        data = asdict(self)
        data["classes"] = [_plain(c) for c in self.classes]
        data["header"] = list(self.header)
        return data

    @classmethod
    def from_dict(cls, data: dict, source: str = "task") -> "Task":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise KitError(f"{source}: unknown task key {unknown[0]!r}; valid keys: {', '.join(sorted(known))}")
        required = [f.name for f in fields(cls) if f.default is MISSING and f.name not in data]
        if required:
            raise KitError(f"{source}: task key {required[0]!r} is missing")
        return cls(**data)


def save(task: Task, path: str | Path) -> None:
    fileio.write_json(path, task.to_dict())


def load(path: str | Path) -> Task:
    """A task saved by `save`, or one line saying what is wrong with the file."""
    try:
        data = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise KitError(f"task file not found: {path}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise KitError(f"task file {path} is not valid JSON: {e}") from None
    if not isinstance(data, dict):
        raise KitError(f"task file {path} must hold a JSON object")
    return Task.from_dict(data, source=str(path))


def _plain(value):
    """A class as JSON keeps it: Python int or str, never a numpy scalar."""
    return int(value) if isinstance(value, (int, np.integer)) else str(value)


def _check_choice(key: str, value: str, choices) -> None:
    if value not in choices:
        raise KitError(f"task: {key} {value!r} is not one of: {', '.join(choices)}")
