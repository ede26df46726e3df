"""kaggle-image.txt: every pin says where it came from, and sits inside the ranges the kit declares."""

from __future__ import annotations

import re

from packaging.requirements import Requirement

from conftest import REPO


def pins() -> list[tuple[Requirement, str]]:
    rows = []
    for line in (REPO / "kaggle-image.txt").read_text().splitlines():
        spec, _, comment = line.partition("#")
        if spec.strip():
            rows.append((Requirement(spec.strip()), comment))
    return rows


def declared() -> dict[str, Requirement]:
    out = {}
    for line in (REPO / "requirements.txt").read_text().splitlines():
        spec = line.partition("#")[0].strip()
        if spec:
            requirement = Requirement(spec)
            out[requirement.name] = requirement
    return out


def test_every_pin_names_its_source():
    rows = pins()
    assert {r.name for r, _ in rows} >= {"tensorflow", "keras", "protobuf"}
    for requirement, comment in rows:
        assert re.search(r"\[(platform|docker|tf)\b", comment), f"{requirement} does not say where it came from"


def test_pinned_versions_are_inside_the_kits_ranges():
    ranges = declared()
    for requirement, _ in pins():
        exact = [s.version for s in requirement.specifier if s.operator == "=="]
        if exact and requirement.name in ranges:
            assert ranges[requirement.name].specifier.contains(exact[0]), \
                f"{requirement} is outside requirements.txt's {ranges[requirement.name]}"


def test_the_python_difference_is_stated():
    text = (REPO / "kaggle-image.txt").read_text()
    assert "Python 3.12" in text and "runs on 3.11" in text
