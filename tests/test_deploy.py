"""``deploy``: manifests validated offline against Kubernetes' schemas, and applying them
contract-tested against a local HTTP server that plays the Kubernetes API (``plugin_kubernetes``)."""

from __future__ import annotations

import json

import kubernetes_validate
import pytest
import yaml

from jupyter_pipeline import deploy
from jupyter_pipeline.cli import main
from jupyter_pipeline.deploy import DeployError, DeploySpec, apply, render

K8S_VERSION = "1.30.0"


def spec(**kw) -> DeploySpec:
    return DeploySpec(**{"model": "digits", "store": "s3://ml-artifacts/team-a", "namespace": "team-a",
                         "image": "registry.example/jp:1", **kw})


def _validate(manifest: dict) -> None:
    kubernetes_validate.validate(manifest, K8S_VERSION, strict=True)


def test_deployment_and_service_are_valid_kubernetes_objects():
    deployment, service = render(spec(replicas=2))
    _validate(deployment)
    _validate(service)
    pod = deployment["spec"]["template"]["spec"]
    [container] = pod["containers"]
    assert container["command"] == ["jupyter-pipeline"]
    assert container["args"] == ["serve", "--store", "s3://ml-artifacts/team-a", "--host", "0.0.0.0", "--port", "8080",
                                 "--grpc-port", "8081", "--model", "digits"]
    assert container["readinessProbe"]["httpGet"]["path"] == "/v2/health/ready"
    assert container["livenessProbe"]["httpGet"]["path"] == "/v2/health/live"
    assert deployment["spec"]["replicas"] == 2
    assert pod["terminationGracePeriodSeconds"] > 30  # longer than the server's drain
    assert service["spec"]["selector"] == deployment["spec"]["selector"]["matchLabels"]
    assert set(service["spec"]["selector"].items()) <= set(pod_labels(deployment).items())
    assert "tolerations" not in pod and "nvidia.com/gpu" not in container["resources"]["limits"]
    # REST and the OIP gRPC service, both reachable through the Service.
    assert [(p["name"], p["containerPort"]) for p in container["ports"]] == [("http", 8080), ("grpc", 8081)]
    assert [(p["name"], p["port"], p["targetPort"]) for p in service["spec"]["ports"]] == [
        ("http", 8080, "http"), ("grpc", 8081, "grpc")]
    assert service["spec"]["ports"][1]["appProtocol"] == "kubernetes.io/h2c"


def pod_labels(deployment):
    return deployment["spec"]["template"]["metadata"]["labels"]


def test_store_credentials_come_from_a_secret_never_inline(monkeypatch):
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "s3cr3t-value")
    monkeypatch.setenv("JUPYTER_PIPELINE_S3_ENDPOINT", "http://127.0.0.1:9000")  # this machine's port-forward
    manifests = render(spec(secret="team-a-minio", s3_endpoint="http://minio.kubeflow:9000"))
    text = deploy.to_yaml(manifests)
    assert "s3cr3t-value" not in text
    env = {e["name"]: e for e in manifests[0]["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["AWS_SECRET_ACCESS_KEY"]["valueFrom"] == {"secretKeyRef": {"name": "team-a-minio", "key": "secretkey"}}
    assert env["AWS_ACCESS_KEY_ID"]["valueFrom"]["secretKeyRef"]["name"] == "team-a-minio"
    assert env["JUPYTER_PIPELINE_S3_ENDPOINT"]["value"] == "http://minio.kubeflow:9000"


def test_gpu_placement():
    deployment, _ = render(spec(gpu=1, gpu_type="nvidia-tesla-t4"))
    _validate(deployment)
    pod = deployment["spec"]["template"]["spec"]
    assert pod["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert pod["tolerations"] == [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
    assert pod["nodeSelector"] == {deploy.GPU_NODE_LABEL: "nvidia-tesla-t4"}


def test_kserve_inference_service_runs_the_same_server():
    [isvc] = render(spec(model="digits:3", kserve=True, gpu=1))
    assert isvc["apiVersion"] == "serving.kserve.io/v1beta1" and isvc["kind"] == "InferenceService"
    predictor = isvc["spec"]["predictor"]
    assert predictor["minReplicas"] == 1
    [container] = predictor["containers"]
    assert container["name"] == "kserve-container"
    assert container["args"][:2] == ["serve", "--store"] and "digits:3" in container["args"]
    assert container["ports"] == [{"name": "http1", "containerPort": 8080, "protocol": "TCP"}]
    # KServe's predictor is a pod spec plus its own fields: validate that pod spec strictly.
    pod_spec = {k: v for k, v in predictor.items() if k != "minReplicas"}
    _validate({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": pod_spec})
    # KServe routes one port of a custom predictor: gRPC when asked, named h2c as KServe expects.
    [isvc] = render(spec(kserve=True, kserve_grpc=True))
    [container] = isvc["spec"]["predictor"]["containers"]
    assert container["ports"] == [{"name": "h2c", "containerPort": 8081, "protocol": "TCP"}]
    assert container["args"][container["args"].index("--grpc-port") + 1] == "8081"


def test_invalid_specs_fail_with_a_message():
    with pytest.raises(DeployError, match="local folder"):
        render(spec(store="./.pipeline-store"))
    with pytest.raises(DeployError, match="NAME or NAME:VERSION"):
        render(spec(model="Digits!"))


def test_dry_run_prints_the_manifests(capsys):
    assert main(["deploy", "digits", "--store", "s3://ml-artifacts/team-a", "-n", "team-a",
                 "--image", "registry.example/jp:1", "--dry-run"]) == 0
    printed = list(yaml.safe_load_all(capsys.readouterr().out))
    assert printed == render(spec())
    assert main(["deploy", "digits", "--store", "s3://b/p", "--kserve", "--dry-run", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)[0]["kind"] == "InferenceService"
    assert main(["deploy", "digits", "--store", "./local", "--dry-run"]) == 1
    assert capsys.readouterr().err.startswith("error: The store './local' is a local folder")


# -- applying: a loopback server plays the Kubernetes API -----------------------------------------

DEPLOYMENTS = "/apis/apps/v1/namespaces/team-a/deployments"
SERVICES = "/api/v1/namespaces/team-a/services"
ISVCS = "/apis/serving.kserve.io/v1beta1/namespaces/team-a/inferenceservices"
CONFLICT = (409, {"kind": "Status", "status": "Failure", "reason": "AlreadyExists", "code": 409,
                  "message": "already exists"})


def test_apply_creates_deployment_and_service(fake_kubernetes):
    k8s = fake_kubernetes({("POST", DEPLOYMENTS): (201, None), ("POST", SERVICES): (201, None)})
    manifests = render(spec())
    results = apply(manifests, k8s.api)
    assert [(r["method"], r["path"], r["content_type"]) for r in k8s.requests] == [
        ("POST", DEPLOYMENTS, "application/json"), ("POST", SERVICES, "application/json")]
    assert [r["body"] for r in k8s.requests] == manifests
    assert [(r["kind"], r["name"], r["action"]) for r in results] == [
        ("Deployment", "digits-server", "created"), ("Service", "digits-server", "created")]


def test_apply_patches_what_already_exists(fake_kubernetes):
    k8s = fake_kubernetes({("POST", DEPLOYMENTS): CONFLICT, ("PATCH", f"{DEPLOYMENTS}/digits-server"): (200, None),
                           ("POST", SERVICES): CONFLICT, ("PATCH", f"{SERVICES}/digits-server"): (200, None)})
    manifests = render(spec())
    results = apply(manifests, k8s.api)
    assert [(r["method"], r["path"], r["content_type"]) for r in k8s.requests] == [
        ("POST", DEPLOYMENTS, "application/json"),
        ("PATCH", f"{DEPLOYMENTS}/digits-server", "application/strategic-merge-patch+json"),
        ("POST", SERVICES, "application/json"),
        ("PATCH", f"{SERVICES}/digits-server", "application/strategic-merge-patch+json")]
    assert k8s.requests[1]["body"] == manifests[0] and k8s.requests[3]["body"] == manifests[1]
    assert [r["action"] for r in results] == ["configured", "configured"]


def test_apply_kserve_creates_then_merge_patches(fake_kubernetes):
    [isvc] = render(spec(kserve=True))
    k8s = fake_kubernetes({("POST", ISVCS): (201, None)})
    assert apply([isvc], k8s.api)[0]["action"] == "created"
    assert [(r["method"], r["path"], r["body"]) for r in k8s.requests] == [("POST", ISVCS, isvc)]
    k8s = fake_kubernetes({("POST", ISVCS): CONFLICT, ("PATCH", f"{ISVCS}/digits-server"): (200, None)})
    assert apply([isvc], k8s.api)[0]["action"] == "configured"
    assert [(r["method"], r["path"], r["content_type"]) for r in k8s.requests] == [
        ("POST", ISVCS, "application/json"), ("PATCH", f"{ISVCS}/digits-server", "application/merge-patch+json")]


def test_apply_refusal_is_one_paragraph_with_the_api_message(fake_kubernetes):
    k8s = fake_kubernetes({("POST", DEPLOYMENTS): (403, {"kind": "Status", "code": 403, "reason": "Forbidden",
                                                        "message": 'deployments.apps is forbidden: User "x" cannot '
                                                                   'create resource "deployments"'})})
    with pytest.raises(DeployError) as info:
        apply(render(spec()), k8s.api)
    message = str(info.value)
    assert message.startswith("Kubernetes refused deployment/digits-server in namespace team-a: 403 Forbidden")
    assert 'cannot create resource "deployments"' in message
    assert len(k8s.requests) == 1  # stops at the first refusal


# -- a model of a known format: KServe's modelFormat, served by this project's ServingRuntime -------

def test_kserve_model_format_renders_a_serving_runtime_and_a_model_predictor():
    from jupyter_pipeline.cli import build_parser

    runtime, isvc = render(spec(model="iris:2", kserve=True, model_format="sklearn", serve_args=["--no-cache"]))
    assert (runtime["apiVersion"], runtime["kind"], runtime["metadata"]["name"]) == (
        "serving.kserve.io/v1alpha1", "ServingRuntime", deploy.RUNTIME_NAME)
    formats = runtime["spec"]["supportedModelFormats"]
    assert {f["name"] for f in formats} >= {"sklearn", "xgboost", "lightgbm", "onnx", "pytorch", "keras"}
    assert not any(f["autoSelect"] for f in formats)  # KServe's own runtimes keep other InferenceServices
    assert set(runtime["spec"]["protocolVersions"]) == {"v2", "grpc-v2"}
    [container] = runtime["spec"]["containers"]
    _validate({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": {"containers": [container]}})
    model = isvc["spec"]["predictor"]["model"]
    assert (model["modelFormat"], model["runtime"], model["protocolVersion"]) == (
        {"name": "sklearn"}, deploy.RUNTIME_NAME, "v2")
    assert "storageUri" not in model  # the server reads the model from the store itself
    # KServe runs the runtime's args followed by the model's: together they are one serve command.
    args = build_parser().parse_args(container["args"] + model["args"])
    assert (args.command, args.store, args.model, args.host, args.port, args.grpc_port, args.no_cache) == (
        "serve", "s3://ml-artifacts/team-a", ["iris:2"], "0.0.0.0", 8080, 8081, True)
    assert {e["name"] for e in model["env"]} >= {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"}
    assert model["resources"]["requests"]["cpu"] == "1"
    with pytest.raises(DeployError, match="'caffe' is not one"):
        render(spec(kserve=True, model_format="caffe"))


def test_model_format_auto_reads_the_versions_meta_json(s3_url, capsys):
    from sklearn.linear_model import LogisticRegression

    from jupyter_pipeline.store.models import log_model

    log_model(LogisticRegression().fit([[0.0], [1.0]], [0, 1]), "tiny", store=s3_url)
    capsys.readouterr()
    assert main(["deploy", "tiny", "--store", s3_url, "--kserve", "--model-format", "auto", "--dry-run",
                 "--json"]) == 0
    runtime, isvc = json.loads(capsys.readouterr().out)
    assert runtime["kind"] == "ServingRuntime"
    assert isvc["spec"]["predictor"]["model"]["modelFormat"] == {"name": "sklearn"}


def test_apply_creates_the_serving_runtime_before_the_inference_service(fake_kubernetes):
    runtimes = "/apis/serving.kserve.io/v1alpha1/namespaces/team-a/servingruntimes"
    manifests = render(spec(kserve=True, model_format="onnx"))
    k8s = fake_kubernetes({("POST", runtimes): CONFLICT, ("PATCH", f"{runtimes}/{deploy.RUNTIME_NAME}"): (200, None),
                           ("POST", ISVCS): (201, None)})
    assert [r["action"] for r in apply(manifests, k8s.api)] == ["configured", "created"]
    assert [(r["method"], r["path"]) for r in k8s.requests] == [
        ("POST", runtimes), ("PATCH", f"{runtimes}/{deploy.RUNTIME_NAME}"), ("POST", ISVCS)]
