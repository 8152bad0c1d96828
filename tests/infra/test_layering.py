"""The shape of shared/: imports flow one way (no cycles, no layer importing one above it), no function runs
past ~60 lines without a comment saying why, and function_app.py stays thin and fast to import.

For layering every import counts: module level, inside functions (lazy imports) and under TYPE_CHECKING, since
each is a dependency a reader must follow. So does a module named in a string (``importlib.import_module("...")``,
a deferred module, the spec's ``handlers="shared.api.handlers"`` or ``"module:attribute"``): it is imported when
the string is used. For cycles, imports under ``if TYPE_CHECKING:`` are left out: they never run."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SHARED = ROOT / "shared"
MAX_FUNCTION_LINES = 60
#: A function may run longer when a comment on or above its ``def`` line starts with this and says why.
LONG_REASON = "# long:"

#: Layers, top first. A module imports only modules of its own layer or lower ones (and never in a circle).
LAYERS: tuple[tuple[str, ...], ...] = (
    ("shared.api", "shared.cli", "shared.__main__", "shared.monitoring"),
    ("shared.services", "shared.tracing", "shared.sending.send"),
    (
        "shared.report",
        "shared.sending",
        "shared.summaries.job",
        "shared.push",
        "shared.suppression",
        "shared.deliverability",
    ),
    ("shared.insights",),
    (
        "shared.kql",
        "shared.logs",
        "shared.summaries",
        "shared.state",
        "shared.storage",
        "shared.queues",
        # the suppression list's ARM client, its records and its answers' models (its use cases sit above)
        "shared.suppression.arm",
        "shared.suppression.records",
        "shared.suppression.models",
    ),
    (
        "shared.models",
        "shared.deliverability.models",
        "shared.sending.models",
        "shared.codes",
        "shared.providers",
        "shared.schemas",
        "shared.settings",
        "shared.errors",
        "shared.signing",
    ),
    ("shared.deadline", "shared.kql.literals"),
)


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


@cache
def _modules() -> dict[str, Path]:
    return {_module_name(path): path for path in SHARED.rglob("*.py")}


def _type_checking_nodes(tree: ast.AST) -> set[int]:
    """ids of the import nodes inside ``if TYPE_CHECKING:`` blocks."""
    inside: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            inside.update(id(child) for stmt in node.body for child in ast.walk(stmt))
    return inside


#: A string that names a module of shared/, alone or as ``module:attribute``.
MODULE_STRING = re.compile(r"^(shared(?:\.\w+)*)(?::\w+)?$")


def _named_in_string(node: ast.AST) -> list[str]:
    if isinstance(node, ast.Constant) and isinstance(node.value, str) and (found := MODULE_STRING.match(node.value)):
        return [found.group(1)] if found.group(1) in _modules() else []
    return []


def _imports(path: Path, *, runtime_only: bool = False) -> set[str]:
    """Every shared.* module this file imports (or names in a string), anywhere in it (or only those that run)."""
    modules = _modules()
    found: set[str] = set()
    tree = ast.parse(path.read_text(encoding="utf-8"))
    skipped = _type_checking_nodes(tree) if runtime_only else set()
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        else:
            names = _named_in_string(node)
        for name in names:
            while name and name not in modules:
                name = name.rpartition(".")[0]
            if name.startswith("shared"):
                found.add(name)
    found.discard(_module_name(path))
    return found


def _graph(*, runtime_only: bool = False) -> dict[str, set[str]]:
    return {name: _imports(path, runtime_only=runtime_only) - {name} for name, path in _modules().items()}


def _layer(module: str) -> int:
    best = (-1, len(LAYERS))
    for index, prefixes in enumerate(LAYERS):
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > best[0]:
                best = (len(prefix), index)
    return best[1]


def test_no_module_in_shared_imports_another_in_a_circle() -> None:
    graph = _graph(runtime_only=True)
    state: dict[str, int] = {}
    cycles: list[list[str]] = []

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        for target in sorted(graph.get(node, ())):
            if state.get(target) == 1:
                cycles.append([*stack[stack.index(target) :], target])
            elif target not in state:
                visit(target, [*stack, target])
        state[node] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    assert not cycles, "\n".join(" -> ".join(cycle) for cycle in cycles)


def test_imports_flow_down_the_layers() -> None:
    upward = [
        f"{module} (layer {_layer(module)}) imports {target} (layer {_layer(target)})"
        for module, targets in _graph().items()
        for target in targets
        if _layer(target) < _layer(module) and not module.startswith(target + ".")
    ]
    assert not upward, "\n".join(sorted(upward))


def test_a_module_named_in_a_string_counts_as_an_import() -> None:
    """The spec names its handler modules and model modules only in strings: each is an edge of the graph."""
    spec = _graph(runtime_only=True)["shared.api.spec"]
    assert {"shared.api.handlers", "shared.api.triggers", "shared.models", "shared.suppression.models"} <= spec
    code = (
        "import importlib\nimportlib.import_module('shared.codes')\nX = 'shared.kql.literals:escape'\nY = 'shared x'\n"
    )
    tree = ast.parse(code)
    assert {name for node in ast.walk(tree) for name in _named_in_string(node)} == {
        "shared.codes",
        "shared.kql.literals",
    }


def test_every_module_has_a_layer() -> None:
    assert not [module for module in _modules() if module != "shared" and _layer(module) == len(LAYERS)]


def test_no_function_runs_past_60_lines_without_saying_why() -> None:
    long = []
    for path in sorted(SHARED.rglob("*.py")):
        lines = path.read_text(encoding="utf-8").splitlines()
        for node in ast.walk(ast.parse("\n".join(lines))):
            if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            length = (node.end_lineno or node.lineno) - node.lineno + 1
            first = min([node.lineno, *(d.lineno for d in node.decorator_list)])
            said = any(LONG_REASON in line for line in lines[max(0, first - 3) : node.lineno])
            if length > MAX_FUNCTION_LINES and not said:
                long.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name} ({length} lines)")
    assert not long, "\n".join(long)


#: Where the deployed package may reach the local one: inside a function, when no workspace is configured
#: (``make_source``) or when a local CLI command runs. Nowhere else, and never at module level.
LOCAL_SEAMS = {"shared.services", "shared.cli"}


def _local_imports(path: Path) -> list[tuple[int, bool]]:
    """(line, at module level) of each import of the ``local`` package in a file."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    top = {id(node) for node in tree.body}
    found = []
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
        if any(name == "local" or name.startswith("local.") for name in names):
            found.append((node.lineno, id(node) in top))
    return found


def test_the_deployed_package_reaches_local_tools_only_through_the_seams() -> None:
    wrong = [
        f"{name}:{line}" + (" (module level)" if top else "")
        for name, path in _modules().items()
        for line, top in _local_imports(path)
        if top or name not in LOCAL_SEAMS
    ]
    assert not wrong, "\n".join(wrong)


def _deployed_distributions() -> set[str]:
    """requirements.txt and everything it requires, transitively (canonical names)."""
    from importlib import metadata

    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    pending = [
        Requirement(line.split("#")[0].strip()).name
        for line in (ROOT / "requirements.txt").read_text().splitlines()
        if line.split("#")[0].strip() and not line.startswith("-")
    ]
    seen: set[str] = set()
    while pending:
        name = canonicalize_name(pending.pop())
        if name in seen:
            continue
        seen.add(name)
        for text in metadata.requires(name) or []:
            requirement = Requirement(text)
            if requirement.marker is None or requirement.marker.evaluate({"extra": ""}):
                pending.append(requirement.name)
    return seen


def test_the_deployed_package_imports_without_anything_requirements_txt_does_not_install() -> None:
    """Every module Azure runs (what .funcignore keeps: function_app.py and shared/) imports with DuckDB, duckdb-kql,
    the local package, the dev tools and every other package outside requirements.txt made unimportable."""
    from importlib import metadata

    from packaging.utils import canonicalize_name

    deployed = _deployed_distributions()
    blocked = sorted(
        module
        for module, distributions in metadata.packages_distributions().items()
        if not any(canonicalize_name(d) in deployed for d in distributions) and not module.startswith("_")
    )
    assert "duckdb" in blocked and "duckdb_kql" in blocked and "azure" not in blocked
    funcignore = (ROOT / ".funcignore").read_text().split()
    assert "local" in funcignore and "tools" in funcignore and "tests" in funcignore
    probe = (
        "import importlib, importlib.abc, pkgutil, sys\n"
        f"BLOCKED = set({[*blocked, 'local', 'tools', 'tests']!r})\n"
        "class Block(importlib.abc.MetaPathFinder):\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] in BLOCKED:\n"
        "            raise ImportError(f'{name} is not deployed')\n"
        "sys.meta_path.insert(0, Block())\n"
        "import function_app, shared\n"
        "names = [m.name for m in pkgutil.walk_packages(shared.__path__, 'shared.') if m.name != 'shared.__main__']\n"
        "for name in names:\n"
        "    importlib.import_module(name)\n"
        "print(len(names))\n"
    )
    done = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    assert int(done.stdout) > 40


@pytest.mark.parametrize("heavy", ["pydantic", "duckdb", "azure.monitor.query", "azure.data.tables", "matplotlib"])
def test_function_app_imports_nothing_heavy(heavy: str) -> None:
    """The host imports function_app at start (Flex Consumption gives it 30 s): handlers load on first use."""
    probe = f"import sys, function_app; print({heavy!r} in sys.modules)"
    done = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False"


def test_product_code_cites_public_documentation_not_the_kit() -> None:
    """The reference kit is not part of the product: code states the fact or cites learn.microsoft.com."""
    kit = re.compile(r"REFERENCE(?:-next)?(?:\.md)?\s*(?:§|:)|REFERENCE(?:-next)?\.md")
    cited = [
        f"{path.relative_to(ROOT)}:{number}"
        for folder in ("shared", "local", "tools", "infra")
        for path in sorted((ROOT / folder).rglob("*"))
        if path.suffix in {".py", ".bicep", ".kql", ".md", ".sh", ".json"} and "node_modules" not in path.parts
        for number, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1)
        if kit.search(line)
    ]
    assert not cited, "\n".join(cited)
