"""A real S3-protocol server on loopback for the tests: moto's S3 app under werkzeug.

``s3_server`` (session) serves moto on a free port and points the store's environment variables
at it, so stage kernels started by the runner reach the same server. ``s3_url`` gives each test its
own fresh bucket. ``private_s3`` is a second server a test may stop, restart or make fail.
``auth_s3`` is a moto server in a subprocess with IAM authentication enforced, for the
wrong-credentials and no-permission cases (moto accepts any credentials unless told otherwise,
and that switch is process-wide, so it gets its own process).
"""

from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.request
import uuid

import pytest

ACCESS_KEY = "jp-test-access"
SECRET_KEY = "jp-test-secret-do-not-print"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class S3Server:
    """moto's S3 app on 127.0.0.1:port; can stop (socket closed: connection refused), restart on
    the same port with its objects intact (moto keeps them in this process), and answer the next
    N requests with an error, as a sick server would, or stall (accept requests, answer none)."""

    def __init__(self, port: int | None = None):
        from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app

        self.port = port or free_port()
        self._app = DomainDispatcherApplication(create_backend_app)
        self._server = None
        self._thread = None
        self._failures: list[tuple[int, bytes]] = []
        self._stalled = threading.Event()
        self.requests = 0
        logging.getLogger("werkzeug").setLevel(logging.ERROR)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _wsgi(self, environ, start_response):
        self.requests += 1
        if self._stalled.is_set():
            # Hold the request unanswered while stalled (clients time out); then drop it unapplied.
            while self._stalled.is_set():
                time.sleep(0.05)
            start_response("503 Slow Down", [("Content-Type", "application/xml")])
            return [b"<Error><Code>SlowDown</Code><Message>stalled</Message></Error>"]
        if self._failures:
            status, body = self._failures.pop(0)
            start_response(f"{status} Error", [("Content-Type", "application/xml")])
            return [body]
        return self._app(environ, start_response)

    def fail_next(self, count: int, status: int = 503, code: str = "SlowDown") -> None:
        """Answer the next ``count`` requests with ``status`` and an S3 error body ``code``."""
        body = (f"<?xml version='1.0' encoding='UTF-8'?><Error><Code>{code}</Code>"
                f"<Message>injected by the test</Message></Error>").encode()
        self._failures.extend([(status, body)] * count)

    def stall(self, on: bool = True) -> None:
        """While on, accept requests but answer none, as a hung server or a black-holed network would."""
        if on:
            self._stalled.set()
        else:
            self._stalled.clear()

    def start(self) -> "S3Server":
        from werkzeug.serving import make_server

        self._server = make_server("127.0.0.1", self.port, self._wsgi, threaded=True)
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._thread.join()
            self._server = None


def _set_env(monkey: dict, endpoint: str, access: str, secret: str) -> None:
    monkey.update({
        "JUPYTER_PIPELINE_S3_ENDPOINT": endpoint,
        "AWS_ACCESS_KEY_ID": access,
        "AWS_SECRET_ACCESS_KEY": secret,
        "JUPYTER_PIPELINE_S3_RETRIES": "3",
    })


@pytest.fixture(scope="session")
def s3_server():
    """The shared S3 server; the store environment variables point at it for the session."""
    server = S3Server().start()
    names = ("JUPYTER_PIPELINE_S3_ENDPOINT", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY",
             "JUPYTER_PIPELINE_S3_RETRIES")
    saved = {name: os.environ.get(name) for name in names}
    for name in ("MINIO_ENDPOINT", "MINIO_ACCESS_KEY", "MINIO_SECRET_KEY", "AWS_ENDPOINT_URL",
                 "AWS_ENDPOINT_URL_S3", "AWS_SESSION_TOKEN"):
        os.environ.pop(name, None)
    _set_env(os.environ, server.endpoint, ACCESS_KEY, SECRET_KEY)
    yield server
    server.stop()
    for name, value in saved.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


@pytest.fixture
def s3_url(s3_server) -> str:
    """A store URL in a fresh bucket (not created yet) on the shared server."""
    return f"s3://jp-{uuid.uuid4().hex[:12]}/team-a"


@pytest.fixture
def s3_store(s3_url):
    from jupyter_pipeline.store.base import open_store

    return open_store(s3_url)


@pytest.fixture
def private_s3(s3_server):
    """A second server of this process (same objects as ``s3_server``) a test may stop or break."""
    server = S3Server().start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def auth_s3(tmp_path_factory):
    """moto in a subprocess with authentication on, and four sets of credentials:
    ``full`` (may do anything in S3), ``nocreate`` (may read and write objects but not create
    buckets), ``kubeflow`` (shaped like the S3 user Kubeflow 2.15+ gives each profile namespace on
    SeaweedFS: read, write, list and delete objects of the existing ``mlpipeline`` bucket, nothing
    else) and ``wrong`` (a real key id with a wrong secret). Yields a dict."""
    import boto3

    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    log = open(tmp_path_factory.mktemp("moto") / "moto.log", "wb")
    proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                            stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(f"{endpoint}/moto-api/", timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise RuntimeError(f"moto server did not start on {endpoint}") from None
                time.sleep(0.1)
        iam = boto3.client("iam", endpoint_url=endpoint, region_name="us-east-1",
                           aws_access_key_id="bootstrap", aws_secret_access_key="bootstrap")
        users = {}
        anywhere = [{"Effect": "Allow", "Action": ["s3:*"], "Resource": "*"}]
        policies = {
            "full": anywhere,
            "nocreate": [{"Effect": "Allow", "Action": ["s3:GetObject", "s3:PutObject", "s3:DeleteObject",
                                                        "s3:ListBucket"], "Resource": "*"}],
            # SeaweedFS's Read, Write and List on one bucket. This moto checks each request's API
            # operation name (ListObjectsV2, HeadObject, the multipart calls) where AWS IAM groups
            # them (ListBucket, GetObject, PutObject), so both spellings are granted.
            "kubeflow": [{"Effect": "Allow", "Action": ["s3:ListBucket", "s3:ListObjects", "s3:ListObjectsV2"],
                          "Resource": "arn:aws:s3:::mlpipeline"},
                         {"Effect": "Allow", "Resource": "arn:aws:s3:::mlpipeline/*", "Action": [
                             "s3:GetObject", "s3:HeadObject", "s3:PutObject", "s3:DeleteObject",
                             "s3:CreateMultipartUpload", "s3:UploadPart", "s3:CompleteMultipartUpload",
                             "s3:AbortMultipartUpload"]}],
        }
        for name, statements in policies.items():
            iam.create_user(UserName=name)
            iam.put_user_policy(UserName=name, PolicyName="s3", PolicyDocument=json.dumps({
                "Version": "2012-10-17", "Statement": statements}))
            key = iam.create_access_key(UserName=name)["AccessKey"]
            users[name] = (key["AccessKeyId"], key["SecretAccessKey"])
        users["wrong"] = (users["full"][0], "not-the-secret-" + uuid.uuid4().hex)
        # From here on moto checks every request's signature and IAM policy.
        urllib.request.urlopen(urllib.request.Request(f"{endpoint}/moto-api/reset-auth", data=b"0", method="POST",
                                                      headers={"Content-Type": "text/plain"}), timeout=5).close()
        # Kubeflow's pipeline root bucket, made by its installer (not by the namespace's user).
        boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id=users["full"][0],
                     aws_secret_access_key=users["full"][1]).create_bucket(Bucket="mlpipeline")
        yield {"endpoint": endpoint, "users": users}
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        log.close()
