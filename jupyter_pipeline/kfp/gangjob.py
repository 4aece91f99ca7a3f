"""The multi-pod job a ``workers:N`` stage's replicas run as on Kubernetes: its kinds and manifests.

A JobSet (``jobset.x-k8s.io/v1alpha2``) or a Kubeflow Trainer TrainJob (``trainer.kubeflow.org/v1alpha1``),
as the notebook's ``distributed`` setting says, whose N pods run the stage notebook in the same
image with the stage's resources, GPUs and pod metadata (:func:`pod_parts`). :func:`plan` says
what one attempt's job is; :func:`manifests` writes it. The launcher that creates and watches it
is :mod:`.gang`.

- **Gang scheduling**: with ``"scheduler": "kueue"`` the job carries Kueue's queue label, and
  Kueue admits all pods or none; with ``"volcano"`` a Volcano PodGroup (``minMember: N``) is
  created first and the pods join it. A TrainJob's runtime may declare its own pod-group policy.
- **Rank and coordinator**: a JobSet's pods form one indexed Job (rank: ``JOB_COMPLETION_INDEX``),
  a TrainJob's are one Job per node (rank: the Job's index in its JobSet, from the pod's
  ``jobset.sigs.k8s.io/job-index`` label); rank 0 is reachable by its stable hostname
  (``<job>-<replicated job>-0-0.<job>``), where JAX's coordinator and the gang barrier listen.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from typing import Callable

from ..registry import Registry
from ..stage.replica import BARRIER_PORT, COORDINATOR_PORT
from .placement import GPU_RESOURCE, Placement

#: Every replica pod's command: :func:`jupyter_pipeline.kfp.gang.replica_main`.
REPLICA_COMMAND = ("python", "-m", "jupyter_pipeline.kfp.gang")
#: Environment variable that carries a replica's job (store, run, stage, parameters, gang size).
JOB_ENV = "JUPYTER_PIPELINE_GANG"
#: The index of the pod's Job within the JobSet (downward API), for kinds that make one Job per replica.
JOB_INDEX_ENV = "JUPYTER_PIPELINE_JOB_INDEX"
JOB_INDEX_LABEL = "jobset.sigs.k8s.io/job-index"
#: Label on every job and pod a launcher makes (with the run and stage), and Kueue's queue label.
MANAGED_BY = {"app.kubernetes.io/managed-by": "jupyter-pipeline"}
KUEUE_QUEUE_LABEL = "kueue.x-k8s.io/queue-name"
VOLCANO_GROUP_ANNOTATION = "scheduling.k8s.io/group-name"
#: A finished JobSet's time to live (seconds).
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
    container = {"name": "replica", "image": launch.image, "command": list(REPLICA_COMMAND),
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
            "trainer": {"image": launch.image, "command": list(REPLICA_COMMAND),
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
def pod_parts(meta: dict, claims: dict | None = None) -> tuple[dict, dict, list, list]:
    """``(resources, pod fields, env, volume mounts)`` of a replica from the stage's launch metadata
    (``stagenotebook.launch_metadata``): what a normal stage's pod gets (:mod:`.placement`), built for a pod
    spec: the stage's resources and GPUs per replica; the notebook's and the stage's node selector,
    tolerations, environment and volume claims (``claims``: the names of those made for the run, by
    volume); pull secrets, the store's credentials secret, the stage's secrets and its ``/dev/shm``."""
    options, settings = meta["options"], meta.get("settings", {})
    placement = Placement.from_settings(settings)
    resources, selector, tolerations = _node_parts(options, settings, placement)
    volumes, mounts = _volumes(options, settings, claims or {})
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


def _volumes(options: dict, settings: dict, claims: dict) -> tuple[list, list]:
    """The notebook's and the stage's claims: existing ones by name, those made per run by the name
    the pipeline gave this run's (``claims``; none where no claim is made, as on kfp.local), and a
    memory-backed ``/dev/shm`` of the stage's ``shm:`` size."""
    volumes, mounts = [], []
    for claim in list(settings.get("volumes", [])) + list(options.get("volumes", [])):
        name = claims.get(claim["name"]) if claim.get("new") else claim["name"]
        if name:
            volumes.append({"name": f"volume-{len(volumes)}", "persistentVolumeClaim": {"claimName": name}})
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
         attempt: int = 0, timeout: int = 0, files: str = "", claims: dict | None = None) -> tuple[JobKind, Launch]:
    """The job of one attempt at ``stage``: its kind and everything its manifest says (``files``: the
    store key of the working files' bundle, which each replica unpacks where its kernel runs;
    ``claims``: the names of the claims made for the run, by volume, which each replica mounts)."""
    settings = meta.get("settings", {})
    dist = settings.get("distributed", {})
    kind = kinds.get(dist.get("kind", "jobset"))
    name = job_name(run_id, stage, attempt)
    resources, pod, env, mounts = pod_parts(meta, claims)
    job = {"store": store_url, "run_id": run_id, "stage": stage, "parameters": parameters,
           "world_size": meta["workers"], "coordinator": kind.coordinator(name), "timeout": timeout, "files": files,
           "pods_per_job": 1 if kind.one_job_per_replica else meta["workers"], **_install(meta)}
    job_index = {"fieldRef": {"fieldPath": f"metadata.labels['{JOB_INDEX_LABEL}']"}}
    env = [{"name": JOB_ENV, "value": json.dumps(job, sort_keys=True)},
           {"name": JOB_INDEX_ENV, "valueFrom": job_index}] + env
    if store_url.startswith("s3://"):
        from ..store.s3 import ENDPOINT_ENV, S3Settings

        endpoint = S3Settings.configured_endpoint()  # the launcher's own: its replicas run beside it
        if endpoint:
            env.append({"name": ENDPOINT_ENV, "value": endpoint})
    labels = {**MANAGED_BY, "jupyter-pipeline/run": label_value(run_id), "jupyter-pipeline/stage": label_value(stage),
              **meta["options"].get("labels", {})}
    annotations = dict(meta["options"].get("annotations", {}))
    if dist.get("scheduler") == "volcano":
        annotations[VOLCANO_GROUP_ANNOTATION] = name
    return kind, Launch(name=name, namespace=namespace, workers=meta["workers"], image=image, env=env,
                        resources=resources, pod=pod, mounts=mounts, labels=labels, annotations=annotations,
                        scheduler=dist.get("scheduler"), queue=dist.get("queue"),
                        runtime=dist.get("runtime", DEFAULT_RUNTIME))


def _install(meta: dict) -> dict:
    """What each replica installs before it runs the stage: the packages (and indexes) the stage's
    component installs (``tasks.notebook_json`` keeps them in the launch metadata)."""
    install = meta.get("install") or {}
    if not install.get("packages"):
        return {}
    return {"packages": list(install["packages"]), "pip_index_urls": list(install.get("pip_index_urls") or [])}


def manifests(kind: JobKind, launch: Launch) -> list[dict]:
    """What to create, in order: Volcano's PodGroup first when it schedules the gang, then the job."""
    return ([render_podgroup(launch)] if launch.scheduler == "volcano" else []) + [kind.render(launch)]
