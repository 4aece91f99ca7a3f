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
import re
import sys
from dataclasses import dataclass
from ..exceptions import TargetError
from ..notebook.pipeline import Pipeline, Stage

#: Run-level inputs every stage component takes, in signature order, with their meaning. None of them
#: changes from one run to the next, so KFP's cache can recognise a task it ran before.
RUN_INPUTS = {
    "jp_notebook": "the stage notebook (nbformat JSON) this component runs",
    "jp_store": "store URL the stages share (variables, notebooks, results)",
    "jp_s3_endpoint": "S3/MinIO endpoint of the store; empty: keep the environment's",
    "jp_workdir": "working directory of the stage's kernel; empty: a fresh folder holding the travelling files",
    "jp_files": "store key of the bundle of files next to the notebook that travel to the pod; empty: none",
}
#: Outputs of every stage component that the KFP UI shows: the executed notebook and logged metrics
#: (and, for stages that call log_model, ``jp_model``).
ARTIFACT_OUTPUTS = {"jp_html": "Output[HTML]", "jp_metrics": "Output[Metrics]"}
MODEL_OUTPUT = ("jp_model", "Output[Model]")
#: Inputs of the bookkeeping components (plan, gather, link, report): where the run's files are.
#: They are never cached, so the KFP job id may be among them.
STORE_INPUTS = ("jp_store", "jp_run_id", "jp_job_id", "jp_s3_endpoint")
#: Prefix of the input that carries an upstream stage's location (the run folder holding its results).
UPSTREAM_PREFIX = "jp_from_"
#: Prefix of the output that carries a scalar a later stage's condition reads.
SCALAR_PREFIX = "jp_scalar_"
#: Prefix of a ``workers:`` stage's input that carries the name of a claim made for the run.
CLAIM_PREFIX = "jp_claim_"
#: Names a notebook parameter may not have (they would shadow the run-level inputs).
RESERVED = frozenset(RUN_INPUTS) | frozenset(ARTIFACT_OUTPUTS) | {"jupyter_pipeline", "_jp_entry"}

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


def component_name(pipeline: Pipeline, name: str) -> str:
    """``name`` (a function name) for a component of ``pipeline``, unless KFP would read it as the
    pipeline's own name (a notebook without stage tags is one stage named like the notebook): KFP then
    takes the stage's component for the pipeline, whose call lacks the stage's inputs."""
    from .compiler import kfp_name

    return name + "_stage" if name.replace("_", "-") == kfp_name(pipeline.name) else name


def check_parameter_names(pipeline: Pipeline) -> None:
    clash = sorted(p.name for p in pipeline.parameters if p.name in RESERVED or p.name.startswith("jp_"))
    if clash:
        raise TargetError(
            f"{pipeline.path}: parameter name(s) {', '.join(clash)} are reserved for the Kubeflow compiler "
            "(names starting with 'jp_'); rename them in the parameters cell."
        )


def _arg(name: str, annotation: str) -> ast.arg:
    return ast.arg(arg=name, annotation=ast.parse(annotation, mode="eval").body)


def _namespace() -> dict:
    """What the annotations of a generated function refer to (the pod's copy gets the same names
    from the ``from kfp.dsl import *`` that the kfp SDK puts before the function's source)."""
    from kfp import dsl

    return {"Output": dsl.Output, "HTML": dsl.HTML, "Metrics": dsl.Metrics, "Model": dsl.Model,
            "OutputPath": dsl.OutputPath}


def _build(name: str, label: str, args: list[ast.arg], entry: str, keywords: list[ast.keyword], doc: str,
           returns: str | None = None, defaults: list[ast.expr] = ()) -> StageFunction:
    """A function ``name(args) -> returns`` whose body is ``return _jp_entry.<entry>(**keywords)``;
    the last ``len(defaults)`` arguments have those defaults."""
    call = ast.Call(
        func=ast.Attribute(value=ast.Name("_jp_entry", ast.Load()), attr=entry, ctx=ast.Load()),
        args=[], keywords=keywords,
    )
    func_def = ast.FunctionDef(
        name=name,
        args=ast.arguments(posonlyargs=[], args=args, vararg=None, kwonlyargs=[],
                           kw_defaults=[], kwarg=None, defaults=list(defaults)),
        body=[
            ast.Expr(ast.Constant(doc)),
            ast.Import(names=[ast.alias(name="jupyter_pipeline.kfp.entry", asname="_jp_entry")]),
            ast.Return(call) if returns else ast.Expr(call),
        ],
        decorator_list=[],
        returns=ast.parse(returns, mode="eval").body if returns else ast.Constant(None),
    )
    if sys.version_info >= (3, 12):
        func_def.type_params = []
    module = ast.fix_missing_locations(ast.Module(body=[func_def], type_ignores=[]))
    source = ast.unparse(module) + "\n"
    # A unique pseudo-file per build: linecache serves it to inspect.getsource.
    filename = f"<jupyter-pipeline {label}:{next(_counter)}>"
    linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
    namespace = _namespace()
    exec(compile(module, filename, "exec", dont_inherit=True), namespace)
    return StageFunction(name=name, source=source, func=namespace[name])


def _name(name: str) -> ast.Name:
    return ast.Name(name, ast.Load())


def _params(pipeline: Pipeline, names) -> list:
    return [p for p in pipeline.parameters if p.name in names]


def _typed(params) -> list[ast.arg]:
    return [_arg(p.name, _ANNOTATIONS[KFP_TYPES[p.type]]) for p in params]


def _store_keywords() -> list[ast.keyword]:
    return [ast.keyword(name[3:], _name(name)) for name in STORE_INPUTS]


def upstream_input(stage: str) -> str:
    """The input of a downstream component that carries ``stage``'s location."""
    return UPSTREAM_PREFIX + function_name(stage)


def _upstream(stages) -> tuple[list[ast.arg], ast.keyword]:
    """One ``str`` input per upstream stage and the ``upstream={stage: input}`` keyword."""
    names = list(dict.fromkeys(stages))
    return ([_arg(upstream_input(s), "str") for s in names],
            ast.keyword("upstream", ast.Dict(keys=[ast.Constant(s) for s in names],
                                             values=[_name(upstream_input(s)) for s in names])))


def scalar_output(name: str) -> str:
    """The output of a producing stage's component that carries variable ``name``, a scalar that a
    later stage's ``if:`` condition reads (see :mod:`.conditions`)."""
    return SCALAR_PREFIX + name


def _scalars(stage: Stage) -> tuple[list[ast.arg], list[ast.keyword]]:
    """The ``OutputPath`` parameters of a stage's scalar outputs, and the keywords that pass them on."""
    if not stage.scalars:
        return [], []
    names = [name for name, _ in stage.scalars]
    args = [_arg(scalar_output(name), f"OutputPath({kind})") for name, kind in stage.scalars]
    return args, [
        ast.keyword("scalars", ast.Dict(keys=[ast.Constant(n) for n in names],
                                        values=[_name(scalar_output(n)) for n in names])),
        ast.keyword("scalar_kinds", ast.Dict(keys=[ast.Constant(n) for n, _ in stage.scalars],
                                             values=[ast.Constant(k) for _, k in stage.scalars])),
    ]


def claim_input(volume: str) -> str:
    """The input of a ``workers:`` stage's launcher that carries the claim made for the run for ``volume``."""
    return CLAIM_PREFIX + re.sub(r"\W", "_", volume)


def _carry(stages) -> ast.keyword:
    """``carry={stage: input name}``: the loop-item fields that take the stages' locations into a loop."""
    names = list(dict.fromkeys(stages))
    return ast.keyword("carry", ast.Dict(keys=[ast.Constant(s) for s in names],
                                         values=[ast.Constant(upstream_input(s)) for s in names]))


def data_producers(stage: Stage) -> list[str]:
    """The stages whose variables (or files) ``stage`` loads, in order of first use."""
    return list(dict.fromkeys(producer for _, producer in stage.inputs + stage.files_in))


def stage_function(pipeline: Pipeline, stage: Stage, timeout: int = 0, model: bool = False,
                   claims: tuple[str, ...] = ()) -> StageFunction:
    """Build the component function of ``stage``: typed inputs, docstring, one-call body.

    Its inputs are the notebook parameters it uses, the run-level inputs and one location per
    upstream stage; its outputs the executed notebook (HTML), the metrics, the registered models
    (``model``) and, as its return value, its own location (the run folder holding its results).
    A ``map:`` stage's component also takes ``jp_item``, the index of the item it runs on.
    ``jp_run_id`` (default: empty) names the run folder only inside a sweep's variant loop.
    A ``workers:`` stage's launcher also takes the names of the claims made for the run (one input
    per volume in ``claims``, default empty: none made, as on kfp.local), to mount in the replicas.
    """
    params = _params(pipeline, stage.parameters)
    mapped = bool(stage.options.map_var)
    up_args, up_keyword = _upstream(data_producers(stage))
    outputs = dict(ARTIFACT_OUTPUTS, **dict([MODEL_OUTPUT] if model else []))
    scalar_args, scalar_keywords = _scalars(stage)
    args = ([_arg(name, "str") for name in RUN_INPUTS] + up_args
            + [_arg(name, annotation) for name, annotation in outputs.items()] + scalar_args
            + ([_arg("jp_item", "int")] if mapped else []) + [_arg("jp_run_id", "str")]
            + [_arg(claim_input(v), "str") for v in claims])
    keywords = [
        ast.keyword("stage", ast.Constant(stage.name)),
        ast.keyword("parameters", ast.Dict(keys=[ast.Constant(p.name) for p in params],
                                            values=[_name(p.name) for p in params])),
        *(ast.keyword(name[3:], _name(name)) for name in RUN_INPUTS),
        up_keyword,
        *(ast.keyword(name[3:], _name(name)) for name in outputs),
        *scalar_keywords,
        ast.keyword("run_id", _name("jp_run_id")),
        ast.keyword("timeout", ast.Constant(int(timeout or 0))),
        *([ast.keyword("item", _name("jp_item"))] if mapped else []),
        *([ast.keyword("claims", ast.Dict(keys=[ast.Constant(v) for v in claims],
                                          values=[_name(claim_input(v)) for v in claims]))] if claims else []),
    ]
    doc = (f"Stage '{stage.name}' of pipeline '{pipeline.name}', run by jupyter-pipeline's stage runner.\n\n"
           "Args:\n" + "".join(f"    {p.name}: notebook parameter ({p.type}, default {p.default!r}).\n" for p in params)
           + "".join(f"    {name}: {text}.\n" for name, text in RUN_INPUTS.items())
           + "".join(f"    {upstream_input(s)}: where stage '{s}' left its results.\n" for s in data_producers(stage))
           + "    jp_html, jp_metrics: the executed notebook and the metrics it logged, for the KFP UI.\n"
           + ("    jp_model: the models the stage registered (store URI and version in its metadata).\n" if model else "")
           + "".join(f"    {scalar_output(n)}: the value of '{n}' ({k}), which a later stage's if: condition reads.\n"
                     for n, k in stage.scalars)
           + ("    jp_item: index of the item of a map: stage this task runs.\n" if mapped else "")
           + "    jp_run_id: run folder in the store; empty: this process's run (see entry.run_folder).\n"
           + "".join(f"    {claim_input(v)}: the claim made for this run for volume '{v}', mounted in every replica.\n"
                     for v in claims)
           + "\nReturns:\n    The run folder holding the stage's results.\n")
    return _build(component_name(pipeline, function_name(stage.name)), f"{pipeline.name}:{stage.name}",
                  _typed(params) + args,
                  "run_component", keywords, doc, returns="str", defaults=[ast.Constant("")] * (1 + len(claims)))


def plan_function(pipeline: Pipeline, stage: Stage) -> StageFunction:
    """The component that lists the items of ``map:`` stage ``stage`` at run time (fan-out)."""
    o = stage.options
    producer = dict(stage.inputs).get(o.map_var)
    params = [] if producer else _params(pipeline, [o.map_var])
    up_args, up_keyword = _upstream(data_producers(stage))
    args = _typed(params) + up_args + [_arg(name, "str") for name in STORE_INPUTS] + [_arg("jp_variant", "dict")]
    keywords = [
        ast.keyword("stage", ast.Constant(stage.name)),
        ast.keyword("var", ast.Constant(o.map_var)),
        ast.keyword("producer", ast.Constant(producer)),
        ast.keyword("chunks", ast.Constant(o.map_chunks)),
        ast.keyword("parameters", ast.Dict(keys=[ast.Constant(p.name) for p in params],
                                            values=[_name(p.name) for p in params])),
        up_keyword,
        _carry(data_producers(stage)),
        *_store_keywords(),
        ast.keyword("variant", _name("jp_variant")),
    ]
    doc = (f"Items of stage '{stage.name}' (map:{o.map_var}) of pipeline '{pipeline.name}': one loop iteration each.")
    return _build("plan_" + function_name(stage.name), f"{pipeline.name}:plan:{stage.name}", args,
                  "plan_items", keywords, doc, returns="list")


def gather_function(pipeline: Pipeline, stage: Stage) -> StageFunction:
    """The component that publishes the outputs of ``map:`` stage ``stage`` as lists (fan-in); it
    returns the stage's location, like a stage component."""
    args = [_arg("jp_items", "list")] + [_arg(name, "str") for name in STORE_INPUTS]
    keywords = [
        ast.keyword("stage", ast.Constant(stage.name)),
        ast.keyword("outputs", ast.List([ast.Constant(n) for n in stage.outputs], ast.Load())),
        ast.keyword("items", _name("jp_items")),
        *_store_keywords(),
    ]
    doc = f"Gather the items of stage '{stage.name}' of pipeline '{pipeline.name}' into its outputs."
    return _build("gather_" + function_name(stage.name), f"{pipeline.name}:gather:{stage.name}", args,
                  "gather_items", keywords, doc, returns="str")


def link_function(pipeline: Pipeline, shared: list[str]) -> StageFunction:
    """The first task of each sweep variant: point the variant's run at the stages run once for all
    (one location input per shared stage)."""
    up_args, up_keyword = _upstream(shared)
    args = up_args + [_arg(name, "str") for name in STORE_INPUTS]
    keywords = [up_keyword, *_store_keywords()]
    doc = f"Start a variant of a sweep of pipeline '{pipeline.name}': link the shared stages' results."
    return _build("link_variant", f"{pipeline.name}:link", args, "link_variant", keywords, doc)


def variants_function(pipeline: Pipeline, shared: list[str]) -> StageFunction:
    """The task before a sweep's variant loop: the variants, each with the shared stages' locations."""
    up_args, up_keyword = _upstream(shared)
    keywords = [ast.keyword("variants", _name("jp_variants")), up_keyword, _carry(shared)]
    doc = f"The variants of a sweep of pipeline '{pipeline.name}', with where the shared stages left their results."
    return _build("sweep_variants", f"{pipeline.name}:variants", [_arg("jp_variants", "list")] + up_args,
                  "expand_variants", keywords, doc, returns="list")


def report_function(pipeline: Pipeline) -> StageFunction:
    """The exit task: the executed notebooks of failed stages as one HTML page, for the KFP UI
    (KFP keeps no outputs of a failed task, so a failed stage cannot show its own)."""
    args = [_arg(name, "str") for name in STORE_INPUTS] + [_arg("jp_failed", "Output[HTML]")]
    keywords = [ast.keyword("stages", ast.List([ast.Constant(s.name) for s in pipeline.stages], ast.Load())),
                *_store_keywords(), ast.keyword("html", _name("jp_failed"))]
    doc = f"After pipeline '{pipeline.name}' ends: the executed notebooks of its failed stages, as HTML."
    return _build(component_name(pipeline, "failed_stages"), f"{pipeline.name}:report", args, "report_failures",
                  keywords, doc)


def component(built: StageFunction, image: str, packages: list[str] | None = None,
              pip_index_urls: list[str] | None = None):
    """The kfp ``PythonComponent`` of a built function on ``image`` (which has jupyter-pipeline and
    kfp), installing ``packages`` from ``pip_index_urls`` (the first replaces PyPI) when it starts."""
    from kfp import dsl

    return dsl.component(built.func, base_image=image, install_kfp_package=False,
                         packages_to_install=list(packages or []) or None,
                         pip_index_urls=list(pip_index_urls or []) or None)


def check_function(pipeline: Pipeline, stage: Stage) -> StageFunction:
    """The task that evaluates ``stage``'s condition when it needs ``or`` (which a chain of ``dsl.If``
    cannot say): one typed input per name it reads, a boolean output that the stage's block tests."""
    from ..notebook.condition import parse

    condition = parse(stage.options.condition)
    params = {p.name: p for p in pipeline.parameters}
    producers = {name: producer for name, producer in stage.inputs}
    kinds = {name: kind for up in pipeline.stages if up.name in producers.values() for name, kind in up.scalars}
    args = [_arg(name, _ANNOTATIONS[KFP_TYPES[params[name].type]] if name in params else kinds[name])
            for name in condition.names]
    keywords = [ast.keyword("stage", ast.Constant(stage.name)), ast.keyword("condition", ast.Constant(condition.text)),
                ast.keyword("values", ast.Dict(keys=[ast.Constant(n) for n in condition.names],
                                               values=[_name(n) for n in condition.names]))]
    doc = f"Whether stage '{stage.name}' of pipeline '{pipeline.name}' runs: if:{condition}."
    return _build("check_" + function_name(stage.name), f"{pipeline.name}:check:{stage.name}", args,
                  "check_condition", keywords, doc, returns="bool")
