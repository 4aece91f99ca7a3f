"""Compile a :class:`~jupyter_pipeline.notebook.pipeline.Pipeline` to a Kubeflow Pipelines v2 spec (IR YAML).

Built with the kfp v2 DSL and ``kfp.compiler``: one lightweight Python component per stage
(:mod:`.component`), tasks wired by the locations of their upstream stages (:mod:`.tasks`), the
notebook's parameters as typed pipeline parameters, per-stage placement (:mod:`.placement`) and an
exit task that shows the executed notebooks of failed stages. Each task gets its stage notebook as
a constant argument, so the YAML alone is the complete pipeline (with the bundle of working files,
:mod:`.files`, in the store). The same notebook always compiles to the same bytes.
"""

from __future__ import annotations

import inspect
import json
import os
import re
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path

from ..exceptions import TargetError
from ..notebook.pipeline import Pipeline, Stage
from ..settings import DEFAULT_IMAGE, Settings, cluster_store
from .component import KFP_TYPES, check_parameter_names, component, report_function
from .conditions import add_stages
from .entry import NONE_PREFIX
from .placement import Placement, helper
from .tasks import JOB_ID_PLACEHOLDER, StageTasks


@dataclass(frozen=True)
class CompileOptions:
    """What the compiled spec needs beyond the notebook's cells."""

    name: str | None = None
    image: str | None = None
    image_source: str = "flag"  # where the image came from (a source of jupyter_pipeline.settings)
    store: str | None = None  # default of the jp_store pipeline parameter
    s3_endpoint: str | None = None  # default of jp_s3_endpoint
    placement: Placement | None = None
    description: str | None = None
    packages: tuple[str, ...] = ()  # pip requirements every stage installs
    pip_index_urls: tuple[str, ...] = ()
    capture_packages: bool = False  # also pin the distributions each stage imports
    files_key: str = ""  # store key of the bundle of working files (see .files)
    #: Create the notebook's per-run volumes; off for kfp.local, which has no cluster to make them in.
    create_volumes: bool = True

    @classmethod
    def for_pipeline(cls, pipeline: Pipeline, settings: Settings | None = None, **overrides) -> "CompileOptions":
        """Options from ``settings`` (default: the notebook's own and the environment's), then
        ``overrides`` (None values ignored)."""
        s = pipeline.settings
        settings = settings or Settings(notebook=s)
        store = cluster_store(settings)  # by default a folder of the pipeline root's bucket, never created
        image = settings.resolve("image")
        values = dict(
            name=s.get("name") or pipeline.name,
            image=image.value,
            image_source=image.source,
            store=store,
            s3_endpoint=settings.get("s3_endpoint"),
            placement=Placement.from_settings(s),
            packages=tuple(settings.get("packages")),
            pip_index_urls=tuple(settings.get("pip_index_urls")),
        )
        values.update({k: v for k, v in overrides.items() if v is not None})
        if overrides.get("image"):
            values["image_source"] = "flag"
        return cls(**values)


def kfp_name(name: str) -> str:
    """A pipeline name KFP accepts: lower case, digits and '-'."""
    slug = re.sub(r"[^a-z0-9-]+", "-", name.lower()).strip("-")[:128]
    return slug or "pipeline"


def topological(pipeline: Pipeline) -> list[Stage]:
    """Stages with every upstream stage first, otherwise in notebook order."""
    return pipeline.dependency_order()


def pipeline_signature(pipeline: Pipeline, options: CompileOptions) -> inspect.Signature:
    params = []
    for p in pipeline.parameters:
        annotation = KFP_TYPES[p.type]
        default = list(p.default) if p.type == "tuple" else p.default
        if p.type == "NoneType":
            default = NONE_PREFIX + "null"
        params.append(inspect.Parameter(p.name, inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=annotation,
                                        default=default))
    run_defaults = {"jp_store": options.store, "jp_s3_endpoint": options.s3_endpoint or "", "jp_workdir": ""}
    for name, default in run_defaults.items():
        params.append(inspect.Parameter(name, inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=str,
                                        default=default))
    return inspect.Signature(params, return_annotation=None)


def stage_tasks(pipeline: Pipeline, options: CompileOptions) -> StageTasks:
    """The task builder of ``pipeline`` with ``options``' image, packages, placement and files."""
    from .packages import stage_packages

    packages = stage_packages(pipeline, list(options.packages), options.capture_packages)
    return StageTasks(pipeline, topological(pipeline), options.image or DEFAULT_IMAGE, options.placement,
                      packages, list(options.pip_index_urls), options.files_key)


def build(pipeline: Pipeline, options: CompileOptions | None = None):
    """The kfp ``GraphComponent`` (a ``@dsl.pipeline``) of ``pipeline``."""
    pipeline.require_valid()
    check_parameter_names(pipeline)
    options = options or CompileOptions.for_pipeline(pipeline)
    signature = pipeline_signature(pipeline, options)
    names = list(signature.parameters)
    stages = stage_tasks(pipeline, options)
    report = component(report_function(pipeline), stages.image)

    def body(*channels):
        from kfp import dsl

        values = dict(zip(names, channels))
        failed = report(**stages.store_arguments(values))
        helper(failed, "failed stages", stages.placement)
        with dsl.ExitHandler(failed, name="stages"):
            created = create_volumes(stages) if options.create_volumes else None
            tasks = {}
            add_stages(pipeline, stages, values, tasks, after=list((created or {}).values()))
            # A task cannot wait for tasks inside dsl.If blocks: with conditional stages, claims are kept.
            if created and not any(s.options.condition for s in stages.ordered):
                delete_volumes(stages, created, list(tasks.values()))

    return as_pipeline(body, signature, pipeline, options)


def create_volumes(stages: StageTasks) -> dict:
    """A claim per run for each of the notebook's ``"new": true`` volumes; sets ``stages.claims``
    (volume name -> claim name channel) and returns the creating tasks by volume name."""
    from kfp import kubernetes

    created = {}
    for volume in stages.placement.volumes:
        if not volume.get("new"):
            continue
        extra = {"annotations": dict(volume["annotations"])} if volume.get("annotations") else {}
        task = kubernetes.CreatePVC(
            pvc_name_suffix=f"-{volume['name']}", access_modes=[volume.get("access_mode") or "ReadWriteOnce"],
            size=str(volume["size"]), storage_class_name=volume.get("storage_class") or "", **extra)
        task.set_display_name(f"create volume {volume['name']}")
        task.set_caching_options(False)  # a cached claim name would be an earlier run's claim
        created[volume["name"]] = task
    stages.claims = {name: task.outputs["name"] for name, task in created.items()}
    return created


def delete_volumes(stages: StageTasks, created: dict, last: list) -> None:
    """Delete each per-run claim once every stage is done, unless its volume says ``"keep": true``.
    (A failed run keeps its claims, so their files can be looked at; delete them with kubectl.)"""
    from kfp import kubernetes

    for volume in stages.placement.volumes:
        if volume.get("new") and not volume.get("keep"):
            task = kubernetes.DeletePVC(pvc_name=stages.claims[volume["name"]]).after(*last)
            task.set_display_name(f"delete volume {volume['name']}")
            task.set_caching_options(False)


def as_pipeline(body, signature: inspect.Signature, pipeline: Pipeline, options: CompileOptions,
                summary: str | None = None):
    """``body`` with ``signature`` as the ``@dsl.pipeline`` of ``pipeline``."""
    from kfp import dsl

    body.__signature__ = signature
    body.__name__ = kfp_name(options.name or pipeline.name).replace("-", "_")
    body.__doc__ = options.description or (
        f"Pipeline '{pipeline.name}' compiled by jupyter-pipeline from {Path(pipeline.path).name}: "
        f"{summary or f'{len(pipeline.stages)} stage(s)'}."
    )
    return dsl.pipeline(name=kfp_name(options.name or pipeline.name), description=body.__doc__)(body)


def compile_pipeline(pipeline: Pipeline, path: str | os.PathLike | None = None,
                     options: CompileOptions | None = None) -> str:
    """Compile ``pipeline``; write the YAML to ``path`` when given and return it."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # kfp's notice about its default base image
        graph = build(pipeline, options)
    return compile_graph(graph, pipeline, path)


@dataclass(frozen=True)
class Compiled:
    """A pipeline compiled for a cluster: the YAML, the options used and the packed working files."""

    yaml: str
    options: CompileOptions
    files: object  # files.Bundle | None


def compile_for_cluster(pipeline: Pipeline, settings: Settings, path: str | os.PathLike | None = None,
                        upload: bool = True, capture_packages: bool = False, **overrides) -> Compiled:
    """Compile ``pipeline`` as it will run on a cluster: image and packages from ``settings``, the
    working files packed and (``upload``) put in the store the pods use; YAML written to ``path``.

    One outcome: the YAML is written only once everything it refers to is in place (its folder exists,
    its files' bundle is in the store), so a failure leaves nothing behind that could not run.
    """
    from .files import bundle, publish

    if path is not None:
        check_writable(path)
    packed = bundle(pipeline)
    options = CompileOptions.for_pipeline(pipeline, settings, files_key=packed.key if packed else None,
                                          capture_packages=capture_packages or None, **overrides)
    text = compile_pipeline(pipeline, None, options)
    if upload:
        publish(options.store, packed)
    if path is not None:
        Path(path).write_text(text)
    return Compiled(text, options, packed)


def check_writable(path: str | os.PathLike) -> None:
    """Raise :class:`TargetError` unless a file can be written at ``path`` (its folder exists, it is not a folder)."""
    target = Path(path)
    folder = target.parent
    if target.is_dir():
        raise TargetError(f"Cannot write the pipeline to {target}: it is a folder; name a file, like "
                          f"{target / 'pipeline.yaml'}.")
    if not folder.is_dir():
        raise TargetError(f"Cannot write the pipeline to {target}: the folder {folder} does not exist; create it first "
                          "or name a file in an existing folder.")
    if not os.access(folder, os.W_OK):
        raise TargetError(f"Cannot write the pipeline to {target}: the folder {folder} is not writable.")


def compile_graph(graph, pipeline: Pipeline, path: str | os.PathLike | None = None) -> str:
    """The YAML of a built ``@dsl.pipeline``; written to ``path`` too when given."""
    from kfp import compiler

    with tempfile.TemporaryDirectory(prefix="jp-kfp-") as tmp:
        target = Path(tmp) / "pipeline.yaml"
        try:
            compiler.Compiler().compile(pipeline_func=graph, package_path=str(target))
        except (ValueError, TypeError) as exc:
            raise TargetError(f"The kfp compiler rejected {pipeline.path}: {exc}") from None
        text = target.read_text()
    if path is not None:
        Path(path).write_text(text)
    return text


def parameter_arguments(pipeline: Pipeline, values: dict) -> dict:
    """Run arguments for the compiled pipeline's parameters (``None``-default ones travel as JSON text)."""
    out = {}
    for p in pipeline.parameters:
        if p.name not in values:
            continue
        value = values[p.name]
        if p.type == "NoneType":
            value = NONE_PREFIX + json.dumps(value)
        elif p.type == "tuple":
            value = list(value)
        if value is not None:
            out[p.name] = value
    return out


__all__ = ["CompileOptions", "Compiled", "compile_for_cluster", "DEFAULT_IMAGE", "JOB_ID_PLACEHOLDER", "build",
           "compile_pipeline", "parameter_arguments", "kfp_name"]
