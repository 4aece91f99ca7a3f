"""Kubernetes manifests that run ``jupyter-pipeline serve`` in a cluster, and applying them.

:func:`render` builds either a Deployment + Service or a KServe ``InferenceService`` whose
predictor is a custom container running the same server, or, given the model's format, a
``predictor.model`` naming its KServe ``modelFormat`` (``sklearn``, ``xgboost``, ``lightgbm``,
``onnx``, ``pytorch``, ``keras``) served by a ``ServingRuntime`` of this project's image, rendered
beside it (the server reads the model from the store itself: no ``storageUri``). Store credentials come from a
Kubernetes secret (default: Kubeflow Pipelines' own ``mlpipeline-minio-artifact``), never inline;
probes use the OIP v2 health endpoints. The server listens for REST on 8080 and for the OIP gRPC
service on 8081; the Service exposes both. KServe routes one port of a custom predictor, named
``http1`` or ``h2c`` (gRPC); its ``protocolVersion`` field belongs to model-format predictors only.
:func:`apply` creates each object, or patches it when it
exists, through the ``kubernetes`` client; each kind's calls come from :data:`appliers`.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Callable
from urllib.parse import urlparse

from . import __version__
from .exceptions import PipelineError
from .registry import Registry
from .settings import DEFAULT_IMAGE, KUBEFLOW_S3_ENDPOINT, KUBEFLOW_S3_SECRET

DEFAULT_SECRET = KUBEFLOW_S3_SECRET
GPU_NODE_LABEL = "cloud.google.com/gke-accelerator"  # the label kfp's accelerator type selects on
PORT = 8080
GRPC_PORT = 8081  # the Open Inference Protocol's gRPC service (KServe's gRPC port too)


class DeployError(PipelineError):
    """Raised when manifests cannot be rendered or the cluster rejects applying them."""

    http_status = 502


@dataclass
class DeploySpec:
    """What to deploy: one model (``NAME`` or ``NAME:VERSION``) and how to run its server."""

    model: str
    store: str
    namespace: str = "default"
    name: str | None = None
    image: str = DEFAULT_IMAGE
    replicas: int = 1
    cpu: str = "1"
    memory: str = "2Gi"
    gpu: int = 0
    gpu_type: str | None = None
    secret: str = DEFAULT_SECRET
    secret_access_key: str = "accesskey"
    secret_secret_key: str = "secretkey"
    s3_endpoint: str | None = None
    kserve: bool = False
    kserve_grpc: bool = False  # KServe routes one port per predictor: gRPC (h2c) instead of HTTP
    model_format: str | None = None  # with kserve: the model's KServe modelFormat (meta.json's format)
    serve_args: list[str] = field(default_factory=list)  # extra `serve` options (--no-cache, ...)

    @property
    def resource_name(self) -> str:
        if self.name:
            return self.name
        base = re.sub(r"[^a-z0-9-]+", "-", self.model.split(":")[0].lower()).strip("-") or "model"
        return f"{base}-server"[:63].rstrip("-")


def _labels(spec: DeploySpec) -> dict:
    return {"app.kubernetes.io/name": "jupyter-pipeline-serve",
            "app.kubernetes.io/instance": spec.resource_name,
            "app.kubernetes.io/version": __version__,
            "jupyter-pipeline/model": spec.model.split(":")[0]}


def _env(spec: DeploySpec) -> list[dict]:
    env = [{"name": "KERAS_BACKEND", "value": "jax"}]
    if urlparse(spec.store).scheme == "s3":
        # The endpoint as the pod reaches it (the s3_endpoint setting), not this machine's.
        env.append({"name": "JUPYTER_PIPELINE_S3_ENDPOINT", "value": spec.s3_endpoint or KUBEFLOW_S3_ENDPOINT})
        for var, key in (("AWS_ACCESS_KEY_ID", spec.secret_access_key),
                         ("AWS_SECRET_ACCESS_KEY", spec.secret_secret_key)):
            env.append({"name": var, "valueFrom": {"secretKeyRef": {"name": spec.secret, "key": key}}})
    return env


def _container(spec: DeploySpec, name: str) -> dict:
    resources = {"requests": {"cpu": spec.cpu, "memory": spec.memory}, "limits": {"memory": spec.memory}}
    if spec.gpu:
        resources["limits"]["nvidia.com/gpu"] = str(spec.gpu)
    probe = {"httpGet": {"path": "/v2/health/ready", "port": PORT}, "periodSeconds": 5, "failureThreshold": 3}
    return {
        "name": name,
        "image": spec.image,
        "command": ["jupyter-pipeline"],
        "args": ["serve", "--store", spec.store, "--host", "0.0.0.0", "--port", str(PORT), "--grpc-port", str(GRPC_PORT),
                 "--model", spec.model, *spec.serve_args],
        "ports": _ports(spec),
        "env": _env(spec),
        "resources": resources,
        "readinessProbe": probe,
        # Loading and compiling a model takes seconds: only liveness waits for the process.
        "livenessProbe": {"httpGet": {"path": "/v2/health/live", "port": PORT}, "periodSeconds": 10,
                          "failureThreshold": 3},
    }


def _ports(spec: DeploySpec) -> list[dict]:
    """The container's ports: HTTP and gRPC; under KServe the one it routes (``http1`` or ``h2c``)."""
    if spec.kserve:
        return [{"name": "h2c", "containerPort": GRPC_PORT, "protocol": "TCP"} if spec.kserve_grpc
                else {"name": "http1", "containerPort": PORT, "protocol": "TCP"}]
    return [{"name": "http", "containerPort": PORT, "protocol": "TCP"},
            {"name": "grpc", "containerPort": GRPC_PORT, "protocol": "TCP"}]


def _placement(spec: DeploySpec) -> dict:
    out: dict = {}
    if spec.gpu:
        out["tolerations"] = [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
        if spec.gpu_type:
            out["nodeSelector"] = {GPU_NODE_LABEL: spec.gpu_type}
    return out


#: The ServingRuntime ``deploy --kserve`` renders for a model of a known format, and the formats it serves.
RUNTIME_NAME = "jupyter-pipeline"
MODEL_FORMATS = ("sklearn", "xgboost", "lightgbm", "onnx", "pytorch", "keras")


def _serving_runtime(spec: DeploySpec, meta: dict) -> dict:
    """A ServingRuntime running ``serve`` from this project's image for every format it loads;
    never auto-selected, so KServe's own runtimes keep the InferenceServices that do not name it."""
    container = _container(spec, "kserve-container")
    container["args"] = container["args"][:1] + ["--host", "0.0.0.0", "--port", str(PORT),
                                                 "--grpc-port", str(GRPC_PORT)]
    for key in ("env", "resources"):  # per model, in the InferenceService
        container.pop(key)
    return {"apiVersion": "serving.kserve.io/v1alpha1", "kind": "ServingRuntime",
            "metadata": {**meta, "name": RUNTIME_NAME},
            "spec": {"supportedModelFormats": [{"name": f, "autoSelect": False} for f in MODEL_FORMATS],
                     "protocolVersions": ["v2", "grpc-v2"], "containers": [container]}}


def _model_predictor(spec: DeploySpec) -> dict:
    """``predictor.model``: the format, the runtime, and what differs per model (store, model, env, resources)."""
    container = _container(spec, "kserve-container")
    args = container["args"]
    return {"modelFormat": {"name": spec.model_format}, "runtime": RUNTIME_NAME,
            "protocolVersion": "grpc-v2" if spec.kserve_grpc else "v2",
            "args": args[args.index("--store"):args.index("--host")] + args[args.index("--model"):],
            "env": container["env"], "resources": container["resources"]}


def render(spec: DeploySpec) -> list[dict]:
    """The manifests for ``spec``: [Deployment, Service], [InferenceService], or with a known model
    format [ServingRuntime, InferenceService]."""
    if not spec.model or not re.match(r"^[a-z0-9][a-z0-9_.-]{0,62}(:\d+)?$", spec.model):
        raise DeployError(f"Model {spec.model!r} is not a valid NAME or NAME:VERSION.")
    if urlparse(spec.store).scheme not in ("s3",):
        raise DeployError(f"The store {spec.store!r} is a local folder, which a pod cannot read: deploy needs an "
                          "s3:// store (MinIO or S3) reachable from the cluster; pass --store s3://BUCKET/PREFIX.")
    if spec.replicas < 0 or spec.gpu < 0:
        raise DeployError("--replicas and --gpu cannot be negative.")
    labels = _labels(spec)
    meta = {"name": spec.resource_name, "namespace": spec.namespace, "labels": dict(labels)}
    if spec.model_format is not None and spec.model_format not in MODEL_FORMATS:
        raise DeployError(f"Model format {spec.model_format!r} is not one this server runs "
                          f"({', '.join(MODEL_FORMATS)}).")
    if spec.kserve and spec.model_format:
        predictor = {"minReplicas": spec.replicas, "model": _model_predictor(spec), **_placement(spec)}
        return [_serving_runtime(spec, meta),
                {"apiVersion": "serving.kserve.io/v1beta1", "kind": "InferenceService",
                 "metadata": {**meta, "annotations": {"serving.kserve.io/enable-prometheus-scraping": "true"}},
                 "spec": {"predictor": predictor}}]
    if spec.kserve:
        predictor = {"minReplicas": spec.replicas, "containers": [_container(spec, "kserve-container")],
                     **_placement(spec)}
        return [{"apiVersion": "serving.kserve.io/v1beta1", "kind": "InferenceService",
                 "metadata": {**meta, "annotations": {"serving.kserve.io/enable-prometheus-scraping": "true"}},
                 "spec": {"predictor": predictor}}]
    selector = {"app.kubernetes.io/instance": spec.resource_name}
    deployment = {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": meta,
        "spec": {
            "replicas": spec.replicas,
            "selector": {"matchLabels": dict(selector)},
            "template": {
                "metadata": {"labels": dict(labels),
                             "annotations": {"prometheus.io/scrape": "true", "prometheus.io/port": str(PORT),
                                             "prometheus.io/path": "/metrics"}},
                "spec": {"containers": [_container(spec, "server")],
                         # Longer than the server's 30 s drain, so SIGTERM drains before SIGKILL.
                         "terminationGracePeriodSeconds": 45,
                         **_placement(spec)},
            },
        },
    }
    service = {"apiVersion": "v1", "kind": "Service", "metadata": {**meta, "labels": dict(labels)},
               "spec": {"type": "ClusterIP", "selector": dict(selector),
                        "ports": [{"name": "http", "port": PORT, "targetPort": "http", "protocol": "TCP"},
                                  {"name": "grpc", "port": GRPC_PORT, "targetPort": "grpc", "protocol": "TCP",
                                   "appProtocol": "kubernetes.io/h2c"}]}}
    return [deployment, service]


def to_yaml(manifests: list[dict]) -> str:
    import yaml

    return "---\n".join(yaml.safe_dump(m, sort_keys=False) for m in manifests)


# -- applying -------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Applier:
    """How to create and patch one kind: ``create(api, ns, body)``, ``patch(api, ns, name, body)``."""

    create: Callable
    patch: Callable


#: Appliers by ``kind``.
appliers: Registry[Applier] = Registry("Kubernetes kind")


def api_client(context: str | None = None):
    """A client from the kubeconfig (``context`` or its current one), or the in-cluster config."""
    from kubernetes import client, config

    try:
        return config.new_client_from_config(context=context)
    except Exception as first:
        try:
            config.load_incluster_config()
            return client.ApiClient()
        except config.ConfigException:
            raise DeployError(f"No Kubernetes configuration: {first}. Set KUBECONFIG or run inside a cluster, or "
                              "use --dry-run to print the manifests.") from None


def apply(manifests: list[dict], api=None) -> list[dict]:
    """Create each manifest, or patch it if it exists; return ``[{kind, name, namespace, action}]``."""
    from kubernetes.client.exceptions import ApiException

    api = api or api_client()
    results = []
    for body in manifests:
        kind, meta = body["kind"], body["metadata"]
        applier = appliers.get(kind)
        try:
            try:
                applier.create(api, meta["namespace"], body)
                action = "created"
            except ApiException as exc:
                if exc.status != 409:
                    raise
                applier.patch(api, meta["namespace"], meta["name"], body)
                action = "configured"
        except ApiException as exc:
            raise DeployError(f"Kubernetes refused {kind.lower()}/{meta['name']} in namespace {meta['namespace']}: "
                              f"{exc.status} {exc.reason}: {_api_message(exc)}") from None
        except OSError as exc:  # urllib3 connection errors are OSErrors underneath
            raise DeployError(f"Cannot reach the Kubernetes API server: {exc}.") from None
        results.append({"kind": kind, "name": meta["name"], "namespace": meta["namespace"], "action": action})
    return results


def _api_message(exc) -> str:
    try:
        return json.loads(exc.body).get("message") or exc.body
    except (TypeError, ValueError, AttributeError):
        return str(exc.body or "")


def _apps(api):
    from kubernetes import client

    return client.AppsV1Api(api)


def _core(api):
    from kubernetes import client

    return client.CoreV1Api(api)


def _custom(api):
    from kubernetes import client

    return client.CustomObjectsApi(api)


_KSERVE = ("serving.kserve.io", "v1beta1")

appliers.register("Deployment", Applier(
    create=lambda api, ns, body: _apps(api).create_namespaced_deployment(ns, body),
    patch=lambda api, ns, name, body: _apps(api).patch_namespaced_deployment(name, ns, body)))
appliers.register("Service", Applier(
    create=lambda api, ns, body: _core(api).create_namespaced_service(ns, body),
    patch=lambda api, ns, name, body: _core(api).patch_namespaced_service(name, ns, body)))
appliers.register("ServingRuntime", Applier(
    create=lambda api, ns, body: _custom(api).create_namespaced_custom_object(
        "serving.kserve.io", "v1alpha1", ns, "servingruntimes", body),
    patch=lambda api, ns, name, body: _custom(api).patch_namespaced_custom_object(
        "serving.kserve.io", "v1alpha1", ns, "servingruntimes", name, body)))
appliers.register("InferenceService", Applier(
    create=lambda api, ns, body: _custom(api).create_namespaced_custom_object(*_KSERVE, ns, "inferenceservices", body),
    patch=lambda api, ns, name, body: _custom(api).patch_namespaced_custom_object(
        *_KSERVE, ns, "inferenceservices", name, body)))
