"""Conditional stages on Kubeflow: each ``if:`` stage and everything downstream of it in ``dsl.If`` blocks.

KFP lets a task depend on a task inside a ``dsl.If`` only from inside that block, and a stage its
condition skips skips its dependents too; so a conditional stage opens a block that holds it and
every stage below it (:func:`scopes`). Blocks nest; a stage below two conditional stages whose
blocks do not nest cannot be placed, which :func:`scopes` says.

A condition that is a conjunction of comparisons (``not`` pushed into the operators) compiles to
one nested ``dsl.If`` per comparison, over the producing tasks' scalar outputs and the pipeline's
parameters, so the YAML's trigger policies are the condition itself. The producing stage's
component declares each scalar a condition reads as an ``OutputPath`` parameter
(``jp_scalar_<name>``, see :func:`jupyter_pipeline.kfp.component.stage_function`), written from
its output index once the stage succeeded; a task KFP takes from its cache brings its outputs
with it, so conditions work on cached producers. Those comparisons sit inside a guard,
``dsl.If(<producer's location> != '')``, which always holds: kfp.local finds a named task output
in a trigger only as an input of the enclosing block, and the guard makes it one (a cluster
needs no guard and pays one DAG step for it). A condition that needs ``or`` is evaluated by a
check task (the evaluator of local runs, :mod:`jupyter_pipeline.notebook.condition`) and the
block is ``dsl.If(check.output == True)``.
"""

from __future__ import annotations

import ast
import contextlib
import operator

from ..exceptions import PipelineError, TargetError
from ..notebook.condition import BOOLEAN, NUMBER, conjunction, parse
from ..notebook.pipeline import Pipeline, Problem, Stage
from ..store.records import stage_key
from .component import scalar_output

_COMPARE = {"==": operator.eq, "!=": operator.ne, "<": operator.lt, "<=": operator.le, ">": operator.gt,
            ">=": operator.ge}


def scopes(pipeline: Pipeline, ordered: list[Stage]) -> dict[str, tuple[str, ...]]:
    """For each stage, the conditional stages whose blocks hold it, outermost first (its own last)."""
    chain: dict[str, tuple[str, ...]] = {}
    for stage in ordered:
        base: tuple[str, ...] = ()
        for up in stage.depends_on:
            other = chain[up]
            if other[:len(base)] == base:
                base = other
            elif base[:len(other)] != other:
                raise TargetError(
                    f"{pipeline.path}: stage '{stage.name}' is below conditional stages "
                    f"'{base[-1]}' and '{other[-1]}', whose conditions are independent; on Kubeflow a stage "
                    f"can sit in one chain of dsl.If blocks only. Tag '{other[-1]}' `after:{base[-1]}` so its "
                    f"block nests in that of '{base[-1]}' (it then runs only when both hold), or make one "
                    "condition cover both.")
        chain[stage.name] = base + ((stage.name,) if stage.options.condition else ())
    return chain


def condition_problems(pipeline: Pipeline) -> list[Problem]:
    """What conditional stages meet on Kubeflow, said before compiling: blocks that cannot nest (an
    error for ``compile``), and per-run volumes kept rather than deleted."""
    if not any(s.options.condition for s in pipeline.stages):
        return []
    out = []
    try:
        scopes(pipeline, pipeline.dependency_order())
    except TargetError as exc:
        stage = next((s.name for s in pipeline.stages if f"stage '{s.name}' is below" in str(exc)), None)
        out.append(Problem("warning", "conditions-not-nested", str(exc).split(": ", 1)[1], stage=stage))
    except PipelineError:
        pass  # a cycle: validate reports it
    if any(v.get("new") and not v.get("keep") for v in pipeline.settings.get("volumes") or [] if isinstance(v, dict)):
        out.append(Problem("warning", "condition-keeps-volumes", "with conditional stages the volumes made per run "
                           "(`\"new\": true`) are kept after the run on Kubeflow (no task may wait for tasks inside a "
                           "dsl.If); delete them with kubectl, or set \"keep\": true to say so"))
    return out


def emit(ordered: list[Stage], chain: dict[str, tuple[str, ...]], add, open_block) -> None:
    """Add every stage of ``ordered`` (``add(stage)``) inside its blocks (``open_block(stage)``, a
    context manager, entered once per conditional stage), each block once all it waits for is added."""
    position = {s.name: i for i, s in enumerate(ordered)}
    by_name = {s.name: s for s in ordered}

    def level(prefix: tuple[str, ...], members: list[str]) -> None:
        depth = len(prefix)

        def item(name: str) -> str:  # a stage added here, or the opener of the block holding it
            return chain[name][depth] if len(chain[name]) > depth else name

        items: dict[str, set[str]] = {}
        for name in members:
            key = item(name)
            needs = {item(up) for up in by_name[name].depends_on if chain[up][:depth] == prefix and up in members}
            items.setdefault(key, set()).update(needs - {key})
        done: set[str] = set()
        while len(done) < len(items):
            key = min((k for k, needs in items.items() if k not in done and needs <= done), key=position.get)
            done.add(key)
            if len(chain[key]) > depth and chain[key][depth] == key:
                inner = [n for n in members if chain[n][:depth + 1] == prefix + (key,)]
                with open_block(by_name[key]):
                    add(by_name[key])
                    level(prefix + (key,), [n for n in inner if n != key])
            else:
                add(by_name[key])

    level((), [s.name for s in ordered])


def add_stages(pipeline: Pipeline, stages, values: dict, tasks: dict, after: list = ()) -> None:
    """Add the task of every stage of ``stages`` (a :class:`~.tasks.StageTasks`) to ``tasks``, the
    conditional ones and everything downstream of them inside their ``dsl.If`` blocks."""
    from .component import check_function, component

    checks = {s.name: component(check_function(pipeline, s), stages.image) for s in stages.ordered
              if s.options.condition and conjunction(parse(s.options.condition)) is None}

    def add(stage: Stage) -> None:
        tasks[stage.name] = stages.add(stage, values, tasks, after=list(after))

    def block(stage: Stage):
        return open_block(stage, pipeline, values, tasks, checks.get(stage.name), stages.placement)

    emit(stages.ordered, scopes(pipeline, stages.ordered), add, block)


def open_block(stage: Stage, pipeline: Pipeline, values: dict, tasks: dict, check=None, placement=None):
    """The ``dsl.If`` blocks of ``stage``'s condition, as one context manager. ``values`` are the
    pipeline's parameter channels, ``tasks`` the tasks added so far, ``check`` the component that
    evaluates a condition needing ``or`` (its task placed as ``placement`` places helpers)."""
    from kfp import dsl

    from .placement import helper
    from .tasks import LOCATION

    condition = parse(stage.options.condition)
    producers = dict(stage.inputs)
    params = {p.name for p in pipeline.parameters}

    def channel(side):
        if not isinstance(side, ast.Name):
            return side
        if side.id in params:
            return values[side.id]
        return tasks[producers[side.id]].outputs[scalar_output(side.id)]

    stack = contextlib.ExitStack()
    links = conjunction(condition)
    if links is None:
        task = check(**{name: channel(ast.Name(name)) for name in condition.names})
        helper(task, f"{stage.name}: if {condition}", placement)
        stack.enter_context(dsl.If(task.output == True, name=f"if {condition}"))  # noqa: E712 - a DSL comparison
        return stack
    read = [producers[n] for n in condition.names if n not in params]
    if read:
        stack.enter_context(dsl.If(tasks[read[0]].outputs[LOCATION] != "", name=f"{stage.name}: upstream done"))
    for left, symbol, right in links:
        text = f"if {_text(left)} {symbol} {_text(right)}"
        stack.enter_context(dsl.If(_COMPARE[symbol](channel(left), channel(right)), name=text))
    return stack


def _text(side) -> str:
    return side.id if isinstance(side, ast.Name) else repr(side)


def write_scalars(paths: dict, kinds: dict, store, run_id: str, stage: str) -> None:
    """In a producing stage's pod, once it succeeded: write each scalar a condition reads (as the stage's
    output index holds it) to its ``OutputPath`` file, in the kind the conditions compare it as."""
    import json
    from pathlib import Path

    index = store.get_json(stage_key(run_id, stage, "outputs.json"))
    for name, path in paths.items():
        value, kind = index[name].get("scalar"), kinds.get(name, NUMBER)
        fits = {NUMBER: isinstance(value, (int, float)) and not isinstance(value, bool),
                BOOLEAN: isinstance(value, bool)}.get(kind, isinstance(value, str))
        if not fits:
            raise RuntimeError(f"variable '{name}' of stage '{stage}' is compared as a {_WORDS[kind]} by a later "
                               f"stage's if: condition, but it holds {value!r}; on Kubeflow each value a condition "
                               "reads has the kind of what it is compared with")
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(value if isinstance(value, str) else json.dumps(value))


_WORDS = {NUMBER: "number", BOOLEAN: "boolean", "str": "string"}
