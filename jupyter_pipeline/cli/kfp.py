"""Kubeflow commands: ``compile``, ``schedule``, and the Kubeflow options of ``run`` and ``runs``."""

from __future__ import annotations

import argparse

from .output import print_json


def _connection_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("Kubeflow Pipelines (--target kfp)")
    g.add_argument("--kfp-host", metavar="URL", help="KFP API endpoint, e.g. https://kubeflow.example/pipeline "
                   "(default: $JUPYTER_PIPELINE_KFP_HOST or $KF_PIPELINES_ENDPOINT, the config file's kfp_host, "
                   "then inside a pod the in-cluster endpoint)")
    g.add_argument("--kfp-token", metavar="TOKEN", help="bearer token (default: $JUPYTER_PIPELINE_KFP_TOKEN or "
                   "$KF_PIPELINES_TOKEN, then inside a pod its Kubeflow service-account token)")
    g.add_argument("--kfp-cookie", metavar="COOKIE",
                   help="session cookie of multi-user Kubeflow, e.g. 'authservice_session=...' "
                        "(default: $KF_PIPELINES_COOKIE)")
    g.add_argument("--namespace", help="Kubeflow profile namespace (multi-user installations; default: "
                   "$JUPYTER_PIPELINE_NAMESPACE, then inside a pod the pod's namespace)")


def _image_options(g) -> None:
    """Options of the compiled stages' image and packages (compile, and run/schedule on Kubeflow)."""
    g.add_argument("--image", help="container image of every stage without an image: tag (default: the notebook's "
                   "`image` setting, $JUPYTER_PIPELINE_IMAGE, the config file, inside a pod its own image)")
    g.add_argument("--kfp-store", metavar="URL", help="store the stages use on the cluster "
                   "(default: notebook setting 'kfp_store', else s3://mlpipeline/jupyter-pipeline: a folder of the "
                   "pipeline root's bucket on KFP's object store, never created)")
    g.add_argument("--package", dest="packages", action="append", metavar="REQUIREMENT",
                   help="pip requirement every stage installs when its pod starts (repeatable; default: the "
                        "notebook's `packages` setting, $JUPYTER_PIPELINE_PACKAGES)")
    g.add_argument("--pip-index-url", dest="pip_index_urls", action="append", metavar="URL",
                   help="package index for those (repeatable; the first replaces PyPI; air-gapped clusters)")
    g.add_argument("--capture-packages", action="store_true",
                   help="also pin the third-party distributions each stage imports to the versions installed here")


def _submit_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("compiled pipeline")
    g.add_argument("--experiment", help="KFP experiment (default: notebook setting 'experiment', else Default); "
                   "created when missing")
    _image_options(g)


def register(sub, common) -> dict:
    commands = {}
    p = sub.add_parser(
        "compile", parents=[common], help="compile the notebook to a Kubeflow Pipelines v2 YAML",
        description="Compile the notebook to a KFP v2 pipeline spec: one lightweight Python component per "
                    "stage with its notebook embedded, GPU placement and store credentials from a Kubernetes "
                    "secret. Upload the file in the KFP UI, or use `run --target kfp`.",
        epilog="example: jupyter-pipeline compile examples/digits/digits.ipynb -o digits.yaml",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("notebook")
    p.add_argument("-o", "--output", required=True, metavar="FILE", help="where to write the YAML ('-': stdout)")
    _image_options(p)
    p.add_argument("--no-upload-files", action="store_true",
                   help="do not upload the working files that travel to the pods to the pipeline's store; write "
                        "the bundle next to the YAML instead")
    p.add_argument("--s3-endpoint", metavar="URL", help="default S3 endpoint (http://minio-service.kubeflow:9000)")
    p.add_argument("--secret", help="Kubernetes secret with the store credentials (mlpipeline-minio-artifact); "
                   "'' for none")
    p.set_defaults(func=cmd_compile)
    commands["compile"] = p

    p = sub.add_parser(
        "schedule", parents=[common], help="create a recurring run on Kubeflow Pipelines",
        description="Upload the compiled notebook and create a recurring run on a cron schedule.",
        epilog='example: jupyter-pipeline schedule digits.ipynb --cron "0 3 * * *" --kfp-host https://kfp.example',
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("notebook")
    p.add_argument("--cron", required=True, metavar="EXPR", help="cron expression, 5 fields (or KFP's 6)")
    p.add_argument("-p", "--parameter", nargs=2, action="append", default=[], metavar=("NAME", "VALUE"))
    p.add_argument("--name", help="display name of the recurring run")
    _connection_options(p)
    _submit_options(p)
    p.set_defaults(func=cmd_schedule)
    commands["schedule"] = p
    return commands


def extend(commands: dict) -> None:
    """Add the Kubeflow connection and submission options to ``run`` and ``runs`` (the commands
    themselves are the same for every target)."""
    run = commands.get("run")
    if run is not None:
        _connection_options(run)
        _submit_options(run)
        run.add_argument("--wait", action="store_true", help="with --target kfp: follow the run until it ends")
    runs = commands.get("runs")
    if runs is not None:
        _connection_options(runs)


def cmd_compile(args) -> int:
    import sys

    from pathlib import Path

    from ..exceptions import TargetError
    from ..kfp.compiler import compile_for_cluster
    from ..kfp.placement import Placement
    from ..kfp.preflight import describe, preflight
    from ..notebook.parse import load
    from ..settings import from_options

    pipeline = load(args.notebook).require_valid()
    settings = from_options(vars(args), pipeline.settings)
    overrides = {"s3_endpoint": args.s3_endpoint}
    if args.secret is not None:
        overrides["placement"] = Placement.from_settings({**pipeline.settings, "secret": args.secret})
    to_stdout = args.output == "-"
    try:
        compiled = compile_for_cluster(pipeline, settings, None if to_stdout else args.output,
                                       upload=not args.no_upload_files, capture_packages=args.capture_packages,
                                       **overrides)
    except TargetError as exc:
        raise TargetError(f"{exc} Nothing was written.") from None
    text, options, packed = compiled.yaml, compiled.options, compiled.files
    bundle_path = None
    if packed is not None and args.no_upload_files and not to_stdout:
        bundle_path = Path(args.output).with_suffix(".files.tar.gz")
        bundle_path.write_bytes(packed.data)
    if to_stdout:
        sys.stdout.write(text)
        return 0
    notes = preflight(pipeline, settings)
    summary = {"path": args.output, "pipeline": options.name, "stages": len(pipeline.stages),
               "parameters": [p.name for p in pipeline.parameters], "image": options.image,
               "image_source": options.image_source, "store": options.store, "bytes": len(text.encode()),
               "files": list(packed.paths) if packed else [], "files_key": options.files_key or None,
               "files_bundle": str(bundle_path) if bundle_path else None, "problems": notes["problems"],
               "notebook_warnings": [p.to_json() for p in pipeline.problems if p.severity == "warning"]}
    if args.json:
        print_json(summary)
    else:
        gpu = [s.name for s in pipeline.stages if s.options.gpu]
        print(f"wrote {args.output}: pipeline {options.name}, {len(pipeline.stages)} stage(s)"
              + (f", GPU: {', '.join(gpu)}" if gpu else "") + f", store {options.store}")
        for line in describe(notes):
            print(line)
        for p in pipeline.problems:  # what `validate` warns about still holds for the compiled pipeline
            if p.severity == "warning":
                print(f"{args.notebook}: warning: {p.describe()}  [{p.code}]")
        if bundle_path:
            print(f"the files' bundle is {bundle_path}; before running, copy it to {options.store}/{options.files_key}")
    return 0


def _params(args) -> dict:
    from .core import _parameters

    return _parameters(args)


def cmd_schedule(args) -> int:
    from ..kfp.client import schedule
    from ..notebook.parse import load

    pipeline = load(args.notebook).require_valid()
    options = {k: v for k, v in vars(args).items() if k not in ("func", "notebook", "parameter", "command")}
    result = schedule(pipeline, _params(args), args.cron, options)
    if args.json:
        print_json(result)
    else:
        print(f"recurring run {result['recurring_run_id']} created ({result['cron']}), pipeline version "
              f"{result['version_id']}\npage: {result['url']}")
    return 0
