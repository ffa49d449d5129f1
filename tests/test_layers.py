"""The package's layering, read from the source with ``ast`` (nothing is imported).

Layer ranks (docs/design.md, "Layers and where each concern lives"):

* 0 — ``carbonsched`` (the root ``__init__``), ``carbonsched.errors``, ``carbonsched.progress``,
  ``carbonsched.provenance``;
* 1 — ``carbonsched.instances.*``;
* 2 — ``carbonsched.formulations.*``;
* 3 — ``carbonsched.decomp.*``;
* 4 — ``carbonsched.cli``, ``carbonsched.bench.*``.

A module may import only from its own layer or lower ones; no two modules may import each other,
directly or through others (imports inside functions count: a function-level import that dodges a
cycle still couples the two modules); no module imports another module's private (``_x``) name;
and the subpackages are always imported as ``carbonsched.x`` (or relatively), never as top-level
``instances``/``formulations``/``decomp``/``bench`` (neither in import statements nor in the strings
given to ``importlib.import_module``, ``importlib.resources.files`` and the like, which work from the
checkout but not from an installed wheel).
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import pytest

PACKAGE = "carbonsched"
ROOT = Path(__file__).resolve().parents[1]
SUBPACKAGES = ("instances", "formulations", "decomp", "bench")
#: Root modules that are not part of the package (build scripts).
NOT_IN_PACKAGE = frozenset({"setup.py"})

#: Calls that import, or find the files of, a package named by a string (checked for the prefix too).
IMPORTING_CALLS = frozenset({"import_module", "__import__", "find_spec", "files"})

LAYER_OF_ROOT_MODULE = {PACKAGE: 0, f"{PACKAGE}.errors": 0, f"{PACKAGE}.progress": 0, f"{PACKAGE}.provenance": 0,
                        f"{PACKAGE}.cli": 4}
LAYER_OF_SUBPACKAGE = {"instances": 1, "formulations": 2, "decomp": 3, "bench": 4}

#: Violations inside files that are being rewritten on another branch (they may not be edited here);
#: each entry is ``(kind, importer, imported)``. Remove an entry as soon as its file is fixed.
ALLOWED_FOR_NOW: frozenset[tuple[str, str, str]] = frozenset()


@dataclass(frozen=True)
class Violation:
    """One broken layering rule: ``importer`` imports ``imported`` at ``path:line``."""

    kind: str  # "upward", "cycle", "private", "unprefixed", "unlayered"
    importer: str
    imported: str
    path: str
    line: int
    detail: str = ""

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.kind, self.importer, self.imported)

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.kind}: {self.importer} imports {self.imported}" + (
            f" ({self.detail})" if self.detail else "")


@dataclass(frozen=True)
class ImportEdge:
    """``importer`` imports module ``imported`` (and the ``names`` from it) at ``line``."""

    importer: str
    imported: str
    line: int
    names: tuple[str, ...] = ()


def package_modules(root: Path, package: str = PACKAGE) -> dict[str, Path]:
    """Every module of the package below ``root`` (the repository root is the package), by dotted name."""
    modules: dict[str, Path] = {}
    for path in sorted(root.glob("*.py")):
        if path.name in NOT_IN_PACKAGE:
            continue
        modules[package if path.stem == "__init__" else f"{package}.{path.stem}"] = path
    for sub in SUBPACKAGES:
        for path in sorted((root / sub).rglob("*.py")):
            parts = list(path.relative_to(root).with_suffix("").parts)
            if "__pycache__" in parts:
                continue
            if parts[-1] == "__init__":
                parts.pop()
            modules[".".join([package, *parts])] = path
    return modules


def layer_of(module: str, package: str = PACKAGE) -> int | None:
    """The layer rank of a module of the package, ``None`` for a module no layer was assigned to."""
    if module in LAYER_OF_ROOT_MODULE:
        return LAYER_OF_ROOT_MODULE[module] if package == PACKAGE else None
    head = module.split(".")
    if len(head) >= 2 and head[0] == package:
        return LAYER_OF_SUBPACKAGE.get(head[1])
    return None


def _resolve_relative(module: str, is_package: bool, level: int, target: str | None) -> str:
    """The absolute name of ``from <level dots><target> import ...`` written in ``module``."""
    base = module.split(".")
    if not is_package:
        base = base[:-1]
    if level > 1:
        base = base[: len(base) - (level - 1)]
    return ".".join([*base, target] if target else base)


def import_edges(module: str, path: Path, modules: dict[str, Path], package: str = PACKAGE,
                 ) -> tuple[list[ImportEdge], list[Violation]]:
    """The imports of ``module`` that reach modules of the package, anywhere in its body.

    Returns the edges and the ``unprefixed`` violations (top-level ``instances`` etc. imports).
    """
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    is_package = path.name == "__init__.py"
    rel = str(path)
    edges: list[ImportEdge] = []
    unprefixed: list[Violation] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and _call_name(node) in IMPORTING_CALLS and node.args:
            arg = node.args[0]
            if isinstance(arg, ast.Constant) and isinstance(arg.value, str) \
                    and arg.value.split(".")[0] in SUBPACKAGES:
                unprefixed.append(Violation("unprefixed", module, arg.value, rel, node.lineno,
                                            f"name the package '{package}.{arg.value}' (or use __package__)"))
        if isinstance(node, ast.Import):
            for alias in node.names:
                top = alias.name.split(".")[0]
                if top in SUBPACKAGES:
                    unprefixed.append(Violation("unprefixed", module, alias.name, rel, node.lineno,
                                                f"write 'import {package}.{alias.name}'"))
                elif top == package:
                    target = _longest_module(alias.name, modules)
                    if target is not None:
                        edges.append(ImportEdge(module, target, node.lineno))
        elif isinstance(node, ast.ImportFrom):
            if node.level == 0:
                source = node.module or ""
                top = source.split(".")[0]
                if top in SUBPACKAGES:
                    unprefixed.append(Violation("unprefixed", module, source, rel, node.lineno,
                                                f"write 'from {package}.{source} import ...'"))
                    continue
                if top != package:
                    continue
            else:
                source = _resolve_relative(module, is_package, node.level, node.module)
            for alias in node.names:
                submodule = f"{source}.{alias.name}"
                if submodule in modules:  # ``from package import module``
                    edges.append(ImportEdge(module, submodule, node.lineno))
                else:
                    target = _longest_module(source, modules)
                    if target is not None:
                        edges.append(ImportEdge(module, target, node.lineno, (alias.name,)))
    return edges, unprefixed


def _call_name(call: ast.Call) -> str:
    """``f`` of ``f(...)`` or ``a.b.f(...)``."""
    func = call.func
    return func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""


def _longest_module(name: str, modules: dict[str, Path]) -> str | None:
    """The module ``name`` names, or the longest module it lies in (``a.b.c`` → ``a.b`` if ``a.b.c`` is no module)."""
    parts = name.split(".")
    while parts:
        candidate = ".".join(parts)
        if candidate in modules:
            return candidate
        parts.pop()
    return None


def _is_private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def strongly_connected_components(graph: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's algorithm, iterative; every component of the directed ``graph`` (node → successors)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    components: list[list[str]] = []
    counter = 0
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph.get(start, ()))))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, successors = work[-1]
            advanced = False
            for succ in successors:
                if succ not in index:
                    index[succ] = low[succ] = counter
                    counter += 1
                    stack.append(succ)
                    on_stack.add(succ)
                    work.append((succ, iter(sorted(graph.get(succ, ())))))
                    advanced = True
                    break
                if succ in on_stack:
                    low[node] = min(low[node], index[succ])
            if advanced:
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                components.append(sorted(component))
    return components


def find_layer_violations(root: Path, package: str = PACKAGE) -> list[Violation]:
    """Every breach of the layering rules in the package whose root folder is ``root``."""
    modules = package_modules(root, package)
    violations: list[Violation] = []
    edges: list[ImportEdge] = []
    for module, path in modules.items():
        rel = str(path.relative_to(root))
        if layer_of(module, package) is None:
            violations.append(Violation("unlayered", module, module, rel, 1,
                                        "assign it a layer in tests/test_layers.py and docs/design.md"))
        module_edges, unprefixed = import_edges(module, path, modules, package)
        violations += [Violation(v.kind, v.importer, v.imported, rel, v.line, v.detail) for v in unprefixed]
        edges += module_edges
    for edge in edges:
        rel = str(modules[edge.importer].relative_to(root))
        low, high = layer_of(edge.importer, package), layer_of(edge.imported, package)
        if low is not None and high is not None and high > low:
            violations.append(Violation("upward", edge.importer, edge.imported, rel, edge.line,
                                        f"layer {low} may not import layer {high}"))
        if edge.imported != edge.importer:
            for name in edge.names:
                if _is_private(name):
                    violations.append(Violation("private", edge.importer, edge.imported, rel, edge.line,
                                                f"private name {name}"))
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for edge in edges:
        if edge.imported != edge.importer:
            graph[edge.importer].add(edge.imported)
    for component in strongly_connected_components(graph):
        if len(component) < 2:
            continue
        members = set(component)
        for edge in edges:
            if edge.importer in members and edge.imported in members:
                rel = str(modules[edge.importer].relative_to(root))
                violations.append(Violation("cycle", edge.importer, edge.imported, rel, edge.line,
                                            "import cycle among " + ", ".join(component)))
    return sorted(set(violations), key=lambda v: (v.path, v.line, v.kind, v.imported, v.detail))


# --------------------------------------------------------------------------------------------------
# The package itself.


def test_package_keeps_its_layers():
    violations = [v for v in find_layer_violations(ROOT) if v.key not in ALLOWED_FOR_NOW]
    assert not violations, "layering broken:\n" + "\n".join(map(str, violations))


def test_allowed_for_now_entries_still_exist():
    """An entry of ALLOWED_FOR_NOW that no longer matches anything must be removed (it would hide a relapse)."""
    found = {v.key for v in find_layer_violations(ROOT)}
    assert ALLOWED_FOR_NOW <= found, f"stale ALLOWED_FOR_NOW entries: {sorted(ALLOWED_FOR_NOW - found)}"


def test_every_subpackage_and_root_module_is_seen():
    modules = package_modules(ROOT)
    for name in (PACKAGE, f"{PACKAGE}.errors", f"{PACKAGE}.progress", f"{PACKAGE}.cli",
                 f"{PACKAGE}.instances.schema", f"{PACKAGE}.formulations.joint", f"{PACKAGE}.decomp.benders",
                 f"{PACKAGE}.decomp.heuristics.greedy", f"{PACKAGE}.bench.scaling"):
        assert name in modules, name
    assert f"{PACKAGE}.setup" not in modules


# --------------------------------------------------------------------------------------------------
# The checker on a tiny synthetic package with one planted violation of each kind.


def _write(root: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")


CLEAN_TREE = {
    "__init__.py": "__version__ = '0'\n",
    "errors.py": "class E(Exception):\n    pass\n",
    "setup.py": "import formulations\n",  # not part of the package: ignored
    "instances/__init__.py": "from .schema import Instance\n",
    "instances/schema.py": "from carbonsched.errors import E\nclass Instance:\n    pass\n",
    "formulations/__init__.py": "",
    "formulations/fields.py": "NAMES = ()\n",
    "formulations/energy.py": "from carbonsched.instances.schema import Instance\nfrom .fields import NAMES\n",
    "formulations/joint.py": "from . import energy\nfrom .fields import NAMES\n",
    "decomp/__init__.py": "",
    "decomp/heuristics/__init__.py": "from ..benders import solve\n",
    "decomp/benders.py": ("import carbonsched.formulations.joint\n"
                          "def solve():\n    from carbonsched import __version__\n"),
    "bench/__init__.py": "",
    "bench/scaling.py": "from carbonsched.decomp.heuristics import solve\n",
    "cli.py": "from carbonsched import __version__\nfrom carbonsched.bench import scaling\n",
}


def test_checker_passes_a_clean_tree(tmp_path):
    _write(tmp_path, CLEAN_TREE)
    assert find_layer_violations(tmp_path) == []


@pytest.mark.parametrize(("rel", "text", "kind", "importer", "imported", "line"), [
    ("instances/schema.py", "import os\nfrom carbonsched.formulations.fields import NAMES\n",
     "upward", "carbonsched.instances.schema", "carbonsched.formulations.fields", 2),
    ("formulations/fields.py", "def f():\n    from carbonsched.decomp import benders\n",
     "upward", "carbonsched.formulations.fields", "carbonsched.decomp.benders", 2),
    ("formulations/fields.py", "NAMES = ()\ndef f():\n    from .joint import x\n",
     "cycle", "carbonsched.formulations.fields", "carbonsched.formulations.joint", 3),
    ("formulations/joint.py", "from .energy import _helper\n",
     "private", "carbonsched.formulations.joint", "carbonsched.formulations.energy", 1),
    ("bench/scaling.py", "\nfrom decomp.benders import solve\n",
     "unprefixed", "carbonsched.bench.scaling", "decomp.benders", 2),
    ("bench/scaling.py", "import instances.schema\n",
     "unprefixed", "carbonsched.bench.scaling", "instances.schema", 1),
    ("instances/schema.py", "from importlib import resources\nDATA = resources.files('instances')\n",
     "unprefixed", "carbonsched.instances.schema", "instances", 2),
    ("bench/scaling.py", "import importlib\ndef f():\n    return importlib.import_module('decomp.benders')\n",
     "unprefixed", "carbonsched.bench.scaling", "decomp.benders", 3),
    ("tools.py", "X = 1\n", "unlayered", "carbonsched.tools", "carbonsched.tools", 1),
])
def test_checker_finds_a_planted_violation(tmp_path, rel, text, kind, importer, imported, line):
    _write(tmp_path, {**CLEAN_TREE, rel: text})
    found = find_layer_violations(tmp_path)
    assert any(v.key == (kind, importer, imported) and v.line == line and v.path == rel for v in found), found
    message = str(next(v for v in found if v.key == (kind, importer, imported) and v.line == line))
    assert importer in message and imported in message and f"{rel}:{line}" in message


def test_checker_reports_every_edge_of_a_three_module_cycle(tmp_path):
    _write(tmp_path, {**CLEAN_TREE,
                      "bench/a.py": "from .b import x\n",
                      "bench/b.py": "import carbonsched.bench.c\n",
                      "bench/c.py": "def g():\n    from carbonsched.bench.a import y\n"})
    cycle = {(v.importer, v.imported) for v in find_layer_violations(tmp_path) if v.kind == "cycle"}
    assert cycle == {("carbonsched.bench.a", "carbonsched.bench.b"), ("carbonsched.bench.b", "carbonsched.bench.c"),
                     ("carbonsched.bench.c", "carbonsched.bench.a")}


def test_dunder_names_are_not_private(tmp_path):
    _write(tmp_path, {**CLEAN_TREE, "formulations/fields.py": "from carbonsched import __version__\n"})
    assert find_layer_violations(tmp_path) == []
