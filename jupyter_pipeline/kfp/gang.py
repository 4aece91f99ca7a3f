"""Kubeflow: a ``workers:N`` stage's task starts its replicas as one gang-scheduled multi-pod job.

The stage's KFP task is a small launcher (no GPU; :func:`launcher`). It creates, through the
Kubernetes API in its own namespace, a JobSet (``jobset.x-k8s.io/v1alpha2``) or a Kubeflow
Trainer TrainJob (``trainer.kubeflow.org/v1alpha1``), as the notebook's ``distributed`` setting
says, whose N pods run the stage notebook in the same image with the stage's resources, GPUs and
pod metadata (:func:`replica_main`); it waits for the job, then reports rank 0's result.

- **Gang scheduling**: with ``"scheduler": "kueue"`` the job carries Kueue's queue label, and
  Kueue admits all pods or none; with ``"volcano"`` a Volcano PodGroup (``minMember: N``) is
  created first and the pods join it. A TrainJob's runtime may declare its own pod-group policy.
- **Rank and coordinator**: a JobSet's pods form one indexed Job (rank: ``JOB_COMPLETION_INDEX``),
  a TrainJob's are one Job per node (rank: the Job's index in its JobSet, from the pod's
  ``jobset.sigs.k8s.io/job-index`` label); rank 0 is reachable by its stable hostname
  (``<job>-<replicated job>-0-0.<job>``), where JAX's coordinator and the gang barrier listen.
- **Failure**: one failing pod fails the job (JobSet stops the others); ``retries:`` creates the
  whole job again; the launcher deletes a job it stops waiting for (timeout, cancel).

The launcher's service account needs ``create``, ``get`` and ``delete`` on the kind (and on
Volcano's podgroups), as a profile's ``default-editor`` has once the kind's install aggregates
its roles to ``edit``.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import sys
import time
from dataclasses import dataclass
from typing import Callable

from ..registry import Registry
from ..replica import BARRIER_PORT, COORDINATOR_PORT
from .placement import GPU_RESOURCE, Placement

#: Environment variable that carries a replica's job (store, run, stage, parameters, gang size).
JOB_ENV = "JUPYTER_PIPELINE_GANG"
#: The index of the pod's Job within the JobSet (downward API), for kinds that make one Job per replica.
JOB_INDEX_ENV = "JUPYTER_PIPELINE_JOB_INDEX"
JOB_INDEX_LABEL = "jobset.sigs.k8s.io/job-index"
#: Label on every job and pod a launcher makes (with the run and stage), and Kueue's queue label.
MANAGED_BY = {"app.kubernetes.io/managed-by": "jupyter-pipeline"}
KUEUE_QUEUE_LABEL = "kueue.x-k8s.io/queue-name"
VOLCANO_GROUP_ANNOTATION = "scheduling.k8s.io/group-name"
#: Seconds between two reads of the job's status, and a finished JobSet's time to live.
POLL_SECONDS = 5.0
TTL_SECONDS = 3600
DEFAULT_RUNTIME = "jax-distributed"


@dataclass(frozen=True)
class Launch:
    """One attempt's job: its name and namespace, and what every replica pod runs."""

    name: str
    namespace: str
    workers: int
    image: str
    env: list  # the replica container's environment (the job description included)
    resources: dict
    pod: dict  # pod-level fields: nodeSelector, tolerations, imagePullSecrets, volumes
    mounts: list
    labels: dict
    annotations: dict
    scheduler: str | None = None
    queue: str | None = None
    runtime: str = DEFAULT_RUNTIME


@dataclass(frozen=True)
class JobKind:
    """A kind of multi-pod job: where it lives in the API, how it is written and when it is finished."""

    group: str
    version: str
    plural: str
    replicated_job: str  # the name its pods' hostnames carry
    one_job_per_replica: bool  # N Jobs of one pod (rank = Job index) or one indexed Job of N pods
    render: Callable[[Launch], dict]
    finished: Callable[[dict], str | None]  # "succeeded", "failed" or None (still going)

    def coordinator(self, name: str) -> str:
        """Rank 0's stable hostname inside the job's headless service."""
        return f"{name}-{self.replicated_job}-0-0.{name}"


kinds: Registry[JobKind] = Registry("distributed job kind")


def _condition(obj: dict, names: dict[str, str]) -> str | None:
    for condition in (obj.get("status") or {}).get("conditions") or []:
        if condition.get("status") == "True" and condition.get("type") in names:
            return names[condition["type"]]
    return None


def _pod_template(launch: Launch, container: dict) -> dict:
    return {"metadata": {"labels": launch.labels, "annotations": launch.annotations},
            "spec": {"restartPolicy": "Never", "containers": [container], **launch.pod,
                     **({"schedulerName": "volcano"} if launch.scheduler == "volcano" else {})}}


def _metadata(launch: Launch) -> dict:
    labels = dict(launch.labels)
    if launch.scheduler == "kueue":
        labels[KUEUE_QUEUE_LABEL] = launch.queue
    return {"name": launch.name, "namespace": launch.namespace, "labels": labels}


def render_jobset(launch: Launch) -> dict:
    """A JobSet of one indexed Job of ``workers`` pods; any pod failing fails it (no restarts: the
    launcher retries)."""
    container = {"name": "replica", "image": launch.image, "command": ["python", "-m", "jupyter_pipeline.kfp.gang"],
                 "env": launch.env, "resources": launch.resources,
                 "ports": [{"name": "coordinator", "containerPort": COORDINATOR_PORT, "protocol": "TCP"},
                           {"name": "barrier", "containerPort": BARRIER_PORT, "protocol": "TCP"}],
                 **({"volumeMounts": launch.mounts} if launch.mounts else {})}
    return {
        "apiVersion": "jobset.x-k8s.io/v1alpha2", "kind": "JobSet", "metadata": _metadata(launch),
        "spec": {
            "network": {"enableDNSHostnames": True},
            "failurePolicy": {"maxRestarts": 0},
            "successPolicy": {"operator": "All"},
            "ttlSecondsAfterFinished": TTL_SECONDS,
            "replicatedJobs": [{"name": "workers", "replicas": 1, "template": {"spec": {
                "parallelism": launch.workers, "completions": launch.workers, "completionMode": "Indexed",
                "backoffLimit": 0, "template": _pod_template(launch, container)}}}],
        },
    }


def render_trainjob(launch: Launch) -> dict:
    """A Kubeflow Trainer TrainJob on ``runtime`` (a ClusterTrainingRuntime whose trainer job is
    ``node``), with the pods' placement and metadata as a runtime patch."""
    patch_spec = {**launch.pod, **({"containers": [{"name": "node", "volumeMounts": launch.mounts}]}
                                   if launch.mounts else {})}
    return {
        "apiVersion": "trainer.kubeflow.org/v1alpha1", "kind": "TrainJob", "metadata": _metadata(launch),
        "spec": {
            "runtimeRef": {"name": launch.runtime},
            "trainer": {"image": launch.image, "command": ["python", "-m", "jupyter_pipeline.kfp.gang"],
                        "env": launch.env, "numNodes": launch.workers, "resourcesPerNode": launch.resources},
            "runtimePatches": [{"manager": "jupyter-pipeline", "trainingRuntimeSpec": {"template": {"spec": {
                "replicatedJobs": [{"name": "node", "template": {"spec": {"template": {
                    "metadata": {"labels": launch.labels, "annotations": launch.annotations},
                    "spec": patch_spec}}}}]}}}}],
        },
    }


def render_podgroup(launch: Launch) -> dict:
    """Volcano's PodGroup for the job's pods: none of them is scheduled until all ``workers`` can be."""
    return {"apiVersion": "scheduling.volcano.sh/v1beta1", "kind": "PodGroup",
            "metadata": {"name": launch.name, "namespace": launch.namespace, "labels": dict(launch.labels)},
            "spec": {"minMember": launch.workers, **({"queue": launch.queue} if launch.queue else {})}}


kinds.register("jobset", JobKind("jobset.x-k8s.io", "v1alpha2", "jobsets", "workers", False, render_jobset,
                                 lambda obj: _condition(obj, {"Completed": "succeeded", "Failed": "failed"})))
kinds.register("trainjob", JobKind("trainer.kubeflow.org", "v1alpha1", "trainjobs", "node", True, render_trainjob,
                                   lambda obj: _condition(obj, {"Complete": "succeeded", "Failed": "failed"})))
PODGROUP = ("scheduling.volcano.sh", "v1beta1", "podgroups")


# -- what the replicas' pods look like ------------------------------------------------------------
def pod_parts(meta: dict) -> tuple[dict, dict, list, list]:
    """``(resources, pod fields, env, volume mounts)`` of a replica from the stage's launch metadata
    (``stagenotebook.launch_metadata``): what a normal stage's pod gets (:mod:`.placement`), built for a pod
    spec: the stage's resources and GPUs per replica; the notebook's and the stage's node selector,
    tolerations, environment and existing volume claims; pull secrets, the store's credentials
    secret, the stage's secrets and its ``/dev/shm``."""
    options, settings = meta["options"], meta.get("settings", {})
    placement = Placement.from_settings(settings)
    resources, selector, tolerations = _node_parts(options, settings, placement)
    volumes, mounts = _volumes(options, settings)
    env = _env(options, settings, placement)
    for secret in options.get("secrets", []):
        if "env" in secret:
            env.append({"name": secret["env"], "valueFrom": {"secretKeyRef": {"name": secret["name"], "key": secret["key"]}}})
        else:
            volume = f"secret-{len(volumes)}"
            volumes.append({"name": volume, "secret": {"secretName": secret["name"]}})
            mounts.append({"name": volume, "mountPath": secret["path"], "readOnly": True})
    pod = {**({"nodeSelector": selector} if selector else {}), **({"tolerations": tolerations} if tolerations else {}),
           **({"imagePullSecrets": [{"name": n} for n in settings["image_pull_secrets"]]}
              if settings.get("image_pull_secrets") else {}),
           **({"volumes": volumes} if volumes else {})}
    return resources, pod, env, mounts


def _node_parts(options: dict, settings: dict, placement: Placement) -> tuple[dict, dict, list]:
    """Resources, node selector and tolerations: the notebook's, then the stage's own, then its GPU's."""
    limits, requests = {}, {}
    for key in ("cpu", "memory"):
        if options.get(key):
            limits[key] = requests[key] = str(options[key])
    selector = {**placement.node_selector, **options.get("node_selector", {})}
    tolerations = list(settings.get("tolerations", []))
    tolerations += [t for t in options.get("tolerations", []) if t not in tolerations]
    if options.get("gpu"):
        gpu_type = options.get("gpu_type") or ""
        resource = gpu_type if "/" in gpu_type else GPU_RESOURCE
        limits[resource] = str(options["gpu"])
        if resource == GPU_RESOURCE:
            selector.update(placement.gpu_node_selector)
        if gpu_type and "/" not in gpu_type:
            selector[placement.gpu_type_label] = gpu_type
        tolerations.append({"key": resource, "operator": "Exists", "effect": "NoSchedule"})
    return {"limits": limits, **({"requests": requests} if requests else {})}, selector, tolerations


def _env(options: dict, settings: dict, placement: Placement) -> list:
    """The store's credentials (from its secret), then the notebook's and the stage's variables."""
    env = [{"name": name, "valueFrom": {"secretKeyRef": {"name": placement.secret, "key": key}}}
           for key, name in sorted(placement.secret_keys.items())] if placement.secret else []
    return env + [{"name": k, "value": str(v)}
                  for k, v in sorted({**settings.get("env", {}), **options.get("env", {})}.items())]


def _volumes(options: dict, settings: dict) -> tuple[list, list]:
    """The notebook's and the stage's existing claims (claims made per run belong to the pipeline's
    tasks) and a memory-backed ``/dev/shm`` of the stage's ``shm:`` size."""
    volumes, mounts = [], []
    for claim in list(settings.get("volumes", [])) + list(options.get("volumes", [])):
        if not claim.get("new"):
            volumes.append({"name": f"volume-{len(volumes)}", "persistentVolumeClaim": {"claimName": claim["name"]}})
            mounts.append({"name": volumes[-1]["name"], "mountPath": claim["mount_path"]})
    if options.get("shm"):
        volumes.append({"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": str(options["shm"])}})
        mounts.append({"name": "dshm", "mountPath": "/dev/shm"})
    return volumes, mounts


def job_name(run_id: str, stage: str, attempt: int) -> str:
    """A DNS label short enough that the pods' hostnames (``<name>-workers-0-0``) stay within 63 characters."""
    digest = hashlib.sha1(f"{run_id}/{stage}".encode()).hexdigest()[:8]
    slug = re.sub(r"[^a-z0-9-]+", "-", stage.lower()).strip("-")[:24].rstrip("-") or "stage"
    return f"jp-{slug}-{digest}-{attempt}"


def label_value(text: str) -> str:
    """``text`` as a Kubernetes label value (63 characters of letters, digits, '-', '_' and '.')."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text)[:63].strip("-_.")


def plan(meta: dict, *, run_id: str, stage: str, parameters: dict, store_url: str, namespace: str, image: str,
         attempt: int = 0, timeout: int = 0, files: str = "") -> tuple[JobKind, Launch]:
    """The job of one attempt at ``stage``: its kind and everything its manifest says (``files``: the
    store key of the working files' bundle, which each replica unpacks where its kernel runs)."""
    settings = meta.get("settings", {})
    dist = settings.get("distributed", {})
    kind = kinds.get(dist.get("kind", "jobset"))
    name = job_name(run_id, stage, attempt)
    resources, pod, env, mounts = pod_parts(meta)
    job = {"store": store_url, "run_id": run_id, "stage": stage, "parameters": parameters,
           "world_size": meta["workers"], "coordinator": kind.coordinator(name), "timeout": timeout, "files": files,
           "pods_per_job": 1 if kind.one_job_per_replica else meta["workers"]}
    job_index = {"fieldRef": {"fieldPath": f"metadata.labels['{JOB_INDEX_LABEL}']"}}
    env = [{"name": JOB_ENV, "value": json.dumps(job, sort_keys=True)},
           {"name": JOB_INDEX_ENV, "valueFrom": job_index}] + env
    if os.environ.get("JUPYTER_PIPELINE_S3_ENDPOINT"):
        env.append({"name": "JUPYTER_PIPELINE_S3_ENDPOINT", "value": os.environ["JUPYTER_PIPELINE_S3_ENDPOINT"]})
    labels = {**MANAGED_BY, "jupyter-pipeline/run": label_value(run_id), "jupyter-pipeline/stage": label_value(stage),
              **meta["options"].get("labels", {})}
    annotations = dict(meta["options"].get("annotations", {}))
    if dist.get("scheduler") == "volcano":
        annotations[VOLCANO_GROUP_ANNOTATION] = name
    return kind, Launch(name=name, namespace=namespace, workers=meta["workers"], image=image, env=env,
                        resources=resources, pod=pod, mounts=mounts, labels=labels, annotations=annotations,
                        scheduler=dist.get("scheduler"), queue=dist.get("queue"),
                        runtime=dist.get("runtime", DEFAULT_RUNTIME))


def manifests(kind: JobKind, launch: Launch) -> list[dict]:
    """What to create, in order: Volcano's PodGroup first when it schedules the gang, then the job."""
    return ([render_podgroup(launch)] if launch.scheduler == "volcano" else []) + [kind.render(launch)]


# -- the launcher (the stage's KFP task) ----------------------------------------------------------
def is_gang(notebook: str) -> bool:
    """Whether the stage notebook (JSON text, as a component gets it) is a ``workers:`` stage's."""
    return bool(json.loads(notebook).get("metadata", {}).get("jupyter_pipeline", {}).get("gang"))


def run_gang(store, run_id: str, stage: str, parameters: dict, *, cwd: str | None = None, item=None,
             api=None, poll: float = POLL_SECONDS, files: str = "") -> dict:
    """Start ``stage``'s replicas as a gang on Kubernetes, wait for them and return the stage's
    result (rank 0's, as the local runner's); signature of :func:`jupyter_pipeline.stagerun.run_stage`
    plus ``files``, the store key of the working files' bundle the replicas unpack.

    Outside a pod (kfp.local runs each task as a process on this machine) there is no cluster to
    schedule pods in: the replicas run here, as processes on loopback (:func:`run_here`).
    """
    import nbformat

    from .. import cluster
    from ..records import stage_key
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
                              namespace=namespace, image=image, attempt=attempt, poll=poll, files=files)
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

    from ..gang import free_ports
    from ..workers import terminate

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
    from ..gang import STOPPED, gang_result
    from ..records import now_iso, stage_key

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
    except Exception:  # noqa: BLE001 - best effort on the way out; the job's TTL cleans up otherwise
        pass


def launcher(task, stage, placement: Placement) -> None:
    """Settings of a ``workers:`` stage's KFP task, which only launches and watches the replicas:
    the store secret and the notebook-wide node selector; no GPU or resources (the replicas get the
    stage's), no KFP retries (a retry starts all replicas again, which the launcher does)."""
    from kfp import kubernetes

    from .placement import TIMEOUT_GRACE_SECONDS

    task.set_display_name(f"{stage.name} ({stage.options.workers} workers)")
    task.set_caching_options(bool(stage.options.cache))
    if stage.options.timeout:
        kubernetes.set_timeout(task, int(stage.options.timeout) + TIMEOUT_GRACE_SECONDS)
    for key, value in sorted(placement.node_selector.items()):
        kubernetes.add_node_selector(task, label_key=key, label_value=str(value))
    if placement.secret:
        kubernetes.use_secret_as_env(task, secret_name=placement.secret, secret_key_to_env=dict(placement.secret_keys))


# -- one replica (each pod's command) -------------------------------------------------------------
def replica_main() -> int:
    """Run this pod's replica of the stage: rank from the indexed Job, rank 0's host from the job;
    the working files unpacked into a fresh folder where the kernel runs (unless the job names one)."""
    import contextlib
    import tempfile

    from ..records import stage_key
    from ..startup import skip_slow_optional_imports
    from ..stagerun import run_stage
    from ..store import open_store
    from .files import unpack

    skip_slow_optional_imports()
    job = json.loads(os.environ[JOB_ENV])
    # One indexed Job of N pods (JobSet) or N Jobs of one pod (a Trainer runtime's nodes).
    rank = (int(os.environ.get(JOB_INDEX_ENV) or 0) * int(job.get("pods_per_job") or 1)
            + int(os.environ.get("JOB_COMPLETION_INDEX") or 0))
    coordinator, barrier = job.get("ports") or (COORDINATOR_PORT, BARRIER_PORT)
    gang = {"rank": rank, "world_size": job["world_size"], "coordinator": f"{job['coordinator']}:{coordinator}",
            "barrier": f"{job['coordinator']}:{barrier}", "bind": "", "timeout": job.get("timeout") or None}
    store = open_store(job["store"])
    with contextlib.ExitStack() as stack:
        cwd = job.get("cwd")
        if cwd is None and job.get("files"):
            cwd = stack.enter_context(tempfile.TemporaryDirectory(prefix=f"jp-{job['stage']}-{rank}-work-"))
            unpack(store, job["files"], cwd)
        result = run_stage(store, job["run_id"], job["stage"], job.get("parameters") or {}, cwd=cwd, gang=gang)
    store.put_json(stage_key(job["run_id"], job["stage"], "result.json", replica=rank), result)
    print(f"jupyter-pipeline: replica {rank} of stage {job['stage']} {result['status']}"
          + (f": {result.get('error')}" if result["status"] != "succeeded" else ""), file=sys.stderr, flush=True)
    return 0 if result["status"] == "succeeded" else 1


if __name__ == "__main__":
    sys.exit(replica_main())
