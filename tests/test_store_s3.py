"""The s3:// store against a real S3-protocol server (moto) on loopback; see tests/plugin_s3.py."""

from __future__ import annotations

import json
import multiprocessing
import os
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from jupyter_pipeline.exceptions import ArtifactNotFound, StoreError
from jupyter_pipeline.store.records import RunRecord, list_runs, load_run, save_run
from jupyter_pipeline.store.base import LocalStore, open_store, resolve_store_url
from jupyter_pipeline.store.s3 import S3Settings, S3Store
from plugin_s3 import SECRET_KEY, free_port

ROOT = Path(__file__).resolve().parent.parent


def settings_for(endpoint: str, access: str, secret: str, attempts: int = 3) -> S3Settings:
    from jupyter_pipeline.store.s3errors import RetryPolicy

    return S3Settings(endpoint=endpoint, access_key=access, secret_key=secret,
                      retry=RetryPolicy(attempts=attempts, backoff=0.05))


def bucket_exists(store: S3Store) -> bool:
    return store.client.bucket_exists(store.bucket)


# -- the store interface, same answers as the local folder ------------------------------------------
@pytest.fixture(params=["local", "s3"])
def any_store(request, store_dir):
    if request.param == "local":
        return LocalStore(store_dir)
    return open_store(request.getfixturevalue("s3_url"))


def test_primitives_behave_like_the_local_store(any_store, tmp_path):
    s = any_store
    s.check()
    s.put_bytes("runs/r1/run.json", b'{"a": 1}')
    s.put_json("runs/r1/stages/prep/vars/x.json", {"x": 2})
    s.put_bytes("runs/r2/run.json", b"{}")
    s.put_bytes("models/m/1/meta.json", b"{}")

    assert s.get_bytes("runs/r1/run.json") == b'{"a": 1}'
    assert s.get_json("runs/r1/stages/prep/vars/x.json") == {"x": 2}
    assert s.exists("runs/r1/run.json") and not s.exists("runs/r1/nothing.json")
    assert s.list() == ["models/", "runs/"]
    assert s.list("runs/") == ["runs/r1/", "runs/r2/"] == s.list("runs")
    assert s.list("runs/r1") == ["runs/r1/run.json", "runs/r1/stages/"]
    assert s.list("runs/", recursive=True) == [
        "runs/r1/run.json", "runs/r1/stages/prep/vars/x.json", "runs/r2/run.json"]
    assert s.list("nothing/") == []
    with pytest.raises(ArtifactNotFound):
        s.get_bytes("runs/r1/nothing.json")

    src = tmp_path / "src.bin"
    src.write_bytes(os.urandom(100_000))
    s.put_file("runs/r1/stages/prep/vars/blob.bin", src)
    s.get_file("runs/r1/stages/prep/vars/blob.bin", tmp_path / "back.bin")
    assert (tmp_path / "back.bin").read_bytes() == src.read_bytes()
    with s.writing("runs/r1/w.txt") as path:
        path.write_text("written")
    with s.reading("runs/r1/w.txt") as path:
        assert path.read_text() == "written"
    with pytest.raises(ArtifactNotFound):
        s.get_file("runs/r1/nothing.bin", tmp_path / "x.bin")

    s.delete("runs/r2/run.json")
    s.delete("runs/r2/run.json")  # absent: no error
    assert not s.exists("runs/r2/run.json") and "runs/r2/run.json" not in s.list("runs/", recursive=True)

    assert s.create_exclusive("models/m/2/.claim", b"a") is True
    assert s.create_exclusive("models/m/2/.claim", b"b") is False
    assert s.get_bytes("models/m/2/.claim") == b"a"


def test_open_store_chooses_s3_by_scheme_and_url_is_stable(s3_url, monkeypatch):
    store = open_store(s3_url + "/")
    assert isinstance(store, S3Store)
    assert store.url == s3_url
    assert store.uri("runs/r/run.json") == f"{s3_url}/runs/r/run.json"
    monkeypatch.setenv("JUPYTER_PIPELINE_STORE", s3_url)
    assert isinstance(open_store(resolve_store_url()), S3Store)
    assert resolve_store_url("./elsewhere") == "./elsewhere"  # the command line wins


def test_keys_are_written_under_the_prefix(s3_store):
    s3_store.put_bytes("runs/r/run.json", b"{}")
    names = [o.object_name for o in s3_store.client.list_objects(s3_store.bucket, recursive=True)]
    assert names == ["team-a/runs/r/run.json"]
    with pytest.raises(StoreError, match="outside the store"):
        s3_store.put_bytes("../other/x", b"")


# -- bucket, prefixes, records ---------------------------------------------------------------------
def test_missing_bucket_is_created_by_check(s3_store):
    assert not bucket_exists(s3_store)
    s3_store.check()
    assert bucket_exists(s3_store)
    s3_store.check()  # idempotent


def test_missing_bucket_is_created_on_first_write(s3_url):
    store = open_store(s3_url)
    assert store.list("runs/") == [] and not store.exists("runs/x/run.json")  # reads do not create it
    assert not bucket_exists(store)
    store.put_bytes("runs/x/run.json", b"{}")
    assert bucket_exists(store) and store.exists("runs/x/run.json")


def test_prefixes_in_one_bucket_never_see_each_others_runs(s3_url):
    bucket = s3_url.rsplit("/", 1)[0]
    a, b = open_store(f"{bucket}/team-a"), open_store(f"{bucket}/team-b")
    rec_a = RunRecord(run_id="20260101-000000-a-0001", pipeline="a", notebook="a.ipynb", store=a.url)
    rec_b = RunRecord(run_id="20260101-000000-b-0002", pipeline="b", notebook="b.ipynb", store=b.url)
    save_run(a, rec_a)
    save_run(b, rec_b)
    assert [r.run_id for r in list_runs(a)] == [rec_a.run_id]
    assert [r.run_id for r in list_runs(b)] == [rec_b.run_id]
    assert load_run(a, rec_a.run_id).pipeline == "a"
    with pytest.raises(Exception, match="No run"):
        load_run(a, rec_b.run_id)
    assert open_store(bucket).list() == ["team-a/", "team-b/"]
    # A prefix that is a string prefix of another is still a different folder.
    assert open_store(f"{bucket}/team").list() == []


def test_readers_never_see_a_partial_run_record(s3_store):
    s3_store.check()
    record = RunRecord(run_id="20260101-000000-big-0001", pipeline="big", notebook="big.ipynb", store=s3_store.url)
    save_run(s3_store, record)
    stop, seen, errors = threading.Event(), set(), []

    def read():
        while not stop.is_set():
            try:
                seen.add(len(load_run(s3_store, record.run_id).history))
            except Exception as exc:
                errors.append(exc)

    reader = threading.Thread(target=read)
    reader.start()
    try:
        for i in range(1, 16):  # ~0.5 MB records: big enough to be sent in several TCP writes
            record.history = [{"event": "x" * 500, "i": j} for j in range(i * 60)]
            save_run(s3_store, record)
    finally:
        stop.set()
        reader.join()
    assert not errors, errors[:3]
    assert len(seen) > 1  # the reader did overlap the writes


# -- large values stream ---------------------------------------------------------------------------
LARGE_SCRIPT = textwrap.dedent("""
    import hashlib, json, os, sys
    from jupyter_pipeline.store.base import open_store
    store = open_store(sys.argv[1])
    size, src, dst = 200 * 1000 * 1000, sys.argv[2], sys.argv[3]
    digest = hashlib.sha256()
    with store.writing("runs/r/stages/s/vars/big.npy") as path:  # as a saver would write a variable
        with open(path, "wb") as f:
            block = os.urandom(1 << 20)
            for i in range(size // len(block) + 1):
                chunk = (block[i % 997:] + block[:i % 997])[: min(len(block), size - i * len(block))]
                digest.update(chunk)
                f.write(chunk)
    with store.reading("runs/r/stages/s/vars/big.npy") as path:
        back = hashlib.sha256()
        with open(path, "rb") as f:
            while chunk := f.read(1 << 20):
                back.update(chunk)
        got = os.path.getsize(path)
    etag = store.client.stat_object(store.bucket, store._name("runs/r/stages/s/vars/big.npy")).etag
    # VmHWM, not getrusage's ru_maxrss: Linux carries ru_maxrss over from the parent through
    # fork and exec, so a child of a large pytest process would report the parent's peak.
    hwm_kb = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM:"))
    print(json.dumps({"same": back.hexdigest() == digest.hexdigest(), "size": got, "etag": etag,
                      "peak_rss_mb": hwm_kb / 1024}))
""")


@pytest.mark.slow
def test_200mb_variable_streams_in_parts_without_a_whole_copy_in_memory(s3_url, tmp_path):
    # In a child process: the moto server in this process holds the object in memory itself.
    out = subprocess.run([sys.executable, "-c", LARGE_SCRIPT, s3_url, str(tmp_path / "a"), str(tmp_path / "b")],
                         capture_output=True, text=True, timeout=300, env=os.environ)
    assert out.returncode == 0, out.stderr[-2000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["same"] and result["size"] == 200 * 1000 * 1000
    assert result["etag"].endswith("-12")  # a multipart upload of 12 parts of 16 MiB
    # A whole copy of the value would put the peak above 200 MB on its own.
    assert result["peak_rss_mb"] < 170, result


# -- concurrency -----------------------------------------------------------------------------------
def _claim_all(url: str, keys: list[str], barrier) -> list[str]:
    store = open_store(url)
    barrier.wait()
    return [k for k in keys if store.create_exclusive(k, str(os.getpid()).encode())]


def test_create_exclusive_has_one_winner_across_processes(s3_store):
    s3_store.check()
    keys = [f"models/m/{i}/.claim" for i in range(1, 9)]
    ctx = multiprocessing.get_context("spawn")
    with ctx.Manager() as manager:
        barrier = manager.Barrier(4)
        with ctx.Pool(4) as pool:
            results = pool.starmap(_claim_all, [(s3_store.url, keys, barrier)] * 4)
    won = [k for r in results for k in r]
    assert sorted(won) == sorted(keys), results  # every key claimed exactly once
    assert all(s3_store.exists(k) for k in keys)


# -- failures: one clear line each -----------------------------------------------------------------
def test_wrong_secret_is_reported_as_rejected_credentials(auth_s3):
    ok = S3Store("s3://auth-bucket/p", settings_for(auth_s3["endpoint"], *auth_s3["users"]["full"]))
    ok.check()  # the right credentials pass: the server really checks signatures
    ok.put_bytes("k", b"v")

    access, secret = auth_s3["users"]["wrong"]
    bad = S3Store("s3://auth-bucket/p", settings_for(auth_s3["endpoint"], access, secret))
    for action in (bad.check, lambda: bad.get_bytes("k"), lambda: bad.put_bytes("k", b"x")):
        with pytest.raises(StoreError) as err:
            action()
        message = str(err.value)
        assert "rejected the credentials (SignatureDoesNotMatch)" in message
        assert auth_s3["endpoint"] in message and "AWS_ACCESS_KEY_ID" in message
        assert secret not in message and "\n" not in message
    assert ok.get_bytes("k") == b"v"


def test_unknown_access_key_is_reported_as_rejected_credentials(auth_s3):
    bad = S3Store("s3://auth-bucket/p", settings_for(auth_s3["endpoint"], "AKIANOTAKEY000000000", "x" * 40))
    with pytest.raises(StoreError, match=r"rejected the credentials \(InvalidAccessKeyId\)"):
        bad.check()


def test_missing_bucket_without_permission_to_create_it(auth_s3):
    """Whatever this server release answers for a bucket the user may not create (404 then a
    refused CreateBucket, or 403 at once), the store refuses with one line naming the bucket, the
    endpoint and where the credentials came from, creates nothing and never prints the secret."""
    access, secret = auth_s3["users"]["nocreate"]
    store = S3Store("s3://never-created/p", settings_for(auth_s3["endpoint"], access, secret))
    for attempt in (store.check, lambda: store.put_bytes("runs/x/run.json", b"{}")):
        with pytest.raises(StoreError) as err:
            attempt()
        message = str(err.value)
        assert "'never-created'" in message and auth_s3["endpoint"] in message
        assert "AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY" in message and secret not in message
        assert "\n" not in message
    full = S3Store("s3://never-created/p", settings_for(auth_s3["endpoint"], *auth_s3["users"]["full"]))
    assert not bucket_exists(full)


def test_missing_bucket_answered_404_then_create_refused(private_s3):
    """A server that says NoSuchBucket (AWS, MinIO) and then refuses CreateBucket: the bucket is
    known to be missing, so the message says so and what to do."""
    store = S3Store("s3://gone404/p", settings_for(private_s3.endpoint, "k", "s"))
    private_s3.fail_next(1, 404, "NoSuchBucket")  # the listing probe
    private_s3.fail_next(1, 403, "AccessDenied")  # CreateBucket
    with pytest.raises(StoreError) as err:
        store.check()
    assert str(err.value).startswith(
        f"Bucket 'gone404' does not exist at {private_s3.endpoint} and access key 'k' (from "
        "AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY) may not create it (CreateBucket: AccessDenied); create the "
        "bucket, or set the store to a bucket these credentials may write (--store or JUPYTER_PIPELINE_STORE;")


def test_missing_bucket_answered_403_names_both_causes(private_s3):
    """A server that answers a missing bucket with 403 (IAM-checking servers, some MinIO and
    SeaweedFS set-ups) cannot be told from one that denies access: the message says both and
    never claims the bucket is missing."""
    store = S3Store("s3://gone403/p", settings_for(private_s3.endpoint, "k", "s"))
    private_s3.fail_next(1, 403, "AccessDenied")
    with pytest.raises(StoreError) as err:
        store.check()
    message = str(err.value)
    assert message.startswith(f"Access denied to s3://gone403/p at {private_s3.endpoint} while opening store")
    assert ("access key 'k' (from AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY) may not do this in bucket 'gone403', "
            "or the bucket does not exist" in message and "does not exist at" not in message)


def test_unreachable_endpoint_fails_fast_with_its_address():
    endpoint = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    store = S3Store("s3://nowhere/p", settings_for(endpoint, "k", SECRET_KEY))
    started = time.monotonic()
    with pytest.raises(StoreError) as err:
        store.check()
    assert time.monotonic() - started < 10
    assert str(err.value).startswith(f"Cannot reach the S3 endpoint {endpoint} (connection refused) "
                                     "while opening store s3://nowhere/p (tried 3 times)")
    assert SECRET_KEY not in str(err.value)


def test_tls_to_a_plain_http_server_says_so(s3_server):
    endpoint = s3_server.endpoint.replace("http://", "https://")
    store = S3Store("s3://tls-bucket/p", settings_for(endpoint, "k", "s"))
    with pytest.raises(StoreError, match="TLS handshake .* write the endpoint as http://host:port"):
        store.check()


def test_transient_errors_are_retried_then_reported(private_s3):
    store = S3Store("s3://flaky/p", settings_for(private_s3.endpoint, "k", "s", attempts=3))
    store.check()
    private_s3.fail_next(2, 503, "SlowDown")
    store.put_bytes("a", b"1")  # third attempt goes through
    private_s3.fail_next(1, 500, "InternalError")
    assert store.get_bytes("a") == b"1"

    before = private_s3.requests
    private_s3.fail_next(3, 503, "ServiceUnavailable")
    with pytest.raises(StoreError) as err:
        store.get_bytes("a")
    assert private_s3.requests - before == 3  # bounded: exactly `attempts` requests
    assert str(err.value) == (f"The S3 endpoint {private_s3.endpoint} kept failing (ServiceUnavailable) "
                              "while reading a (tried 3 times).")


def test_a_client_error_is_not_retried(private_s3):
    store = S3Store("s3://flaky2/p", settings_for(private_s3.endpoint, "k", "s", attempts=3))
    store.check()
    before = private_s3.requests
    private_s3.fail_next(1, 403, "AccessDenied")
    with pytest.raises(StoreError, match="Access denied to s3://flaky2/p"):
        store.put_bytes("a", b"1")
    assert private_s3.requests - before == 1


def test_server_stopped_then_restarted(private_s3):
    store = S3Store("s3://restart/p", settings_for(private_s3.endpoint, "k", "s"))
    store.put_bytes("runs/r/run.json", b"{}")
    private_s3.stop()
    with pytest.raises(StoreError, match=f"Cannot reach the S3 endpoint {private_s3.endpoint} "
                                         r"\(connection refused\) while reading runs/r/run.json"):
        store.get_bytes("runs/r/run.json")
    private_s3.start()  # same port, same objects
    assert store.get_bytes("runs/r/run.json") == b"{}"


# -- configuration ---------------------------------------------------------------------------------
def test_settings_from_env_accepts_minio_names_and_hides_secrets():
    s = S3Settings.from_env({"MINIO_ENDPOINT": "minio.kubeflow:9000", "MINIO_SECURE": "false",
                             "MINIO_ACCESS_KEY": "minio", "MINIO_SECRET_KEY": "minio123"})
    assert (s.endpoint, s.secure, s.access_key, s.secret_key) == ("http://minio.kubeflow:9000", False, "minio", "minio123")
    assert s.credential_source == "MINIO_ACCESS_KEY/MINIO_SECRET_KEY"
    assert "minio123" not in repr(s)

    s = S3Settings.from_env({"JUPYTER_PIPELINE_S3_ENDPOINT": "https://s3.example.org/", "MINIO_ENDPOINT": "ignored:1",
                             "AWS_ACCESS_KEY_ID": "a", "AWS_SECRET_ACCESS_KEY": "b", "MINIO_ACCESS_KEY": "c"})
    assert (s.endpoint, s.secure, s.host, s.access_key) == ("https://s3.example.org", True, "s3.example.org", "a")
    assert S3Settings.from_env({"MINIO_ENDPOINT": "minio:9000"}).secure  # TLS unless told otherwise


def test_invalid_bucket_name_is_a_store_error():
    with pytest.raises(StoreError, match="Bucket name 'B_' in s3://B_/p is not valid"):
        open_store("s3://B_/p")


def test_credentials_in_the_url_are_refused_without_echoing_them():
    with pytest.raises(StoreError) as err:
        open_store("s3://AKIA:sup3rs3cret@bucket/prefix")
    assert "sup3rs3cret" not in str(err.value)


def test_credentials_in_the_endpoint_are_refused_without_echoing_them():
    with pytest.raises(StoreError, match="JUPYTER_PIPELINE_S3_ENDPOINT carries credentials") as err:
        S3Settings.from_env({"JUPYTER_PIPELINE_S3_ENDPOINT": "http://minio:sup3rs3cret@127.0.0.1:9000"})
    assert "sup3rs3cret" not in str(err.value)
    with pytest.raises(StoreError, match="MINIO_ENDPOINT carries credentials"):
        S3Settings.from_env({"MINIO_ENDPOINT": "minio:sup3rs3cret@minio.kubeflow:9000"})


# -- whole pipelines on s3:// (real kernels, the real CLI) -----------------------------------------
def write_notebook(path, cells: list[tuple[str, str]]):
    import nbformat
    from nbformat.v4 import new_code_cell, new_notebook

    nb = new_notebook(cells=[new_code_cell(src, metadata={"tags": [tag]}) for tag, src in cells])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, path)
    return path


def cli(*args, env=None, timeout=240) -> subprocess.CompletedProcess:
    exe = os.path.join(os.path.dirname(sys.executable), "jupyter-pipeline")
    return subprocess.run([exe, *map(str, args)], capture_output=True, text=True, timeout=timeout,
                          env=env or os.environ)


@pytest.mark.slow
def test_whole_pipeline_lands_in_the_bucket_under_the_prefix(s3_url, tmp_path):
    nb = write_notebook(tmp_path / "tiny.ipynb", [
        ("setup", "import os\nos.environ.setdefault('KERAS_BACKEND', 'jax')\nimport numpy as np\n"
                  "from jupyter_pipeline import log_metric, log_model"),
        ("parameters", "rows = 50"),
        ("stage:make", "features = np.linspace(0, 1, rows * 4, dtype='float32').reshape(rows, 4)\n"
                       "log_metric('rows', rows)"),
        ("stage:register", "import keras\n"
                           "model = keras.Sequential([keras.Input(shape=(4,)), keras.layers.Dense(2)])\n"
                           "log_metric('mean', float(features.mean()))\n"
                           "version = log_model(model, 'tiny')"),
    ])
    out = cli("run", nb, "--store", s3_url, "--json", "-p", "rows", "30")
    assert out.returncode == 0, out.stderr[-3000:]
    record = json.loads(out.stdout)
    run_id = record["run_id"]
    assert record["status"] == "succeeded" and record["store"] == s3_url
    assert record["stages"]["register"]["output_notebook"] == f"{s3_url}/runs/{run_id}/stages/register/output.ipynb"

    store = open_store(s3_url)
    keys = set(store.list(f"runs/{run_id}", recursive=True))
    for stage in ("make", "register"):
        assert {f"runs/{run_id}/stages/{stage}/input.ipynb", f"runs/{run_id}/stages/{stage}/output.ipynb"} <= keys
    assert f"runs/{run_id}/run.json" in keys
    assert any(k.startswith(f"runs/{run_id}/stages/make/vars/features.") for k in keys), keys
    assert load_run(store, run_id).metrics() == {"rows": 30, "mean": 0.5}

    # The model registered inside the stage sits in the run's store, tagged with run and stage.
    models = json.loads(cli("models", "--store", s3_url, "--json").stdout)["models"]
    [meta] = models["tiny"]
    assert (meta["version"], meta["run_id"], meta["stage"]) == (1, run_id, "register")
    assert meta["metrics"] == {"rows": 30, "mean": 0.5}
    assert store.exists("models/tiny/1/model.keras")

    runs = json.loads(cli("runs", "--store", s3_url, "--json").stdout)["runs"]
    assert [r["run_id"] for r in runs] == [run_id]
    other = s3_url.rsplit("/", 1)[0] + "/team-b"
    assert json.loads(cli("runs", "--store", other, "--json").stdout)["runs"] == []


@pytest.mark.slow
def test_server_stopped_mid_run_then_resume_after_restart(private_s3, tmp_path, monkeypatch):
    monkeypatch.setenv("JUPYTER_PIPELINE_S3_ENDPOINT", private_s3.endpoint)
    url = "s3://jp-restart/team-a"
    store = open_store(url)
    nb = write_notebook(tmp_path / "outage.ipynb", [
        ("setup", "import os, time"),
        ("stage:first", "stamp = 41"),
        ("stage:second", "while not os.path.exists('go.flag'):\n    time.sleep(0.1)\nresult = stamp + 1"),
        ("stage:third", "assert result == 42"),
    ])
    exe = os.path.join(os.path.dirname(sys.executable), "jupyter-pipeline")
    patience = 8  # seconds the run waits out the outage (the default, 120, is for people)
    proc = subprocess.Popen([exe, "run", str(nb), "--store", url, "--json"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "JUPYTER_PIPELINE_STORE_PATIENCE": str(patience)})
    try:
        deadline = time.monotonic() + 120
        while True:  # wait until the second stage is running, then pull the plug
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "second stage never started"
            runs = list_runs(store)
            if runs and runs[0].stages["second"].status.value == "running":
                run_id = runs[0].run_id
                break
            time.sleep(0.2)
        private_s3.stop()
        (tmp_path / "go.flag").touch()
        # The run waits out the outage for `patience` seconds before it gives up: wait longer than that.
        pulled = time.monotonic()
        _, err = proc.communicate(timeout=patience + 90)
        waited = time.monotonic() - pulled
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 1
    assert f"Cannot reach the S3 endpoint {private_s3.endpoint} (connection refused)" in err, err
    assert "Traceback" not in err
    assert waited >= patience  # it did wait out the outage before giving up

    private_s3.start()  # same port, objects kept
    shown = json.loads(cli("runs", run_id, "--store", url, "--json").stdout)
    assert shown["status"] == "interrupted"
    assert {k: v["status"] for k, v in shown["stages"].items()} == {
        "first": "succeeded", "second": "interrupted", "third": "interrupted"}

    out = cli("resume", run_id, "--store", url, "--json")
    assert out.returncode == 0, out.stderr[-3000:]
    resumed = json.loads(out.stdout)
    assert resumed["status"] == "succeeded"
    assert resumed["stages"]["first"]["reused"] and resumed["stages"]["third"]["status"] == "succeeded"


# -- binder/start ----------------------------------------------------------------------------------
FAKE_MINIO = """#!{python}
# Stands in for the MinIO binary: `minio server DATA --address HOST:PORT ...` serves S3 (moto).
import os, sys
host, port = sys.argv[sys.argv.index("--address") + 1].rsplit(":", 1)
assert os.environ["MINIO_ROOT_USER"] and os.environ["MINIO_ROOT_PASSWORD"]
open(os.environ["FAKE_MINIO_PIDFILE"], "w").write(str(os.getpid()))
from moto.server import main
main(["-H", host, "-p", port])
"""


def test_binder_start_runs_minio_and_points_the_store_at_it(tmp_path):
    import signal

    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "minio"
    fake.write_text(FAKE_MINIO.format(python=sys.executable))
    fake.chmod(0o755)
    keep = {k: v for k, v in os.environ.items()
            if not k.startswith(("AWS_", "MINIO_", "JUPYTER_PIPELINE_S3_", "JUPYTER_PIPELINE_STORE"))}
    env = {**keep, "PATH": f"{bin_dir}:{os.environ['PATH']}", "HOME": str(tmp_path),
           "JUPYTER_PIPELINE_MINIO_PORT": str(free_port()), "FAKE_MINIO_PIDFILE": str(tmp_path / "pid")}
    probe = ("import os; from jupyter_pipeline.store.base import open_store; s = open_store(); s.check(); "
             "s.put_bytes('hello', b'world'); print(s.url, s.get_bytes('hello').decode(), "
             "os.environ['AWS_ACCESS_KEY_ID'], os.environ['JUPYTER_PIPELINE_S3_ENDPOINT'])")
    try:
        out = subprocess.run([str(ROOT / "binder" / "start"), sys.executable, "-c", probe], env=env,
                             capture_output=True, text=True, timeout=120, cwd=tmp_path)
    finally:
        if (tmp_path / "pid").exists():
            os.kill(int((tmp_path / "pid").read_text()), signal.SIGTERM)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == ["s3://jupyter-pipeline/demo", "world", "jupyter-pipeline",
                                  f"http://127.0.0.1:{env['JUPYTER_PIPELINE_MINIO_PORT']}"]
    assert (tmp_path / ".minio" / "credentials").stat().st_mode & 0o077 == 0  # the password is private


def test_binder_start_without_minio_keeps_the_local_store(tmp_path):
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    out = subprocess.run([str(ROOT / "binder" / "start"), "/usr/bin/env"], env=env, capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0 and "JUPYTER_PIPELINE_STORE" not in out.stdout
    assert "no minio binary" in out.stderr


def test_run_stops_before_any_stage_when_the_store_is_unusable(auth_s3, tmp_path):
    nb = write_notebook(tmp_path / "one.ipynb", [("stage:only", "x = 1")])
    keep = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "MINIO_", "JUPYTER_PIPELINE_S3_"))}
    access, secret = auth_s3["users"]["wrong"]
    cases = {
        "unreachable": ({"JUPYTER_PIPELINE_S3_ENDPOINT": f"http://127.0.0.1:{free_port()}"},
                        "Cannot reach the S3 endpoint"),
        "credentials": ({"JUPYTER_PIPELINE_S3_ENDPOINT": auth_s3["endpoint"], "AWS_ACCESS_KEY_ID": access,
                         "AWS_SECRET_ACCESS_KEY": secret}, "rejected the credentials (SignatureDoesNotMatch)"),
    }
    for name, (env, expected) in cases.items():
        out = cli("run", nb, "--store", "s3://jp-never/p", env={**keep, **env, "JUPYTER_PIPELINE_S3_RETRIES": "2"})
        assert out.returncode == 1, (name, out.stderr)
        assert out.stderr.startswith("error: ") and " ".join(out.stderr.split()).count(expected) == 1, (name, out.stderr)
        assert "started" not in out.stderr and "Traceback" not in out.stderr and secret not in out.stderr
