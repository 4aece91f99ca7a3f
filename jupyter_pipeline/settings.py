"""Settings that live outside a notebook's cells, resolved in one place with one precedence.

First match wins:

1. a command-line flag (or the value a browser sent to the server);
2. the notebook's own setting (``metadata.jupyter_pipeline``);
3. the environment (``JUPYTER_PIPELINE_*``, ``KF_PIPELINES_ENDPOINT``/``_TOKEN``/``_COOKIE``);
4. the Jupyter server's traitlets (``c.JupyterPipeline.*``), for what the server starts;
5. the user config file (``~/.config/jupyter-pipeline/config.json`` or ``$JUPYTER_PIPELINE_CONFIG``);
6. inside a Kubernetes pod, what the pod tells (:mod:`jupyter_pipeline.cluster`);
7. the built-in default.

Every front (CLI, magics, server extension, compiler, deploy) builds a :class:`Settings` from the
sources it has and asks it; none reads the environment or the config file itself. Each known
setting is a :class:`Setting` in :data:`settings`. Store credentials are not settings: the S3
store reads them from the environment (:mod:`jupyter_pipeline.store.s3`) and pods from a secret.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, NamedTuple

from . import __version__, cluster
from .exceptions import PipelineError
from .registry import Registry

CONFIG_FILE_ENV = "JUPYTER_PIPELINE_CONFIG"
DEFAULT_STORE = "./.pipeline-store"
#: The image stages run in when nothing names one: built from the repository's Dockerfile. It is
#: not published by this project; whoever runs on a cluster builds and pushes it (a warning says so).
DEFAULT_IMAGE = f"ghcr.io/jupyter-pipeline/jupyter-pipeline:{__version__}"
#: Kubeflow Pipelines' object store as its pods reach it: the ``minio-service`` Service, which keeps
#: its name (and KFP's ``mlpipeline-minio-artifact`` secret its keys) since SeaweedFS replaced MinIO.
KUBEFLOW_S3_ENDPOINT = "http://minio-service.kubeflow:9000"
#: The Kubernetes secret with the store's credentials that Kubeflow Pipelines itself uses.
KUBEFLOW_S3_SECRET = "mlpipeline-minio-artifact"
#: The store of pipelines on Kubeflow when none is set: a folder of the pipeline root's bucket, which
#: exists on every install, because Kubeflow's per-namespace users (SeaweedFS, KFP 2.15+) may read,
#: write and list but not create buckets.
KUBEFLOW_STORE = "s3://mlpipeline/jupyter-pipeline"

#: Where a value came from, in order of precedence.
SOURCES = ("flag", "notebook", "environment", "server", "config file", "in-cluster", "default")


class ConfigError(PipelineError):
    """Raised when the user config file exists but cannot be read as a JSON object."""


@dataclass(frozen=True)
class Setting:
    """One setting: the environment variables that set it, its in-cluster and built-in defaults."""

    name: str
    help: str
    env: tuple[str, ...] = ()
    default: Any = None
    in_cluster: Callable[[], Any] | None = None
    notebook: bool = True  # whether a notebook may set it
    secret: bool = False  # never shown (tokens, cookies)
    is_list: bool = False  # a list of strings (whitespace-separated in the environment)


settings: Registry[Setting] = Registry("setting")


class Resolved(NamedTuple):
    """A setting's value and the source it came from (one of :data:`SOURCES`)."""

    value: Any
    source: str


def config_file() -> Path:
    """The user config file (JSON object of setting names to values)."""
    env = os.environ.get(CONFIG_FILE_ENV)
    if env:
        return Path(env)
    base = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return Path(base) / "jupyter-pipeline" / "config.json"


def read_config() -> dict:
    """The user config file's content; ``{}`` when there is none."""
    path = config_file()
    try:
        value = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise ConfigError(f"Cannot read the config file {path}: {exc}.") from None
    if not isinstance(value, dict):
        raise ConfigError(f"The config file {path} must hold a JSON object of settings, e.g. "
                          '{"store": "s3://bucket/prefix"}.')
    return value


def _given(value) -> bool:
    return value is not None and value != "" and value != []


class Settings:
    """The settings in effect for one action, from the sources that action has.

    ``flags`` are command-line values (``None`` = not given), ``notebook`` the notebook's
    ``metadata.jupyter_pipeline``, ``server`` the server's traitlets that were set. ``environ``
    defaults to ``os.environ``; the config file is read on first need.
    """

    def __init__(self, flags: Mapping | None = None, notebook: Mapping | None = None, server: Mapping | None = None,
                 environ: Mapping | None = None, in_cluster: bool = True):
        self.flags = dict(flags or {})
        self.notebook = dict(notebook or {})
        self.server = dict(server or {})
        self.environ = os.environ if environ is None else environ
        self.in_cluster = in_cluster
        self._config: dict | None = None
        self._resolved: dict[str, Resolved] = {}

    @property
    def config(self) -> dict:
        if self._config is None:
            self._config = read_config()
        return self._config

    def resolve(self, name: str) -> Resolved:
        """The value of setting ``name`` and where it came from."""
        if name not in self._resolved:
            self._resolved[name] = self._resolve(settings.get(name))
        return self._resolved[name]

    def _resolve(self, s: Setting) -> Resolved:
        candidates = [("flag", lambda: self.flags.get(s.name))]
        if s.notebook:
            candidates.append(("notebook", lambda: self.notebook.get(s.name)))
        for var in s.env:
            candidates.append(("environment", lambda var=var: self._from_env(s, var)))
        candidates += [("server", lambda: self.server.get(s.name)),
                       ("config file", lambda: self.config.get(s.name))]
        if s.in_cluster is not None and self.in_cluster:
            candidates.append(("in-cluster", s.in_cluster))
        for source, read in candidates:
            value = read()
            if _given(value):
                return Resolved(self._typed(s, value), source)
        return Resolved(s.default() if callable(s.default) else s.default, "default")

    def _from_env(self, s: Setting, var: str):
        value = (self.environ.get(var) or "").strip()
        return value.split() if s.is_list and value else value

    @staticmethod
    def _typed(s: Setting, value):
        if s.is_list:
            return value.split() if isinstance(value, str) else [str(v) for v in value]
        return value

    def get(self, name: str):
        """The value of setting ``name``."""
        return self.resolve(name).value

    def __getitem__(self, name: str):
        return self.get(name)

    def source(self, name: str) -> str:
        return self.resolve(name).source

    def public(self, names=None) -> dict:
        """``{name: {"value", "source"}}`` of the non-secret settings (secret ones say only whether set)."""
        out = {}
        for name in names or list(settings):
            r = self.resolve(name)
            value = ("(set)" if _given(r.value) else None) if settings.get(name).secret else r.value
            out[name] = {"value": value, "source": r.source}
        return out


def from_options(options: Mapping, notebook: Mapping | None = None) -> Settings:
    """The settings of a run target's ``options``: its values of known settings are flags, and
    ``server_settings`` (the server's traitlets, when the server started the run) the server's."""
    return Settings(flags={name: options.get(name) for name in settings}, notebook=notebook,
                    server=options.get("server_settings"))


def cluster_store(resolved: Settings) -> str:
    """The store the cluster's pods use (stages on Kubeflow, ``deploy``'s model server): the
    ``kfp_store`` setting, else an ``s3://`` ``store`` setting, else :data:`KUBEFLOW_STORE`."""
    store = resolved.get("kfp_store")
    if store:
        return store
    store = resolved.get("store")
    return store if str(store).startswith("s3://") else KUBEFLOW_STORE


def _register(*items: Setting) -> None:
    for item in items:
        settings.register(item.name, item)


_register(
    Setting("store", "the store URL: a folder or s3://bucket/prefix", ("JUPYTER_PIPELINE_STORE",), DEFAULT_STORE),
    Setting("kfp_host", "the Kubeflow Pipelines API endpoint",
            ("JUPYTER_PIPELINE_KFP_HOST", "KF_PIPELINES_ENDPOINT"), in_cluster=cluster.kfp_host, notebook=False),
    Setting("kfp_token", "a bearer token for the Kubeflow Pipelines API",
            ("JUPYTER_PIPELINE_KFP_TOKEN", "KF_PIPELINES_TOKEN"), in_cluster=cluster.kfp_token, notebook=False,
            secret=True),
    Setting("kfp_cookie", "the session cookie of a multi-user Kubeflow (authservice_session=...)",
            ("JUPYTER_PIPELINE_KFP_COOKIE", "KF_PIPELINES_COOKIE"), notebook=False, secret=True),
    Setting("namespace", "the Kubeflow profile namespace", ("JUPYTER_PIPELINE_NAMESPACE",),
            in_cluster=cluster.namespace),
    Setting("experiment", "the Kubeflow experiment runs go to", ("JUPYTER_PIPELINE_EXPERIMENT",), "Default"),
    Setting("image", "the container image of stages on Kubeflow", ("JUPYTER_PIPELINE_IMAGE",), DEFAULT_IMAGE,
            in_cluster=cluster.own_image),
    Setting("kfp_store", "the store the stages use on the cluster", ("JUPYTER_PIPELINE_KFP_STORE",)),
    # Not JUPYTER_PIPELINE_S3_ENDPOINT: that is where *this* process reaches the store (often a
    # port-forward), not where the cluster's pods do. Inside a pod the two are the same.
    Setting("s3_endpoint", "the S3 endpoint of the store as the cluster's pods reach it",
            ("JUPYTER_PIPELINE_KFP_S3_ENDPOINT",), KUBEFLOW_S3_ENDPOINT, in_cluster=cluster.s3_endpoint),
    Setting("store_patience", "seconds a write that must not be lost keeps being tried while the store is down",
            ("JUPYTER_PIPELINE_STORE_PATIENCE",), 120.0, notebook=False),
    Setting("packages", "pip requirements every stage installs on Kubeflow", ("JUPYTER_PIPELINE_PACKAGES",),
            list, is_list=True),
    Setting("pip_index_urls", "package indexes for those requirements (the first replaces PyPI)",
            ("JUPYTER_PIPELINE_PIP_INDEX_URLS",), list, is_list=True),
)

__all__ = ["Settings", "from_options", "Setting", "Resolved", "settings", "read_config", "config_file", "DEFAULT_IMAGE",
           "DEFAULT_STORE", "KUBEFLOW_STORE", "KUBEFLOW_S3_ENDPOINT", "KUBEFLOW_S3_SECRET", "SOURCES", "ConfigError",
           "cluster_store"]
