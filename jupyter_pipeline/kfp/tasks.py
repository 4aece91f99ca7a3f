"""The tasks of a compiled pipeline: one per stage (more for a ``map:`` stage), wired by location.

Each stage task returns its location (the run folder holding its results) and every stage that
loads its variables receives that location as an input: that is how upstream values reach a
stage, and why a task KFP takes from its cache still feeds its downstream stages. No input of a
stage task changes from one run to the next; ``cache:off`` turns KFP's cache off for the task.
"""

from __future__ import annotations

import ast
import json

import nbformat

from ..notebook import analysis
from ..notebook.pipeline import Pipeline, Stage
from ..stage.notebook import stage_notebook
from .component import (
    RUN_INPUTS, claim_input, component, data_producers, gather_function, plan_function, stage_function, upstream_input,
)
from .placement import Placement, apply, helper

#: KFP's placeholder for the job id, resolved per run by the backend (and by kfp.local). Only the
#: bookkeeping tasks, which are never cached, take it.
JOB_ID_PLACEHOLDER = "{{$.pipeline_job_uuid}}"
#: The output of a stage, plan or gather task that holds its location.
LOCATION = "Output"


def notebook_json(pipeline: Pipeline, stage: Stage, packages: list[str] | None = None,
                  pip_index_urls: list[str] | None = None) -> str:
    """The stage notebook as compact, key-sorted JSON (stable across runs, so goldens can pin it).
    A ``workers:`` stage's replicas run in pods of their own, so its launch metadata also says which
    ``packages`` (from which indexes) they install, as the stage's component does."""
    nb = stage_notebook(pipeline, stage)
    gang = nb.metadata["jupyter_pipeline"].get("gang")
    if gang is not None and packages:
        gang["install"] = {"packages": list(packages), "pip_index_urls": list(pip_index_urls or [])}
    for cell in nb.cells:
        cell.pop("id", None)  # random per generation
    nb.nbformat_minor = 4  # 4.5 requires cell ids
    nbformat.validate(nb)
    text = json.dumps(nb, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    # kfp.local's SubprocessRunner rewrites every "python3" in a task's command line to its own
    # interpreter path, kernel names and user code included; a JSON escape hides the word from it
    # and reads back identically everywhere.
    return text.replace("python3", "\\u0070ython3")


def registers_models(pipeline: Pipeline, stage: Stage) -> bool:
    """Whether the stage's code (or the setup code) calls ``log_model``: its task gets an ``Output[Model]``."""
    for index in list(pipeline.setup_cells_of(stage)) + list(stage.cells):
        try:
            tree = ast.parse(analysis.to_python(pipeline.cells[index].source))
        except SyntaxError:
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and getattr(node.func, "id", getattr(node.func, "attr", None)) == "log_model":
                return True
    return False


class StageTasks:
    """Adds the tasks of stages to the ``@dsl.pipeline`` body being built, one stage at a time.

    A plain stage is one task. A ``map:`` stage is a *plan* task listing its items at run time,
    a ``dsl.ParallelFor`` over them (``parallelism:`` as its limit) running the stage's task once
    per item (never from KFP's cache: the gather reads the items' results in the run's folder), and
    a *gather* task after the loop that publishes the outputs as lists (fan-in); downstream stages
    depend on the gather task.
    """

    def __init__(self, pipeline: Pipeline, ordered: list[Stage], image: str, placement: Placement | None = None,
                 packages: dict[str, list[str]] | None = None, pip_index_urls: list[str] | None = None,
                 files_key: str = ""):
        self.pipeline, self.ordered, self.image = pipeline, ordered, image
        self.placement = placement or Placement()
        self.files_key = files_key
        self.claims: dict | None = None  # claim names of the per-run volumes, once created (compiler)
        # A workers: stage's replicas are not the task's pod: its launcher takes the claims' names to mount them.
        per_run = tuple(v["name"] for v in self.placement.volumes if v.get("new"))
        self.components = {
            s.name: component(stage_function(pipeline, s, s.options.timeout or 0, registers_models(pipeline, s),
                                             per_run if s.options.workers > 1 else ()),
                              s.options.image or image, (packages or {}).get(s.name), pip_index_urls)
            for s in ordered
        }
        self.notebooks = {s.name: notebook_json(pipeline, s, (packages or {}).get(s.name), pip_index_urls)
                          for s in ordered}
        self.plans, self.gathers = {}, {}
        for s in ordered:
            if s.options.map_var:
                self.plans[s.name] = component(plan_function(pipeline, s), image)
                self.gathers[s.name] = component(gather_function(pipeline, s), image)

    @staticmethod
    def store_arguments(values: dict) -> dict:
        """The inputs of a bookkeeping task: the store, and the run folder when one is explicit."""
        return {"jp_store": values["jp_store"], "jp_s3_endpoint": values["jp_s3_endpoint"],
                "jp_run_id": values.get("jp_run_id", ""), "jp_job_id": JOB_ID_PLACEHOLDER}

    def add(self, stage: Stage, values: dict, tasks: dict, after: list = (), variant=None, swept: tuple = (),
            outside: frozenset = frozenset()):
        """Add ``stage`` with run inputs from ``values`` (channels by input name) and upstream
        locations from ``tasks`` (the tasks added so far, by stage); it also waits for ``after``.
        Returns the task downstream stages wait for. Inside a sweep's variant loop, ``variant`` is
        the loop's item, ``swept`` the names of the parameters it sets and ``outside`` the stages
        before the loop, whose locations come in the item."""
        upstream = {}
        for p in data_producers(stage):
            name = upstream_input(p)
            upstream[name] = getattr(variant, name) if p in outside else tasks[p].outputs[LOCATION]
        waits = [tasks[up] for up in stage.depends_on if up in tasks and up not in outside] + list(after)
        if not stage.options.map_var:
            task = self._stage_task(stage, values, upstream)
            task.after(*waits)
            return task
        from kfp import dsl

        o = stage.options
        source = {} if dict(stage.inputs).get(o.map_var) else {o.map_var: values[o.map_var]}
        store = self.store_arguments(values)
        plan = self.plans[stage.name](**source, **upstream, **store, jp_variant={} if variant is None else variant)
        plan.after(*waits)
        helper(plan, f"{stage.name} (items)", self.placement)
        with dsl.ParallelFor(plan.outputs[LOCATION], parallelism=o.parallelism or 0) as each:
            # Swept values and the variant's run id come from the item itself: see entry.plan_items.
            inner = {**values, "jp_run_id": each.run_id} if variant is not None else dict(values)
            for name in swept:
                inner[name] = getattr(each, name)
            task = self._stage_task(stage, inner, {name: getattr(each, name) for name in upstream}, item=each.item)
            task.set_caching_options(False)
        gather = self.gathers[stage.name](jp_items=plan.outputs[LOCATION], **store)
        gather.after(task)
        helper(gather, f"{stage.name} (gather)", self.placement)
        return gather

    def _stage_task(self, stage: Stage, values: dict, upstream: dict, item=None):
        arguments = {p: values[p] for p in stage.parameters if p in values}
        arguments.update({name: values[name] for name in RUN_INPUTS if name in values})
        arguments.update(jp_notebook=self.notebooks[stage.name], jp_files=self.files_key, **upstream)
        if "jp_run_id" in values:  # a sweep variant's run folder (its loop item's)
            arguments["jp_run_id"] = values["jp_run_id"]
        if item is not None:
            arguments["jp_item"] = item
        if stage.options.workers > 1:
            arguments.update({claim_input(volume): name for volume, name in (self.claims or {}).items()})
        task = self.components[stage.name](**arguments)
        apply(task, stage, self.placement, self.claims)
        return task


__all__ = ["StageTasks", "notebook_json", "JOB_ID_PLACEHOLDER", "LOCATION"]
