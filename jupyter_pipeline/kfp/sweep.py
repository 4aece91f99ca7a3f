"""Sweeps on Kubeflow: one compiled pipeline runs every variant, in a ``dsl.ParallelFor``.

The stages whose content key (:mod:`jupyter_pipeline.stagecache`) is the same in every variant
(:func:`jupyter_pipeline.plan.shared_stages`) run once, before the loop, in the first variant's run
folder. The loop runs once per variant
(``max_parallel`` as its parallelism): a *link* task gives the variant's run the shared stages'
results (output indexes pointing at the first variant's files, as the local sweep does), then
the variant's own stages run with the swept parameters taken from the loop item. Each variant
keeps its own run folder and record (``sweep_id`` set), so ``runs`` and the sweep table read
them like the local runner's.

A stage shared by only some of the variants runs in each variant: one loop cannot express "once
per distinct key".
"""

from __future__ import annotations

import inspect
import warnings

from ..exceptions import TargetError
from ..notebook import parameters as params_mod
from ..notebook.pipeline import Pipeline
from ..plan import shared_stages, variants
from ..store.records import SweepResult, new_run_id, sweep_key
from ..store.base import open_store
from .compiler import (
    CompileOptions, as_pipeline, compile_graph, parameter_arguments, pipeline_signature, stage_tasks,
)
from .component import check_parameter_names, component, link_function, upstream_input, variants_function
from .placement import helper
from .tasks import LOCATION

VARIANTS_INPUT = "jp_variants"


def build_sweep(pipeline: Pipeline, swept: list[str], shared: list[str], options: CompileOptions | None = None,
                max_parallel: int | None = None):
    """The ``@dsl.pipeline`` of a sweep: shared stages, then a loop over ``jp_variants``.

    ``jp_variants`` is a list of ``{"run_id": ..., <swept parameter>: value, ...}``; the shared
    stages run in the process's run folder (the first variant's, see ``entry.run_folder``).
    """
    pipeline.require_valid()
    check_parameter_names(pipeline)
    conditional = [s.name for s in pipeline.stages if s.options.condition]
    if conditional:
        raise TargetError(f"{pipeline.path}: stage(s) {', '.join(conditional)} have an if: condition, which Kubeflow "
                          "sweeps do not compile yet; sweep with --target local, or run each variant on its own")
    options = options or CompileOptions.for_pipeline(pipeline)
    base = pipeline_signature(pipeline, options)
    signature = base.replace(parameters=[*base.parameters.values(), inspect.Parameter(
        VARIANTS_INPUT, inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=list, default=[])])
    names = list(signature.parameters)
    stages = stage_tasks(pipeline, options)
    link = component(link_function(pipeline, shared), stages.image)
    expand = component(variants_function(pipeline, shared), stages.image)

    def body(*channels):
        from kfp import dsl

        values = dict(zip(names, channels))
        tasks = {}
        for stage in stages.ordered:
            if stage.name in shared:
                tasks[stage.name] = stages.add(stage, values, tasks)
        # The shared stages' locations enter the loop in its items (see entry.expand_variants).
        items = expand(jp_variants=values[VARIANTS_INPUT], **{upstream_input(s): tasks[s].outputs[LOCATION]
                                                               for s in shared})
        helper(items, "variants", stages.placement)
        with dsl.ParallelFor(items.outputs[LOCATION], parallelism=max_parallel or 0) as variant:
            inner = {**values, "jp_run_id": variant.run_id, **{name: getattr(variant, name) for name in swept}}
            start = link(**{upstream_input(s): getattr(variant, upstream_input(s)) for s in shared},
                         **stages.store_arguments(inner))
            helper(start, "variant", stages.placement)
            for stage in stages.ordered:
                if stage.name not in shared:
                    tasks[stage.name] = stages.add(stage, inner, tasks, after=[start], variant=variant,
                                                   swept=tuple(swept), outside=frozenset(shared))

    summary = (f"a sweep over {', '.join(swept)}: {len(shared)} shared stage(s), "
               f"{len(pipeline.stages) - len(shared)} per variant")
    return as_pipeline(body, signature, pipeline, options, summary)


def compile_sweep(pipeline: Pipeline, swept: list[str], shared: list[str], options: CompileOptions | None = None,
                  max_parallel: int | None = None) -> str:
    """The YAML of :func:`build_sweep`."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # kfp's notice about its default base image
        graph = build_sweep(pipeline, swept, shared, options, max_parallel)
    return compile_graph(graph, pipeline)


def variant_arguments(pipeline: Pipeline, run_ids: list[str], values: list[dict], swept: list[str]) -> list[dict]:
    """The ``jp_variants`` argument: each variant's run id and swept values, typed as KFP wants them."""
    out = []
    for run_id, v in zip(run_ids, values):
        typed = parameter_arguments(pipeline, {name: v[name] for name in swept})
        out.append({"run_id": run_id, **typed})
    return out


def run_sweep_kfp_local(pipeline: Pipeline, grid: dict[str, list], store, options: dict | None = None,
                        on_event=None) -> SweepResult:
    """Run a sweep as one compiled pipeline with kfp.local; the variants' records are the result's runs."""
    from .local import execute, local_options, new_record, snapshot

    options = options or {}
    on_event = on_event or (lambda kind, record, stage: None)
    pipeline.require_valid()
    goal = options.get("goal") or "max"
    if goal not in ("max", "min"):
        from ..exceptions import ParameterError

        raise ParameterError(f"--goal must be max or min, not {goal!r}")
    store = open_store(store)
    store.check()
    combos = variants(pipeline, grid, options.get("fixed"), options.get("sample"))
    values = [params_mod.resolve(pipeline, c) for c in combos]
    swept = list(grid)
    sweep_id = options.get("sweep_id") or new_run_id(f"{pipeline.name}-sweep")
    records = [new_record(pipeline, store, v, sweep_id=sweep_id) for v in values]
    shared = shared_stages(pipeline, values)
    yaml_text = compile_sweep(pipeline, swept, shared, local_options(pipeline, store), options.get("max_parallel"))
    store.put_bytes(sweep_key(sweep_id, "pipeline.yaml"), yaml_text.encode())
    for record in records:
        snapshot(store, pipeline, record.run_id, yaml_text)
    arguments = parameter_arguments(pipeline, values[0])  # shared stages see the same values in every variant
    arguments[VARIANTS_INPUT] = variant_arguments(pipeline, [r.run_id for r in records], values, swept)
    execute(yaml_text, arguments, store, records, pipeline, on_event, run_id=records[0].run_id)
    result = SweepResult(sweep_id, pipeline.path, options.get("metric"), goal, runs=records, swept=swept)
    store.put_json(sweep_key(sweep_id), result.to_json())
    return result


__all__ = ["build_sweep", "compile_sweep", "run_sweep_kfp_local", "shared_stages"]
