"""Which pip requirements each stage's component installs when its pod starts.

Every stage gets the notebook's ``packages`` (and those of the settings, :mod:`jupyter_pipeline.settings`).
With ``--capture-packages`` each stage also gets the third-party distributions its code and the
setup code import, pinned to the versions installed where the notebook was written, so the pod
computes with what the notebook was developed against.
"""

from __future__ import annotations

import ast
import sys
from importlib import metadata

from .. import analysis
from ..pipeline import Pipeline

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


__all__ = ["stage_packages", "imported_modules", "pins"]
