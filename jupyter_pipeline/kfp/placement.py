"""Where and how a stage's task runs on Kubernetes: resources, GPUs, node selection, secrets,
retries, and the pod options of its tags and the notebook's settings (volumes, environment,
secrets, labels, annotations, node selector, tolerations, ``/dev/shm``, image pull secrets).

Everything here is applied to a ``PipelineTask`` through the kfp DSL and ``kfp.kubernetes``
(kfp-kubernetes), so it lands in the compiled spec's container (resources, env) and platform spec.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..notebook.pipeline import Stage
from ..settings import KUBEFLOW_S3_SECRET

#: The Kubernetes resource NVIDIA's device plugin advertises; KFP uses the accelerator type as it.
GPU_RESOURCE = "nvidia.com/gpu"
#: Label NVIDIA's GPU feature discovery (GPU operator) puts on every GPU node.
DEFAULT_GPU_NODE_SELECTOR = {"nvidia.com/gpu.present": "true"}
#: Label whose value names the GPU model, for ``gpu:N:TYPE`` (GKE users: cloud.google.com/gke-accelerator).
DEFAULT_GPU_TYPE_LABEL = "nvidia.com/gpu.product"
#: KFP's own MinIO credentials secret (in every namespace of a standard install) and its keys.
DEFAULT_SECRET = KUBEFLOW_S3_SECRET
DEFAULT_SECRET_KEYS = {"accesskey": "AWS_ACCESS_KEY_ID", "secretkey": "AWS_SECRET_ACCESS_KEY"}
#: Extra seconds the pod gets beyond a stage's ``timeout:`` before Kubernetes kills it; within
#: the timeout the stage runner stops the notebook itself and still uploads the executed notebook.
TIMEOUT_GRACE_SECONDS = 120


@dataclass(frozen=True)
class Placement:
    """Cluster-side settings shared by every stage of a compiled pipeline."""

    gpu_node_selector: dict = field(default_factory=lambda: dict(DEFAULT_GPU_NODE_SELECTOR))
    gpu_type_label: str = DEFAULT_GPU_TYPE_LABEL
    node_selector: dict = field(default_factory=dict)  # every stage (e.g. a node pool)
    secret: str | None = DEFAULT_SECRET  # None: no secret (credentials come from elsewhere)
    secret_keys: dict = field(default_factory=lambda: dict(DEFAULT_SECRET_KEYS))
    tolerations: tuple = ()  # every stage, like node_selector (see pod.toleration_entry)
    image_pull_secrets: tuple = ()  # every task
    #: Claims every stage mounts: existing ones {"name", "mount_path"}, and per-run ones ("new": true)
    #: whose claim name the pipeline's PVC task gives (see ``volume_names``).
    volumes: tuple = ()

    @classmethod
    def from_settings(cls, settings: dict) -> "Placement":
        """From the notebook's ``metadata.jupyter_pipeline`` (keys documented in CONTRIBUTING.md)."""
        values = {}
        if "gpu_node_selector" in settings:
            values["gpu_node_selector"] = dict(settings["gpu_node_selector"] or {})
        if settings.get("gpu_type_label"):
            values["gpu_type_label"] = settings["gpu_type_label"]
        if "node_selector" in settings:
            values["node_selector"] = dict(settings["node_selector"] or {})
        if "secret" in settings:
            values["secret"] = settings["secret"] or None
        if settings.get("secret_keys"):
            values["secret_keys"] = dict(settings["secret_keys"])
        values["tolerations"] = tuple(settings.get("tolerations") or ())
        values["image_pull_secrets"] = tuple(settings.get("image_pull_secrets") or ())
        values["volumes"] = tuple(settings.get("volumes") or ())
        return cls(**values)


def apply(task, stage: Stage, placement: Placement, claims: dict | None = None) -> None:
    """Set ``stage``'s options on its ``task``; non-GPU stages get no GPU and no GPU toleration.
    ``claims`` names the claims of the notebook's per-run volumes (by volume name): without it, as
    for kfp.local, they are not mounted."""
    from kfp import kubernetes

    # A stage that mounts a volume made for this run cannot be taken from the cache: its files
    # would be missing from the new claim.
    per_run = claims is not None and any(v.get("new") for v in placement.volumes)
    if stage.options.workers > 1:  # the task launches the replicas, which get the stage's resources
        return launcher(task, stage, placement, cache=bool(stage.options.cache) and not per_run)
    opts = stage.options
    task.set_display_name(stage.name)
    if opts.cpu:
        task.set_cpu_request(str(opts.cpu)).set_cpu_limit(str(opts.cpu))
    if opts.memory:
        task.set_memory_request(str(opts.memory)).set_memory_limit(str(opts.memory))
    if opts.retries:
        task.set_retry(num_retries=int(opts.retries))
    if opts.timeout:
        kubernetes.set_timeout(task, int(opts.timeout) + TIMEOUT_GRACE_SECONDS)
    task.set_caching_options(bool(opts.cache) and not per_run)
    _node_placement(task, placement, opts.node_selector, opts.tolerations)
    if opts.gpu:
        gpu_type = opts.gpu_type or ""
        # A resource name ("amd.com/gpu") is the accelerator itself; a model name ("nvidia-tesla-t4")
        # selects nodes by label and uses NVIDIA's resource.
        resource = gpu_type if "/" in gpu_type else GPU_RESOURCE
        task.set_accelerator_type(resource).set_accelerator_limit(int(opts.gpu))
        if resource == GPU_RESOURCE:  # the selector's labels are NVIDIA's (GPU operator)
            for key, value in sorted(placement.gpu_node_selector.items()):
                kubernetes.add_node_selector(task, label_key=key, label_value=str(value))
        if gpu_type and "/" not in gpu_type:
            kubernetes.add_node_selector(task, label_key=placement.gpu_type_label, label_value=gpu_type)
        kubernetes.add_toleration(task, key=resource, operator="Exists", effect="NoSchedule")
    if placement.secret:
        kubernetes.use_secret_as_env(task, secret_name=placement.secret, secret_key_to_env=dict(placement.secret_keys))
    _pod_options(task, stage, placement, claims)


def _node_placement(task, placement: Placement, node_selector: dict, tolerations) -> None:
    """Node selector and tolerations: the notebook's for every task, then the stage's own."""
    from kfp import kubernetes

    for key, value in sorted({**placement.node_selector, **node_selector}.items()):
        kubernetes.add_node_selector(task, label_key=key, label_value=str(value))
    for t in list(placement.tolerations) + [t for t in tolerations if t not in placement.tolerations]:
        kubernetes.add_toleration(task, key=t["key"], operator=t["operator"], value=t.get("value"),
                                  effect=t.get("effect"), toleration_seconds=t.get("tolerationSeconds"))
    if placement.image_pull_secrets:
        kubernetes.set_image_pull_secrets(task, list(placement.image_pull_secrets))


def _pod_options(task, stage: Stage, placement: Placement, claims: dict | None) -> None:
    """Volumes, environment, secrets, pod metadata and ``/dev/shm`` of the stage's pod."""
    from kfp import kubernetes

    opts = stage.options
    for name, value in sorted(opts.env.items()):
        task.set_env_variable(name, value)
    for volume in list(placement.volumes) + list(opts.volumes):
        if not volume.get("new"):
            kubernetes.mount_pvc(task, pvc_name=volume["name"], mount_path=volume["mount_path"],
                                 sub_path=volume.get("sub_path", ""))
        elif claims is not None:
            kubernetes.mount_pvc(task, pvc_name=claims[volume["name"]], mount_path=volume["mount_path"])
    as_env: dict[str, dict] = {}
    for s in opts.secrets:
        if "path" in s:
            kubernetes.use_secret_as_volume(task, secret_name=s["name"], mount_path=s["path"])
        else:
            as_env.setdefault(s["name"], {})[s["key"]] = s["env"]
    for name, keys in as_env.items():
        kubernetes.use_secret_as_env(task, secret_name=name, secret_key_to_env=keys)
    for key, value in sorted(opts.labels.items()):
        kubernetes.add_pod_label(task, label_key=key, label_value=value)
    for key, value in sorted(opts.annotations.items()):
        kubernetes.add_pod_annotation(task, annotation_key=key, annotation_value=value)
    if opts.shm:
        kubernetes.empty_dir_mount(task, volume_name="dshm", mount_path="/dev/shm", medium="Memory",
                                   size_limit=opts.shm)


def helper(task, name: str, placement: Placement) -> None:
    """Settings of the small bookkeeping tasks (a map stage's plan and gather, a sweep variant's
    link, the exit task): the store secret, the notebook-wide node selector, tolerations and image
    pull secrets; no GPU, no resources, no cache (they read and write the run's folder, whose
    state a cached result would not reflect)."""
    from kfp import kubernetes

    task.set_display_name(name)
    task.set_caching_options(False)
    _node_placement(task, placement, {}, ())
    if placement.secret:
        kubernetes.use_secret_as_env(task, secret_name=placement.secret, secret_key_to_env=dict(placement.secret_keys))


def launcher(task, stage: Stage, placement: Placement, cache: bool) -> None:
    """Settings of a ``workers:`` stage's KFP task, which only launches and watches the replicas
    (:mod:`.gang`): the store secret and the notebook-wide node selector; no GPU or resources (the
    replicas get the stage's, :func:`.gangjob.pod_parts`, and mount the volumes, the run's claims
    included), no KFP retries (a retry starts all replicas again, which the launcher does)."""
    from kfp import kubernetes

    task.set_display_name(f"{stage.name} ({stage.options.workers} workers)")
    task.set_caching_options(cache)
    if stage.options.timeout:
        kubernetes.set_timeout(task, int(stage.options.timeout) + TIMEOUT_GRACE_SECONDS)
    for key, value in sorted(placement.node_selector.items()):
        kubernetes.add_node_selector(task, label_key=key, label_value=str(value))
    if placement.secret:
        kubernetes.use_secret_as_env(task, secret_name=placement.secret, secret_key_to_env=dict(placement.secret_keys))
