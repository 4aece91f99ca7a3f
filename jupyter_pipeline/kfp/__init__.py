"""Kubeflow Pipelines: compile a pipeline to KFP v2, run it with kfp.local, submit it to a cluster.

Importing this package registers the run targets ``kfp-local`` and ``kfp``; the kfp SDK itself is
imported only when a target or the compiler is used.
"""

from __future__ import annotations

from ..targets import targets


def _kfp_local(pipeline, parameters, store, options, on_event):
    from .local import run_kfp_local

    return run_kfp_local(pipeline, parameters, store, options, on_event)


def _kfp(pipeline, parameters, store, options, on_event):
    from .client import submit_target

    return submit_target(pipeline, parameters, store, options, on_event)


targets.register("kfp-local", _kfp_local)
targets.register("kfp", _kfp)
