"""The papermill engine stages run with: nbclient's, keeping the executed notebook when cut short.

papermill writes the executed notebook when a cell raises, but not when execution stops for any
other reason (the kernel died, SIGTERM from a cancel or a ``timeout:``) unless it saves after
every cell, which costs a notebook serialisation per cell. This engine saves once, on the way
out, with the cells that ran and their outputs.
"""

from __future__ import annotations

import nbformat
from papermill.engines import NBClientEngine, papermill_engines

ENGINE_NAME = "jupyter-pipeline"


class StageEngine(NBClientEngine):
    """nbclient's engine; ``keep_path`` names where the notebook goes if execution is cut short."""

    @classmethod
    def execute_managed_notebook(cls, nb_man, kernel_name, keep_path=None, **kwargs):
        try:
            return super().execute_managed_notebook(nb_man, kernel_name, **kwargs)
        except BaseException:
            if keep_path:
                nbformat.write(nb_man.nb, keep_path)
            raise


papermill_engines.register(ENGINE_NAME, StageEngine)
