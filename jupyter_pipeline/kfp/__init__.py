"""Kubeflow Pipelines: compile a pipeline to KFP v2, run it with kfp.local, submit it to a cluster.

Importing this package registers the run targets ``kfp-local`` and ``kfp`` and the sweep target
``kfp-local``; the kfp SDK itself is imported only when a target or the compiler is used.
"""

from __future__ import annotations

from ..exceptions import TargetError
from ..targets import sweep_targets, targets


def _kfp_local(pipeline, parameters, store, options, on_event):
    from .local import run_kfp_local

    return run_kfp_local(pipeline, parameters, store, options, on_event)


def _kfp(pipeline, parameters, store, options, on_event):
    from .client import submit_target

    return submit_target(pipeline, parameters, store, options, on_event)


targets.register("kfp-local", _kfp_local)
targets.register("kfp", _kfp)


def _kfp_local_sweep(pipeline, grid, store, options, on_event):
    from .sweep import run_sweep_kfp_local

    return run_sweep_kfp_local(pipeline, grid, store, options, on_event)


def _kfp_sweep(pipeline, grid, store, options, on_event):
    # The compiled sweep is cluster-ready (kfp.sweep.compile_sweep); what is missing is following
    # one KFP run as several variant records (task states are per loop iteration, not per variant).
    raise TargetError(
        "sweeps are not submitted to a Kubeflow cluster yet; run them with --target kfp-local (the same "
        "compiled sweep pipeline, on this machine) or --target local."
    )


sweep_targets.register("kfp-local", _kfp_local_sweep)
sweep_targets.register("kfp", _kfp_sweep)
