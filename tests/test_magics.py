"""The magics through a real kernel: papermill executes a generated notebook that loads the extension,
is itself a pipeline written with ``%%stage``, and calls every ``%pipeline`` action on itself.

One kernel session serves every check (a kernel start is the expensive part); each magic cell has
an id, and the assertions read that cell's outputs from the executed notebook.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import nbformat
import papermill
from papermill.exceptions import PapermillExecutionError
import pytest
import yaml
from jupyter_client import BlockingKernelClient
from nbformat.v4 import new_code_cell, new_notebook
from test_kfp_compile import stage_dag

KERNELSPEC = {"display_name": "Python 3", "language": "python", "name": "python3"}


def _cell(cell_id: str, source: str, *tags: str):
    cell = new_code_cell(source, metadata={"tags": list(tags)})
    cell.id = cell_id
    return cell


def _notebook(store: str, yaml_path: str):
    """A pipeline in %%stage form; every other cell is tagged `skip`, so the pipeline is just two stages."""
    skip, fails = "skip", "raises-exception"
    return new_notebook(metadata={"kernelspec": KERNELSPEC, "jupyter_pipeline": {"name": "magic-demo"}}, cells=[
        _cell("load", "%load_ext jupyter_pipeline", skip),
        _cell("params", "n = 3", "parameters"),
        _cell("make", "%%stage make\nnumbers = list(range(n))\nprint('made', numbers)"),
        _cell("total", "%%stage total --after make --gpu 0\ntotal = sum(numbers)\nprint('total', total)\n"
                       "from jupyter_pipeline import log_metric\nlog_metric('total', total)"),
        _cell("validate", "%pipeline validate", skip),
        _cell("graph", "%pipeline graph", skip),
        _cell("mermaid", "%pipeline graph --format mermaid", skip),
        _cell("run", f"%pipeline run -p n 4 --store {store} --workers 2", skip),
        _cell("last", f"run_id = {'_pipeline_run'}.run_id\nprint(run_id, _pipeline_run.status.value)", skip),
        _cell("sweep", f"%pipeline sweep --store {store} --workers 2 --sweep n=2,5,3 --metric total --goal min", skip),
        _cell("sweep-result", "print(_pipeline_sweep.best.parameters['n'], len(_pipeline_sweep.runs))", skip),
        _cell("sweep-no-grid", "%pipeline sweep", skip, fails),
        _cell("status-one", f"%pipeline status $run_id --store {store}", skip),
        _cell("status-list", f"%pipeline status --store {store}", skip),
        _cell("compile", f"%pipeline compile -o {yaml_path}", skip),
        _cell("publish", "%pipeline publish", skip, fails),
        _cell("bad-name", "get_ipython().run_cell_magic('stage', 'BadName', 'x = 1')", skip, fails),
        _cell("bad-args", "get_ipython().run_cell_magic('stage', 'fine --gpu', 'x = 1')", skip, fails),
        _cell("body-raises", "get_ipython().run_cell_magic('stage', 'boom', 'y = 1\\nraise ValueError(\"kaboom\")')",
              skip, fails),
        _cell("after-raise", "print('y is', y)", skip),
        _cell("unknown", "%pipeline frobnicate", skip, fails),
        _cell("forget", "import os\nos.environ.pop('JPY_SESSION_NAME', None)", skip),
        _cell("no-notebook", "%pipeline validate", skip, fails),
    ])


def _outputs(nb, cell_id: str) -> list:
    return next(c for c in nb.cells if c.get("id") == cell_id).outputs


def _text(nb, cell_id: str, mime: str = "text/plain") -> str:
    parts = []
    for out in _outputs(nb, cell_id):
        if out.output_type == "stream":
            parts.append(out.text)
        elif out.output_type in ("display_data", "execute_result"):
            parts.append(out.data.get(mime, ""))
        elif out.output_type == "error":
            parts.append("\n".join(out.traceback) + f"\n{out.ename}: {out.evalue}")
    return re.sub(r"\x1b\[[0-9;]*m", "", "\n".join(parts))


@pytest.fixture(scope="module")
def executed(tmp_path_factory):
    """Execute the generated notebook once; the kernel finds it through JPY_SESSION_NAME, as under Jupyter."""
    tmp = tmp_path_factory.mktemp("magics")
    store, yaml_path = tmp / "store", tmp / "demo.yaml"
    path = tmp / "demo.ipynb"
    nbformat.write(_notebook(str(store), str(yaml_path)), path)
    env = {"JPY_SESSION_NAME": str(path)}
    saved = {k: os.environ.get(k) for k in (*env, "KF_PIPELINES_ENDPOINT", "JUPYTER_PIPELINE_KFP_HOST")}
    os.environ.update(env)
    os.environ.pop("KF_PIPELINES_ENDPOINT", None)
    os.environ.pop("JUPYTER_PIPELINE_KFP_HOST", None)
    try:
        # nbclient runs on past cells tagged `raises-exception`; papermill then still reports their
        # errors, so the check below makes sure those are the only errors and every cell ran.
        with pytest.raises(PapermillExecutionError):
            papermill.execute_notebook(str(path), str(tmp / "out.ipynb"), cwd=str(tmp), kernel_name="python3",
                                       progress_bar=False, execution_timeout=300)
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    nb = nbformat.read(tmp / "out.ipynb", as_version=4)
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue  # papermill puts a markdown note about the (expected) errors at the top
        assert cell.execution_count is not None, f"cell {cell.id} did not run"
        # IPython reports a UsageError on stderr (no error output), and the kernel replies "error"
        errors = [o for o in cell.outputs if o.output_type == "error"
                  or (o.output_type == "stream" and o.name == "stderr" and o.text.startswith("UsageError"))]
        expected = "raises-exception" in cell.metadata.get("tags", [])
        assert bool(errors) == expected, (cell.id, errors or "no error")
    return nb, tmp


@pytest.mark.slow
def test_stage_magic_runs_the_body_in_the_live_kernel(executed):
    nb, _ = executed
    assert "made [0, 1, 2]" in _text(nb, "make")
    assert "total 3" in _text(nb, "total")


@pytest.mark.slow
def test_validate_finds_the_kernels_notebook_and_reports(executed):
    nb, _ = executed
    text = _text(nb, "validate")
    assert "demo.ipynb: 2 stage(s), 1 parameter(s), 0 error(s), 0 warning(s)" in text
    assert "<p>demo.ipynb: 2 stage(s)" in _text(nb, "validate", "text/html")


@pytest.mark.slow
def test_graph_is_drawn_as_svg_and_as_mermaid(executed):
    nb, _ = executed
    svg = _text(nb, "graph", "image/svg+xml")
    assert svg.startswith("<svg") and svg.count('class="jp-stage"') == 2 and "numbers" in svg
    assert "make" in _text(nb, "graph")  # the text tree for plain front ends
    mermaid = _text(nb, "mermaid", "text/vnd.mermaid")
    assert mermaid.startswith("flowchart TD") and "-->" in mermaid
    assert _text(nb, "mermaid", "text/markdown").startswith("```mermaid\nflowchart TD")


@pytest.mark.slow
def test_run_shows_per_stage_progress_and_succeeds(executed):
    nb, tmp = executed
    outputs = _outputs(nb, "run")
    # one display, updated in place by its display id (nbclient applies the updates)
    displays = [o for o in outputs if o.output_type == "display_data"]
    assert len(displays) == 1, outputs  # it first said "starting the run…"; what is left is the last update
    text = _text(nb, "run")
    assert re.search(r"run \S+ \(local\): succeeded after", text), text
    assert re.search(r"✔ make\s+succeeded", text) and re.search(r"✔ total\s+succeeded", text)
    html = _text(nb, "run", "text/html")
    assert html.count("✔ succeeded") == 2
    run_id, status = _text(nb, "last").split()
    assert status == "succeeded"
    assert (tmp / "store" / "runs" / run_id / "run.json").is_file()
    executed_total = nbformat.read(tmp / "store" / "runs" / run_id / "stages" / "total" / "output.ipynb", 4)
    assert "total 6" in "".join(o.get("text", "") for c in executed_total.cells for o in c.get("outputs", []))


@pytest.mark.slow
def test_sweep_shows_variants_live_then_ranked(executed):
    nb, tmp = executed
    displays = [o for o in _outputs(nb, "sweep") if o.output_type == "display_data"]
    assert len(displays) == 1  # the live table, redrawn in place, ends as the ranked table
    text = _text(nb, "sweep")
    rows = [line for line in text.splitlines() if re.match(r"\s*★?\s*\d ", line)]
    assert [re.search(r"n=(\d)", r).group(1) for r in rows] == ["2", "3", "5"], text  # total = 1, 3, 10
    assert rows[0].lstrip().startswith("★ 1") and "best:" in text and "by total (min)" in text
    assert "<td>★ 1</td>" in _text(nb, "sweep", "text/html")
    assert _text(nb, "sweep-result").split() == ["2", "3"]
    sweeps = list((tmp / "store" / "sweeps").iterdir())
    assert len(sweeps) == 1 and (sweeps[0] / "sweep.json").is_file()
    assert "the following arguments are required: --sweep" in _text(nb, "sweep-no-grid")


@pytest.mark.slow
def test_status_shows_one_run_and_the_notebooks_runs(executed):
    nb, _ = executed
    run_id = _text(nb, "last").split()[0]
    assert f"run {run_id} (local): succeeded" in _text(nb, "status-one")
    listing = _text(nb, "status-list")
    assert "runs of demo.ipynb" in listing and run_id in listing


@pytest.mark.slow
def test_compile_writes_the_kfp_spec(executed):
    nb, tmp = executed
    assert f"wrote {tmp / 'demo.yaml'}" in _text(nb, "compile")
    spec = next(yaml.safe_load_all((tmp / "demo.yaml").read_text()))  # then the platform spec document
    tasks = stage_dag(spec)
    assert len(tasks) == 2 and any("make" in name for name in tasks) and any("total" in name for name in tasks)


@pytest.mark.slow
def test_publish_without_a_kubeflow_host_says_how_to_set_one(executed):
    nb, _ = executed
    text = _text(nb, "publish")
    assert "No Kubeflow Pipelines host" in text and "--kfp-host" in text
    assert "Traceback" not in text


@pytest.mark.slow
def test_stage_magic_errors(executed):
    nb, _ = executed
    assert "UsageError" in _text(nb, "bad-name") and "'BadName' is not valid" in _text(nb, "bad-name")
    assert "UsageError" in _text(nb, "bad-args") and "--gpu" in _text(nb, "bad-args")
    body = _text(nb, "body-raises")
    assert body.count("ValueError: kaboom") >= 1 and "stage 'boom' raised" in body
    assert "y is 1" in _text(nb, "after-raise")  # the body ran in the user's namespace up to the error


@pytest.mark.slow
def test_unknown_action_and_unknown_notebook(executed):
    nb, _ = executed
    assert "UsageError" in _text(nb, "unknown") and "frobnicate" in _text(nb, "unknown")
    text = _text(nb, "no-notebook")
    assert "Cannot tell which notebook this kernel belongs to" in text and "%pipeline validate path/to" in text
    assert "Traceback" not in text


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _api(url: str, token: str, method: str = "GET", body=None):
    request = urllib.request.Request(url, method=method, data=json.dumps(body).encode() if body else None,
                                     headers={"Authorization": f"token {token}", "Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.load(response)


@pytest.mark.slow
def test_without_a_path_the_kernel_asks_the_server_sessions_api(tmp_path):
    """Under a real Jupyter server, with JPY_SESSION_NAME gone (as after a rename), the session wins."""
    root, runtime = tmp_path / "root", tmp_path / "runtime"
    (root / "sub").mkdir(parents=True)
    shutil.copy(Path(__file__).parent / "fixtures" / "server_small.ipynb", root / "sub" / "nb.ipynb")
    port, token = _free_port(), "magics-test-token"
    env = {**os.environ, "JUPYTER_RUNTIME_DIR": str(runtime)}
    server = subprocess.Popen(
        [sys.executable, "-m", "jupyter_server", f"--ServerApp.root_dir={root}", f"--port={port}", "--no-browser",
         "--allow-root", f"--IdentityProvider.token={token}", "--ServerApp.port_retries=0"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    client = None
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 120  # generous: the test machine is often busy
        while True:
            try:
                _api(f"{url}/api/status", token)
                break
            except OSError:
                assert server.poll() is None and time.monotonic() < deadline, "the Jupyter server did not start"
                time.sleep(0.3)
        session = _api(f"{url}/api/sessions", token, "POST", {
            "path": "sub/nb.ipynb", "name": "nb.ipynb", "type": "notebook", "kernel": {"name": "python3"}})
        client = BlockingKernelClient(connection_file=str(runtime / f"kernel-{session['kernel']['id']}.json"))
        client.load_connection_file()
        # No heartbeat: on a busy machine a late beat reads as "Kernel died before replying to kernel_info".
        client.start_channels(hb=False)
        client.wait_for_ready(timeout=120)
        code = ("import os\nos.environ.pop('JPY_SESSION_NAME', None)\n"
                "from jupyter_pipeline.magics import _from_sessions_api\nprint('found', _from_sessions_api())\n"
                "get_ipython().run_line_magic('load_ext', 'jupyter_pipeline')\n"
                "get_ipython().run_line_magic('pipeline', 'validate')\n")
        texts = []
        client.execute_interactive(code, timeout=120, output_hook=lambda msg: texts.append(
            msg["content"].get("text") or msg["content"].get("data", {}).get("text/plain") or
            "\n".join(msg["content"].get("traceback", []))))
        out = "\n".join(t for t in texts if t)
        assert f"found {root / 'sub' / 'nb.ipynb'}" in out, out
        assert "nb.ipynb: 2 stage(s), 2 parameter(s), 0 error(s)" in out, out
    finally:
        if client is not None:
            client.stop_channels()
        server.terminate()  # the server shuts its kernels down
        try:
            server.wait(30)
        except subprocess.TimeoutExpired:
            server.kill()
