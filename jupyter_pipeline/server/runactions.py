"""REST handlers acting on a run already in the store: resume it, or debug one of its stages in a notebook.

``POST runs/ID/resume``: resume a failed, cancelled or interrupted run in the background (``{"run_id"}``, 202).
``POST runs/ID/stages/NAME/debug {"path"?}``: write the stage's debug notebook
(:mod:`jupyter_pipeline.stage.debug`) inside the server's root (by default next to the run's notebook) and
answer its root-relative ``{"path"}``, which the browser opens.
"""

from __future__ import annotations

from pathlib import Path

import tornado.web

from ..exceptions import PipelineError
from .basehandler import BaseHandler
from .paths import BadRequest, OutputExists, PathNotAllowed, check_run_id, check_stage, relative_to_root


class ResumeHandler(BaseHandler):
    """``POST runs/ID/resume``: re-run what did not succeed, keep the rest."""

    @tornado.web.authenticated
    async def post(self, run_id: str):
        run_id = await self.blocking(self.jp.manager.resume, check_run_id(run_id))
        self.reply({"run_id": run_id}, status=202)


class DebugHandler(BaseHandler):
    """``POST runs/ID/stages/NAME/debug {"path"?}``: write the stage's debug notebook; answer its path."""

    @tornado.web.authenticated
    async def post(self, run_id: str, stage: str):
        body = self.json_body()
        path = body.get("path")
        item = body.get("item", 0)
        if not isinstance(item, int) or isinstance(item, bool) or item < 0:
            raise BadRequest("\"item\" must be the index of a map: stage's item (a whole number from 0).")
        output = self._output(path) if path is not None else None
        written = await self.blocking(self._write, check_run_id(run_id), check_stage(stage), output, item)
        self.reply({"path": relative_to_root(self.jp.root_dir, str(written)), "run_id": run_id, "stage": stage})

    def _output(self, path) -> Path:
        from ..stage.debug import is_debug_notebook

        full = self.notebook_path(path)  # inside the root, or refused
        if full.suffix != ".ipynb":
            raise PathNotAllowed(f"The debug notebook is saved only as an .ipynb file; {path!r} is not one.")
        if full.exists() and not is_debug_notebook(full):
            raise OutputExists(f"{path!r} exists and is not a debug notebook; name another file.")
        return full

    def _write(self, run_id: str, stage: str, output: Path | None, item: int) -> Path:
        from ..stage.debug import default_path, write_debug_notebook
        from ..store.records import load_run

        store = self.jp.manager.store
        if output is None:
            output = default_path(load_run(store, run_id).notebook, stage)
            if relative_to_root(self.jp.root_dir, str(output)) is None:
                raise DebugOutsideRoot(f"Run {run_id}'s notebook is outside this server's root; send \"path\" "
                                       "(relative to the root) to say where the debug notebook goes.")
            from ..stage.debug import is_debug_notebook

            if output.exists() and not is_debug_notebook(output):
                raise OutputExists(f"{output.name!r} exists and is not a debug notebook; send \"path\" to name "
                                   "another file.")
        return write_debug_notebook(store, run_id, stage, output, item=item)


class DebugOutsideRoot(PipelineError):
    """Raised when the default place of a debug notebook is outside the server's root."""

    http_status = 400


def routes(base: str) -> list[tuple]:
    """This module's routes under ``base`` (``<base_url>/jupyter-pipeline``)."""
    from jupyter_server.utils import url_path_join

    segment = r"([^/]+)"
    return [(url_path_join(base, "runs", segment, "resume"), ResumeHandler),
            (url_path_join(base, "runs", segment, "stages", segment, "debug"), DebugHandler)]
