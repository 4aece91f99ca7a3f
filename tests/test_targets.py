"""Run targets: the registry, targets added by other packages through entry points, load errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from jupyter_pipeline.exceptions import TargetError, UnknownKeyError
from jupyter_pipeline.store.base import open_store
from jupyter_pipeline.targets import ENTRY_POINT_GROUP, LocalTarget, TargetRegistry, targets

EXE = str(Path(sys.executable).parent / "jupyter-pipeline")


@pytest.fixture
def third_party(tmp_path, monkeypatch):
    """A package installed on sys.path whose entry points add the targets ``echo`` and ``broken``."""
    site = tmp_path / "site"
    site.mkdir()
    (site / "echo_target.py").write_text(textwrap.dedent('''
        from jupyter_pipeline.store.records import RunRecord, RunState
        from jupyter_pipeline.targets import Target

        class Echo(Target):
            label = "Echo"

            def run(self, pipeline, parameters, store, options, on_event=None):
                return RunRecord(run_id=options.get("run_id") or "echo-1", pipeline=pipeline.name,
                                 notebook=pipeline.path, store=store.url, target=self.name,
                                 status=RunState.SUCCEEDED, parameters=dict(parameters or {}))
    '''))
    (site / "broken_target.py").write_text("import a_module_that_is_not_installed\n")
    dist = site / "echo_target-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: echo-target\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text(
        f"[{ENTRY_POINT_GROUP}]\necho = echo_target:Echo\nbroken = broken_target:Broken\n"
        "local = echo_target:Echo\n")
    monkeypatch.syspath_prepend(str(site))
    return site


def test_builtin_targets_are_objects_with_every_verb():
    local = targets.get("local")
    assert isinstance(local, LocalTarget) and local.name == "local" and local.can_cancel
    kfp = targets.get("kfp")
    assert kfp.needs_kfp_host and not kfp.can_cancel
    with pytest.raises(TargetError, match="only local runs can be resumed"):
        kfp.resume(None, "r1", {}, None)
    with pytest.raises(TargetError, match="sweeps are not submitted to a Kubeflow cluster"):
        kfp.sweep(None, {}, None, {}, None)
    with pytest.raises(UnknownKeyError, match="Unknown run target 'mars'.*kfp-local"):
        targets.get("mars")


def test_entry_point_target_runs_and_a_broken_one_says_why(third_party, tmp_path):
    registry = TargetRegistry()
    echo = registry.get("echo")
    assert echo.name == "echo" and echo.to_json() == {"name": "echo", "label": "Echo", "needs_kfp_host": False,
                                                        "uses_image": False, "reuses_stages": False}
    assert isinstance(registry.get("local"), LocalTarget)  # a package cannot replace a built-in
    with pytest.raises(TargetError, match="'broken'.*ModuleNotFoundError.*a_module_that_is_not_installed"):
        registry.get("broken")
    names = [t.name for t in registry.available()]
    assert names[:3] == ["local", "kfp-local", "kfp"] and "echo" in names and "broken" not in names


def test_cli_runs_an_entry_point_target(third_party, tmp_path, fixture_nb):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(third_party), os.environ.get("PYTHONPATH")]))}

    def cli(*args):
        return subprocess.run([EXE, "run", str(fixture_nb("diamond")), "--store", str(tmp_path / "store"), *args],
                              capture_output=True, text=True, timeout=120, env=env)

    proc = cli("--target", "echo", "--json")
    assert proc.returncode == 0, proc.stderr
    record = json.loads(proc.stdout)
    assert record["target"] == "echo" and record["status"] == "succeeded" and record["pipeline"] == "diamond"
    proc = cli("--target", "broken")
    assert proc.returncode == 1 and proc.stderr.startswith("error:") and "Traceback" not in proc.stderr
    assert "a_module_that_is_not_installed" in proc.stderr and "Unknown run target" not in proc.stderr


def test_local_target_cancels_only_the_runs_it_drives(tmp_path):
    with pytest.raises(TargetError, match="not driven by this process"):
        targets.get("local").cancel(open_store(str(tmp_path)), "nobody-1")


def test_only_a_target_that_leases_its_runs_marks_them_interrupted(tmp_path):
    """A local run whose process is gone reads interrupted; a run on Kubeflow (or an unknown
    target's) outlives the process that submitted it and keeps its stored state."""
    import socket

    from jupyter_pipeline.store.records import RunRecord, StageRecord, StageState, save_run
    from jupyter_pipeline.targets import run_status

    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    store = open_store(str(tmp_path / "store"))
    states = {}
    for target in ("local", "kfp", "not-installed"):
        record = RunRecord(run_id=f"20260101-000000-{target}-0001", pipeline="p", notebook="/nowhere/p.ipynb",
                           store=store.url, target=target, stages={"a": StageRecord(status=StageState.RUNNING)},
                           owner={"host": socket.gethostname(), "pid": gone.pid})
        save_run(store, record)
        states[target] = run_status(store, record, ask_target=False).status.value
    assert states == {"local": "interrupted", "kfp": "running", "not-installed": "running"}
    assert LocalTarget.leases_runs and not targets.get("kfp").leases_runs
