"""Serving a scikit-learn model: OIP v2 REST throughput of ``jupyter-pipeline serve`` against MLServer's
scikit-learn runtime (``mlserver-sklearn``), in the same run, on the same fitted model and bodies.

The model is the iris example's (StandardScaler + LogisticRegression). Ours serves it from the
registry (``model.skops``) and answers ``label`` and ``probabilities`` (two model calls per
batch); MLServer loads the same estimator from ``model.joblib`` and answers its default output
(``predict``, one call). The prediction cache is off: every request reaches the model. Each cell is
the median of ``--repeat`` runs of ``--duration`` seconds with N concurrent keep-alive clients (wrk
when installed, else Python threads).

MLServer 1.7.1 and mlserver-sklearn 1.7.1 (with ``uvloop<0.22``, which it needs to start) go into a
venv of their own outside the project, ``--venv`` (default ``/tmp/jp-mlserver-sklearn``), made on
first use.

    .venv/bin/python benchmarks/bench_serving_sklearn.py [--duration 4] [--repeat 3] [--json out.json] [--quick]
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

from bench_serving import (free_port, median_of, run_python_client, run_wrk, start_ours, stop,
                           wait_ready)

CONCURRENCY = (1, 8, 32)
REQUIREMENTS = ["mlserver==1.7.1", "mlserver-sklearn==1.7.1", "uvloop<0.22"]


def mlserver_python(venv: Path) -> Path:
    """The interpreter of ``venv`` with MLServer's scikit-learn runtime, installed there on first use."""
    python = venv / "bin" / "python"
    probe = [str(python), "-c", "import mlserver_sklearn"]
    if python.exists() and subprocess.run(probe, capture_output=True).returncode == 0:
        return python
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    print(f"installing {' '.join(REQUIREMENTS)} into {venv} ...", flush=True)
    subprocess.run([str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", *REQUIREMENTS],
                   check=True)
    return python


def fitted_model():
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    X, y = load_iris(return_X_y=True)
    return make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000)).fit(X, y), X


def start_mlserver(python: Path, model, folder: Path, log: Path) -> tuple[subprocess.Popen, int]:
    """``mlserver start`` on a folder with the estimator as ``model.joblib`` (its runtime's format)."""
    import joblib

    folder.mkdir()
    joblib.dump(model, folder / "model.joblib")
    port = free_port()
    (folder / "settings.json").write_text(json.dumps({"http_port": port, "grpc_port": free_port(),
                                                      "metrics_port": free_port(), "host": "127.0.0.1"}))
    (folder / "model-settings.json").write_text(json.dumps({
        "name": "iris", "implementation": "mlserver_sklearn.SKLearnModel",
        "parameters": {"uri": "./model.joblib", "version": "1"}}))
    proc = subprocess.Popen([str(python.parent / "mlserver"), "start", str(folder)], cwd=folder,
                            stdout=subprocess.DEVNULL, stderr=log.open("w"), start_new_session=True)
    return proc, port


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, default=4.0, help="seconds per measurement")
    parser.add_argument("--repeat", type=int, default=3, help="measurements per cell (median reported)")
    parser.add_argument("--venv", default="/tmp/jp-mlserver-sklearn", help="MLServer's own venv")
    parser.add_argument("--json", help="also write the results here")
    parser.add_argument("--quick", action="store_true", help="1 s per cell, one run")
    args = parser.parse_args(argv)
    if args.quick:
        args.duration, args.repeat = 1.0, 1
    from jupyter_pipeline.store.models import log_model

    load = run_wrk if shutil.which("wrk") else run_python_client
    tmp = Path(tempfile.mkdtemp(prefix="jp-bench-sklearn-"))
    model, X = fitted_model()
    store = str(tmp / "store")
    log_model(model, "iris", store=store)
    rng = np.random.default_rng(0)
    rows = X[rng.integers(0, len(X), 500)] + rng.normal(0, 0.05, (500, 4))
    bodies = tmp / "bodies.txt"
    bodies.write_text("\n".join(json.dumps({"inputs": [{"name": "input", "shape": [1, 4], "datatype": "FP64",
                                                        "data": r.tolist()}]}) for r in rows) + "\n")
    python = mlserver_python(Path(args.venv))
    version = subprocess.run([str(python), "-c", "import mlserver; print(mlserver.__version__)"],
                             capture_output=True, text=True).stdout.strip()
    setups = {"jupyter-pipeline serve (no cache)": lambda log: start_ours(store, False, log),
              f"MLServer {version} + mlserver-sklearn": lambda log: start_mlserver(python, model, tmp / "mlserver", log)}
    print(f"load generator: {'wrk' if load is run_wrk else 'python threads'}; "
          f"{args.repeat} x {args.duration:.0f} s per cell, medians\n")
    path = "/v2/models/iris/infer"
    results: dict = {"generator": load.__name__, "servers": {}}
    for label, start in setups.items():
        log = tmp / f"{label.split()[0]}.log"
        proc, port = start(log)
        try:
            wait_ready(port, path, bodies.read_text().splitlines()[0], proc)
            results["servers"][label] = {c: median_of([load(port, path, bodies, c, args.duration, tmp)
                                                       for _ in range(args.repeat)]) for c in CONCURRENCY}
        finally:
            stop(proc)
    print(f"{'server':38s} {'clients':>7s} {'p50 ms':>8s} {'p99 ms':>8s} {'req/s':>9s} {'failed':>6s}")
    for label, cells in results["servers"].items():
        for c, r in cells.items():
            print(f"{label:38s} {c:7d} {r['p50_us'] / 1000:8.2f} {r['p99_us'] / 1000:8.2f} {r['rps']:9.0f} "
                  f"{r['failed']:6.0f}")
    ours, theirs = results["servers"].values()
    results["ratios"] = {f"throughput vs MLServer at {c} clients": ours[c]["rps"] / theirs[c]["rps"]
                         for c in CONCURRENCY}
    print()
    for k, v in results["ratios"].items():
        print(f"{k:40s} {v:6.2f}")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
