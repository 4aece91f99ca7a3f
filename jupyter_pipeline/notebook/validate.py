"""Pipeline-level checks that need the grouped stages: dependencies, cycles, empty stages.

Cell-level checks (tags, syntax, names) happen while parsing; every finding is a
:class:`~jupyter_pipeline.notebook.pipeline.Problem`, and all of them are returned together.
"""

from __future__ import annotations

import ast

from .pipeline import Cell, Problem, Stage


def stage_problems(stages: list[Stage], cells: list[Cell], first_cell: dict[str, int],
                   after_origin: dict[tuple[str, str], tuple[int, str]] | None = None) -> list[Problem]:
    """Unknown and self dependencies (at the cell carrying the tag, as the user spelled it) and empty stages.

    ``after_origin`` maps ``(stage, stage it runs after)`` to the cell and the tag that say so.
    """
    problems: list[Problem] = []
    names = {s.name for s in stages}
    if not stages and not any(c.cell_type == "code" and c.source.strip() for c in cells):
        problems.append(Problem("error", "no-stages", "the notebook has no code to run: add code cells"))
    elif not stages:
        # Untagged code would be a stage of its own: every code cell here is parameters, setup or skip.
        problems.append(Problem(
            "error", "no-stages",
            "no stage to run: every code cell is tagged `parameters`, `setup` or `skip`; add the pipeline's code "
            "below them (untagged, or in cells tagged `stage:NAME`)",
        ))
    for stage in stages:
        cell = first_cell[stage.name]
        for target in stage.after:
            at, tag = (after_origin or {}).get((stage.name, target), (cell, f"after:{target}"))
            if target == stage.name:
                problems.append(Problem("error", "self-dependency",
                                        f"stage '{stage.name}' is tagged after itself (`{tag}`)", stage=stage.name,
                                        cell=at))
            elif target not in names:
                problems.append(Problem(
                    "error", "unknown-after",
                    f"`{tag}` names no stage; stages are: {', '.join(sorted(names))}",
                    stage=stage.name, cell=at,
                ))
        has_code = any(cells[i].cell_type == "code" and _has_statements(cells[i].source) for i in stage.cells)
        if not has_code:
            problems.append(Problem("warning", "empty-stage", f"stage '{stage.name}' has no code",
                                    stage=stage.name, cell=cell))
    return problems


#: Calls that set a replica up for distributed work: ``jp.distributed().initialize_keras()`` and the like.
DISTRIBUTION_CALLS = ("initialize_keras", "initialize_jax", "jax.distributed.initialize",
                      "keras.distribution.initialize")


#: Access modes of a claim that only pods on one node (or one pod) can mount at once.
SINGLE_NODE_ACCESS = ("ReadWriteOnce", "ReadWriteOncePod")


def workers_problems(stages: list[Stage], cells: list[Cell], setup_cells: list[int],
                     first_cell: dict[str, int], volumes: list[dict] = ()) -> list[Problem]:
    """``workers:N`` stages: not with ``map:``, a warning when no cell sets the replicas up to work
    together, and one per claim made for the run (the notebook's ``volumes``) that the replicas,
    each mounting it, cannot share across nodes."""
    problems: list[Problem] = []
    setup = [cells[i].source for i in setup_cells]
    for stage in stages:
        n = stage.options.workers
        if n < 2:
            continue
        cell = first_cell[stage.name]
        if stage.options.map_var:
            problems.append(Problem(
                "error", "workers-with-map",
                f"stage '{stage.name}' is tagged both `workers:{n}` and `map:{stage.options.map_var}`: a map stage runs "
                "once per item, a workers stage runs one program on several replicas together; put the two in "
                "separate stages", stage=stage.name, cell=cell))
        sources = setup + [cells[i].source for i in stage.cells if cells[i].cell_type == "code"]
        if not any(_calls(source, DISTRIBUTION_CALLS) for source in sources):
            problems.append(Problem(
                "warning", "workers-without-distribution",
                f"stage '{stage.name}' runs on {n} workers, but its code never sets them up to work together, so each "
                "replica would run the whole stage alone; call `jupyter_pipeline.distributed().initialize_keras()` "
                "before building the model (or initialize_jax(), or jax.distributed.initialize with "
                "jp.distributed()'s rank, world_size and coordinator)", stage=stage.name, cell=cell))
        for volume in volumes:
            mode = volume.get("access_mode") or "ReadWriteOnce"
            if volume.get("new") and mode in SINGLE_NODE_ACCESS:
                problems.append(Problem(
                    "warning", "workers-single-node-volume",
                    f"stage '{stage.name}' runs on {n} workers, each mounting volume '{volume['name']}' at "
                    f"{volume['mount_path']}, whose claim is made per run with access mode {mode}: "
                    f"{'only one pod' if mode == 'ReadWriteOncePod' else 'only pods on one node'} can mount it, so "
                    "replicas on other nodes would never start; give the volume \"access_mode\": \"ReadWriteMany\" "
                    "(and a storage class that offers it) in the notebook's `volumes` setting", stage=stage.name,
                    cell=cell))
    return problems


def _calls(source: str, names: tuple[str, ...]) -> bool:
    """Whether ``source`` calls a function whose dotted name ends with one of ``names``."""
    from .analysis import to_python

    try:
        tree = ast.parse(to_python(source))
    except SyntaxError:
        return False
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            dotted = _dotted(node.func)
            if any(dotted == name or dotted.endswith("." + name) for name in names):
                return True
    return False


def _dotted(node: ast.AST) -> str:
    if isinstance(node, ast.Attribute):
        return f"{_dotted(node.value)}.{node.attr}"
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Call):
        return _dotted(node.func) + "()"
    return "?"


def reopened_stages(stages: list[Stage], cells: list[Cell], first_cell: dict[str, int],
                    label=lambda index: f"cell {index + 1}") -> list[Problem]:
    """A stage whose cells continue below a stage that reads its variables.

    The pipeline runs all of a stage before any stage that reads from it, so the reader would see
    what the later cells leave, not what running the notebook top to bottom gives it.
    """
    problems: list[Problem] = []
    for reader in stages:
        start = first_cell[reader.name]
        read_from: dict[str, list[str]] = {}
        for var, producer in reader.inputs:
            read_from.setdefault(producer, []).append(var)
        for producer, names in read_from.items():
            below = [i for i in _stage(stages, producer).cells if i > start and cells[i].cell_type == "code"]
            if not below or first_cell[producer] > start:
                continue
            shown = ", ".join(f"'{n}'" for n in names[:3]) + (" and more" if len(names) > 3 else "")
            problems.append(Problem(
                "error", "reopened-stage",
                f"stage '{producer}' continues here, below stage '{reader.name}' ({label(start)}), which reads "
                f"{shown} from it; the pipeline runs all of '{producer}' before '{reader.name}', so "
                f"'{reader.name}' would not see what running the notebook top to bottom gives it. Tag this cell "
                f"with a stage of its own, or move it above {label(start)}",
                stage=producer, cell=below[0],
            ))
    return problems


def _stage(stages: list[Stage], name: str) -> Stage:
    return next(s for s in stages if s.name == name)


def _has_statements(source: str) -> bool:
    from .analysis import to_python

    if source.lstrip().startswith("%%") and source.strip().count("\n"):
        return True  # a cell magic with a body (%%writefile, %%bash): it runs, though not as Python
    try:
        return bool(ast.parse(to_python(source)).body)
    except SyntaxError:
        return True  # reported as a syntax error, not as an empty stage


def find_cycles(stages: list[Stage], first_cell: dict[str, int]) -> list[Problem]:
    """One problem per distinct dependency cycle, naming its stages in order.

    Iterative depth-first search, so a pipeline of thousands of stages cannot hit Python's
    recursion limit.
    """
    deps = {s.name: list(s.depends_on) for s in stages}
    state: dict[str, int] = {}  # 1 = on the path, 2 = finished
    seen: set[frozenset] = set()
    problems: list[Problem] = []
    for root in deps:
        if root in state:
            continue
        path: list[str] = [root]
        todo = [iter(deps[root])]
        state[root] = 1
        while todo:
            dep = next(todo[-1], None)
            if dep is None:
                state[path.pop()] = 2
                todo.pop()
                continue
            if dep not in deps:
                continue  # an unknown stage, reported elsewhere
            if state.get(dep) == 1:
                cycle = path[path.index(dep):]
                if frozenset(cycle) not in seen:
                    seen.add(frozenset(cycle))
                    # Print it in dependency order: dep runs before ... before dep again.
                    chain = " → ".join(reversed(cycle + [dep]))
                    problems.append(Problem(
                        "error", "cycle",
                        f"stages depend on each other in a cycle: {chain} (each must run before the next)",
                        stage=dep, cell=first_cell.get(dep),
                    ))
            elif dep not in state:
                state[dep] = 1
                path.append(dep)
                todo.append(iter(deps[dep]))
    return problems
