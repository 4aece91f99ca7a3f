"""Serving protocols side by side, in one run against one server process (the digits model):

* **gRPC vs REST**: p50/p99 latency of back-to-back calls (1 row) and throughput with 16 calls in
  flight from one asyncio client, through tritonclient's HTTP and gRPC clients (the same client
  library both ways, so the difference is the protocol and the server's front);
* **binary vs JSON tensors** for a 1,000-row batch (64 floats a row in, 10 out): REST with JSON
  both ways, REST with the binary extension both ways, and gRPC;
* **cache hits at 64 connections** (``wrk``): requests per second, and the server's CPU time per
  request (from ``/proc``), whose inverse is what one core answers when the machine is not shared;
  baseline: the same server with the cache off (every request reaches the model).

The cache is off except in the cache-hit cell, so every other request reaches the model. Each
cell is the median of ``--repeat`` runs.

    .venv/bin/python benchmarks/bench_serving_protocols.py [--repeat 3] [--seconds 3] [--json out.json] [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

import bench_serving

os.environ.setdefault("KERAS_BACKEND", "jax")


def start(store: str, log: Path, *extra: str) -> tuple[subprocess.Popen, int, int]:
    """The server with its gRPC service too: the process, its REST port and its gRPC port."""
    grpc_port = bench_serving.free_port()
    proc, port = bench_serving.start_ours(store, True, log, "--grpc-port", str(grpc_port),
                                          "--max-batch-size", "1024", *extra)
    return proc, port, grpc_port


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _inputs(mod, x: np.ndarray, binary: bool):
    inp = mod.InferInput("pixels", list(x.shape), "FP32")
    if mod.__name__.endswith("http"):
        inp.set_data_from_numpy(x, binary_data=binary)
        return [inp], [mod.InferRequestedOutput("probs", binary_data=binary)]
    inp.set_data_from_numpy(x)
    return [inp], None


def latency(kind: str, port: int, grpc_port: int, x: np.ndarray, calls: int) -> dict:
    """p50/p99 of back-to-back calls with one client; ``kind`` is rest-json, rest-binary or grpc."""
    import tritonclient.grpc as grpcclient
    import tritonclient.http as httpclient

    mod = grpcclient if kind == "grpc" else httpclient
    client = mod.InferenceServerClient(f"127.0.0.1:{grpc_port if kind == 'grpc' else port}")
    inputs, outputs = _inputs(mod, x, kind == "rest-binary")
    try:
        for _ in range(min(20, calls)):
            client.infer("digits", inputs, outputs=outputs)
        samples = []
        for _ in range(calls):
            t = time.perf_counter()
            result = client.infer("digits", inputs, outputs=outputs)
            samples.append(time.perf_counter() - t)
        assert result.as_numpy("probs").shape == (x.shape[0], 10)
    finally:
        client.close()
    return bench_serving.percentiles(samples)


def throughput(kind: str, port: int, grpc_port: int, x: np.ndarray, seconds: float, in_flight: int = 16) -> float:
    """Answers per second with ``in_flight`` calls outstanding from one asyncio client."""
    import tritonclient.grpc.aio as grpcaio
    import tritonclient.http.aio as httpaio

    async def run() -> int:
        mod = grpcaio if kind == "grpc" else httpaio
        client = mod.InferenceServerClient(f"127.0.0.1:{grpc_port if kind == 'grpc' else port}")
        inputs, outputs = _inputs(mod, x, True)
        done = 0
        stop = time.perf_counter() + seconds

        async def worker():
            nonlocal done
            while time.perf_counter() < stop:
                await client.infer("digits", inputs, outputs=outputs)
                done += 1
        try:
            await asyncio.gather(*(worker() for _ in range(in_flight)))
        finally:
            await client.close()
        return done

    return asyncio.run(run()) / seconds


def wrk_with_cpu(proc: subprocess.Popen, port: int, bodies: Path, seconds: float, tmp: Path) -> dict:
    before = cpu_seconds(proc.pid)
    r = bench_serving.run_wrk(port, "/v2/models/digits/infer", bodies, 64, seconds, tmp)
    cpu = cpu_seconds(proc.pid) - before
    answered = r["rps"] * max(1, round(seconds))
    return {"rps": r["rps"], "cpu_us_per_request": 1e6 * cpu / answered if answered else float("nan"),
            "failed": r["failed"]}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=3.0, help="length of each throughput cell")
    parser.add_argument("--json", help="also write the results here")
    parser.add_argument("--quick", action="store_true", help="one short run per cell")
    args = parser.parse_args(argv)
    if args.quick:
        args.repeat, args.seconds = 1, 1.0
    calls = 100 if args.quick else 400
    tmp, store, _ = bench_serving.digits_store("jp-bench-protocols-")
    rng = np.random.default_rng(0)
    one, batch = rng.random((1, 64), dtype=np.float32), rng.random((1000, 64), dtype=np.float32)
    results: dict = {"latency_1_row": {}, "throughput_16_in_flight": {}, "latency_1000_rows": {}}
    proc, port, grpc_port = start(store, tmp / "server.log", "--no-cache")
    try:
        bench_serving.wait_ready(port, "/v2/models/digits/infer", bench_serving.body_for(one), proc)
        for kind in ("rest-json", "rest-binary", "grpc"):
            results["latency_1_row"][kind] = bench_serving.median_of([latency(kind, port, grpc_port, one, calls)
                                                        for _ in range(args.repeat)])
            results["latency_1000_rows"][kind] = bench_serving.median_of([latency(kind, port, grpc_port, batch, calls // 10)
                                                            for _ in range(args.repeat)])
        for kind in ("rest-binary", "grpc"):
            results["throughput_16_in_flight"][kind] = statistics.median(
                throughput(kind, port, grpc_port, one, args.seconds) for _ in range(args.repeat))
    finally:
        proc.terminate()
        proc.wait(60)
    if shutil.which("wrk"):
        same = bench_serving.write_bodies(tmp / "same.txt", [one])
        distinct = bench_serving.write_bodies(tmp / "distinct.txt",
                                              (rng.random((1, 64), dtype=np.float32) for _ in range(500)))
        results["wrk_64_connections"] = {}
        for label, extra, bodies in (("cache hits", (), same), ("cache off", ("--no-cache",), distinct)):
            proc, port, _ = start(store, tmp / "server.log", *extra)
            try:
                bench_serving.wait_ready(port, "/v2/models/digits/infer", bodies.read_text().splitlines()[0], proc)
                results["wrk_64_connections"][label] = bench_serving.median_of(
                    [wrk_with_cpu(proc, port, bodies, args.seconds, tmp) for _ in range(args.repeat)])
            finally:
                proc.terminate()
                proc.wait(60)
    results["load_average_at_end"] = os.getloadavg()

    print(f"{'1 row, back to back':34s} {'p50 ms':>8s} {'p99 ms':>8s}")
    for kind, r in results["latency_1_row"].items():
        print(f"  {kind:32s} {r['p50_us'] / 1000:8.3f} {r['p99_us'] / 1000:8.3f}")
    print(f"{'1,000 rows, back to back':34s} {'p50 ms':>8s} {'p99 ms':>8s}")
    for kind, r in results["latency_1000_rows"].items():
        print(f"  {kind:32s} {r['p50_us'] / 1000:8.3f} {r['p99_us'] / 1000:8.3f}")
    print("1 row, 16 in flight (answers/s)")
    for kind, rps in results["throughput_16_in_flight"].items():
        print(f"  {kind:32s} {rps:8.0f}")
    for label, r in results.get("wrk_64_connections", {}).items():
        print(f"wrk 64 connections, {label:13s} {r['rps']:8.0f} req/s, server CPU {r['cpu_us_per_request']:.0f} us "
              f"per request ({1e6 / r['cpu_us_per_request']:.0f} req/s per core), failed {r['failed']:.0f}")
    return bench_serving.finish(results, args.json, tmp)


if __name__ == "__main__":
    sys.exit(main())
