"""Fault benchmark: how long a dead stage kernel takes to fail its stage, and a store that stops
taking writes takes to end its run.

    python benchmarks/bench_faults.py [--quick]

Each sample is one local run of three independent stages, run one at a time: one whose kernel
exits (``os._exit(1)``), one whose kernel the benchmark kills with SIGKILL (what the out-of-memory
killer does), and the baseline, one that raises an exception. Each stage notes the time just
before its fault (the killed one: the benchmark notes the time of the kill); the time counted is
from then until the runner reports the stage failed. Medians of 5 runs (quick: 3). Goal: a dead
kernel fails its stage in under 5 s.

The store fault: a run of two stages, the second waiting on a file; the benchmark replaces the store
folder with a file (nothing can be written under it any more) and lets the stage go on, which then
saves its output into that store. Counted: from the fault until the runner has ended the run (its
record and the stage's executed notebook kept on this machine). Baseline: the same run whose second
stage raises instead, from its raise to the run's end. Goal: under 10 s.
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from common import print_rows, row, save_rows, write_notebook

NOTE = "import time\nopen('{name}.t', 'w').write(repr(time.time()))\n"


def pipeline_notebook(folder: Path) -> Path:
    return write_notebook(folder / "faults.ipynb", [
        (["stage:exits"], NOTE.format(name="exits") + "import os\nos._exit(1)"),
        (["stage:killed"], "import os, time\nopen('killed.pid', 'w').write(str(os.getpid()))\ntime.sleep(600)"),
        (["stage:raises"], NOTE.format(name="raises") + "raise RuntimeError('the baseline fault')"),
    ])


def one_run(folder: Path) -> dict[str, float]:
    """Seconds from each stage's fault to the runner reporting it failed."""
    from jupyter_pipeline.notebook.parse import load
    from jupyter_pipeline.local.runner import LocalRunner

    for stale in folder.glob("*.t"):
        stale.unlink()
    (folder / "killed.pid").unlink(missing_ok=True)
    failed_at: dict[str, float] = {}

    def on_event(kind, record, stage):
        if kind == "stage-finished":
            failed_at[stage] = time.time()

    def kill_when_started():
        pid_file = folder / "killed.pid"
        while not (pid_file.exists() and pid_file.read_text()):
            time.sleep(0.01)
        time.sleep(0.2)
        (folder / "killed.t").write_text(repr(time.time()))
        os.kill(int(pid_file.read_text()), signal.SIGKILL)

    killer = threading.Thread(target=kill_when_started, daemon=True)
    killer.start()
    record = LocalRunner(str(folder / "store"), workers=1, on_event=on_event).run(load(folder / "faults.ipynb"))
    assert all(s.status.value == "failed" for s in record.stages.values()), record.to_json()
    return {name: failed_at[name] - float((folder / f"{name}.t").read_text()) for name in failed_at}


STORE_NOTEBOOK = [
    (["stage:first"], "a = 1"),
    (["stage:second"], "import pathlib, time\nopen('started', 'w').close()\n"
                       "while pathlib.Path('hold').exists():\n    time.sleep(0.01)\n"
                       "open('raised.t', 'w').write(repr(time.time()))\nif pathlib.Path('raise').exists():\n"
                       "    raise RuntimeError('the baseline fault')\nb = a + 1"),
]


def store_fault_run(folder: Path, baseline: bool) -> float:
    """Seconds from the store's failure (baseline: the stage's raise) to the end of the run."""
    from jupyter_pipeline.exceptions import StoreError
    from jupyter_pipeline.local.runner import LocalRunner
    from jupyter_pipeline.notebook.parse import load

    for name in ("started", "raised.t", "raise"):
        (folder / name).unlink(missing_ok=True)
    (folder / "hold").touch()
    if baseline:
        (folder / "raise").touch()
    store = folder / "store"
    broke: list[float] = []

    def fault_when_started():
        while not (folder / "started").exists():
            time.sleep(0.01)
        time.sleep(0.2)
        if not baseline:
            store.rename(folder / "store.away")
            store.write_text("not a folder")
            broke.append(time.time())
        (folder / "hold").unlink()

    faulter = threading.Thread(target=fault_when_started, daemon=True)
    faulter.start()
    try:
        record = LocalRunner(str(store), workers=1).run(load(folder / "store_faults.ipynb"))
        assert baseline and record.status.value == "failed", record.to_json()
    except StoreError:
        assert not baseline
    ended = time.time()
    faulter.join()
    if not baseline:
        store.unlink()
        (folder / "store.away").rename(store)
    return ended - (broke[0] if broke else float((folder / "raised.t").read_text()))


def bench_store_fault(quick: bool) -> list[dict]:
    repeat = 3 if quick else 5
    with tempfile.TemporaryDirectory(prefix="jp-bench-store-fault-") as tmp:
        folder = Path(tmp)
        os.environ["XDG_CACHE_HOME"] = str(folder / "cache")  # where what the store did not take waits
        write_notebook(folder / "store_faults.ipynb", STORE_NOTEBOOK)
        faults = [store_fault_run(folder, baseline=False) for _ in range(repeat)]
        raises = [store_fault_run(folder, baseline=True) for _ in range(repeat)]
    return [row("store stops taking writes → run ended", statistics.median(faults), statistics.median(raises), "s",
                "a stage raising an exception → run ended", "goal < 10 s")]


def bench_faults(quick: bool) -> list[dict]:
    repeat = 3 if quick else 5
    with tempfile.TemporaryDirectory(prefix="jp-bench-faults-") as tmp:
        folder = Path(tmp)
        pipeline_notebook(folder)
        samples = [one_run(folder) for _ in range(repeat)]
    median = {name: statistics.median(s[name] for s in samples) for name in samples[0]}
    base = "a stage raising an exception"
    return [
        row("kernel exits (os._exit) → stage failed", median["exits"], median["raises"], "s", base, "goal < 5 s"),
        row("kernel killed (SIGKILL) → stage failed", median["killed"], median["raises"], "s", base, "goal < 5 s"),
    ]


def main(argv=None) -> list[dict]:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args(argv)
    rows = bench_faults(args.quick) + bench_store_fault(args.quick)
    print_rows(rows)
    save_rows("faults", rows)
    return rows


if __name__ == "__main__":
    main()
