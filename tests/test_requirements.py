"""Every third-party package the code imports is declared, in the file its use belongs to, and the lock pins
them all.

requirements.txt holds what the kit needs at run time (kit/ imports only from it, so `pip install -r
requirements.txt` gives a kit that runs); requirements-dev.txt includes it and adds what the tests, the
benchmarks and the Makefile's tools need. A package that is only installed because something else depends on
it (urllib3 through requests, keras through tensorflow) can vanish or change major version under us with any
upstream release; declaring what we import is what makes the ranges mean something.
"""

from __future__ import annotations

import ast
import importlib.metadata
import re
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
RUNTIME, DEV = REPO / "requirements.txt", REPO / "requirements-dev.txt"
# Which declarations each folder's imports may draw on.
ALLOWED = {"kit": RUNTIME, "bench": DEV, "tests": DEV}


def _requirement_names(path: Path) -> set[str]:
    """The packages a requirements file declares, with those of the files it includes (`-r FILE`)."""
    names = set()
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line.startswith("-r"):
            names |= _requirement_names(path.parent / line[2:].strip())
        elif line:
            names.add(_normalise(re.match(r"[A-Za-z0-9._-]+", line).group(0)))
    return names


def _normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _imported_modules(folder: str) -> dict[str, str]:
    """Top-level module name -> the first file importing it, for absolute imports in one source folder."""
    found: dict[str, str] = {}
    for path in sorted((REPO / folder).rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                modules = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                modules = [node.module]
            else:
                continue
            for module in modules:
                found.setdefault(module.split(".")[0], str(path.relative_to(REPO)))
    return found


def _is_ours(module: str) -> bool:
    """The kit itself, and the helper modules tests and benchmarks import from their own folder."""
    return any((REPO / folder / f"{module}.py").is_file() or (REPO / folder / module).is_dir()
               for folder in ("", *ALLOWED))


@pytest.mark.parametrize("folder", sorted(ALLOWED))
def test_every_imported_package_is_declared_where_it_belongs(folder):
    allowed = ALLOWED[folder]
    declared = _requirement_names(allowed)
    distributions = importlib.metadata.packages_distributions()
    undeclared = []
    for module, where in sorted(_imported_modules(folder).items()):
        if module in sys.stdlib_module_names or _is_ours(module):
            continue
        owners = {_normalise(d) for d in distributions.get(module, [])}
        if not owners:
            undeclared.append(f"{module} (imported by {where}) is not installed at all")
        elif not owners & declared:
            undeclared.append(f"{module} (imported by {where}) comes from {', '.join(sorted(owners))}, "
                              f"which {allowed.name} does not name")
    assert not undeclared, "\n".join(undeclared)


def test_the_dev_file_adds_to_the_runtime_one_without_repeating_it():
    lines = [line.split("#", 1)[0].strip() for line in DEV.read_text().splitlines()]
    assert f"-r {RUNTIME.name}" in lines, f"{DEV.name} includes {RUNTIME.name}"
    own = {_normalise(re.match(r"[A-Za-z0-9._-]+", line).group(0)) for line in lines if line and line[0] != "-"}
    assert own and not own & _requirement_names(RUNTIME), f"declared twice: {sorted(own & _requirement_names(RUNTIME))}"


def test_the_lock_pins_every_declared_package_exactly():
    declared = _requirement_names(DEV)
    pinned = {}
    for line in (REPO / "requirements.lock").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, sep, version = line.partition("==")
            assert sep and version, f"requirements.lock: {line!r} is not an exact pin"
            pinned[_normalise(name)] = version
    assert declared <= set(pinned), f"not in the lock: {sorted(declared - set(pinned))}"
