"""The settings resolver: one precedence (flag, notebook, environment, server, config file,
in-cluster, default), one test per source, and each front asking it (the CLI's compile and
deploy, the server's config). In-cluster values come from a loopback server playing the
Kubernetes API (``plugin_kubernetes``)."""

from __future__ import annotations

import json

import pytest
import yaml

from jupyter_pipeline import cluster
from jupyter_pipeline.cli import main
from jupyter_pipeline.settings import DEFAULT_IMAGE, DEFAULT_STORE, ConfigError, Settings

ENV_NAMES = ["JUPYTER_PIPELINE_STORE", "JUPYTER_PIPELINE_KFP_HOST", "KF_PIPELINES_ENDPOINT",
             "JUPYTER_PIPELINE_IMAGE", "JUPYTER_PIPELINE_NAMESPACE", "JUPYTER_PIPELINE_KFP_TOKEN",
             "KF_PIPELINES_TOKEN", "JUPYTER_PIPELINE_PACKAGES", "JUPYTER_PIPELINE_PIP_INDEX_URLS",
             "KUBERNETES_SERVICE_HOST"]


@pytest.fixture(autouse=True)
def clean(monkeypatch, tmp_path):
    for name in ENV_NAMES:
        monkeypatch.delenv(name, raising=False)
    config = tmp_path / "config.json"
    monkeypatch.setenv("JUPYTER_PIPELINE_CONFIG", str(config))
    return config


def every_source(config, **skip) -> Settings:
    """A resolver where every source names an image; ``skip`` drops sources."""
    config.write_text(json.dumps({"image": "config/image:1"}))
    return Settings(flags=None if "flag" in skip else {"image": "flag/image:1"},
                    notebook=None if "notebook" in skip else {"image": "notebook/image:1"},
                    environ={} if "environment" in skip else {"JUPYTER_PIPELINE_IMAGE": "env/image:1"},
                    server=None if "server" in skip else {"image": "server/image:1"})


def test_a_flag_wins_over_everything(clean):
    assert every_source(clean).resolve("image") == ("flag/image:1", "flag")


def test_the_notebook_setting_comes_second(clean):
    r = every_source(clean, flag=1).resolve("image")
    assert (r.value, r.source) == ("notebook/image:1", "notebook")


def test_the_environment_comes_third(clean):
    r = every_source(clean, flag=1, notebook=1).resolve("image")
    assert (r.value, r.source) == ("env/image:1", "environment")
    # The KFP host has two names; ours first, then the kfp SDK's own.
    both = Settings(environ={"JUPYTER_PIPELINE_KFP_HOST": "http://ours", "KF_PIPELINES_ENDPOINT": "http://sdk"})
    assert both.get("kfp_host") == "http://ours"
    assert Settings(environ={"KF_PIPELINES_ENDPOINT": "http://sdk"}).get("kfp_host") == "http://sdk"
    lists = Settings(environ={"JUPYTER_PIPELINE_PACKAGES": "pandas>=2 pyyaml",
                              "JUPYTER_PIPELINE_PIP_INDEX_URLS": "https://pypi.internal/simple"})
    assert lists.get("packages") == ["pandas>=2", "pyyaml"]
    assert lists.get("pip_index_urls") == ["https://pypi.internal/simple"]


def test_server_traitlets_come_fourth(clean):
    r = every_source(clean, flag=1, notebook=1, environment=1).resolve("image")
    assert (r.value, r.source) == ("server/image:1", "server")


def test_the_config_file_comes_fifth(clean):
    r = every_source(clean, flag=1, notebook=1, environment=1, server=1).resolve("image")
    assert (r.value, r.source) == ("config/image:1", "config file")
    clean.write_text("{not json")
    with pytest.raises(ConfigError, match="Cannot read the config file"):
        Settings(environ={}).get("store")
    clean.write_text("[1]")
    with pytest.raises(ConfigError, match="must hold a JSON object"):
        Settings(environ={}).get("store")


def test_in_cluster_defaults_come_sixth(clean, in_pod):
    """Inside a pod: kfp.Client's in-cluster endpoint and projected token, the pod's namespace, and
    the image of the notebook's own container read from the Kubernetes API."""
    settings = Settings(environ={})
    assert settings.resolve("image") == ("registry.example/team/notebook:7", "in-cluster")
    assert settings.resolve("namespace") == ("team-a", "in-cluster")
    assert settings.resolve("kfp_host") == (cluster.KFP_IN_CLUSTER_HOST, "in-cluster")
    assert settings.get("kfp_token") == "kfp-projected-token"
    [request] = in_pod.requests  # one request, the pod's own, with the service account's token
    assert (request["method"], request["path"], request["authorization"]) == (
        "GET", "/api/v1/namespaces/team-a/pods/nb-0", "Bearer sa-token")
    assert Settings(environ={}).get("image") == "registry.example/team/notebook:7"
    assert len(in_pod.requests) == 1  # the pod's image is read once per process
    # The config file still wins over what the pod says.
    clean.write_text(json.dumps({"image": "config/image:1", "namespace": "team-b"}))
    assert Settings(environ={}).resolve("image") == ("config/image:1", "config file")
    assert Settings(environ={}).get("namespace") == "team-b"


def test_a_pod_that_may_not_read_itself_falls_back_to_the_default(in_pod, monkeypatch):
    in_pod.script.clear()  # 404 for everything
    monkeypatch.setattr(cluster, "_image_cache", {})
    assert Settings(environ={}).resolve("image") == (DEFAULT_IMAGE, "default")


def test_built_in_defaults_come_last():
    settings = Settings(environ={})
    assert settings.resolve("store") == (DEFAULT_STORE, "default")
    assert settings.resolve("image") == (DEFAULT_IMAGE, "default")
    assert settings.get("kfp_host") is None and settings.get("namespace") is None
    assert settings.get("packages") == [] and settings.get("experiment") == "Default"
    assert not cluster.in_pod()


def test_secrets_are_never_shown():
    public = Settings(environ={"KF_PIPELINES_TOKEN": "t0ken"}).public()
    assert public["kfp_token"] == {"value": "(set)", "source": "environment"}
    assert "t0ken" not in json.dumps(public)


# -- the fronts ask the resolver -------------------------------------------------------------------

def test_cli_compile_honours_the_image_environment_variable(fixture_nb, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("JUPYTER_PIPELINE_IMAGE", "registry.example/env:2")
    out = tmp_path / "p.yaml"
    assert main(["compile", str(fixture_nb("kfp_values")), "-o", str(out), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["image"] == "registry.example/env:2"
    spec = next(yaml.safe_load_all(out.read_text()))
    images = {e["container"]["image"] for e in spec["deploymentSpec"]["executors"].values()}
    assert images == {"registry.example/env:2"}
    assert main(["compile", str(fixture_nb("kfp_values")), "-o", str(out), "--image", "flag/i:3", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["image"] == "flag/i:3"


def test_deploy_reads_the_image_when_it_runs_not_at_import(monkeypatch, capsys, clean):
    monkeypatch.setenv("JUPYTER_PIPELINE_IMAGE", "registry.example/serve:4")
    clean.write_text(json.dumps({"namespace": "team-c"}))
    assert main(["deploy", "digits", "--store", "s3://b/p", "--dry-run", "--json"]) == 0
    deployment = json.loads(capsys.readouterr().out)[0]
    assert deployment["spec"]["template"]["spec"]["containers"][0]["image"] == "registry.example/serve:4"
    assert deployment["metadata"]["namespace"] == "team-c"


def test_server_config_environment_beats_traitlets_and_config_file_fills_in(monkeypatch, clean, tmp_path):
    from jupyter_pipeline.server.config import JupyterPipeline

    clean.write_text(json.dumps({"kfp_host": "https://from-config/pipeline", "image": "config/image:1"}))
    config = JupyterPipeline(store=str(tmp_path / "traits"), default_image="trait/image:1")
    public = config.public(str(tmp_path))
    assert public["store"] == str(tmp_path / "traits")
    assert public["kfp_host"] == "https://from-config/pipeline"
    assert public["default_image"] == "trait/image:1"
    monkeypatch.setenv("JUPYTER_PIPELINE_STORE", str(tmp_path / "env"))
    monkeypatch.setenv("JUPYTER_PIPELINE_KFP_HOST", "https://from-env/pipeline")
    public = config.public(str(tmp_path))
    assert public["store"] == str(tmp_path / "env") and public["kfp_host"] == "https://from-env/pipeline"


def test_the_servers_kubeflow_target_needs_nothing_configured_inside_a_pod(in_pod, tmp_path):
    from jupyter_pipeline.server.config import JupyterPipeline

    public = JupyterPipeline().public(str(tmp_path))
    assert public["kfp_host"] == cluster.KFP_IN_CLUSTER_HOST and public["namespace"] == "team-a"
    assert public["default_image"] == "registry.example/team/notebook:7"
