"""Requests answered vs sent across a SIGTERM under 64-connection keep-alive load (goal: all).

``wrk -c64`` posts back to back to a server process; a SIGTERM arrives a third of the way in. A
request counts as *sent* when wrk wrote it on an open connection: it then ends as a 2xx (answered),
a non-2xx, a read error (the connection closed or reset before a complete response) or a timeout.
Once the listener is closed, wrk keeps reconnecting until its time is up; on loopback each refused
connection shows up as a *write* error (the connect itself returns "in progress"), so write errors
are reported apart, as connections refused, not as requests sent. The bodies mix 1-row requests
with 256-row ones, whose responses are large enough to be mid-flush at the signal.

Side by side in one run: ``jupyter-pipeline serve`` (drains) and the Flask baseline of
``bench_serving.py`` (a threaded Flask app, which exits on SIGTERM). Needs ``wrk``
(``apt-get install wrk``); each cell is the median of ``--repeat`` trials.

    .venv/bin/python benchmarks/bench_serving_drain.py [--repeat 3] [--seconds 6] [--json out.json] [--quick]
"""

from __future__ import annotations

import argparse
import json
import shutil
import signal
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

import bench_serving

WRK_SCRIPT = bench_serving.WRK_REQUESTS + '''done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("RESULT {\\"requests\\": %%d, \\"non2xx\\": %%d, \\"read\\": %%d, \\"write\\": %%d, "
    .. "\\"timeout\\": %%d, \\"connect\\": %%d}\\n", summary.requests, e.status, e.read, e.write, e.timeout,
    e.connect))
end
'''


def trial(start, bodies: Path, seconds: float, tmp: Path, label: str) -> dict:
    """One server, one wrk run, one SIGTERM a third of the way in."""
    log = tmp / f"{label}.log"
    proc, port = start(log)
    path = "/v2/models/digits/infer"
    try:
        bench_serving.wait_ready(port, path, bodies.read_text().splitlines()[0], proc)
        script = tmp / "drain.lua"
        script.write_text(WRK_SCRIPT % {"bodies": bodies, "path": path})
        timer = threading.Timer(seconds / 3, proc.send_signal, (signal.SIGTERM,))
        timer.start()
        out = subprocess.run(["wrk", "-t", "2", "-c", "64", "-d", f"{round(seconds)}s", "--timeout", f"{round(seconds)}s",
                              "-s", str(script), f"http://127.0.0.1:{port}"], capture_output=True, text=True,
                             check=True)
        timer.join()
        exit_code = proc.wait(60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    line = next(x for x in out.stdout.splitlines() if x.startswith("RESULT "))
    r = json.loads(line[len("RESULT "):])
    sent = r["requests"] + r["read"] + r["timeout"]
    answered = r["requests"] - r["non2xx"]
    return {"sent": sent, "answered": answered, "lost": sent - answered, "ratio": answered / sent if sent else 0.0,
            "read_errors": r["read"], "refused": r["connect"] + r["write"], "exit_code": exit_code}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=3, help="trials per server (median reported)")
    parser.add_argument("--seconds", type=float, default=6.0, help="length of each wrk run")
    parser.add_argument("--json", help="also write the results here")
    parser.add_argument("--quick", action="store_true", help="one 3 s trial per server")
    args = parser.parse_args(argv)
    if args.quick:
        args.repeat, args.seconds = 1, 3.0
    if not shutil.which("wrk"):
        print("wrk is not installed (apt-get install wrk); this benchmark needs it")
        return 1
    tmp, store, _ = bench_serving.digits_store("jp-bench-drain-")
    rng = np.random.default_rng(0)
    bodies = bench_serving.write_bodies(tmp / "bodies.txt",
                                        (rng.random((rows, 64), dtype=np.float32) for rows in (1, 1, 1, 256)))
    servers = {
        "jupyter-pipeline serve": lambda log: bench_serving.start_ours(store, False, log),
        "Flask + model.predict (baseline)": lambda log: bench_serving.start_flask(
            f"{store}/models/digits/1/model.keras", log),
    }
    results: dict = {}
    for label, start in servers.items():
        trials = [trial(start, bodies, args.seconds, tmp, label.split()[0]) for _ in range(args.repeat)]
        results[label] = {"trials": trials, "median_ratio": statistics.median(t["ratio"] for t in trials),
                          "lost_total": sum(t["lost"] for t in trials), "sent_total": sum(t["sent"] for t in trials)}
        time.sleep(0.5)
    print(f"{'server':36s} {'trial':>5s} {'sent':>7s} {'answered':>8s} {'lost':>5s} {'refused':>8s} {'exit':>4s}")
    for label, res in results.items():
        for i, t in enumerate(res["trials"], 1):
            print(f"{label:36s} {i:5d} {t['sent']:7d} {t['answered']:8d} {t['lost']:5d} {t['refused']:8d} "
                  f"{t['exit_code']:4d}")
    print()
    for label, res in results.items():
        print(f"{label:36s} answered/sent median {res['median_ratio']:.4f}  "
              f"({res['lost_total']} lost of {res['sent_total']} sent in {args.repeat} trials)")
    return bench_serving.finish(results, args.json, tmp)


if __name__ == "__main__":
    sys.exit(main())
