"""Competition files -> an extracted, indexed data directory.

Accepts Kaggle's layout (train.zip, test.zip, sample_submission.csv) or the already
extracted folders some Kaggle kernels see (train/, test/). Three promises:
- safe: an archive entry with an absolute path, a `..` or a link is refused before
  anything is extracted;
- idempotent: a second fetch of unchanged sources does nothing;
- atomic: extraction happens in a `.partial` folder renamed into place, and the
  completion marker is written last, so an interrupted fetch never looks complete.
"""

from __future__ import annotations

import os
import re
import shutil
import stat
import zipfile
from pathlib import Path, PurePosixPath

import pandas as pd

from kit import faults, fileio
from kit.errors import KitError
from kit.score import SAMPLE

SPLITS = ("train", "test")
MARKER = "fetch.json"
TRAIN_NAME = re.compile(r"^(cat|dog)\.(\d+)\.jpg$", re.IGNORECASE)
TEST_NAME = re.compile(r"^(\d+)\.jpg$", re.IGNORECASE)


def fetch_from(source: str | Path, data_dir: str | Path, log=print) -> Path:
    """Extract and index the competition in `source` into `data_dir`. Returns data_dir."""
    source, data_dir = Path(source), Path(data_dir)
    if not source.is_dir():
        raise KitError(f"--from {source}: no such directory")
    inputs = locate_inputs(source)
    fingerprint = {name: _fingerprint(path) for name, path in sorted(inputs.items())}
    marker = data_dir / MARKER
    if is_complete(data_dir) and fileio.read_json(marker).get("sources") == fingerprint:
        log(f"fetch: {data_dir} is up to date with {source}; nothing to do")
        return data_dir

    data_dir.mkdir(parents=True, exist_ok=True)
    marker.unlink(missing_ok=True)   # from here on the directory is incomplete until the end
    images: dict[str, Path] = {}
    for split in SPLITS:
        found = inputs[split]
        if found.suffix == ".zip":
            images[split] = extract_zip(found, data_dir, split, log)
        else:
            images[split] = found.resolve()
            log(f"fetch: using extracted {split}/ in place ({found})")
    shutil.copyfile(inputs["sample"], data_dir / SAMPLE)
    write_index(data_dir, images, log)
    fileio.write_json(marker, {"source": str(source.resolve()), "sources": fingerprint})
    log(f"fetch: {data_dir} ready")
    return data_dir


def locate_inputs(source: Path) -> dict[str, Path]:
    """Find each split as a zip or a folder, and the sample submission."""
    inputs: dict[str, Path] = {}
    for split in SPLITS:
        folder, archive = source / split, source / f"{split}.zip"
        if archive.is_file():
            inputs[split] = archive
        elif folder.is_dir():
            inputs[split] = folder
        else:
            raise KitError(f"{source} has neither {split}.zip nor {split}/: is this the competition folder?")
    if not (source / SAMPLE).is_file():
        raise KitError(f"{source} has no {SAMPLE}")
    inputs["sample"] = source / SAMPLE
    return inputs


def is_complete(data_dir: Path) -> bool:
    return (Path(data_dir) / MARKER).is_file()


def check_archive(archive: Path, split: str) -> list[zipfile.ZipInfo]:
    """Every file entry of `archive`, after refusing the whole archive if any entry is unsafe."""
    try:
        with zipfile.ZipFile(archive) as zf:
            entries = zf.infolist()
            bad = zf.testzip()
    except (zipfile.BadZipFile, OSError) as e:
        raise KitError(f"{archive} is not a readable zip archive ({e}); download it again") from None
    if bad is not None:
        raise KitError(f"{archive} is corrupt (CRC error in {bad}); download it again")
    files = []
    for info in entries:
        name = info.filename
        pure = safe_entry(archive, info)
        if info.is_dir():
            continue
        if pure.parts[0] != split or len(pure.parts) != 2:
            raise KitError(f"{archive}: unexpected entry {name!r} (expected {split}/<file>); nothing extracted")
        files.append(info)
    return files


def safe_entry(archive: Path, info: zipfile.ZipInfo) -> PurePosixPath:
    """The entry's path, after refusing an absolute path, a `..` or a link (callers extract nothing then)."""
    name = info.filename
    pure = PurePosixPath(name.replace("\\", "/"))
    if pure.is_absolute() or ".." in pure.parts or re.match(r"^[A-Za-z]:", name):
        raise KitError(f"{archive}: refusing unsafe entry {name!r} (absolute path or '..'); nothing extracted")
    if stat.S_ISLNK(info.external_attr >> 16):
        raise KitError(f"{archive}: refusing symbolic link entry {name!r}; nothing extracted")
    return pure


def extract_zip(archive: Path, data_dir: Path, split: str, log=print) -> Path:
    from tqdm import tqdm

    files = check_archive(archive, split)
    final = data_dir / split
    with fileio.atomic_dir(final) as partial, zipfile.ZipFile(archive) as zf:
        for info in tqdm(files, desc=f"extract {archive.name}", unit="file", leave=False, mininterval=1):
            target = partial / PurePosixPath(info.filename).name
            with zf.open(info) as src, open(target, "wb") as dst:
                shutil.copyfileobj(src, dst)
            faults.point("extract")
    log(f"fetch: extracted {len(files)} files from {archive.name}")
    return final.resolve()


def write_index(data_dir: Path, images: dict[str, Path], log=print) -> None:
    """index/train.csv (id, path, label) and index/test.csv (id, path); paths absolute."""
    train_rows, test_rows, ignored = [], [], []
    for path in sorted(images["train"].iterdir()):
        match = TRAIN_NAME.match(path.name)
        if match:
            train_rows.append((path.stem, str(path), int(match.group(1).lower() == "dog"), int(match.group(2))))
        else:
            ignored.append(path.name)
    for path in sorted(images["test"].iterdir()):
        match = TEST_NAME.match(path.name)
        if match:
            test_rows.append((int(match.group(1)), str(path)))
        else:
            ignored.append(path.name)
    if not train_rows:
        raise KitError(f"no training images named cat.N.jpg / dog.N.jpg in {images['train']}")
    if not test_rows:
        raise KitError(f"no test images named N.jpg in {images['test']}")
    if ignored:
        shown = ", ".join(ignored[:5]) + (" ..." if len(ignored) > 5 else "")
        log(f"fetch: ignored {len(ignored)} files whose names are not cat.N.jpg, dog.N.jpg or N.jpg: {shown}")

    train = pd.DataFrame(train_rows, columns=["id", "path", "label", "n"])
    train = train.sort_values(["label", "n"]).drop(columns="n")
    test = pd.DataFrame(test_rows, columns=["id", "path"]).sort_values("id")
    for name, frame in (("train", train), ("test", test)):
        with fileio.atomic_path(data_dir / "index" / f"{name}.csv") as tmp:
            frame.to_csv(tmp, index=False)
    dogs = int(train.label.sum())
    log(f"fetch: indexed {len(train)} training images ({len(train) - dogs} cats, {dogs} dogs) and {len(test)} test images")


def read_index(data_dir: str | Path, split: str) -> pd.DataFrame:
    data_dir = Path(data_dir)
    if not is_complete(data_dir):
        raise KitError(f"{data_dir} is not a fetched competition: run `python -m kit fetch --from DIR` (or `make fetch`) first")
    return pd.read_csv(data_dir / "index" / f"{split}.csv")


def _fingerprint(path: Path) -> list:
    if path.is_dir():
        return ["dir", len(os.listdir(path)), path.stat().st_mtime_ns]
    st = path.stat()
    return ["file", st.st_size, st.st_mtime_ns]


TASK = "task.json"


def read_task(data_dir: str | Path):
    """The fetched competition's task: data_dir/task.json, else (a data dir fetched before fetch wrote
    one, which can only be Dogs vs. Cats Redux) the task read from the extracted files: in data_dir,
    or where fetch used extracted folders in place, in the source folder its marker records."""
    from kit import COMPETITION
    from kit.task import read, spec

    data_dir = Path(data_dir)
    if (data_dir / TASK).is_file():
        return spec.load(data_dir / TASK)
    source = fileio.read_json(data_dir / MARKER).get("source") if is_complete(data_dir) else None
    folder = data_dir if (data_dir / "train").is_dir() or not source else Path(source)
    return read.read_task(folder, COMPETITION)
