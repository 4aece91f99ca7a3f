"""The Jupyter server extension: the pipeline actions as a REST API under ``<base_url>/jupyter-pipeline/``.

Enabled on install by ``jupyter-config/server-config/jupyter_pipeline.json``; configured with
``c.JupyterPipeline.*`` traits (see :mod:`.config`). The handlers are thin: the work is the core's.
"""

from __future__ import annotations

import atexit
import threading
import weakref

from ..startup import default_keras_backend
from .basehandler import ServerState
from .config import JupyterPipeline
from .handlers import setup_handlers
from .manager import RunManager


def _jupyter_server_extension_points():
    return [{"module": "jupyter_pipeline.server"}]


def _load_jupyter_server_extension(serverapp) -> None:
    backend = default_keras_backend()  # kernels this server starts inherit its environment
    if backend:
        serverapp.log.info("jupyter-pipeline: KERAS_BACKEND=%s for kernels (TensorFlow is not installed; "
                           "set KERAS_BACKEND before starting Jupyter to choose another backend)", backend)
    config = JupyterPipeline(parent=serverapp)
    root_dir = getattr(serverapp, "root_dir", None) or serverapp.contents_manager.root_dir
    manager = RunManager(
        config.store_url(root_dir),
        max_concurrent_runs=config.max_concurrent_runs,
        workers=config.workers or None,
        target_options={"server_settings": config.server_values()},
        log=serverapp.log,
    )
    setup_handlers(serverapp.web_app, ServerState(config=config, manager=manager, root_dir=root_dir))
    # Runs a stopped server (or CLI) left `running` become `interrupted`. Listing an S3 store can
    # be slow or fail, so it happens beside the server's start, not in its way.
    threading.Thread(target=_recover, args=(manager,), name="jp-recover", daemon=True).start()
    # Module extensions get no stop hook from jupyter_server; at exit (see _shutdown_all), stop our
    # runs so they are recorded as interrupted (resumable) rather than discovered so at next start.
    _MANAGERS.add(manager)
    serverapp.log.info("jupyter-pipeline: REST API at %sjupyter-pipeline/, store %s",
                       serverapp.base_url, config.public(root_dir)["store"])


def _recover(manager: RunManager) -> None:
    try:
        manager.recover()
    except Exception as exc:
        manager.log.warning("jupyter-pipeline: could not check the store for interrupted runs: %s", exc)


_MANAGERS: "weakref.WeakSet[RunManager]" = weakref.WeakSet()


def _shutdown_all() -> None:
    for manager in list(_MANAGERS):
        manager.shutdown()


# A local run waits on stage processes in a ThreadPoolExecutor, whose threads the interpreter joins
# at exit *before* `atexit` handlers run, so a plain atexit hook would first wait for every running
# stage to end. threading's own exit hooks run before that join (concurrent.futures uses one).
_register = getattr(threading, "_register_atexit", None) or atexit.register
_register(_shutdown_all)
