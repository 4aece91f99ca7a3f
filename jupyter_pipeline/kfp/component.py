"""One lightweight Python component per stage.

The kfp SDK makes a lightweight component from a Python function: its signature becomes the
component's typed inputs and its source is embedded in the spec and executed in the pod. A
stage's inputs are the notebook parameters it uses plus a few run-level ones (``jp_*``), so each
stage needs its own signature. The function is therefore built as a syntax tree (``ast``, not
text), compiled, and its source registered with ``linecache`` so that ``inspect.getsource`` (which
the SDK calls) finds it. The body is one call to :func:`jupyter_pipeline.kfp.entry.run_component`;
all behaviour lives in the installed package.
"""

from __future__ import annotations

import ast
import itertools
import keyword
import linecache
import sys
from dataclasses import dataclass
from ..exceptions import TargetError
from ..pipeline import Pipeline, Stage

#: Run-level inputs every stage component takes, in signature order, with their meaning.
RUN_INPUTS = {
    "jp_notebook": "the stage notebook (nbformat JSON) this component runs",
    "jp_store": "store URL the stages share (variables, notebooks, results)",
    "jp_run_id": "run folder in the store; empty: kfp-<KFP job id>",
    "jp_job_id": "the KFP job id (a placeholder resolved by KFP)",
    "jp_s3_endpoint": "S3/MinIO endpoint of the store; empty: keep the environment's",
    "jp_workdir": "working directory of the stage's kernel; empty: the task's own",
}
#: Names a notebook parameter may not have (they would shadow the run-level inputs).
RESERVED = frozenset(RUN_INPUTS) | {"jupyter_pipeline", "_jp_entry"}

#: Python type of a KFP parameter for each notebook parameter type (``Parameter.type``).
KFP_TYPES = {"int": int, "float": float, "bool": bool, "str": str, "list": list, "tuple": list, "dict": dict,
             "NoneType": str}  # a None default travels as JSON text: see entry.NONE_PREFIX
_ANNOTATIONS = {int: "int", float: "float", bool: "bool", str: "str", list: "list", dict: "dict"}

_counter = itertools.count()


@dataclass(frozen=True)
class StageFunction:
    """The generated function of a stage: its name, source and the function object itself."""

    name: str
    source: str
    func: object


def function_name(stage: str) -> str:
    """A Python identifier for ``stage`` (stage names may hold '-' or be keywords)."""
    name = stage.replace("-", "_")
    return name + "_stage" if keyword.iskeyword(name) or name in RESERVED else name


def check_parameter_names(pipeline: Pipeline) -> None:
    clash = sorted(p.name for p in pipeline.parameters if p.name in RESERVED or p.name.startswith("jp_"))
    if clash:
        raise TargetError(
            f"{pipeline.path}: parameter name(s) {', '.join(clash)} are reserved for the Kubeflow compiler "
            "(names starting with 'jp_'); rename them in the parameters cell."
        )


def _arg(name: str, annotation: str) -> ast.arg:
    return ast.arg(arg=name, annotation=ast.parse(annotation, mode="eval").body)


def stage_function(pipeline: Pipeline, stage: Stage, timeout: int = 0) -> StageFunction:
    """Build the component function of ``stage``: typed inputs, docstring, one-call body."""
    params = [p for p in pipeline.parameters if p.name in stage.parameters]
    typed = [_arg(p.name, _ANNOTATIONS[KFP_TYPES[p.type]]) for p in params]
    run_args = [_arg(name, "str") for name in RUN_INPUTS]
    call = ast.Call(
        func=ast.Attribute(value=ast.Name("_jp_entry", ast.Load()), attr="run_component", ctx=ast.Load()),
        args=[],
        keywords=[
            ast.keyword("stage", ast.Constant(stage.name)),
            ast.keyword("parameters", ast.Dict(keys=[ast.Constant(p.name) for p in params],
                                                values=[ast.Name(p.name, ast.Load()) for p in params])),
            *(ast.keyword(name[3:], ast.Name(name, ast.Load())) for name in RUN_INPUTS if name != "jp_job_id"),
            ast.keyword("job_id", ast.Name("jp_job_id", ast.Load())),
            ast.keyword("timeout", ast.Constant(int(timeout or 0))),
        ],
    )
    doc = (f"Stage '{stage.name}' of pipeline '{pipeline.name}', run by jupyter-pipeline's stage runner.\n\n"
           "Args:\n" + "".join(f"    {p.name}: notebook parameter ({p.type}, default {p.default!r}).\n" for p in params)
           + "".join(f"    {name}: {text}.\n" for name, text in RUN_INPUTS.items()))
    name = function_name(stage.name)
    func_def = ast.FunctionDef(
        name=name,
        args=ast.arguments(posonlyargs=[], args=typed + run_args, vararg=None, kwonlyargs=[],
                           kw_defaults=[], kwarg=None, defaults=[]),
        body=[
            ast.Expr(ast.Constant(doc)),
            ast.Import(names=[ast.alias(name="jupyter_pipeline.kfp.entry", asname="_jp_entry")]),
            ast.Expr(call),
        ],
        decorator_list=[],
        returns=ast.Constant(None),
    )
    if sys.version_info >= (3, 12):
        func_def.type_params = []
    module = ast.fix_missing_locations(ast.Module(body=[func_def], type_ignores=[]))
    source = ast.unparse(module) + "\n"
    # A unique pseudo-file per build: linecache serves it to inspect.getsource.
    filename = f"<jupyter-pipeline {pipeline.name}:{stage.name}:{next(_counter)}>"
    linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
    namespace: dict = {}
    exec(compile(module, filename, "exec", dont_inherit=True), namespace)  # noqa: S102 - our own syntax tree, no user text
    return StageFunction(name=name, source=source, func=namespace[name])


def stage_component(pipeline: Pipeline, stage: Stage, image: str, timeout: int = 0):
    """The kfp ``PythonComponent`` of ``stage`` on ``image`` (which has jupyter-pipeline and kfp)."""
    from kfp import dsl

    built = stage_function(pipeline, stage, timeout)
    return dsl.component(built.func, base_image=image, install_kfp_package=False)
