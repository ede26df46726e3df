"""kaggle-image.txt: every pin says where it came from, and the Python it says .venv-kaggle runs is the real one.

Whether the pins sit inside the ranges is checked where it matters: `make test-kaggle-image` resolves the
file together with requirements-dev.txt (which includes requirements.txt), and a pin outside a range has no
solution.
"""

from __future__ import annotations

import re
import subprocess

from conftest import REPO

PIN = re.compile(r"^([A-Za-z0-9_.-]+)\s*(==|>=)[^#]*#\s*(.*)$")


def pins() -> dict[str, str]:
    """name -> its comment, for every requirement line of the file."""
    rows = {}
    for line in (REPO / "kaggle-image.txt").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            match = PIN.match(line)
            assert match, f"not a pinned requirement with a comment: {line!r}"
            rows[match.group(1)] = match.group(3)
    return rows


def test_every_pin_names_its_source():
    rows = pins()
    assert {"tensorflow", "keras", "protobuf"} <= set(rows)
    for name, comment in rows.items():
        assert re.search(r"\[(platform|docker|tf)\b", comment), f"{name} does not say where it came from"


def test_the_python_it_says_the_venv_runs_is_the_one_make_builds_it_with(tmp_path):
    """The file states the image's Python and the other one .venv-kaggle runs on: the second must be the
    interpreter `make test-kaggle-image` creates the venv with, or the stated difference is not the real one."""
    text = (REPO / "kaggle-image.txt").read_text()
    image = re.search(r"^# Python (3\.\d+)", text, re.M)
    stated = re.search(r"\.venv-kaggle runs on (3\.\d+)", text)
    assert image and stated, "kaggle-image.txt names the image's Python and the one .venv-kaggle runs on"
    recipe = subprocess.run(["make", "-n", "-f", str(REPO / "Makefile"), "STAMP=", "test-kaggle-image"],
                            cwd=tmp_path, capture_output=True, text=True, timeout=60, check=True).stdout
    interpreter = re.search(r"--python (\S+) \.venv-kaggle\b", recipe).group(1)
    built = subprocess.run([interpreter, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
                           capture_output=True, text=True, timeout=60, check=True).stdout.strip()
    assert built == stated.group(1), f"make builds .venv-kaggle with Python {built}, the file says {stated.group(1)}"
    assert built != image.group(1), "the venv runs the image's own Python: the stated difference is gone"
