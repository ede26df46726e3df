"""kaggle-image.txt: every pin says where it came from, and the Python difference is stated.

Whether the pins sit inside requirements.txt's ranges is checked where it matters: `make
test-kaggle-image` resolves both files together, and a pin outside a range has no solution.
"""

from __future__ import annotations

import re

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


def test_the_python_difference_is_stated():
    text = (REPO / "kaggle-image.txt").read_text()
    assert "Python 3.12" in text and "runs on 3.11" in text
