"""``serve`` (the model server) and ``deploy`` (run that server in a Kubernetes cluster)."""

from __future__ import annotations

import argparse
import logging
import os
import sys

from .output import print_json


def register(sub, common) -> dict:
    s = sub.add_parser(
        "serve", parents=[common], help="serve registered Keras models over REST",
        description="Serve the models registered in a store over the Open Inference Protocol v2 (/v2/...) and "
                    "TensorFlow Serving's REST API (/v1/models/NAME:predict), with adaptive batching, a "
                    "prediction cache, Prometheus metrics at /metrics and hot reload of new versions. "
                    "SIGTERM drains in-flight requests before exiting.",
        epilog="examples:\n  jupyter-pipeline serve                                   # every model, 127.0.0.1:8080\n"
               "  jupyter-pipeline serve --model digits:3 --host 0.0.0.0 --port 9000\n"
               "  jupyter-pipeline serve --store s3://ml-artifacts/team-a --no-cache",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    s.add_argument("--store", help="store URL: a folder (default ./.pipeline-store) or s3://bucket/prefix")
    s.add_argument("--port", type=int, default=8080, help="port to listen on (default 8080; 0 picks a free one)")
    s.add_argument("--grpc-port", type=int, default=None, metavar="PORT",
                   help="also serve the Open Inference Protocol over gRPC (inference.GRPCInferenceService) on "
                        "this port (0 picks a free one; default: no gRPC)")
    s.add_argument("--host", "--address", dest="host", default="127.0.0.1",
                   help="address to bind (default 127.0.0.1, this machine only: the server has no "
                        "authentication; pass 0.0.0.0 in a container or behind a gateway)")
    s.add_argument("--model", action="append", default=[], metavar="NAME[:VERSION]",
                   help="serve only this model (repeatable); a version pins it, otherwise new versions are "
                        "picked up as they are registered")
    s.add_argument("--no-cache", action="store_true", help="turn the prediction cache off")
    s.add_argument("--cache-entries", type=int, default=10_000, help="prediction cache size in entries")
    s.add_argument("--cache-mb", type=float, default=64, help="prediction cache size in MiB (default 64)")
    s.add_argument("--poll-interval", type=float, default=10.0, metavar="S",
                   help="seconds between store scans for new versions (default 10; 0 turns hot reload off)")
    s.add_argument("--max-batch-size", type=int, default=32, help="most rows per model call (default 32)")
    s.add_argument("--max-batch-wait-ms", type=float, default=2.0,
                   help="under concurrent load, wait up to this long for a batch to fill (default 2)")
    s.add_argument("--max-loaded-versions", type=int, default=3, metavar="N",
                   help="versions of one model kept loaded; older ones asked for by number load on demand and the "
                        "least recently used is unloaded past N (the pinned or latest version always stays; "
                        "default 3)")
    s.add_argument("--max-body-mb", type=float, default=16, help="largest request body in MiB (default 16)")
    s.add_argument("--drain-timeout", type=float, default=30.0, metavar="S",
                   help="on SIGTERM, wait at most this long for in-flight requests (default 30)")
    s.add_argument("--access-log", action="store_true",
                   help="log one line per request to stderr (off by default: at thousands of requests a second "
                        "the log costs more than a cache hit)")
    s.add_argument("--body-timeout", type=float, default=60.0, metavar="S",
                   help="a request body must arrive within this many seconds, or the connection is closed "
                        "(default 60)")
    s.set_defaults(func=cmd_serve)

    d = sub.add_parser(
        "deploy", parents=[common], help="run the model server in Kubernetes (Deployment or KServe)",
        description="Render a Deployment + Service (or, with --kserve, a KServe InferenceService) that runs "
                    "`jupyter-pipeline serve` for MODEL, and apply it with the Kubernetes client (create, or "
                    "patch what exists). Store credentials come from a secret; --dry-run prints the YAML.",
        epilog="examples:\n  jupyter-pipeline deploy digits --store s3://ml-artifacts/team-a --dry-run\n"
               "  jupyter-pipeline deploy digits:3 --namespace team-a --store s3://ml-artifacts/team-a --kserve",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    d.add_argument("model", metavar="MODEL", help="NAME or NAME:VERSION")
    d.add_argument("--store", help="s3:// store URL the cluster can reach (default: the kfp_store setting, else an "
                                   "s3:// store setting, else s3://mlpipeline/jupyter-pipeline, Kubeflow's own bucket)")
    d.add_argument("--namespace", "-n", help="namespace (default: $JUPYTER_PIPELINE_NAMESPACE, the config file's "
                                             "namespace, inside a pod its own namespace, else 'default')")
    d.add_argument("--name", help="resource name (default MODEL-server)")
    d.add_argument("--image", default=None, help="container image with jupyter-pipeline installed "
                                                 "(default: the image setting, see docs/settings.md)")
    d.add_argument("--replicas", type=int, default=1)
    d.add_argument("--cpu", default="1", help="CPU request (default 1)")
    d.add_argument("--memory", default="2Gi", help="memory request and limit (default 2Gi)")
    d.add_argument("--gpu", type=int, default=0, help="GPUs per replica")
    d.add_argument("--gpu-type", help="accelerator type, e.g. nvidia-tesla-t4 (node selector)")
    d.add_argument("--secret", default=None, help="secret with the store credentials (default mlpipeline-minio-artifact)")
    d.add_argument("--s3-endpoint", help="S3 endpoint seen from the cluster (default: JUPYTER_PIPELINE_KFP_S3_ENDPOINT, "
                                         "else http://minio-service.kubeflow:9000)")
    d.add_argument("--kserve", action="store_true", help="render a KServe InferenceService instead")
    d.add_argument("--kserve-grpc", action="store_true",
                   help="with --kserve: route the gRPC port (h2c) instead of HTTP; KServe routes one port per "
                        "predictor (the Deployment's Service always has both)")
    d.add_argument("--model-format", metavar="FORMAT|auto",
                   help="with --kserve: the model's KServe format (sklearn, xgboost, lightgbm, onnx, pytorch, "
                        "keras), or 'auto' to read it from the model's meta.json in the store; renders a "
                        "ServingRuntime of this image and an InferenceService naming that modelFormat")
    d.add_argument("--no-cache", action="store_true", help="run the server with --no-cache")
    d.add_argument("--context", help="kubeconfig context (default: the current one)")
    d.add_argument("--dry-run", action="store_true", help="print the manifests instead of applying them")
    d.set_defaults(func=cmd_deploy)
    return {"serve": s, "deploy": d}


def _setup_logging(access_log: bool) -> None:
    root = logging.getLogger()
    if not root.handlers:
        logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                            format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("jupyter_pipeline.serving.access").setLevel(logging.INFO if access_log else logging.WARNING)
    for noisy in ("jax", "jax._src", "absl"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def cmd_serve(args) -> int:
    os.environ.setdefault("KERAS_BACKEND", "jax")
    from ..store.models import resolve_version
    from ..serving import ServerConfig, serve
    from ..serving.repository import ModelSpec
    from ..store.base import open_store, resolve_store_url

    url = resolve_store_url(args.store)
    store = open_store(url, create=False)  # a reader: a missing bucket is an error, never made here
    store.check()
    for spec in map(ModelSpec.parse, args.model):
        resolve_version(store, spec.name, spec.version)  # fail now, in one paragraph, not in the log
    config = ServerConfig(
        store=url, port=args.port, grpc_port=args.grpc_port, address=args.host, models=args.model, cache=not args.no_cache,
        cache_entries=args.cache_entries, cache_bytes=int(args.cache_mb * 1024 * 1024),
        poll_interval=args.poll_interval, max_batch_size=args.max_batch_size,
        max_batch_wait_ms=args.max_batch_wait_ms, max_body_bytes=int(args.max_body_mb * 1024 * 1024),
        drain_timeout=args.drain_timeout, body_timeout=args.body_timeout,
        max_loaded_versions=args.max_loaded_versions)
    _setup_logging(args.access_log)

    def started(server):
        if args.json:
            print_json({"url": f"http://{args.host}:{server.port}", "port": server.port,
                        "grpc_port": server.grpc_port, "store": url, "models": args.model or "all"})
            sys.stdout.flush()

    return 0 if serve(config, on_started=started) else 1


def _model_format(args, store_url: str) -> str | None:
    """``--model-format``, with ``auto`` read from the deployed version's meta.json."""
    if args.model_format != "auto":
        return args.model_format
    from ..store.base import open_store
    from ..store.models import get_meta, resolve_version

    name, _, version = args.model.partition(":")
    store = open_store(store_url, create=False)
    return get_meta(store, name, resolve_version(store, name, version or None)).get("format", "keras")


def cmd_deploy(args) -> int:
    from .. import deploy
    from ..settings import Settings, cluster_store

    settings = Settings(flags={"store": args.store, "image": args.image, "namespace": args.namespace,
                               "s3_endpoint": args.s3_endpoint})
    # The store the server's pod reads: a --store given, else the cluster's (Kubeflow's by default).
    store = args.store or cluster_store(settings)
    spec = deploy.DeploySpec(
        model=args.model, store=store, namespace=settings.get("namespace") or "default",
        name=args.name, image=settings.get("image"), replicas=args.replicas, cpu=args.cpu, memory=args.memory,
        gpu=args.gpu, gpu_type=args.gpu_type, secret=args.secret or deploy.DEFAULT_SECRET,
        s3_endpoint=settings.get("s3_endpoint"), kserve=args.kserve, kserve_grpc=args.kserve_grpc,
        model_format=_model_format(args, store), serve_args=["--no-cache"] if args.no_cache else [])
    manifests = deploy.render(spec)
    if args.dry_run:
        if args.json:
            print_json(manifests)
        else:
            sys.stdout.write(deploy.to_yaml(manifests))
        return 0
    results = deploy.apply(manifests, deploy.api_client(args.context))
    if args.json:
        print_json(results)
    else:
        for r in results:
            print(f"{r['kind'].lower()}/{r['name']} {r['action']} in namespace {r['namespace']}")
    return 0


if __name__ == "__main__":  # `python -m jupyter_pipeline.cli.serve serve ...` without the full CLI
    from . import main

    sys.exit(main(sys.argv[1:]))
