"""Faults from what a run is given, one test per kind: parameters JSON cannot carry, jobs that cannot be
sent to a stage process, and REST requests that are bad input. Whatever the input, the answer is a
one-paragraph error (a 4xx with strict JSON over REST) and no process outlives it.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from jupyter_pipeline.local.pool import STAGEWORKER, Worker

from test_faults import EXE, alive, wait_until

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]


def children(pid: int) -> list[int]:
    """The pids of the processes whose parent is ``pid``."""
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            out.append(int(stat.parent.name))
    return out


# -- item: a job the stage process cannot be sent ----------------------------------------------------
@pytest.mark.parametrize("value", [b"x", {1, 2}, 1j])
def test_a_job_that_cannot_be_sent_fails_the_stage_and_ends_its_process_and_kernel(value, tmp_path):
    # Started afresh (not forked), so its kernel is its child and can be seen ending.
    worker = Worker([sys.executable, "-m", STAGEWORKER, "--serve", "--cwd", str(tmp_path)], str(tmp_path))
    kernels = wait_until(lambda: children(worker.proc.pid), what="the worker's kernel to start")
    job = {"store": str(tmp_path / "store"), "run_id": "r", "stage": "s", "item": None, "parameters": {"x": value}}
    started = time.monotonic()
    result = worker.run(job)
    assert result["status"] == "failed" and "could not be sent to its process" in result["error"], result
    assert "is not JSON serializable" in result["error"]
    # The worker took end of input as "not needed": it stops its kernel and exits, freeing the run's lease.
    wait_until(lambda: worker.proc.poll() is not None and not any(alive(k) for k in kernels), timeout=15,
               what="the stage process and its kernel to end")
    assert time.monotonic() - started < 15


# -- REST and the CLI, against a real Jupyter server ------------------------------------------------
def strict(raw: bytes):
    """``raw`` parsed as strict JSON: bare NaN/Infinity (which a browser's JSON.parse refuses) fail."""
    def refuse(word):
        raise AssertionError(f"not strict JSON: bare {word} in {raw[:200]!r}")
    return json.loads(raw, parse_constant=refuse)


def call(server, method: str, route: str, body: bytes | str | None = None) -> tuple[int, object]:
    """One request; its status and strictly parsed JSON body, whatever the status."""
    url = f"http://127.0.0.1:{server.port}/jupyter-pipeline/{route}"
    data = body.encode() if isinstance(body, str) else body
    request = urllib.request.Request(url, data=data if data is not None or method != "POST" else b"", method=method,
                                     headers={"Authorization": f"token {server.token}"})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, strict(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, strict(exc.read())


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    from test_faults import JupyterServer

    base = tmp_path_factory.mktemp("rest")
    (base / "root").mkdir()
    started = JupyterServer(base / "root", base / "store")
    yield started
    started.kill()


def write(path: Path, cells: list[tuple[list[str], str]]) -> Path:
    import nbformat
    from nbformat.v4 import new_code_cell, new_notebook

    out = []
    for tags, source in cells:
        out.append(new_code_cell(source))
        out[-1].metadata["tags"] = tags
    nbformat.write(new_notebook(cells=out), path)
    return path


UNFIT = [(["parameters"], "raw = b'x'\nseen = {1, 2}\nz = 1j\nhuge = 1e309\nkeyed = {1: 'a'}"),
         (["stage:use"], "print(raw, seen, z, huge, keyed)")]


def test_parameters_json_cannot_carry_are_refused_naming_the_cell_and_records_are_strict_json(server):
    root = server.root
    write(root / "unfit.ipynb", UNFIT)
    write(root / "params.ipynb", [(["parameters"], "lr = 0.1\nanything = None"), (["stage:train"], "loss = lr * 2")])
    # validate names each, with its cell; compile and run refuse the notebook, without a traceback.
    status, body = call(server, "GET", "pipeline?path=unfit.ipynb")
    assert status == 200
    found = {p["message"].split("'")[1]: p for p in body["problems"] if p["code"] == "parameter-not-json"}
    assert sorted(found) == ["huge", "keyed", "raw", "seen", "z"] and {p["cell"] for p in found.values()} == {0}
    assert "b'x' is a bytes" in found["raw"]["message"] and "inf is not a finite number" in found["huge"]["message"]
    for route, payload in [("compile", {"path": "unfit.ipynb"}), ("runs", {"path": "unfit.ipynb", "target": "local"})]:
        status, body = call(server, "POST", route, json.dumps(payload))
        assert status == 422 and "not a valid pipeline" in body["message"], (route, status, body)
    for command in (["validate"], ["compile", "-o", str(root / "unfit.yaml")], ["run"]):
        done = subprocess.run([EXE, *command, str(root / "unfit.ipynb"), *(["--store", str(server.store)]
                               if command == ["run"] else [])], capture_output=True, text=True, timeout=120)
        said = done.stdout + done.stderr
        assert done.returncode == 1 and "cell 1" in said and "b'x' is a bytes" in said, said
        assert "Traceback" not in said and "internal error" not in said
    # NaN and infinities (REST's NaN or 1e999, the CLI's `-p lr nan`) are refused, naming the parameter.
    for value in ("NaN", "1e999", "-Infinity"):
        status, body = call(server, "POST", "runs", '{"path": "params.ipynb", "target": "local", '
                                                    f'"parameters": {{"lr": {value}}}}}')
        assert status == 400 and "Parameter 'lr'" in body["message"] and "not a finite number" in body["message"]
    done = subprocess.run([EXE, "run", str(root / "params.ipynb"), "-p", "lr", "nan", "--store", str(server.store)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 1 and "Parameter 'lr'" in done.stderr and "Traceback" not in done.stderr
    # What is carried is carried end to end, and every record and response is strict JSON.
    status, body = call(server, "POST", "runs", json.dumps({"path": "params.ipynb", "target": "local",
                                                            "parameters": {"lr": 0.5, "anything": [1, "a"]}}))
    assert status == 202, body
    record = wait_until(lambda: (r := call(server, "GET", f"runs/{body['run_id']}")[1])["status"] != "running" and r,
                        what="the run to end")
    assert record["status"] == "succeeded" and record["parameters"] == {"lr": 0.5, "anything": [1, "a"]}
    assert call(server, "GET", "runs")[0] == 200
    for run_json in Path(server.store).glob("runs/*/run.json"):
        strict(run_json.read_bytes())


SECRET = "s3cret-4d1f"


def test_credentials_in_kfp_host_and_store_urls_are_never_echoed(server):
    write(server.root / "creds.ipynb", [(["stage:a"], "x = 1")])
    host = f"http://alice:{SECRET}@127.0.0.1:9"  # nothing listens there: the target fails at once
    status, body = call(server, "POST", "runs", json.dumps({"path": "creds.ipynb", "target": "kfp", "kfp_host": host}))
    assert 400 <= status < 600 and "127.0.0.1:9" in body["message"] and SECRET not in body["message"], body
    status, body = call(server, "POST", "runs", json.dumps({"path": "creds.ipynb", "target": "local",
                                                            "store": f"s3://alice:{SECRET}@bucket/p"}))
    assert status == 202, body
    wait_until(lambda: call(server, "GET", f"runs/{body['run_id']}")[1]["status"] != "running", what="the run")
    done = subprocess.run([EXE, "run", str(server.root / "creds.ipynb"), "--target", "kfp", "--kfp-host", host],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode != 0 and "127.0.0.1:9" in done.stderr and SECRET not in done.stdout + done.stderr
    log = (server.root.parent / "server.log").read_bytes().decode(errors="replace")
    assert "ignoring store" in log and "127.0.0.1:9" in log and SECRET not in log


def test_bad_rest_input_is_a_4xx_with_a_message_never_a_500(server):
    root = server.root
    write(root / "fine.ipynb", [(["stage:a"], "x = 1")])
    (root / "loop.yaml").symlink_to("loop2.yaml")
    (root / "loop2.yaml").symlink_to("loop.yaml")
    write(root / "globs.ipynb", [(["stage:a"], "x = 1")])
    import nbformat

    nb = nbformat.read(root / "globs.ipynb", as_version=4)
    nb.metadata["jupyter_pipeline"] = {"files": ["/etc/*.conf"]}
    nbformat.write(nb, root / "globs.ipynb")
    long_path = "/".join(["a"] * 3000) + ".ipynb"
    deep = "[" * 100_000 + "]" * 100_000
    cases = [
        ("POST", "runs", '{"path": ' + deep + "}", "nests deeper"),
        ("POST", "pipeline", '{"path": "fine.ipynb", "content": ' + deep + "}", "nests deeper"),
        ("GET", f"pipeline?path={long_path}", None, "longer than a file's path can be"),
        ("POST", "pipeline", json.dumps({"path": long_path}), "longer than a file's path can be"),
        ("POST", "compile", json.dumps({"path": long_path}), "longer than a file's path can be"),
        ("POST", "runs", json.dumps({"path": long_path, "target": "local"}), "longer than a file's path can be"),
        ("POST", "compile", json.dumps({"path": "fine.ipynb", "output": "loop.yaml"}), "loop"),
        ("POST", "compile", json.dumps({"path": ".", "save": True}), "root folder"),
        ("POST", "compile", json.dumps({"path": "globs.ipynb"}), "relative to the notebook's folder"),
        ("POST", "runs", json.dumps({"path": "globs.ipynb", "target": "local"}), "relative to the notebook's folder"),
    ]
    for method, route, body, words in cases:
        status, answer = call(server, method, route, body)
        assert 400 <= status < 500 and words in answer["message"], (route[:60], status, answer)
    status, answer = call(server, "GET", "pipeline?path=globs.ipynb")
    assert status == 200 and [p["code"] for p in answer["problems"] if p["severity"] == "error"] == ["bad-setting"]
    for command in (["validate"], ["compile", "-o", str(root / "globs.yaml")]):
        done = subprocess.run([EXE, *command, str(root / "globs.ipynb")], capture_output=True, text=True, timeout=120)
        assert done.returncode == 1 and "/etc/*.conf" in done.stdout + done.stderr, done
        assert "internal error" not in done.stdout + done.stderr


def test_malformed_notebooks_long_run_ids_and_bad_meta_json_are_named_not_internal_errors(server):
    root = server.root
    (root / "version.ipynb").write_text('{"nbformat": "4", "nbformat_minor": 5, "metadata": {}, "cells": []}')
    (root / "array.ipynb").write_text("[]")
    (root / "cell.ipynb").write_text('{"nbformat": 4, "nbformat_minor": 5, "metadata": {}, "cells": [[]]}')
    expected = {"version.ipynb": 'its "nbformat" is "4"; a notebook says "nbformat": 4, a number',
                "array.ipynb": "it holds a JSON array where a notebook's object belongs",
                "cell.ipynb": "its cell 1 is a JSON array, not an object"}
    for name, words in expected.items():
        status, body = call(server, "GET", f"pipeline?path={name}")
        assert status == 422 and words in body["message"], (name, status, body)
        done = subprocess.run([EXE, "validate", str(root / name)], capture_output=True, text=True, timeout=120)
        assert done.returncode == 1 and words in " ".join(done.stderr.split()), done.stderr
    store = Path(server.store)
    (store / "models" / "m" / "1").mkdir(parents=True)
    (store / "models" / "m" / "1" / "meta.json").write_text("{not json")
    for command, words in ((["runs", "a" * 300], "No run"), (["models"], "meta.json is not valid JSON")):
        done = subprocess.run([EXE, *command, "--store", str(store)], capture_output=True, text=True, timeout=120)
        said = " ".join(done.stderr.split())
        assert done.returncode == 1 and words in said and "internal error" not in said, said
    status, body = call(server, "GET", "runs/" + "a" * 300)
    assert 400 <= status < 500, body


def test_a_body_over_the_limit_is_refused_without_holding_up_the_server(server):
    import threading

    big = '{"path": "fine.ipynb", "pad": "' + "x" * (100 * 2**20) + '"}'
    answered: dict = {}
    sender = threading.Thread(target=lambda: answered.update(reply=call(server, "POST", "runs", big)))
    sender.start()
    slowest = 0.0
    while sender.is_alive():  # the server keeps answering others while it takes and refuses the body
        started = time.monotonic()
        assert call(server, "GET", "config")[0] == 200
        slowest = max(slowest, time.monotonic() - started)
    sender.join()
    status, body = answered["reply"]
    assert status == 413 and "up to 16 MiB" in body["message"], body
    assert slowest < 2.0, slowest


def test_ctrl_c_again_and_again_ends_the_run_cancelled_without_a_traceback(tmp_path, write_notebook):
    import signal

    from jupyter_pipeline.store.base import open_store
    from jupyter_pipeline.store.records import RunState, load_run

    from test_faults import HOLD, WRITE_PIDS, assert_nothing_lost, stage_pids

    nb = write_notebook(tmp_path / "held.ipynb", [(["stage:held"], WRITE_PIDS + HOLD + "x = 1"),
                                                  (["stage:after"], "y = x + 1")])
    (tmp_path / "hold").touch()
    store = open_store(str(tmp_path / "store"))
    cli = subprocess.Popen([EXE, "run", str(nb), "--store", store.absolute_url()], cwd=tmp_path,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    kernel, worker = stage_pids(tmp_path)
    while cli.poll() is None:  # Ctrl-C, again and again, until it has ended: each lands somewhere new
        cli.send_signal(signal.SIGINT)
        time.sleep(0.05)
    out, err = cli.communicate()
    assert cli.returncode == 130 and "Traceback" not in err, err
    assert "cancelled" in out + err
    (run_id,) = [p.name for p in (tmp_path / "store" / "runs").iterdir()]
    record = load_run(store, run_id)
    assert record.status == RunState.CANCELLED
    assert_nothing_lost(store, record, kernel, worker)
