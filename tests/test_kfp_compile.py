"""The KFP compiler: golden files of compiled fixture notebooks and structural checks of the IR.

Regenerate the golden files after an intended change of the compiled output with
``JP_REGENERATE_GOLDEN=1 pytest tests/test_kfp_compile.py`` and review the diff.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import nbformat
import pytest
import yaml

from jupyter_pipeline.exceptions import TargetError
from jupyter_pipeline.kfp.compiler import CompileOptions, compile_pipeline
from jupyter_pipeline.notebook.parse import from_notebook, load
from jupyter_pipeline.stage.notebook import stage_notebook

ROOT = Path(__file__).resolve().parent.parent
GOLDEN = Path(__file__).resolve().parent / "golden"
REGENERATE = os.environ.get("JP_REGENERATE_GOLDEN") == "1"
#: Pinned so that a release (which changes the default image tag) does not change the goldens.
IMAGE = "ghcr.io/jupyter-pipeline/jupyter-pipeline:golden"


@pytest.fixture(autouse=True)
def _at_root(monkeypatch):
    # Pipelines record the notebook path as given; a relative path from the root pins it.
    monkeypatch.chdir(ROOT)


def stage_dag(spec: dict) -> dict:
    """The tasks of the stages: inside the exit handler whose exit task shows the failed notebooks."""
    root = spec["root"]["dag"]["tasks"]
    assert root["failed-stages"]["triggerPolicy"] == {"strategy": "ALL_UPSTREAM_TASKS_COMPLETED"}
    return spec["components"][root["exit-handler-1"]["componentRef"]["name"]]["dag"]["tasks"]


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
    check_golden(name, text)


def test_compiling_twice_gives_the_same_bytes():
    assert compiled("kfp_values", image=IMAGE)[2] == compiled("kfp_values", image=IMAGE)[2]


def test_compiling_in_fresh_processes_gives_the_same_bytes(tmp_path):
    import subprocess
    import sys

    outputs = []
    for seed in ("1", "2"):
        out = tmp_path / f"p{seed}.yaml"
        subprocess.run([sys.executable, "-c", "from jupyter_pipeline.cli import main; import sys; sys.exit(main())",
                        "compile", "tests/fixtures/fanout.ipynb", "-o", str(out), "--image", IMAGE],
                       check=True, env={**os.environ, "PYTHONHASHSEED": seed}, capture_output=True)
        outputs.append(out.read_bytes())
    assert outputs[0] == outputs[1]


def test_no_stage_input_changes_from_run_to_run_so_the_cache_can_hit():
    """Every input of a stage task is a constant without a run-time placeholder, a pipeline
    parameter that is not per run, or an upstream stage's location."""
    for name in ("kfp_values", "kfp_placement", "fanout"):
        spec, _, _ = compiled(name)
        params = spec["root"]["inputDefinitions"]["parameters"]
        assert not any(p in params for p in ("jp_run_id", "jp_job_id"))
        dags = [stage_dag(spec)] + [c["dag"]["tasks"] for n, c in spec["components"].items()
                                    if n.startswith("comp-for-loop")]
        for tasks in dags:
            for task_name, task in tasks.items():
                if task["componentRef"]["name"].startswith("comp-for-loop") or task.get("cachingOptions") == {}:
                    continue  # loops, and tasks never cached (bookkeeping, map items, cache:off)
                for input_name, value in task["inputs"]["parameters"].items():
                    constant = json.dumps(value.get("runtimeValue", {}).get("constant", ""))
                    assert "{{$" not in constant, (name, task_name, input_name)
                    if "taskOutputParameter" in value:
                        assert input_name.startswith("jp_from_") and value["taskOutputParameter"][
                            "outputParameterKey"] == "Output", (name, task_name, input_name)
    # upstream values reach a stage through its inputs: each producer's location
    tasks = stage_dag(compiled("kfp_values")[0])
    report = tasks["report"]["inputs"]["parameters"]
    assert report["jp_from_scale"] == {"taskOutputParameter": {"outputParameterKey": "Output", "producerTask": "scale"}}
    assert report["jp_from_shift"]["taskOutputParameter"]["producerTask"] == "shift"
    assert "jp_from_make" not in report  # report loads nothing of make's
    assert "jp_run_id" not in tasks["make"]["inputs"]["parameters"]  # the default, empty: the run's own folder


def test_tasks_and_dependencies_follow_the_edges():
    spec, _, _ = compiled("kfp_values")
    tasks = stage_dag(spec)
    pipeline = load("tests/fixtures/kfp_values.ipynb")
    assert set(tasks) == set(pipeline.stage_names)
    for stage in pipeline.stages:
        assert sorted(tasks[stage.name].get("dependentTasks", [])) == sorted(stage.depends_on)
    assert sorted(tasks["report"]["dependentTasks"]) == ["scale", "shift"]
    # `after:` edges without data count too
    spec, _, _ = compiled("kfp_placement")
    assert "prepare" in stage_dag(spec)["report"]["dependentTasks"]


def test_typed_parameters_and_each_stage_gets_only_what_it_uses():
    spec, _, _ = compiled("kfp_values")
    params = spec["root"]["inputDefinitions"]["parameters"]
    types = {name: p["parameterType"] for name, p in params.items()}
    assert types == {
        "n": "NUMBER_INTEGER", "scale": "NUMBER_DOUBLE", "label": "STRING", "shift": "LIST", "config": "STRUCT",
        "verbose": "BOOLEAN", "extra": "STRING",
        "jp_store": "STRING", "jp_s3_endpoint": "STRING", "jp_workdir": "STRING",
    }
    assert params["n"]["defaultValue"] == 3 and params["shift"]["defaultValue"] == [1, 2]
    assert params["config"]["defaultValue"] == {"offset": 10} and params["verbose"]["defaultValue"] is False
    assert params["extra"]["defaultValue"] == "json:null"  # a None default travels as JSON text
    assert params["jp_store"]["defaultValue"] == "s3://mlpipeline/jupyter-pipeline"  # the pipeline root's bucket
    assert params["jp_s3_endpoint"]["defaultValue"] == "http://minio-service.kubeflow:9000"
    used = {}
    for name, task in stage_dag(spec).items():
        inputs = task["inputs"]["parameters"]
        used[name] = sorted(k for k in inputs if not k.startswith("jp_"))
        for k in used[name]:
            assert inputs[k] == {"componentInputParameter": f"pipelinechannel--{k}"}
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
        inputs = stage_dag(spec)[stage.name]["inputs"]["parameters"]
        embedded = nbformat.reads(inputs["jp_notebook"]["runtimeValue"]["constant"], as_version=4)
        expected = stage_notebook(pipeline, stage)
        assert [c.source for c in embedded.cells] == [c.source for c in expected.cells]
        assert embedded.metadata.kernelspec.name == "python3"
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
    tasks = stage_dag(spec)
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
    assert set(component.pipeline_spec.components["comp-exit-handler-1"].dag.tasks) == {
        "make", "scale", "shift", "report"}


def test_reserved_parameter_names_are_refused(tmp_path):
    nb = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_code_cell("jp_store = 'x'", metadata={"tags": ["parameters"]}),
        nbformat.v4.new_code_cell("y = jp_store", metadata={"tags": ["stage:one"]}),
    ])
    pipeline = from_notebook(nb, str(tmp_path / "reserved.ipynb"))
    with pytest.raises(TargetError, match="reserved"):
        compile_pipeline(pipeline)


#: The SDK version kfp writes into every spec; a kfp patch release changes it, our output does not.
SDK_VERSION = re.compile(r"^sdkVersion: kfp-\S+$", re.MULTILINE)


def normalise(text: str) -> str:
    """Replace what the installed kfp release writes (its version) with a fixed placeholder."""
    return SDK_VERSION.sub("sdkVersion: kfp-VERSION", text)


def check_golden(name: str, text: str) -> None:
    golden = GOLDEN / f"{name}.yaml"
    text = normalise(text)
    if REGENERATE or not golden.exists():
        golden.write_text(text)
        if not REGENERATE:
            pytest.fail(f"{golden} did not exist and was written; review and commit it")
    assert text == golden.read_text(), (
        f"compiled {name} differs from {golden}; if intended, regenerate with JP_REGENERATE_GOLDEN=1")


def test_map_stages_compile_to_plan_loop_gather():
    spec, platform, text = compiled("fanout", image=IMAGE)
    check_golden("kfp_fanout", text)
    tasks = stage_dag(spec)
    # features (map:rows:8:as=part, parallelism:2): plan after its producer, a loop over the plan's
    # output limited to 2 at once, then a gather after the loop; downstream waits for the gather
    assert tasks["plan-features"]["dependentTasks"] == ["make"]
    loop = tasks["for-loop-2"]  # (loop 1 is the exit handler's)
    assert loop["iteratorPolicy"] == {"parallelismLimit": 2}
    assert loop["parameterIterator"]["items"] == {"inputParameter": "pipelinechannel--plan-features-Output"}
    assert sorted(tasks["gather-features"]["dependentTasks"]) == ["for-loop-2", "plan-features"]
    assert tasks["gather-features"]["inputs"]["parameters"]["jp_items"] == {
        "taskOutputParameter": {"outputParameterKey": "Output", "producerTask": "plan-features"}}
    assert sorted(tasks["check"]["dependentTasks"]) == ["gather-features", "gather-greet", "make"]
    inner = spec["components"][loop["componentRef"]["name"]]["dag"]["tasks"]
    assert list(inner) == ["features"]
    assert inner["features"]["cachingOptions"] == {}  # items always run: the gather reads this run's folder
    # make's location enters the loop in its items, as kfp.local resolves other channels wrongly there
    assert inner["features"]["inputs"]["parameters"]["jp_from_make"] == {
        "componentInputParameter": "pipelinechannel--plan-features-Output-loop-item",
        "parameterExpressionSelector": 'parseJson(string_value)["jp_from_make"]'}
    assert tasks["plan-features"]["inputs"]["parameters"]["jp_from_make"] == {
        "taskOutputParameter": {"outputParameterKey": "Output", "producerTask": "make"}}
    item = inner["features"]["inputs"]["parameters"]["jp_item"]
    assert item["parameterExpressionSelector"] == 'parseJson(string_value)["item"]'
    source = spec["deploymentSpec"]["executors"]["exec-features"]["container"]["command"][-1]
    assert "item=jp_item" in source and "jp_item: int" in source
    # greet maps over a parameter: its plan needs no producer, only the parameter's value
    assert "dependentTasks" not in tasks["plan-greet"]
    assert tasks["plan-greet"]["inputs"]["parameters"]["names"] == {"componentInputParameter": "pipelinechannel--names"}
    assert "iteratorPolicy" not in tasks["for-loop-3"]  # no parallelism: tag, no limit
    # bookkeeping tasks: the store secret, never a cache hit, no GPU
    assert tasks["plan-features"]["cachingOptions"] == {} and tasks["gather-greet"]["cachingOptions"] == {}
    for name in ("exec-plan-features", "exec-gather-features"):
        assert platform[name]["secretAsEnv"][0]["secretName"] == "mlpipeline-minio-artifact"
        assert "accelerator" not in (spec["deploymentSpec"]["executors"][name]["container"].get("resources") or {})


def test_sweep_compiles_to_one_loop_over_the_variants():
    from jupyter_pipeline.kfp.sweep import compile_sweep, shared_stages

    pipeline = load("tests/fixtures/sweep_metric.ipynb")
    values = [{"a": a, "b": 1} for a in (1, 3, 5)]
    shared = shared_stages(pipeline, values)
    assert shared == ["prep"]  # score uses the swept parameter a
    text = compile_sweep(pipeline, ["a"], shared, CompileOptions.for_pipeline(pipeline, image=IMAGE), max_parallel=2)
    check_golden("kfp_sweep", text)
    spec = next(yaml.safe_load_all(text))
    tasks = spec["root"]["dag"]["tasks"]
    assert set(tasks) == {"prep", "sweep-variants", "for-loop-1"}
    assert spec["root"]["inputDefinitions"]["parameters"]["jp_variants"]["parameterType"] == "LIST"
    # the variants, each with prep's location (a loop reads outside values only from its items)
    assert tasks["sweep-variants"]["inputs"]["parameters"] == {
        "jp_variants": {"componentInputParameter": "jp_variants"},
        "jp_from_prep": {"taskOutputParameter": {"outputParameterKey": "Output", "producerTask": "prep"}}}
    loop = tasks["for-loop-1"]
    assert loop["iteratorPolicy"] == {"parallelismLimit": 2} and loop["dependentTasks"] == ["sweep-variants"]
    assert loop["parameterIterator"]["items"] == {"inputParameter": "pipelinechannel--sweep-variants-Output"}
    inner = spec["components"]["comp-for-loop-1"]["dag"]["tasks"]
    assert set(inner) == {"link-variant", "score"} and inner["score"]["dependentTasks"] == ["link-variant"]
    params = inner["score"]["inputs"]["parameters"]
    assert params["a"]["parameterExpressionSelector"] == 'parseJson(string_value)["a"]'
    assert params["jp_run_id"]["parameterExpressionSelector"] == 'parseJson(string_value)["run_id"]'
    assert params["b"] == {"componentInputParameter": "pipelinechannel--b"}  # not swept: the run's value
    link = inner["link-variant"]["inputs"]["parameters"]
    assert link["jp_from_prep"] == {"componentInputParameter": "pipelinechannel--sweep-variants-Output-loop-item",
                                    "parameterExpressionSelector": 'parseJson(string_value)["jp_from_prep"]'}


def test_a_map_stage_inside_a_sweep_reads_the_variant_from_its_own_item(tmp_path):
    from jupyter_pipeline.kfp.sweep import compile_sweep, shared_stages

    nb = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_code_cell("k = 2", metadata={"tags": ["parameters"]}),
        nbformat.v4.new_code_cell("values = [1, 2, 3]", metadata={"tags": ["stage:make"]}),
        nbformat.v4.new_code_cell("y = item * k", metadata={"tags": ["stage:each", "map:values"]}),
    ])
    pipeline = from_notebook(nb, str(tmp_path / "nested.ipynb"))
    shared = shared_stages(pipeline, [{"k": 2}, {"k": 3}])
    assert shared == ["make"]
    spec = next(yaml.safe_load_all(compile_sweep(pipeline, ["k"], shared)))
    outer = spec["components"]["comp-for-loop-1"]["dag"]["tasks"]
    assert outer["plan-each"]["inputs"]["parameters"]["jp_variant"] == {
        "componentInputParameter": "pipelinechannel--sweep-variants-Output-loop-item"}
    inner = spec["components"]["comp-for-loop-2"]["dag"]["tasks"]["each"]["inputs"]["parameters"]
    # from the inner loop's item, not the outer one's (kfp.local cannot resolve outer items there)
    for name, field in (("k", "k"), ("jp_run_id", "run_id"), ("jp_item", "item")):
        assert inner[name]["componentInputParameter"] == "pipelinechannel--plan-each-Output-loop-item"
        assert inner[name]["parameterExpressionSelector"] == f'parseJson(string_value)["{field}"]'


def test_stage_names_that_are_python_keywords(tmp_path):
    nb = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_code_cell("a = 1", metadata={"tags": ["stage:import"]}),
        nbformat.v4.new_code_cell("b = a", metadata={"tags": ["stage:class-2"]}),
    ])
    spec = next(yaml.safe_load_all(compile_pipeline(from_notebook(nb, str(tmp_path / "kw.ipynb")))))
    tasks = stage_dag(spec)
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


def test_cli_compile_has_one_outcome_and_no_path_of_this_machine(tmp_path, capsys, monkeypatch):
    from jupyter_pipeline.cli import main
    from plugin_s3 import free_port

    (tmp_path / "data.csv").write_text("a,b\n1,2\n")
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("rows = open('data.csv').read()")])
    nb.cells[0].metadata["tags"] = ["stage:load"]
    nbformat.write(nb, tmp_path / "reads_file.ipynb")
    notebook, out = str(tmp_path / "reads_file.ipynb"), tmp_path / "reads_file.yaml"
    # No store reachable for the files' bundle: an error, and no YAML that would point at a missing bundle.
    monkeypatch.setenv("JUPYTER_PIPELINE_S3_ENDPOINT", f"http://127.0.0.1:{free_port()}")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "key")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "secret")
    assert main(["compile", notebook, "-o", str(out), "--json"]) == 1
    said = json.loads(capsys.readouterr().out)["error"]
    assert "cannot be written from here" in said and "--no-upload-files" in said and said.endswith("Nothing was written.")
    assert not out.exists()
    # Into a folder that does not exist: said so, nothing written, no "internal error".
    assert main(["compile", notebook, "-o", str(tmp_path / "missing" / "p.yaml"), "--no-upload-files", "--json"]) == 1
    said = json.loads(capsys.readouterr().out)["error"]
    assert said.startswith(f"Cannot write the pipeline to {tmp_path / 'missing' / 'p.yaml'}: the folder ")
    assert not (tmp_path / "missing").exists()
    # Compiled from an absolute path, the YAML names the notebook's file only.
    assert main(["compile", notebook, "-o", str(out), "--no-upload-files"]) == 0
    capsys.readouterr()
    text = out.read_text()
    assert str(tmp_path) not in text and "reads_file.ipynb" in text
    assert (tmp_path / "reads_file.files.tar.gz").exists()


def test_cli_compile_repeats_the_notebooks_warnings(tmp_path, capsys):
    """A warning `validate` gives (here: a per-run ReadWriteOnce volume under workers:2) is shown by
    `compile` too, which users may run without validating first."""
    from jupyter_pipeline.cli import main

    notebook = "tests/fixtures/workers_single_node_volume.ipynb"
    out = tmp_path / "p.yaml"
    assert main(["compile", notebook, "-o", str(out), "--image", IMAGE]) == 0
    text = capsys.readouterr().out
    assert f"{notebook}: warning: " in text and "[workers-single-node-volume]" in text
    assert main(["compile", notebook, "-o", str(out), "--image", IMAGE, "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert [w["code"] for w in summary["notebook_warnings"]] == ["workers-single-node-volume"]
    assert main(["compile", "examples/digits/digits.ipynb", "-o", str(out), "--image", IMAGE, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["notebook_warnings"] == []


def _notebook(tmp_path, cells, **settings):
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(src, metadata={"tags": tags}) for tags, src in cells])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.metadata["jupyter_pipeline"] = settings
    path = tmp_path / "nb.ipynb"
    nbformat.write(nb, path)
    return load(path)


def _images(spec) -> dict:
    return {name[len("exec-"):]: e["container"]["image"] for name, e in spec["deploymentSpec"]["executors"].items()}


def test_image_resolution_order(tmp_path, monkeypatch, in_pod):
    """stage image: tag → notebook setting → settings (flag, environment, config) → the notebook
    server pod's own image (Kubernetes API) → the built-in default, with a warning."""
    from jupyter_pipeline.kfp.preflight import preflight
    from jupyter_pipeline.settings import DEFAULT_IMAGE, Settings

    monkeypatch.delenv("JUPYTER_PIPELINE_IMAGE", raising=False)
    monkeypatch.setenv("JUPYTER_PIPELINE_CONFIG", str(tmp_path / "none.json"))
    cells = [(["stage:a", "image:tagged/a:1"], "x = 1"), (["stage:b"], "y = x")]
    pipeline = _notebook(tmp_path, cells)
    spec = next(yaml.safe_load_all(compile_pipeline(pipeline, options=CompileOptions.for_pipeline(pipeline))))
    assert _images(spec)["a"] == "tagged/a:1" and _images(spec)["b"] == "registry.example/team/notebook:7"
    monkeypatch.setenv("JUPYTER_PIPELINE_IMAGE", "env/image:2")
    spec = next(yaml.safe_load_all(compile_pipeline(pipeline, options=CompileOptions.for_pipeline(pipeline))))
    assert _images(spec)["b"] == "env/image:2"
    pipeline = _notebook(tmp_path, cells, image="notebook/image:3")
    options = CompileOptions.for_pipeline(pipeline)
    assert (options.image, options.image_source) == ("notebook/image:3", "notebook")
    # outside a pod, with nothing set: the built-in default, and a warning that it must be built and pushed
    monkeypatch.delenv("JUPYTER_PIPELINE_IMAGE")
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST")
    pipeline = _notebook(tmp_path, cells)
    notes = preflight(pipeline, Settings(notebook=pipeline.settings))
    assert notes["image"] == DEFAULT_IMAGE and notes["image_source"] == "default"
    [warning] = notes["problems"]
    assert warning["code"] == "default-image" and "Dockerfile" in warning["message"]


def test_packages_and_pip_index_reach_every_component(tmp_path, monkeypatch):
    import re as re_mod
    from importlib.metadata import version

    monkeypatch.setenv("JUPYTER_PIPELINE_PIP_INDEX_URLS", "https://pypi.internal/simple https://mirror.internal/simple")
    pipeline = _notebook(tmp_path, [(["setup"], "import numpy as np"), (["stage:a"], "import yaml\nx = 1"),
                                    (["stage:b"], "import json\ny = x")], packages=["pandas>=2.1"])
    options = CompileOptions.for_pipeline(pipeline, capture_packages=True)
    spec = next(yaml.safe_load_all(compile_pipeline(pipeline, options=options)))
    executors = spec["deploymentSpec"]["executors"]
    commands = {name: " ".join(e["container"]["command"]) for name, e in executors.items()}
    for stage in ("a", "b"):
        command = commands[f"exec-{stage}"]
        assert "pip install" in command and "'pandas>=2.1'" in command
        assert "--index-url https://pypi.internal/simple --extra-index-url https://mirror.internal/simple" in command
        assert f"'numpy=={version('numpy')}'" in command  # imported by the setup code: every stage
        assert "jupyter-pipeline" not in re_mod.sub(r"jupyter_pipeline", "", command).split("pip install")[1][:300]
    assert f"'PyYAML=={version('PyYAML')}'" in commands["exec-a"]  # only the stage that imports it
    assert "PyYAML" not in commands["exec-b"]  # json is the standard library: not pinned
    assert "pip install" not in commands["exec-failed-stages"]  # bookkeeping tasks install nothing


def test_server_compile_and_pipeline_answers_carry_the_kubeflow_notes(tmp_path, monkeypatch):
    """What the publish dialog shows: the image and where it came from, the files that travel, and
    the warning that the built-in image must be built and pushed."""
    from jupyter_pipeline.server.config import JupyterPipeline
    from jupyter_pipeline.server.handlers import _pipeline_json, compile_notebook

    for name in ("JUPYTER_PIPELINE_IMAGE", "KUBERNETES_SERVICE_HOST"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("JUPYTER_PIPELINE_CONFIG", str(tmp_path / "none.json"))
    notebook = ROOT / "tests/fixtures/working_files/reads_files.ipynb"
    config = JupyterPipeline(store=str(tmp_path / "store"))
    notes = _pipeline_json(notebook, "reads_files.ipynb", config)["kubeflow"]
    assert notes["files"] == ["config.yaml", "data/train.csv", "lookup/bonus.json"]
    assert notes["image_source"] == "default" and notes["problems"][0]["code"] == "default-image"
    monkeypatch.setenv("JUPYTER_PIPELINE_KFP_STORE", str(tmp_path / "pods-store"))
    yaml_text, notes = compile_notebook(notebook, JupyterPipeline(default_image="registry.example/jp:3"))
    assert (notes["image"], notes["image_source"], notes["problems"]) == ("registry.example/jp:3", "server", [])
    [bundle] = (tmp_path / "pods-store" / "files").glob("*.tar.gz")  # uploaded where the pods read it
    assert bundle.name in yaml_text
