"""``workers:N`` stages on Kubeflow: the JobSet / TrainJob manifests (checked against the published
models of both resources and Kubernetes' own Pod schema), and the launcher contract-tested against a
loopback server playing the Kubernetes API, whose "pods" run the replica command for real."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time

import kubernetes_validate
import nbformat
import pytest
from kubeflow_trainer_api.models import JobsetV1alpha2JobSet, TrainerV1alpha1TrainJob

from jupyter_pipeline.local.gang import free_ports
from jupyter_pipeline.stage.notebook import launch_metadata
from jupyter_pipeline.kfp import files
from jupyter_pipeline.kfp import gang as kgang
from jupyter_pipeline.kfp import gangjob
from jupyter_pipeline.kfp.compiler import CompileOptions, compile_pipeline
from jupyter_pipeline.kfp.tasks import notebook_json
from jupyter_pipeline.notebook.parse import from_notebook, load
from jupyter_pipeline.store.records import stage_key
from jupyter_pipeline.stage.notebook import stage_notebook
from jupyter_pipeline.store.base import open_store

K8S_VERSION = "1.30.0"
JOBSETS = "/apis/jobset.x-k8s.io/v1alpha2/namespaces/team-a/jobsets"


def meta_of(pipeline, stage="train", **settings):
    meta = launch_metadata(pipeline, pipeline.stage(stage))
    meta["settings"].update(settings)
    return meta


def planned(meta, **kw):
    kind, launch = gangjob.plan(meta, run_id="run-1", stage="train", parameters={"scale": 3},
                              store_url="s3://bucket/prefix", namespace="team-a", image="registry.example/jp:1", **kw)
    return kind, launch, gangjob.manifests(kind, launch)


def validate_pod(template: dict) -> dict:
    """A pod template as a Pod, strictly against Kubernetes' schema."""
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", **template["metadata"]}, "spec": template["spec"]}
    kubernetes_validate.validate(pod, K8S_VERSION, strict=True)
    return pod


def test_jobset_is_a_valid_gang_of_indexed_pods_with_the_stage_placement(fixture_nb, monkeypatch):
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "s3cr3t-value")
    monkeypatch.setenv("JUPYTER_PIPELINE_S3_ENDPOINT", "http://minio.kubeflow:9000")
    kind, launch, [jobset] = planned(meta_of(load(fixture_nb("gang_kfp"))))
    # The published JobSet model reads it back whole: no field it does not know, none missing.
    assert JobsetV1alpha2JobSet.from_dict(jobset).to_dict() == jobset
    assert "s3cr3t-value" not in json.dumps(jobset)
    assert jobset["metadata"]["labels"][gangjob.KUEUE_QUEUE_LABEL] == "team-a"
    assert jobset["metadata"]["name"] == launch.name == "jp-train-" + launch.name.split("-")[2] + "-0"
    assert jobset["spec"]["network"] == {"enableDNSHostnames": True}
    [rjob] = jobset["spec"]["replicatedJobs"]
    job = rjob["template"]["spec"]
    assert (job["parallelism"], job["completions"], job["completionMode"], job["backoffLimit"]) == (2, 2, "Indexed", 0)
    pod = validate_pod(job["template"])
    spec = pod["spec"]
    [container] = spec["containers"]
    assert container["image"] == "registry.example/jp:1"
    assert container["command"] == ["python", "-m", "jupyter_pipeline.kfp.gang"]
    # Each replica gets the stage's resources and GPU; the notebook's, the stage's and the GPU's node selection.
    assert container["resources"] == {"limits": {"cpu": "2", "memory": "4Gi", "nvidia.com/gpu": "1"},
                                      "requests": {"cpu": "2", "memory": "4Gi"}}
    assert spec["nodeSelector"] == {"pool": "train", "zone": "a", "nvidia.com/gpu.present": "true",
                                    "nvidia.com/gpu.product": "nvidia-tesla-t4"}
    assert spec["tolerations"] == [{"key": "dedicated", "operator": "Equal", "value": "ml", "effect": "NoSchedule"},
                                   {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
    assert spec["imagePullSecrets"] == [{"name": "regcred"}] and spec["restartPolicy"] == "Never"
    # The notebook's and the stage's existing claims are mounted in every replica (a claim made per
    # run is the pipeline's tasks'), and /dev/shm is memory of the stage's shm: size.
    assert spec["volumes"] == [{"name": "volume-0", "persistentVolumeClaim": {"claimName": "datasets"}},
                               {"name": "volume-1", "persistentVolumeClaim": {"claimName": "checkpoints"}},
                               {"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": "2Gi"}}]
    assert container["volumeMounts"] == [{"name": "volume-0", "mountPath": "/data"},
                                         {"name": "volume-1", "mountPath": "/ckpt"},
                                         {"name": "dshm", "mountPath": "/dev/shm"}]
    assert "scratch" not in json.dumps(spec)
    env = {e["name"]: e for e in container["env"]}
    assert env["AWS_SECRET_ACCESS_KEY"]["valueFrom"] == {"secretKeyRef": {"name": "mlpipeline-minio-artifact",
                                                                          "key": "secretkey"}}
    assert env["WANDB_API_KEY"]["valueFrom"] == {"secretKeyRef": {"name": "wandb", "key": "key"}}
    assert env["JUPYTER_PIPELINE_S3_ENDPOINT"]["value"] == "http://minio.kubeflow:9000"
    assert env["MODE"] == {"name": "MODE", "value": "replica"}  # the stage's env: tag
    job_env = json.loads(env[gangjob.JOB_ENV]["value"])
    assert job_env == {"store": "s3://bucket/prefix", "run_id": "run-1", "stage": "train", "parameters": {"scale": 3},
                       "world_size": 2, "coordinator": f"{launch.name}-workers-0-0.{launch.name}", "timeout": 0,
                       "pods_per_job": 2, "files": ""}
    assert env[gangjob.JOB_INDEX_ENV]["valueFrom"] == {
        "fieldRef": {"fieldPath": "metadata.labels['jobset.sigs.k8s.io/job-index']"}}
    assert pod["metadata"]["labels"]["team"] == "ml"
    assert pod["metadata"]["labels"]["jupyter-pipeline/stage"] == "train"


def test_trainjob_runs_the_same_replicas_on_a_trainer_runtime(fixture_nb):
    meta = meta_of(load(fixture_nb("gang_kfp")), distributed={"kind": "trainjob", "runtime": "jax-distributed"})
    kind, launch, [trainjob] = planned(meta)
    assert TrainerV1alpha1TrainJob.from_dict(trainjob).to_dict() == trainjob
    assert trainjob["apiVersion"] == "trainer.kubeflow.org/v1alpha1"
    assert trainjob["spec"]["runtimeRef"] == {"name": "jax-distributed"}
    trainer = trainjob["spec"]["trainer"]
    assert trainer["numNodes"] == 2 and trainer["resourcesPerNode"]["limits"]["nvidia.com/gpu"] == "1"
    assert gangjob.KUEUE_QUEUE_LABEL not in trainjob["metadata"]["labels"]  # no scheduler asked for
    [patch] = trainjob["spec"]["runtimePatches"]
    [rjob] = patch["trainingRuntimeSpec"]["template"]["spec"]["replicatedJobs"]
    template = rjob["template"]["spec"]["template"]
    assert rjob["name"] == "node" and template["spec"]["nodeSelector"]["pool"] == "train"
    assert template["metadata"]["labels"]["team"] == "ml"
    assert kind.coordinator(launch.name) == f"{launch.name}-node-0-0.{launch.name}"
    env = {e["name"]: e for e in trainer["env"]}
    assert json.loads(env[gangjob.JOB_ENV]["value"])["pods_per_job"] == 1  # rank = the node's Job index
    assert gangjob.JOB_INDEX_ENV in env
    assert template["spec"]["tolerations"][0]["key"] == "dedicated"
    assert {"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": "2Gi"}} in template["spec"]["volumes"]
    [node] = template["spec"]["containers"]
    assert {"name": "dshm", "mountPath": "/dev/shm"} in node["volumeMounts"]
    assert {"name": "MODE", "value": "replica"} in trainer["env"]
    # The pod the runtime makes from it is a valid pod.
    validate_pod({"metadata": template["metadata"], "spec": {
        **template["spec"], "containers": [{**node, "image": trainer["image"], "command": trainer["command"],
                                            "env": trainer["env"], "resources": trainer["resourcesPerNode"]}]}})


def test_volcano_gets_a_pod_group_of_all_replicas_first(fixture_nb):
    meta = meta_of(load(fixture_nb("gang_kfp")), distributed={"kind": "jobset", "scheduler": "volcano", "queue": "q"})
    _, launch, (group, jobset) = planned(meta)
    assert group == {"apiVersion": "scheduling.volcano.sh/v1beta1", "kind": "PodGroup",
                     "metadata": {"name": launch.name, "namespace": "team-a", "labels": group["metadata"]["labels"]},
                     "spec": {"minMember": 2, "queue": "q"}}
    template = jobset["spec"]["replicatedJobs"][0]["template"]["spec"]["template"]
    assert template["spec"]["schedulerName"] == "volcano"
    assert template["metadata"]["annotations"][gangjob.VOLCANO_GROUP_ANNOTATION] == launch.name
    assert JobsetV1alpha2JobSet.from_dict(jobset).to_dict() == jobset


@pytest.mark.parametrize("value, text", [
    ({"kind": "mpijob"}, "kind is jobset or trainjob"),
    ({"scheduler": "kueue"}, 'name it in "queue"'),
    ({"kind": "jobset", "queue": ""}, "are names"),
])
def test_bad_distributed_setting_is_a_validation_error(value, text):
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("%%stage a --workers 2\nimport jax")],
                                  metadata={"jupyter_pipeline": {"distributed": value}})
    [problem] = [p for p in from_notebook(nb).problems if p.code == "bad-setting"]
    assert "`metadata.jupyter_pipeline.distributed` must be" in problem.message and text in problem.message


def test_compiled_task_only_launches_the_replicas(fixture_nb, tmp_path):
    pipeline = load(fixture_nb("gang_kfp"))
    text = compile_pipeline(pipeline)
    import yaml

    spec, *platform = yaml.safe_load_all(text)
    executors = spec["deploymentSpec"]["executors"]
    train = next(v for k, v in executors.items() if "train" in k)
    assert "accelerator" not in json.dumps(train["container"].get("resources", {}))  # the launcher has no GPU
    platform = json.dumps(platform)
    assert "nvidia.com/gpu" not in platform and "mlpipeline-minio-artifact" in platform
    nb = stage_notebook(pipeline, "train")
    assert nb.metadata["jupyter_pipeline"]["gang"]["workers"] == 2


def test_replicas_install_the_packages_the_stage_component_installs(fixture_nb):
    pipeline = load(fixture_nb("gang_kfp"))
    options = CompileOptions.for_pipeline(pipeline, packages=("pandas>=2.1", "scikit-learn==1.5.0"),
                                          pip_index_urls=("https://pypi.internal/simple", "https://extra.internal/simple"))
    import yaml

    spec, _ = yaml.safe_load_all(compile_pipeline(pipeline, options=options))
    tasks = spec["components"][spec["root"]["dag"]["tasks"]["exit-handler-1"]["componentRef"]["name"]]["dag"]["tasks"]
    embedded = {name: json.loads(tasks[name]["inputs"]["parameters"]["jp_notebook"]["runtimeValue"]["constant"])
                for name in ("train", "report")}
    install = {"packages": ["pandas>=2.1", "scikit-learn==1.5.0"],
               "pip_index_urls": ["https://pypi.internal/simple", "https://extra.internal/simple"]}
    assert embedded["train"]["metadata"]["jupyter_pipeline"]["gang"]["install"] == install
    assert "gang" not in embedded["report"]["metadata"]["jupyter_pipeline"]  # its component installs them itself
    _, _, [jobset] = planned(embedded["train"]["metadata"]["jupyter_pipeline"]["gang"])
    [container] = jobset["spec"]["replicatedJobs"][0]["template"]["spec"]["template"]["spec"]["containers"]
    description = json.loads(next(e["value"] for e in container["env"] if e["name"] == gangjob.JOB_ENV))
    assert {k: description[k] for k in install} == install
    from jupyter_pipeline.kfp.packages import pip_install_command

    assert pip_install_command(install["packages"], install["pip_index_urls"])[1:] == [
        "-m", "pip", "install", "--quiet", "--no-warn-script-location", "--disable-pip-version-check",
        "--index-url", "https://pypi.internal/simple", "--extra-index-url", "https://extra.internal/simple",
        "--trusted-host", "pypi.internal", "--trusted-host", "extra.internal", "pandas>=2.1", "scikit-learn==1.5.0"]


def test_the_launcher_gets_the_claims_made_for_the_run_and_the_replicas_mount_them(fixture_nb):
    import yaml

    pipeline = load(fixture_nb("gang_kfp"))
    spec, platform = yaml.safe_load_all(compile_pipeline(pipeline))
    tasks = spec["components"][spec["root"]["dag"]["tasks"]["exit-handler-1"]["componentRef"]["name"]]["dag"]["tasks"]
    [create] = [name for name in tasks if name.startswith("createpvc")]
    # As a normal stage's mount is wired to the created claim's name, the launcher's input is.
    assert tasks["train"]["inputs"]["parameters"]["jp_claim_scratch"] == {
        "taskOutputParameter": {"producerTask": create, "outputParameterKey": "name"}}
    assert tasks["train"]["cachingOptions"] == {}  # a new claim each run: never from the cache
    assert "jp_claim_scratch" not in tasks["report"]["inputs"]["parameters"]  # its own pod mounts the claim
    executors = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    assert "pvcMount" not in json.dumps(executors["exec-train"])  # the launcher's pod mounts nothing
    component = spec["components"][tasks["train"]["componentRef"]["name"]]["inputDefinitions"]["parameters"]
    assert component["jp_claim_scratch"] == {
        "defaultValue": "", "isOptional": True, "parameterType": "STRING",
        "description": "the claim made for this run for volume 'scratch', mounted in every replica."}
    _, _, [jobset] = planned(meta_of(pipeline), claims={"scratch": "run-1-scratch"})
    pod = jobset["spec"]["replicatedJobs"][0]["template"]["spec"]["template"]["spec"]
    assert {"name": "volume-1", "persistentVolumeClaim": {"claimName": "run-1-scratch"}} in pod["volumes"]
    assert {"name": "volume-1", "mountPath": "/scratch"} in pod["containers"][0]["volumeMounts"]
    validate_pod({"metadata": {}, "spec": pod})


# -- the launcher against a loopback Kubernetes API -----------------------------------------------
class Cluster:
    """Plays the cluster behind the fake API: when a JobSet is created, runs its pods (the
    container's command, one process per index, on loopback) and then reports it finished."""

    def __init__(self, fake, pods):
        self.fake, self.pods, self.seen = fake, pods, 0
        self.thread = threading.Thread(target=self._loop, daemon=True)
        self.stop = threading.Event()
        self.thread.start()

    def _loop(self):
        while not self.stop.is_set():
            posts = [r for r in self.fake.requests if r["method"] == "POST"]
            for request in posts[self.seen:]:
                self.seen += 1
                jobset = request["body"]
                path = f"{JOBSETS}/{jobset['metadata']['name']}"
                ok = self.pods(jobset)
                condition = {"type": "Completed" if ok else "Failed", "status": "True"}
                self.fake.script[("GET", path)] = (200, {**jobset, "status": {"conditions": [condition]}})
            time.sleep(0.05)


def run_pods(jobset, store_url):
    """Each pod of the JobSet's indexed Job: its container's command and environment, rank 0 reached
    on loopback (the cluster's DNS name) at free ports."""
    job = jobset["spec"]["replicatedJobs"][0]["template"]["spec"]
    [container] = job["template"]["spec"]["containers"]
    env = {e["name"]: e["value"] for e in container["env"] if "value" in e}
    description = json.loads(env[gangjob.JOB_ENV])
    assert description["store"] == store_url
    description.update(coordinator="127.0.0.1", ports=free_ports(2))
    procs = []
    for index in range(job["parallelism"]):
        pod_env = {**os.environ, **env, gangjob.JOB_ENV: json.dumps(description), "JOB_COMPLETION_INDEX": str(index)}
        command = [sys.executable if container["command"][0] == "python" else container["command"][0],
                   *container["command"][1:]]
        procs.append(subprocess.Popen(command, env=pod_env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE))
    return all(p.wait(timeout=300) == 0 for p in procs)


def launch(fake, fixture_nb, store_dir, run_id="run-1", packages=(), pip_index_urls=(), claims=None):
    """Run the launcher of gang_kfp's stage ``train``, its working files' bundle in the store as a
    compiled pipeline's upload puts it, and its notebook as the compiled task embeds it (with the
    ``packages`` the stage installs, from ``pip_index_urls``)."""
    store = open_store(store_dir)
    pipeline = load(fixture_nb("gang_kfp"))
    packed = files.bundle(pipeline)
    files.upload(store, packed)
    embedded = notebook_json(pipeline, pipeline.stage("train"), list(packages), list(pip_index_urls))
    store.put_bytes(stage_key(run_id, "train", "input.ipynb"), embedded.encode())
    for attempt in (0, 1):  # created, not finished yet (until the cluster below has run its pods)
        fake.script.setdefault(("GET", f"{JOBSETS}/{gangjob.job_name(run_id, 'train', attempt)}"), (200, {"status": {}}))
    return store, kgang.run_gang(store, run_id, "train", {"scale": 3}, api=fake.api, poll=0.05, files=packed.key,
                                 claims=claims)


@pytest.mark.slow
def test_launcher_creates_the_jobset_waits_and_reports_rank_0(fake_kubernetes, fixture_nb, store_dir, monkeypatch,
                                                              tmp_path):
    (tmp_path / "index").mkdir()
    monkeypatch.setattr("jupyter_pipeline.cluster.namespace", lambda: "team-a")
    fake = fake_kubernetes({("POST", JOBSETS): (201, None)})
    cluster = Cluster(fake, lambda jobset: run_pods(jobset, open_store(store_dir).absolute_url()))
    index = (tmp_path / "index").as_uri()  # an empty local index: the package is there already
    try:
        store, result = launch(fake, fixture_nb, store_dir, packages=["packaging"], pip_index_urls=[index],
                               claims={"scratch": "jupyter-pipeline-abc12-scratch"})
    finally:
        cluster.stop.set()
    assert result["status"] == "succeeded", result
    assert result["metrics"] == {"value": 3} and result["attempts"] == 1
    assert [r["status"] for r in result["replicas"]] == ["succeeded", "succeeded"]
    [post] = [r for r in fake.requests if r["method"] == "POST"]
    assert post["path"] == JOBSETS and post["content_type"] == "application/json"
    assert JobsetV1alpha2JobSet.from_dict(post["body"]).to_dict() == post["body"]
    # The replicas' pods carry the stage's pod options; each unpacked the travelling files by itself
    # (the description names the bundle; no working folder is shared with the launcher).
    pod = post["body"]["spec"]["replicatedJobs"][0]["template"]["spec"]["template"]["spec"]
    assert pod["nodeSelector"]["zone"] == "a" and pod["tolerations"][0]["key"] == "dedicated"
    assert {"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": "2Gi"}} in pod["volumes"]
    # Existing claims, and the claim the pipeline made for this run, which the launcher was given.
    assert pod["containers"][0]["volumeMounts"][:3] == [{"name": "volume-0", "mountPath": "/data"},
                                                        {"name": "volume-1", "mountPath": "/scratch"},
                                                        {"name": "volume-2", "mountPath": "/ckpt"}]
    assert pod["volumes"][1] == {"name": "volume-1",
                                 "persistentVolumeClaim": {"claimName": "jupyter-pipeline-abc12-scratch"}}
    description = json.loads(next(e["value"] for e in pod["containers"][0]["env"] if e["name"] == gangjob.JOB_ENV))
    assert description["files"] == files.bundle(load(fixture_nb("gang_kfp"))).key and "cwd" not in description
    # Each replica installs what the stage's component installs, from the same index, before it runs.
    assert (description["packages"], description["pip_index_urls"]) == (["packaging"], [index])
    gets = [r for r in fake.requests if r["method"] == "GET"]
    assert gets and all(r["path"] == f"{JOBSETS}/{post['body']['metadata']['name']}" for r in gets)
    # Rank 0's values are the stage's; both executed notebooks are kept, rank 0's as the stage's too.
    assert store.get_json(stage_key("run-1", "train", "outputs.json"))["value"]
    for rank, value in ((0, 3), (1, 6)):
        text = store.get_bytes(stage_key("run-1", "train", "output.ipynb", replica=rank)).decode()
        assert f"replica {rank} of 2: value {value}, shard-a, mode replica" in text
    assert "replica 0 of 2" in store.get_bytes(stage_key("run-1", "train", "output.ipynb")).decode()


def test_launcher_retries_the_whole_job_and_names_the_failed_replica(fake_kubernetes, fixture_nb, store_dir,
                                                                      monkeypatch):
    monkeypatch.setattr("jupyter_pipeline.cluster.namespace", lambda: "team-a")
    store_holder = {}

    def failing_pods(jobset):
        """Replica 1 fails; the job stops replica 0 (which reports being cancelled)."""
        run_id, store = "run-2", store_holder["store"]
        store.put_json(stage_key(run_id, "train", "result.json", replica=0), {"status": "failed", "error": "cancelled"})
        store.put_json(stage_key(run_id, "train", "result.json", replica=1),
                       {"status": "failed", "error": "ValueError: bad shard", "error_cell": 3})
        return False

    fake = fake_kubernetes({("POST", JOBSETS): (201, None)})
    store_holder["store"] = open_store(store_dir)
    cluster = Cluster(fake, failing_pods)
    try:
        _, result = launch(fake, fixture_nb, store_dir, run_id="run-2")
    finally:
        cluster.stop.set()
    names = [r["body"]["metadata"]["name"] for r in fake.requests if r["method"] == "POST"]
    assert [n.rsplit("-", 1)[1] for n in names] == ["0", "1"]  # retries:1 made the whole job again
    assert result["status"] == "failed" and result["attempts"] == 2
    assert result["error"].startswith("replica 1 of 2 failed: ValueError: bad shard") and result["error_cell"] == 3
    assert [r["status"] for r in result["replicas"]] == ["stopped", "failed"]


def test_launcher_says_when_the_cluster_refuses_and_deletes_a_job_it_stops_waiting_for(
        fake_kubernetes, fixture_nb, store_dir, monkeypatch):
    monkeypatch.setattr("jupyter_pipeline.cluster.namespace", lambda: "team-a")
    fake = fake_kubernetes({("POST", JOBSETS): (404, {"message": "the server could not find the requested resource"})})
    with pytest.raises(RuntimeError, match=r"refused jobset/jp-train-\w+-0 in namespace team-a: 404 .*is JobSet "
                                           r"\(jobset.x-k8s.io\) installed"):
        launch(fake, fixture_nb, store_dir)

    fake = fake_kubernetes({("POST", JOBSETS): (201, None)})

    def interrupt():
        while not any(r["method"] == "GET" for r in fake.requests):
            time.sleep(0.02)
        import _thread

        _thread.interrupt_main()  # as timeout:'s alarm or a cancel does

    # interrupt_main() does nothing while SIGINT is ignored, as it is for a suite started in the
    # background by a non-interactive shell: give Python's own handler back for this test.
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        threading.Thread(target=interrupt, daemon=True).start()
        with pytest.raises(KeyboardInterrupt):
            launch(fake, fixture_nb, store_dir)
    finally:
        signal.signal(signal.SIGINT, previous)
    name = gangjob.job_name("run-1", "train", 0)
    deletes = [r for r in fake.requests if r["method"] == "DELETE"]
    assert [d["path"].split("?")[0] for d in deletes] == [f"{JOBSETS}/{name}"]
    assert "propagationPolicy=Foreground" in deletes[0]["path"]


def test_a_package_the_replicas_cannot_install_fails_the_stage_naming_it(fake_kubernetes, fixture_nb, store_dir,
                                                                           monkeypatch, tmp_path):
    monkeypatch.setattr("jupyter_pipeline.cluster.namespace", lambda: "team-a")
    fake = fake_kubernetes({("POST", JOBSETS): (201, None)})
    cluster = Cluster(fake, lambda jobset: run_pods(jobset, open_store(store_dir).absolute_url()))
    (tmp_path / "index").mkdir()
    index = (tmp_path / "index").as_uri()
    try:
        store, result = launch(fake, fixture_nb, store_dir, run_id="run-3", packages=["packaging", "jp-missing==9.9"],
                               pip_index_urls=[index])
    finally:
        cluster.stop.set()
    assert result["status"] == "failed" and result["attempts"] == 2  # retries:1 tried the whole gang again
    assert result["error"].startswith(f"replica 0 of 2 failed: pip could not install package jp-missing==9.9 from "
                                      f"{index} (the pipeline's packages), so the stage did not run: ERROR: No "
                                      "matching distribution found for jp-missing==9.9"), result["error"]
    assert [r["status"] for r in result["replicas"]] == ["failed", "failed"]
    assert not store.exists(stage_key("run-3", "train", "output.ipynb", replica=0))  # the stage never started


@pytest.mark.slow
def test_kfp_local_runs_the_replicas_as_processes_here(fixture_nb, store_dir):
    """kfp.local runs each task as a process on this machine: no cluster, so the launcher starts
    the replicas here (the pods' command, rank 0 on loopback) and the compiled pipeline runs whole."""
    from jupyter_pipeline.kfp.local import run_kfp_local

    record = run_kfp_local(load(fixture_nb("gang_kfp")), {"scale": 5}, store_dir)
    assert record.status.value == "succeeded", record.to_json()
    train = record.stages["train"]
    assert train.metrics == {"value": 5}
    assert [(r["rank"], r["status"]) for r in train.replicas] == [(0, "succeeded"), (1, "succeeded")]
    text = open_store(store_dir).get_bytes(stage_key(record.run_id, "train", "output.ipynb", replica=1)).decode()
    assert "replica 1 of 2: value 10, shard-a" in text
