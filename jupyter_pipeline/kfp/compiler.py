"""Compile a :class:`~jupyter_pipeline.pipeline.Pipeline` to a Kubeflow Pipelines v2 spec (IR YAML).

Built with the kfp v2 DSL and ``kfp.compiler``: one lightweight Python component per stage
(:mod:`.component`), tasks ordered by the pipeline's edges, the notebook's parameters as typed
pipeline parameters, and per-stage placement (:mod:`.placement`). Each task gets its stage
notebook as a constant argument, so the YAML alone is the complete pipeline.
"""

from __future__ import annotations

import inspect
import json
import os
import re
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path

import nbformat

from ..exceptions import TargetError
from ..pipeline import Pipeline, Stage
from ..settings import DEFAULT_IMAGE, Settings
from ..stagebook import stage_notebook
from .entry import NONE_PREFIX
from .component import (
    KFP_TYPES, RUN_INPUTS, check_parameter_names, component, gather_function, plan_function, stage_component,
)
from .placement import DEFAULT_S3_ENDPOINT, Placement, apply, helper

#: Store the stages use on the cluster unless the notebook's ``kfp_store`` (or an s3:// ``store``)
#: setting says otherwise: a bucket on KFP's own MinIO.
DEFAULT_CLUSTER_STORE = "s3://jupyter-pipeline"
#: KFP's placeholder for the job id, resolved per run by the backend (and by kfp.local).
JOB_ID_PLACEHOLDER = "{{$.pipeline_job_uuid}}"


@dataclass(frozen=True)
class CompileOptions:
    """What the compiled spec needs beyond the notebook's cells."""

    name: str | None = None
    image: str | None = None
    image_source: str = "flag"  # where the image came from (a source of jupyter_pipeline.settings)
    store: str | None = None  # default of the jp_store pipeline parameter
    s3_endpoint: str | None = None  # default of jp_s3_endpoint
    placement: Placement | None = None
    description: str | None = None

    @classmethod
    def for_pipeline(cls, pipeline: Pipeline, settings: Settings | None = None, **overrides) -> "CompileOptions":
        """Options from ``settings`` (default: the notebook's own and the environment's), then
        ``overrides`` (None values ignored)."""
        s = pipeline.settings
        settings = settings or Settings(notebook=s)
        store = settings.get("kfp_store")
        if not store:
            store = settings.get("store")
            store = store if str(store).startswith("s3://") else DEFAULT_CLUSTER_STORE
        image = settings.resolve("image")
        values = dict(
            name=s.get("name") or pipeline.name,
            image=image.value,
            image_source=image.source,
            store=store,
            s3_endpoint=s.get("s3_endpoint", DEFAULT_S3_ENDPOINT),
            placement=Placement.from_settings(s),
        )
        values.update({k: v for k, v in overrides.items() if v is not None})
        if overrides.get("image"):
            values["image_source"] = "flag"
        return cls(**values)


def kfp_name(name: str) -> str:
    """A pipeline name KFP accepts: lower case, digits and '-'."""
    slug = re.sub(r"[^a-z0-9-]+", "-", name.lower()).strip("-")[:128]
    return slug or "pipeline"


def topological(pipeline: Pipeline) -> list[Stage]:
    """Stages with every upstream stage first, otherwise in notebook order."""
    done: dict[str, Stage] = {}
    by_name = {s.name: s for s in pipeline.stages}

    def visit(stage: Stage, path: tuple) -> None:
        if stage.name in done:
            return
        if stage.name in path:
            raise TargetError(f"{pipeline.path}: stages {' -> '.join(path + (stage.name,))} form a cycle.")
        for up in stage.depends_on:
            visit(by_name[up], path + (stage.name,))
        done[stage.name] = stage

    for stage in pipeline.stages:
        visit(stage, ())
    return list(done.values())


def notebook_json(pipeline: Pipeline, stage: Stage) -> str:
    """The stage notebook as compact, key-sorted JSON (stable across runs, so goldens can pin it)."""
    nb = stage_notebook(pipeline, stage)
    for cell in nb.cells:
        cell.pop("id", None)  # random per generation
    nb.nbformat_minor = 4  # 4.5 requires cell ids
    nbformat.validate(nb)
    text = json.dumps(nb, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    # kfp.local's SubprocessRunner rewrites every "python3" in a task's command line to its own
    # interpreter path, kernel names and user code included; a JSON escape hides the word from it
    # and reads back identically everywhere.
    return text.replace("python3", "\\u0070ython3")


def pipeline_signature(pipeline: Pipeline, options: CompileOptions) -> inspect.Signature:
    params = []
    for p in pipeline.parameters:
        annotation = KFP_TYPES[p.type]
        default = list(p.default) if p.type == "tuple" else p.default
        if p.type == "NoneType":
            default = NONE_PREFIX + "null"
        params.append(inspect.Parameter(p.name, inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=annotation,
                                        default=default))
    run_defaults = {"jp_store": options.store, "jp_run_id": "", "jp_s3_endpoint": options.s3_endpoint or "",
                    "jp_workdir": ""}
    for name, default in run_defaults.items():
        params.append(inspect.Parameter(name, inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=str,
                                        default=default))
    return inspect.Signature(params, return_annotation=None)


class StageTasks:
    """Adds the tasks of stages to the ``@dsl.pipeline`` body being built, one stage at a time.

    A plain stage is one task. A ``map:`` stage is a *plan* task listing its items at run time,
    a ``dsl.ParallelFor`` over them (``parallelism:`` as its limit) running the stage's task once
    per item, and a *gather* task after the loop that publishes the outputs as lists (fan-in);
    downstream stages depend on the gather task.
    """

    def __init__(self, pipeline: Pipeline, options: CompileOptions):
        self.pipeline, self.options = pipeline, options
        self.placement = options.placement or Placement()
        self.image = options.image or DEFAULT_IMAGE
        self.ordered = topological(pipeline)
        self.components = {
            s.name: stage_component(pipeline, s, s.options.image or self.image, s.options.timeout or 0)
            for s in self.ordered
        }
        self.notebooks = {s.name: notebook_json(pipeline, s) for s in self.ordered}
        self.plans, self.gathers = {}, {}
        for s in self.ordered:
            if s.options.map_var:
                self.plans[s.name] = component(plan_function(pipeline, s), self.image)
                self.gathers[s.name] = component(gather_function(pipeline, s), self.image)

    def add(self, stage: Stage, values: dict, after: list, variant=None, swept: tuple = ()):
        """Add ``stage`` with run inputs from ``values`` (channels by input name); returns the task
        downstream stages wait for. Inside a sweep's variant loop, ``variant`` is the loop's item
        and ``swept`` the names of the parameters it sets."""
        store = {name: values[name] for name in ("jp_store", "jp_run_id", "jp_s3_endpoint")}
        store["jp_job_id"] = JOB_ID_PLACEHOLDER
        if not stage.options.map_var:
            task = self._stage_task(stage, values)
            task.after(*after)
            return task
        from kfp import dsl

        o = stage.options
        var_argument = {o.map_var: values[o.map_var]} if o.map_var not in dict(stage.inputs) else {}
        plan = self.plans[stage.name](**var_argument, **store, jp_variant={} if variant is None else variant)
        plan.after(*after)
        helper(plan, f"{stage.name} (items)", self.placement)
        with dsl.ParallelFor(plan.output, parallelism=o.parallelism or 0) as each:
            # Swept values and the variant's run id come from the item itself: see entry.plan_items.
            inner = {**values, "jp_run_id": each.run_id} if variant is not None else dict(values)
            for name in swept:
                inner[name] = getattr(each, name)
            task = self._stage_task(stage, inner, item=each.item)
        gather = self.gathers[stage.name](jp_items=plan.output, **store)
        gather.after(task)
        helper(gather, f"{stage.name} (gather)", self.placement)
        return gather

    def _stage_task(self, stage: Stage, values: dict, item=None):
        arguments = {p: values[p] for p in stage.parameters if p in values}
        arguments.update({name: values[name] for name in RUN_INPUTS if name in values})
        arguments["jp_notebook"] = self.notebooks[stage.name]
        arguments["jp_job_id"] = JOB_ID_PLACEHOLDER
        if item is not None:
            arguments["jp_item"] = item
        task = self.components[stage.name](**arguments)
        apply(task, stage, self.placement)
        return task


def build(pipeline: Pipeline, options: CompileOptions | None = None):
    """The kfp ``GraphComponent`` (a ``@dsl.pipeline``) of ``pipeline``."""
    pipeline.require_valid()
    check_parameter_names(pipeline)
    options = options or CompileOptions.for_pipeline(pipeline)
    signature = pipeline_signature(pipeline, options)
    names = list(signature.parameters)
    stages = StageTasks(pipeline, options)

    def body(*channels):
        values = dict(zip(names, channels))
        tasks = {}
        for stage in stages.ordered:
            tasks[stage.name] = stages.add(stage, values, [tasks[up] for up in stage.depends_on])

    return as_pipeline(body, signature, pipeline, options)


def as_pipeline(body, signature: inspect.Signature, pipeline: Pipeline, options: CompileOptions,
                summary: str | None = None):
    """``body`` with ``signature`` as the ``@dsl.pipeline`` of ``pipeline``."""
    from kfp import dsl

    body.__signature__ = signature
    body.__name__ = kfp_name(options.name or pipeline.name).replace("-", "_")
    body.__doc__ = options.description or (
        f"Pipeline '{pipeline.name}' compiled by jupyter-pipeline from {Path(pipeline.path).name}: "
        f"{summary or f'{len(pipeline.stages)} stage(s)'}."
    )
    return dsl.pipeline(name=kfp_name(options.name or pipeline.name), description=body.__doc__)(body)


def compile_pipeline(pipeline: Pipeline, path: str | os.PathLike | None = None,
                     options: CompileOptions | None = None) -> str:
    """Compile ``pipeline``; write the YAML to ``path`` when given and return it."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # kfp's notice about its default base image
        graph = build(pipeline, options)
    return compile_graph(graph, pipeline, path)


def compile_graph(graph, pipeline: Pipeline, path: str | os.PathLike | None = None) -> str:
    """The YAML of a built ``@dsl.pipeline``; written to ``path`` too when given."""
    from kfp import compiler

    with tempfile.TemporaryDirectory(prefix="jp-kfp-") as tmp:
        target = Path(tmp) / "pipeline.yaml"
        try:
            compiler.Compiler().compile(pipeline_func=graph, package_path=str(target))
        except (ValueError, TypeError) as exc:
            raise TargetError(f"The kfp compiler rejected {pipeline.path}: {exc}") from None
        text = target.read_text()
    if path is not None:
        Path(path).write_text(text)
    return text


def parameter_arguments(pipeline: Pipeline, values: dict) -> dict:
    """Run arguments for the compiled pipeline's parameters (``None``-default ones travel as JSON text)."""
    out = {}
    for p in pipeline.parameters:
        if p.name not in values:
            continue
        value = values[p.name]
        if p.type == "NoneType":
            value = NONE_PREFIX + json.dumps(value)
        elif p.type == "tuple":
            value = list(value)
        if value is not None:
            out[p.name] = value
    return out


__all__ = ["CompileOptions", "DEFAULT_IMAGE", "build", "compile_pipeline", "parameter_arguments", "kfp_name"]
