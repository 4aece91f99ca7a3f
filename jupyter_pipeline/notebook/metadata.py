"""A notebook's own settings: ``metadata.jupyter_pipeline``, checked, with Kale's
``metadata.kubeflow_notebook`` mapped onto it.

Every setting has a checker in :data:`schema` that returns the value to use or raises
``ValueError`` saying what it expects; a value of the wrong type is a ``bad-setting`` problem and
is left out, so nothing downstream meets it mid-run. Settings of the resolver
(:mod:`jupyter_pipeline.settings`) that a notebook may set are known here too. Settings that apply
to every stage (``image``, ``cpu``, ``labels``, the tags of ``stage_tags``...) become the stages'
default options in :func:`stage_defaults`.
"""

from __future__ import annotations

import json
from typing import Any, Callable
from urllib.parse import urlparse

from .pipeline import Problem, Role, StageOptions
from ..registry import Registry
from ..settings import settings as resolved_settings
from .pod import METADATA_KEY_RE, QUANTITY_RE, tolerations_setting
from .tags import read_cell

KEY = "jupyter_pipeline"
KALE_KEY = "kubeflow_notebook"

Checker = Callable[[Any], Any]
#: Setting name -> checker. To add a setting, register its checker here (bottom of the module).
schema: Registry[Checker] = Registry("notebook setting")


class CredentialsInValue(ValueError):
    """Raised by a checker when the value holds credentials, so the message must not show it."""


def _shown(value) -> str:
    kinds = {str: "a string", bool: "a boolean", int: "a number", float: "a number", list: "a list",
             dict: "an object", type(None): "null"}
    text = json.dumps(value, default=str)
    return f"{text[:60] + '…' if len(text) > 60 else text} ({kinds.get(type(value), type(value).__name__)})"


def text(value) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError("a non-empty string")
    return value


def optional_text(value) -> str | None:
    return None if value is None else text(value)


def whole(minimum: int) -> Checker:
    def check(value) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise ValueError(f"a whole number ≥ {minimum} (without quotes)")
        return value
    return check


def quantity(value) -> str:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str) or not QUANTITY_RE.match(value):
        raise ValueError("a Kubernetes quantity such as 2, \"500m\" or \"8Gi\"")
    return value


def text_list(value) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValueError("a list of strings")
    return value


def relative_globs(value) -> list[str]:
    value = text_list(value)
    outside = [v for v in value if v.startswith(("/", "~", "\\")) or v[1:2] == ":"  # (C:\ on Windows)
               or ".." in v.replace("\\", "/").split("/")]
    if outside:  # the files travel from the notebook's folder, and a glob cannot leave it
        raise ValueError(f"a list of globs relative to the notebook's folder, without '..' ({outside[0]!r} is not)")
    return value


def text_map(value) -> dict[str, str]:
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        raise ValueError("an object whose values are strings")
    return value


def metadata_map(value) -> dict[str, str]:
    value = text_map(value)
    bad = [k for k in value if not METADATA_KEY_RE.match(k)]
    if bad:
        raise ValueError(f"an object of Kubernetes keys (such as \"team\" or \"example.com/team\"); "
                         f"{bad[0]!r} is not one")
    return value


def object_list(value) -> list[dict]:
    if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
        raise ValueError("a list of objects")
    return value


def store_url(value) -> str:
    value = text(value)
    if value.startswith("s3://") and "@" in value.split("/")[2]:
        raise CredentialsInValue("a store URL without credentials (s3://bucket/prefix; the keys come from "
                         "AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or a Kubernetes secret)")
    return value


def endpoint_url(value) -> str:
    value = text(value)
    if "@" in urlparse(value if "://" in value else "//" + value).netloc:
        raise CredentialsInValue("an endpoint URL without credentials (http://host:port; the keys come from "
                         "AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or a Kubernetes secret)")
    return value


ACCESS_MODES = ("ReadWriteOnce", "ReadOnlyMany", "ReadWriteMany", "ReadWriteOncePod")


def volumes(value) -> list[dict]:
    """``[{"name": CLAIM, "mount_path": "/data"}, {"name", "mount_path", "new": true, "size": "5Gi",
    "access_mode"?, "storage_class"?, "annotations"?}]``: existing claims, and claims made per run."""
    expected = ("a list of volumes, each {\"name\": CLAIM, \"mount_path\": \"/path\"} (an existing claim) "
                "or with \"new\": true and \"size\" (a claim made for each run)")
    for volume in object_list(value):
        name, path = volume.get("name"), volume.get("mount_path")
        if not (isinstance(name, str) and name and isinstance(path, str) and path.startswith("/")):
            raise ValueError(expected)
        if volume.get("new"):
            quantity(volume.get("size"))
            if volume.get("access_mode", "ReadWriteOnce") not in ACCESS_MODES:
                raise ValueError(f"volumes whose \"access_mode\" is one of {', '.join(ACCESS_MODES)}")
            optional_text(volume.get("storage_class"))
            text_map(volume.get("annotations", {}))
            if not isinstance(volume.get("keep", False), bool):
                raise ValueError("volumes whose \"keep\" is true or false (keep the claim after the run)")
    return value


def checker(name: str) -> Checker | None:
    """The checker of notebook setting ``name``; None when a notebook cannot set it."""
    if name in schema:
        return schema.get(name)
    setting = resolved_settings.get(name) if name in resolved_settings else None
    if setting is None or not setting.notebook:
        return None
    return text_list if setting.is_list else text


def notebook_settings(metadata) -> tuple[dict, list[Problem]]:
    """The notebook's settings (Kale's mapped first, ours over them) and the problems found."""
    problems: list[Problem] = []
    kale = metadata.get(KALE_KEY)
    merged = kale_settings(kale, problems) if kale is not None else {}
    own = metadata.get(KEY)
    if own is not None and not isinstance(own, dict):
        problems.append(Problem("error", "bad-setting",
                                f"`metadata.{KEY}` must be an object of settings, not {_shown(own)}"))
        own = None
    for name, value in (own or {}).items():
        check = checker(name)
        if check is None:
            known = set(schema) | {n for n, s in resolved_settings.items() if s.notebook}
            problems.append(Problem("warning", "unknown-setting",
                                    f"`metadata.{KEY}.{name}` is not a setting jupyter-pipeline knows, so it "
                                    f"has no effect; the settings are: {', '.join(sorted(known))}"))
            continue
        try:
            merged[name] = check(value)
        except ValueError as exc:
            merged.pop(name, None)
            shown = "" if isinstance(exc, CredentialsInValue) else f", not {_shown(value)}"
            problems.append(Problem("error", "bad-setting", f"`metadata.{KEY}.{name}` must be {exc}{shown}"))
    return merged, problems


# -- Kale --------------------------------------------------------------------------------------
_KALE_NAMES = {"pipeline_name": "name", "experiment_name": "experiment", "pipeline_description": "description",
               "docker_image": "image", "base_image": "image"}
_KALE_ACCESS = {"rwo": "ReadWriteOnce", "rom": "ReadOnlyMany", "rwm": "ReadWriteMany"}


def kale_settings(kale, problems: list[Problem]) -> dict:
    """Kale's notebook metadata as our settings: names, image, ``steps_defaults`` as ``stage_tags``
    and ``pvc``/``new_pvc`` volumes; what has no equivalent is a warning saying what happens."""
    where = f"metadata.{KALE_KEY}"
    if not isinstance(kale, dict):
        problems.append(Problem("error", "bad-setting", f"`{where}` must be an object, not {_shown(kale)}"))
        return {}
    out: dict = {}
    for theirs, ours in _KALE_NAMES.items():
        value = kale.get(theirs)
        if value in (None, ""):
            continue  # Kale writes empty strings for "not set"
        if not isinstance(value, str):
            problems.append(Problem("error", "bad-setting", f"`{where}.{theirs}` must be a string, not {_shown(value)}"))
        else:
            out[ours] = value
    defaults = kale.get("steps_defaults")
    if isinstance(defaults, dict):  # the parsed form: {"labels": {...}, "annotations": {...}, "limits": {...}}
        defaults = [f"{kind[:-1]}:{k}:{v}" for kind in ("labels", "annotations", "limits")
                    for k, v in (defaults.get(kind) or {}).items()]
    if defaults:
        try:
            out["stage_tags"] = text_list(defaults)
        except ValueError as exc:
            problems.append(Problem("error", "bad-setting", f"`{where}.steps_defaults` must be {exc}, not {_shown(defaults)}"))
    mounts = [m for m in (_kale_volume(v, i, kale, problems) for i, v in enumerate(_kale_list(kale, problems))) if m]
    if mounts:
        out["volumes"] = mounts
    if kale.get("katib_run") is True:
        problems.append(Problem(
            "warning", "kale-unsupported",
            f"`{where}.katib_run` is on, but jupyter-pipeline does not start Katib experiments: the pipeline runs "
            "once with the parameters' defaults. To search parameters, run a sweep: "
            "`jupyter-pipeline run NOTEBOOK --sweep NAME=V1,V2 --metric METRIC`",
        ))
    return out


def _kale_list(kale: dict, problems: list[Problem]) -> list:
    value = kale.get("volumes") or []
    if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
        problems.append(Problem("error", "bad-setting",
                                f"`metadata.{KALE_KEY}.volumes` must be a list of objects, not {_shown(value)}"))
        return []
    return value


def _kale_volume(volume: dict, index: int, kale: dict, problems: list[Problem]) -> dict | None:
    kind, name, path = volume.get("type"), volume.get("name"), volume.get("mount_point")
    where = f"`metadata.{KALE_KEY}.volumes[{index}]`"
    if kind in ("pvc", "new_pvc") and not (isinstance(name, str) and name and isinstance(path, str)
                                           and path.startswith("/")):
        problems.append(Problem("error", "bad-setting",
                                f"{where} needs a \"name\" and an absolute \"mount_point\", not {_shown(volume)}"))
        return None
    if kind == "pvc":
        return {"name": name, "mount_path": path}
    if kind == "new_pvc":
        mount = {"name": name, "mount_path": path, "new": True,
                 "size": f"{volume.get('size', 1)}{volume.get('size_type', 'Gi')}"}
        mode = volume.get("volume_access_mode") or kale.get("volume_access_mode")
        if mode:
            mount["access_mode"] = _KALE_ACCESS.get(mode, mode)
        storage_class = volume.get("storage_class_name") or kale.get("storage_class_name")
        if storage_class:
            mount["storage_class"] = storage_class
        annotations = {a.get("key"): a.get("value") for a in volume.get("annotations") or []
                       if isinstance(a, dict) and a.get("key") and a.get("value")}
        if annotations:
            mount["annotations"] = annotations
        return mount
    instead = {
        "clone": "it is a Rok clone of the notebook server's own volume, which jupyter-pipeline does not "
                 "make; stages get the variables they need through the store, but not other files on that "
                 "volume. To mount a volume, list an existing claim with type \"pvc\"",
        "pv": "it names a PersistentVolume, not a claim; create a claim bound to it and list the claim "
              "with type \"pvc\"",
    }.get(kind, "only types \"pvc\" (an existing claim) and \"new_pvc\" (a claim made for each run) are "
                "mounted")
    problems.append(Problem("warning", "kale-unsupported",
                            f"{where} ({name or 'unnamed'}, type {kind!r}, at {path or '?'}) is not mounted: {instead}"))
    return None


# -- stage defaults ----------------------------------------------------------------------------
_OPTION_SETTINGS = ("image", "cpu", "memory", "retries", "timeout", "labels", "annotations", "env")


def stage_defaults(settings: dict, problems: list[Problem]) -> StageOptions:
    """Options every stage starts from: the option settings, then the tags of ``stage_tags``."""
    options = StageOptions(**{k: settings[k] for k in _OPTION_SETTINGS if k in settings})
    for tag in settings.get("stage_tags", ()):
        spec, _ = read_cell([tag], "")
        for _code, message in spec.problems:
            problems.append(Problem("error", "bad-setting", f"`stage_tags` (Kale: `steps_defaults`): {message}"))
        if spec.role != Role.CONTINUE or spec.after:
            problems.append(Problem("error", "bad-setting",
                                    f"`stage_tags` (Kale: `steps_defaults`) may hold only options that apply to "
                                    f"every stage (such as `label:K:V` or `cpu:2`), not '{tag}'"))
        elif not spec.options and not spec.problems:
            problems.append(Problem("warning", "unknown-setting",
                                    f"`stage_tags` (Kale: `steps_defaults`): '{tag}' is not a tag jupyter-pipeline "
                                    "knows, so it has no effect"))
        else:
            options = options.merged(StageOptions(**spec.options))
    return options


#: Kinds of multi-pod job a ``workers:`` stage becomes on Kubeflow, and the gang schedulers known.
JOB_KINDS = ("jobset", "trainjob")
SCHEDULERS = ("kueue", "volcano")


def distributed_setting(value) -> dict:
    """Checker of the notebook setting ``distributed``: how ``workers:`` stages run on Kubeflow."""
    expected = ('an object such as {"kind": "jobset", "scheduler": "kueue", "queue": "team-a"}: kind is '
                f'{" or ".join(JOB_KINDS)}, scheduler {" or ".join(SCHEDULERS)} or null; queue, runtime (the '
                "TrainJob's ClusterTrainingRuntime) and namespace are names")
    if not isinstance(value, dict) or set(value) - {"kind", "scheduler", "queue", "runtime", "namespace"}:
        raise ValueError(expected)
    if value.get("kind", "jobset") not in JOB_KINDS or value.get("scheduler") not in (None, *SCHEDULERS):
        raise ValueError(expected)
    if any(not isinstance(value[k], str) or not value[k] for k in ("queue", "runtime", "namespace") if k in value):
        raise ValueError(expected)
    if value.get("scheduler") == "kueue" and not value.get("queue"):
        raise ValueError(expected + ' (Kueue admits a job through a queue: name it in "queue")')
    return value


for _name in ("name", "experiment", "description", "image", "kernel", "gpu_type_label"):
    schema.register(_name, text)
for _name in ("store", "kfp_store"):
    schema.register(_name, store_url)
schema.register("s3_endpoint", endpoint_url)
schema.register("secret", optional_text)
schema.register("cpu", quantity)
schema.register("memory", quantity)
schema.register("retries", whole(0))
schema.register("timeout", whole(1))
for _name in ("packages", "pip_index_urls", "image_pull_secrets", "stage_tags"):
    schema.register(_name, text_list)
schema.register("files", relative_globs)
for _name in ("env", "node_selector", "gpu_node_selector", "secret_keys"):
    schema.register(_name, text_map)
schema.register("labels", metadata_map)
schema.register("annotations", metadata_map)
schema.register("tolerations", tolerations_setting)
schema.register("volumes", volumes)
schema.register("distributed", distributed_setting)
