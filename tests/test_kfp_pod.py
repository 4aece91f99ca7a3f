"""Pod options on Kubeflow: tags, ``%%stage`` flags and notebook settings, read into stage options
(bad values are validation errors naming the cell), then compiled with kfp-kubernetes: a golden
file of a notebook using every option, and structural checks of the Kubernetes platform spec and
the container env."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest
import yaml

from jupyter_pipeline.kfp.compiler import compile_for_cluster
from jupyter_pipeline.notebook.parse import from_notebook, load
from jupyter_pipeline.settings import Settings
from jupyter_pipeline.notebook.tags import read_cell
from test_kfp_compile import check_golden, stage_dag

ROOT = Path(__file__).resolve().parent.parent
EVERY_OPTION = "tests/fixtures/working_files/every_option.ipynb"


@pytest.fixture(autouse=True)
def _at_root(monkeypatch):
    monkeypatch.chdir(ROOT)  # the notebook path recorded in the spec is the relative one


def test_pod_tags_read_into_stage_options():
    spec, _ = read_cell(["stage:s", "volume:raw-data:/raw", "env:MODE=a=b:c", "env:EMPTY=",
                         "secret:db:password:DB_PASSWORD", "secret:tls:/etc/tls", "label:example.com/team:ml",
                         "annotation:sidecar.istio.io/inject:false", "node:kubernetes.io/arch=amd64",
                         "toleration:dedicated=ml:NoSchedule", "toleration:spot:NoExecute", "shm:2Gi"], "x = 1")
    assert spec.problems == []
    o = spec.options
    assert o["volumes"] == ({"name": "raw-data", "mount_path": "/raw"},)
    assert o["env"] == {"MODE": "a=b:c", "EMPTY": ""}
    assert o["secrets"] == ({"name": "db", "key": "password", "env": "DB_PASSWORD"}, {"name": "tls", "path": "/etc/tls"})
    assert o["labels"] == {"example.com/team": "ml"} and o["annotations"] == {"sidecar.istio.io/inject": "false"}
    assert o["node_selector"] == {"kubernetes.io/arch": "amd64"}
    assert o["tolerations"] == ({"key": "dedicated", "operator": "Equal", "value": "ml", "effect": "NoSchedule"},
                                {"key": "spot", "operator": "Exists", "effect": "NoExecute"})
    assert o["shm"] == "2Gi"


def test_stage_magic_flags_are_the_same_options():
    line = ("%%stage s --volume raw:/raw --env A=1 --env B=2 --secret db:pw:PW --label tier:gold "
            "--annotation example.com/x:y --node pool=ml --toleration gpu:NoSchedule --shm 1Gi\nx = 1")
    magic, _ = read_cell([], line)
    tagged, _ = read_cell(["stage:s", "volume:raw:/raw", "env:A=1", "env:B=2", "secret:db:pw:PW", "label:tier:gold",
                           "annotation:example.com/x:y", "node:pool=ml", "toleration:gpu:NoSchedule", "shm:1Gi"], "x = 1")
    assert magic.problems == [] and magic.options == tagged.options


@pytest.mark.parametrize("tag, says", [
    ("volume:Bad_Claim:/data", "volume:CLAIM:/mount/path"),
    ("volume:claim:relative", "volume:CLAIM:/mount/path"),
    ("env:1BAD=x", "env:NAME=VALUE"),
    ("env:NOVALUE", "env:NAME=VALUE"),
    ("secret:db", "secret:NAME:KEY:ENV"),
    ("label:team", "label:KEY:VALUE"),
    ("label:team:not valid!", "label value"),
    ("annotation:/bad:x", "annotation:KEY:VALUE"),
    ("node:pool", "node:KEY=VALUE"),
    ("toleration:dedicated=ml:Sometimes", "toleration:KEY[=VALUE]:EFFECT"),
    ("shm:lots", "Kubernetes quantity"),
])
def test_bad_pod_tags_are_validation_errors_naming_the_cell(tag, says, tmp_path):
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("x = 1", metadata={"tags": ["stage:a"]}),
                                         nbformat.v4.new_code_cell("y = x", metadata={"tags": ["stage:b", tag]})])
    [problem] = from_notebook(nb, str(tmp_path / "nb.ipynb")).errors
    assert problem.code == "bad-tag" and problem.cell == 1 and problem.stage == "b"
    assert says in problem.message and f"'{tag}'" in problem.message
    assert "[cell 2, stage 'b']" in problem.describe()  # counted from 1, as JupyterLab shows cells


@pytest.mark.parametrize("settings, says", [
    ({"tolerations": [{"key": "a", "effect": "Sometimes"}]}, "tolerations"),
    ({"tolerations": [{"key": "a", "operator": "Exists", "value": "v"}]}, "tolerations"),
    ({"volumes": [{"name": "v", "mount_path": "/v", "new": True, "size": "1Gi", "keep": "yes"}]}, "keep"),
    ({"volumes": [{"name": "v", "mount_path": "/v", "new": True}]}, "quantity"),
    ({"env": {"A": 1}}, "env"),
    ({"image_pull_secrets": "regcred"}, "image_pull_secrets"),
])
def test_bad_pod_settings_are_validation_errors(settings, says, tmp_path):
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("x = 1", metadata={"tags": ["stage:a"]})])
    nb.metadata["jupyter_pipeline"] = settings
    [problem] = from_notebook(nb, str(tmp_path / "nb.ipynb")).errors
    assert problem.code == "bad-setting" and says in problem.message


def compiled() -> tuple[dict, dict, str]:
    pipeline = load(EVERY_OPTION)
    text = compile_for_cluster(pipeline, Settings(notebook=pipeline.settings, environ={}), upload=False).yaml
    spec, platform = list(yaml.safe_load_all(text))
    return spec, platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"], text


def test_golden_every_option():
    check_golden("kfp_every_option", compiled()[2])


def test_platform_spec_of_every_option():
    spec, platform, _ = compiled()
    prepare, train, report = platform["exec-prepare"], platform["exec-train"], platform["exec-report"]
    # volumes: the notebook's existing claim and per-run claims on every stage, the stage's own claim
    mounts = {m["mountPath"]: m for m in prepare["pvcMount"]}
    assert mounts["/datasets"]["constant"] == "datasets" and mounts["/raw"]["constant"] == "raw-data"
    assert mounts["/scratch"]["taskOutputParameter"] == {"outputParameterKey": "name", "producerTask": "createpvc"}
    assert mounts["/kept"]["taskOutputParameter"]["producerTask"] == "createpvc-2"
    assert {m["mountPath"] for m in train["pvcMount"]} == {"/datasets", "/scratch", "/kept"}
    # secrets as env and as files; the store's own secret stays
    envs = {s["secretName"]: s["keyToEnv"] for s in prepare["secretAsEnv"]}
    assert envs["db-creds"] == [{"envVar": "DB_PASSWORD", "secretKey": "password"}] and "team-minio" in envs
    assert prepare["secretAsVolume"][0]["secretName"] == "tls-certs"
    assert prepare["secretAsVolume"][0]["mountPath"] == "/etc/tls"
    # pod metadata: the notebook's for every stage, the stage's own on top (keys with '/')
    assert prepare["podMetadata"]["labels"] == {"team": "ml", "app.kubernetes.io/part-of": "demo"}
    assert prepare["podMetadata"]["annotations"] == {"example.com/cost-center": "42", "example.com/owner": "team-a"}
    assert report["podMetadata"]["annotations"]["sidecar.istio.io/inject"] == "false"
    # node selection: the notebook's selector and tolerations, the stage's own, GPU placement
    assert prepare["nodeSelector"]["labels"] == {"pool": "ml", "kubernetes.io/arch": "amd64"}
    assert prepare["tolerations"] == [{"effect": "NoSchedule", "key": "dedicated", "operator": "Equal", "value": "ml"},
                                      {"effect": "NoExecute", "key": "spot", "operator": "Exists"}]
    assert {"effect": "NoSchedule", "key": "nvidia.com/gpu", "operator": "Equal", "value": "present"} in train["tolerations"]
    assert train["nodeSelector"]["labels"]["nvidia.com/gpu.product"] == "nvidia-tesla-t4"
    # /dev/shm, pull secrets (bookkeeping tasks too)
    assert prepare["emptyDirMounts"] == [{"medium": "Memory", "mountPath": "/dev/shm", "sizeLimit": "2Gi",
                                          "volumeName": "dshm"}]
    assert report["emptyDirMounts"][0]["sizeLimit"] == "1Gi" and "emptyDirMounts" not in train
    for name in ("exec-prepare", "exec-train", "exec-report", "exec-failed-stages"):
        assert platform[name]["imagePullSecret"][0]["secretName"] == "regcred"
        assert platform[name]["nodeSelector"]["labels"]["pool"] == "ml"


def test_container_env_and_per_run_claims():
    spec, _, text = compiled()
    executors = spec["deploymentSpec"]["executors"]
    assert executors["exec-prepare"]["container"]["env"] == [{"name": "MODE", "value": "prepare"},
                                                             {"name": "TEAM", "value": "ml"}]
    assert executors["exec-report"]["container"]["env"] == [{"name": "LEVEL", "value": "gold"},
                                                            {"name": "TEAM", "value": "ml"}]
    assert executors["exec-train"]["container"]["image"] == "registry.example/train:2"
    assert executors["exec-prepare"]["container"]["image"] == "registry.example/team/jp:1"
    tasks = stage_dag(spec)
    scratch = tasks["createpvc"]["inputs"]["parameters"]
    assert scratch["size"]["runtimeValue"]["constant"] == "5Gi"
    assert scratch["access_modes"]["runtimeValue"]["constant"] == ["ReadWriteMany"]
    assert scratch["storage_class_name"]["runtimeValue"]["constant"] == "fast"
    # made before the stages, deleted after them unless kept; never from the cache, nor are the stages using them
    assert {"createpvc", "createpvc-2"} <= set(tasks["prepare"]["dependentTasks"])
    [delete] = [t for t in tasks.values() if t["componentRef"]["name"].startswith("comp-deletepvc")]
    assert delete["inputs"]["parameters"]["pvc_name"]["taskOutputParameter"]["producerTask"] == "createpvc"
    assert set(delete["dependentTasks"]) >= {"prepare", "train", "report"}
    for name in ("createpvc", "createpvc-2", "prepare", "report"):
        assert tasks[name]["cachingOptions"] == {}, name
    assert "DB_PASSWORD" in text and "password" in text  # names of secret keys, never values


def test_kfp_local_leaves_the_per_run_claims_out(tmp_path):
    from jupyter_pipeline.kfp.local import local_options
    from jupyter_pipeline.kfp.compiler import compile_pipeline
    from jupyter_pipeline.store.base import open_store

    pipeline = load(EVERY_OPTION)
    spec = next(yaml.safe_load_all(compile_pipeline(pipeline, options=local_options(pipeline, open_store(str(tmp_path))))))
    assert not any(name.startswith("createpvc") or name.startswith("deletepvc") for name in stage_dag(spec))
