"""The layers hold: no module imports a sub-package its own sub-package's ``__init__`` does not allow, and
no two modules import each other, directly or around a loop.

The rules have one home: the line ``May import: a, b, c.`` (or ``May import: nothing else in Helios.``) in
each sub-package's ``__init__`` docstring, ``dashboard/__init__.py`` included. Every module's imports are read
with ``ast``, not by importing it, so all of them count: module level, inside functions and under
``if TYPE_CHECKING:``. On top of the declared lines:

- a module may always import its own sub-package, and the root ``helios_orderflow`` (``__version__``);
- the kept-path shims ``helios_orderflow/strategy.py`` and ``helios_orderflow/exchange.py`` may import
  ``freqtrade`` and ``emulator`` respectively, and nothing inside Helios may import the shims;
- an import of ``helios_orderflow.<name>`` that names no module or sub-package of the tree is an error too
  (a path left behind by a move).

Imports by name at run time (``importlib.import_module``) are not seen; the two there are (the importers'
``FORMATS`` and the CLI's command discovery) stay inside their own sub-package. The checking functions are
tested on small synthetic trees as well, so a checker that sees nothing fails.
"""

from __future__ import annotations

import ast
import re
import textwrap
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = "helios_orderflow"
#: Top-level packages beside ``helios_orderflow`` that are layers of their own.
EXTRA_PACKAGES = ("dashboard",)
#: The kept import paths: shim module -> the one layer it re-exports.
SHIMS = {f"{PACKAGE}.strategy": "freqtrade", f"{PACKAGE}.exchange": "emulator",
         f"{PACKAGE}.freqtrade_orderflow": "freqtrade"}
#: The root package's own layer name (``helios_orderflow/__init__.py``: ``__version__``).
ROOT_LAYER = "<root>"

#: "May import: a, b, c." up to its full stop, which may come on a later line of the docstring.
MAY_IMPORT = re.compile(r"^May import:(?P<names>[^.]*)\.", re.MULTILINE)
NOTHING = "nothing else in helios"


@dataclass(frozen=True, slots=True)
class Import:
    """One imported module, as written at ``line`` of ``source`` (``importer`` the importing module)."""

    importer: str
    path: Path
    line: int
    target: str
    source: str


@dataclass(frozen=True, slots=True)
class Tree:
    """The modules under ``root``: dotted name -> file, for ``PACKAGE`` and ``EXTRA_PACKAGES``."""

    root: Path
    modules: dict[str, Path]

    @classmethod
    def scan(cls, root: Path, packages: Iterable[str] = (PACKAGE, *EXTRA_PACKAGES)) -> Tree:
        modules: dict[str, Path] = {}
        for package in packages:
            for path in sorted((root / package).rglob("*.py")):
                parts = list(path.relative_to(root).with_suffix("").parts)
                if parts[-1] == "__init__":
                    parts.pop()
                modules[".".join(parts)] = path
        return cls(root, modules)

    def is_package(self, module: str) -> bool:
        return self.modules[module].name == "__init__.py"

    def sub_packages(self) -> list[str]:
        """The layers: every direct sub-package of ``PACKAGE`` and every extra top-level package."""
        subs = [m for m in self.modules if m.count(".") == 1 and m.startswith(PACKAGE + ".") and self.is_package(m)]
        return sorted(subs) + [p for p in EXTRA_PACKAGES if p in self.modules]


def layer_of(module: str) -> str:
    """The layer a module (or an imported name) lands in: the sub-package name (``book``), an extra package
    (``dashboard``), the shim's own module name (``helios_orderflow.strategy``) or ``ROOT_LAYER``."""
    parts = module.split(".")
    if parts[0] != PACKAGE:
        return parts[0]
    if len(parts) == 1:
        return ROOT_LAYER
    if ".".join(parts[:2]) in SHIMS:
        return ".".join(parts[:2])
    return parts[1]


def _resolve_relative(tree: Tree, importer: str, level: int, module: str | None) -> str:
    package = importer if tree.is_package(importer) else importer.rpartition(".")[0]
    parts = package.split(".")
    if level - 1 > len(parts) - 1:
        raise ValueError(f"relative import beyond the top-level package in {importer}")
    base = ".".join(parts[: len(parts) - (level - 1)])
    return f"{base}.{module}" if module else base


def iter_imports(tree: Tree, module: str) -> Iterator[Import]:
    """Every import in ``module`` of one of the tree's top-level packages, relative ones resolved. For
    ``from X import a`` the target is ``X.a`` when that is a module of the tree, else ``X``."""
    path = tree.modules[module]
    text = path.read_text(encoding="utf-8")
    lines = text.splitlines()
    tops = {name.split(".")[0] for name in tree.modules}
    for node in ast.walk(ast.parse(text, filename=str(path))):
        source = lines[node.lineno - 1].strip() if isinstance(node, ast.Import | ast.ImportFrom) else ""
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] in tops:
                    yield Import(module, path, node.lineno, alias.name, source)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = _resolve_relative(tree, module, node.level, node.module)
            else:
                base = node.module or ""
            if base.split(".")[0] not in tops:
                continue
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                yield Import(module, path, node.lineno, sub if sub in tree.modules else base, source)


def declared_allowed(tree: Tree) -> dict[str, set[str]]:
    """Each layer's ``May import:`` list, read from its ``__init__`` docstring. A layer without the line,
    or naming a layer that does not exist, raises ``AssertionError`` naming the file."""
    layers = tree.sub_packages()
    names = {layer_of(p) for p in layers}
    allowed: dict[str, set[str]] = {}
    for package in layers:
        path = tree.modules[package]
        doc = ast.get_docstring(ast.parse(path.read_text(encoding="utf-8"))) or ""
        match = MAY_IMPORT.search(doc)
        assert match, f"{path.relative_to(tree.root)}: the docstring has no 'May import: ...' line"
        listed = " ".join(match.group("names").split())
        layer = layer_of(package)
        if listed.lower() == NOTHING:
            allowed[layer] = set()
            continue
        allowed[layer] = {name.strip() for name in listed.split(",") if name.strip()}
        unknown = allowed[layer] - names
        assert not unknown, (
            f"{path.relative_to(tree.root)}: 'May import:' names {sorted(unknown)}, not layers of Helios "
            f"(the layers: {', '.join(sorted(names))})"
        )
    return allowed


def layer_violations(tree: Tree) -> list[str]:
    """One line per import that crosses the layers as declared: ``file:line: module imports X (layer L),
    which layer M may not import (May import: ...)``."""
    allowed = declared_allowed(tree)
    allowed[ROOT_LAYER] = set()
    for shim, target in SHIMS.items():
        allowed[shim] = {target}
    problems: list[str] = []
    for module in sorted(tree.modules):
        own = layer_of(module)
        for imp in iter_imports(tree, module):
            where = f"{imp.path.relative_to(tree.root)}:{imp.line}: {module}: `{imp.source}`"
            target_layer = layer_of(imp.target)
            if imp.target not in tree.modules:
                problems.append(f"{where} imports {imp.target}, which is no module of the tree")
            elif target_layer in SHIMS and target_layer != own:
                problems.append(f"{where} imports the kept-path shim {imp.target}; import "
                                f"helios_orderflow.{SHIMS[target_layer]} instead")
            elif target_layer in (own, ROOT_LAYER):
                continue
            elif target_layer not in allowed[own]:
                may = ", ".join(sorted(allowed[own])) or "nothing else in Helios"
                problems.append(f"{where} imports {imp.target} (layer {target_layer}), which layer {own} may not "
                                f"import (May import: {may})")
    return problems


def import_graph(tree: Tree) -> dict[str, set[str]]:
    """Module -> the modules of the tree it imports (all imports: module level, in functions, type-only)."""
    return {m: {i.target for i in iter_imports(tree, m) if i.target in tree.modules and i.target != m}
            for m in tree.modules}


def import_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The import cycles: each strongly connected component of more than one module, as a sorted list
    (Tarjan's algorithm, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    components: list[list[str]] = []
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            for child in children:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                    break
                if child in on_stack:
                    low[node] = min(low[node], index[child])
            else:
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
                    if len(component) > 1:
                        components.append(sorted(component))
    return sorted(components)


def shortest_loop(graph: dict[str, set[str]], component: list[str]) -> list[str]:
    """A shortest import loop ``[a, b, ..., a]`` through the first (sorted) module of a cycle's component."""
    members = set(component)
    start = min(members)
    previous: dict[str, str] = {}
    frontier = [start]
    while frontier:
        following = []
        for node in frontier:
            for child in sorted(graph[node] & members):
                if child == start:
                    loop = [start]
                    while node != start:
                        loop.append(node)
                        node = previous[node]
                    return [start, *reversed(loop[1:]), start]
                if child not in previous:
                    previous[child] = node
                    following.append(child)
        frontier = following
    raise AssertionError(f"no loop through {start}")  # unreachable for a strongly connected component


# The project itself.

@pytest.fixture(scope="module")
def tree() -> Tree:
    return Tree.scan(ROOT)


def test_every_sub_package_declares_what_it_may_import(tree: Tree) -> None:
    layers = tree.sub_packages()
    assert {"core", "book", "signals", "engine", "live", "freqtrade", "cli", "devtools", "dashboard"} <= {
        layer_of(p) for p in layers}
    allowed = declared_allowed(tree)
    assert set(allowed) == {layer_of(p) for p in layers}
    assert allowed["core"] == set()
    # A folder of modules without an __init__ would still be packaged (find_namespace) but escape the rules.
    folders = {p.parent for p in tree.modules.values()}
    assert [f for f in folders if not (f / "__init__.py").is_file()] == []


def test_no_module_imports_a_layer_its_package_does_not_allow(tree: Tree) -> None:
    problems = layer_violations(tree)
    assert not problems, "imports that cross the declared layers:\n" + "\n".join(problems)


def test_no_import_cycle_between_modules(tree: Tree) -> None:
    graph = import_graph(tree)
    assert len(graph) > 80 and sum(map(len, graph.values())) > 150  # the graph is the package's, not empty
    cycles = import_cycles(graph)
    assert not cycles, "import cycles (type-only and in-function imports count):\n" + "\n".join(
        f"{len(c)} modules: {', '.join(c)}; e.g. {' -> '.join(shortest_loop(graph, c))}" for c in cycles)


def test_architecture_doc_states_the_declared_rules(tree: Tree) -> None:
    """docs/architecture.md's "What may import what" table says what the docstrings say, for every layer."""
    text = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")
    rows = dict(re.findall(r"^\| `(\w+)` \| ([^|]+) \|$", text, re.MULTILINE))
    documented = {layer: set() if listed.strip().lower() == NOTHING else {n.strip() for n in listed.split(",")}
                  for layer, listed in rows.items()}
    assert documented == declared_allowed(tree)


# The checker on synthetic trees: it must see what it is there to see.

def _write(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip(), encoding="utf-8")


SYNTHETIC = {
    "helios_orderflow/__init__.py": '__version__ = "0"\n',
    "helios_orderflow/strategy.py": "from helios_orderflow.live.state import SharedState\n",
    "helios_orderflow/core/__init__.py": '"""Core.\n\nMay import: nothing else in Helios.\n"""\n',
    "helios_orderflow/core/events.py": "import dataclasses\n",
    "helios_orderflow/book/__init__.py": '"""Book.\n\nMay import: core.\n"""\n',
    "helios_orderflow/book/order_book.py": """
        from typing import TYPE_CHECKING

        from helios_orderflow import __version__
        from helios_orderflow.core import events
        from . import sync

        if TYPE_CHECKING:
            from helios_orderflow.live import state


        def late():
            from ..live.state import SharedState
            return SharedState
        """,
    "helios_orderflow/book/sync.py": "from .order_book import late\n",
    # A "May import:" list may wrap onto the next line.
    "helios_orderflow/live/__init__.py": '"""Live.\n\nMay import: core,\nbook.\n"""\n',
    "helios_orderflow/live/state.py": """
        import helios_orderflow.book.order_book
        from helios_orderflow.strategy import SharedState
        from helios_orderflow.gone import thing
        """,
    "dashboard/__init__.py": '"""Page.\n\nMay import: core.\n"""\n',
    "dashboard/app.py": "from helios_orderflow.live.state import SharedState\nfrom .figures import x\n",
    "dashboard/figures.py": "from . import app\n",
}


def test_checker_reports_each_wrong_import_with_module_line_and_source(tmp_path: Path) -> None:
    _write(tmp_path, SYNTHETIC)
    problems = layer_violations(Tree.scan(tmp_path))
    assert problems == [
        "dashboard/app.py:1: dashboard.app: `from helios_orderflow.live.state import SharedState` imports "
        "helios_orderflow.live.state (layer live), which layer dashboard may not import (May import: core)",
        # The type-only import and the one inside a function (relative, two levels up) both count.
        "helios_orderflow/book/order_book.py:8: helios_orderflow.book.order_book: "
        "`from helios_orderflow.live import state` imports helios_orderflow.live.state (layer live), which "
        "layer book may not import (May import: core)",
        "helios_orderflow/book/order_book.py:12: helios_orderflow.book.order_book: "
        "`from ..live.state import SharedState` imports helios_orderflow.live.state (layer live), which "
        "layer book may not import (May import: core)",
        "helios_orderflow/live/state.py:2: helios_orderflow.live.state: "
        "`from helios_orderflow.strategy import SharedState` imports the kept-path shim "
        "helios_orderflow.strategy; import helios_orderflow.freqtrade instead",
        "helios_orderflow/live/state.py:3: helios_orderflow.live.state: `from helios_orderflow.gone import thing` "
        "imports helios_orderflow.gone, which is no module of the tree",
        # The shim may import freqtrade only.
        "helios_orderflow/strategy.py:1: helios_orderflow.strategy: "
        "`from helios_orderflow.live.state import SharedState` imports helios_orderflow.live.state "
        "(layer live), which layer helios_orderflow.strategy may not import (May import: freqtrade)",
    ]


def test_checker_finds_import_cycles_including_type_only_and_relative_ones(tmp_path: Path) -> None:
    _write(tmp_path, SYNTHETIC)
    graph = import_graph(Tree.scan(tmp_path))
    # The type-only import and the one in a function are edges like any other.
    assert graph["helios_orderflow.book.order_book"] == {
        "helios_orderflow", "helios_orderflow.core.events", "helios_orderflow.book.sync", "helios_orderflow.live.state"}
    assert import_cycles(graph) == [
        ["dashboard.app", "dashboard.figures"],
        ["helios_orderflow.book.order_book", "helios_orderflow.book.sync", "helios_orderflow.live.state",
         "helios_orderflow.strategy"],
    ]
    assert shortest_loop(graph, ["dashboard.app", "dashboard.figures"]) == [
        "dashboard.app", "dashboard.figures", "dashboard.app"]
    assert shortest_loop(graph, ["helios_orderflow.live.state", "helios_orderflow.book.order_book"]) == [
        "helios_orderflow.book.order_book", "helios_orderflow.live.state", "helios_orderflow.book.order_book"]


def test_checker_fails_on_a_package_without_may_import_line(tmp_path: Path) -> None:
    _write(tmp_path, {**SYNTHETIC, "helios_orderflow/live/__init__.py": '"""Live, no rule."""\n'})
    with pytest.raises(AssertionError, match=r"helios_orderflow/live/__init__.py: the docstring has no 'May import"):
        layer_violations(Tree.scan(tmp_path))


def test_checker_fails_on_a_may_import_line_naming_no_layer(tmp_path: Path) -> None:
    _write(tmp_path, {**SYNTHETIC, "helios_orderflow/live/__init__.py": '"""Live.\n\nMay import: core, engin.\n"""\n'})
    with pytest.raises(AssertionError, match=r"names \['engin'\], not layers"):
        layer_violations(Tree.scan(tmp_path))
