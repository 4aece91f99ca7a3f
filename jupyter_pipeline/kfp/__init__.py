"""Kubeflow Pipelines: compile a pipeline to KFP v2, run it with kfp.local, submit it to a cluster.

The run targets ``kfp-local`` and ``kfp`` live here (:mod:`jupyter_pipeline.targets` finds them);
the kfp SDK itself is imported only when a target or the compiler is used.
"""

from __future__ import annotations

from ..exceptions import TargetError
from ..targets import Target


class KfpLocalTarget(Target):
    """The compiled KFP pipeline, run on this machine by kfp.local."""

    label = "Kubeflow, local runner (kfp.local)"

    def run(self, pipeline, parameters, store, options, on_event=None):
        from .local import run_kfp_local

        return run_kfp_local(pipeline, parameters, store, options, on_event)

    def sweep(self, pipeline, grid, store, options, on_event=None):
        from .sweep import run_sweep_kfp_local

        return run_sweep_kfp_local(pipeline, grid, store, options, on_event)


class KfpTarget(Target):
    """The compiled pipeline, submitted to a Kubeflow Pipelines cluster; its state is read from there."""

    label = "Kubeflow Pipelines"
    needs_kfp_host = True
    uses_image = True

    def lookup(self, store, run_id, options):
        """A run of this store, or any Kubeflow run id, read from the cluster."""
        from .client import record_for

        return record_for(store, run_id, {k: v for k, v in options.items() if k.startswith("kfp_") or k == "namespace"})[1]

    def run(self, pipeline, parameters, store, options, on_event=None):
        from .client import submit_target

        return submit_target(pipeline, parameters, store, options, on_event)

    def status(self, store, record, options):
        record = super().status(store, record, options)
        if record.status.value != "running" or not record.external_id:
            return record
        from .client import Connection, KfpClient, refresh

        options = {k: v for k, v in options.items() if v}
        # The host the run was submitted to (a browser may have named one) beats the default.
        submitted = next((h.get("host") for h in record.history if h.get("event") == "submitted"), None)
        if submitted:
            options["kfp_host"] = submitted
        return refresh(KfpClient(Connection.from_options(options)), store, record)

    def sweep(self, pipeline, grid, store, options, on_event=None):
        # The compiled sweep is cluster-ready (kfp.sweep.compile_sweep); what is missing is following
        # one KFP run as several variant records (task states are per loop iteration, not per variant).
        raise TargetError(
            "sweeps are not submitted to a Kubeflow cluster yet; run them with --target kfp-local (the same "
            "compiled sweep pipeline, on this machine) or --target local."
        )
