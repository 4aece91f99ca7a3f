"""Model serving benchmark: p50/p99 latency and throughput at 1, 8 and 64 concurrent clients.

Side by side in one run, on the example's model (digits: 64 -> Dense(64, relu) -> Dense(10)):

* the floor: the model called in-process on the same input (``model.predict``, ``model(x)``, and
  the compiled call path the server uses);
* ``jupyter-pipeline serve`` with the cache off (every request reaches the model), and with the
  cache on and one repeated body (every request after the first is a cache hit);
* the baseline a user might write instead: a minimal Flask app calling ``model.predict``
  under a lock, since concurrent ``model.predict`` calls fail (MLServer with a custom runtime is
  the other candidate; it is not installed here). Throughput counts successful responses only.

Servers run in their own processes; the load generator is ``wrk`` (closed loop: N connections,
each sending its next request when the previous answer arrives) or, without wrk, a threaded
Python client. Each cell is the median of ``--repeat`` runs.

    .venv/bin/python benchmarks/bench_serving.py [--duration 4] [--repeat 3] [--json out.json] [--quick]

``--quick`` (used by ``benchmarks/run.py --quick``): 1 s per cell, one run, a fifth of the floor calls.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
os.environ.setdefault("KERAS_BACKEND", "jax")
CONCURRENCY = (1, 8, 64)

FLASK_APP = textwrap.dedent('''
    import os, sys, numpy as np
    os.environ.setdefault("KERAS_BACKEND", "jax")
    import keras
    import threading
    from flask import Flask, request, jsonify
    model = keras.saving.load_model(sys.argv[1])
    lock = threading.Lock()  # model.predict is not thread-safe: concurrent calls fail without it
    app = Flask(__name__)

    @app.post("/v2/models/digits/infer")
    def infer():
        doc = request.get_json()
        t = doc["inputs"][0]
        x = np.asarray(t["data"], dtype="float32").reshape(t["shape"])
        with lock:
            y = model.predict(x, verbose=0)
        return jsonify({"model_name": "digits", "outputs": [
            {"name": "probs", "shape": list(y.shape), "datatype": "FP32", "data": y.reshape(-1).tolist()}]})

    app.run(host="127.0.0.1", port=int(sys.argv[2]), threaded=True)
''')

#: wrk's request loop (a %-template of ``bodies`` and ``path``): POST each line of the bodies file in
#: turn. Each script adds its own ``done``, which prints a ``RESULT {json}`` line.
WRK_REQUESTS = '''
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local bodies = {}
for line in io.lines("%(bodies)s") do bodies[#bodies + 1] = line end
local n = 0
request = function()
  n = n + 1
  return wrk.format(nil, "%(path)s", nil, bodies[(n %% #bodies) + 1])
end
'''
WRK_SCRIPT = WRK_REQUESTS + '''done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("RESULT {\\"p50_us\\": %%d, \\"p99_us\\": %%d, \\"requests\\": %%d, \\"seconds\\": %%f, "
    .. "\\"errors\\": %%d, \\"non2xx\\": %%d}\\n", latency:percentile(50), latency:percentile(99), summary.requests,
    summary.duration / 1e6, e.connect + e.read + e.write + e.timeout, e.status))
end
'''


def build_model():
    import keras

    keras.utils.set_random_seed(0)
    return keras.Sequential([keras.Input(shape=(64,), name="pixels"),
                             keras.layers.Dense(64, activation="relu"),
                             keras.layers.Dense(10, activation="softmax", name="probs")])


def body_for(x: np.ndarray) -> str:
    return json.dumps({"inputs": [{"name": "pixels", "shape": list(x.shape), "datatype": "FP32",
                                   "data": x.reshape(-1).tolist()}]})


def write_bodies(path: Path, inputs) -> Path:
    """A file of request bodies for ``inputs``, one a line, which the load generators send in turn."""
    path.write_text("\n".join(body_for(x) for x in inputs) + "\n")
    return path


def digits_store(prefix: str):
    """A scratch folder, a store in it where the digits model is registered, and the model."""
    from jupyter_pipeline.store.models import log_model

    tmp = Path(tempfile.mkdtemp(prefix=prefix))
    store = str(tmp / "store")
    model = build_model()
    log_model(model, "digits", store=store)
    return tmp, store, model


def percentiles(samples: list[float]) -> dict:
    a = np.asarray(samples)
    return {"p50_us": float(np.percentile(a, 50) * 1e6), "p99_us": float(np.percentile(a, 99) * 1e6)}


def time_calls(fn, n: int) -> dict:
    for _ in range(min(50, n)):
        fn()
    samples = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - t)
    return percentiles(samples)


def floor(model, x, scale: float = 1.0) -> dict:
    from jupyter_pipeline.serving.predictor import make_predictor

    predictor = make_predictor(model, 32)
    predictor.warm_up()
    feed = {"pixels": x}
    n = lambda calls: max(20, int(calls * scale))
    return {"compiled (server's call path)": time_calls(lambda: predictor(feed), n(3000)),
            "model(x, training=False)": time_calls(lambda: np.asarray(model(x, training=False)), n(500)),
            "model.predict(x)": time_calls(lambda: model.predict(x, verbose=0), n(500))}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_ready(port: int, path: str, body: str, proc, timeout: float = 120) -> None:
    import httpx

    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited: {proc.stderr.read() if proc.stderr else ''}")
        try:
            if httpx.post(f"http://127.0.0.1:{port}{path}", content=body,
                          headers={"Content-Type": "application/json"}).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise TimeoutError(f"server on port {port} not ready")


def start_ours(store: str, cache: bool, log: Path, *extra: str) -> tuple[subprocess.Popen, int]:
    """``jupyter-pipeline serve`` in its own process (``extra``: more of its options); it and its port."""
    port = free_port()
    code = "import sys; from jupyter_pipeline.cli import main; sys.exit(main(sys.argv[1:]))"
    args = [sys.executable, "-c", code, "serve", "--store", store, "--port", str(port), "--address", "127.0.0.1",
            "--poll-interval", "0"] + ([] if cache else ["--no-cache"]) + list(extra)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=log.open("w")), port


def start_flask(model_file: str, log: Path) -> tuple[subprocess.Popen, int]:
    port = free_port()
    script = Path(tempfile.mkdtemp(prefix="jp-bench-")) / "flask_app.py"
    script.write_text(FLASK_APP)
    return subprocess.Popen([sys.executable, str(script), model_file, str(port)], stdout=subprocess.DEVNULL,
                            stderr=log.open("w")), port


def run_wrk(port: int, path: str, bodies_file: Path, concurrency: int, duration: float, tmp: Path) -> dict:
    script = tmp / "wrk.lua"
    script.write_text(WRK_SCRIPT % {"bodies": bodies_file, "path": path})
    threads = 1 if concurrency == 1 else 2
    out = subprocess.run(["wrk", "-t", str(threads), "-c", str(concurrency), "-d", f"{max(1, round(duration))}s",
                          "--timeout", "10s",
                          "-s", str(script), f"http://127.0.0.1:{port}"], capture_output=True, text=True, check=True)
    line = next(ln for ln in out.stdout.splitlines() if ln.startswith("RESULT "))
    r = json.loads(line[len("RESULT "):])
    return {"p50_us": r["p50_us"], "p99_us": r["p99_us"], "rps": (r["requests"] - r["non2xx"]) / r["seconds"],
            "failed": r["errors"] + r["non2xx"]}


def run_python_client(port: int, path: str, bodies_file: Path, concurrency: int, duration: float, tmp: Path) -> dict:
    """Fallback without wrk: threads with keep-alive connections (the client then shares the GIL)."""
    import concurrent.futures

    import httpx

    bodies = bodies_file.read_text().splitlines()
    stop = time.time() + duration

    def worker(i):
        lat, failed = [], 0
        with httpx.Client(base_url=f"http://127.0.0.1:{port}") as c:
            n = i
            while time.time() < stop:
                t = time.perf_counter()
                r = c.post(path, content=bodies[n % len(bodies)], headers={"Content-Type": "application/json"})
                lat.append(time.perf_counter() - t)
                failed += r.status_code != 200
                n += 1
        return lat, failed

    with concurrent.futures.ThreadPoolExecutor(concurrency) as pool:
        parts = list(pool.map(worker, range(concurrency)))
    lat = [x for p in parts for x in p[0]]
    failed = sum(p[1] for p in parts)
    return {**percentiles(lat), "rps": (len(lat) - failed) / duration, "failed": failed}


def median_of(runs: list[dict]) -> dict:
    return {k: statistics.median(r[k] for r in runs) for k in runs[0]}


def stop(proc: subprocess.Popen) -> None:
    """SIGTERM, then SIGKILL (to its process group, when it leads one) after 30 s (MLServer may not exit)."""
    proc.terminate()
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        if os.getpgid(proc.pid) == proc.pid:
            os.killpg(proc.pid, signal.SIGKILL)
        else:
            proc.kill()
        proc.wait(30)


def finish(results: dict, json_path: str | None, tmp: Path) -> int:
    """Write ``results`` to ``json_path`` (if any), remove the scratch folder ``tmp``; exit status 0."""
    if json_path:
        Path(json_path).write_text(json.dumps(results, indent=1))
    shutil.rmtree(tmp, ignore_errors=True)
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, default=4.0, help="seconds per measurement")
    parser.add_argument("--repeat", type=int, default=3, help="measurements per cell (median reported)")
    parser.add_argument("--json", help="also write the results here")
    parser.add_argument("--quick", action="store_true", help="1 s per cell, one run, fewer floor calls")
    parser.add_argument("--mlserver", action="store_true",
                        help="also measure MLServer 1.7.1 with a Keras runtime (own venv, installed on first use)")
    args = parser.parse_args(argv)
    if args.quick:
        args.duration, args.repeat = 1.0, 1
    sys.path.insert(0, str(ROOT))
    load = run_wrk if shutil.which("wrk") else run_python_client
    tmp, store, model = digits_store("jp-bench-")
    rng = np.random.default_rng(0)
    distinct = write_bodies(tmp / "distinct.txt", (rng.random((1, 64), dtype=np.float32) for _ in range(500)))
    same = write_bodies(tmp / "same.txt", [rng.random((1, 64), dtype=np.float32)])
    x = rng.random((1, 64), dtype=np.float32)
    results: dict = {"generator": load.__name__, "floor": floor(model, x, 0.2 if args.quick else 1.0), "servers": {}}
    print(f"load generator: {'wrk' if load is run_wrk else 'python threads'}; "
          f"{args.repeat} x {args.duration:.0f} s per cell, medians\n")
    for label, p50 in ((k, v["p50_us"]) for k, v in results["floor"].items()):
        print(f"floor  {label:32s} p50 {p50:8.1f} us  p99 {results['floor'][label]['p99_us']:8.1f} us")

    path = "/v2/models/digits/infer"
    setups = [("jupyter-pipeline serve (no cache)", lambda log: start_ours(store, False, log), distinct),
              ("jupyter-pipeline serve (cache hits)", lambda log: start_ours(store, True, log), same),
              ("Flask + model.predict (baseline)",
               lambda log: start_flask(f"{store}/models/digits/1/model.keras", log), distinct)]
    if args.mlserver:
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        import mlserver_baseline
        from venvs import BaselineUnavailable

        try:
            label = f"MLServer {mlserver_baseline.version()} + model.predict (baseline)"

            def start_mlserver(log):
                port = free_port()
                return mlserver_baseline.start(f"{store}/models/digits/1/model.keras", port, free_port(),
                                               free_port(), log), port
            setups.append((label, start_mlserver, distinct))
        except BaselineUnavailable as exc:
            results["mlserver_unavailable"] = str(exc)
            print(f"MLServer could not be measured: {exc}")
    for label, start, bodies in setups:
        proc, port = start(tmp / f"{label.split()[0]}.log")
        try:
            wait_ready(port, path, bodies.read_text().splitlines()[0], proc)
            cells = {}
            for c in CONCURRENCY:
                cells[c] = median_of([load(port, path, bodies, c, args.duration, tmp) for _ in range(args.repeat)])
            results["servers"][label] = cells
        finally:
            stop(proc)
        errors = [line for line in (tmp / f"{label.split()[0]}.log").read_text(errors="replace").splitlines()
                  if "Error" in line and "Traceback" not in line]
        if errors:
            results.setdefault("server_errors", {})[label] = errors[-1][:300]

    print(f"\n{'server':38s} {'clients':>7s} {'p50 ms':>8s} {'p99 ms':>8s} {'req/s':>9s} {'failed':>6s}")
    for label, cells in results["servers"].items():
        for c, r in cells.items():
            print(f"{label:38s} {c:7d} {r['p50_us'] / 1000:8.2f} {r['p99_us'] / 1000:8.2f} {r['rps']:9.0f} "
                  f"{r['failed']:6.0f}")
    ours = results["servers"]["jupyter-pipeline serve (no cache)"]
    hits = results["servers"]["jupyter-pipeline serve (cache hits)"]
    base = results["servers"]["Flask + model.predict (baseline)"]
    compiled = results["floor"]["compiled (server's call path)"]["p50_us"]
    predict = results["floor"]["model.predict(x)"]["p50_us"]
    ratios = {
        "p50 overhead over the compiled floor at 1 client (ms)": (ours[1]["p50_us"] - compiled) / 1000,
        "p50 overhead over model.predict at 1 client (ms)": (ours[1]["p50_us"] - predict) / 1000,
        **{f"throughput vs baseline at {c} clients": ours[c]["rps"] / base[c]["rps"] for c in CONCURRENCY},
        **{f"p50 latency vs baseline at {c} clients": ours[c]["p50_us"] / base[c]["p50_us"] for c in CONCURRENCY},
        "cache-hit throughput at 64 clients (req/s)": hits[64]["rps"],
    }
    mlserver = next((cells for label, cells in results["servers"].items() if label.startswith("MLServer")), None)
    if mlserver:
        ratios.update({f"throughput vs MLServer at {c} clients": ours[c]["rps"] / mlserver[c]["rps"]
                       for c in CONCURRENCY})
    results["ratios"] = ratios
    for label, line in results.get("server_errors", {}).items():
        print(f"last error logged by {label}: {line}")
    print()
    for k, v in ratios.items():
        print(f"{k:58s} {v:10.2f}")
    return finish(results, args.json, tmp)


if __name__ == "__main__":
    sys.exit(main())
