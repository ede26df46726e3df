"""Shared bits for the benchmarks: paths, a timer, and a table with a ratio column."""

from __future__ import annotations

import sys
import time
from contextlib import contextmanager
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

SHARED = REPO.parent / "shared" / "data"
REAL = SHARED / "dvc-real"
WEIGHTS = SHARED / "weights"
DATA = REPO / "data" / "dogs-vs-cats-redux-kernels-edition"


def need_real_data() -> None:
    if not (REAL / "train.zip").is_file():
        print(f"skipped: real images not available at {REAL}")
        sys.exit(0)


def fetched_real() -> Path:
    """The real images, fetched into data/ (a no-op when they already are)."""
    from kit import fetch

    need_real_data()
    return fetch.fetch_from(REAL, DATA, log=lambda m: print(m, file=sys.stderr))


@contextmanager
def timed(into: dict, key: str):
    start = time.perf_counter()
    yield
    into[key] = time.perf_counter() - start


def print_table(title: str, rows: list[dict], columns: list[str], baseline_key: str, ratio_of: str) -> None:
    """Rows of measurements plus `ratio` = row[ratio_of] / baseline row[ratio_of], all from this one run."""
    base = next(r for r in rows if r["name"] == baseline_key)[ratio_of]
    print(f"\n## {title}")
    header = ["name", *columns, "ratio"]
    print(" | ".join(header))
    print(" | ".join("---" for _ in header))
    for r in rows:
        cells = [r["name"], *(_fmt(r[c]) for c in columns), f"{r[ratio_of] / base:.2f}"]
        print(" | ".join(cells))


def _fmt(value) -> str:
    if isinstance(value, float):
        return f"{value:.4f}" if abs(value) < 1 else f"{value:.1f}"
    return str(value)
