"""The shape of the package: no import cycles, no long modules, a small root.

These keep the layout a newcomer can read (CONTRIBUTING's module map): a cycle means two modules
that cannot be understood apart; a module over 400 lines is one waiting to be split; more than 15
modules in the root package means a concept that wants its own package.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "jupyter_pipeline"
GENERATED = {"jupyter_pipeline.serving.proto.grpc_predict_v2_pb2"}
MAX_LINES = 400
MAX_ROOT_MODULES = 15


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py")) if module_name(p) not in GENERATED}


def imports_of(name: str, path: Path, module_level_only: bool) -> set[str]:
    """The package's modules that ``name`` imports: every ``import``/``from`` statement, those under
    ``if TYPE_CHECKING:`` included (a type-only cycle is still two modules that need each other);
    with ``module_level_only``, imports inside functions (deliberately deferred) are left out."""
    tree = ast.parse(path.read_text(), str(path))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if module_level_only and isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
                continue
            if isinstance(child, ast.Import):
                found.update(a.name for a in child.names)
            elif isinstance(child, ast.ImportFrom):
                if child.level:
                    base = package.split(".")[: len(package.split(".")) - (child.level - 1)]
                    target = ".".join(base + ([child.module] if child.module else []))
                else:
                    target = child.module or ""
                submodules = {f"{target}.{a.name}" for a in child.names} & MODULES.keys()
                found.update(submodules)
                if len(submodules) < len(child.names):  # some names come from the module itself
                    found.add(target)
            visit(child)

    visit(tree)
    return {m for m in found if m in MODULES and m != name}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of ``graph`` as a path that returns to its start, or None."""
    state: dict[str, int] = {}  # 1 = on the stack, 2 = done
    stack: list[str] = []

    def dfs(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (cycle := dfs(nxt)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := dfs(node)):
            return cycle
    return None


def test_no_import_cycles_at_module_level():
    graph = {name: imports_of(name, path, module_level_only=True) for name, path in MODULES.items()}
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_the_cycle_finder_finds_cycles():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


@pytest.mark.parametrize("name", sorted(MODULES))
def test_no_module_over_400_lines(name):
    lines = len(MODULES[name].read_text().splitlines())
    assert lines <= MAX_LINES, f"{MODULES[name]} has {lines} lines; split it by concept (at most {MAX_LINES})"


def test_root_package_stays_small():
    root = sorted(p.stem for p in PACKAGE.glob("*.py") if p.stem != "__init__")
    assert len(root) <= MAX_ROOT_MODULES, (
        f"{len(root)} modules in jupyter_pipeline/ (at most {MAX_ROOT_MODULES}): {', '.join(root)}; "
        "put a new module in the package of its concept")


def test_every_package_has_a_module_map():
    for init in PACKAGE.rglob("__init__.py"):
        if module_name(init) in GENERATED or "proto" in init.parts:
            continue
        doc = ast.get_docstring(ast.parse(init.read_text()))
        assert doc, f"{init} has no docstring: say what the package holds, one line per module"
