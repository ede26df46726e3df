"""One kit command at a time per data directory.

Two commands writing the same extraction, cache or run at once would interleave their
files. An advisory flock is released by the kernel when its process dies, even by
SIGKILL, so a crash never leaves a stale lock behind.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import sys
from pathlib import Path

from kit.errors import KitError

LOCK = ".kit.lock"


@contextlib.contextmanager
def exclusive(data_dir: str | Path):
    data_dir = Path(data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    path = data_dir / LOCK
    with open(path, "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            raise KitError(f"{data_dir} is in use by {holder}; wait for it to finish, then rerun") from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()} (`{' '.join(['python -m kit', *sys.argv[1:]])[:120]}`)")
        handle.flush()
        try:
            yield
        finally:
            handle.seek(0)
            handle.truncate()
