"""The KFP compiler: golden files of compiled fixture notebooks and structural checks of the IR.

Regenerate the golden files after an intended change of the compiled output with
``JP_REGENERATE_GOLDEN=1 pytest tests/test_kfp_compile.py`` and review the diff.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import nbformat
import pytest
import yaml

from jupyter_pipeline.exceptions import TargetError
from jupyter_pipeline.kfp.compiler import CompileOptions, compile_pipeline
from jupyter_pipeline.parse import from_notebook, load
from jupyter_pipeline.stagebook import stage_notebook

ROOT = Path(__file__).resolve().parent.parent
GOLDEN = Path(__file__).resolve().parent / "golden"
REGENERATE = os.environ.get("JP_REGENERATE_GOLDEN") == "1"
#: Pinned so that a release (which changes the default image tag) does not change the goldens.
IMAGE = "ghcr.io/jupyter-pipeline/jupyter-pipeline:golden"


@pytest.fixture(autouse=True)
def _at_root(monkeypatch):
    # Pipelines record the notebook path as given; a relative path from the root pins it.
    monkeypatch.chdir(ROOT)


def compiled(name: str, **overrides) -> tuple[dict, dict, str]:
    pipeline = load(f"tests/fixtures/{name}.ipynb")
    text = compile_pipeline(pipeline, options=CompileOptions.for_pipeline(pipeline, **overrides))
    spec, platform = list(yaml.safe_load_all(text))
    return spec, platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"], text


@pytest.mark.parametrize("name,overrides", [
    ("kfp_values", {"image": IMAGE}),
    ("kfp_placement", {}),  # image, store, endpoint, secret and selectors from notebook settings
    ("kfp_failing", {"image": IMAGE}),
])
def test_golden(name, overrides):
    _, _, text = compiled(name, **overrides)
    golden = GOLDEN / f"{name}.yaml"
    if REGENERATE or not golden.exists():
        golden.write_text(text)
        if not REGENERATE:
            pytest.fail(f"{golden} did not exist and was written; review and commit it")
    assert text == golden.read_text(), (
        f"compiled {name} differs from {golden}; if intended, regenerate with JP_REGENERATE_GOLDEN=1")


def test_compiling_twice_gives_the_same_bytes():
    assert compiled("kfp_values", image=IMAGE)[2] == compiled("kfp_values", image=IMAGE)[2]


def test_tasks_and_dependencies_follow_the_edges():
    spec, _, _ = compiled("kfp_values")
    tasks = spec["root"]["dag"]["tasks"]
    pipeline = load("tests/fixtures/kfp_values.ipynb")
    assert set(tasks) == set(pipeline.stage_names)
    for stage in pipeline.stages:
        assert sorted(tasks[stage.name].get("dependentTasks", [])) == sorted(stage.depends_on)
    assert sorted(tasks["report"]["dependentTasks"]) == ["scale", "shift"]
    # `after:` edges without data count too
    spec, _, _ = compiled("kfp_placement")
    assert "prepare" in spec["root"]["dag"]["tasks"]["report"]["dependentTasks"]


def test_typed_parameters_and_each_stage_gets_only_what_it_uses():
    spec, _, _ = compiled("kfp_values")
    params = spec["root"]["inputDefinitions"]["parameters"]
    types = {name: p["parameterType"] for name, p in params.items()}
    assert types == {
        "n": "NUMBER_INTEGER", "scale": "NUMBER_DOUBLE", "label": "STRING", "shift": "LIST", "config": "STRUCT",
        "verbose": "BOOLEAN", "extra": "STRING",
        "jp_store": "STRING", "jp_run_id": "STRING", "jp_s3_endpoint": "STRING", "jp_workdir": "STRING",
    }
    assert params["n"]["defaultValue"] == 3 and params["shift"]["defaultValue"] == [1, 2]
    assert params["config"]["defaultValue"] == {"offset": 10} and params["verbose"]["defaultValue"] is False
    assert params["extra"]["defaultValue"] == "json:null"  # a None default travels as JSON text
    assert params["jp_store"]["defaultValue"] == "s3://jupyter-pipeline"
    assert params["jp_s3_endpoint"]["defaultValue"] == "http://minio-service.kubeflow:9000"
    used = {}
    for name, task in spec["root"]["dag"]["tasks"].items():
        inputs = task["inputs"]["parameters"]
        used[name] = sorted(k for k in inputs if not k.startswith("jp_"))
        for k in used[name]:
            assert inputs[k] == {"componentInputParameter": k}
        component = spec["components"][task["componentRef"]["name"]]["inputDefinitions"]["parameters"]
        assert sorted(k for k in component if not k.startswith("jp_")) == used[name]
    assert used == {"make": ["n"], "scale": ["scale"], "shift": ["shift"],
                    "report": ["config", "extra", "label", "verbose"]}
    comp = spec["components"]["comp-report"]["inputDefinitions"]["parameters"]
    assert comp["config"]["parameterType"] == "STRUCT" and comp["verbose"]["parameterType"] == "BOOLEAN"


def test_each_task_embeds_its_stage_notebook_and_calls_the_stage_runner():
    spec, _, _ = compiled("kfp_values")
    pipeline = load("tests/fixtures/kfp_values.ipynb")
    for stage in pipeline.stages:
        inputs = spec["root"]["dag"]["tasks"][stage.name]["inputs"]["parameters"]
        embedded = nbformat.reads(inputs["jp_notebook"]["runtimeValue"]["constant"], as_version=4)
        expected = stage_notebook(pipeline, stage)
        assert [c.source for c in embedded.cells] == [c.source for c in expected.cells]
        assert embedded.metadata.kernelspec.name == "python3"
        assert inputs["jp_job_id"]["runtimeValue"]["constant"] == "{{$.pipeline_job_uuid}}"
        container = spec["deploymentSpec"]["executors"][f"exec-{stage.name}"]["container"]
        source = container["command"][-1]
        assert "_jp_entry.run_component(stage=" + repr(stage.name) in source
        assert "import jupyter_pipeline.kfp.entry" in source
        assert "pip install" not in " ".join(container["command"])  # install_kfp_package=False
        assert container["args"][-1] == stage.name.replace("-", "_")


def test_gpu_placement_only_on_gpu_stages():
    spec, platform, _ = compiled("kfp_placement")
    executors = spec["deploymentSpec"]["executors"]
    train = executors["exec-train"]["container"]["resources"]["accelerator"]
    assert train["resourceType"] == "nvidia.com/gpu" and train["resourceCount"] == "2"
    amd = executors["exec-train-amd"]["container"]["resources"]["accelerator"]
    assert amd["resourceType"] == "amd.com/gpu" and amd["resourceCount"] == "1"
    for name in ("exec-prepare", "exec-report"):
        assert "accelerator" not in (executors[name]["container"].get("resources") or {})
        assert "tolerations" not in platform[name]
        assert platform[name]["nodeSelector"]["labels"] == {"pool": "ml"}  # notebook-wide selector only
    assert platform["exec-train"]["tolerations"] == [{"effect": "NoSchedule", "key": "nvidia.com/gpu",
                                                      "operator": "Exists"}]
    assert platform["exec-train"]["nodeSelector"]["labels"] == {
        "pool": "ml", "gpu": "yes", "nvidia.com/gpu.product": "nvidia-tesla-t4"}
    assert platform["exec-train-amd"]["tolerations"][0]["key"] == "amd.com/gpu"
    assert "gpu" not in platform["exec-train-amd"]["nodeSelector"]["labels"]  # NVIDIA labels: NVIDIA only


def test_default_gpu_node_selector_suits_nvidia_nodes():
    spec, platform, _ = compiled("kfp_values")  # no settings
    assert all("nodeSelector" not in e and "tolerations" not in e for e in platform.values())
    _, platform, _ = compiled_digits()
    assert platform["exec-train"]["nodeSelector"]["labels"] == {"nvidia.com/gpu.present": "true"}
    assert platform["exec-train"]["tolerations"] == [{"effect": "NoSchedule", "key": "nvidia.com/gpu",
                                                      "operator": "Exists"}]
    assert not any("tolerations" in platform[f"exec-{s}"] for s in ("load", "preprocess", "evaluate", "register"))


def compiled_digits():
    pipeline = load("examples/digits/digits.ipynb")
    text = compile_pipeline(pipeline)
    spec, platform = list(yaml.safe_load_all(text))
    return spec, platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"], text


def test_resources_image_retries_timeout_cache():
    spec, platform, _ = compiled("kfp_placement")
    executors = spec["deploymentSpec"]["executors"]
    prep = executors["exec-prepare"]["container"]["resources"]
    assert (prep["resourceCpuRequest"], prep["resourceCpuLimit"]) == ("2", "2")
    assert (prep["resourceMemoryRequest"], prep["resourceMemoryLimit"]) == ("4Gi", "4Gi")
    assert executors["exec-train"]["container"]["resources"]["resourceMemoryLimit"] == "16Gi"
    assert executors["exec-prepare"]["container"]["image"] == "example.org/team/notebook-image:2.1"
    assert executors["exec-train-amd"]["container"]["image"] == "example.org/custom:1.0"
    tasks = spec["root"]["dag"]["tasks"]
    assert tasks["train"]["retryPolicy"]["maxRetryCount"] == 3
    assert "retryPolicy" not in tasks["prepare"]
    assert platform["exec-train"]["activeDeadlineSeconds"] == str(3600 + 120)
    assert "timeout=3600" in executors["exec-train"]["container"]["command"][-1]
    assert tasks["report"]["cachingOptions"] == {}  # cache:off
    assert tasks["prepare"]["cachingOptions"] == {"enableCache": True}


def test_store_credentials_come_from_a_secret_never_inline(monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIA-SENTINEL-ID")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "sentinel-secret-value")
    monkeypatch.setenv("JUPYTER_PIPELINE_S3_ENDPOINT", "http://sentinel-endpoint:9000")
    for name in ("kfp_values", "kfp_placement"):
        spec, platform, text = compiled(name)
        assert "SENTINEL" not in text.upper()
        for executor in spec["deploymentSpec"]["executors"].values():
            assert "env" not in executor["container"]  # nothing inline: only the secret reference
        expected = "team-minio" if name == "kfp_placement" else "mlpipeline-minio-artifact"
        for executor in platform.values():
            (secret,) = executor["secretAsEnv"]
            assert secret["secretName"] == expected
            assert secret["keyToEnv"] == [{"envVar": "AWS_ACCESS_KEY_ID", "secretKey": "accesskey"},
                                          {"envVar": "AWS_SECRET_ACCESS_KEY", "secretKey": "secretkey"}]


def test_the_sdk_reads_the_yaml_back():
    from kfp import components

    _, _, text = compiled("kfp_values")
    component = components.load_component_from_text(text)
    assert component.name == "kfp-values"
    assert set(component.pipeline_spec.root.dag.tasks) == {"make", "scale", "shift", "report"}


def test_reserved_parameter_names_are_refused(tmp_path):
    nb = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_code_cell("jp_store = 'x'", metadata={"tags": ["parameters"]}),
        nbformat.v4.new_code_cell("y = jp_store", metadata={"tags": ["stage:one"]}),
    ])
    pipeline = from_notebook(nb, str(tmp_path / "reserved.ipynb"))
    with pytest.raises(TargetError, match="reserved"):
        compile_pipeline(pipeline)


def test_map_stages_are_refused_clearly(tmp_path):
    nb = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_code_cell("items = [1, 2]", metadata={"tags": ["stage:make"]}),
        nbformat.v4.new_code_cell("y = item * 2", metadata={"tags": ["stage:each", "map:items"]}),
    ])
    pipeline = from_notebook(nb, str(tmp_path / "mapped.ipynb"))
    assert pipeline.ok, pipeline.problems
    with pytest.raises(TargetError, match="each use map:"):
        compile_pipeline(pipeline)


def test_stage_names_that_are_python_keywords(tmp_path):
    nb = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_code_cell("a = 1", metadata={"tags": ["stage:import"]}),
        nbformat.v4.new_code_cell("b = a", metadata={"tags": ["stage:class-2"]}),
    ])
    spec = next(yaml.safe_load_all(compile_pipeline(from_notebook(nb, str(tmp_path / "kw.ipynb")))))
    tasks = spec["root"]["dag"]["tasks"]
    assert {t["taskInfo"]["name"] for t in tasks.values()} == {"import", "class-2"}


def test_cli_compile(tmp_path, capsys):
    from jupyter_pipeline.cli import main

    out = tmp_path / "digits.yaml"
    assert main(["compile", "examples/digits/digits.ipynb", "-o", str(out), "--json", "--image", IMAGE]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["stages"] == 5 and summary["image"] == IMAGE and out.stat().st_size == summary["bytes"]
    spec = next(yaml.safe_load_all(out.read_text()))
    assert {e["container"]["image"] for e in spec["deploymentSpec"]["executors"].values()} == {IMAGE}
    assert main(["compile", "examples/digits/digits.ipynb", "-o", "-", "--secret", ""]) == 0
    text = capsys.readouterr().out
    assert text.startswith("# PIPELINE DEFINITION") and "secretAsEnv" not in text
    assert main(["compile", "tests/fixtures/does_not_exist.ipynb", "-o", str(out)]) == 1
