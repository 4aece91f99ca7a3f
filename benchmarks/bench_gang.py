"""``workers:N`` stages locally: the digits example's ``train`` on 1 worker vs 2, and the gang's start-up cost.

    .venv/bin/python benchmarks/bench_gang.py [--quick]

- **Digits**: ``examples/digits/digits.ipynb`` (``train`` as one process) and
  ``digits_distributed.ipynb`` (``train`` tagged ``workers:2``: two kernels, keras DataParallel
  over JAX's CPU collectives), each run whole; the ``train`` stage's wall time (start to finish,
  kernels' start-up included) and the ``evaluate`` stage's test accuracy, medians over the runs.
- **Start-up**: a stage whose first step is one collective (a ``psum`` over every replica's device),
  on 2 workers vs the same stage on one. Figures: from the moment the last replica is up (its kernel
  started, its context active) to the barrier's release, and to the end of the first step
  (barrier + ``import jax`` + ``jax.distributed.initialize`` + the first collective); the one-process
  stage's baseline is from its first cell to the end of the same step.

On two cores the two replicas share the machine with each other (and with whatever else runs),
so the 2-worker run is not expected to be faster: the figure is what the gang costs.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(HERE))

from common import print_rows, row, save_rows, write_notebook

FIRST_STEP = """import time
start = time.time()
import jax
import numpy as np
import jupyter_pipeline as jp

dist = jp.distributed()
dist.initialize_jax()
ones = np.ones(jax.local_device_count())
total = jax.pmap(lambda v: jax.lax.psum(v, "i"), axis_name="i")(ones).block_until_ready()
jp.log_metric("start", start)
jp.log_metric("first_step", time.time())
jp.log_metric("devices", jax.device_count())"""


def _run(path: Path, store: str):
    from jupyter_pipeline.local.runner import run_pipeline

    record = run_pipeline(str(path), store=store)
    if record.status.value != "succeeded":
        raise SystemExit(f"{path.name}: {record.error} {[(n, s.error) for n, s in record.stages.items() if s.error]}")
    return record


def digits(store: str, repeat: int) -> dict:
    """Median ``train`` wall time and accuracy of the example on 1 and on 2 workers (runs interleaved)."""
    out: dict = {1: {"seconds": [], "accuracy": []}, 2: {"seconds": [], "accuracy": []}}
    notebooks = {1: ROOT / "examples/digits/digits.ipynb", 2: ROOT / "examples/digits/digits_distributed.ipynb"}
    for _ in range(repeat):
        for workers, path in notebooks.items():
            record = _run(path, store)
            out[workers]["seconds"].append(record.stages["train"].duration)
            out[workers]["accuracy"].append(record.stages["evaluate"].metrics["accuracy"])
            print(f"digits, {workers} worker(s): train {out[workers]['seconds'][-1]:.1f} s, "
                  f"accuracy {out[workers]['accuracy'][-1]:.4f}", flush=True)
    return {w: {k: statistics.median(v) for k, v in d.items()} for w, d in out.items()}


def start_up(tmp: Path, store: str, repeat: int) -> dict:
    """Median seconds from all replicas up to the barrier's release and to the first step's end."""
    from jupyter_pipeline.stage.replica import gang_json
    from jupyter_pipeline.store.base import open_store

    gang_nb = write_notebook(tmp / "first_step_gang.ipynb", [(["stage:step", "workers:2"], FIRST_STEP)])
    single_nb = write_notebook(tmp / "first_step_one.ipynb", [(["stage:step"], FIRST_STEP)])
    samples: dict[str, list[float]] = {"released": [], "first_step": [], "single": []}
    for _ in range(repeat):
        record = _run(gang_nb, store)
        times = [gang_json(open_store(store), record.run_id, "step", r) for r in (0, 1)]
        all_up = max(t["up"] for t in times)
        samples["released"].append(max(t["released"] for t in times) - all_up)
        samples["first_step"].append(record.stages["step"].metrics["first_step"] - all_up)
        one = _run(single_nb, store).stages["step"].metrics
        samples["single"].append(one["first_step"] - one["start"])
        print(f"all up → released {samples['released'][-1] * 1000:.0f} ms, → first step "
              f"{samples['first_step'][-1]:.2f} s; one process: first cell → first step {samples['single'][-1]:.2f} s",
              flush=True)
    return {k: statistics.median(v) for k, v in samples.items()}


def bench_gang(quick: bool = False) -> list[dict]:
    with tempfile.TemporaryDirectory(prefix="jp-bench-gang-") as tmp:
        store = str(Path(tmp) / "store")
        first = start_up(Path(tmp), store, 2 if quick else 5)
        d = digits(store, 1 if quick else 3)
    return [
        row("digits train stage, 2 workers vs 1 (wall, kernels included)", d[2]["seconds"], d[1]["seconds"], "s",
            "1 worker"),
        row("digits test accuracy, 2 workers vs 1", d[2]["accuracy"], d[1]["accuracy"], "", "1 worker",
            "same 5 epochs, global batch 32"),
        row("gang: all replicas up → barrier released", first["released"], first["first_step"], "s",
            "all up → first step", "the barrier's share of the start"),
        row("gang: all replicas up → first collective step done", first["first_step"], first["single"], "s",
            "1 process: first cell → same step", "barrier + import jax + distributed init + first psum"),
    ]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="fewer repeats")
    args = p.parse_args(argv)
    rows = bench_gang(args.quick)
    print_rows(rows)
    save_rows("gang", rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
