"""The import graph runs one way. Every module under src/scarce is read with `ast` (module-level, function-level
and relative imports alike) and each scarce-internal import becomes an edge `module -> imported`; the table below
is the architecture, and a forbidden edge or a cycle fails with its file and line.

Data flows: source files -> shards -> datasets / DataModules -> LightningModules -> callbacks; nets, metrics and
bench hang off that line as below.
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SRC = REPO / "src"

# The architecture. A name covers that module and everything below it.
#   ONLY: (importer, the scarce modules it may import)  -- anything else of scarce is a forbidden edge
#   NOT:  (importer, the scarce modules it may not import) -- an importer inside the forbidden part is exempt
ONLY = (
    ("scarce.shards", ("scarce.shards", "scarce._errors")),  # the bottom layer: records, codecs, readers
    ("scarce.nets", ("scarce.nets",)),  # plain nn.Modules, usable without the rest
    ("scarce.adaptation", ("scarce.adaptation",)),  # FDA, entropy, pseudo-labels: torch functions, no scarce
)
NOT = (
    ("scarce.lightning_modules", ("scarce.datamodules",)),  # they receive data
    ("scarce.metrics", ("scarce.lightning_modules", "scarce.datamodules")),  # metrics work on networks and tensors
    ("scarce.render", ("scarce.data", "scarce.datamodules")),  # render and data meet only in shards
    ("scarce.data", ("scarce.render", "scarce.datamodules")),  # DataModules sit above both and compose them
    ("scarce.datamodules", ("scarce.lightning_modules", "scarce.callbacks")),  # data never reaches up to models
    ("scarce", ("scarce.bench",)),  # benchmarks sit on top; the CLI names them by string
)
# Importing these must not import Lightning: they serve `scarce data` / `scarce render` and plain scripts, fast.
LIGHTNING_FREE = ("scarce.shards", "scarce.nets", "scarce.adaptation")
# Nor torch: the file tools, `scarce render` and its spawned workers (each would pay seconds for it).
TORCH_FREE = ("scarce.data.cli", "scarce.render", "scarce.render.cli", "scarce.shards.tfds", "scarce.shards.schemas")


def _inside(module: str, part: str) -> bool:
    return module == part or module.startswith(part + ".")


def _modules() -> dict[str, Path]:
    """``{"scarce.data.pipeline": path, "scarce.data": path/__init__.py, ...}``."""
    found = {}
    for path in sorted((SRC / "scarce").rglob("*.py")):
        parts = path.relative_to(SRC).with_suffix("").parts
        found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


MODULES = _modules()


def _resolve(name: str) -> str:
    """The module a dotted scarce name lands in: itself, or the nearest enclosing module (``pkg.attr`` -> ``pkg``).
    A name no module covers (a package that does not exist yet) stays as it is."""
    probe = name
    while probe not in MODULES and "." in probe:
        probe = probe.rsplit(".", 1)[0]
    return probe if probe != "scarce" or name == "scarce" else name


def _imports(module: str, path: Path) -> list[tuple[str, int]]:
    """``(imported module, line)`` for every scarce import in ``path``, at any depth (functions, ``if`` blocks)."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{base}.{node.module}" if node.module else base
            else:
                base = node.module or ""
            # `from pkg import name`: name is a submodule or an attribute of pkg.
            names = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in MODULES else base for alias in node.names]
        else:
            continue
        found += [(_resolve(name), node.lineno) for name in names if _inside(name, "scarce")]
    return found


def _graph() -> dict[tuple[str, str], list[str]]:
    """``{(module, imported): ["src/scarce/x.py:12", ...]}``, self-imports left out."""
    edges: dict[tuple[str, str], list[str]] = defaultdict(list)
    for module, path in MODULES.items():
        for imported, line in _imports(module, path):
            if imported != module:
                edges[(module, imported)].append(f"{path.relative_to(REPO)}:{line}")
    return edges


def _forbidden(edges) -> list[str]:
    broken = []
    for (module, imported), where in sorted(edges.items()):
        for importer, allowed in ONLY:
            if _inside(module, importer) and not any(_inside(imported, part) for part in allowed):
                broken.append(f"{module} -> {imported}  ({', '.join(where)}; {importer} may import only {allowed})")
        for importer, forbidden in NOT:
            for part in forbidden:
                if _inside(module, importer) and _inside(imported, part) and not _inside(module, part):
                    broken.append(f"{module} -> {imported}  ({', '.join(where)}; {importer} may not import {part})")
    return broken


def _cycles(edges) -> list[str]:
    """One cycle per strongly connected component with more than one module (Tarjan), as ``a -> b -> a``."""
    graph: dict[str, list[str]] = defaultdict(list)
    for module, imported in sorted(edges):
        graph[module].append(imported)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def visit(node: str) -> None:  # recursion depth is bounded by the number of modules (~100)
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in graph[node]:
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                components.append(sorted(component))

    for node in sorted({*MODULES, *graph}):
        if node not in index:
            visit(node)
    cycles = []
    for component in sorted(components):
        members, start = set(component), component[0]
        # Shortest way back to the start, inside the component (breadth first).
        previous, frontier, closing = {start: None}, [start], None
        while frontier and closing is None:
            following = []
            for node in frontier:
                for nxt in graph[node]:
                    if nxt == start:
                        closing = node
                        break
                    if nxt in members and nxt not in previous:
                        previous[nxt] = node
                        following.append(nxt)
                if closing is not None:
                    break
            frontier = following
        path, node = [start], closing
        while node is not None and node != start:
            path.insert(1, node)
            node = previous[node]
        where = ", ".join(edges[pair][0] for pair in zip(path, [*path[1:], start]))
        rest = [m for m in component if m not in path]
        others = f"; in the same loop: {', '.join(rest)}" if rest else ""
        cycles.append(" -> ".join([*path, start]) + f"  ({where}{others})")
    return cycles


def test_the_table_names_existing_parts():
    """A typo in the table would make its rule pass silently; parts not yet written are listed on purpose."""
    planned = {"scarce.shards", "scarce.datamodules"}
    named = {part for importer, parts in ONLY + NOT for part in (importer, *parts)}
    assert not {part for part in named - planned if not any(_inside(m, part) for m in MODULES)}


def test_resolution_of_relative_and_from_imports(tmp_path):
    """The walker itself, on the forms the package uses: absolute, `from pkg import submodule`, relative."""
    assert _resolve("scarce.nets.fcn8s.FCN8s") == "scarce.nets.fcn8s"
    assert _resolve("scarce.nets") == "scarce.nets"
    fake = tmp_path / "mod.py"
    fake.write_text("import os\nfrom . import fcn8s\nfrom .vae import ConvVAE\n"
                    "def f():\n    from ..metrics import generative\n    import scarce._errors\n")
    assert _imports("scarce.nets.mod", fake) == [
        ("scarce.nets.fcn8s", 2), ("scarce.nets.vae", 3), ("scarce.metrics.generative", 5), ("scarce._errors", 6)]


def test_rules_and_cycles_on_a_made_up_graph():
    where = ["x.py:1"]
    edges = {("scarce.shards.codec", "scarce.data.tfrecord"): where, ("scarce.shards.codec", "scarce._errors"): where,
             ("scarce.nets.vae", "scarce.nets.dcgan"): where, ("scarce.nets.vae", "scarce.data"): where,
             ("scarce.data.x", "scarce.bench.render"): where, ("scarce.bench.render", "scarce.bench.pipeline"): where,
             ("scarce.lightning_modules.gan", "scarce.datamodules.mnist"): where,
                 ("scarce.data.y", "scarce.datamodules.mnist"): where,
             ("scarce.render.a", "scarce.render.b"): where, ("scarce.render.b", "scarce.render.c"): where,
             ("scarce.render.c", "scarce.render.a"): where, ("scarce.render.c", "scarce.render.d"): where}
    assert [line.split("  ")[0] for line in _forbidden(edges)] == [
        "scarce.data.x -> scarce.bench.render", "scarce.data.y -> scarce.datamodules.mnist",
        "scarce.lightning_modules.gan -> scarce.datamodules.mnist",
        "scarce.nets.vae -> scarce.data", "scarce.shards.codec -> scarce.data.tfrecord"]
    assert _cycles(edges) == ["scarce.render.a -> scarce.render.b -> scarce.render.c -> scarce.render.a  "
                              "(x.py:1, x.py:1, x.py:1)"]


def test_no_forbidden_import():
    broken = _forbidden(_graph())
    assert not broken, "forbidden imports (module -> imported):\n  " + "\n  ".join(broken)


def test_no_import_cycle():
    cycles = _cycles(_graph())
    assert not cycles, "import cycles:\n  " + "\n  ".join(cycles)


@pytest.mark.parametrize("package", LIGHTNING_FREE)
def test_package_imports_without_lightning(package):
    modules = sorted(m for m in MODULES if _inside(m, package))
    if not modules:
        pytest.skip(f"{package} does not exist in this tree")
    code = ("import importlib, sys\n"
            f"for name in {modules!r}:\n    importlib.import_module(name)\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('lightning', 'pytorch_lightning', "
            "'lightning_fabric')))")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")])}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip() == "[]", f"importing {package} imports Lightning: {result.stdout.strip()[:300]}"


def test_file_tools_and_render_workers_import_without_torch():
    code = ("import importlib, sys\n"
            f"for name in {TORCH_FREE!r}:\n    importlib.import_module(name)\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'torchvision', 'lightning')))")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")])}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip() == "[]", f"importing {TORCH_FREE} imports torch: {result.stdout.strip()[:300]}"
