"""Wall time and peak memory after each named stage of a run, for metrics.json and the results table."""

from __future__ import annotations

import resource
import time


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class Stages:
    def __init__(self, log):
        self.log, self.rows, self._start = log, [], time.time()

    def done(self, name: str) -> None:
        now = time.time()
        self.rows.append({"stage": name, "seconds": round(now - self._start, 1), "peak_rss_mb": round(peak_rss_mb())})
        self.log(f"stage {name}: {now - self._start:.1f} s, peak memory {peak_rss_mb():.0f} MB")
        self._start = now
