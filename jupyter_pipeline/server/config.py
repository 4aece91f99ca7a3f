"""Settings of the server extension, as traitlets (``c.JupyterPipeline.store = ...``).

The store, Kubeflow host, namespace and default image are resolved by
:class:`jupyter_pipeline.settings.Settings` like everywhere else: a value sent by the browser, then
the notebook's setting, the environment, these traitlets, the user config file, the in-cluster
defaults and the built-in default. The traitlets hold only what ``jupyter_server_config.py`` sets.
"""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import urlparse, urlunparse

from traitlets import Integer, Unicode, default
from traitlets.config import Configurable

from ..settings import DEFAULT_STORE, Settings


def _env_int(name: str, fallback: int) -> int:
    try:
        return int(os.environ[name])
    except (KeyError, ValueError):
        return fallback


class JupyterPipeline(Configurable):
    """Configuration of the jupyter-pipeline server extension."""

    store = Unicode(
        config=True,
        help="Artifact store for runs started from Jupyter and listed by the REST API: a folder "
             "(relative paths are relative to the server's root directory) or s3://bucket/prefix. "
             "$JUPYTER_PIPELINE_STORE wins over it; without either, the user config file, then ./.pipeline-store.",
    )
    kfp_host = Unicode(
        config=True,
        help="Kubeflow Pipelines endpoint for the 'kfp' target. $JUPYTER_PIPELINE_KFP_HOST or "
             "$KF_PIPELINES_ENDPOINT win over it; without any, the user config file, then inside a "
             "Kubernetes pod the in-cluster endpoint.",
    )
    namespace = Unicode(
        config=True,
        help="Kubeflow profile namespace for the 'kfp' target. $JUPYTER_PIPELINE_NAMESPACE wins over it; "
             "without either, the user config file, then inside a pod the pod's namespace.",
    )
    default_image = Unicode(
        config=True,
        help="Container image for stages on Kubeflow when neither the stage nor the notebook sets one. "
             "$JUPYTER_PIPELINE_IMAGE wins over it; without either, the user config file, then inside a "
             "pod the notebook server's own image, then the built-in default.",
    )
    max_concurrent_runs = Integer(
        config=True,
        help="Runs this server drives at the same time; a further start is refused (429) until one "
             "ends. Default: $JUPYTER_PIPELINE_MAX_RUNS, else 2.",
    )
    workers = Integer(
        config=True,
        help="Stages of one local run that execute at the same time (0: one per CPU core). "
             "Default: $JUPYTER_PIPELINE_WORKERS, else 0.",
    )

    @default("max_concurrent_runs")
    def _default_max_concurrent_runs(self):
        return max(1, _env_int("JUPYTER_PIPELINE_MAX_RUNS", 2))

    @default("workers")
    def _default_workers(self):
        return max(0, _env_int("JUPYTER_PIPELINE_WORKERS", 0))

    def server_values(self) -> dict:
        """The settings these traitlets set, by setting name (unset ones left out)."""
        values = {"store": self.store, "kfp_host": self.kfp_host, "namespace": self.namespace,
                  "image": self.default_image}
        return {k: v for k, v in values.items() if v}

    def settings(self, flags: dict | None = None, notebook: dict | None = None) -> Settings:
        """The settings in effect for a request: ``flags`` sent by the browser, the notebook's own."""
        return Settings(flags=flags, notebook=notebook, server=self.server_values())

    def store_url(self, root_dir: str) -> str:
        """The store URL with a relative folder made absolute against the server's root."""
        url = _config_value(lambda: self.settings().get("store"), DEFAULT_STORE)
        scheme = urlparse(url).scheme
        if scheme in ("", "file") or len(scheme) == 1:
            raw = urlparse(url).path if scheme == "file" else url
            path = Path(os.path.expanduser(raw))
            return str(path if path.is_absolute() else (Path(root_dir) / path).resolve())
        return url

    def public(self, root_dir: str) -> dict:
        """The effective settings, safe to show in a browser (no credentials)."""
        settings = self.settings()
        return {
            "store": _without_credentials(self.store_url(root_dir)),
            "kfp_host": _without_credentials(_config_value(lambda: settings.get("kfp_host"), "")) or None,
            "namespace": _config_value(lambda: settings.get("namespace"), None),
            "default_image": _config_value(lambda: settings.get("image"), None),
            "max_concurrent_runs": self.max_concurrent_runs,
            "workers": self.workers or os.cpu_count() or 1,
        }


def _config_value(read, fallback):
    try:
        return read()
    except Exception:
        return fallback


def _without_credentials(url: str) -> str:
    """``s3://key:secret@host/b`` → ``s3://host/b``: a URL may carry user info; never show it."""
    parsed = urlparse(url)
    if parsed.username or parsed.password:
        host = parsed.hostname or ""
        if parsed.port:
            host += f":{parsed.port}"
        return urlunparse(parsed._replace(netloc=host))
    return url
