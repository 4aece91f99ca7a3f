"""A loopback HTTP server that plays the Kubernetes API, for contract tests: it records every
request (method, path, content type, authorization, body) and answers from a script."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest


class FakeKubernetes:
    """Records every request; answers from a script of ``(method, path) -> (status, body)``
    (a ``None`` body echoes the request's)."""

    def __init__(self, script: dict):
        self.script = script
        self.requests: list[dict] = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def _any(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length)) if length else None
                fake.requests.append({"method": self.command, "path": self.path,
                                      "content_type": self.headers.get("Content-Type"),
                                      "authorization": self.headers.get("Authorization"), "body": body})
                status, answer = fake.script.get((self.command, self.path.split("?")[0]), (404, {"message": "nope"}))
                payload = json.dumps(body if answer is None else answer).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_POST = do_PATCH = do_PUT = do_DELETE = _any

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"

    @property
    def api(self):
        """A ``kubernetes`` client talking to this server."""
        from kubernetes import client

        return client.ApiClient(client.Configuration(host=self.url))

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def fake_kubernetes():
    """``fake_kubernetes(script)`` starts a :class:`FakeKubernetes`; all are stopped after the test."""
    servers = []

    def start(script):
        servers.append(FakeKubernetes(script))
        return servers[-1]
    yield start
    for s in servers:
        s.close()


@pytest.fixture
def in_pod(tmp_path, monkeypatch, fake_kubernetes):
    """This process seen as a Kubeflow notebook pod ``nb-0`` in namespace ``team-a``: a service
    account folder, the projected KFP token and the Kubernetes API played by a loopback server
    whose script answers the pod's own GET. Returns the :class:`FakeKubernetes`."""
    from jupyter_pipeline import cluster

    account = tmp_path / "serviceaccount"
    account.mkdir()
    (account / "token").write_text("sa-token\n")
    (account / "namespace").write_text("team-a")
    kfp_token = tmp_path / "kfp-token"
    kfp_token.write_text("kfp-projected-token\n")
    pod = {"kind": "Pod", "metadata": {"name": "nb-0", "namespace": "team-a"},
           "spec": {"containers": [{"name": "istio-proxy", "image": "istio/proxyv2:1.22"},
                                   {"name": "nb", "image": "registry.example/team/notebook:7"}]}}
    fake = fake_kubernetes({("GET", "/api/v1/namespaces/team-a/pods/nb-0"): (200, pod)})
    monkeypatch.setattr(cluster, "SERVICE_ACCOUNT_DIR", str(account))
    monkeypatch.setattr(cluster, "api_url", lambda: fake.url)
    monkeypatch.setattr(cluster, "_image_cache", {})
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "10.0.0.1")
    monkeypatch.setenv("HOSTNAME", "nb-0")
    monkeypatch.setenv(cluster.KFP_TOKEN_PATH_ENV, str(kfp_token))
    return fake
