"""Core commands: validate, graph, run, runs, resume."""

from __future__ import annotations

import argparse
import sys

from ..summary import sweep_table
from .output import Progress, fail, print_json, run_summary, seconds, table


def register(sub, common) -> dict:
    commands = {}
    p = sub.add_parser("validate", parents=[common], help="check a notebook and list every problem",
                       description="Parse a tagged notebook and report all problems at once.",
                       epilog="example: jupyter-pipeline validate examples/digits/digits.ipynb")
    p.add_argument("notebook")
    p.set_defaults(func=cmd_validate)
    commands["validate"] = p

    p = sub.add_parser("graph", parents=[common], help="draw the stage graph (text, dot or mermaid)",
                       epilog="example: jupyter-pipeline graph digits.ipynb --format dot | dot -Tsvg > g.svg")
    p.add_argument("notebook")
    p.add_argument("--format", choices=["text", "dot", "mermaid"], default="text")
    p.set_defaults(func=cmd_graph)
    commands["graph"] = p

    p = sub.add_parser("run", parents=[common], help="run the notebook as a pipeline",
                       description="Run every stage of the notebook; independent stages run at the same time.",
                       epilog="examples:\n  jupyter-pipeline run digits.ipynb -p epochs 3\n"
                              "  jupyter-pipeline run digits.ipynb --store s3://bucket/team --json\n"
                              "  jupyter-pipeline run digits.ipynb --sweep learning_rate=0.1,0.01 "
                              "--sweep hidden_units=16,64 --metric accuracy",
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("notebook")
    p.add_argument("-p", "--parameter", nargs=2, action="append", default=[], metavar=("NAME", "VALUE"),
                   help="set a parameter of the `parameters` cell (repeatable); typed like its default")
    p.add_argument("--store", help="store URL: a folder (default ./.pipeline-store) or s3://bucket/prefix")
    p.add_argument("--target", default="local", help="local (default), kfp-local, kfp or a target a package adds")
    p.add_argument("--workers", type=int, help="stages run at the same time (default: number of cores)")
    p.add_argument("--shared-kernel", action="store_true",
                   help="local runs: run the stages one after another in one kernel, its namespace emptied between "
                        "stages (faster; modules, RNG state and environment are not isolated: see the README)")
    p.add_argument("--incremental", action="store_true",
                   help="reuse each stage whose code, setup, parameters and upstream stages are unchanged since an "
                        "earlier run of this notebook in the store; print why every other stage runs")
    p.add_argument("--from-stage", metavar="STAGE",
                   help="run STAGE and every stage downstream of it; reuse the stages upstream from the latest run "
                        "of this notebook with the same code (local runs)")
    sweep = p.add_argument_group("sweeps", "run once per combination of parameter values; stages whose "
                                           "inputs are the same in every variant run once")
    sweep.add_argument("--sweep", action="append", default=[], metavar="NAME=V1,V2",
                       help="values of one parameter (repeatable: the grid is their product)")
    sweep.add_argument("--random", type=int, metavar="K", help="run K combinations drawn at random from the grid")
    sweep.add_argument("--metric", help="rank variants by this logged metric")
    sweep.add_argument("--goal", choices=["max", "min"], default="max", help="best is the highest (max) or lowest")
    sweep.add_argument("--max-parallel", type=int, metavar="N", help="variants run at the same time")
    p.set_defaults(func=cmd_run)
    commands["run"] = p

    p = sub.add_parser("runs", parents=[common], help="list runs, or show one run's stages",
                       epilog="examples:\n  jupyter-pipeline runs\n  jupyter-pipeline runs 20261121-120000-digits-ab12",
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run_id", nargs="?", metavar="RUN")
    p.add_argument("--store")
    p.add_argument("--limit", type=int, default=20)
    p.add_argument("--target", help="read RUN's state from its target (kfp: the cluster; a Kubeflow run id works too)")
    p.set_defaults(func=cmd_runs)
    commands["runs"] = p

    p = sub.add_parser("resume", parents=[common], help="re-run the stages of a run that did not succeed",
                       epilog="example: jupyter-pipeline resume 20261121-120000-digits-ab12")
    p.add_argument("run_id", metavar="RUN")
    p.add_argument("--store")
    p.add_argument("--workers", type=int)
    p.set_defaults(func=cmd_resume)
    commands["resume"] = p
    return commands


def cmd_validate(args) -> int:
    from ..exceptions import NotebookReadError
    from ..notebook.parse import load

    try:
        pipeline = load(args.notebook)
    except NotebookReadError as exc:
        if args.json:
            print_json({"path": args.notebook, "stages": [], "problems": [
                {"severity": "error", "code": "unreadable", "message": str(exc), "stage": None, "cell": None, "line": None}]})
            return 1
        raise
    from ..kfp.preflight import describe, preflight

    # What the pipeline needs on Kubeflow (image, files, packages): its warnings are listed on their
    # own lines, not counted, since they matter only there; a bad Kubeflow setting is an error.
    notes = preflight(pipeline)
    errors = len(pipeline.errors) + sum(p["severity"] == "error" for p in notes["problems"])
    warnings = sum(p.severity == "warning" for p in pipeline.problems)
    kubeflow_only = sum(p["severity"] == "warning" for p in notes["problems"])
    if args.json:
        print_json({**pipeline.to_json(), "kubeflow": notes})
    else:
        for p in pipeline.problems:
            print(f"{args.notebook}: {p.severity}: {p.describe()}  [{p.code}]")
        for line in describe(notes):
            print(f"{args.notebook}: {line}")
        print(f"{args.notebook}: {len(pipeline.stages)} stage(s), {len(pipeline.parameters)} parameter(s), "
              f"{errors} error(s), {warnings} warning(s)"
              + (f" (and {kubeflow_only} that matter(s) on Kubeflow only)" if kubeflow_only else ""))
    return 1 if errors else 0


def cmd_graph(args) -> int:
    from ..notebook.diagram import FORMATS
    from ..notebook.parse import load

    pipeline = load(args.notebook)
    if args.json:
        data = pipeline.to_json()
        print_json({key: data[key] for key in ("stages", "edges", "problems", "notebooks", "notebook_edges")})
    else:
        print(FORMATS[args.format](pipeline))
        for p in pipeline.errors:
            print(f"{args.notebook}: error: {p.describe()}", file=sys.stderr)
    return 1 if pipeline.errors else 0


def _parameters(args) -> dict:
    values = {}
    for name, value in args.parameter:
        if name in values:
            fail(f"parameter '{name}' is given twice")
        values[name] = value
    return values


def run_options(args) -> dict:
    """Target options from the command line (other command modules add their own)."""
    return {k: v for k, v in vars(args).items() if k not in ("func", "notebook", "parameter", "command")}


def cmd_run(args) -> int:
    from ..notebook.parse import load
    from ..store.base import open_store, resolve_store_url
    from ..targets import get_target

    target = get_target(args.target)
    target.prepare()
    pipeline = load(args.notebook).require_valid()
    if args.from_stage:
        pipeline.stage(args.from_stage)  # an unknown stage: named before anything runs
        if not target.reuses_stages:
            fail(f"--from-stage works for targets that reuse stages of earlier runs (local); not '{args.target}'")
    if args.sweep:
        return cmd_sweep(args, pipeline)
    store = open_store(resolve_store_url(args.store, pipeline.settings))
    record = target.run(pipeline, _parameters(args), store, run_options(args), Progress())
    if args.json:
        print_json(record.to_json())
    elif record.status.value == "running":  # submitted to a target that runs it elsewhere
        host = next((h.get("host") for h in record.history if h.get("event") == "submitted"), args.target)
        print(f"submitted run {record.run_id} to {host}"
              + (f" ({record.external_id})" if record.external_id else "")
              + (f"\nrun page: {record.url}" if record.url else "")
              + f"\nfollow it with: jupyter-pipeline runs {record.run_id} --target {args.target}")
    else:
        print(run_summary(record))
    return _exit_status(record)


def _exit_status(record) -> int:
    """0 for a succeeded run (or one submitted and still running elsewhere), 130 (as for Ctrl-C) for
    a cancelled one, else 1."""
    return {"succeeded": 0, "running": 0, "cancelled": 130}.get(record.status.value, 1)


def cmd_runs(args) -> int:
    from ..store.records import list_runs, load_run
    from ..store.base import open_store, resolve_store_url
    from ..targets import get_target, run_status

    store = open_store(resolve_store_url(args.store))
    if args.target and not args.run_id:
        fail(f"runs --target {args.target} needs a RUN (a run id of this store, or the target's own run id)")
    if args.run_id:
        if args.target:  # the target finds the run (a Kubeflow run id too) and reads its state
            record = get_target(args.target).lookup(store, args.run_id, run_options(args))
        else:
            record = run_status(store, load_run(store, args.run_id))
        if args.json:
            print_json(record.to_json())
        else:
            where = f" ({record.target} run {record.external_id})" if record.external_id else f" ({record.target})"
            print(f"run {record.run_id} of {record.notebook}{where}, parameters: {record.parameters}")
            print(run_summary(record))
        return 0
    records = [run_status(store, r, ask_target=False) for r in list_runs(store, limit=args.limit)]
    if args.json:
        print_json({"runs": [r.to_json() for r in records], "store": store.url})
        return 0
    if not records:
        print(f"no runs in store {store.url}")
        return 0
    rows = []
    for r in records:
        done = sum(1 for s in r.stages.values() if s.status.value == "succeeded")
        total = None
        if r.finished_at:
            from ..store.records import parse_iso

            total = (parse_iso(r.finished_at) - parse_iso(r.created_at)).total_seconds()
        passed_over = sum(1 for s in r.stages.values() if s.passed_over)
        ok = f"{done}/{len(r.stages)}" + (f" ({passed_over} skipped by if:)" if passed_over else "")
        rows.append([r.run_id, r.status.value, ok, seconds(total), r.target, r.pipeline])
    print(table(rows, ["run", "status", "stages ok", "duration", "target", "pipeline"]))
    return 0


def cmd_resume(args) -> int:
    from ..store.records import load_run
    from ..store.base import open_store, resolve_store_url
    from ..targets import get_target

    store = open_store(resolve_store_url(args.store))
    target = get_target(load_run(store, args.run_id).target)
    record = target.resume(store, args.run_id, run_options(args), Progress())
    if args.json:
        print_json(record.to_json())
    else:
        print(run_summary(record))
    return _exit_status(record)


def cmd_sweep(args, pipeline) -> int:
    from ..store.base import open_store, resolve_store_url
    from ..sweep import parse_sweep_args
    from ..targets import get_target

    target = get_target(args.target)
    store = open_store(resolve_store_url(args.store, pipeline.settings))
    options = {**run_options(args), "fixed": _parameters(args), "sample": args.random}
    result = target.sweep(pipeline, parse_sweep_args(args.sweep), store, options, Progress())
    data = result.to_json()
    if args.json:
        print_json(data)
    else:
        print(sweep_table(data))
        if data["best"]:
            from ..store.models import list_models

            for name, versions in list_models(store).items():
                for meta in versions:
                    if meta.get("run_id") == data["best"]:
                        print(f"the best variant registered {name} version {meta['version']}: "
                              f"jupyter-pipeline models promote {name} {meta['version']}")
    return 0 if all(v["status"] == "succeeded" for v in data["variants"]) else 1
