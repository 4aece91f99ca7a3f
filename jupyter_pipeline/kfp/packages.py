"""Which pip requirements each stage's component installs when its pod starts.

Every stage gets the notebook's ``packages`` (and those of the settings, :mod:`jupyter_pipeline.settings`).
With ``--capture-packages`` each stage also gets the third-party distributions its code and the
setup code import, pinned to the versions installed where the notebook was written, so the pod
computes with what the notebook was developed against.
"""

from __future__ import annotations

import ast
import re
import sys
from importlib import metadata
from urllib.parse import urlparse

from ..notebook import analysis
from ..notebook.pipeline import Pipeline

#: Distributions the image already has by construction; pinning them would reinstall the runner.
PROVIDED = frozenset({"jupyter-pipeline", "kfp", "kfp-pipeline-spec", "kfp-kubernetes", "kfp-server-api"})


def imported_modules(source: str) -> set[str]:
    """Top-level module names ``source`` imports."""
    try:
        tree = ast.parse(analysis.to_python(source))
    except SyntaxError:
        return set()
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module.split(".")[0])
    return names


def pins(modules: set[str]) -> list[str]:
    """``distribution==version`` of the installed third-party distributions providing ``modules``."""
    owners = metadata.packages_distributions()
    out = set()
    for module in modules:
        if module in sys.stdlib_module_names:
            continue
        for dist in owners.get(module, ()):
            name = metadata.metadata(dist)["Name"]
            if _normal(name) not in PROVIDED:
                out.add(f"{name}=={metadata.version(dist)}")
    return sorted(out, key=str.lower)


def _normal(name: str) -> str:
    return name.lower().replace("_", "-").replace(".", "-")


def requirement_name(text: str) -> str | None:
    """The normalised distribution name of pip requirement ``text``; None when it is not one."""
    from packaging.requirements import InvalidRequirement, Requirement

    try:
        return _normal(Requirement(text).name)
    except InvalidRequirement:
        return None


def stage_packages(pipeline: Pipeline, packages: list[str], capture: bool = False) -> dict[str, list[str]]:
    """The requirements of each stage: ``packages``, then (``capture``) the pinned imports."""
    out = {}
    setup = set().union(*(imported_modules(pipeline.cells[i].source) for i in pipeline.setup_cells))
    for stage in pipeline.stages:
        extra = []
        if capture:
            modules = setup.union(*(imported_modules(pipeline.cells[i].source) for i in stage.cells
                                    if pipeline.cells[i].cell_type == "code"))
            named = {requirement_name(p) for p in packages}
            extra = [p for p in pins(modules) if _normal(p.split("==")[0]) not in named]
        out[stage.name] = list(packages) + extra
    return out


def pip_install_command(packages: list[str], index_urls: list[str] | None = None) -> list[str]:
    """The pip command that installs ``packages`` as a stage component does when its pod starts
    (kfp's ``packages_to_install``): the first of ``index_urls`` replaces PyPI, the others are
    searched too, and their hosts are trusted (an air-gapped mirror often has no public certificate)."""
    urls = list(index_urls or [])
    options = []
    for position, url in enumerate(urls):
        options += ["--index-url" if position == 0 else "--extra-index-url", url]
    for url in urls:
        host = urlparse(url).netloc
        if host:
            options += ["--trusted-host", host]
    return [sys.executable, "-m", "pip", "install", "--quiet", "--no-warn-script-location",
            "--disable-pip-version-check", *options, *packages]


def failed_requirements(packages: list[str], pip_output: str) -> list[str]:
    """The requirements among ``packages`` that pip's error lines name; all of them when none is named."""
    errors = " ".join(line for line in pip_output.splitlines() if "error" in line.lower())
    errors = _normal(errors)
    named = [p for p in packages
             if re.search(rf"(?<![a-z0-9-]){re.escape(requirement_name(p) or _normal(p))}(?![a-z0-9-])", errors)]
    return named or list(packages)


__all__ = ["stage_packages", "imported_modules", "pins", "pip_install_command", "failed_requirements"]
