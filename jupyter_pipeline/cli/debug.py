"""``debug``: a notebook that reproduces one stage of a run with the inputs it received."""

from __future__ import annotations

import argparse

from .output import print_json


def register(sub, common) -> dict:
    p = sub.add_parser(
        "debug", parents=[common], help="write a notebook that loads a stage's inputs and holds its cells",
        description="Write a notebook next to the run's source notebook whose first cell loads the inputs STAGE "
                    "received in RUN from the run's store (runs of every target), followed by the stage's setup "
                    "and code as they ran. Running it reproduces the stage, the same error for a failed one, in a "
                    "normal kernel; nothing it does writes to the run.",
        epilog="examples:\n  jupyter-pipeline debug 20261121-120000-digits-ab12 train\n"
               "  jupyter-pipeline debug RUN train -o train-debug.ipynb --store s3://ml-artifacts/team-a",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run_id", metavar="RUN")
    p.add_argument("stage", metavar="STAGE")
    p.add_argument("-o", "--output", metavar="PATH",
                   help="where to write the notebook (default: NOTEBOOK-debug-STAGE.ipynb next to the source)")
    p.add_argument("--item", type=int, default=0, help="a map: stage's item to debug (default: 0)")
    p.add_argument("--store", help="store URL: a folder (default ./.pipeline-store) or s3://bucket/prefix")
    p.set_defaults(func=cmd_debug)
    return {"debug": p}


def cmd_debug(args) -> int:
    from ..stage.debug import write_debug_notebook
    from ..store.base import open_store, resolve_store_url

    store = open_store(resolve_store_url(args.store))
    path = write_debug_notebook(store, args.run_id, args.stage, args.output, item=args.item)
    if args.json:
        print_json({"path": str(path), "run_id": args.run_id, "stage": args.stage})
    else:
        print(f"wrote {path}: its first cell loads the inputs of stage '{args.stage}' of run {args.run_id}; "
              f"open it in JupyterLab, or run it: jupyter nbconvert --to notebook --execute {path}")
    return 0
