"""Run targets: where ``run`` sends a pipeline (``local``, ``kfp-local``, ``kfp``).

A target is a callable ``(pipeline, parameters, store, options, on_event) -> RunRecord``
registered in :data:`targets`; modules for optional targets register themselves on import and
are imported lazily, so the CLI stays fast and kfp is only imported when used.
"""

from __future__ import annotations

import importlib
from typing import Callable

from .registry import Registry

Target = Callable[..., "object"]
targets: Registry[Target] = Registry("run target")

#: Modules that register further targets when imported.
TARGET_MODULES = ["jupyter_pipeline.kfp"]


def get_target(name: str) -> Target:
    if name not in targets:
        for module in TARGET_MODULES:
            try:
                importlib.import_module(module)
            except ImportError:
                continue
    return targets.get(name)


def _local(pipeline, parameters, store, options, on_event):
    from .runner import LocalRunner

    return LocalRunner(store, workers=options.get("workers"), on_event=on_event).run(pipeline, parameters)


targets.register("local", _local)
