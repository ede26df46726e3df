"""Named crash points for the reliability tests.

`KIT_CRASH_AT=<point>` makes the process kill itself with SIGKILL when it reaches that
point: no cleanup handlers, no atexit, no finally blocks, exactly like the OOM killer or
a closed laptop lid. The tests then rerun the same command and check that it completes,
reuses finished work, and leaves nothing that looks complete but is not.
"""

from __future__ import annotations

import os
import signal

VARIABLE = "KIT_CRASH_AT"
POINTS = ("extract", "features", "train-epoch", "fold", "submission", "download")


def point(name: str) -> None:
    if os.environ.get(VARIABLE) == name:
        os.kill(os.getpid(), signal.SIGKILL)
