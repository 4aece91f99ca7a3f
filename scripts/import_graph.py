"""Print the package's internal import graph: cycles, DFS back-edges and module sizes.

    python scripts/import_graph.py            # summary
    python scripts/import_graph.py --edges    # every edge, "lazy" marking imports inside functions

Imports under ``if TYPE_CHECKING:`` are left out (they never run), and so are imports of a module's
own packages (``from . import __version__``: the package's ``__init__`` has run first). Imports
inside functions count: they are how a cycle hides, and they still tie the modules together.
"""

from __future__ import annotations

import argparse
import ast
import sys
from pathlib import Path

PACKAGE = "jupyter_pipeline"


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _resolve(current: str, is_package: bool, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    base = current.split(".")
    base = base if is_package else base[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def imports(path: Path, name: str, modules: set[str]) -> dict[str, bool]:
    """Modules of the package ``path`` imports -> True if only inside functions."""
    tree = ast.parse(path.read_text(), str(path))
    found: dict[str, bool] = {}
    is_package = path.name == "__init__.py"

    def add(target: str, lazy: bool):
        while target and target not in modules:
            target = target.rpartition(".")[0]
        # A module's own packages are left out: their __init__ has run before the module is imported.
        if target and target != name and not name.startswith(target + "."):
            found[target] = found.get(target, True) and lazy

    def visit(node, lazy: bool):
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                continue
            inner = lazy or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            if isinstance(child, ast.Import):
                for alias in child.names:
                    add(alias.name, lazy)
            elif isinstance(child, ast.ImportFrom):
                base = _resolve(name, is_package, child)
                for alias in child.names:
                    full = f"{base}.{alias.name}"
                    add(full if full in modules else base, lazy)
            visit(child, inner)

    visit(tree, False)
    return found


def graph(root: Path) -> tuple[dict[str, dict[str, bool]], dict[str, int]]:
    files = {module_name(p, root): p for p in sorted((root / PACKAGE).rglob("*.py"))}
    modules = set(files)
    edges = {m: imports(p, m, modules) for m, p in files.items()}
    sizes = {m: len(p.read_text().splitlines()) for m, p in files.items()}
    return edges, sizes


def cycles(edges: dict[str, dict[str, bool]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def strong(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in edges.get(v, {}):
            if w not in index:
                strong(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    sys.setrecursionlimit(10_000)
    for v in sorted(edges):
        if v not in index:
            strong(v)
    return out


def back_edges(edges: dict[str, dict[str, bool]]) -> list[tuple[str, str]]:
    """Edges that close a cycle in a depth-first walk from each module in name order."""
    state, found = {}, []

    def walk(v):
        state[v] = "open"
        for w in sorted(edges.get(v, {})):
            if state.get(w) == "open":
                found.append((v, w))
            elif w not in state:
                walk(w)
        state[v] = "done"

    for v in sorted(edges):
        if v not in state:
            walk(v)
    return found


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--root", default=str(Path(__file__).resolve().parent.parent))
    ap.add_argument("--edges", action="store_true", help="print every edge")
    ap.add_argument("--over", type=int, default=400, help="list modules longer than this many lines")
    args = ap.parse_args(argv)
    edges, sizes = graph(Path(args.root))
    comps, backs = cycles(edges), back_edges(edges)
    n_edges = sum(len(e) for e in edges.values())
    lazy = sum(lazy for e in edges.values() for lazy in e.values())
    print(f"{len(edges)} modules, {n_edges} internal imports ({lazy} only inside functions), "
          f"{sum(sizes.values())} lines")
    print(f"cycles (modules importing each other, directly or round a loop): {len(comps)}")
    for comp in comps:
        print("  " + " <-> ".join(comp))
    print(f"back-edges: {len(backs)}")
    for a, b in backs:
        print(f"  {a} -> {b}" + ("  (inside a function)" if edges[a][b] else ""))
    big = sorted(((n, m) for m, n in sizes.items() if n > args.over), reverse=True)
    print(f"modules over {args.over} lines: " + (", ".join(f"{m} ({n})" for n, m in big) or "none"))
    if args.edges:
        for a in sorted(edges):
            for b in sorted(edges[a]):
                print(f"{a} -> {b}" + (" lazy" if edges[a][b] else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
