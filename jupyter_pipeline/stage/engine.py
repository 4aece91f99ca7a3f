"""The papermill engine stages run with: nbclient's, keeping the executed notebook when cut short.

papermill writes the executed notebook when a cell raises, but not when execution stops for any
other reason (the kernel died, SIGTERM from a cancel or a ``timeout:``). This engine saves it to
``keep_path`` on the way out, and also as each cell starts and finishes and every 30 s of a long
cell (papermill's save points), atomically: a stage process killed outright (``kill -9``, the
out-of-memory killer) leaves the cells that ran, which its runner then keeps. A save costs one
serialisation of the notebook; papermill halves how often a long cell is saved if saving takes
over a quarter of the time.
"""

from __future__ import annotations

import functools
import os

import nbformat
from papermill.engines import NBClientEngine, papermill_engines

ENGINE_NAME = "jupyter-pipeline"


class StageEngine(NBClientEngine):
    """nbclient's engine; ``keep_path`` names where the notebook is kept as it executes."""

    @classmethod
    def execute_managed_notebook(cls, nb_man, kernel_name, keep_path=None, **kwargs):
        if keep_path:
            nb_man.save = functools.partial(_save, nb_man, keep_path)
        try:
            return super().execute_managed_notebook(nb_man, kernel_name, **kwargs)
        except BaseException:
            if keep_path:
                _save(nb_man, keep_path)
                # Kept as it stopped: papermill's closing save would mark the cells never reached as
                # completed, and the cell that was running could no longer be told (notebook.last_run_cell).
                nb_man.save = _keep_as_is
            raise


def _save(nb_man, path: str, **_) -> None:
    """Write the notebook as executed so far; a reader (or a kill) never meets half a file."""
    saving = f"{path}.saving"
    nbformat.write(nb_man.nb, saving)
    os.replace(saving, path)
    nb_man.last_save_time = nb_man.now()


def _keep_as_is(**_) -> None:
    """A save that keeps the notebook already saved."""


papermill_engines.register(ENGINE_NAME, StageEngine)
