"""`read_task`: a competition's Task from its extracted files, the registry and the user's overrides.

Each fact comes from one place, in this order:
- the sample submission (`sample_submission.csv`, or zipped): the header, the id column (its first,
  or `id_column`) and the id form (with or without a file extension);
- the pictures (jpg, png or tif, at any depth, in folders or zips): the first folder or zip on a
  picture's path whose name says train or test is that split's place (`train_images`,
  `test_images` choose when there are several); a folder beside its own zip is the zip extracted;
- the training labels: class folders (two or more folders holding the pictures), file names
  (`<class>.<n>.jpg`, as Dogs vs. Cats) or a top-level CSV with the id column and a class column;
  `labels_from` (folders, file-names or a CSV's name) and `label_column` choose when those disagree;
- the registry (kit.task.known): the metric and the column that groups images for folds, which no
  file says; `metric` and `group_column` set them for any other competition.
Anything the files leave open ends in one line naming the override to set.
"""

from __future__ import annotations

import re
import zipfile
from collections import Counter
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import numpy as np

from kit.errors import KitError
from kit.task import csvfile, known, metrics, spec
from kit.task.spec import (CLASS, CSV, FILE_NAMES, FOLDERS, IMAGE_EXTENSIONS, PROBABILITIES, PROBABILITY, Task)

OVERRIDES = ("metric", "id_column", "labels_from", "label_column", "group_column", "train_images", "test_images")
SAMPLE_NAME = re.compile(r"^sample_?submission\.csv(\.zip)?$", re.IGNORECASE)
FILE_NAME_LABEL = re.compile(r"^([A-Za-z]+)\.\d+\.[A-Za-z0-9]+$")   # cat.123.jpg
INTEGER = re.compile(r"^-?\d+$")
SPLITS = ("train", "test")
CHANNEL_PROBES = 10   # pictures tried for the channel count before giving up


@dataclass(frozen=True)
class Images:
    """One split's pictures: the folder or zip holding them and their paths inside it."""

    place: str                 # relative to the competition folder, "/"-separated
    names: tuple[str, ...]     # inside place, "/"-separated, sorted

    def file_names(self) -> set[str]:
        return {PurePosixPath(n).name for n in self.names}


def read_task(competition_dir: str | Path, slug: str, overrides: dict | None = None) -> Task:
    root = Path(competition_dir)
    if not root.is_dir():
        raise KitError(f"competition folder not found: {root}")
    overrides = check_overrides(overrides or {})
    metric = choose_metric(slug, overrides)
    sample_path, sample = read_sample(root)
    id_column = choose_id_column(sample, sample_path, overrides)
    pictures = picture_paths(root)
    images = {split: find_images(root, split, overrides, pictures) for split in SPLITS}
    extension = common_extension(images)
    with_extension = id_form(sample[id_column], sample_path.name)
    check_sample_names_test(sample[id_column], with_extension, extension, images["test"], sample_path.name, id_column)
    source, labels_file, label_column, values = read_labels(root, images["train"], id_column, slug, overrides)
    values = known_classes_only(values, slug)
    value_columns = [c for c in sample.columns if c != id_column]
    classes, submission_values = classes_and_values(values, value_columns, metrics.get(metric), sample_path.name)
    group_column, groups_file = find_groups(root, slug, id_column, labels_file, overrides)
    return Task(slug=slug, metric=metric, id_column=id_column, id_with_extension=with_extension,
                image_extension=extension, train_images=images["train"].place, test_images=images["test"].place,
                label_source=source, classes=classes, header=tuple(sample.columns),
                submission_values=submission_values, labels_file=labels_file, label_column=label_column,
                group_column=group_column, groups_file=groups_file,
                channels=count_channels(root, images["train"]), sample_file=sample_path.name)


def check_overrides(overrides: dict) -> dict:
    for key, value in overrides.items():
        if key not in OVERRIDES:
            raise KitError(f"unknown task override {key!r}; valid ones: {', '.join(OVERRIDES)}")
        if not isinstance(value, str) or not value.strip():
            raise KitError(f"task override {key} must be a non-empty name, got {value!r}")
    return {key: value.strip() for key, value in overrides.items()}


def choose_metric(slug: str, overrides: dict) -> str:
    if "metric" in overrides:
        return metrics.get(overrides["metric"]).name
    entry = known.lookup(slug)
    if entry is None:
        raise KitError(f"competition {slug!r} is not one the kit knows ({', '.join(known.KNOWN)}): "
                       f"set metric (one of: {', '.join(metrics.names())})")
    return entry.metric


def read_sample(root: Path):
    """The sample submission's path and its rows (text); an unzipped one wins over a zipped one."""
    found = sorted((p for p in root.iterdir() if p.is_file() and SAMPLE_NAME.match(p.name)),
                   key=lambda p: (p.name.lower().endswith(".zip"), p.name))
    if not found:
        raise KitError(f"no sample_submission.csv (or .csv.zip) in {root}: is this the competition folder?")
    sample = csvfile.read(found[0], "sample submission")
    if len(sample.columns) < 2 or not len(sample):
        raise KitError(f"{found[0].name} must have an id column, a value column and rows; "
                       f"got header {','.join(sample.columns)!r} and {len(sample)} rows")
    return found[0], sample


def choose_id_column(sample, sample_path: Path, overrides: dict) -> str:
    column = overrides.get("id_column", sample.columns[0])
    if column not in sample.columns:
        raise KitError(f"{sample_path.name} has no column {column!r}: "
                       f"set id_column to one of: {', '.join(sample.columns)}")
    return column


# --- pictures -------------------------------------------------------------------------------------

def find_images(root: Path, split: str, overrides: dict, pictures: list[tuple[str, ...]]) -> Images:
    """The split's place and pictures: the override's, or the one place among `pictures` (every
    picture under root, as path parts) whose name says the split."""
    key = f"{split}_images"
    if key in overrides:
        place = overrides[key]
        names = tuple(sorted("/".join(parts) for parts in picture_paths(root / place)))
        if not names:
            raise KitError(f"{key} {place!r}: no jpg, png or tif pictures in {root / place}")
        return Images(place, names)
    places: dict[str, list[str]] = {}
    for parts in pictures:
        cut = split_index(parts)
        if cut is not None and split_of(parts[cut]) == split:
            places.setdefault("/".join(parts[:cut + 1]), []).append("/".join(parts[cut + 1:]))
    # Kaggle's archives are often extracted beside themselves: the folder is the zip's contents.
    extracted = [p for p in places if p.lower().endswith(".zip") and p[:-4] in places]
    for archive in extracted:
        del places[archive]
    if not places:
        raise KitError(f"no {split} pictures (jpg, png, tif) in {root} under a folder or zip named {split}: "
                       f"set {key}")
    if len(places) > 1:
        raise KitError(f"{split} pictures are in several places ({', '.join(sorted(places))}): set {key} to one")
    place, names = next(iter(places.items()))
    return Images(place, tuple(sorted(names)))


def picture_paths(top: Path) -> list[tuple[str, ...]]:
    """Every picture under `top` (a folder or a zip) as path parts; a zip's members follow its name."""
    if top.is_file():
        return [PurePosixPath(m).parts for m in zip_members(top) if is_picture(m)]
    out = []
    for path in sorted(top.rglob("*")):
        parts = path.relative_to(top).parts
        if any(p.startswith(".") or p == "__MACOSX" for p in parts) or not path.is_file():
            continue
        if is_picture(path.name):
            out.append(parts)
        elif path.suffix.lower() == ".zip" and not csvfile.is_csv(path):
            out.extend(parts + PurePosixPath(m).parts for m in zip_members(path) if is_picture(m))
    return out


def zip_members(archive: Path) -> list[str]:
    try:
        with zipfile.ZipFile(archive) as zf:
            return [m for m in zf.namelist() if not m.endswith("/") and "__MACOSX" not in m]
    except (zipfile.BadZipFile, OSError) as e:
        raise KitError(f"{archive} is not a readable zip archive ({e}); download it again") from None


def is_picture(name: str) -> bool:
    return PurePosixPath(name).suffix.lower() in IMAGE_EXTENSIONS


def split_index(parts: tuple[str, ...]) -> int | None:
    """The first folder or zip on the path whose name says train or test (not the picture itself)."""
    for i, part in enumerate(parts[:-1]):
        if split_of(part):
            return i
    return None


def split_of(part: str) -> str:
    """"train" or "test" when a word of the name says so (train_images, stage1_test, training), else ""."""
    words = set(re.split(r"[^a-z]+", part.lower().removesuffix(".zip")))
    said = [split for split in SPLITS if {split, f"{split}ing"} & words]
    return said[0] if len(said) == 1 else ""


def common_extension(images: dict[str, Images]) -> str:
    counts = Counter(PurePosixPath(n).suffix.lower() for split in images.values() for n in split.names)
    return counts.most_common(1)[0][0]


def id_form(ids, sample_name: str) -> bool:
    """Whether the ids carry their file's extension ("a1.jpg") or not ("a1", "17")."""
    carries = np.array([is_picture(i) for i in ids])
    if carries.all() != carries.any():
        raise KitError(f"{sample_name}: some ids carry a file extension and some do not "
                       f"(e.g. {ids[carries].iloc[0]!r} and {ids[~carries].iloc[0]!r})")
    return bool(carries.all())


def check_sample_names_test(ids, with_extension: bool, extension: str, test: Images, sample_name: str,
                            id_column: str) -> None:
    on_disk = test.file_names()
    missing = [i for i in ids if (i if with_extension else f"{i}{extension}") not in on_disk]
    if missing:
        raise KitError(f"{sample_name}: {len(missing)} of {len(ids)} ids in column {id_column!r} name no test picture "
                       f"in {test.place} (first {missing[0]!r}): set id_column or test_images")


def count_channels(root: Path, train: Images) -> int:
    """1 for grayscale pictures, 3 for colour, from the first training pictures that decode."""
    import cv2

    for name in train.names[:CHANNEL_PROBES]:
        data = read_picture(root / train.place, name)
        image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED) if data else None
        if image is not None:
            return 1 if image.ndim == 2 or image.shape[2] == 1 else 3
    raise KitError(f"none of the first {CHANNEL_PROBES} training pictures in {train.place} decodes "
                   f"(first {train.names[0]!r}): are these pictures?")


def read_picture(place: Path, name: str) -> bytes:
    if place.is_file():
        with zipfile.ZipFile(place) as zf:
            return zf.read(name)
    return (place / name).read_bytes()


# --- training labels ------------------------------------------------------------------------------

def read_labels(root: Path, train: Images, id_column: str, slug: str, overrides: dict):
    """(label_source, labels_file, label_column, every training label's class value)."""
    chosen = overrides.get("labels_from")
    column = overrides.get("label_column", "")
    if chosen == FOLDERS or (chosen is None and not column and folder_labels(train)):
        return _from_folders(train)
    if chosen == FILE_NAMES or (chosen is None and not column and file_name_labels(train)):
        return _from_file_names(train)
    tables = [root / chosen] if chosen else label_tables(root, id_column, column, slug)
    if not tables:
        wanted = f"columns {id_column!r} and {column!r}" if column else f"column {id_column!r} and a class column"
        raise KitError(f"cannot find the training labels in {root}: no class folders under {train.place}, no "
                       f"<class>.<n> file names, no CSV with {wanted}: set labels_from and label_column")
    if len(tables) > 1:
        raise KitError(f"the training labels could be in {', '.join(t.name for t in tables)}: "
                       f"set labels_from to one of them")
    return _from_csv(tables[0], train, id_column, column)


def known_classes_only(values: list[str], slug: str) -> list[str]:
    """The labels among the registry's classes, where it names them (the others are strays fetch reports)."""
    entry = known.lookup(slug)
    return [v for v in values if v in entry.classes] if entry and entry.classes else values


def folder_labels(train: Images) -> list[str]:
    """Each picture's folder, when the pictures sit in two or more folders (class folders); else []."""
    parents = [PurePosixPath(n).parent.name for n in train.names]
    return parents if all(parents) and len(set(parents)) >= 2 else []


def file_name_labels(train: Images) -> list[str]:
    """Each picture's class from a `<class>.<n>.<ext>` name, when every name has that form; else []."""
    matches = [FILE_NAME_LABEL.match(PurePosixPath(n).name) for n in train.names]
    classes = [m.group(1).lower() for m in matches if m]
    return classes if len(classes) == len(matches) and len(set(classes)) >= 2 else []


def label_tables(root: Path, id_column: str, column: str, slug: str) -> list[Path]:
    """Top-level CSVs with the id column and a class column (`column`, or any other); not the sample's
    and not the registry's groups file, which hold no labels."""
    entry = known.lookup(slug)
    skip = {entry.groups_file} if entry and entry.groups_file else set()
    found = []
    for path in sorted(root.iterdir()):
        if not path.is_file() or not csvfile.is_csv(path) or SAMPLE_NAME.match(path.name) or path.name in skip:
            continue
        header = csvfile.columns(path, "CSV")
        if id_column in header and (column in header if column else len(header) > 1):
            found.append(path)
    return found


def _from_folders(train: Images):
    labels = folder_labels(train)
    if not labels:
        raise KitError(f"labels_from folders: the pictures in {train.place} are not in two or more class folders")
    return FOLDERS, "", "", labels


def _from_file_names(train: Images):
    labels = file_name_labels(train)
    if not labels:
        raise KitError(f"labels_from file-names: the pictures in {train.place} are not all named <class>.<n>.<ext>")
    return FILE_NAMES, "", "", labels


def _from_csv(path: Path, train: Images, id_column: str, column: str):
    table = csvfile.read(path, "labels file")
    if id_column not in table.columns:
        raise KitError(f"{path.name} has no id column {id_column!r} (the sample submission's): set id_column")
    others = [c for c in table.columns if c != id_column]
    if not column:
        if len(others) != 1:
            raise KitError(f"{path.name} has several columns beside {id_column!r} ({', '.join(others)}): "
                           f"set label_column to the class column")
        column = others[0]
    if column not in table.columns:
        raise KitError(f"{path.name} has no column {column!r}: set label_column to one of: {', '.join(others)}")
    empty = table[column].str.strip() == ""
    if empty.any():
        raise KitError(f"{path.name}: {int(empty.sum())} rows have no {column} "
                       f"(first id {table[id_column][empty].iloc[0]!r})")
    check_labels_name_train(table[id_column], train, path.name, id_column)
    return CSV, path.name, column, table[column].str.strip().tolist()


def check_labels_name_train(ids, train: Images, file_name: str, id_column: str) -> None:
    """At least some labelled ids must name a training picture, or the id column or form is wrong.

    Single missing pictures are the index's to count and report; none found is a wrong layout.
    """
    on_disk = {name for n in train.file_names() for name in (n, PurePosixPath(n).stem)}
    if not any(i in on_disk for i in ids):
        raise KitError(f"{file_name}: no id in column {id_column!r} names a training picture in {train.place} "
                       f"(first {ids.iloc[0]!r}): set id_column or train_images")


# --- classes, submission values, groups -----------------------------------------------------------

def classes_and_values(values: list[str], value_columns: list[str], metric: metrics.Metric, sample_name: str):
    """The classes in the model's output order, and what the submission's value columns hold."""
    classes = sorted_classes(values)
    if len(classes) < 2:
        raise KitError(f"the training labels hold one class only ({classes[0]!r})")
    if len(value_columns) > 1:
        if metric.takes != metrics.PROBABILITIES:
            raise KitError(f"{sample_name} has {len(value_columns)} value columns, one per class, but metric "
                           f"{metric.name} takes a {metric.takes}: set metric (multi_log_loss takes those)")
        by_name = {str(c): c for c in classes}
        if set(value_columns) != set(by_name):
            raise KitError(f"{sample_name}'s value columns ({_shown(value_columns)}) are not the training classes "
                           f"({_shown(list(by_name))}): set labels_from or label_column")
        return tuple(by_name[c] for c in value_columns), PROBABILITIES
    if metric.takes == metrics.PROBABILITIES:
        raise KitError(f"metric {metric.name} takes one probability column per class, but {sample_name} has one "
                       f"value column ({value_columns[0]}): set metric")
    if metric.takes == metrics.PROBABILITY:
        if len(classes) != 2:
            raise KitError(f"metric {metric.name} needs two classes; the training labels hold {len(classes)}: "
                           f"set metric")
        return classes, PROBABILITY
    if metric.takes == metrics.GRADE and not all(isinstance(c, int) for c in classes):
        raise KitError(f"metric {metric.name} needs integer grades as classes, got {_shown(classes)}: set metric")
    return classes, CLASS


def sorted_classes(values: list[str]) -> tuple:
    """The distinct class values, as integers when all are, sorted."""
    distinct = set(values)
    if all(INTEGER.match(v) for v in distinct):
        return tuple(sorted({int(v) for v in distinct}))
    return tuple(sorted(distinct))


def find_groups(root: Path, slug: str, id_column: str, labels_file: str, overrides: dict) -> tuple[str, str]:
    """(group_column, groups_file): the registry's, or the CSV holding `group_column` beside the id column."""
    entry = known.lookup(slug)
    column = overrides.get("group_column") or (entry.group_column if entry else "")
    if not column:
        return "", ""
    if entry and column == entry.group_column:
        candidates = [root / entry.groups_file]
    else:
        candidates = [p for p in sorted(root.iterdir()) if p.is_file() and csvfile.is_csv(p)]
        candidates.sort(key=lambda p: p.name != labels_file)   # the labels file first, if it has the column
    for path in candidates:
        if path.is_file() and {id_column, column} <= set(csvfile.columns(path, "groups file")):
            return column, path.name
    raise KitError(f"group_column {column!r}: no CSV in {root} has it beside the id column {id_column!r} "
                   f"(looked in {', '.join(p.name for p in candidates) or 'no CSV'})")


def _shown(items, limit: int = 8) -> str:
    items = [str(i) for i in items]
    return ", ".join(items[:limit]) + (f" ... ({len(items)})" if len(items) > limit else "")


def task_from(path: str | Path, slug: str | None = None, overrides: dict | None = None) -> Task:
    """A task saved as JSON (kit.task.spec.save), or one read now from a competition folder
    (its slug: `slug`, else the folder's name)."""
    path = Path(path)
    if path.is_dir():
        return read_task(path, slug or path.name, overrides)
    if overrides or slug:
        given = [*(["the competition"] if slug else []), *(overrides or {})]
        raise KitError(f"{path} is a saved task: {', '.join(given)} can be set only when reading a competition folder")
    return spec.load(path)
