"""REST handlers under ``<base_url>/jupyter-pipeline/``: parse JSON, call the core off the event
loop, answer JSON. Errors become ``{"message"}`` with a status in one place,
:func:`~.basehandler.error_reply`.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path

import tornado.web
from jupyter_server.utils import url_path_join

from ..exceptions import ArtifactNotFound, PipelineError, redact
from ..store.records import StageState, stage_key
from .basehandler import SETTINGS_KEY, BaseHandler, ServerState, root_relative
from .config import JupyterPipeline
from . import runactions
from .paths import (
    BadRequest, OutputExists, PathNotAllowed, check_run_id, check_stage, relative_to_root, resolve_output,
)


class StageNotebookMissing(PipelineError):
    """Raised when a stage has no executed notebook (yet)."""

    http_status = 404


class PipelineHandler(BaseHandler):
    """``GET pipeline?path=NB``: parse and validate the saved notebook.
    ``POST pipeline {"path", "content"?}``: the same for unsaved content sent by the editor."""

    @tornado.web.authenticated
    async def get(self):
        path = self.get_query_argument("path", None)
        full = self.notebook_path(path)
        self.reply(await self.blocking(_pipeline_json, full, path, self.jp.config, self.jp.root_dir))

    @tornado.web.authenticated
    async def post(self):
        body = self.json_body()
        full = self.notebook_path(body.get("path"))
        content = body.get("content")
        if content is None:
            self.reply(await self.blocking(_pipeline_json, full, body["path"], self.jp.config, self.jp.root_dir))
            return
        if not isinstance(content, dict):
            raise BadRequest("\"content\" must be the notebook as nbformat JSON (an object).")
        self.reply(await self.blocking(_content_json, content, body["path"], full, self.jp.config, self.jp.root_dir))


def confined(pipeline, full: Path, root_dir: str | None):
    """``pipeline``, unless a notebook it includes (``notebook:`` cells) or a file an Elyra node runs
    lies outside the server's root: then :class:`PathNotAllowed`, before anything of it is shown or run."""
    if root_dir is None:
        return pipeline
    root = Path(root_dir).resolve()
    # Where each file is referenced: an include's cell (its path may be resolved through a symlink,
    # and where a symlink leads is not said), or an Elyra node's file as written.
    referenced = {n.path: f"{n.parent or full.name}, cell {n.cell + 1}" for n in pipeline.notebooks}
    for s in pipeline.stages:
        if s.notebook and s.notebook not in referenced:
            referenced[s.notebook] = f"{full.name}, node {s.name}: {s.notebook}"
    for rel, where in sorted(referenced.items()):
        resolved = (full.parent / rel).resolve()
        if resolved != root and root not in resolved.parents:
            raise PathNotAllowed(f"{where} refers to a notebook or file outside the server's root directory; "
                                 "move it inside the root, or run this pipeline from the command line.")
    return pipeline


def _with_kubeflow_notes(pipeline, full: Path, config: JupyterPipeline, root_dir: str | None = None) -> dict:
    """The pipeline's JSON plus what it needs on Kubeflow (image and its source, travelling files,
    warnings such as the unpublished built-in image), for the publish dialog."""
    data = confined(pipeline, full, root_dir).to_json()
    try:
        from ..kfp.preflight import preflight
    except ImportError:  # the Kubeflow part is not installed: nothing to say about it
        return data
    return {**data, "kubeflow": preflight(pipeline, config.settings(notebook=pipeline.settings), full.parent)}


def _pipeline_json(full: Path, shown: str, config: JupyterPipeline, root_dir: str | None = None) -> dict:
    from ..notebook.elyra import is_pipeline_file, load_pipeline_file
    from ..notebook.parse import from_notebook, read_notebook

    try:
        if is_pipeline_file(full):  # an Elyra pipeline file
            return _with_kubeflow_notes(load_pipeline_file(full, shown), full, config, root_dir)
        nb = read_notebook(full)
    except PipelineError as exc:  # say which path, as the browser knows it, not the server's
        exc.args = (str(exc).replace(str(full), shown),)
        raise
    return _with_kubeflow_notes(from_notebook(nb, shown, folder=full.parent), full, config, root_dir)


def _content_json(content: dict, shown: str, full: Path, config: JupyterPipeline, root_dir: str | None = None) -> dict:
    import nbformat

    from ..notebook.parse import from_notebook

    try:
        nb = nbformat.reads(json.dumps(content), as_version=4)
    except Exception as exc:
        reason = (str(exc).splitlines() or [type(exc).__name__])[0][:200]
        raise BadRequest(f"\"content\" is not a Jupyter notebook: {reason}.") from None
    return _with_kubeflow_notes(from_notebook(nb, shown, folder=full.parent), full, config, root_dir)


class CompileHandler(BaseHandler):
    """``POST compile {"path", "save"?, "output"?, "overwrite"?}``: the KFP YAML, optionally saved.

    ``output`` (or ``save``: next to the notebook) must be a new ``.yaml``/``.yml`` file inside
    the root and outside the store; an existing YAML file is replaced only with ``"overwrite": true``.
    """

    @tornado.web.authenticated
    async def post(self):
        body = self.json_body()
        full = self.notebook_path(body.get("path"))
        overwrite = body.get("overwrite", False)
        if not isinstance(overwrite, bool):
            raise BadRequest("\"overwrite\" must be true or false.")
        target = body.get("output") or (str(Path(body["path"]).with_suffix(".yaml")) if body.get("save") else None)
        output = None
        if target:
            output = resolve_output(self.jp.root_dir, target, overwrite=overwrite, forbidden=self._store_dirs())
        yaml_text, notes = await self.blocking(compile_notebook, full, self.jp.config, output, overwrite,
                                               self.jp.root_dir)
        shown = relative_to_root(self.jp.root_dir, str(output)) if output else None
        self.reply({"yaml": yaml_text, "path": shown, "kubeflow": notes})

    def _store_dirs(self) -> tuple[str, ...]:
        url = self.jp.config.store_url(self.jp.root_dir)
        return (url,) if Path(url).is_absolute() else ()


class CompilerMissing(PipelineError):
    """Raised when the Kubeflow compiler (``jupyter_pipeline.kfp``) is not available."""

    http_status = 501


def compile_notebook(full: Path, config: JupyterPipeline, output: Path | None = None,
                     overwrite: bool = False, root_dir: str | None = None) -> tuple[str, dict]:
    """Compile the notebook at ``full`` to KFP YAML with the core compiler (its working files
    uploaded to the pipeline's store); write ``output`` if given. Returns the YAML and the notes
    of :func:`jupyter_pipeline.kfp.preflight.preflight`.

    A new ``output`` is created exclusively, so a file that appeared since the request was checked
    is not replaced either.
    """
    from ..notebook.parse import load

    pipeline = confined(load(full), full, root_dir).require_valid()
    try:
        from ..kfp.compiler import compile_for_cluster
        from ..kfp.preflight import preflight
    except ImportError as exc:
        raise CompilerMissing(f"Compiling to Kubeflow Pipelines is not available here ({exc}).") from None
    settings = config.settings(notebook=pipeline.settings)
    text = compile_for_cluster(pipeline, settings).yaml
    if output is not None:
        try:
            with open(output, "w" if overwrite else "x", encoding="utf-8") as f:
                f.write(text)
        except FileExistsError:
            raise OutputExists(f"{output.name!r} appeared while compiling; send \"overwrite\": true "
                               "to replace it.") from None
        except OSError as exc:  # a symlink loop, a read-only folder: the request's to change
            raise BadRequest(f"Cannot save the compiled pipeline as {output.name!r}: {exc.strerror or exc}.") from None
    return text, preflight(pipeline, settings)


class RunsHandler(BaseHandler):
    """``GET runs[?notebook=NB&limit=N]``: runs newest first. ``POST runs``: start one (``"from_stage"``:
    that stage and those downstream, the others reused; ``"incremental"``: unchanged stages reused), or with
    ``"sweep": {"grid": {NAME: [V1, V2]}, "metric", "goal", "max_parallel", "sample"}`` a sweep
    (answer ``{"sweep_id"}``; its variants are runs carrying that ``sweep_id``)."""

    @tornado.web.authenticated
    async def get(self):
        notebook = self.get_query_argument("notebook", None)
        full = str(self.notebook_path(notebook)) if notebook else None
        limit = self.get_query_argument("limit", None)
        try:
            limit = int(limit) if limit else None
        except ValueError:
            raise BadRequest(f"limit must be a whole number, not {limit!r}.") from None
        runs = await self.blocking(self.jp.manager.list, full, limit)
        self.reply({"runs": runs, "store": self.jp.config.public(self.jp.root_dir)["store"]})

    @tornado.web.authenticated
    async def post(self):
        body = self.json_body()
        full = self.notebook_path(body.get("path"))
        target = body.get("target", "local")
        parameters = body.get("parameters") or {}
        if not isinstance(target, str) or not target:
            names = ", ".join(t["name"] for t in _targets())
            raise BadRequest(f"\"target\" must be a target name: {names}.")
        if not isinstance(parameters, dict):
            raise BadRequest("\"parameters\" must be an object of parameter names to values.")
        if body.get("store") and body["store"] != self.jp.manager.store.url:
            # Runs go to the server's store so that every browser lists them; say so in the log.
            self.log.info("jupyter-pipeline: ignoring store %r from the browser; using the server's store",
                          redact(str(body["store"])))
        options = {k: body.get(k) for k in ("experiment", "image", "kfp_host")}
        for flag in ("shared_kernel", "capture_packages", "incremental"):
            if body.get(flag) is not None:
                if not isinstance(body[flag], bool):
                    raise BadRequest(f"\"{flag}\" must be true or false.")
                options[flag] = body[flag] or None  # false is the default: no option
        if body.get("from_stage") is not None:
            if not isinstance(body["from_stage"], str):
                raise BadRequest("\"from_stage\" must be the name of a stage.")
            options["from_stage"] = body["from_stage"]
        if body.get("sweep") is not None:
            sweep = _sweep_options(body["sweep"])
            sweep_id = await self.blocking(self._start_sweep, full, target, parameters, sweep)
            self.reply({"sweep_id": sweep_id}, status=202)
            return
        run_id = await self.blocking(self._start, full, target, parameters, options)
        self.reply({"run_id": run_id}, status=202)

    def _start_sweep(self, full: Path, target: str, parameters: dict, sweep: dict) -> str:
        from ..notebook.parse import load

        pipeline = confined(load(full), full, self.jp.root_dir).require_valid()
        grid = sweep.pop("grid")
        return self.jp.manager.start_sweep(pipeline, grid, parameters, target, sweep)

    def _start(self, full: Path, target: str, parameters: dict, options: dict) -> str:
        from ..notebook.parse import load

        from ..targets import get_target

        pipeline = confined(load(full), full, self.jp.root_dir).require_valid()
        if options.get("from_stage") or options.get("incremental"):
            if not get_target(target).reuses_stages:
                raise BadRequest(f"Target '{target}' does not reuse stages of earlier runs: \"from_stage\" and "
                                 "\"incremental\" work with targets that do (local).")
            if options.get("from_stage"):
                pipeline.stage(options["from_stage"])  # an unknown stage: 400, naming the stages
        if get_target(target).needs_kfp_host:  # any target that submits to Kubeflow Pipelines
            _check_kfp_host(pipeline, {**self.jp.manager.target_options, **options})
        return self.jp.manager.start(pipeline, parameters, target, options)


class KfpHostMissing(PipelineError):
    """Raised when a run on Kubeflow is asked for and no Kubeflow Pipelines host is configured."""

    http_status = 400


def _check_kfp_host(pipeline, options: dict) -> None:
    """Refuse a ``kfp`` run without a host up front, in the browser's words (its settings, not flags)."""
    from ..exceptions import TargetError
    from ..kfp.client import Connection

    try:
        Connection.from_options(options, pipeline.settings)
    except TargetError:
        raise KfpHostMissing(
            "No Kubeflow Pipelines host is configured. Set one in Settings → Settings Editor → Pipeline → "
            "Kubeflow Pipelines host (or ask whoever runs this Jupyter server to set c.JupyterPipeline.kfp_host), "
            "or publish to another target.") from None


def _sweep_options(sweep) -> dict:
    """The ``sweep`` field of ``POST runs``, checked: grid, metric, goal, max_parallel, sample."""
    if not isinstance(sweep, dict) or not isinstance(sweep.get("grid"), dict) or not sweep["grid"]:
        raise BadRequest("\"sweep\" must be an object with \"grid\": {parameter name: [values, ...]}.")
    for name, values in sweep["grid"].items():
        if not isinstance(values, list) or not values:
            raise BadRequest(f"sweep grid: \"{name}\" must be a non-empty list of values.")
    if sweep.get("goal", "max") not in ("max", "min"):
        raise BadRequest("sweep \"goal\" must be \"max\" or \"min\".")
    if sweep.get("metric") is not None and not isinstance(sweep["metric"], str):
        raise BadRequest("sweep \"metric\" must be the name of a logged metric.")
    for key in ("max_parallel", "sample"):
        value = sweep.get(key)
        if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
            raise BadRequest(f"sweep \"{key}\" must be a whole number of at least 1.")
    return {"grid": sweep["grid"], "metric": sweep.get("metric") or None, "goal": sweep.get("goal", "max"),
            "max_parallel": sweep.get("max_parallel"), "sample": sweep.get("sample")}


class RunHandler(BaseHandler):
    """``GET runs/ID``: the run record. ``DELETE runs/ID``: cancel a running local run."""

    @tornado.web.authenticated
    async def get(self, run_id: str):
        self.reply(await self.blocking(self.jp.manager.get, check_run_id(run_id)))

    @tornado.web.authenticated
    async def delete(self, run_id: str):
        self.reply(await self.blocking(self.jp.manager.cancel, check_run_id(run_id)))


class StageNotebookHandler(BaseHandler):
    """``GET runs/ID/stages/NAME/notebook[?which=input]``: the executed stage notebook (nbformat JSON)."""

    @tornado.web.authenticated
    async def get(self, run_id: str, stage: str):
        which = self.get_query_argument("which", "output")
        if which not in ("output", "input"):
            raise BadRequest("which must be 'output' (the executed notebook) or 'input' (the generated one).")
        data = await self.blocking(self._read, check_run_id(run_id), check_stage(stage), which)
        self.set_status(200)
        self.finish(data)

    def _read(self, run_id: str, stage: str, which: str) -> bytes:
        record = self.jp.manager.get(run_id)
        if stage not in record["stages"]:
            raise StageNotebookMissing(f"Run {run_id} has no stage '{stage}'; its stages: {', '.join(record['stages'])}.")
        try:
            data = self.jp.manager.store.get_bytes(stage_key(run_id, stage, f"{which}.ipynb"))
            # The browser names files relative to the root; the server's own folders are none of its business.
            return root_relative(data.decode(), self.jp.root_dir).encode()
        except ArtifactNotFound:
            status = record["stages"][stage]["status"]
            when = "has not run yet" if status in (StageState.PENDING.value, StageState.RUNNING.value) else \
                f"left no {which} notebook (it {status})"
            raise StageNotebookMissing(f"Stage '{stage}' of run {run_id} {when}.") from None


class ConfigHandler(BaseHandler):
    """``GET config``: the effective store, KFP host, default image and limits (no secrets)."""

    @tornado.web.authenticated
    async def get(self):
        self.reply({**self.jp.config.public(self.jp.root_dir), "targets": await self.blocking(_targets)})


@functools.lru_cache(maxsize=1)
def _targets() -> list[dict]:
    """The run targets that load here, as the publish dialog lists them."""
    from ..targets import targets

    return [t.to_json() for t in targets.available()]


def setup_handlers(web_app, state: ServerState) -> None:
    """Register the routes under ``<base_url>/jupyter-pipeline/``."""
    web_app.settings[SETTINGS_KEY] = state
    base = url_path_join(web_app.settings["base_url"], "jupyter-pipeline")
    segment = r"([^/]+)"
    web_app.add_handlers(".*$", [
        (url_path_join(base, "pipeline"), PipelineHandler),
        (url_path_join(base, "compile"), CompileHandler),
        (url_path_join(base, "runs"), RunsHandler),
        (url_path_join(base, "runs", segment), RunHandler),
        (url_path_join(base, "runs", segment, "stages", segment, "notebook"), StageNotebookHandler),
        (url_path_join(base, "config"), ConfigHandler),
        *runactions.routes(base),
    ])
