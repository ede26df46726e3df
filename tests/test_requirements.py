"""Every third-party package the code imports is declared in requirements.txt, and the lock pins them all.

A package that is only installed because something else depends on it (urllib3 through requests, keras
through tensorflow) can vanish or change major version under us with any upstream release; declaring
what we import is what makes the ranges in requirements.txt mean something.
"""

from __future__ import annotations

import ast
import importlib.metadata
import re
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SOURCE_DIRS = ("kit", "bench", "tests")


def _requirement_names(path: Path) -> set[str]:
    names = set()
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            names.add(_normalise(re.match(r"[A-Za-z0-9._-]+", line).group(0)))
    return names


def _normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _imported_modules() -> dict[str, str]:
    """Top-level module name -> the first file importing it, for absolute imports in our sources."""
    found: dict[str, str] = {}
    for folder in SOURCE_DIRS:
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
               for folder in ("", *SOURCE_DIRS))


def test_every_imported_package_is_declared():
    declared = _requirement_names(REPO / "requirements.txt")
    distributions = importlib.metadata.packages_distributions()
    undeclared = []
    for module, where in sorted(_imported_modules().items()):
        if module in sys.stdlib_module_names or _is_ours(module):
            continue
        owners = {_normalise(d) for d in distributions.get(module, [])}
        if not owners:
            undeclared.append(f"{module} (imported by {where}) is not installed at all")
        elif not owners & declared:
            undeclared.append(f"{module} (imported by {where}) comes from {', '.join(sorted(owners))}, "
                              "which requirements.txt does not name")
    assert not undeclared, "\n".join(undeclared)


def test_the_lock_pins_every_declared_package_exactly():
    declared = _requirement_names(REPO / "requirements.txt")
    pinned = {}
    for line in (REPO / "requirements.lock").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, sep, version = line.partition("==")
            assert sep and version, f"requirements.lock: {line!r} is not an exact pin"
            pinned[_normalise(name)] = version
    assert declared <= set(pinned), f"not in the lock: {sorted(declared - set(pinned))}"
