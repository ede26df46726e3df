"""Competition files -> an extracted, indexed data directory, and the competition's Task.

Accepts any layout kit.task.read understands: pictures in zips or folders at any depth, labels from
file names, a labels CSV or class folders, a sample submission zipped or not (Kaggle's train.zip,
test.zip and sample_submission.csv for Dogs vs. Cats; the already extracted folders a Kaggle kernel
sees). Three promises:
- safe: an archive entry with an absolute path, a `..` or a link is refused before anything is read
  or extracted;
- idempotent: a second fetch of unchanged sources with the same settings does nothing;
- atomic: extraction happens in a `.partial` folder renamed into place, and the completion marker
  is written last, so an interrupted fetch never looks complete.

The data folder's layout is this module's: <data_dir>/task.json (the Task), index/train.csv (id,
path, label = the class index in Task.classes order, and group when the task groups its images),
index/test.csv (id, path; the id as the sample submission writes it), the sample submission under
its own name, train/ and test/ (a zip's pictures), fetch.json (the marker).
"""

from __future__ import annotations

import os
import re
import shutil
import stat
import zipfile
from pathlib import Path, PurePosixPath

import pandas as pd

from kit import COMPETITION, faults, fileio
from kit.errors import KitError
from kit.task import csvfile, read, spec
from kit.task.spec import CSV, FILE_NAMES, FOLDERS, Task

SPLITS = ("train", "test")
MARKER = "fetch.json"
TASK = "task.json"
INDEX = "index"
GROUP = "group"      # index/train.csv's column of the task's group values
DECIMAL = re.compile(r"^(0|[1-9][0-9]*)$")   # an id read back as an int loses nothing
NATURAL = re.compile(r"(\d+)")


def fetch_from(source: str | Path, data_dir: str | Path, log=print, competition: str = COMPETITION,
               overrides: dict | None = None) -> Path:
    """Read the task of the competition in `source`, extract and index it into `data_dir`. Returns data_dir.

    `overrides` are read_task's (kit.task.read.OVERRIDES); empty values mean "read from the files".
    """
    source, data_dir = Path(source), Path(data_dir)
    if not source.is_dir():
        raise KitError(f"--from {source}: no such directory")
    settings = {"competition": competition, "overrides": {k: v for k, v in sorted((overrides or {}).items()) if v}}
    fingerprint = fingerprints(source)
    marker = data_dir / MARKER
    recorded = fileio.read_json(marker) if is_complete(data_dir) else {}
    if recorded.get("sources") == fingerprint and recorded.get("settings") == settings:
        log(f"fetch: {data_dir} is up to date with {source}; nothing to do")
        return data_dir

    check_archives(source)
    task = read.read_task(source, competition, settings["overrides"])
    data_dir.mkdir(parents=True, exist_ok=True)
    marker.unlink(missing_ok=True)   # from here on the directory is incomplete until the end
    pictures = {split: split_pictures(source, place, data_dir, split, log)
                for split, place in zip(SPLITS, (task.train_images, task.test_images))}
    shutil.copyfile(source / task.sample_file, data_dir / task.sample_file)
    write_index(data_dir, task, source, pictures, log)
    spec.save(task, data_dir / TASK)
    fileio.write_json(marker, {"source": str(source.resolve()), "sources": fingerprint, "settings": settings})
    log(f"fetch: {data_dir} ready ({task.slug}: {task.n_classes} classes, metric {task.metric})")
    return data_dir


def read_task(data_dir: str | Path) -> Task:
    """The task of a fetched data folder. One fetched before fetch saved it (Dogs vs. Cats only, then)
    has it read again from the files it was fetched from, or from its own extracted folders."""
    data_dir = Path(data_dir)
    if not is_complete(data_dir):   # a fetch under way may leave the last one's task.json for now
        raise KitError(f"{data_dir} is not a fetched competition: run `python -m kit fetch --from DIR` (or `make fetch`) first")
    if (data_dir / TASK).is_file():
        return spec.load(data_dir / TASK)
    source = Path(fileio.read_json(data_dir / MARKER).get("source", ""))
    if source.is_dir():
        return read.read_task(source, COMPETITION)
    return read.read_task(data_dir, COMPETITION, {"train_images": "train", "test_images": "test"})


def kept_task(folder: str | Path) -> Task | None:
    """The task.json a run folder or a kernel's output keeps beside its predictions; None without one."""
    path = Path(folder) / TASK
    return spec.load(path) if path.is_file() else None


def fingerprints(source: Path) -> dict:
    """Size and time of every top-level file and folder the competition folder holds."""
    return {p.name: _fingerprint(p) for p in sorted(source.iterdir()) if not p.name.startswith(".")}


def check_archives(source: Path) -> None:
    """Refuse the whole competition if any top-level zip is unreadable, corrupt or holds an unsafe entry."""
    for archive in sorted(source.glob("*.zip")):
        entries(archive)


def is_competition(folder: Path) -> bool:
    """Whether `folder` holds a competition's files, as a sample submission at its top says."""
    return folder.is_dir() and any(read.SAMPLE_NAME.match(p.name) for p in folder.iterdir() if p.is_file())


def is_complete(data_dir: Path) -> bool:
    return (Path(data_dir) / MARKER).is_file()


def entries(archive: Path, verify: bool = True) -> list[zipfile.ZipInfo]:
    """Every entry of `archive`, after refusing the whole archive if it is corrupt (`verify` reads every
    entry's CRC) or any entry is unsafe."""
    try:
        with zipfile.ZipFile(archive) as zf:
            infos = zf.infolist()
            bad = zf.testzip() if verify else None
    except (zipfile.BadZipFile, OSError) as e:
        raise KitError(f"{archive} is not a readable zip archive ({e}); download it again") from None
    if bad is not None:
        raise KitError(f"{archive} is corrupt (CRC error in {bad}); download it again")
    for info in infos:
        safe_entry(archive, info)
    return infos


def safe_entry(archive: Path, info: zipfile.ZipInfo) -> PurePosixPath:
    """The entry's path, after refusing an absolute path, a `..` or a link (callers extract nothing then)."""
    name = info.filename
    pure = PurePosixPath(name.replace("\\", "/"))
    if pure.is_absolute() or ".." in pure.parts or re.match(r"^[A-Za-z]:", name):
        raise KitError(f"{archive}: refusing unsafe entry {name!r} (absolute path or '..'); nothing extracted")
    if stat.S_ISLNK(info.external_attr >> 16):
        raise KitError(f"{archive}: refusing symbolic link entry {name!r}; nothing extracted")
    return pure


def split_pictures(source: Path, place: str, data_dir: Path, split: str, log=print) -> list[tuple[str, Path]]:
    """The split's pictures as (name inside the task's place, file on disk): a folder used in place,
    a zip extracted into data_dir/<split>/."""
    found = source / place
    if found.is_dir():
        log(f"fetch: using extracted {place}/ in place ({found})")
        base = found.resolve()
        return [("/".join(parts), base.joinpath(*parts)) for parts in read.picture_paths(found)]
    return extract_zip(found, data_dir, split, log)


def extract_zip(archive: Path, data_dir: Path, split: str, log=print) -> list[tuple[str, Path]]:
    """The archive's pictures extracted into data_dir/<split>/, less the folder they all share."""
    from tqdm import tqdm

    pictures, ignored = archive_pictures(archive)
    top = shared_folder([name for name, _ in pictures])
    final = data_dir / split
    out = []
    with fileio.atomic_dir(final) as partial, zipfile.ZipFile(archive) as zf:
        for name, info in tqdm(pictures, desc=f"extract {archive.name}", unit="file", leave=False, mininterval=1):
            relative = PurePosixPath(name).relative_to(top) if top else PurePosixPath(name)
            target = partial.joinpath(*relative.parts)
            target.parent.mkdir(parents=True, exist_ok=True)
            with zf.open(info) as src, open(target, "wb") as dst:
                shutil.copyfileobj(src, dst)
            out.append((name, final.resolve().joinpath(*relative.parts)))
            faults.point("extract")
    log(f"fetch: extracted {len(pictures)} files from {archive.name}")
    if ignored:
        log(f"fetch: left {len(ignored)} files of {archive.name} that are not pictures: {_shown(ignored)}")
    return out


def archive_pictures(archive: Path) -> tuple[list[tuple[str, zipfile.ZipInfo]], list[str]]:
    """(name, entry) of every picture, and the other files' names; an entry outside the folder the
    pictures share is refused, since that is not the archive of one split."""
    files = [info for info in entries(archive, verify=False) if not info.is_dir() and not _hidden(info.filename)]
    pictures = [(info.filename.replace("\\", "/"), info) for info in files if read.is_picture(info.filename)]
    top = shared_folder([name for name, _ in pictures])
    for info in files:
        if top and PurePosixPath(info.filename.replace("\\", "/")).parts[0] != top:
            raise KitError(f"{archive}: unexpected entry {info.filename!r} (expected {top}/<file>); nothing extracted")
    return pictures, [info.filename for info in files if not read.is_picture(info.filename)]


def shared_folder(names: list[str]) -> str:
    """The one top folder every name is under, or ""."""
    tops = {PurePosixPath(n).parts[0] for n in names if len(PurePosixPath(n).parts) > 1}
    return tops.pop() if len(tops) == 1 and all(len(PurePosixPath(n).parts) > 1 for n in names) else ""


def write_index(data_dir: Path, task: Task, source: Path, pictures: dict, log=print) -> None:
    """index/train.csv (id, path, label[, group]) and index/test.csv (id, path); paths absolute."""
    train = train_rows(task, source, pictures["train"], log)
    test = test_rows(task, source, pictures["test"], log)
    for name, frame in (("train", train), ("test", test)):
        with fileio.atomic_path(data_dir / INDEX / f"{name}.csv") as tmp:
            frame.to_csv(tmp, index=False)
    counts = train.label.value_counts()
    shown = ", ".join(f"{task.classes[k]} {counts.get(k, 0)}" for k in range(task.n_classes))
    log(f"fetch: indexed {len(train)} training images ({shown}) and {len(test)} test images")


def train_rows(task: Task, source: Path, pictures: list[tuple[str, Path]], log=print) -> pd.DataFrame:
    """One row per labelled training picture, by class then by name (numbers in names compare as numbers)."""
    lookup = label_lookup(task, source)
    classes = {str(c) for c in task.classes}
    rows, ignored = [], []
    for name, path in pictures:
        image_id = picture_id(task, name)
        value = label_of(task, name, lookup)
        if value is None or value not in classes:
            ignored.append(PurePosixPath(name).name)
        else:
            rows.append((image_id, str(path), value))
    if not rows:
        raise KitError(f"no training picture in {task.train_images} has a label: check labels_from and label_column")
    if ignored:
        log(f"fetch: ignored {len(ignored)} files with no label among the {task.n_classes} classes: {_shown(ignored)}")
    frame = pd.DataFrame(rows, columns=["id", "path", "label"])
    frame["label"] = task.class_index(frame["label"].tolist(), "training labels")
    if task.group_column:
        frame[GROUP] = groups_of(task, source, frame["id"])
    order = sorted(range(len(frame)), key=lambda i: (frame["label"].iat[i], natural(frame["id"].iat[i])))
    return frame.iloc[order].reset_index(drop=True)


def test_rows(task: Task, source: Path, pictures: list[tuple[str, Path]], log=print) -> pd.DataFrame:
    """One row per id of the sample submission, in the sample's form, sorted by name."""
    by_name = {PurePosixPath(name).name: path for name, path in pictures}
    ids = csvfile.read(source / task.sample_file, "sample submission")[task.id_column].str.strip()
    rows = [(i, str(by_name[task.image_name(i)])) for i in sorted(ids, key=natural)]
    unlisted = sorted(set(by_name) - {task.image_name(i) for i in ids})
    if unlisted:
        log(f"fetch: ignored {len(unlisted)} test pictures the sample submission does not list: {_shown(unlisted)}")
    return pd.DataFrame(rows, columns=["id", "path"])


def picture_id(task: Task, name: str) -> str:
    """A picture's id in the sample submission's form: its file name, or its stem."""
    file_name = PurePosixPath(name).name
    return file_name if task.id_with_extension else PurePosixPath(file_name).stem


def label_lookup(task: Task, source: Path) -> dict[str, str]:
    """label_source csv: each labelled id, and its file name's stem, -> its class value."""
    if task.label_source != CSV:
        return {}
    table = csvfile.read(source / task.labels_file, "labels file")
    return _by_id(table[task.id_column], table[task.label_column].str.strip())


def label_of(task: Task, name: str, lookup: dict[str, str]) -> str | None:
    path = PurePosixPath(name)
    if task.label_source == FOLDERS:
        return path.parent.name or None
    if task.label_source == FILE_NAMES:
        match = read.FILE_NAME_LABEL.match(path.name)
        return match.group(1).lower() if match else None
    return lookup.get(path.name, lookup.get(path.stem))


def groups_of(task: Task, source: Path, ids: pd.Series) -> list[str]:
    table = csvfile.read(source / task.groups_file, "groups file")
    lookup = _by_id(table[task.id_column], table[task.group_column].str.strip())
    found = [lookup.get(i, lookup.get(PurePosixPath(i).stem)) for i in ids]
    missing = [i for i, g in zip(ids, found) if not g]
    if missing:
        raise KitError(f"{task.groups_file}: {len(missing)} training pictures have no {task.group_column} "
                       f"(first {missing[0]!r})")
    return found


def _by_id(ids: pd.Series, values: pd.Series) -> dict[str, str]:
    """id -> value, keyed by the id as written and by its stem (a CSV's ids may drop the extension)."""
    out = {}
    for image_id, value in zip(ids.str.strip(), values):
        out[image_id] = value
        if read.is_picture(image_id):
            out.setdefault(PurePosixPath(image_id).stem, value)
    return out


def natural(text: str) -> tuple:
    """A sort key under which img_9 comes before img_10."""
    return tuple((0, int(part), "") if part.isdigit() else (1, 0, part) for part in NATURAL.split(str(text)) if part)


def read_index(data_dir: str | Path, split: str) -> pd.DataFrame:
    """An index as written, ids as text ("007" is not "7"); Dogs vs. Cats Redux's numbered test ids as ints,
    as the kit has always read them."""
    data_dir = Path(data_dir)
    if not is_complete(data_dir):
        raise KitError(f"{data_dir} is not a fetched competition: run `python -m kit fetch --from DIR` (or `make fetch`) first")
    index = pd.read_csv(data_dir / INDEX / f"{split}.csv", dtype={"id": str, GROUP: str}, keep_default_na=False)
    if len(index) and index["id"].str.fullmatch(DECIMAL).all() and fetched_slug(data_dir) == COMPETITION:
        index["id"] = index["id"].astype("int64")
    return index


def fetched_slug(data_dir: Path) -> str:
    """The competition a complete data folder holds, without reading its files again: one fetched before
    task.json was saved holds Dogs vs. Cats Redux, the only competition fetch read then."""
    return spec.load(data_dir / TASK).slug if (data_dir / TASK).is_file() else COMPETITION


def _hidden(name: str) -> bool:
    return any(part.startswith(".") or part == "__MACOSX" for part in PurePosixPath(name.replace("\\", "/")).parts)


def _shown(names: list[str], limit: int = 5) -> str:
    return ", ".join(names[:limit]) + (" ..." if len(names) > limit else "")


def _fingerprint(path: Path) -> list:
    if path.is_dir():
        return ["dir", len(os.listdir(path)), path.stat().st_mtime_ns]
    st = path.stat()
    return ["file", st.st_size, st.st_mtime_ns]

