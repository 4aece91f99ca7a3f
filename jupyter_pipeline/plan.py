"""Planning: which stages of a run execute, which take results already computed, and why.

One module answers it for every way a run starts, on every target:

- a plain run executes every stage (:func:`fresh`);
- ``--incremental`` reuses a stage whose content key (:mod:`jupyter_pipeline.stagecache`) an
  earlier succeeded run of the same notebook already has, and says why every other stage runs
  (:func:`incremental`);
- ``--from-stage NAME`` (``POST runs {"from_stage"}``) runs NAME and everything downstream, and reuses
  the stages upstream from the latest run with the same key, as ``--incremental`` would (:func:`rerun_from`);
- ``resume`` keeps the stages that succeeded, unless a stage it re-runs needs a variable they did
  not save, and re-runs everything downstream of a re-run stage (:func:`resume`);
- a sweep runs one variant per combination of swept values (:func:`variants`); on Kubeflow the
  stages whose key is the same in every variant run once, before the variants (:func:`shared_stages`).
  The local sweep shares identical stages while it runs, through
  :class:`~jupyter_pipeline.stagecache.StageCache`: whichever variant reaches a key first computes
  it, which no plan made beforehand can say.

A plan is plain data built from the pipeline and run records. The functions here read nothing
themselves: callers pass what the store holds (earlier runs, saved variable names), so plans are
tested without kernels or stores.
"""

from __future__ import annotations

import enum
import fnmatch
import itertools
import random
from dataclasses import dataclass, field
from typing import Callable

from .notebook import parameters as params_mod
from .notebook.pipeline import Pipeline
from .store.records import RunRecord, StageRecord, StageState
from .stagecache import stage_keys, why_it_runs


class Action(str, enum.Enum):
    """What a run does with one stage."""

    RUN = "run"  # execute it
    REUSE = "reuse"  # take an earlier run's results (--incremental)
    KEEP = "keep"  # keep the results this run already has (resume)


@dataclass(frozen=True)
class Decision:
    """The plan for one stage: its action, why, and where reused results are."""

    action: Action
    #: With ``--incremental`` the run record's ``why`` for the stage, word for word; a resume's
    #: reasons are the plan's alone (a resumed run's record names only the stages that re-run).
    why: str | None = None
    #: REUSE: the run whose output index this run points at, that run's record of the stage, and the
    #: run that computed the values (the source's own ``reused_from``, else the source).
    source_run: str | None = None
    earlier: StageRecord | None = None
    reused_from: str | None = None


@dataclass(frozen=True)
class Plan:
    """A decision per stage of the pipeline, in the pipeline's order."""

    decisions: dict[str, Decision] = field(default_factory=dict)

    def __getitem__(self, stage: str) -> Decision:
        return self.decisions[stage]

    @property
    def to_run(self) -> list[str]:
        """The stages to execute, in the pipeline's order."""
        return [name for name, d in self.decisions.items() if d.action == Action.RUN]

    def reuses(self, stage: str) -> bool:
        """Whether ``stage`` takes an earlier run's results."""
        return stage in self.decisions and self.decisions[stage].action == Action.REUSE


def fresh(pipeline: Pipeline) -> Plan:
    """A plain run: every stage runs (the record gives no reason: nothing else was considered)."""
    return Plan({s.name: Decision(Action.RUN) for s in pipeline.stages})


def incremental(pipeline: Pipeline, fingerprints: dict[str, dict], earlier: list[RunRecord],
                has_outputs: Callable[[str, str], bool]) -> Plan:
    """``--incremental``: reuse each stage an earlier run (``earlier``, newest first) computed with the
    same key, if it saved its outputs (``has_outputs(run_id, stage)``); say why the others run."""
    decisions: dict[str, Decision] = {}
    for stage in pipeline.stages:
        fp = fingerprints[stage.name]
        if not stage.options.cache:
            decisions[stage.name] = Decision(Action.RUN, "tagged cache:off")
            continue
        match = next((r for r in earlier if (s := r.stages.get(stage.name)) and s.status == StageState.SUCCEEDED
                      and s.cache_key == fp["key"]
                      and (not (stage.outputs or stage.files_out) or has_outputs(r.run_id, stage.name))),
                     None)
        if match is not None:
            rec = match.stages[stage.name]
            decisions[stage.name] = Decision(Action.REUSE, f"unchanged since run {match.run_id}", match.run_id, rec,
                                             rec.reused_from or match.run_id)
        else:
            last = next((r.stages[stage.name] for r in earlier if stage.name in r.stages), None)
            decisions[stage.name] = Decision(Action.RUN, why_it_runs(fp, last))
    return Plan(decisions)


def rerun_from(pipeline: Pipeline, base: Plan, stage: str) -> Plan:
    """``base`` (an :func:`incremental` plan) with ``stage`` and every stage downstream of it run, whatever
    earlier runs hold: the user asked for them. Stages upstream keep ``base``'s decision."""
    pipeline.stage(stage)  # an unknown name: a one-paragraph error naming the stages
    why = {stage: "re-run from here"}
    changed = True
    while changed:
        changed = False
        for up, down in pipeline.edges:
            if up in why and down not in why:
                why[down] = f"downstream of {stage}, which re-runs"
                changed = True
    return Plan({name: Decision(Action.RUN, why[name]) if name in why else decision
                 for name, decision in base.decisions.items()})


def resume(pipeline: Pipeline, record: RunRecord, saved_outputs: Callable[[str], set[str]]) -> Plan:
    """Resuming ``record``: re-run the stages that did not succeed, keep the others.

    A kept stage must have saved every variable a re-run stage now needs from it
    (``saved_outputs(stage)``: the names it saved), or it re-runs too; and every stage downstream of
    a re-run stage re-runs.
    """
    why: dict[str, str] = {}
    for stage in pipeline.stages:
        old = record.stages.get(stage.name)
        if old is None:
            why[stage.name] = f"run {record.run_id} has no record of it"
        elif old.status != StageState.SUCCEEDED:
            why[stage.name] = f"it did not succeed ({old.status.value})"
    for stage in pipeline.stages:
        if stage.name not in why:
            continue
        for var, producer in stage.inputs:
            if producer not in why and var not in saved_outputs(producer):
                why[producer] = f"stage {stage.name} needs {var}, which it did not save"
        for pattern, producer in stage.files_in:
            if producer not in why and not fnmatch.filter(saved_outputs(producer), pattern):
                why[producer] = f"stage {stage.name} needs the file {pattern}, which it did not pass on"
    changed = True
    while changed:  # everything downstream of a re-run stage re-runs too
        changed = False
        for up, down in pipeline.edges:
            if up in why and down not in why:
                why[down] = f"upstream stage {up} re-runs"
                changed = True
    return Plan({s.name: Decision(Action.RUN, why[s.name]) if s.name in why
                 else Decision(Action.KEEP, f"it succeeded in run {record.run_id}") for s in pipeline.stages})


def variants(pipeline: Pipeline, grid: dict[str, list], fixed: dict | None = None,
             sample: int | None = None, seed: int = 0) -> list[dict]:
    """Parameter overrides of each variant of a sweep: the grid's product, or ``sample`` of it at random."""
    typed = {name: [params_mod.coerce(pipeline, name, v) for v in values] for name, values in grid.items()}
    combos = [dict(zip(typed, values)) for values in itertools.product(*typed.values())]
    if sample is not None and sample < len(combos):
        combos = random.Random(seed).sample(combos, sample)
    return [{**(fixed or {}), **combo} for combo in combos]


def shared_stages(pipeline: Pipeline, values: list[dict]) -> list[str]:
    """Stages computed once for all variants (parameter ``values`` each): same key everywhere,
    cacheable, and every stage upstream shared too. In dependency order."""
    keys = [stage_keys(pipeline, v) for v in values]
    shared: list[str] = []
    for stage in pipeline.dependency_order():
        same = all(k[stage.name] == keys[0][stage.name] for k in keys)
        if same and stage.options.cache and all(up in shared for up in stage.depends_on):
            shared.append(stage.name)
    return shared
