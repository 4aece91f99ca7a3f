"""The ``kfp`` target: submit a compiled pipeline to Kubeflow Pipelines and follow its runs.

Through ``kfp.Client`` (the v2beta1 REST API): upload the pipeline (a new version when one by that
name exists), create the experiment when missing, start a run or a recurring run, and map a run's
task states onto the same per-stage records the local runner writes. Every failure of the server
or of the connection becomes one :class:`~jupyter_pipeline.exceptions.TargetError` sentence.
"""

from __future__ import annotations

import contextlib
import io
import json
import tempfile
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

from ..notebook import parameters as params_mod
from ..exceptions import TargetError
from ..notebook.pipeline import Pipeline
from ..store.records import (
    RunRecord, RunState, StageRecord, StageState, failure_message, new_record, new_run_id, now_iso, save_run,
    snapshot
)
from ..settings import Settings, from_options
from .compiler import compile_for_cluster, kfp_name, parameter_arguments

HOST_ENV = "KF_PIPELINES_ENDPOINT"
TOKEN_ENV = "KF_PIPELINES_TOKEN"
COOKIE_ENV = "KF_PIPELINES_COOKIE"
DEFAULT_EXPERIMENT = "Default"

#: KFP runtime states (v2beta1 ``V2beta1RuntimeState``) as stage states.
TASK_STATES = {
    "PENDING": StageState.PENDING, "RUNNING": StageState.RUNNING, "PAUSED": StageState.RUNNING,
    "SUCCEEDED": StageState.SUCCEEDED, "CACHED": StageState.SUCCEEDED, "SKIPPED": StageState.SKIPPED,
    "FAILED": StageState.FAILED, "CANCELING": StageState.CANCELLED, "CANCELED": StageState.CANCELLED,
}
RUN_STATES = {
    "SUCCEEDED": RunState.SUCCEEDED, "FAILED": RunState.FAILED, "SKIPPED": RunState.FAILED,
    "CANCELING": RunState.CANCELLED, "CANCELED": RunState.CANCELLED,
}
#: Why a stage of a succeeded Kubeflow run did not run (the cluster does not say which condition).
KFP_SKIP_REASON = "condition false on Kubeflow: its if: condition (or an upstream stage's) did not hold"
#: When one stage has several task entries (driver, executor, retries), the one shown wins by this order.
_PRECEDENCE = [StageState.FAILED, StageState.RUNNING, StageState.CANCELLED, StageState.SUCCEEDED,
               StageState.SKIPPED, StageState.PENDING]


@dataclass(frozen=True)
class Connection:
    """Where Kubeflow Pipelines is and how to authenticate (token or session cookie)."""

    host: str
    token: str | None = None
    cookie: str | None = None
    namespace: str | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> "Connection":
        """Host, token, cookie and namespace in effect (see :mod:`jupyter_pipeline.settings`)."""
        host = settings.get("kfp_host")
        if not host:
            raise TargetError(f"No Kubeflow Pipelines host: pass --kfp-host URL, or set {HOST_ENV} (or "
                              "JUPYTER_PIPELINE_KFP_HOST), or kfp_host in the config file.")
        return cls(host=host.rstrip("/"), token=settings.get("kfp_token") or None,
                   cookie=settings.get("kfp_cookie") or None, namespace=settings.get("namespace") or None)

    @classmethod
    def from_options(cls, options: dict, notebook: dict | None = None) -> "Connection":
        """The connection a run target's ``options`` name, through the settings' precedence."""
        return cls.from_settings(from_options(options, notebook))


def _explain(exc: BaseException, host: str, action: str) -> TargetError:
    """One sentence for a failure talking to ``host``."""
    status = getattr(exc, "status", None)
    if status is not None:
        body = getattr(exc, "body", None) or ""
        try:
            message = json.loads(body).get("message") or json.loads(body).get("error") or body
        except (ValueError, AttributeError):
            message = str(body)[:300] or getattr(exc, "reason", "")
        if status in (401, 403):
            return TargetError(
                f"Kubeflow Pipelines at {host} refused the credentials while {action} (HTTP {status}: {message}). "
                f"Pass --kfp-token (or {TOKEN_ENV}) or --kfp-cookie 'authservice_session=...' (or {COOKIE_ENV}), "
                "and --namespace for a multi-user installation."
            )
        if status == 400 and "upload" in action:
            return TargetError(f"Kubeflow Pipelines at {host} rejected the pipeline spec (HTTP 400): {message}")
        return TargetError(f"Kubeflow Pipelines at {host} failed while {action} (HTTP {status}): {message}")
    text = f"{type(exc).__name__}: {exc}"
    if any(word in text for word in ("Connection", "MaxRetry", "NewConnection", "timed out", "Name or service")):
        # One sentence in the user's words, not urllib3's (its text repeats the pool, the URL and the retries).
        return TargetError(f"Cannot reach Kubeflow Pipelines at {host} while {action} ({_unreachable(text)}); "
                           "check the Kubeflow Pipelines host you set and that its API is reachable from here.")
    return TargetError(f"Kubeflow Pipelines at {host} gave an unexpected answer while {action}: {text[:300]}. "
                       "A login page instead of the API usually means authentication is needed (--kfp-cookie).")


def _unreachable(text: str) -> str:
    """Why a connection failed, from a urllib3/requests error's text."""
    lowered = text.lower()
    if "refused" in lowered:
        return "connection refused: nothing listens there"
    if any(w in lowered for w in ("name or service", "nameresolution", "failed to resolve", "nodename nor servname",
                                  "name resolution")):
        return "its host name does not resolve"
    if "timed out" in lowered or "timeout" in lowered:
        return "it did not answer in time"
    if "ssl" in lowered or "certificate" in lowered:
        return "the TLS connection failed"
    return "the connection failed"


class KfpClient:
    """A thin wrapper over ``kfp.Client`` with one-sentence errors and quiet output."""

    def __init__(self, connection: Connection):
        import kfp

        class _Client(kfp.Client):
            # kfp.Client retries the health check 5 times, 5 s apart, on any API error (a refused
            # token included); one attempt is enough to report it.
            def get_kfp_healthz(self, sleep_duration=5):
                return self._healthz_api.healthz_service_get_healthz()

        self.connection = connection
        # kfp.Client checks health in its constructor unless it already knows a namespace (a
        # --namespace, or its context file); then check here, so a bad host fails now, clearly.
        with self._calling("connecting"), warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # "only works with KFP v2.0.0-beta.2 and later"
            self.client = _Client(host=connection.host, existing_token=connection.token, cookies=connection.cookie,
                                  namespace=connection.namespace or "kubeflow")
            if self.client._context_setting.get("namespace"):
                health = self.client.get_kfp_healthz()
                if not hasattr(health, "multi_user"):
                    raise ValueError("the health endpoint did not answer with KFP's JSON")

    @contextlib.contextmanager
    def _calling(self, action: str):
        # kfp.Client prints links on stdout; that would corrupt --json output.
        try:
            with contextlib.redirect_stdout(io.StringIO()):
                yield
        except TargetError:
            raise
        except Exception as exc:
            raise _explain(exc, self.connection.host, action) from None

    @property
    def namespace(self) -> str | None:
        return self.connection.namespace

    def url(self, kind: str, ident: str) -> str:
        return f"{self.client._get_url_prefix()}/#/{kind}/details/{ident}"

    def upload(self, yaml_path: str, name: str, version: str, description: str = "") -> tuple[str, str]:
        """Upload ``yaml_path`` as pipeline ``name`` (a new version when it exists); return (pipeline, version) ids."""
        flt = json.dumps({"predicates": [{"operation": "EQUALS", "key": "display_name", "stringValue": name}]})
        with self._calling("looking up the pipeline"):
            found = self.client.list_pipelines(filter=flt, namespace=self.namespace).pipelines or []
        if found:
            with self._calling("uploading a pipeline version"):
                ver = self.client.upload_pipeline_version(yaml_path, pipeline_version_name=version,
                                                          pipeline_id=found[0].pipeline_id, description=description)
            return ver.pipeline_id, ver.pipeline_version_id
        with self._calling("uploading the pipeline"):
            pipe = self.client.upload_pipeline(yaml_path, pipeline_name=name, description=description,
                                               namespace=self.namespace)
        with self._calling("reading the pipeline's version"):
            versions = self.client.list_pipeline_versions(pipe.pipeline_id, page_size=1,
                                                          sort_by="created_at desc").pipeline_versions or []
        if not versions:
            raise TargetError(f"Kubeflow Pipelines at {self.connection.host} created pipeline {name} without a version.")
        return pipe.pipeline_id, versions[0].pipeline_version_id

    def experiment(self, name: str) -> str:
        """The id of experiment ``name``, created when missing."""
        with self._calling(f"creating experiment '{name}'"):
            return self.client.create_experiment(name, namespace=self.namespace).experiment_id

    def start(self, experiment_id: str, display_name: str, pipeline_id: str, version_id: str, params: dict) -> str:
        with self._calling("starting the run"):
            return self.client.run_pipeline(experiment_id, display_name, params=params, pipeline_id=pipeline_id,
                                            version_id=version_id).run_id

    def schedule(self, experiment_id: str, display_name: str, pipeline_id: str, version_id: str, params: dict,
                 cron: str, max_concurrency: int = 1) -> str:
        with self._calling("creating the recurring run"):
            return self.client.create_recurring_run(
                experiment_id, display_name, cron_expression=kfp_cron(cron), max_concurrency=max_concurrency,
                params=params, pipeline_id=pipeline_id, version_id=version_id, enabled=True,
            ).recurring_run_id

    def get_run(self, run_id: str):
        with self._calling(f"reading run {run_id}"):
            return self.client.get_run(run_id)


def kfp_cron(expr: str) -> str:
    """KFP's cron has a seconds field; a classic 5-field expression runs at second 0."""
    fields = expr.split()
    if len(fields) == 5:
        return "0 " + " ".join(fields)
    if len(fields) in (6, 7) or expr.startswith("@"):
        return expr
    raise TargetError(f"--cron {expr!r} is not a cron expression (5 fields: minute hour day month weekday).")


def _prepare(pipeline: Pipeline, parameters: dict | None, settings: Settings, options: dict, tmp: str):
    values = params_mod.resolve(pipeline, parameters)
    path = Path(tmp) / "pipeline.yaml"
    compiled = compile_for_cluster(pipeline, settings, path, capture_packages=bool(options.get("capture_packages")))
    return values, compiled.options, str(path), compiled.yaml


def submit_target(pipeline: Pipeline, parameters: dict | None, store, options: dict, on_event=None) -> RunRecord:
    """Upload and start ``pipeline`` on Kubeflow Pipelines; the record (saved in ``store``) tracks it."""
    on_event = on_event or (lambda kind, record, stage: None)
    pipeline.require_valid()
    settings = from_options(options, pipeline.settings)
    connection = Connection.from_settings(settings)
    display = new_run_id(pipeline.name)  # the KFP run's name and the pipeline version's
    with tempfile.TemporaryDirectory(prefix="jp-kfp-") as tmp:
        values, compile_options, path, yaml_text = _prepare(pipeline, parameters, settings, options, tmp)
        client = KfpClient(connection)
        name = kfp_name(compile_options.name or pipeline.name)
        pipeline_id, version_id = client.upload(path, name, version=display, description=f"from {pipeline.path}")
    experiment = settings.get("experiment") or DEFAULT_EXPERIMENT
    experiment_id = client.experiment(experiment)
    kfp_run_id = client.start(experiment_id, display, pipeline_id, version_id, parameter_arguments(pipeline, values))
    # The stages write to kfp-<KFP run id> (entry.run_folder): the record keeps the same name.
    record = new_record(
        pipeline, store=compile_options.store, target="kfp", parameters=values, run_id=f"kfp-{kfp_run_id}",
        external_id=kfp_run_id, url=client.url("runs", kfp_run_id),
        history=[{"event": "submitted", "at": now_iso(), "host": connection.host, "experiment": experiment,
                  "pipeline_id": pipeline_id, "version_id": version_id}],
    )
    snapshot(store, pipeline, record.run_id, yaml_text)
    save_run(store, record)
    on_event("run-started", record, None)
    if options.get("wait"):
        return wait(client, store, record, on_event, poll=float(options.get("poll") or 10))
    return record


def schedule(pipeline: Pipeline, parameters: dict | None, cron: str, options: dict) -> dict:
    """Create a recurring run of ``pipeline``; return its ids and page."""
    pipeline.require_valid()
    settings = from_options(options, pipeline.settings)
    connection = Connection.from_settings(settings)
    cron_kfp = kfp_cron(cron)
    with tempfile.TemporaryDirectory(prefix="jp-kfp-") as tmp:
        values, compile_options, path, _ = _prepare(pipeline, parameters, settings, options, tmp)
        client = KfpClient(connection)
        name = kfp_name(compile_options.name or pipeline.name)
        version = new_run_id(pipeline.name)
        pipeline_id, version_id = client.upload(path, name, version=version, description=f"from {pipeline.path}")
    experiment = settings.get("experiment") or DEFAULT_EXPERIMENT
    experiment_id = client.experiment(experiment)
    display = options.get("name") or f"{name} ({cron})"
    # Each scheduled run gets its own folder, kfp-<KFP run id>.
    recurring_id = client.schedule(experiment_id, display, pipeline_id, version_id,
                                   parameter_arguments(pipeline, values), cron)
    return {"recurring_run_id": recurring_id, "pipeline_id": pipeline_id, "version_id": version_id,
            "experiment_id": experiment_id, "cron": cron_kfp, "url": client.url("recurringrun", recurring_id),
            "host": connection.host}


def _state(value) -> str:
    return str(getattr(value, "value", value) or "").rsplit(".", 1)[-1].upper()


def apply_run(record: RunRecord, run) -> RunRecord:
    """Update ``record`` from a ``V2beta1Run``: run state, then each stage's task state."""
    tasks: dict[str, list] = {}
    for task in (getattr(run.run_details, "task_details", None) or []) if run.run_details else []:
        if task.display_name in record.stages:
            tasks.setdefault(task.display_name, []).append(task)
    for name, entries in tasks.items():
        mapped = [(TASK_STATES.get(_state(t.state), StageState.PENDING), t) for t in entries]
        status, task = min(mapped, key=lambda m: _PRECEDENCE.index(m[0]))
        rec = record.stages[name]
        rec.status = status
        rec.reused = any(_state(t.state) == "CACHED" for _, t in mapped)
        rec.attempts = max(rec.attempts, sum(1 for s, _ in mapped if s in (StageState.FAILED, StageState.SUCCEEDED)) or
                           (1 if status.done else 0))
        rec.started_at = _iso(task.start_time) or rec.started_at
        rec.finished_at = _iso(task.end_time) if status.done else None
        error = getattr(task, "error", None)
        rec.error = getattr(error, "message", None) if status == StageState.FAILED and error else (
            rec.error if status == StageState.FAILED else None)
    state = _state(run.state)
    if state in RUN_STATES:
        record.status = RUN_STATES[state]
        record.finished_at = _iso(getattr(run, "finished_at", None)) or record.finished_at or now_iso()
        for rec in record.stages.values():
            if record.status == RunState.SUCCEEDED and rec.status != StageState.SUCCEEDED:
                # A run that succeeded leaves a stage out only when a dsl.If (its if: or an upstream one) did not hold.
                rec.status, rec.skip_reason, rec.error = StageState.SKIPPED, rec.skip_reason or KFP_SKIP_REASON, None
            elif not rec.status.done:
                rec.status = StageState.SKIPPED if record.status == RunState.FAILED else StageState.CANCELLED
        if record.status == RunState.FAILED:
            run_error = getattr(getattr(run, "error", None), "message", None)
            record.error = failure_message(record) or run_error or "the Kubeflow run failed"
    else:
        record.status = RunState.RUNNING
    return record


def _iso(value) -> str | None:
    if value is None:
        return None
    if hasattr(value, "isoformat"):
        return value.isoformat().replace("+00:00", "Z")
    return str(value)


def refresh(client: KfpClient, store, record: RunRecord) -> RunRecord:
    """Read the run's state from Kubeflow Pipelines into ``record`` and save it."""
    if not record.external_id:
        raise TargetError(f"Run {record.run_id} has no Kubeflow run id; it was not submitted to Kubeflow.")
    apply_run(record, client.get_run(record.external_id))
    save_run(store, record)
    return record


def wait(client: KfpClient, store, record: RunRecord, on_event, poll: float = 10.0,
         timeout: float | None = None) -> RunRecord:
    """Follow the run until it ends, turning state changes into run events."""
    seen = {n: r.status for n, r in record.stages.items()}
    started = time.monotonic()
    while True:
        refresh(client, store, record)
        for name, rec in record.stages.items():
            if rec.status != seen[name]:
                if rec.status == StageState.RUNNING:
                    on_event("stage-started", record, name)
                elif rec.status.done:
                    on_event("stage-finished", record, name)
                seen[name] = rec.status
        if record.status != RunState.RUNNING:
            on_event("run-finished", record, None)
            return record
        if timeout is not None and time.monotonic() - started > timeout:
            return record
        time.sleep(poll)


def record_for(store, run: str, options: dict) -> tuple[KfpClient, RunRecord]:
    """The record of ``run`` (a run id of the store, or a Kubeflow run id) with a client to refresh it."""
    from ..exceptions import RunNotFound
    from ..store.records import load_run

    client = KfpClient(Connection.from_options(options))
    try:
        record = load_run(store, run)
    except RunNotFound:
        kfp_run = client.get_run(run)  # a run started elsewhere (the KFP UI, a schedule)
        names = sorted({t.display_name for t in (kfp_run.run_details.task_details or [])
                        if t.display_name and not t.display_name.startswith(("root", "executor"))}
                       if kfp_run.run_details else [])
        record = RunRecord(run_id=run, pipeline=getattr(kfp_run, "display_name", "") or "", notebook="", store="",
                           target="kfp", stages={n: StageRecord() for n in names}, external_id=run,
                           url=client.url("runs", run))
        return client, apply_run(record, kfp_run)
    if record.target != "kfp":
        raise TargetError(f"Run {run} ran on target '{record.target}', not on Kubeflow; drop --target kfp.")
    return client, refresh(client, store, record)
