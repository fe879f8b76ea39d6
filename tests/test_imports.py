"""mdeas's own imports, read from the source (ast): no cycles, and each package keeps to its room (DESIGN.md)."""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "mdeas"

# package -> packages of mdeas it must not import (a package is `mdeas.<name>`, a top-level module counts as one)
FORBIDDEN = {
    "models": {"data", "synth", "module"},
    "losses": {"data", "synth", "module"},
    "metrics": {"data", "synth", "module"},
    "data": {"models", "losses", "module", "synth"},
    "synth": {"models", "losses", "module"},
}
SELF_CONTAINED = {"metrics"}  # imports nothing of mdeas but itself


def module_name(path: Path, root: Path = PACKAGE) -> str:
    parts = path.relative_to(root.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(source: str, name: str, is_package: bool) -> set[str]:
    """The mdeas modules that `source` (module `name`) imports, anywhere in its body, relative imports resolved."""
    found = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".")[: len(name.split(".")) - node.level + (1 if is_package else 0)]
                module = ".".join([*base, node.module] if node.module else base)
            else:
                module = node.module or ""
            found.add(module)
            found.update(f"{module}.{alias.name}" for alias in node.names)
    return {m for m in found if m == "mdeas" or m.startswith("mdeas.")}


def import_graph(root: Path = PACKAGE) -> dict[str, set[str]]:
    """module -> the mdeas modules it imports (names that are attributes, not modules, are dropped)."""
    files = {module_name(p, root): p for p in root.rglob("*.py")}
    return {
        name: {m for m in imports_of(path.read_text(), name, path.name == "__init__.py") if m in files and m != name}
        for name, path in files.items()
    }


def room(module: str) -> str:
    """The package a module lives in: `mdeas.data.zipstore` -> `data`, `mdeas.module` -> `module`."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as a list of modules (first repeated at the end), or None."""
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt) :] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        state[node] = 2
        path.pop()
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def violations(graph: dict[str, set[str]]) -> list[str]:
    """Each import that crosses a forbidden edge, as `importer -> imported`."""
    bad = []
    for module, imported in graph.items():
        for target in imported:
            source_room, target_room = room(module), room(target)
            if target_room in FORBIDDEN.get(source_room, set()):
                bad.append(f"{module} -> {target}")
            elif source_room in SELF_CONTAINED and target_room != source_room and target != "mdeas":
                bad.append(f"{module} -> {target}")
    return sorted(bad)


def test_mdeas_has_no_import_cycle():
    assert find_cycle(import_graph()) is None


def test_packages_keep_to_their_rooms():
    assert violations(import_graph()) == []


def test_the_graph_sees_lazy_and_relative_imports():
    graph = import_graph()
    assert "mdeas.data.errors" in graph["mdeas.cli"]
    assert "mdeas.synth.generate" in graph["mdeas.synth.default_set"]
    source = "def f():\n    from .zipstore import ZipStore\n    import mdeas.models.net\n"
    assert imports_of(source, "mdeas.data.layouts", False) == {
        "mdeas.data.zipstore",
        "mdeas.data.zipstore.ZipStore",
        "mdeas.models.net",
    }


@pytest.mark.parametrize(
    ("importer", "line", "expected"),
    [
        ("data/layouts.py", "from mdeas.models.net import MaskDepthNet", "mdeas.data.layouts -> mdeas.models.net"),
        ("metrics/functional.py", "from mdeas.losses import terms", "mdeas.metrics.functional -> mdeas.losses"),
        ("synth/writer.py", "import mdeas.module", "mdeas.synth.writer -> mdeas.module"),
    ],
)
def test_a_forbidden_import_is_caught(tmp_path, importer, line, expected):
    copy = tmp_path / "mdeas"
    for path in PACKAGE.rglob("*.py"):
        target = copy / path.relative_to(PACKAGE)
        target.parent.mkdir(parents=True, exist_ok=True)
        text = path.read_text()
        target.write_text(f"def late():\n    {line}\n\n\n{text}" if path == PACKAGE / importer else text)
    assert expected in violations(import_graph(copy))


def test_a_cycle_is_caught():
    graph = {"mdeas.a": {"mdeas.b"}, "mdeas.b": {"mdeas.c"}, "mdeas.c": {"mdeas.a"}, "mdeas.d": {"mdeas.a"}}
    assert find_cycle(graph) == ["mdeas.a", "mdeas.b", "mdeas.c", "mdeas.a"]
    assert find_cycle({"mdeas.a": {"mdeas.b"}, "mdeas.b": set()}) is None
