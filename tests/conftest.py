"""Shared fixtures: a tiny synthetic competition, fetched once per session."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# The suite stays offline: a missing weights file is an error here, never a download (subprocesses inherit it).
os.environ["KIT_OFFLINE"] = "1"

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
REAL_COMPETITION = SHARED_DATA / "dvc-real"

needs_real_data = pytest.mark.skipif(
    not (REAL_COMPETITION / "train.zip").is_file(),
    reason=f"real images not available at {REAL_COMPETITION}",
)


@pytest.fixture(scope="session")
def competition(tmp_path_factory) -> Path:
    """A synthetic competition folder (train.zip, test.zip, sample_submission.csv) with planted bad files."""
    from kit.data import synthetic

    return synthetic.make_competition(tmp_path_factory.mktemp("synthetic"), n_train=80, n_test=24, seed=1)


@pytest.fixture(scope="session")
def fetched(competition, tmp_path_factory) -> Path:
    """A data directory with the synthetic competition extracted and indexed."""
    from kit import fetch

    return fetch.fetch_from(competition, tmp_path_factory.mktemp("data") / "comp", log=lambda *_: None)


def run_kit(*args, cwd=None, env=None, timeout=600):
    """`python -m kit ARGS` in a subprocess, as a user runs it."""
    full_env = {**os.environ, "PYTHONPATH": str(REPO), **(env or {})}
    return subprocess.run([sys.executable, "-m", "kit", *map(str, args)], cwd=cwd or REPO, env=full_env,
                          capture_output=True, text=True, timeout=timeout)


RELIABILITY_KINDS = {"fault": "faults injected", "bad_input": "bad inputs tried", "secret": "secret checks"}


def pytest_terminal_summary(terminalreporter):
    """Print how many faults, bad inputs and secret checks ran, and how many passed."""
    counts = {kind: [0, 0] for kind in RELIABILITY_KINDS}
    for outcome in ("passed", "failed", "error"):
        for report in terminalreporter.stats.get(outcome, []):
            if getattr(report, "when", "call") != "call":
                continue
            for kind in RELIABILITY_KINDS:
                if kind in getattr(report, "keywords", {}):
                    counts[kind][0] += 1
                    counts[kind][1] += outcome == "passed"
    if any(total for total, _ in counts.values()):
        terminalreporter.write_sep("-", "reliability")
        for kind, (total, passed) in counts.items():
            terminalreporter.write_line(f"{RELIABILITY_KINDS[kind]}: {total} ({passed} passed)")
