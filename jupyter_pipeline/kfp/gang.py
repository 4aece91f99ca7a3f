"""Kubeflow: a ``workers:N`` stage's task starts its replicas as one gang-scheduled multi-pod job.

The stage's KFP task is a small launcher (no GPU; :func:`jupyter_pipeline.kfp.placement.launcher`).
Through the Kubernetes API, in its own namespace, it creates the job :mod:`.gangjob` describes (a
JobSet or a Kubeflow Trainer TrainJob), whose N pods each run :func:`replica_main`; it waits for
the job, then reports rank 0's result (:func:`run_gang`).

- **Failure**: one failing pod fails the job (JobSet stops the others); ``retries:`` creates the
  whole job again; the launcher deletes a job it stops waiting for (timeout, cancel).

The launcher's service account needs ``create``, ``get`` and ``delete`` on the kind (and on
Volcano's podgroups), as a profile's ``default-editor`` has once the kind's install aggregates
its roles to ``edit``.
"""

from __future__ import annotations

import json
import os
import sys
import time

from ..stage.replica import BARRIER_PORT, COORDINATOR_PORT
from .gangjob import JOB_ENV, JOB_INDEX_ENV, PODGROUP, JobKind, Launch, kinds, manifests, plan, pod_parts

#: Seconds between two reads of the job's status.
POLL_SECONDS = 5.0


# -- the launcher (the stage's KFP task) ----------------------------------------------------------
def is_gang(notebook: str) -> bool:
    """Whether the stage notebook (JSON text, as a component gets it) is a ``workers:`` stage's."""
    return bool(json.loads(notebook).get("metadata", {}).get("jupyter_pipeline", {}).get("gang"))


def run_gang(store, run_id: str, stage: str, parameters: dict, *, cwd: str | None = None, item=None,
             api=None, poll: float = POLL_SECONDS, files: str = "", claims: dict | None = None) -> dict:
    """Start ``stage``'s replicas as a gang on Kubernetes, wait for them and return the stage's
    result (rank 0's, as the local runner's); signature of :func:`jupyter_pipeline.stage.run.run_stage`
    plus ``files``, the store key of the working files' bundle the replicas unpack, and ``claims``,
    the names of the claims the pipeline made for this run (by volume), which the replicas mount.

    Outside a pod (kfp.local runs each task as a process on this machine) there is no cluster to
    schedule pods in: the replicas run here, as processes on loopback (:func:`run_here`).
    """
    import nbformat

    from .. import cluster
    from ..store.records import stage_key
    from ..settings import DEFAULT_IMAGE

    nb = nbformat.reads(store.get_bytes(stage_key(run_id, stage, "input.ipynb")).decode(), as_version=4)
    meta = nb.metadata["jupyter_pipeline"]["gang"]
    here = api is None and not cluster.in_pod()
    if not here:
        settings = meta.get("settings", {})
        namespace = settings.get("distributed", {}).get("namespace") or cluster.namespace() or "default"
        image = cluster.own_image() or meta["options"].get("image") or settings.get("image") or DEFAULT_IMAGE
        api = api or _api()
    result: dict = {}
    for attempt in range(int(meta["options"].get("retries") or 0) + 1):
        if here:
            outcome = run_here(meta, store.absolute_url(), run_id, stage, parameters, cwd)
        else:
            outcome = _launch(api, meta, run_id=run_id, stage=stage, parameters=parameters, store_url=store.absolute_url(),
                              namespace=namespace, image=image, attempt=attempt, poll=poll, files=files,
                              claims=claims)
        result = collect(store, run_id, stage, meta["workers"], outcome)
        result["attempts"] = attempt + 1
        if result["status"] == "succeeded":
            break
    return result


def _launch(api, meta: dict, *, poll: float, **where) -> str:
    """Create one attempt's job, wait until it finishes; "succeeded" or "failed"."""
    kind, launch = plan(meta, **where)
    try:
        for manifest in manifests(kind, launch):
            _create(api, manifest)
        print(f"jupyter-pipeline: stage {where['stage']}: {launch.workers} replicas as {kind.plural[:-1]}/"
              f"{launch.name} in namespace {launch.namespace}", file=sys.stderr, flush=True)
        return _wait(api, kind, launch, poll)
    except BaseException:  # timeout:, cancel: the replicas must not run on without their launcher
        _delete(api, kind, launch)
        raise


def run_here(meta: dict, store_url: str, run_id: str, stage: str, parameters: dict, cwd: str | None) -> str:
    """The replicas as processes on this machine (each the pods' command, with the variables the
    pods would set), rank 0 on loopback; the first to fail stops the others. "succeeded" or "failed"."""
    import subprocess

    from ..local.gang import free_ports
    from ..local.pool import terminate

    workers = meta["workers"]
    job = {"store": store_url, "run_id": run_id, "stage": stage, "parameters": parameters, "world_size": workers,
           "coordinator": "127.0.0.1", "ports": free_ports(2), "cwd": cwd}
    values = {e["name"]: e["value"] for e in pod_parts(meta)[2] if "value" in e}
    procs = [subprocess.Popen([sys.executable, "-m", "jupyter_pipeline.kfp.gang"], start_new_session=True,
                              env={**os.environ, **values, JOB_ENV: json.dumps(job), "JOB_COMPLETION_INDEX": str(rank)})
             for rank in range(workers)]
    try:
        while any(p.poll() is None for p in procs):
            if any(p.returncode for p in procs if p.poll() is not None):
                break
            time.sleep(0.1)
    finally:
        for p in procs:
            terminate(p)
    return "succeeded" if all(p.returncode == 0 for p in procs) else "failed"


def collect(store, run_id: str, stage: str, workers: int, outcome: str) -> dict:
    """The stage's result from its replicas' ``result.json``: rank 0's values, metrics and notebook
    (copied to the stage's own ``output.ipynb``), every replica's state, the first real failure."""
    from ..local.gang import STOPPED, gang_result
    from ..store.records import now_iso, stage_key

    results = []
    for rank in range(workers):
        key = stage_key(run_id, stage, "result.json", replica=rank)
        results.append(store.get_json(key) if store.exists(key) else {
            "status": "failed", "error": f"replica {rank} did not report a result (its pod never ran the stage; "
                                         "see the job's events and the pod's log)"})
    # Stopped replicas report "cancelled" (the job ended them); the cause is the first other failure.
    failed = [r for r, res in enumerate(results) if res["status"] != "succeeded" and res.get("error") != "cancelled"]
    failed += [r for r, res in enumerate(results) if res["status"] != "succeeded" and r not in failed]
    if outcome == "failed" and not failed:
        results[0] = {"status": "failed", "error": "the job failed after every replica succeeded (see its events)"}
        failed = [0]
    result = gang_result(results, failed, workers, None)
    result["replicas"] = [{"rank": r, "status": STOPPED if r in failed[1:] and res.get("error") == "cancelled"
                           else res["status"], "output_notebook": res.get("output_notebook"),
                           **({"error": res.get("error"), "error_cell": res.get("error_cell")}
                              if res["status"] != "succeeded" and res.get("error") != "cancelled" else {})}
                          for r, res in enumerate(results)]
    notebook = stage_key(run_id, stage, "output.ipynb", replica=0)
    if store.exists(notebook):  # the stage's notebook, as other stages have one, is rank 0's
        store.put_bytes(stage_key(run_id, stage, "output.ipynb"), store.get_bytes(notebook))
    result["finished_at"] = now_iso()
    return result


def _api():
    from ..deploy import api_client

    return api_client()


def _custom(api):
    from kubernetes import client

    return client.CustomObjectsApi(api)


def _create(api, manifest: dict) -> None:
    from kubernetes.client.exceptions import ApiException

    group, version = manifest["apiVersion"].split("/")
    plural = PODGROUP[2] if manifest["kind"] == "PodGroup" else kinds.get(manifest["kind"].lower()).plural
    ns, name = manifest["metadata"]["namespace"], manifest["metadata"]["name"]
    try:
        _custom(api).create_namespaced_custom_object(group, version, ns, plural, manifest)
    except ApiException as exc:
        if exc.status == 409:
            return  # this attempt's job exists already: KFP retried the launcher; wait for it
        hint = {404: f" — is {manifest['kind']} ({group}) installed in the cluster?",
                403: f" — the pipeline's service account may not create {plural}.{group} in {ns}"}.get(exc.status, "")
        raise RuntimeError(f"Kubernetes refused {manifest['kind'].lower()}/{name} in namespace {ns}: "
                           f"{exc.status} {exc.reason}{hint}") from None


def _wait(api, kind: JobKind, launch: Launch, poll: float) -> str:
    while True:
        obj = _custom(api).get_namespaced_custom_object(kind.group, kind.version, launch.namespace, kind.plural,
                                                        launch.name)
        outcome = kind.finished(obj)
        if outcome:
            return outcome
        time.sleep(poll)


def _delete(api, kind: JobKind, launch: Launch) -> None:
    try:
        _custom(api).delete_namespaced_custom_object(kind.group, kind.version, launch.namespace, kind.plural,
                                                     launch.name, propagation_policy="Foreground")
    except Exception:
        pass


# -- one replica (each pod's command) -------------------------------------------------------------
def replica_main() -> int:
    """Run this pod's replica of the stage: rank from the indexed Job, rank 0's host from the job;
    the working files unpacked into a fresh folder where the kernel runs (unless the job names one)."""
    import contextlib
    import tempfile

    from ..startup import skip_slow_optional_imports
    from ..stage.run import run_stage
    from ..store.base import open_store
    from .files import unpack

    skip_slow_optional_imports()
    job = json.loads(os.environ[JOB_ENV])
    # One indexed Job of N pods (JobSet) or N Jobs of one pod (a Trainer runtime's nodes).
    rank = (int(os.environ.get(JOB_INDEX_ENV) or 0) * int(job.get("pods_per_job") or 1)
            + int(os.environ.get("JOB_COMPLETION_INDEX") or 0))
    store = open_store(job["store"], create=False)  # a pod: the launcher's bucket exists
    failure = install_packages(job.get("packages") or [], job.get("pip_index_urls") or [])
    if failure:
        return _report(store, job, rank, {"status": "failed", "stage": job["stage"], "metrics": {}, "error": failure})
    coordinator, barrier = job.get("ports") or (COORDINATOR_PORT, BARRIER_PORT)
    gang = {"rank": rank, "world_size": job["world_size"], "coordinator": f"{job['coordinator']}:{coordinator}",
            "barrier": f"{job['coordinator']}:{barrier}", "bind": "", "timeout": job.get("timeout") or None}
    with contextlib.ExitStack() as stack:
        cwd = job.get("cwd")
        if cwd is None and job.get("files"):
            cwd = stack.enter_context(tempfile.TemporaryDirectory(prefix=f"jp-{job['stage']}-{rank}-work-"))
            unpack(store, job["files"], cwd)
        result = run_stage(store, job["run_id"], job["stage"], job.get("parameters") or {}, cwd=cwd, gang=gang)
    return _report(store, job, rank, result)


def _report(store, job: dict, rank: int, result: dict) -> int:
    """Keep the replica's result where the launcher collects it, say it in the pod's log; the exit code."""
    from ..store.records import stage_key

    store.put_json(stage_key(job["run_id"], job["stage"], "result.json", replica=rank), result)
    print(f"jupyter-pipeline: replica {rank} of stage {job['stage']} {result['status']}"
          + (f": {result.get('error')}" if result["status"] != "succeeded" else ""), file=sys.stderr, flush=True)
    return 0 if result["status"] == "succeeded" else 1


def install_packages(packages: list[str], index_urls: list[str]) -> str | None:
    """Install the stage's packages into the replica's Python, as a normal stage's component does
    before it runs; None when that worked, else why not (naming the packages pip could not install)."""
    import subprocess

    from .packages import failed_requirements, pip_install_command

    if not packages:
        return None
    done = subprocess.run(pip_install_command(packages, index_urls), capture_output=True, text=True)
    if done.returncode == 0:
        return None
    named = failed_requirements(packages, done.stderr + done.stdout)
    said = [line.strip() for line in (done.stderr or done.stdout).splitlines() if line.strip()]
    where = f" from {', '.join(index_urls)}" if index_urls else ""
    return (f"pip could not install package{'s' if len(named) > 1 else ''} {', '.join(named)}{where} (the pipeline's "
            f"packages), so the stage did not run: {said[-1] if said else f'exit code {done.returncode}'}")


if __name__ == "__main__":
    sys.exit(replica_main())
