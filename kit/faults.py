"""Named crash points for the reliability tests.

`KIT_CRASH_AT=<point>` makes the process kill itself with SIGKILL when it reaches that
point (`<point>:<n>`: the n-th time it does): no cleanup handlers, no atexit, no finally
blocks, exactly like the OOM killer or a closed laptop lid. The tests then rerun the same
command and check that it completes, reuses finished work, and ends as an uninterrupted
run does.
"""

from __future__ import annotations

import os
import signal

VARIABLE = "KIT_CRASH_AT"
POINTS = ("extract", "features", "train-epoch", "fold", "submission", "download")
_reached: dict[str, int] = {}   # how often this process has passed each point


def point(name: str) -> None:
    wanted, _, nth = os.environ.get(VARIABLE, "").partition(":")
    if wanted != name:
        return
    _reached[name] = _reached.get(name, 0) + 1
    if _reached[name] >= int(nth or 1):
        os.kill(os.getpid(), signal.SIGKILL)
