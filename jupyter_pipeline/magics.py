"""Notebook magics (``%load_ext jupyter_pipeline``): ``%%stage`` and ``%pipeline``.

``%%stage NAME [--after A B] [--gpu N] ...`` checks its arguments with the same parser the converter
uses, then runs the cell body in the live kernel, so the notebook still works top to bottom.

``%pipeline validate|graph|run|sweep|status|compile|publish [NB]`` are the CLI's actions with rich output;
``%pipeline debug RUN STAGE`` loads the parameters and inputs a stage of a run had into this kernel.
Without ``NB`` the magic works on the notebook this kernel belongs to, found through the Jupyter
server (its sessions API, or ``JPY_SESSION_NAME``); it reads the notebook *as saved*.
"""

from __future__ import annotations

import argparse
import html
import json
import os
import shlex
import urllib.request
from pathlib import Path

from IPython.core.error import UsageError
from IPython.core.magic import Magics, cell_magic, line_magic, magics_class
from IPython.display import display

from .exceptions import PipelineError
from .livetable import MagicFailed, SweepProgress, badge, drive, run_bundle, sweep_bundle

LAST_RUN_NAME = "_pipeline_run"  # the user-namespace name of the last run record
SESSION_TIMEOUT = 5.0
LAST_SWEEP_NAME = "_pipeline_sweep"  # the user-namespace name of the last sweep result


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        raise UsageError(f"{self.prog}: {message}\n{self.format_usage().strip()}")


def _parser() -> argparse.ArgumentParser:
    p = _Parser(prog="%pipeline", add_help=False)
    sub = p.add_subparsers(dest="action", metavar="validate|graph|run|sweep|status|compile|publish|debug",
                           parser_class=_Parser)
    sub.required = True
    v = sub.add_parser("validate", prog="%pipeline validate", add_help=False)
    v.add_argument("notebook", nargs="?")
    g = sub.add_parser("graph", prog="%pipeline graph", add_help=False)
    g.add_argument("notebook", nargs="?")
    g.add_argument("--format", choices=["svg", "mermaid", "text"], default="svg")
    for name in ("run", "publish", "sweep"):
        r = sub.add_parser(name, prog=f"%pipeline {name}", add_help=False)
        r.add_argument("notebook", nargs="?")
        r.add_argument("-p", "--parameter", nargs=2, action="append", default=[], metavar=("NAME", "VALUE"))
        r.add_argument("--store")
        r.add_argument("--workers", type=int)
        r.add_argument("--shared-kernel", action="store_true")
        r.add_argument("--experiment")
        r.add_argument("--kfp-host")
        r.add_argument("--image")
        if name != "publish":
            r.add_argument("--target", default="local")
        if name == "sweep":
            r.add_argument("--sweep", action="append", default=[], required=True, metavar="NAME=V1,V2")
            r.add_argument("--random", type=int, metavar="K")
            r.add_argument("--metric")
            r.add_argument("--goal", choices=["max", "min"], default="max")
            r.add_argument("--max-parallel", type=int, metavar="N")
    s = sub.add_parser("status", prog="%pipeline status", add_help=False)
    s.add_argument("run_id", nargs="?", metavar="RUN")
    s.add_argument("--store")
    s.add_argument("--limit", type=int, default=10)
    d = sub.add_parser("debug", prog="%pipeline debug", add_help=False)
    d.add_argument("run_id", metavar="RUN")
    d.add_argument("stage", metavar="STAGE")
    d.add_argument("--store")
    c = sub.add_parser("compile", prog="%pipeline compile", add_help=False)
    c.add_argument("notebook", nargs="?")
    c.add_argument("-o", "--output")
    c.add_argument("--image")
    return p


@magics_class
class PipelineMagics(Magics):
    """``%%stage`` and ``%pipeline``."""

    @cell_magic
    def stage(self, line: str, cell: str):
        """%%stage NAME [--after A B] [--gpu N[:TYPE]] [--cpu X] [--memory X] [--image REF]
        [--retries N] [--timeout S] [--no-cache] [--volume CLAIM:/path] [--env NAME=VALUE]
        [--secret SECRET:KEY:ENV|SECRET:/path] [--label K:V] [--annotation K:V] [--node K=V]
        [--toleration K[=V]:EFFECT] [--shm SIZE] [--if EXPR]: mark the cell as stage NAME and run it
        (with ``--if``, only when EXPR holds for the notebook's variables, as the pipeline runs it)."""
        from .notebook.tags import read_cell

        spec, _ = read_cell([], f"%%stage {line}\n", "code")
        if spec.problems:
            raise UsageError("; ".join(message for _, message in spec.problems))
        if spec.options.get("condition") and not self._condition_holds(spec.stage, spec.options["condition"]):
            return
        result = self.shell.run_cell(cell, store_history=False)
        if not result.success:  # the body's traceback is shown already; fail the cell, once
            raise MagicFailed(f"stage '{spec.stage}' raised {type(result.error_in_exec or result.error_before_exec).__name__}"
                              " (traceback above)")

    def _condition_holds(self, stage: str, text: str) -> bool:
        """Whether ``%%stage --if`` holds for the kernel's variables (checked, never eval'd); says so when not."""
        from .notebook.condition import evaluate, parse

        try:
            holds, why = evaluate(parse(text), self.shell.user_ns)
        except KeyError as exc:
            raise MagicFailed(f"stage '{stage}': its condition `{text}` reads {exc}, which is not defined yet; "
                              "run the cells above first") from None
        except TypeError as exc:
            raise MagicFailed(f"stage '{stage}': its condition `{text}` cannot be evaluated: {exc}") from None
        if not holds:
            print(f"stage '{stage}' skipped: condition false: {why}")
        return holds

    @line_magic
    def pipeline(self, line: str):
        """%pipeline validate|graph|run|sweep|status|compile|publish [NB] ...: see ``%pipeline?``."""
        args = _parser().parse_args(shlex.split(line))
        try:
            return getattr(self, f"_{args.action}")(args)
        except PipelineError as exc:
            raise MagicFailed(str(exc)) from None

    # -- actions ----------------------------------------------------------------------------------
    def _load(self, args):
        from .notebook.parse import load

        path = notebook_path(args.notebook, self.shell)
        return load(path), path

    def _validate(self, args):
        pipeline, path = self._load(args)
        errors = len(pipeline.errors)
        warnings = sum(p.severity == "warning" for p in pipeline.problems)
        summary = (f"{path.name}: {len(pipeline.stages)} stage(s), {len(pipeline.parameters)} parameter(s), "
                   f"{errors} error(s), {warnings} warning(s) (saved file)")
        text = [f"{p.severity}: {p.describe()}  [{p.code}]" for p in pipeline.problems] + [summary]
        colors = {"error": "#c62828", "warning": "#ef6c00", "info": "#1565c0"}
        rows = "".join(
            f"<tr><td style='color:{colors.get(p.severity, '#ef6c00')}'>{p.severity}</td>"
            f"<td>{'' if p.cell is None else p.cell + 1}</td><td>{html.escape(p.stage or '')}</td>"
            f"<td>{html.escape(p.message)}</td><td><code>{p.code}</code></td></tr>" for p in pipeline.problems)
        table = (f"<table><tr><th>severity</th><th>cell</th><th>stage</th><th>problem</th><th>code</th></tr>{rows}"
                 "</table>") if rows else ""
        display({"text/plain": "\n".join(text), "text/html": f"{table}<p>{html.escape(summary)}</p>"}, raw=True)

    def _graph(self, args):
        from .notebook.diagram import mermaid, svg, text_tree

        pipeline, _ = self._load(args)
        if args.format == "svg":
            display({"image/svg+xml": svg(pipeline), "text/plain": text_tree(pipeline)}, raw=True)
        elif args.format == "mermaid":
            source = mermaid(pipeline)
            display({"text/vnd.mermaid": source, "text/markdown": f"```mermaid\n{source}\n```",
                     "text/plain": source}, raw=True)
        else:
            print(text_tree(pipeline))
        for problem in pipeline.errors:
            print(f"error: {problem.describe()}")

    def _run(self, args, target: str | None = None):
        from .store.records import new_run_id
        from .store.base import open_store, resolve_store_url
        from .targets import get_target

        pipeline, _ = self._load(args)
        pipeline.require_valid()
        target = get_target(target or args.target)
        params = _parameters(args)
        store = open_store(resolve_store_url(args.store, pipeline.settings))
        run_id = new_run_id(pipeline.name)
        options = {"workers": args.workers, "experiment": args.experiment, "kfp_host": args.kfp_host,
                   "image": args.image, "store": store.url, "run_id": run_id,
                   "shared_kernel": getattr(args, "shared_kernel", False)}
        cancel = (lambda: target.cancel(store, run_id)) if target.can_cancel else None
        record = drive(lambda on_event: target.run(pipeline, params, store, options, on_event), cancel, run_bundle)
        self.shell.user_ns[LAST_RUN_NAME] = record
        if record.status.value != "succeeded":
            raise MagicFailed(f"run {record.run_id} {record.status.value}" + (f": {record.error}" if record.error else ""))

    def _sweep(self, args):
        """Run every variant (``--sweep NAME=V1,V2`` grid), live, then the variants ranked by ``--metric``."""
        from .store.base import open_store, resolve_store_url
        from .sweep import parse_sweep_args
        from .targets import get_target

        pipeline, _ = self._load(args)
        pipeline.require_valid()
        grid = parse_sweep_args(args.sweep)
        target = get_target(args.target)
        store = open_store(resolve_store_url(args.store, pipeline.settings))
        options = {"fixed": _parameters(args), "metric": args.metric, "goal": args.goal, "sample": args.random,
                   "max_parallel": args.max_parallel, "workers": args.workers}
        progress = SweepProgress(list(grid), args.metric)
        result = drive(lambda on_event: target.sweep(pipeline, grid, store, options, on_event), None, progress.bundle,
                       final=lambda r: sweep_bundle(r.to_json()), what="sweep")
        self.shell.user_ns[LAST_SWEEP_NAME] = result
        data = result.to_json()
        failed = [v["run_id"] for v in data["variants"] if v["status"] != "succeeded"]
        if failed:
            raise MagicFailed(f"sweep {data['sweep_id']}: {len(failed)} of {len(data['variants'])} variant(s) did "
                              f"not succeed ({', '.join(failed)})")

    def _publish(self, args):
        return self._run(args, target="kfp")

    def _status(self, args):
        from .store.records import list_runs, load_run
        from .store.base import open_store, resolve_store_url
        from .targets import run_status

        store = open_store(resolve_store_url(args.store))
        if args.run_id:
            record = run_status(store, load_run(store, args.run_id))
            display(run_bundle(record), raw=True)
            return
        try:
            notebook = str(notebook_path(None, self.shell).resolve())
        except MagicFailed:
            notebook = None  # not in a server session: list every run of the store
        records = [run_status(store, r, ask_target=False) for r in list_runs(store, notebook=notebook, limit=args.limit)]
        where = f" of {Path(notebook).name}" if notebook else ""
        if not records:
            print(f"no runs{where} in store {store.url}")
            return
        text = [f"runs{where} in {store.url}, newest first:"] + [
            f"{r.run_id}  {r.status.value:<11} {sum(s.status.value == 'succeeded' for s in r.stages.values())}/"
            f"{len(r.stages)} stages ok  {r.target}" for r in records]
        rows = "".join(f"<tr><td><code>{r.run_id}</code></td><td>{badge(r.status.value)}</td>"
                       f"<td>{sum(s.status.value == 'succeeded' for s in r.stages.values())}/{len(r.stages)}</td>"
                       f"<td>{r.target}</td><td>{r.created_at}</td></tr>" for r in records)
        display({"text/plain": "\n".join(text), "text/html":
                 f"<p>{html.escape(text[0])}</p><table><tr><th>run</th><th>status</th><th>stages ok</th>"
                 f"<th>target</th><th>started</th></tr>{rows}</table>"}, raw=True)

    def _debug(self, args):
        from .stage.debug import load_inputs, run_parameters
        from .store.base import open_store, resolve_store_url

        store = open_store(resolve_store_url(args.store))
        values = {**run_parameters(store, args.run_id, args.stage), **load_inputs(store, args.run_id, args.stage)}
        self.shell.user_ns.update(values)
        print(f"loaded the parameters and inputs of stage '{args.stage}' of run {args.run_id}: "
              + (", ".join(values) or "none"))

    def _compile(self, args):
        from .kfp.compiler import compile_for_cluster
        from .settings import Settings

        pipeline, _ = self._load(args)
        pipeline.require_valid()
        settings = Settings(flags={"image": args.image}, notebook=pipeline.settings)
        text = compile_for_cluster(pipeline, settings, args.output).yaml
        if args.output:
            print(f"wrote {args.output} ({len(text.splitlines())} lines, {len(pipeline.stages)} stage(s))")
        else:
            print(text)


def _parameters(args) -> dict:
    params = {}
    for name, value in args.parameter:
        if name in params:
            raise UsageError(f"parameter '{name}' is given twice")
        params[name] = value
    return params


# -- which notebook is this kernel's ------------------------------------------------------------------
def notebook_path(explicit: str | None, shell=None) -> Path:
    """``explicit``, else the notebook this kernel runs for; raises :class:`MagicFailed` if unknown."""
    if explicit:
        path = Path(os.path.expanduser(explicit))
        if not path.exists():
            raise MagicFailed(f"No notebook {explicit} (relative paths are relative to {os.getcwd()}).")
        return path
    for finder in (_from_sessions_api, _from_session_env, lambda: _from_vscode(shell)):
        try:
            found = finder()
        except Exception:
            found = None
        if found is not None and found.is_file():
            return found
    raise MagicFailed(
        "Cannot tell which notebook this kernel belongs to: no running Jupyter server lists this kernel in "
        "its sessions and JPY_SESSION_NAME is not set (a kernel started by papermill, a console or nbclient "
        "has no notebook). Name it, e.g. `%pipeline validate path/to/notebook.ipynb`.")


def _kernel_id() -> str | None:
    from ipykernel import get_connection_file

    name = Path(get_connection_file()).stem
    return name[len("kernel-"):] if name.startswith("kernel-") else None


def _from_sessions_api() -> Path | None:
    """Ask each running Jupyter server (runtime files) which session holds this kernel."""
    from jupyter_core.paths import jupyter_runtime_dir

    kernel_id = _kernel_id()
    if not kernel_id:
        return None
    for info_file in sorted(Path(jupyter_runtime_dir()).glob("jpserver-*.json")):
        try:
            info = json.loads(info_file.read_text())
            request = urllib.request.Request(info["url"].rstrip("/") + "/api/sessions",
                                             headers={"Authorization": f"token {info.get('token', '')}"})
            with urllib.request.urlopen(request, timeout=SESSION_TIMEOUT) as response:
                sessions = json.load(response)
        except (OSError, ValueError, KeyError):
            continue
        for session in sessions:
            if (session.get("kernel") or {}).get("id") == kernel_id:
                return Path(info["root_dir"]) / session["path"]
    return None


def _from_session_env() -> Path | None:
    """``JPY_SESSION_NAME``: jupyter_server sets it when it starts a kernel for a session."""
    name = os.environ.get("JPY_SESSION_NAME")
    if not name:
        return None
    path = Path(name)
    if path.is_absolute():
        return path
    # An API path relative to the server root; the kernel's cwd is the notebook's folder.
    return next((p for p in (Path.cwd() / path, Path.cwd() / path.name) if p.is_file()), None)


def _from_vscode(shell) -> Path | None:
    value = (shell.user_ns if shell is not None else {}).get("__vsc_ipynb_file__")
    return Path(value) if value else None


def register(ipython) -> None:
    """Register the magics with an IPython shell (``%load_ext jupyter_pipeline``)."""
    ipython.register_magics(PipelineMagics)
