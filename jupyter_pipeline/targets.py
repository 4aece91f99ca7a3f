"""Run targets: where ``run`` sends a pipeline (``local``, ``kfp-local``, ``kfp``).

A target is a callable ``(pipeline, parameters, store, options, on_event) -> RunRecord``
registered in :data:`targets`. A sweep target is a callable ``(pipeline, grid, store, options,
on_event) -> SweepResult`` registered in :data:`sweep_targets` (options: ``fixed``, ``metric``,
``goal``, ``sample``, ``max_parallel``, ``workers``, ``sweep_id``). Modules for optional targets register themselves on import and
are imported lazily, so the CLI stays fast and kfp is only imported when used.
"""

from __future__ import annotations

import importlib
from typing import Callable

from .registry import Registry

Target = Callable[..., "object"]
targets: Registry[Target] = Registry("run target")
sweep_targets: Registry[Target] = Registry("sweep target")

#: Modules that register further targets when imported.
TARGET_MODULES = ["jupyter_pipeline.kfp"]


def _load(registry: Registry, name: str) -> Target:
    if name not in registry:
        for module in TARGET_MODULES:
            try:
                importlib.import_module(module)
            except ImportError:
                continue
    return registry.get(name)


def get_target(name: str) -> Target:
    return _load(targets, name)


def get_sweep_target(name: str) -> Target:
    return _load(sweep_targets, name)


def _local(pipeline, parameters, store, options, on_event):
    from .runner import LocalRunner

    return LocalRunner(store, workers=options.get("workers"), on_event=on_event,
                       incremental=bool(options.get("incremental"))).run(pipeline, parameters)


targets.register("local", _local)


def _local_sweep(pipeline, grid, store, options, on_event):
    from .sweep import run_sweep

    return run_sweep(pipeline, grid, store=store, fixed=options.get("fixed"), metric=options.get("metric"),
                     goal=options.get("goal") or "max", sample=options.get("sample"),
                     max_parallel=options.get("max_parallel"), workers=options.get("workers"), on_event=on_event,
                     sweep_id=options.get("sweep_id"))


sweep_targets.register("local", _local_sweep)
