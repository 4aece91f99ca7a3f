"""Settings of the server extension, as traitlets (``c.JupyterPipeline.store = ...``).

Every setting falls back to an environment variable, then to the user config file the CLI reads
(``~/.config/jupyter-pipeline/config.json``), then to a default, so the server, the CLI and the
magics agree on the store when nothing is configured.
"""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import urlparse, urlunparse

from traitlets import Integer, Unicode, default
from traitlets.config import Configurable

from ..store import DEFAULT_STORE, read_config


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
             "Default: $JUPYTER_PIPELINE_STORE, the CLI config file, then ./.pipeline-store.",
    )
    kfp_host = Unicode(
        config=True,
        help="Kubeflow Pipelines endpoint for the 'kfp' target. Default: $JUPYTER_PIPELINE_KFP_HOST, "
             "then $KF_PIPELINES_ENDPOINT, then the CLI config file's kfp_host.",
    )
    default_image = Unicode(
        config=True,
        help="Container image for stages on Kubeflow when neither the notebook nor the stage sets one. "
             "Default: $JUPYTER_PIPELINE_IMAGE, then the CLI config file's image.",
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

    @default("store")
    def _default_store(self):
        return os.environ.get("JUPYTER_PIPELINE_STORE") or _config_value("store") or DEFAULT_STORE

    @default("kfp_host")
    def _default_kfp_host(self):
        return (os.environ.get("JUPYTER_PIPELINE_KFP_HOST") or os.environ.get("KF_PIPELINES_ENDPOINT")
                or _config_value("kfp_host") or "")

    @default("default_image")
    def _default_default_image(self):
        return os.environ.get("JUPYTER_PIPELINE_IMAGE") or _config_value("image") or ""

    @default("max_concurrent_runs")
    def _default_max_concurrent_runs(self):
        return max(1, _env_int("JUPYTER_PIPELINE_MAX_RUNS", 2))

    @default("workers")
    def _default_workers(self):
        return max(0, _env_int("JUPYTER_PIPELINE_WORKERS", 0))

    def store_url(self, root_dir: str) -> str:
        """The store URL with a relative folder made absolute against the server's root."""
        url = self.store
        scheme = urlparse(url).scheme
        if scheme in ("", "file") or len(scheme) == 1:
            raw = urlparse(url).path if scheme == "file" else url
            path = Path(os.path.expanduser(raw))
            return str(path if path.is_absolute() else (Path(root_dir) / path).resolve())
        return url

    def public(self, root_dir: str) -> dict:
        """The effective settings, safe to show in a browser (no credentials)."""
        return {
            "store": _without_credentials(self.store_url(root_dir)),
            "kfp_host": _without_credentials(self.kfp_host) or None,
            "default_image": self.default_image or None,
            "max_concurrent_runs": self.max_concurrent_runs,
            "workers": self.workers or os.cpu_count() or 1,
        }


def _config_value(key: str) -> str | None:
    try:
        return read_config().get(key)
    except Exception:  # noqa: BLE001 - an unreadable config file must not stop the server
        return None


def _without_credentials(url: str) -> str:
    """``s3://key:secret@host/b`` → ``s3://host/b``: a URL may carry user info; never show it."""
    parsed = urlparse(url)
    if parsed.username or parsed.password:
        host = parsed.hostname or ""
        if parsed.port:
            host += f":{parsed.port}"
        return urlunparse(parsed._replace(netloc=host))
    return url
