"""The package's layout, read from its source (``ast``; the package is not imported).

The stages are the pipeline: boundary modules < ``_api`` < ``_config`` < ``_fire`` <
``_watch`` < ``_judge`` < ``_report`` < ``_roles`` < the pytest face. A module imports
from its own stage, from earlier stages and from the boundary modules, never from a later
stage; the graph has no circle; ``simulator/`` imports nothing of the package outside
itself; an import inside a function is one of the lazy imports of ``LAZY``, which keep a
pytest run without Cekura cases free of httpx, pydantic and the rest of the runtime.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "pytest_cekura_pipecat"

# Top-level modules every stage may use: text, secrets, errors, files, ownership, signals.
BOUNDARY = frozenset(
    {"_text", "_redact", "_errors", "_files", "_owner", "_interrupt", "_notice", "_version"}
)
# The stage folders, in pipeline order.
STAGES = ("_api", "_config", "_fire", "_watch", "_judge", "_report", "_roles")
# Top-level modules that face pytest (hooks, items, fixtures, the session, the CLI).
FACE = frozenset(
    {"plugin", "_session", "_items", "_fixtures", "hooks", "__init__", "__main__", "report"}
)
# The local Cekura-compatible server: self-contained, started by the face only.
SIMULATOR = "simulator"

# Modules that may import inside a function, and why. Only modules of a stage, the face or
# the simulator: a boundary module is light and imported at the top of these files anyway.
LAZY: Mapping[str, str] = {
    "plugin": "pytest imports it in every run (entry point pytest11): the stages, and with "
    "them httpx and pydantic, load only once the session has a Cekura case",
    "__init__": "`import pytest_cekura_pipecat` must stay as light as the plugin: CekuraRun "
    "and its result records load on first use (module __getattr__)",
    "_fixtures": "plugin.py registers it in every run (pytest_plugins): the simulator loads "
    "only for a suite that asks for the cekura_simulator fixture",
}

# Imports that break a rule and are on their way out, none today. Each entry is
# (importing module, imported module): the rule it breaks. The test leaves them out of every
# rule and of the circles; test_known_today_still_occur fails on an entry that no longer
# breaks a rule, so this set only shrinks.
KNOWN_TODAY: Mapping[tuple[str, str], str] = {}


@dataclass(frozen=True)
class Import:
    """One module of the package naming another: ``source`` and ``target`` are dotted
    names inside the package (``_fire.firing``; the package's own ``__init__`` is
    ``__init__``)."""

    source: str
    target: str
    file: str  # as shown in messages: pytest_cekura_pipecat/_fire/firing.py
    line: int
    inner: bool  # inside a function or class body, not at module level

    @property
    def where(self) -> str:
        return f"{self.file}:{self.line}"


@dataclass(frozen=True)
class Problem:
    text: str
    key: tuple[str, str] | None = None  # the import that breaks the rule, for KNOWN_TODAY


def module_name(root: Path, path: Path) -> str:
    parts = path.relative_to(root).with_suffix("").parts
    if parts[-1] == "__init__" and len(parts) > 1:
        parts = parts[:-1]
    return ".".join(parts)


def modules(root: Path) -> dict[str, Path]:
    return {module_name(root, p): p for p in sorted(root.rglob("*.py"))}


def _resolve(known: Mapping[str, Path], parts: tuple[str, ...]) -> str:
    """The package module a dotted path names: itself, or the longest module above it
    (``_config.case.Case`` is ``_config.case``; the package's own names are ``__init__``)."""
    while parts:
        if ".".join(parts) in known:
            return ".".join(parts)
        parts = parts[:-1]
    return "__init__"


def _targets(
    node: ast.Import | ast.ImportFrom,
    here: tuple[str, ...],
    package: str,
    known: Mapping[str, Path],
) -> Iterator[str]:
    """The package modules one import statement names (none for outside modules)."""
    if isinstance(node, ast.Import):
        for alias in node.names:
            head, *rest = alias.name.split(".")
            if head == package:
                yield _resolve(known, tuple(rest))
        return
    if node.level:
        if node.level - 1 > len(here):
            return
        module = here[: len(here) - (node.level - 1)] + tuple((node.module or "").split("."))
    else:
        head, *rest = (node.module or "").split(".")
        if head != package:
            return
        module = tuple(rest)
    for alias in node.names:
        yield _resolve(known, tuple(filter(None, (*module, alias.name))))


def imports(root: Path) -> list[Import]:
    """Every import of one package module by another, module-level (``TYPE_CHECKING``
    blocks too: they are dependencies all the same) and inside functions."""
    known = modules(root)
    found: list[Import] = []
    for name, path in known.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        parts = path.relative_to(root).with_suffix("").parts
        here = parts[:-1]  # the package this module is in, inside the root
        shown = path.relative_to(root.parent).as_posix()

        def walk(node: ast.AST, inner: bool) -> Iterator[tuple[ast.AST, bool]]:
            for child in ast.iter_child_nodes(node):
                yield child, inner
                nested = isinstance(
                    child, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef | ast.Lambda
                )
                yield from walk(child, inner or nested)

        for node, inner in walk(tree, False):
            if isinstance(node, ast.Import | ast.ImportFrom):
                for target in sorted(set(_targets(node, here, root.name, known))):
                    if target != name:
                        found.append(Import(name, target, shown, node.lineno, inner))
    return found


def stage(name: str) -> tuple[int, str] | None:
    """A module's rank in the pipeline and the stage's name; None for a module in no stage.
    The simulator is apart from the pipeline (rank -1)."""
    head, _, rest = name.partition(".")
    if not rest and head in BOUNDARY:
        return 0, "the boundary modules"
    if head in STAGES:
        return STAGES.index(head) + 1, head
    if not rest and head in FACE:
        return len(STAGES) + 1, "the pytest face"
    if head == SIMULATOR:
        return -1, SIMULATOR
    return None


def placement_problems(root: Path) -> Iterator[Problem]:
    for name, path in modules(root).items():
        if stage(name) is None:
            yield Problem(
                f"{path.relative_to(root.parent).as_posix()}: module {name} is in no stage: "
                "move it into a stage folder, or add it to the stages in tests/project/test_layout.py"
            )


def edge_problems(found: list[Import]) -> Iterator[Problem]:
    for imp in found:
        source, target = stage(imp.source), stage(imp.target)
        key = (imp.source, imp.target)
        if source is None or target is None:
            continue  # the module itself is the problem (placement_problems)
        if source[1] == SIMULATOR and target[1] != SIMULATOR:
            yield Problem(
                f"{imp.where}: {imp.source} imports {imp.target}: simulator/ imports nothing "
                "of the package outside itself (it is the stand-in for Cekura); copy what "
                "it needs into simulator/",
                key,
            )
        elif target[1] == SIMULATOR and source[1] not in (SIMULATOR, "the pytest face"):
            yield Problem(
                f"{imp.where}: {imp.source} imports {imp.target}: only the pytest face "
                "starts the simulator; take its URL as a value instead",
                key,
            )
        elif target[0] > source[0]:
            yield Problem(
                f"{imp.where}: {imp.source} imports {imp.target}, from a later stage "
                f"({target[1]} comes after {source[1]}): move what both need into "
                f"{source[1]} or an earlier stage, or have the later stage pass it in",
                key,
            )
        if imp.inner and not (imp.source in LAZY and target[0] != 0):
            why = (
                "a boundary module is light: import it at the top"
                if imp.source in LAZY
                else "import it at the top of the file (if that makes a circle, the import "
                "runs the wrong way: pass the value in instead)"
            )
            yield Problem(
                f"{imp.where}: {imp.source} imports {imp.target} inside a function: only "
                f"the lazy imports of LAZY in tests/project/test_layout.py may; {why}",
                key,
            )


def circles(found: list[Import]) -> Iterator[Problem]:
    """One problem per strongly connected part of the graph, showing one circle in it."""
    graph: dict[str, dict[str, Import]] = {}
    for imp in found:
        graph.setdefault(imp.source, {}).setdefault(imp.target, imp)
    for part in _connected(graph):
        path = _loop(graph, part[0], set(part))
        hops = [graph[a][b] for a, b in pairwise(path)]
        yield Problem(
            "import circle "
            + " -> ".join(path)
            + " ("
            + ", ".join(h.where for h in hops)
            + "): break it at the import that runs against the stage order (within a "
            "stage, at the one that runs back): move what both need into the earlier "
            "module, or pass it in as a value"
        )


def _connected(graph: Mapping[str, Mapping[str, Import]]) -> list[list[str]]:
    """The strongly connected parts of more than one module (Tarjan's algorithm; the graph
    is a few dozen modules, well within the recursion limit)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    parts: list[list[str]] = []

    def connect(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for nxt in graph.get(node, {}):
            if nxt not in index:
                connect(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            part = stack[stack.index(node) :]
            del stack[stack.index(node) :]
            if len(part) > 1:
                parts.append(sorted(part))

    for node in sorted(graph):
        if node not in index:
            connect(node)
    return parts


def _loop(graph: Mapping[str, Mapping[str, Import]], start: str, members: set[str]) -> list[str]:
    """A shortest circle through ``start`` inside one strongly connected part."""
    paths = {start: [start]}
    queue = [start]
    while queue:
        node = queue.pop(0)
        for nxt in sorted(graph.get(node, {})):
            if nxt == start:
                return [*paths[node], start]
            if nxt in members and nxt not in paths:
                paths[nxt] = [*paths[node], nxt]
                queue.append(nxt)
    raise AssertionError(f"no circle through {start}")  # a strongly connected part has one


def check(
    root: Path, known: Mapping[tuple[str, str], str]
) -> tuple[list[str], set[tuple[str, str]]]:
    """The layout's problems (but those of ``known`` imports) and the ``known`` entries
    that no longer break a rule."""
    found = imports(root)
    kept = [imp for imp in found if (imp.source, imp.target) not in known]
    problems = [p for p in edge_problems(found) if p.key not in known]
    used = {p.key for p in edge_problems(found) if p.key in known}
    problems += placement_problems(root)
    problems += circles(kept)
    return [p.text for p in problems], set(known) - used


def folder_problems(root: Path) -> list[str]:
    """Each stage folder says in its docstring what enters it, what leaves it and what it
    may import."""
    problems = []
    for init in sorted(root.glob("_*/__init__.py")):
        doc = ast.get_docstring(ast.parse(init.read_text(encoding="utf-8"))) or ""
        missing = [w for w in ("Enters", "Leaves", "May import") if w not in doc]
        if missing:
            problems.append(
                f"{init.relative_to(root.parent).as_posix()}: the stage's docstring says "
                f"nothing of {', '.join(repr(w) for w in missing)}: say what enters the "
                "stage, what leaves it and what it may import"
            )
    return problems


def test_import_graph_runs_one_way_without_circles() -> None:
    problems, _ = check(PACKAGE, KNOWN_TODAY)
    assert not problems, "\n".join(problems)


def test_known_today_still_occur() -> None:
    _, stale = check(PACKAGE, KNOWN_TODAY)
    assert not stale, "\n".join(
        f"KNOWN_TODAY in tests/project/test_layout.py: {a} no longer imports {b} against a rule: "
        "delete the entry"
        for a, b in sorted(stale)
    )


def test_every_stage_folder_says_what_enters_leaves_and_may_be_imported() -> None:
    assert not folder_problems(PACKAGE), "\n".join(folder_problems(PACKAGE))


def test_the_graph_sees_the_whole_package() -> None:
    """A checker that resolves nothing passes everything: the graph holds imports of
    every kind the package uses."""
    found = {(i.source, i.target, i.inner) for i in imports(PACKAGE)}
    assert ("_fire.firing", "_fire.plan", False) in found  # from .plan import
    assert ("_report.outputs", "_report.ci", False) in found  # from . import ci
    assert ("plugin", "_roles.build", True) in found  # inside a method
    assert ("__init__", "_api.run", True) in found  # from ._api import run
    assert ("simulator._server", "simulator._app", False) in found


def write(root: Path, files: Mapping[str, str]) -> None:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")


STAGE_DOC = '"""Enters: x. Leaves: y. May import: z."""\n'


@pytest.fixture
def fake(tmp_path: Path) -> Path:
    """A small package laid out like ours, with one break of each rule."""
    root = tmp_path / "pkg"
    write(
        root,
        {
            "__init__.py": "from ._api import client\n",
            "plugin.py": (
                "from ._text import plain\n\n"
                "def hook():\n"
                "    from ._fire import firing  # lazy: allowed here\n"
                "    from ._text import plain  # a boundary module: not worth it\n"
            ),
            "_text.py": "",
            "_stray.py": "import os\n",
            "_api/__init__.py": STAGE_DOC,
            "_api/client.py": "import pkg._watch.watcher\n",
            "_fire/__init__.py": '"""Enters: cases. Leaves: slots."""\n',
            "_fire/firing.py": (
                "from .._api import client\n\n"
                "def fire():\n"
                "    from .._judge.canary import canary_problem\n"
            ),
            "_watch/__init__.py": STAGE_DOC,
            "_watch/watcher.py": "from .._api import client\n",
            "_judge/__init__.py": STAGE_DOC,
            "_judge/canary.py": "from .._fire.firing import fire\n",
            "simulator/__init__.py": "from ._app import App\nfrom .._text import plain\n",
            "simulator/_app.py": "App = 1\n",
        },
    )
    return root


def test_the_checks_fail_on_a_package_that_breaks_the_rules(fake: Path) -> None:
    problems, stale = check(fake, {("plugin", "_gone"): "removed since"})
    assert stale == {("plugin", "_gone")}
    text = "\n".join(problems)
    expected = [
        "pkg/_fire/firing.py:4: _fire.firing imports _judge.canary, from a later stage "
        "(_judge comes after _fire)",
        "pkg/_fire/firing.py:4: _fire.firing imports _judge.canary inside a function",
        "pkg/_api/client.py:1: _api.client imports _watch.watcher, from a later stage",
        "pkg/simulator/__init__.py:2: simulator imports _text: simulator/ imports nothing",
        "pkg/plugin.py:5: plugin imports _text inside a function",
        "pkg/_stray.py: module _stray is in no stage",
        "import circle _api.client -> _watch.watcher -> _api.client "
        "(pkg/_api/client.py:1, pkg/_watch/watcher.py:1)",
        "import circle _fire.firing -> _judge.canary -> _fire.firing "
        "(pkg/_fire/firing.py:4, pkg/_judge/canary.py:1)",
    ]
    for line in expected:
        assert line in text
    assert len(problems) == len(expected), text
    assert "plugin.py:4" not in text  # the documented lazy import
    assert [p.split(":")[0] for p in folder_problems(fake)] == ["pkg/_fire/__init__.py"]
    assert "'May import'" in folder_problems(fake)[0]


def test_known_imports_are_left_out_of_rules_and_circles(fake: Path) -> None:
    known = {
        ("_api.client", "_watch.watcher"): "being removed",
        ("_fire.firing", "_judge.canary"): "being removed",
    }
    problems, stale = check(fake, known)
    assert not stale
    assert not [p for p in problems if "circle" in p or "firing.py" in p or "client.py" in p]
