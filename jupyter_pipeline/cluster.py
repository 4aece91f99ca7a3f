"""What the Kubernetes pod this process runs in tells it: namespace, Kubeflow Pipelines endpoint and
token, and the image of the pod's own container.

These are the in-cluster defaults of :mod:`jupyter_pipeline.settings`, used only when nothing else
names a value. They follow what ``kfp.Client()`` does inside a pod: the in-cluster service
``ml-pipeline.kubeflow.svc.cluster.local:8888`` and the projected service-account token that
Kubeflow's ``access-ml-pipeline`` PodDefault mounts. The pod's image is read from the Kubernetes
API with the pod's service account (``GET /api/v1/namespaces/NS/pods/NAME``), as Kale does to run
steps in the notebook's own image.
"""

from __future__ import annotations

import json
import os
import re
import ssl
import urllib.request
from pathlib import Path

#: Where Kubernetes mounts a pod's service-account token, CA certificate and namespace.
SERVICE_ACCOUNT_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"
#: The projected token for the KFP API (Kubeflow's PodDefault), and the variable naming another path.
KFP_TOKEN_PATH = "/var/run/secrets/kubeflow/pipelines/token"
KFP_TOKEN_PATH_ENV = "KF_PIPELINES_SA_TOKEN_PATH"
#: The KFP API inside the cluster, as ``kfp.Client`` addresses it (namespace of a standard install).
KFP_IN_CLUSTER_HOST = "http://ml-pipeline.kubeflow.svc.cluster.local:8888"
#: Containers injected beside the notebook's own (service mesh), never the notebook's image.
SIDECARS = frozenset({"istio-proxy", "istio-init", "linkerd-proxy"})
API_TIMEOUT_SECONDS = 3.0

_image_cache: dict[tuple, str | None] = {}


def _read(path: str | os.PathLike) -> str | None:
    try:
        return Path(path).read_text().strip() or None
    except OSError:
        return None


def in_pod() -> bool:
    """Whether this process runs in a Kubernetes pod with a service account."""
    return bool(os.environ.get("KUBERNETES_SERVICE_HOST")) and Path(SERVICE_ACCOUNT_DIR, "token").is_file()


def namespace() -> str | None:
    """The pod's namespace (a Kubeflow profile's namespace in a Kubeflow notebook)."""
    return _read(Path(SERVICE_ACCOUNT_DIR, "namespace")) if in_pod() else None


def kfp_host() -> str | None:
    """The in-cluster KFP endpoint, inside a pod."""
    return KFP_IN_CLUSTER_HOST if in_pod() else None


def s3_endpoint() -> str | None:
    """Inside a pod, the S3 endpoint this pod's store uses (any pod of the cluster reaches it too)."""
    if not in_pod():
        return None
    from .store.s3 import S3Settings

    return S3Settings.configured_endpoint()


def kfp_token() -> str | None:
    """The projected KFP service-account token, when the pod has one (read each time: it rotates)."""
    if not in_pod():
        return None
    return _read(os.environ.get(KFP_TOKEN_PATH_ENV) or KFP_TOKEN_PATH)


def api_url() -> str:
    """The Kubernetes API server as seen from inside the pod."""
    host = os.environ["KUBERNETES_SERVICE_HOST"]
    port = os.environ.get("KUBERNETES_SERVICE_PORT", "443")
    return f"https://[{host}]:{port}" if ":" in host else f"https://{host}:{port}"


def pod_name() -> str | None:
    """The pod's name: its hostname, unless the pod spec set another."""
    return os.environ.get("HOSTNAME") or None


def own_image() -> str | None:
    """The image of this pod's main container, read from the Kubernetes API; None outside a pod
    or when the service account may not read its own pod."""
    if not in_pod():
        return None
    ns, name = namespace(), pod_name()
    if not ns or not name:
        return None
    key = (api_url(), ns, name)
    if key not in _image_cache:
        _image_cache[key] = _container_image(_get_pod(key[0], ns, name), name)
    return _image_cache[key]


def _get_pod(base: str, ns: str, name: str) -> dict | None:
    token = _read(Path(SERVICE_ACCOUNT_DIR, "token"))
    request = urllib.request.Request(f"{base}/api/v1/namespaces/{ns}/pods/{name}",
                                     headers={"Authorization": f"Bearer {token}", "Accept": "application/json"})
    ca = Path(SERVICE_ACCOUNT_DIR, "ca.crt")
    context = ssl.create_default_context(cafile=str(ca)) if ca.is_file() else None
    try:
        with urllib.request.urlopen(request, timeout=API_TIMEOUT_SECONDS, context=context) as response:
            return json.load(response)
    except (OSError, ValueError):  # refused (403), unreachable, not JSON: no in-cluster image
        return None


def _container_image(pod: dict | None, name: str) -> str | None:
    """The notebook's container: named like its pod without the ordinal (Kubeflow notebooks are
    StatefulSets: pod ``NB-0``, container ``NB``), else the only one that is not a sidecar."""
    containers = [c for c in ((pod or {}).get("spec") or {}).get("containers") or [] if c.get("image")]
    base = re.sub(r"-\d+$", "", name)
    named = [c for c in containers if c.get("name") == base]
    own = named or [c for c in containers if c.get("name") not in SIDECARS]
    return own[0]["image"] if own else None


__all__ = ["in_pod", "namespace", "kfp_host", "kfp_token", "own_image"]
