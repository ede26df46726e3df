"""The package's modules import each other without a cycle, lazy imports (inside functions) included."""

from __future__ import annotations

import ast
from pathlib import Path

KIT = Path(__file__).resolve().parents[1] / "kit"


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
