"""The import layers of docs/architecture.md ("Layers"), checked on the source with ``ast``.

Every module under ``hero_bench/`` and ``oracles/`` is parsed; its imports of project modules,
including those inside functions, are the edges of the import graph.  Importing ``a.b.c`` also
runs the package ``a.b``'s ``__init__``, so it adds an edge to that package too (unless the
importer lives inside it).  Imports under ``if TYPE_CHECKING:`` never run and are left out, and
so are ``importlib`` look-ups by name (the CLI's subcommands, ``hero_bench.tasks`` discovering the
``oracles`` package).

The rule: no cycle among project modules, and a module imports only modules of its own layer or
of a layer below it.  The layers are declared once, in the table of docs/architecture.md.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("hero_bench", "oracles")
DOC = ROOT / "docs" / "architecture.md"
TABLE_BEGIN, TABLE_END = "<!-- layers:begin -->", "<!-- layers:end -->"


def project_modules(root: Path = ROOT) -> dict[str, Path]:
    """Dotted module name -> file, for every .py file of the project packages."""
    modules = {}
    for package in PACKAGES:
        for path in sorted((root / package).rglob("*.py")):
            parts = list(path.relative_to(root).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            modules[".".join(parts)] = path
    return modules


def _runtime_imports(tree: ast.AST):
    """Import nodes that can run: everywhere, functions included, except ``if TYPE_CHECKING:`` bodies."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for child in node.orelse:
                yield from _runtime_imports(ast.Module(body=[child], type_ignores=[]))
            continue
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        yield from _runtime_imports(node)


def _owner(name: str, modules: dict[str, Path]) -> str | None:
    """The project module a dotted name lives in (``a.b.func`` -> ``a.b``), or None."""
    while name and name not in modules:
        name = name.rpartition(".")[0]
    return name or None


def import_graph(modules: dict[str, Path]) -> dict[str, dict[str, int]]:
    """module -> {imported project module: line of the first such import}."""
    graph: dict[str, dict[str, int]] = {}
    for module, path in modules.items():
        edges: dict[str, int] = {}
        package = module if path.name == "__init__.py" else module.rpartition(".")[0]
        for node in _runtime_imports(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            else:
                base = node.module or ""
                if node.level:  # relative import
                    anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                    base = ".".join(anchor + ([base] if base else []))
                names = [f"{base}.{alias.name}" for alias in node.names]
            for name in names:
                target = _owner(name, modules)
                if target is None:
                    continue
                # the target and every package above it that the importer is not inside of
                parts = target.split(".")
                for i in range(len(parts), 0, -1):
                    dep = ".".join(parts[:i])
                    if dep != module and not module.startswith(dep + ".") and dep in modules:
                        edges.setdefault(dep, node.lineno)
        graph[module] = edges
    return graph


def find_cycle(graph: dict[str, dict[str, int]]) -> list[str] | None:
    """One import cycle as [a, b, ..., a], or None (iterative depth-first search)."""
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done
    for start in sorted(graph):
        if state.get(start):
            continue
        path, iters = [start], [iter(sorted(graph[start]))]
        state[start] = 1
        while path:
            nxt = next(iters[-1], None)
            if nxt is None:
                state[path.pop()] = 2
                iters.pop()
            elif state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            elif not state.get(nxt) and nxt in graph:
                state[nxt] = 1
                path.append(nxt)
                iters.append(iter(sorted(graph[nxt])))
    return None


def read_layers(doc: Path = DOC) -> list[tuple[int, str, list[str]]]:
    """(number, name, module patterns) of every row of the layer table, bottom layer first."""
    text = doc.read_text()
    assert TABLE_BEGIN in text and TABLE_END in text, f"{doc} has no layer table between {TABLE_BEGIN} and {TABLE_END}"
    table = text.split(TABLE_BEGIN, 1)[1].split(TABLE_END, 1)[0]
    layers = []
    for line in table.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) < 3 or not cells[0].isdigit():
            continue
        layers.append((int(cells[0]), cells[1], re.findall(r"`([\w.*]+)`", cells[2])))
    return sorted(layers)


def layer_of(modules: dict[str, Path], layers) -> dict[str, int]:
    """Module -> layer number.  An exact name beats a ``pkg.*`` pattern (the package and everything in it);
    a longer pattern beats a shorter one."""
    out, best = {}, {}
    for number, _, patterns in layers:
        for pattern in patterns:
            prefix = pattern[:-2] if pattern.endswith(".*") else None
            for module in modules:
                hit = module == pattern if prefix is None else (module == prefix or module.startswith(prefix + "."))
                rank = (prefix is None, len(pattern))
                if hit and rank > best.get(module, (False, -1)):
                    out[module], best[module] = number, rank
    return out


def upward_imports(graph, layers_of: dict[str, int]) -> list[str]:
    return [
        f"{module} (layer {layers_of[module]}) imports {dep} (layer {layers_of[dep]}) at line {line}"
        for module, edges in sorted(graph.items())
        for dep, line in sorted(edges.items())
        if layers_of[dep] > layers_of[module]
    ]


# ---------------------------------------------------------------------------------------------
# The checks on the project
# ---------------------------------------------------------------------------------------------

MODULES = project_modules()
GRAPH = import_graph(MODULES)
LAYERS = read_layers()


def test_layer_table_is_well_formed():
    numbers = [n for n, _, _ in LAYERS]
    assert numbers == list(range(len(LAYERS))), f"layers must be numbered 0..n-1 from the bottom, got {numbers}"
    assert len(LAYERS) >= 5, "the layer table was not found or lost rows"


def test_every_module_has_a_layer_and_every_pattern_a_module():
    placed = layer_of(MODULES, LAYERS)
    missing = sorted(set(MODULES) - set(placed))
    assert not missing, (f"modules in no layer: {', '.join(missing)}; add each to the layer table of "
                         "docs/architecture.md (the lowest layer whose modules it needs)")
    stale = [p for _, _, patterns in LAYERS for p in patterns
             if not any(m == p.removesuffix(".*") or m.startswith(p.removesuffix(".*") + ".") for m in MODULES)]
    assert not stale, f"the layer table names modules that do not exist: {', '.join(stale)}"


def test_no_import_cycle():
    cycle = find_cycle(GRAPH)
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_no_upward_import():
    bad = upward_imports(GRAPH, layer_of(MODULES, LAYERS))
    assert not bad, "imports that point up the layers of docs/architecture.md:\n" + "\n".join(bad)


# ---------------------------------------------------------------------------------------------
# The checker itself, on a throw-away package
# ---------------------------------------------------------------------------------------------


@pytest.fixture
def toy_project(tmp_path):
    def write(rel, text=""):
        path = tmp_path / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)

    write("hero_bench/__init__.py")
    write("hero_bench/low.py", "import os\n")
    write("hero_bench/sub/__init__.py", "from hero_bench.sub import leaf\n")
    write("hero_bench/sub/leaf.py", "from hero_bench.low import x\n")
    write("hero_bench/high.py", "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from hero_bench import top\n"
                                "def f():\n    from hero_bench.sub.leaf import g\n")
    write("hero_bench/top.py", "from . import high\n")
    write("oracles/__init__.py")
    return tmp_path


def test_checker_sees_function_level_relative_and_package_imports(toy_project):
    graph = import_graph(project_modules(toy_project))
    assert set(graph["hero_bench.high"]) == {"hero_bench.sub.leaf", "hero_bench.sub"}  # not TYPE_CHECKING's top
    assert set(graph["hero_bench.top"]) == {"hero_bench.high"}
    assert set(graph["hero_bench.sub"]) == {"hero_bench.sub.leaf"}  # its own package is not an edge
    assert find_cycle(graph) is None


def test_checker_names_a_cycle_and_an_upward_import(toy_project):
    (toy_project / "hero_bench" / "low.py").write_text("def f():\n    import hero_bench.top\n")
    modules = project_modules(toy_project)
    graph = import_graph(modules)
    cycle = find_cycle(graph)
    assert cycle is not None and cycle[0] == cycle[-1] and "hero_bench.low" in cycle
    doc = toy_project / "layers.md"
    doc.write_text(f"{TABLE_BEGIN}\n| 0 | bottom | `hero_bench`, `hero_bench.low`, `oracles` |\n"
                   f"| 1 | middle | `hero_bench.sub.*` |\n| 2 | top | `hero_bench.high`, `hero_bench.top` |\n{TABLE_END}\n")
    layers = read_layers(doc)
    placed = layer_of(modules, layers)
    assert placed["hero_bench.sub.leaf"] == 1 and placed["hero_bench.sub"] == 1
    assert upward_imports(graph, placed) == [
        "hero_bench.low (layer 0) imports hero_bench.top (layer 2) at line 2"]
