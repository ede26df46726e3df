"""Atomic writes: a reader sees the old file or the new one, never half of either. And digests: of a
file's bytes, and of data (text, or anything JSON can hold), the one way the kit names content."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import uuid
from functools import lru_cache
from pathlib import Path


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike):
    """Yield a temp path in the target's directory; rename it over the target on success.

    The temp name keeps the target's suffix because some writers (Keras) insist on it.

    The temp file lives beside the target so the final rename stays on one file system
    (and is therefore atomic). On any exception the temp file is removed. It is created with
    mode 0666, which the process umask trims as for any other file (mkstemp would make it 0600).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.{uuid.uuid4().hex[:12]}.tmp{path.suffix}"
    os.close(os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666))
    try:
        yield Path(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike):
    """Yield an empty hidden sibling folder to fill; on success it takes the place of ``path`` whole.

    A reader sees the old folder or the new one. A kill mid-way leaves only the hidden folder, which
    the next call clears; the old folder is moved aside, not deleted, until the new one is in place.
    """
    path = Path(path)
    partial = path.with_name(f".{path.name}.partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    try:
        yield partial
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    old = path.with_name(f".{path.name}.old")
    shutil.rmtree(old, ignore_errors=True)
    if path.exists():
        path.rename(old)
    partial.rename(path)
    shutil.rmtree(old, ignore_errors=True)


def write_text(path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_json(path, data) -> None:
    write_text(path, json.dumps(data, indent=2, sort_keys=True) + "\n")


def write_npz(path, *arrays, **named) -> None:
    """np.savez, atomically: a killed write leaves the old file or none, never half of one."""
    import numpy as np

    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.savez(f, *arrays, **named)


def digest(data, length: int | None = 16) -> str:
    """The sha256 of `data` (bytes, text, or JSON-able data with its keys sorted), as hex cut to `length`."""
    if isinstance(data, str):
        data = data.encode()
    elif not isinstance(data, bytes):
        data = json.dumps(data, sort_keys=True).encode()
    return hashlib.sha256(data).hexdigest()[:length]


def file_digest(path, algorithm: str = "sha256", **params) -> str:
    """Hex digest of a file's bytes (hashlib's `algorithm`, with `params` such as blake2b's digest_size), read in
    chunks (weights files reach 800 MB).

    Remembered per (path, size, mtime): a run checks the same weights file when it resolves, builds and keys
    the feature cache, and each check would otherwise read it whole again.
    """
    st = os.stat(path)
    return _file_digest(str(Path(path).resolve()), st.st_size, st.st_mtime_ns, algorithm,
                        tuple(sorted(params.items())))


@lru_cache(maxsize=64)
def _file_digest(path: str, size: int, mtime_ns: int, algorithm: str, params: tuple) -> str:
    hashed = hashlib.new(algorithm, **dict(params))
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            hashed.update(block)
    return hashed.hexdigest()


def read_json(path) -> dict:
    """A JSON file written by write_json; an unreadable one counts as absent."""
    try:
        return json.loads(Path(path).read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return {}
