"""Local-run speed: a 6-stage chain against one papermill run of the same code.

    python benchmarks/bench_chain.py [--quick] [--baseline-ref REV]

Two chains of six trivial stages, one passing an int along, one a 10 MB NumPy array, each run
by this checkout's local runner (fresh kernel per stage, the default; and ``--shared-kernel``, one
kernel for the run, its namespace emptied between stages) and by the runner of
``--baseline-ref`` (the release this work started from: the code of that commit, unpacked from
git), against the same code as one notebook run once by papermill. Each side runs in a process of
its own that has imported what it needs and made one untimed run, then times 5 runs (quick: 3);
medians. Also reported: the overhead per stage ((chain - papermill) / 6) and CPU-seconds per
stage (the run's process and every process it waited for: workers and kernels).

The chain's figures move with the machine's load; the parts are also timed on their own:
- **client ready**: a new client connecting to an already started kernel (what a warm worker's
  papermill does) until ``wait_for_ready`` returns, ours against jupyter_client's, on the same
  kernels.
- **kernel start**: from starting a stage kernel to a client ready on it, and the CPU-seconds the
  kernel used (until it exits), ours (no debugger, history in memory, quick reconnects, no fixed
  flush) against jupyter_client's defaults, alternating.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from common import print_rows, row, save_rows, write_notebook

ROOT = Path(__file__).resolve().parent.parent
#: The local runner as it was before the work on local-run speed began (the baseline of these figures).
BASELINE_REF = "038751a1e7e0a3389cac4499809607d89263b044"
STAGES = 6
VALUES = {"ints": "0", "10 MB array": "np.zeros(1_310_720)"}  # 1,310,720 float64 = 10 MiB

# Runs in a child process: `python - MODE NOTEBOOK STORE REPEAT` prints {"seconds": [...], "cpu": [...]}.
DRIVER = r"""
import json, resource, sys, time
mode, notebook, store, repeat = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
if mode == "papermill":
    import papermill
    def once():
        papermill.execute_notebook(notebook, store + "/out.ipynb", progress_bar=False, kernel_name="python3")
else:
    from jupyter_pipeline.notebook.parse import load
    from jupyter_pipeline.local.runner import LocalRunner
    pipeline = load(notebook)
    def once():
        record = LocalRunner(store, **({"shared_kernel": True} if mode == "shared" else {})).run(pipeline)
        assert record.status.value == "succeeded", record.to_json()
def cpu():
    own = sum(getattr(resource.getrusage(who), f) for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)
              for f in ("ru_utime", "ru_stime"))
    return own + zygote_cpu()
def zygote_cpu():
    # Forked workers are the zygote's children, not ours: count what it and they used.
    import os
    try:
        from jupyter_pipeline.local import zygote
    except ImportError:
        return 0.0
    if zygote._instance is None:
        return 0.0
    with open(f"/proc/{zygote._instance.proc.pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return sum(int(v) for v in fields[11:15]) / os.sysconf("SC_CLK_TCK")  # utime stime cutime cstime
once()  # imports, caches, the first kernel start of this machine's day
seconds, cpus = [], []
for _ in range(repeat):
    c0, t0 = cpu(), time.perf_counter()
    once()
    seconds.append(time.perf_counter() - t0)
    time.sleep(1.0)  # let the last stage's worker and kernel exit, so their CPU is counted in this run
    cpus.append(cpu() - c0)
print(json.dumps({"seconds": seconds, "cpu": cpus}))
"""


def notebooks(folder: Path, value: str) -> tuple[Path, Path]:
    """The chain as a pipeline (one stage per step) and as one plain notebook for papermill."""
    steps = [f"v{i} = {f'v{i - 1}' if i else value} + 1" for i in range(STAGES)]
    chain = write_notebook(folder / "chain.ipynb", [(["setup"], "import numpy as np")]
                           + [([f"stage:s{i}"], step) for i, step in enumerate(steps)])
    single = write_notebook(folder / "single.ipynb", [([], "import numpy as np")] + [([], s) for s in steps])
    return chain, single


def measure(mode: str, notebook: Path, store: Path, repeat: int, pythonpath: str) -> dict:
    env = {**os.environ, "PYTHONPATH": pythonpath}
    proc = subprocess.run([sys.executable, "-", mode, str(notebook), str(store), str(repeat)], input=DRIVER,
                          capture_output=True, text=True, env=env, cwd=notebook.parent, timeout=1800)
    if proc.returncode != 0:
        raise RuntimeError(f"{mode} run failed:\n{proc.stderr[-2000:]}")
    data = json.loads(proc.stdout.strip().splitlines()[-1])
    data["seconds"].sort()
    data["cpu"].sort()
    return {"seconds": data["seconds"][len(data["seconds"]) // 2], "cpu": data["cpu"][len(data["cpu"]) // 2]}


def unpack(ref: str, into: Path) -> Path:
    """The package as it was at ``ref``, unpacked from git into ``into``."""
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", ref, "jupyter_pipeline"], capture_output=True,
                             check=True).stdout
    into.mkdir(parents=True, exist_ok=True)
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    return into


def bench_ready(repeat: int) -> list[dict]:
    """Seconds from a new client's connection to ``wait_for_ready`` returning, on a started kernel."""
    import statistics

    from jupyter_client.asynchronous import AsyncKernelClient
    from jupyter_core.utils import run_sync

    from jupyter_pipeline.local.kernel import ReadyClient, start_kernel

    async def ready(km, cls) -> float:
        kc = cls(**km.get_connection_info(session=True), parent=km)
        kc.start_channels()
        t0 = time.perf_counter()
        await kc.wait_for_ready(timeout=60)
        seconds = time.perf_counter() - t0
        kc.stop_channels()
        return seconds

    times: dict[type, list[float]] = {ReadyClient: [], AsyncKernelClient: []}
    for i in range(repeat):
        with tempfile.TemporaryDirectory(prefix="jp-bench-ready-") as sockets:
            km = start_kernel("python3", None, sockets)
            try:
                run_sync(ready)(km, ReadyClient)  # the kernel is up from here on, as a warm worker's is
                for cls in ([ReadyClient, AsyncKernelClient] if i % 2 else [AsyncKernelClient, ReadyClient]):
                    times[cls].append(run_sync(ready)(km, cls))
            finally:
                run_sync(km.shutdown_kernel)(now=True)
    ours, theirs = statistics.median(times[ReadyClient]), statistics.median(times[AsyncKernelClient])
    return [row("client ready on a started kernel", ours, theirs, "s", "jupyter_client's wait_for_ready",
                "kernel_info round trip + IOPub idle, no fixed flush")]


def bench_kernel_start(repeat: int) -> list[dict]:
    """Seconds from starting a kernel to a ready client, and the kernel's CPU-seconds, ours vs defaults."""
    import resource
    import statistics

    from jupyter_client.asynchronous import AsyncKernelClient
    from jupyter_client.manager import AsyncKernelManager
    from jupyter_core.utils import run_sync

    from jupyter_pipeline.local.kernel import ReadyClient, StageKernelManager

    def children_cpu() -> float:
        usage = resource.getrusage(resource.RUSAGE_CHILDREN)
        return usage.ru_utime + usage.ru_stime

    async def ready(km) -> None:
        kc = km.client()
        kc.start_channels()
        await kc.wait_for_ready(timeout=60)
        kc.stop_channels()

    sides = {"ours": (StageKernelManager, ReadyClient), "defaults": (AsyncKernelManager, AsyncKernelClient)}
    seconds: dict[str, list[float]] = {name: [] for name in sides}
    cpu: dict[str, list[float]] = {name: [] for name in sides}
    for i in range(repeat):
        for name in (list(sides) if i % 2 else list(sides)[::-1]):
            manager, client = sides[name]
            with tempfile.TemporaryDirectory(prefix="jp-bench-kernel-") as sockets:
                c0, t0 = children_cpu(), time.perf_counter()
                km = manager(kernel_name="python3", transport="ipc", ip=os.path.join(sockets, "k"),
                             client_factory=client)
                run_sync(km.start_kernel)()
                run_sync(ready)(km)
                seconds[name].append(time.perf_counter() - t0)
                run_sync(km.shutdown_kernel)(now=False)
                cpu[name].append(children_cpu() - c0)
    med = {name: (statistics.median(seconds[name]), statistics.median(cpu[name])) for name in sides}
    base = "jupyter_client's defaults"
    return [row("stage kernel start → client ready", med["ours"][0], med["defaults"][0], "s", base,
                "no debugger, history in memory, 5 ms reconnects, no fixed flush"),
            row("stage kernel CPU-seconds (start to exit)", med["ours"][1], med["defaults"][1], "s", base)]


def bench_chain(quick: bool, baseline_ref: str = BASELINE_REF) -> list[dict]:
    repeat = 3 if quick else 5
    rows = bench_ready(repeat) + bench_kernel_start(repeat)
    with tempfile.TemporaryDirectory(prefix="jp-bench-chain-") as tmp:
        tmp = Path(tmp)
        release = str(unpack(baseline_ref, tmp / "release"))
        ours_path = os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)
        for label, value in (list(VALUES.items())[:1] if quick else VALUES.items()):
            folder = tmp / label.replace(" ", "-")
            folder.mkdir()
            chain, single = notebooks(folder, value)
            base = measure("papermill", single, folder, repeat, ours_path)
            ours = measure("runner", chain, folder / "store-ours", repeat, ours_path)
            shared = measure("shared", chain, folder / "store-shared", repeat, ours_path)
            before = measure("runner", chain, folder / "store-release", repeat, release)
            per_stage = (ours["seconds"] - base["seconds"]) / STAGES
            per_stage_before = (before["seconds"] - base["seconds"]) / STAGES
            per_stage_shared = (shared["seconds"] - base["seconds"]) / STAGES
            rows += [
                row(f"{STAGES}-stage chain ({label}), fresh kernel per stage", ours["seconds"], base["seconds"], "s",
                    "same code, one papermill run in process", "goal ≤ 2.5×"),
                row(f"{STAGES}-stage chain ({label}) vs the release's default", ours["seconds"], before["seconds"],
                    "s", f"runner at {baseline_ref[:7]}"),
                row(f"overhead per stage ({label})", per_stage, per_stage_before, "s",
                    f"runner at {baseline_ref[:7]}", "(chain - papermill) / 6; goal < 150 ms"),
                row(f"CPU-seconds per stage ({label})", ours["cpu"] / STAGES, before["cpu"] / STAGES, "s",
                    f"runner at {baseline_ref[:7]}", "runner, workers and kernels"),
                row(f"{STAGES}-stage chain ({label}), --shared-kernel", shared["seconds"], base["seconds"], "s",
                    "same code, one papermill run in process", "goal ≤ 1.5×"),
                row(f"{STAGES}-stage chain ({label}), --shared-kernel vs fresh kernels", shared["seconds"],
                    ours["seconds"], "s", "fresh kernel per stage, same run"),
                row(f"overhead per stage ({label}), --shared-kernel", per_stage_shared, per_stage, "s",
                    "fresh kernel per stage", "(chain - papermill) / 6; goal < 50 ms"),
                row(f"CPU-seconds per stage ({label}), --shared-kernel", shared["cpu"] / STAGES, ours["cpu"] / STAGES,
                    "s", "fresh kernel per stage", "runner, worker and kernel"),
            ]
    return rows


def main(argv=None) -> list[dict]:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--baseline-ref", default=BASELINE_REF, help="git revision whose runner is the baseline")
    args = ap.parse_args(argv)
    rows = bench_chain(args.quick, args.baseline_ref)
    print_rows(rows)
    save_rows("chain", rows)
    return rows


if __name__ == "__main__":
    main()
