"""Run targets: where a pipeline runs (``local``, ``kfp-local``, ``kfp``, or one a third party adds).

A target is a :class:`Target` object: ``run`` is the one method a new target must implement;
``resume``, ``cancel``, ``status`` and ``sweep`` say plainly what a target cannot do unless it
overrides them. Every front (CLI, magics, Jupyter server) finds targets through :data:`targets`.

Targets are found three ways, in this order: registered in code (``targets.register(name,
instance)``), built in (:data:`BUILTIN_TARGETS`, imported on first use so the CLI stays fast and
kfp is only imported when used), and the ``jupyter_pipeline.targets`` entry-point group, whose
entries name a :class:`Target` subclass or instance::

    [project.entry-points."jupyter_pipeline.targets"]
    slurm = "my_package.slurm:SlurmTarget"
"""

from __future__ import annotations

import importlib
import logging
import threading
from importlib.metadata import entry_points
from typing import TYPE_CHECKING

from .exceptions import TargetError, UnknownKeyError
from .registry import Registry

if TYPE_CHECKING:
    from .notebook.pipeline import Pipeline
    from .store.records import RunRecord
    from .store.base import Store

#: The entry-point group third-party packages register targets under.
ENTRY_POINT_GROUP = "jupyter_pipeline.targets"

#: The targets this package ships, as ``module:attribute`` (the same spelling as an entry point).
BUILTIN_TARGETS = {
    "local": "jupyter_pipeline.targets:LocalTarget",
    "kfp-local": "jupyter_pipeline.kfp:KfpLocalTarget",
    "kfp": "jupyter_pipeline.kfp:KfpTarget",
}

log = logging.getLogger(__name__)


class Target:
    """Where runs go. Options are the front's settings as a dict (``workers``, ``run_id``, ``kfp_host``...)."""

    #: The name users pass as ``--target`` (set when registered).
    name = ""
    #: How the Jupyter extension's publish dialog names the target.
    label = ""
    #: True if the target cannot work until a Kubeflow Pipelines host is configured.
    needs_kfp_host = False
    #: True if ``cancel`` can stop a run this process drives.
    can_cancel = False
    #: True if stages run in a container image the target pulls (the publish dialog then shows the
    #: image and its warnings).
    uses_image = False
    #: True if a process on this machine drives the target's runs under a lease (:mod:`.local.lease`):
    #: a run whose process is gone then reads ``interrupted``. A run elsewhere outlives its submitter.
    leases_runs = False
    #: True if ``run`` takes ``options["incremental"]`` (reuse unchanged stages of earlier runs) and
    #: ``options["from_stage"]`` (run that stage and those downstream, reuse those upstream).
    reuses_stages = False

    def prepare(self) -> None:
        """Called by a front as soon as it knows the target, before the notebook is read: a place
        to start slow preparations (the local target starts its warm stage processes here)."""

    def lookup(self, store: Store, run_id: str, options: dict) -> RunRecord:
        """The current record of ``run_id`` (``runs RUN --target NAME``); by default the store's."""
        from .store.records import load_run

        return run_status(store, load_run(store, run_id), options)

    def run(self, pipeline: Pipeline, parameters: dict | None, store: Store, options: dict,
            on_event=None) -> RunRecord:
        """Run ``pipeline`` (with ``options["run_id"]`` as its id when given); return its record."""
        raise NotImplementedError

    def resume(self, store: Store, run_id: str, options: dict, on_event=None) -> RunRecord:
        """Re-run the stages of ``run_id`` that did not succeed, reusing the others."""
        raise TargetError(f"run {run_id} ran on target '{self.name}'; only local runs can be resumed here")

    def cancel(self, store: Store, run_id: str) -> None:
        """Stop ``run_id``, a run this process drives; its record ends ``cancelled``."""
        raise TargetError(f"runs on target '{self.name}' cannot be cancelled from here")

    def status(self, store: Store, record: RunRecord, options: dict) -> RunRecord:
        """The run's current state: its record, marked interrupted if the target leases its runs and
        the process driving it is gone."""
        from .local.lease import effective_status

        return effective_status(store, record) if self.leases_runs else record

    def sweep(self, pipeline: Pipeline, grid: dict, store: Store, options: dict, on_event=None):
        """Run one variant per combination of ``grid``'s values (options: ``fixed``, ``metric``,
        ``goal``, ``sample``, ``max_parallel``, ``workers``, ``sweep_id``); return a ``SweepResult``."""
        raise TargetError(f"sweeps cannot run on target '{self.name}'")

    def to_json(self) -> dict:
        return {"name": self.name, "label": self.label or self.name, "needs_kfp_host": self.needs_kfp_host,
                "uses_image": self.uses_image, "reuses_stages": self.reuses_stages}


class LocalTarget(Target):
    """Stages as papermill notebooks in kernels on this machine (:class:`~jupyter_pipeline.local.runner.LocalRunner`)."""

    label = "Local (papermill on this server)"
    can_cancel = True
    leases_runs = True
    reuses_stages = True

    def __init__(self):
        self._lock = threading.Lock()
        self._live: dict = {}  # run id -> the LocalRunner driving it in this process

    def prepare(self):
        from .local import zygote

        zygote.shared()  # stage processes' imports start now, while the notebook is read and checked

    def _runner(self, store, options, on_event):
        from .local.runner import LocalRunner

        return LocalRunner(store, workers=options.get("workers"), on_event=on_event,
                           incremental=bool(options.get("incremental")),
                           shared_kernel=bool(options.get("shared_kernel")), from_stage=options.get("from_stage"))

    def _drive(self, run_id: str, runner, work):
        with self._lock:
            self._live[run_id] = runner
        try:
            return work()
        finally:
            with self._lock:
                self._live.pop(run_id, None)

    def run(self, pipeline, parameters, store, options, on_event=None):
        from .store.records import new_run_id

        run_id = options.get("run_id") or new_run_id(pipeline.name)
        runner = self._runner(store, options, on_event)
        return self._drive(run_id, runner, lambda: runner.run(pipeline, parameters, run_id=run_id))

    def resume(self, store, run_id, options, on_event=None):
        runner = self._runner(store, {**options, "incremental": False}, on_event)
        return self._drive(run_id, runner, lambda: runner.resume(run_id))

    def cancel(self, store, run_id):
        with self._lock:
            runner = self._live.get(run_id)
        if runner is None:
            raise TargetError(f"run {run_id} is not driven by this process")
        runner.cancel()

    def sweep(self, pipeline, grid, store, options, on_event=None):
        from .sweep import run_sweep

        return run_sweep(pipeline, grid, store=store, fixed=options.get("fixed"), metric=options.get("metric"),
                         goal=options.get("goal") or "max", sample=options.get("sample"),
                         max_parallel=options.get("max_parallel"), workers=options.get("workers"),
                         on_event=on_event, sweep_id=options.get("sweep_id"))


class TargetRegistry(Registry[Target]):
    """Run targets by name, loading built-in and entry-point targets on first use."""

    def __init__(self):
        super().__init__("run target")
        self._specs: dict[str, str] | None = None
        self._load_lock = threading.RLock()

    def specs(self) -> dict[str, str]:
        """Name -> ``module:attribute`` of every target not registered in code yet."""
        if self._specs is None:
            specs = dict(BUILTIN_TARGETS)
            for ep in entry_points(group=ENTRY_POINT_GROUP):
                specs.setdefault(ep.name, ep.value)  # a package cannot replace a built-in by its name
            self._specs = specs
        return self._specs

    def get(self, key: str) -> Target:
        """The target ``key``; an import error in its module is raised as itself, not as unknown."""
        with self._load_lock:
            if key not in self._items and key in self.specs():
                self.register(key, _load(key, self.specs()[key]))
            if key not in self._items:
                raise UnknownKeyError(self.kind, key, {*self._items, *self.specs()})
            return self._items[key]

    def register(self, key: str, impl: Target, *, first: bool = False) -> Target:
        impl.name = key
        return super().register(key, impl, first=first)

    def available(self) -> list[Target]:
        """Every target that loads, built-ins first; one that fails to import is left out (and logged)."""
        found = []
        for name in [*self.specs(), *(k for k in self._items if k not in self.specs())]:
            try:
                found.append(self.get(name))
            except Exception as exc:
                log.warning("jupyter-pipeline: run target %r is not available: %s", name, exc)
        return found


def _load(name: str, spec: str) -> Target:
    module, _, attr = spec.partition(":")
    try:
        obj = getattr(importlib.import_module(module), attr)
        target = obj() if isinstance(obj, type) else obj
    except Exception as exc:
        raise TargetError(f"run target {name!r} ({spec}) could not be loaded: {type(exc).__name__}: {exc}") from exc
    if not isinstance(target, Target):
        raise TargetError(f"run target {name!r} ({spec}) is not a jupyter_pipeline.targets.Target")
    return target


targets = TargetRegistry()


def get_target(name: str) -> Target:
    """The run target called ``name``; raises :class:`UnknownKeyError` naming the known ones."""
    return targets.get(name)


def run_status(store: Store, record: RunRecord, options: dict | None = None, *, ask_target: bool = True) -> RunRecord:
    """A run's current state, the one way every front (CLI, magics, server) reads it.

    With ``ask_target`` the run's own target is asked (a Kubeflow run's state comes from the
    cluster); without it, or when the target cannot answer (unknown, unreachable), the stored record
    is used, marked interrupted if the process that drove it is gone. Listing many runs passes
    ``ask_target=False`` so that a list never waits on a cluster.
    """
    from .store import pending
    from .store.records import load_run, run_prefix

    if record.status.value == "running" and pending.flush(store, f"{run_prefix(record.run_id)}/"):
        record = load_run(store, record.run_id)  # its final record waited on this machine for the store
    if ask_target and record.status.value == "running":
        try:
            return get_target(record.target).status(store, record, dict(options or {}))
        except Exception as exc:  # the stored state is still an answer; say why it is all we have
            log.warning("could not read run %s's state from target '%s': %s", record.run_id, record.target, exc)
    try:
        target = get_target(record.target)
    except Exception:  # a target no longer installed: its record is all there is
        return record
    return Target.status(target, store, record, {})  # the stored record, leases checked where they apply
