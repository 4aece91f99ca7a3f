"""An Elyra pipeline file run by jupyter-pipeline against Elyra's own local run of the same file.

``tests/fixtures/elyra/files.pipeline`` (a notebook, a Python script and a notebook passing three
files on as ``outputs``) is copied to a fresh folder for every run, made runnable by Elyra 4's local
mode (``elyra_ready``), and both tools run that same copy. Ours: ``jupyter-pipeline run FILE`` (a
fresh CLI process each time; each node in a working folder of its own, files through the store).
Baseline: ``elyra-pipeline run FILE`` of elyra-server, installed from the package index into
``benchmarks/.venvs/elyra`` on first use (see ``venvs.py``), which runs the nodes one after another
in place with papermill and ``python``; its notebooks run on a kernel of this project's venv.

``python benchmarks/bench_elyra_file.py [--repeat N]`` prints each time, the medians and the ratio.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
FIXTURE = ROOT / "tests" / "fixtures" / "elyra"
sys.path.insert(0, str(HERE))

from bench_local import project_kernel  # noqa: E402 - benchmarks are scripts, not a package
from venvs import BaselineUnavailable, baseline_python, installed_version  # noqa: E402


def elyra_ready(folder: Path) -> None:
    """What Elyra 4's local mode needs of the fixture: env vars as objects (it ignores the older
    ``"NAME=VALUE"`` strings), no pipeline parameters (a Kubeflow-only feature its validator refuses
    in a generic pipeline; ``THRESHOLD`` comes from the environment instead), and the script next to
    the notebooks (local mode runs each file in its own folder and moves no outputs)."""
    path = folder / "files.pipeline"
    data = json.loads(path.read_text())
    pipeline = data["pipelines"][0]
    pipeline["app_data"]["properties"].pop("pipeline_parameters", None)
    pipeline["app_data"].pop("runtime_type", None)  # a generic pipeline, which local mode runs
    pipeline["app_data"]["properties"]["runtime"] = "Generic"
    for node in pipeline["nodes"]:
        params = node["app_data"]["component_parameters"]
        params.pop("pipeline_parameters", None)
        params["env_vars"] = [e if isinstance(e, dict) else dict(zip(("env_var", "value"), e.split("=", 1)))
                              for e in params["env_vars"]]
        params["filename"] = params["filename"].removeprefix("scripts/")
    path.write_text(json.dumps(data, indent=2))
    for name in ("clean.py", "helpers.py"):
        shutil.move(folder / "scripts" / name, folder / name)


def timed(command: list[str], cwd: Path, env: dict) -> float:
    started = time.perf_counter()
    proc = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=900)
    seconds = time.perf_counter() - started
    if proc.returncode:
        tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-8:])
        raise RuntimeError(f"{' '.join(command[:2])} failed:\n{tail}")
    return seconds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    ours_cli = str(Path(sys.executable).parent / "jupyter-pipeline")
    try:
        elyra_python = baseline_python("elyra", "elyra-server", "elyra.pipeline.local.local_processor")
    except BaselineUnavailable as exc:
        print(f"Elyra is not available here: {exc}")
        return 1
    elyra_cli = str(elyra_python.parent / "elyra-pipeline")
    print(f"baseline: elyra-server {installed_version(elyra_python, 'elyra-server')}, `elyra-pipeline run`; "
          f"load average {os.getloadavg()[0]:.1f} at the start")
    ours, theirs = [], []
    with tempfile.TemporaryDirectory(prefix="jp-bench-elyra-") as tmp:
        tmp = Path(tmp)
        env = {**project_kernel(tmp / "jupyter"), "THRESHOLD": "50"}
        for i in range(args.repeat):
            for label, times, command in (("jupyter-pipeline", ours, [ours_cli, "run", "files.pipeline",
                                                                       "--store", str(tmp / "store")]),
                                          ("elyra-pipeline", theirs, [elyra_cli, "run", "files.pipeline"])):
                folder = tmp / f"{label}-{i}"
                shutil.copytree(FIXTURE, folder)
                elyra_ready(folder)
                times.append(timed(command, folder, env))
                if label == "elyra-pipeline" and not (folder / "report.txt").exists():  # it ran in place
                    raise RuntimeError(f"Elyra's run left no report.txt in {folder}")
                print(f"  {label} run {i + 1}: {times[-1]:.2f} s", flush=True)
    a, b = statistics.median(ours), statistics.median(theirs)
    print(f"files.pipeline (notebook -> script -> notebook, 3 files passed): jupyter-pipeline {a:.2f} s, "
          f"Elyra local {b:.2f} s, ratio {a / b:.2f} (medians of {args.repeat})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
