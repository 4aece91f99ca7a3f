"""``models``: the registered models of a store, their versions, metadata and metrics."""

from __future__ import annotations

import argparse

from .output import fail, print_json, table


def register(sub, common) -> dict:
    p = sub.add_parser(
        "models", parents=[common], help="list registered models and their versions",
        description="List the models registered with log_model in a store: every version with the "
                    "run and stage that produced it, its input/output signature and the run's metrics.",
        epilog="examples:\n  jupyter-pipeline models\n  jupyter-pipeline models digits\n"
               "  jupyter-pipeline models --store s3://ml-artifacts/team-a --json\n"
               "  jupyter-pipeline models promote digits 3          # alias 'production' -> version 3\n"
               "  jupyter-pipeline models promote digits            # ... -> the latest version",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("words", nargs="*", metavar="MODEL | promote MODEL [VERSION]",
                   help="show only MODEL; or point an alias of MODEL at VERSION (default: the latest), which "
                        "`serve` then answers with")
    p.add_argument("--alias", default="production", help="alias set by promote (default: production)")
    p.add_argument("--store", help="store URL: a folder (default ./.pipeline-store) or s3://bucket/prefix")
    p.set_defaults(func=cmd_models)
    return {"models": p}


def _shapes(specs: list[dict]) -> str:
    return ", ".join(f"{s.get('name')}{tuple(s.get('shape') or ())}".replace("None", "?") for s in specs) or "-"


def _metrics(metrics: dict) -> str:
    def fmt(v):
        return f"{v:.4g}" if isinstance(v, float) else str(v)

    return " ".join(f"{k}={fmt(v)}" for k, v in sorted(metrics.items())) or "-"


def cmd_models(args) -> int:
    from ..exceptions import ModelNotFound
    from ..store.models import list_models
    from ..store.base import open_store, resolve_store_url

    store = open_store(resolve_store_url(args.store))
    if args.words[:1] == ["promote"]:
        return cmd_promote(args, store)
    if len(args.words) > 1:
        fail("models takes one MODEL name, or `promote MODEL [VERSION]`")
    args.name = args.words[0] if args.words else None
    models = list_models(store)
    if args.name:
        if args.name not in models:
            raise ModelNotFound(f"No model named '{args.name}' in store {store.url}.")
        models = {args.name: models[args.name]}
    if args.json:
        print_json({"store": store.url, "models": models})
        return 0
    if not models:
        print(f"no models in store {store.url}")
        return 0
    rows = []
    for name, versions in sorted(models.items()):
        for meta in versions:
            sig = meta.get("signature") or {}
            origin = f"{meta['run_id']}/{meta.get('stage')}" if meta.get("run_id") else "interactive"
            rows.append([name, meta.get("version", "?"), meta.get("format", "keras"),
                         ",".join(meta.get("aliases") or []) or "-",
                         (meta.get("created_at") or "")[:19].replace("T", " "),
                         _shapes(sig.get("inputs", [])), _shapes(sig.get("outputs", [])),
                         _metrics(meta.get("metrics") or {}), origin])
    print(table(rows, ["model", "version", "format", "aliases", "created", "inputs", "outputs", "metrics",
                       "run/stage"]))
    return 0


def cmd_promote(args, store) -> int:
    from ..store.models import promote

    if len(args.words) not in (2, 3):
        fail("usage: jupyter-pipeline models promote MODEL [VERSION] [--alias NAME]")
    name, version = args.words[1], (args.words[2:] or ["latest"])[0]
    current = promote(name, version, store, alias=args.alias)
    if args.json:
        print_json({"model": name, "aliases": current})
    else:
        print(f"{name}: {args.alias} -> version {current[args.alias]}")
    return 0
