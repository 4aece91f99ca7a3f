"""Elyra pipeline files (``*.pipeline``): read, validated, run locally and on kfp-local, compiled.

The fixtures under ``tests/fixtures/elyra/`` are shaped like the files Elyra's editor writes
(pipeline-flow v3, app_data version 8, objects for list properties; ``env_vars`` as ``"NAME=VALUE"``
strings on one node, as older Elyra wrote them). ``files.pipeline`` is a notebook, a Python script
(with a helper module as its dependency) and a notebook, passing CSV and JSON files on as ``outputs``.
Regenerate its golden KFP YAML after an intended change with
``JP_REGENERATE_GOLDEN=1 pytest tests/test_elyra.py -k golden`` and review the diff.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
import yaml

import jupyter_pipeline as jp
from jupyter_pipeline.store.base import open_store
from jupyter_pipeline.targets import get_target
from test_kfp_compile import IMAGE, check_golden, stage_dag

ELYRA = Path(__file__).resolve().parent / "fixtures" / "elyra"
ROOT = Path(__file__).resolve().parent.parent
EXE = str(Path(sys.executable).parent / "jupyter-pipeline")
#: What report.ipynb writes for ROWS=5, SCALE=10 (0+10+20+30+40) and the default THRESHOLD of 50.
REPORT = "rows=5 raw=5 total=100.0 passed=True greeting=hello run={run}"


def cli(*args, cwd=None):
    return subprocess.run([EXE, *map(str, args)], capture_output=True, text=True, cwd=cwd, timeout=600)


@pytest.fixture
def files_pipeline(tmp_path):
    """A copy of the fixture folder (a run must leave it as it was: checked by ``untouched``)."""
    folder = tmp_path / "project"
    shutil.copytree(ELYRA, folder)
    return folder / "files.pipeline"


def listing(folder: Path) -> set[str]:
    return {p.relative_to(folder).as_posix() for p in folder.rglob("*")}


# -- reading ---------------------------------------------------------------------------------------
def test_nodes_links_files_and_properties_become_stages():
    pipeline = jp.load(ELYRA / "files.pipeline")
    assert pipeline.ok and [p.code for p in pipeline.problems] == ["elyra-runtime-image"]
    assert "docker.io/library/python:3.11" in pipeline.problems[0].message  # must hold jupyter-pipeline on Kubeflow
    assert pipeline.name == "elyra-files"
    assert [s.name for s in pipeline.stages] == ["load-data", "clean", "report"]
    assert pipeline.edges == [("load-data", "clean"), ("clean", "report")]
    load, clean, report = pipeline.stages
    # Elyra hands every node the outputs of all nodes upstream of it, not only its parents'.
    assert report.files_in == (("data/raw.csv", "load-data"), ("data/clean.csv", "clean"), ("summary.json", "clean"))
    assert clean.files_in == (("data/raw.csv", "load-data"),) and load.files_in == ()
    assert clean.files_out == ("data/clean.csv", "summary.json")
    # a node's dependencies are relative to its file's folder; the script and its helper travel
    assert clean.workdir.base == "scripts" and clean.workdir.ship == ("clean.py", "helpers.py")
    assert pipeline.settings["files"] == ["load_data.ipynb", "report.ipynb", "scripts/clean.py", "scripts/helpers.py"]
    # env_vars (objects and "NAME=VALUE" strings) over the pipeline_defaults' GREETING
    assert load.options.env == {"ROWS": "5", "GREETING": "hello"}
    assert clean.options.env == {"SCALE": "10", "GREETING": "hello"}
    assert load.options.cpu == "1" and load.options.memory == "2G"  # Elyra's memory is in GB
    assert {s.options.image for s in pipeline.stages} == {"docker.io/library/python:3.11"}
    assert report.options.labels == {"team": "data"}
    # pipeline_parameters: typed pipeline parameters, passed as environment variables to the nodes using them
    [threshold] = pipeline.parameters
    assert (threshold.name, threshold.default, threshold.type) == ("THRESHOLD", 50.0, "float")
    assert report.parameters == ("THRESHOLD",) and report.workdir.env_parameters == ("THRESHOLD",)
    # a notebook node is its notebook's cells; a script node one cell that runs it
    assert [pipeline.cells[i].source_index for i in load.cells] == [0, 1]
    assert {pipeline.cells[i].notebook for i in load.cells} == {"load_data.ipynb"}
    assert clean.cells == () and clean.workdir.run == "python" and clean.notebook == "scripts/clean.py"


def test_every_node_property_maps_and_what_has_no_equivalent_is_a_warning_naming_it():
    pipeline = jp.load(ELYRA / "options.pipeline")
    assert pipeline.ok
    train, second = pipeline.stages
    assert (train.name, second.name) == ("train", "train-2")  # two nodes labelled "Train"
    o = train.options
    assert (o.image, o.cpu, o.memory, o.gpu, o.gpu_type, o.shm, o.cache) == (
        "quay.io/example/train:1", "2", "8G", 1, "amd.com/gpu", "2G", False)
    # the node's MODE wins over the default's, LEVEL comes from the defaults, EMPTY is dropped (as
    # Elyra drops it) and TOKEN, also a secret, is the secret's on a pod (and the value's locally)
    assert o.env == {"MODE": "fast", "LEVEL": "3"}
    assert train.workdir.env == {"MODE": "fast", "TOKEN": "plain", "LEVEL": "3"}
    assert train.workdir.keep_env == ("TOKEN",)
    assert o.secrets == ({"name": "api", "key": "token", "env": "TOKEN"},)
    assert o.volumes == ({"name": "datasets", "mount_path": "/data", "sub_path": "v1"},)
    assert o.labels == {"team": "vision"} and o.annotations == {"sidecar.istio.io/inject": "false"}
    assert o.tolerations == ({"key": "dedicated", "operator": "Equal", "value": "ml", "effect": "NoSchedule"},
                             {"key": "spot", "operator": "Exists", "effect": "NoExecute"})
    # the second node: the default image, a volume in the "/path=claim" form of older files
    assert second.options.image == "quay.io/example/base:1"
    assert second.options.volumes == ({"name": "model-store", "mount_path": "/models"},)
    warnings = [(p.stage, p.message) for p in pipeline.problems if p.severity == "warning"]
    for field in ("cpu_limit", "memory_limit", "read-only", "retry_count"):
        assert any(stage == "train" and field in m and "node 'Train'" in m for stage, m in warnings), (field, warnings)
    assert any("cos_object_prefix" in m for _, m in warnings)
    assert len(warnings) == 5, warnings


def test_a_supernodes_nodes_stand_in_its_place():
    # shaped like Elyra's own pipeline_with_supernode.json: the inner node's links go through the
    # supernode's ports (`<inner id>_inPort`, `<inner id>_outPort`) and two binding nodes
    pipeline = jp.load(ELYRA / "supernode.pipeline")
    assert pipeline.ok, pipeline.problems
    assert [s.name for s in pipeline.stages] == ["first", "inner", "last"]
    assert pipeline.edges == [("first", "inner"), ("inner", "last")]
    assert pipeline.stage("last").files_in == (("noop.txt", "first"),)  # through the supernode


@pytest.mark.parametrize("name,code,words", [
    ("unknown_node", "elyra-node-type", ["node 'Filter rows'", "url-catalog:f1a2b3c4", "execute-notebook-node"]),
    ("missing_notebook", "elyra-missing-file", ["node 'Gone'", "notebooks/gone.ipynb", "does not exist"]),
    ("cycle", "cycle", ["node 'first'", "node 'second'", "node 'third'", "cycle"]),
])
def test_bad_files_are_one_paragraph_errors_naming_the_node(name, code, words):
    pipeline = jp.load(ELYRA / f"{name}.pipeline")
    [error] = pipeline.errors
    assert error.code == code
    for word in words:
        assert word in error.message, (word, error.message)
    proc = cli("validate", ELYRA / f"{name}.pipeline")
    assert proc.returncode == 1 and "Traceback" not in proc.stdout + proc.stderr
    assert f"[{code}]" in proc.stdout and words[0] in proc.stdout
    proc = cli("run", ELYRA / f"{name}.pipeline", "--store", "/nonexistent/never-written")
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    said = " ".join(proc.stderr.split())
    assert said.startswith("error:") and "is not a valid pipeline" in said and words[0] in said, said


def test_a_file_that_is_not_an_elyra_pipeline_is_one_paragraph(tmp_path):
    bad = tmp_path / "broken.pipeline"
    bad.write_text('{"doc_type": "pipeline", "pipelines": [')
    proc = cli("graph", bad)
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    said = " ".join(proc.stderr.split())
    assert "Cannot read pipeline file" in said and "broken.pipeline" in said and "not JSON" in said
    (tmp_path / "other.pipeline").write_text('{"doc_type": "flow", "version": "3.0"}')
    assert "not an Elyra pipeline" in " ".join(cli("validate", tmp_path / "other.pipeline").stderr.split())


def test_graph_shows_the_nodes_and_links():
    proc = cli("graph", ELYRA / "files.pipeline")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[1:] == ["load-data  — load_data.ipynb",  # each node's file, and the files each link carries
                         "└─▶ clean  (data/raw.csv)  — scripts/clean.py",
                         "    └─▶ report  [params: THRESHOLD]  (data/clean.csv, summary.json)  — report.ipynb"]


# -- compiled for Kubeflow -------------------------------------------------------------------------
def compiled_files(monkeypatch):
    from jupyter_pipeline.kfp.compiler import CompileOptions, compile_pipeline
    from jupyter_pipeline.kfp.files import bundle

    monkeypatch.chdir(ROOT)  # the pipeline's path, as given, is in the stage notebooks
    pipeline = jp.load("tests/fixtures/elyra/files.pipeline")
    packed = bundle(pipeline)
    text = compile_pipeline(pipeline, options=CompileOptions.for_pipeline(pipeline, image=IMAGE,
                                                                          files_key=packed.key))
    return pipeline, packed, text


def test_golden_kfp_yaml(monkeypatch):
    pipeline, packed, text = compiled_files(monkeypatch)
    check_golden("elyra_files", text)
    # the node files and dependencies travel in the working files' bundle, nothing else
    assert packed.paths == ("load_data.ipynb", "report.ipynb", "scripts/clean.py", "scripts/helpers.py")
    spec, platform = list(yaml.safe_load_all(text))
    tasks = stage_dag(spec)
    assert set(tasks) == {"load-data", "clean", "report"}
    # report reads files of both stages above it: it gets both locations (a cached one still feeds it)
    inputs = tasks["report"]["inputs"]["parameters"]
    assert inputs["jp_from_load_data"]["taskOutputParameter"]["producerTask"] == "load-data"
    assert inputs["jp_from_clean"]["taskOutputParameter"]["producerTask"] == "clean"
    assert inputs["THRESHOLD"] == {"componentInputParameter": "pipelinechannel--THRESHOLD"}
    executors = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    report_pod = next(e for name, e in executors.items() if "report" in name)
    assert report_pod["podMetadata"]["labels"] == {"team": "data"}
    containers = spec["deploymentSpec"]["executors"]
    load_container = next(e["container"] for name, e in containers.items() if "load-data" in name)
    assert {"name": "ROWS", "value": "5"} in load_container["env"]
    assert load_container["image"] == "docker.io/library/python:3.11"
    assert load_container["resources"]["memoryRequest"] == 2.0


def test_every_node_property_reaches_the_compiled_pods():
    from jupyter_pipeline.kfp.compiler import CompileOptions, compile_pipeline

    pipeline = jp.load(ELYRA / "options.pipeline")
    spec, platform = list(yaml.safe_load_all(compile_pipeline(pipeline, options=CompileOptions.for_pipeline(pipeline))))
    pods = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    train = pods["exec-train"]
    assert train["podMetadata"] == {"annotations": {"sidecar.istio.io/inject": "false"}, "labels": {"team": "vision"}}
    assert train["pvcMount"][0]["mountPath"] == "/data" and train["pvcMount"][0]["subPath"] == "v1"
    assert {"keyToEnv": [{"envVar": "TOKEN", "secretKey": "token"}], "optional": False, "secretName": "api",
            "secretNameParameter": {"runtimeValue": {"constant": "api"}}} in train["secretAsEnv"]
    assert train["emptyDirMounts"][0]["mountPath"] == "/dev/shm" and train["emptyDirMounts"][0]["sizeLimit"] == "2G"
    assert {"effect": "NoSchedule", "key": "dedicated", "operator": "Equal", "value": "ml"} in train["tolerations"]
    assert {"effect": "NoExecute", "key": "spot", "operator": "Exists"} in pods["exec-train-2"]["tolerations"]
    containers = {name: e["container"] for name, e in spec["deploymentSpec"]["executors"].items()}
    resources = containers["exec-train"]["resources"]
    assert resources["accelerator"]["resourceType"] == "amd.com/gpu"
    assert (resources["resourceCpuRequest"], resources["resourceMemoryLimit"]) == ("2", "8G")
    # TOKEN is the secret's on the pod: no plain env var beside it
    assert containers["exec-train"]["env"] == [{"name": "LEVEL", "value": "3"}, {"name": "MODE", "value": "fast"}]
    assert containers["exec-train-2"]["image"] == "quay.io/example/base:1"
    tasks = stage_dag(spec)
    assert tasks["train"]["cachingOptions"] == {} and tasks["train-2"]["cachingOptions"] == {"enableCache": True}


# -- runs ------------------------------------------------------------------------------------------
def check_files_run(record, store, folder: Path, before: set[str]) -> None:
    assert record.status.value == "succeeded", record.to_json()
    run = record.run_id
    assert record.stages["clean"].outputs == ["data/clean.csv", "summary.json"]
    assert record.stages["load-data"].outputs == ["data/raw.csv"]
    clean = store.get_bytes(f"runs/{run}/stages/clean/files/data/clean.csv").decode()
    assert clean == "x\n0.0\n10.0\n20.0\n30.0\n40.0\n"
    report = store.get_bytes(f"runs/{run}/stages/report/files/report.txt").decode()
    assert report == REPORT.format(run=run)
    # the executed notebooks are the nodes' own cells, with their outputs
    executed = nbformat.reads(store.get_bytes(f"runs/{run}/stages/report/output.ipynb").decode(), 4)
    users = [c for c in executed.cells if c.metadata.get("jupyter_pipeline", {}).get("kind") == "user"]
    assert [c.metadata["jupyter_pipeline"]["source_cell"] for c in users] == [0, 1]
    assert "passed=True" in "".join(o.get("text", "") for o in users[1].outputs)
    assert listing(folder) == before  # every node worked in a folder of its own


@pytest.mark.slow
def test_runs_locally_passing_files_between_nodes(files_pipeline, tmp_path):
    folder = files_pipeline.parent
    before = listing(folder)
    store = open_store(str(tmp_path / "store"))
    record = jp.run(jp.load(files_pipeline), store=store)
    check_files_run(record, store, folder, before)
    # the script's own output is the run cell's output
    executed = nbformat.reads(store.get_bytes(f"runs/{record.run_id}/stages/clean/output.ipynb").decode(), 4)
    assert "cleaned 5 rows" in json.dumps(executed.cells[-2].outputs) or "cleaned 5 rows" in json.dumps(
        [c.get("outputs") for c in executed.cells])


@pytest.mark.slow
def test_runs_on_kfp_local_passing_files_through_the_store(files_pipeline, tmp_path):
    folder = files_pipeline.parent
    before = listing(folder)
    store = open_store(str(tmp_path / "store"))
    record = get_target("kfp-local").run(jp.load(files_pipeline), {}, store, {}, lambda *a: None)
    check_files_run(record, store, folder, before)


@pytest.mark.slow
def test_parameters_reach_the_nodes_and_a_failing_script_names_its_node(files_pipeline, tmp_path):
    store = str(tmp_path / "store")
    proc = cli("run", files_pipeline, "-p", "THRESHOLD", "500", "--store", store, "--json")
    record = json.loads(proc.stdout)
    assert proc.returncode == 0, proc.stderr
    report = open_store(store).get_bytes(f"runs/{record['run_id']}/stages/report/files/report.txt").decode()
    assert "passed=False" in report
    # a script that fails: the stage fails with the end of its error output
    script = files_pipeline.parent / "scripts" / "clean.py"
    script.write_text(script.read_text().replace("factor = float", "factor = 1 / 0 + float"))
    proc = cli("run", files_pipeline, "--store", store, "--json")
    record = json.loads(proc.stdout)
    assert proc.returncode == 1
    clean = record["stages"]["clean"]
    assert clean["status"] == "failed" and "ZeroDivisionError" in clean["error"] and "clean.py" in clean["error"]
    assert record["stages"]["report"]["status"] == "skipped"


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("Rscript") is not None, reason="R is installed here: the node would run")
def test_an_r_node_without_rscript_fails_saying_so(tmp_path):
    record = jp.run(jp.load(ELYRA / "r_script.pipeline"), store=open_store(str(tmp_path / "store")))
    assert record.status.value == "failed"
    error = record.stages["hello"].error
    assert "Rscript" in error and "hello.r" in error and "install R" in error


@pytest.mark.slow
def test_resume_and_incremental_runs_find_the_files_of_kept_and_reused_nodes(files_pipeline, tmp_path):
    from jupyter_pipeline.local.runner import LocalRunner, resume_run

    store = open_store(str(tmp_path / "store"))
    report = files_pipeline.parent / "report.ipynb"
    good = report.read_text()
    nb = nbformat.reads(good, 4)
    nb.cells[1].source = "raise ValueError('report broke')\n" + nb.cells[1].source
    nbformat.write(nb, report)
    first = LocalRunner(store).run(jp.load(files_pipeline))
    assert first.stages["report"].status.value == "failed" and first.stages["clean"].status.value == "succeeded"
    # the error names the cell as the node's notebook numbers it
    assert "report broke" in first.stages["report"].error and "cell 2 of report.ipynb" in first.stages["report"].error
    report.write_text(good)
    resumed = resume_run(store, first.run_id)
    assert resumed.status.value == "succeeded", resumed.to_json()
    assert resumed.stages["clean"].attempts == 1  # kept: report fetched the files clean passed on in the first try
    text = store.get_bytes(f"runs/{first.run_id}/stages/report/files/report.txt").decode()
    assert text == REPORT.format(run=first.run_id)
    # an edited dependency re-runs its node and what depends on it; the rest is reused
    helpers = files_pipeline.parent / "scripts" / "helpers.py"
    helpers.write_text(helpers.read_text().replace("value * factor", "value * factor * 2"))
    again = LocalRunner(store, incremental=True).run(jp.load(files_pipeline))
    assert again.status.value == "succeeded", again.to_json()
    assert again.stages["load-data"].reused_from == first.run_id
    assert again.stages["clean"].why == "its code changed" and again.stages["report"].reused_from is None
    text = store.get_bytes(f"runs/{again.run_id}/stages/report/files/report.txt").decode()
    assert "total=200.0" in text and "raw=5" in text  # raw.csv came from the reused node's run


def test_files_pass_through_the_store_and_a_missing_output_fails(tmp_path, monkeypatch):
    from jupyter_pipeline.stage import context
    from jupyter_pipeline.stage.workfolder import FileStageError, fetch, save_files

    store_url = str(tmp_path / "store")
    producer = tmp_path / "producer"
    (producer / "data" / "parts").mkdir(parents=True)
    (producer / "data" / "a.csv").write_text("a\n")
    (producer / "data" / "parts" / "b.csv").write_text("b\n")
    monkeypatch.chdir(producer)
    monkeypatch.setattr(context, "_active", None)  # put back after the test: no stage runs in pytest
    context.activate(store_url, "run-1", "make")
    # a glob, and a folder (its files, recursively), as Elyra's outputs may be
    assert save_files(["data/*.csv", "data/parts"]) == ["data/a.csv", "data/parts/b.csv"]
    with pytest.raises(FileStageError, match="declares the output model.pkl, which is not in its working folder"):
        save_files(["model.pkl"])
    index = open_store(store_url).get_json("runs/run-1/stages/make/outputs.json")
    assert index["data/a.csv"] == {"file": "data/a.csv", "prefix": "files", "saver": "file", "type": "file", "size": 2}
    consumer = tmp_path / "consumer"
    context.activate(store_url, "run-1", "use")
    assert fetch(context.current(), "data/parts", "make", str(consumer)) == ["data/parts/b.csv"]
    assert (consumer / "data" / "parts" / "b.csv").read_text() == "b\n"
    with pytest.raises(FileStageError, match="passed on no file matching summary.json"):
        fetch(context.current(), "summary.json", "make", str(consumer))


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("Rscript") is None, reason="no R here (`Rscript` not on PATH)")
def test_an_r_node_runs_with_rscript(tmp_path):
    record = jp.run(jp.load(ELYRA / "r_script.pipeline"), store=open_store(str(tmp_path / "store")))
    assert record.status.value == "succeeded", record.to_json()
    executed = open_store(str(tmp_path / "store")).get_bytes(
        f"runs/{record.run_id}/stages/hello/output.ipynb").decode()
    assert "hello from R" in executed
