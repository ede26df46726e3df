"""Imports run down the pipeline's layers: each part of the kit imports only the parts the table below
allows (docs/architecture.md holds the same table, with what each part owns), and the modules import
each other without a cycle. Lazy imports (inside functions) count as much as those at the top.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
KIT = REPO / "kit"
ARCHITECTURE = REPO / "docs" / "architecture.md"

# Modules that know nothing of the pipeline: one part, "base".
BASE = ("kit", "errors", "fileio", "faults", "provenance", "tfquiet", "lock", "plots", "score")
# Each part (a package kit/<name>/, a top-level module kit/<name>.py, or base) and the parts it may
# import, lowest first. A part not listed here is an error: a new one takes its place in the table.
ALLOWED = {
    "base": set(),
    "task": {"base"},
    "fetch": {"base", "task"},
    "kaggle_env": {"base", "task", "fetch"},
    "data": {"base", "task", "fetch"},
    "models": {"base", "task", "data"},
    "config": {"base", "task", "data", "models"},
    "run": {"base", "task", "fetch", "data", "models", "config"},
    "predict": {"base", "task", "fetch", "kaggle_env", "config", "run"},
    "methods": {"base", "task", "fetch", "data", "models", "config", "run", "predict"},
    "clean": {"base", "task", "fetch", "data", "models", "run"},
    "report": {"base", "task", "fetch", "data", "models", "config", "run", "predict"},
    "kaggle": {"base", "task", "fetch", "kaggle_env", "models", "config", "run", "predict", "methods"},
    "demo": {"base", "task", "fetch", "data", "config", "predict", "methods"},
    "cli": {"base", "task", "fetch", "kaggle_env", "data", "models", "config", "run", "predict", "methods", "clean",
            "report", "kaggle", "demo"},
}


def _module_name(path: Path, kit: Path = KIT) -> str:
    parts = path.relative_to(kit.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def kit_imports(kit: Path = KIT) -> dict[str, set[str]]:
    """Module -> the kit modules importing it runs, from imports anywhere in its source.

    `from kit.a import b` runs kit.a.b when b is a module and kit.a when b is a name. Importing a
    module first runs every package above it, so those count too, except the importer's own
    packages (already running when it is imported).
    """
    modules = {_module_name(p, kit): p for p in kit.rglob("*.py") if "__pycache__" not in p.parts}
    graph = {}
    for name, path in modules.items():
        found = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                found |= {a.name for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                named = {f"{node.module}.{a.name}" for a in node.names}
                found |= {m for m in named if m in modules}
                if any(m not in modules for m in named):
                    found.add(node.module)
        own = {".".join(name.split(".")[:n]) for n in range(1, name.count(".") + 1)}
        found |= {".".join(m.split(".")[:n]) for m in found for n in range(1, m.count(".") + 1)} - own
        graph[name] = {m for m in found if m in modules and m != name and m != "kit"}
    return graph


def part_of(module: str, kit: Path = KIT) -> str:
    """The part a kit module belongs to: its package under kit/, base, or its own name (kit.__main__: cli)."""
    parts = module.split(".")
    if len(parts) == 1 or parts[1] in BASE:
        return "base"
    if parts[1] == "__main__":
        return "cli"
    return parts[1]


def import_sites(kit: Path = KIT) -> list[tuple[str, int, str]]:
    """(file, line, kit module) for every import of a kit module anywhere in the kit's sources."""
    modules = {_module_name(p, kit) for p in kit.rglob("*.py") if "__pycache__" not in p.parts}
    sites = []
    for path in sorted(p for p in kit.rglob("*.py") if "__pycache__" not in p.parts):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                named = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                named = [f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in modules else node.module
                         for a in node.names]
            else:
                continue
            where = f"{path.relative_to(kit.parent)}:{node.lineno}"
            sites += [(where, _module_name(path, kit), m) for m in dict.fromkeys(named) if m.split(".")[0] == "kit"]
    return sites


def layer_violations(kit: Path = KIT, allowed=ALLOWED) -> list[str]:
    """One line per import that runs up (or across) the table, naming the file and line."""
    found = []
    for where, importer, imported in import_sites(kit):
        source, target = part_of(importer), part_of(imported)
        if source not in allowed:
            found.append(f"{where}: part {source!r} ({importer}) is not in the table")
        elif target != source and target not in allowed[source]:
            found.append(f"{where}: {importer} imports {imported}, but {source} may not import {target}")
    return found


def documented_table(text: str) -> dict[str, set[str]]:
    """The markdown table `| part | may import | owns |` of docs/architecture.md, as ALLOWED is written."""
    table = {}
    for line in text.splitlines():
        cells = [c.strip().strip("`") for c in line.strip().strip("|").split("|")]
        if len(cells) >= 2 and line.lstrip().startswith("|") and re.fullmatch(r"[a-z_]+", cells[0]) \
                and cells[0] != "part":
            table[cells[0]] = {c.strip().strip("`") for c in cells[1].split(",") if c.strip() not in ("", "—")}
    return table


def find_cycle(graph: dict[str, set[str]]) -> list[str]:
    """One cycle as a path of modules, or [] (depth-first search, colouring nodes on the stack)."""
    state, stack = {}, []

    def visit(node):
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == "open":
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        stack.pop()
        state[node] = "done"
        return []

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return []


def test_imports_run_down_the_layers():
    violations = layer_violations()
    assert not violations, "imports against docs/architecture.md's table:\n" + "\n".join(violations)


def test_the_table_is_layered_and_covers_every_part():
    assert not find_cycle(ALLOWED), "the table itself has a cycle"
    assert all(below <= set(ALLOWED) for below in ALLOWED.values())
    parts = {part_of(_module_name(p)) for p in KIT.rglob("*.py") if "__pycache__" not in p.parts}
    assert parts == set(ALLOWED), f"parts missing from the table: {parts - set(ALLOWED)}; gone: {set(ALLOWED) - parts}"


def test_the_architecture_page_holds_the_same_table():
    assert documented_table(ARCHITECTURE.read_text()) == ALLOWED


def test_a_lazy_import_up_the_layers_is_reported_with_its_line(tmp_path):
    kit = tmp_path / "kit"
    sources = {"__init__.py": "", "errors.py": "", "data/__init__.py": "", "models/__init__.py": "",
               "data/images.py": "from kit import errors\n\n\ndef load():\n    from kit.models import heads\n",
               "models/heads.py": "from kit.data import images\n"}
    for name, text in sources.items():
        (kit / name).parent.mkdir(parents=True, exist_ok=True)
        (kit / name).write_text(text)
    allowed = {"base": set(), "data": {"base"}, "models": {"base", "data"}}
    assert layer_violations(kit, allowed) == [
        "kit/data/images.py:5: kit.data.images imports kit.models.heads, but data may not import models"]
    assert layer_violations(kit, {**allowed, "data": {"base", "models"}}) == []


def test_no_import_cycle_in_kit():
    cycle = find_cycle(kit_imports())
    assert not cycle, "import cycle: " + " -> ".join(cycle)


def test_the_cycle_finder_finds_one():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) == []


def test_importing_a_module_runs_the_packages_above_it(tmp_path):
    kit = tmp_path / "kit"
    sources = {"__init__.py": "", "a/__init__.py": "from kit.b import thing\n", "a/child.py": "from kit.a import sibling\n",
               "a/sibling.py": "", "b.py": "from kit.a import child\n"}
    for name, text in sources.items():
        (kit / name).parent.mkdir(parents=True, exist_ok=True)
        (kit / name).write_text(text)
    graph = kit_imports(kit)
    # b imports kit.a.child, which first runs kit.a, which imports b: a cycle at run time.
    assert graph["kit.b"] == {"kit.a", "kit.a.child"} and graph["kit.a"] == {"kit.b"}
    assert graph["kit.a.child"] == {"kit.a.sibling"}   # its own package is already running
    assert find_cycle(graph) == ["kit.a", "kit.b", "kit.a"]
