"""`python -m kit fetch` with no --from: download with the official client, check, unpack, then fetch as --from does.

Everything lives under <data_dir>/download/:
    <slug>.zip        the client's download; while interrupted, a partial file under this same
                      name plus <slug>.zip.kaggle-partial, which the client resumes from
    files/            the archive's contents (whatever the competition holds: train.zip, a labels
                      CSV, image folders, sample_submission.csv or .csv.zip),
                      unpacked through a .partial folder and handed to fetch.fetch_from
    download.json     size and mtime of the archive files/ was unpacked from, written last
    metric.json       Kaggle's name for the metric, for a competition the kit's registry does not
                      know: asked once per download, so a second fetch stays off the network

A second fetch finds download.json matching the archive and does not contact Kaggle at
all; --force downloads again. A partial download is never deleted (the next run resumes
it); a complete download that is not a sound zip is deleted, because the client would
otherwise keep it as "more recently modified" than Kaggle's copy forever.
"""

from __future__ import annotations

import contextlib
import shutil
import threading
import time
import zipfile
import zlib
from pathlib import Path

from kit import faults, fetch, fileio
from kit.errors import KitError
from kit.kaggle import kaggle_api
from kit.task import known, metrics, read

RECORD = "download.json"
METRIC_RECORD = "metric.json"
FILES = "files"   # the archive's contents, under the download folder
PARTIAL_SUFFIX = ".kaggle-partial"   # the client's resume marker beside the file


def fetch_from_kaggle(slug: str, data_dir: str | Path, force: bool = False, log=print,
                      overrides: dict | None = None) -> Path:
    """Download (or resume) the competition `slug`, check and unpack it, then read its task (with read_task's
    `overrides`), extract and index it."""
    data_dir = Path(data_dir)
    folder = data_dir / "download"
    archive, files = folder / f"{slug}.zip", folder / FILES
    if not force and is_unpacked(archive, files):
        log(f"fetch: {archive} is downloaded and checked; not contacting Kaggle (--force downloads it again)")
    else:
        (folder / RECORD).unlink(missing_ok=True)   # files/ no longer known to match the archive
        (folder / METRIC_RECORD).unlink(missing_ok=True)
        download(slug, folder, force, log)
        check_download(archive)
        unpack(archive, files, log)
        fileio.write_json(folder / RECORD, _stamp(archive))
    overrides = dict(overrides or {})
    if not overrides.get("metric") and known.lookup(slug) is None:
        overrides["metric"] = metric_from_kaggle(slug, folder, log)
    return fetch.fetch_from(files, data_dir, log, competition=slug, overrides=overrides)


def metric_from_kaggle(slug: str, folder: Path, log=print) -> str:
    """The metric of a competition the kit's registry does not know, from Kaggle's own name for it
    (asked once per download; `folder` is the download's)."""
    saved = fileio.read_json(folder / METRIC_RECORD)
    if saved.get("slug") == slug:
        named = saved.get("evaluation_metric", "")
    else:
        named = kaggle_api.evaluation_metric(slug)
        fileio.write_json(folder / METRIC_RECORD, {"slug": slug, "evaluation_metric": named})
    _, sample = read.read_sample(folder / FILES)
    metric = metrics.from_kaggle(named, len(sample.columns) - 1) if named else None
    if metric is None:
        said = f"Kaggle names its metric {named!r}" if named else "Kaggle lists no metric for it"
        raise KitError(f"competition {slug!r} is not one the kit knows and {said}: set metric "
                       f"(one of: {', '.join(metrics.names())}), e.g. make fetch COMPETITION={slug} SET='metric=NAME'")
    log(f"fetch: Kaggle names the metric of {slug} {named!r}: scoring on {metric} ({metrics.get(metric).description})")
    return metric


def is_unpacked(archive: Path, files: Path) -> bool:
    record = fileio.read_json(archive.parent / RECORD)
    return (archive.is_file() and files.is_dir() and not _marker(archive).exists()
            and record == _stamp(archive))


def download(slug: str, folder: Path, force: bool, log=print) -> None:
    kaggle_api.check_credentials()   # before we announce a download that cannot start
    archive = folder / f"{slug}.zip"
    resuming = _marker(archive).exists() and not force
    log(f"fetch: {'resuming the download of' if resuming else 'downloading'} {slug} from Kaggle into {folder}/")
    started = time.time()
    folder.mkdir(parents=True, exist_ok=True)
    with _progress(archive):
        kaggle_api.download(slug, folder, force)
    faults.point("download")
    size = archive.stat().st_size / 1e6 if archive.is_file() else 0.0
    log(f"fetch: have {archive.name} ({size:.1f} MB) after {time.time() - started:.0f} s")


def check_download(archive: Path) -> None:
    """Refuse, and delete, a complete download that is not a sound zip; keep a partial for resuming."""
    if not archive.is_file():
        raise KitError(f"the kaggle client finished without saving {archive}: rerun `python -m kit fetch`")
    expected = fileio.read_json(_marker(archive)).get("size")
    if _marker(archive).exists() and (not expected or archive.stat().st_size < expected):
        raise KitError(f"{archive} is still incomplete: rerun `python -m kit fetch` to resume the download")
    try:
        with zipfile.ZipFile(archive) as zf:
            bad = zf.testzip()
        problem = f"CRC error in {bad}" if bad else None
    except (zipfile.BadZipFile, zlib.error, EOFError) as e:
        problem = str(e) or type(e).__name__
    except OSError as e:
        raise KitError(f"cannot read {archive}: {e.strerror or e}") from None
    _marker(archive).unlink(missing_ok=True)   # complete now, or about to be deleted: nothing to resume
    if problem:
        archive.unlink()
        raise KitError(f"the downloaded {archive.name} is corrupt ({problem}); deleted it: "
                       "rerun `python -m kit fetch` to download it again")


def unpack(archive: Path, files: Path, log=print) -> None:
    """Extract the outer archive into `files` via a .partial folder, refusing unsafe entries first."""
    with zipfile.ZipFile(archive) as zf:
        entries = [(info, fetch.safe_entry(archive, info)) for info in zf.infolist()]
        with fileio.atomic_dir(files) as partial:   # an empty archive still unpacks to a folder fetch can judge
            for info, relative in entries:
                if info.is_dir():
                    continue
                target = partial.joinpath(*relative.parts)
                target.parent.mkdir(parents=True, exist_ok=True)
                with zf.open(info) as src, open(target, "wb") as dst:
                    shutil.copyfileobj(src, dst, 1 << 20)
    log(f"fetch: unpacked {archive.name}: {', '.join(sorted(p.name for p in files.iterdir()))}")


def _marker(archive: Path) -> Path:
    return archive.with_name(archive.name + PARTIAL_SUFFIX)


def _stamp(archive: Path) -> dict:
    st = archive.stat()
    return {"archive": archive.name, "size": st.st_size, "mtime_ns": st.st_mtime_ns}


@contextlib.contextmanager
def _progress(archive: Path, every: float = 0.5):
    """A byte counter on a terminal while the client downloads; the client runs quiet because
    its own output is a stream of prints. The total comes from the client's resume marker."""
    from tqdm import tqdm

    stop = threading.Event()
    with tqdm(desc=f"download {archive.name}", unit="B", unit_scale=True, unit_divisor=1024,
              disable=None, leave=False) as bar:
        def poll():
            while not stop.wait(every):
                total = fileio.read_json(_marker(archive)).get("size")
                if total and bar.total != total:
                    bar.total = total
                with contextlib.suppress(OSError):
                    bar.n = archive.stat().st_size
                bar.refresh()

        watcher = threading.Thread(target=poll, daemon=True)
        if not bar.disable:
            watcher.start()
        try:
            yield
        finally:
            stop.set()
            if watcher.is_alive():
                watcher.join()
