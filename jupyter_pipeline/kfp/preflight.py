"""What a pipeline will need on a cluster, said before it goes there: the image its stages run in
(and where that choice came from), the working files that travel, the packages each stage installs,
and warnings (the built-in image is not published; a `files` pattern matches nothing).

``validate`` and ``compile`` print it; the server's ``pipeline`` and ``compile`` answers carry it
as ``kubeflow``, so the publish dialog can show it.
"""

from __future__ import annotations

from ..notebook.pipeline import Pipeline, Problem
from ..settings import DEFAULT_IMAGE, Settings
from . import files as files_mod
from .conditions import condition_problems
from .packages import requirement_name


def image_problem(pipeline: Pipeline, image: str, source: str) -> Problem | None:
    """A warning when stages would run in the built-in image, which nobody publishes."""
    if source != "default" or all(s.options.image for s in pipeline.stages):
        return None
    return Problem("warning", "default-image",
                   f"stages without an image: tag run in {image}, the built-in default, which is not "
                   "published: build it from the project's Dockerfile and push it to a registry the cluster can "
                   "pull from, then name it (--image, JUPYTER_PIPELINE_IMAGE, the notebook's `image` setting or "
                   "`image` in the config file)")


def settings_problems(pipeline: Pipeline, directory=None) -> list[Problem]:
    """Problems of the Kubeflow-only notebook settings (`packages`, `pip_index_urls`, `files`)."""
    s, out = pipeline.settings, []
    for key in ("packages", "pip_index_urls", "files"):
        value = s.get(key)
        if value is not None and not (isinstance(value, list) and all(isinstance(v, str) for v in value)):
            out.append(Problem("error", "bad-setting", f"notebook setting `{key}` must be a list of strings"))
    for text in s.get("packages") or [] if isinstance(s.get("packages"), list) else []:
        if isinstance(text, str) and requirement_name(text) is None:
            out.append(Problem("error", "bad-setting", f"notebook setting `packages`: {text!r} is not a pip "
                                                       "requirement (e.g. pandas>=2.1)"))
    root = files_mod.notebook_dir(pipeline, directory)
    for pattern in s.get("files") or [] if isinstance(s.get("files"), list) else []:
        if root is not None and isinstance(pattern, str) and not list(root.glob(pattern)):
            out.append(Problem("warning", "files-unmatched", f"notebook setting `files`: {pattern!r} matches nothing "
                                                             f"next to the notebook"))
    return out


def preflight(pipeline: Pipeline, settings: Settings | None = None, directory=None) -> dict:
    """``{"image", "image_source", "files", "packages", "problems"}`` of ``pipeline`` on Kubeflow;
    ``directory`` is the notebook's folder when the pipeline was not read from its file."""
    settings = settings or Settings(notebook=pipeline.settings)
    image = settings.resolve("image")
    problems = settings_problems(pipeline, directory)
    warning = image_problem(pipeline, image.value, image.source)
    if warning is not None:
        problems.append(warning)
    problems += condition_problems(pipeline)
    return {
        "image": image.value or DEFAULT_IMAGE,
        "image_source": image.source,
        "files": files_mod.travelling(pipeline, directory),
        "packages": settings.get("packages"),
        "problems": [p.to_json() for p in problems],
    }


def describe(notes: dict) -> list[str]:
    """The preflight notes as lines for a terminal."""
    lines = [f"on Kubeflow: image {notes['image']} (from {notes['image_source']})"]
    if notes["files"]:
        shown = ", ".join(notes["files"][:8]) + (f" and {len(notes['files']) - 8} more" if len(notes["files"]) > 8 else "")
        lines.append(f"files that travel to the pods: {shown}")
    if notes["packages"]:
        lines.append(f"packages each stage installs: {' '.join(notes['packages'])}")
    lines += [f"on Kubeflow, {p['severity']}: {p['message']}  [{p['code']}]" for p in notes["problems"]]
    return lines


__all__ = ["preflight", "describe", "image_problem"]
