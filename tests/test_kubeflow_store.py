"""Kubeflow 2.15+ (SeaweedFS): the store in the pipeline root's bucket, used by a user that may read,
write and list but never create buckets (``auth_s3``'s ``kubeflow`` user: moto with IAM checks on);
and the stage pages (``Output[HTML]``) that render with no network and stay under a size limit."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx
import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output

from jupyter_pipeline.kfp.outputs import notebook_html
from jupyter_pipeline.store.base import open_store
from jupyter_pipeline.store.s3 import S3Settings, S3Store

#: A script or stylesheet the browser would fetch from the network.
EXTERNAL = re.compile(r"""<(?:script|link)\b[^>]*\b(?:src|href)\s*=\s*["']?(?:https?:)?//""", re.IGNORECASE)


def env_for(auth_s3, user: str, **extra) -> dict:
    """This machine's environment with only ``user``'s credentials and the server's endpoint."""
    keep = {k: v for k, v in os.environ.items()
            if not k.startswith(("AWS_", "MINIO_", "JUPYTER_PIPELINE_S3_", "JUPYTER_PIPELINE_KFP_", "JUPYTER_PIPELINE_STORE"))}
    access, secret = auth_s3["users"][user]
    return {**keep, "JUPYTER_PIPELINE_S3_ENDPOINT": auth_s3["endpoint"], "AWS_ACCESS_KEY_ID": access,
            "AWS_SECRET_ACCESS_KEY": secret, "JUPYTER_PIPELINE_S3_RETRIES": "2", "KERAS_BACKEND": "jax", **extra}


def cli(*args, env, timeout=600) -> subprocess.CompletedProcess:
    exe = os.path.join(os.path.dirname(sys.executable), "jupyter-pipeline")
    return subprocess.run([exe, *map(str, args)], capture_output=True, text=True, timeout=timeout, env=env)


def admin(auth_s3, url: str) -> S3Store:
    access, secret = auth_s3["users"]["full"]
    return S3Store(url, S3Settings(endpoint=auth_s3["endpoint"], access_key=access, secret_key=secret))


def notebook_with_data(folder: Path) -> Path:
    """Two stages; the first reads data.csv next to the notebook (a file that travels), the second
    registers a Keras model."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "data.csv").write_text("1,2,3,4\n5,6,7,8\n")
    cells = [
        (["setup"], "import numpy as np\nfrom jupyter_pipeline import log_metric, log_model"),
        (["stage:load"], "rows = np.loadtxt('data.csv', delimiter=',', dtype='float32')\nlog_metric('rows', len(rows))"),
        (["stage:register"], "import keras\n"
                             "model = keras.Sequential([keras.Input(shape=(4,), name='x'), keras.layers.Dense(2)])\n"
                             "model(rows)\nversion = log_model(model, 'tiny')"),
    ]
    nb = new_notebook(cells=[new_code_cell(src, metadata={"tags": tags}) for tags, src in cells])
    path = folder / "kf.ipynb"
    nbformat.write(nb, path)
    return path


def one_paragraph(out: subprocess.CompletedProcess, secret: str) -> str:
    assert out.returncode == 1, out.stderr[-3000:]
    assert out.stderr.startswith("error: ") and "Traceback" not in out.stderr and secret not in out.stderr
    return " ".join(out.stderr.split())


def test_the_kubeflow_user_really_may_not_create_buckets(auth_s3):
    """The fixture's user is what it claims: objects of mlpipeline yes, any other bucket no."""
    access, secret = auth_s3["users"]["kubeflow"]
    settings = S3Settings(endpoint=auth_s3["endpoint"], access_key=access, secret_key=secret)
    ours = S3Store(f"s3://mlpipeline/jupyter-pipeline/check-{uuid.uuid4().hex[:8]}", settings)
    ours.put_bytes("k", b"v")
    assert ours.get_bytes("k") == b"v" and ours.list() == ["k"]
    ours.delete("k")
    elsewhere = S3Store(f"s3://jp-kf-{uuid.uuid4().hex[:8]}/p", settings)  # a store that may create: still refused
    with pytest.raises(Exception) as err:
        elsewhere.put_bytes("k", b"v")
    message = str(err.value)
    assert f"access key '{access}'" in message and secret not in message and "JUPYTER_PIPELINE_KFP_STORE" in message
    assert elsewhere.bucket not in [b.name for b in admin(auth_s3, "s3://mlpipeline").client.list_buckets()]


@pytest.mark.slow
def test_compile_publishes_files_to_the_pipeline_root_bucket_without_creating_one(auth_s3, tmp_path):
    nb = notebook_with_data(tmp_path / "nb")
    env = env_for(auth_s3, "kubeflow")
    out = cli("compile", nb, "-o", tmp_path / "kf.yaml", "--json", env=env)
    assert out.returncode == 0, out.stderr[-3000:]
    summary = json.loads(out.stdout)
    assert summary["store"] == "s3://mlpipeline/jupyter-pipeline" and summary["files"] == ["data.csv"]
    assert "defaultValue: s3://mlpipeline/jupyter-pipeline\n" in (tmp_path / "kf.yaml").read_text()
    assert admin(auth_s3, "s3://mlpipeline/jupyter-pipeline").exists(summary["files_key"])

    # A store the user may not write: one paragraph naming the bucket, the key id and what to set.
    admin(auth_s3, "s3://team-other/p").put_bytes("keep", b"")  # exists, but not the namespace's
    access, secret = auth_s3["users"]["kubeflow"]
    for store in ("s3://team-other/p", f"s3://jp-kf-{uuid.uuid4().hex[:8]}/p"):
        message = one_paragraph(cli("compile", nb, "-o", tmp_path / "x.yaml", "--kfp-store", store, env=env), secret)
        bucket = store.split("/")[2]
        assert f"bucket '{bucket}'" in message and f"access key '{access}'" in message, message
        assert "--kfp-store" in message and "JUPYTER_PIPELINE_KFP_STORE" in message
    assert "jp-kf-" not in " ".join(b.name for b in admin(auth_s3, "s3://mlpipeline").client.list_buckets())


@pytest.mark.slow
def test_kfp_local_run_and_serve_as_the_namespace_user(auth_s3, tmp_path):
    """The whole path on Kubeflow's per-namespace permissions: a kfp-local run (stages as
    subprocesses opening the store as pods do) writes values, files and a model into
    s3://mlpipeline/..., and `serve` reads the model back, creating nothing."""
    nb = notebook_with_data(tmp_path / "nb")
    store = f"s3://mlpipeline/jupyter-pipeline/t-{uuid.uuid4().hex[:8]}"
    env = env_for(auth_s3, "kubeflow")
    out = cli("run", nb, "--target", "kfp-local", "--store", store, "--json", env=env)
    assert out.returncode == 0, out.stderr[-4000:]
    record = json.loads(out.stdout)
    assert record["status"] == "succeeded", record
    assert admin(auth_s3, store).exists("models/tiny/1/model.keras")

    code = "import sys; from jupyter_pipeline.cli import main; sys.exit(main(sys.argv[1:]))"
    proc = subprocess.Popen([sys.executable, "-c", code, "serve", "--store", store, "--model", "tiny", "--port", "0",
                             "--json", "--poll-interval", "0"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    try:
        text = ""
        while not text.rstrip().endswith("}"):
            line = proc.stdout.readline()
            assert line, proc.stderr.read()
            text += line
        port = json.loads(text)["port"]
        deadline = time.time() + 120
        while httpx.get(f"http://127.0.0.1:{port}/v2/health/ready").status_code != 200:
            assert time.time() < deadline, "the model did not load"
            time.sleep(0.2)
        body = {"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32", "data": [1, 2, 3, 4]}]}
        reply = httpx.post(f"http://127.0.0.1:{port}/v2/models/tiny/infer", json=body, timeout=60)
        assert reply.status_code == 200, reply.text
        assert reply.json()["outputs"][0]["shape"] == [1, 2]
    finally:
        proc.kill()
        proc.wait(timeout=30)

    # serve from a bucket that is not there: refused in one paragraph, and not created.
    access, secret = auth_s3["users"]["kubeflow"]
    missing = f"jp-kf-{uuid.uuid4().hex[:8]}"
    message = one_paragraph(cli("serve", "--store", f"s3://{missing}/p", env=env, timeout=120), secret)
    assert f"bucket '{missing}'" in message and f"access key '{access}'" in message, message
    assert missing not in [b.name for b in admin(auth_s3, "s3://mlpipeline").client.list_buckets()]


def test_serve_never_creates_a_missing_bucket_even_when_it_could(auth_s3):
    """`serve` reads: with credentials that could create the bucket, it still says it is missing."""
    full_access, secret = auth_s3["users"]["full"]
    missing = f"jp-kf-{uuid.uuid4().hex[:8]}"
    message = one_paragraph(cli("serve", "--store", f"s3://{missing}/p", env=env_for(auth_s3, "full"), timeout=120),
                            secret)
    assert f"Bucket '{missing}' does not exist" in message and "does not create buckets" in message, message
    assert missing not in [b.name for b in admin(auth_s3, "s3://mlpipeline").client.list_buckets()]


def test_deploy_defaults_to_the_pipeline_root_bucket_and_the_pods_endpoint(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("JUPYTER_PIPELINE_STORE", "JUPYTER_PIPELINE_KFP_"))}
    env.update(JUPYTER_PIPELINE_S3_ENDPOINT="http://127.0.0.1:9000",  # this machine's port-forward: not the pod's
               JUPYTER_PIPELINE_KFP_S3_ENDPOINT="http://seaweedfs.kubeflow:8333")
    out = cli("deploy", "digits", "--dry-run", "--json", env=env, timeout=120)
    assert out.returncode == 0, out.stderr
    [container] = json.loads(out.stdout)[0]["spec"]["template"]["spec"]["containers"]
    assert container["args"][:3] == ["serve", "--store", "s3://mlpipeline/jupyter-pipeline"]
    env_vars = {e["name"]: e.get("value") for e in container["env"]}
    assert env_vars["JUPYTER_PIPELINE_S3_ENDPOINT"] == "http://seaweedfs.kubeflow:8333"


# -- the stage page (Output[HTML]) -------------------------------------------------------------------------

def stored_notebook(tmp_path, outputs) -> tuple:
    store = open_store(str(tmp_path / "store"))
    nb = new_notebook(cells=[new_markdown_cell("The loss is $x^2$."), new_code_cell("work()", outputs=outputs)])
    store.put_bytes("runs/r/stages/s/output.ipynb", nbformat.writes(nb).encode())
    return store, "runs/r/stages/s/output.ipynb"


def test_stage_page_loads_nothing_from_the_network(tmp_path):
    plot = ('<script src="https://cdn.plot.ly/plotly-2.35.2.min.js"></script>'
            "<link rel='stylesheet' href='//cdn.example.org/x.css'><div id='plot'>the plot</div>"
            "<script>document.getElementById('plot').dataset.ok = 1</script>")
    store, key = stored_notebook(tmp_path, [new_output("stream", name="stdout", text="hello\n"),
                                            new_output("display_data", data={"text/html": plot, "text/plain": "p"})])
    page = notebook_html(store, key)
    assert not EXTERNAL.search(page), EXTERNAL.search(page).group(0)
    assert "cdnjs" not in page and "plotly-2.35.2" not in page
    # What needs no network stays: inline styles, inline scripts, the outputs, the math as TeX.
    assert "<style" in page and "dataset.ok = 1" in page and "the plot" in page and "hello" in page
    assert "$x^2$" in page and "cut to keep this page" not in page


def test_stage_page_stays_under_its_limit_and_says_what_was_cut(tmp_path):
    big_text = "".join(f"line {i}\n" for i in range(200_000))  # ~1.4 MB of printed lines
    big_html = "<table>" + "<tr><td>cell</td></tr>" * 60_000 + "</table>"  # ~1.3 MB
    store, key = stored_notebook(tmp_path, [
        new_output("stream", name="stdout", text=big_text),
        new_output("display_data", data={"text/html": big_html, "text/plain": "table"}),
        new_output("execute_result", data={"text/plain": "42"}, execution_count=1),
        new_output("error", ename="ValueError", evalue="bad value", traceback=["ValueError: bad value"]),
    ])
    whole = notebook_html(store, key, limit=10 * 1024 * 1024)
    assert len(whole.encode()) > 2_500_000 and "cut to keep" not in whole

    limit = 1024 * 1024
    page = notebook_html(store, key, limit=limit)
    assert len(page.encode()) <= limit
    assert "2 output(s) of this notebook were cut to keep this page under 1.0 MiB" in page
    assert f"{store.uri(key)}" in page
    assert page.count("output cut,") == 2
    assert "line 0" in page  # a cut text output keeps its beginning
    assert "line 199999" not in page
    assert "ValueError: bad value" in page and "42" in page  # the error and small outputs stay whole
