"""The papermill engine stages run with: nbclient's, keeping the executed notebook when cut short.

papermill writes the executed notebook when a cell raises, but not when execution stops for any
other reason (the kernel died, SIGTERM from a cancel or a ``timeout:``). This engine saves it to
``keep_path`` on the way out, and also as each cell finishes and every 30 s of a long cell (papermill's
save points, less the one as a cell starts), atomically: a stage process killed outright (``kill -9``,
the out-of-memory killer) leaves every cell that finished, which its runner then keeps. Saves are plain
JSON: nbformat's writer validates the whole notebook each time (~45 ms for 60 cells under load).
"""

from __future__ import annotations

import json
import os

from papermill.engines import NBClientEngine, papermill_engines

ENGINE_NAME = "jupyter-pipeline"


class StageEngine(NBClientEngine):
    """nbclient's engine; ``keep_path`` names where the notebook is kept as it executes."""

    @classmethod
    def execute_managed_notebook(cls, nb_man, kernel_name, keep_path=None, **kwargs):
        keeper = _Keeper(nb_man, keep_path) if keep_path else None
        if keeper:
            nb_man.save, nb_man.cell_start = keeper.save_point, keeper.cell_start
        try:
            return super().execute_managed_notebook(nb_man, kernel_name, **kwargs)
        except BaseException:
            if keeper:
                keeper.write()
                # Kept as it stopped: papermill's closing save would mark the cells never reached as
                # completed, and the cell that was running could no longer be told (notebook.last_run_cell).
                nb_man.save = _keep_as_is
            raise


class _Keeper:
    """Writes the notebook as executed so far to ``path``; a reader (or a kill) never meets half a file."""

    def __init__(self, nb_man, path: str):
        self.nb_man, self.path, self.starting = nb_man, path, False
        self.original_cell_start = nb_man.cell_start

    def save_point(self, **_) -> None:
        """papermill's save points, but the one as a cell starts (nothing new to keep: it follows a save)."""
        if not self.starting:
            self.write()

    def cell_start(self, cell, cell_index=None, **kwargs) -> None:
        self.starting = True
        try:
            self.original_cell_start(cell, cell_index, **kwargs)
        finally:
            self.starting = False

    def write(self) -> None:
        saving = f"{self.path}.saving"
        with open(saving, "w", encoding="utf-8") as f:
            json.dump(self.nb_man.nb, f)
        os.replace(saving, self.path)
        self.nb_man.last_save_time = self.nb_man.now()


def _keep_as_is(**_) -> None:
    """A save that keeps the notebook already saved."""


papermill_engines.register(ENGINE_NAME, StageEngine)
