"""Typed records of a parsed pipeline: cells, stages, parameters, problems.

Built by :mod:`jupyter_pipeline.notebook.parse`; everything downstream (validation, stage notebooks, the
runner, the KFP compiler, the REST API) reads these and nothing else of the notebook.
"""

from __future__ import annotations

import enum
import posixpath
from dataclasses import dataclass, field
from typing import Any


class Role(str, enum.Enum):
    """What a notebook cell is to the pipeline."""

    STAGE = "stage"  # starts or continues a stage
    CONTINUE = "continue"  # untagged: joins the stage before it
    SETUP = "setup"
    PARAMETERS = "parameters"
    SKIP = "skip"
    METRICS = "metrics"  # Kale's pipeline-metrics cell
    INCLUDE = "include"  # a `notebook:` cell: another notebook's cells stand in its place


@dataclass(frozen=True)
class StageOptions:
    """Execution and placement options of a stage, from its tags."""

    gpu: int = 0
    gpu_type: str | None = None
    cpu: str | None = None
    memory: str | None = None
    image: str | None = None
    retries: int = 0
    timeout: int | None = None
    cache: bool = True
    map_var: str | None = None  # `map:VAR`: run once per item of VAR
    map_chunks: int | None = None  # `map:VAR:CHUNKS`: split VAR into CHUNKS parts
    map_as: str = "item"  # `map:VAR:as=NAME`: the name each run sees its item under
    parallelism: int | None = None  # at most this many items at once (`parallelism:N`)
    workers: int = 1  # `workers:N`: N replicas started together (a gang); see jupyter_pipeline.distributed
    # Pod options, applied on Kubeflow. Mappings and lists add up across cells and defaults
    # (see ``merged``); the stage's own tags win over notebook-wide ones.
    labels: dict[str, str] = field(default_factory=dict, hash=False)  # `label:KEY:VALUE`
    annotations: dict[str, str] = field(default_factory=dict, hash=False)  # `annotation:KEY:VALUE`
    #: `secret:NAME:KEY:ENV` → {"name", "key", "env"}; `secret:NAME:/path` → {"name", "path"}
    secrets: tuple[dict, ...] = field(default=(), hash=False)
    volumes: tuple[dict, ...] = field(default=(), hash=False)  # `volume:CLAIM:/path` → {"name", "mount_path"}
    env: dict[str, str] = field(default_factory=dict, hash=False)  # `env:NAME=VALUE`
    node_selector: dict[str, str] = field(default_factory=dict, hash=False)  # `node:KEY=VALUE`
    #: `toleration:KEY[=VALUE]:EFFECT` → {"key", "operator", "value"?, "effect"}
    tolerations: tuple[dict, ...] = field(default=(), hash=False)
    shm: str | None = None  # `shm:SIZE`: a memory-backed /dev/shm
    condition: str | None = None  # `if:EXPR`: run only when EXPR holds (see notebook.condition)

    def merged(self, other: "StageOptions") -> "StageOptions":
        """Options of ``self`` overridden by whatever ``other`` sets (non-default); mappings are
        merged key by key and lists concatenated."""
        base = StageOptions()
        values = {}
        for name in self.__dataclass_fields__:
            mine, theirs = getattr(self, name), getattr(other, name)
            if isinstance(mine, dict):
                values[name] = {**mine, **theirs}
            elif name == "condition" and mine and theirs and mine != theirs:
                values[name] = f"({mine}) and ({theirs})"  # every `if:` of a stage must hold
            elif isinstance(mine, tuple):
                values[name] = mine + tuple(x for x in theirs if x not in mine)
            else:
                values[name] = theirs if theirs != getattr(base, name) else mine
        return StageOptions(**values)

    def to_json(self) -> dict:
        out = {name: getattr(self, name) for name in self.__dataclass_fields__}
        for name in ("secrets", "volumes", "tolerations"):
            out[name] = [dict(entry) for entry in getattr(self, name)]
        if out["condition"] is None:
            del out["condition"]  # stage notebooks of unconditional stages stay as they were
        return out


@dataclass(frozen=True)
class Cell:
    """One notebook cell as the pipeline sees it."""

    index: int  # position in the notebook, 0-based
    cell_type: str  # "code" | "markdown" | "raw"
    source: str  # with a leading %%stage line removed
    role: Role
    stage: str | None = None  # the stage it belongs to, once grouped
    tags: tuple[str, ...] = ()
    defines: frozenset[str] = frozenset()
    uses: frozenset[str] = frozenset()
    notebook: str = ""  # the notebook it comes from, relative to the root notebook's folder ("" for the root)
    source_index: int | None = None  # its index in that notebook (None: ``index``, a notebook without includes)

    @property
    def own_index(self) -> int:
        """The cell's index in its own notebook (what JupyterLab shows as its number, minus one)."""
        return self.index if self.source_index is None else self.source_index


@dataclass(frozen=True)
class Included:
    """A notebook included by a ``notebook:`` cell (see :mod:`.compose`)."""

    path: str  # relative to the root notebook's folder, with '/'
    parent: str  # the notebook holding the reference ("" for the root)
    cell: int  # the reference cell's index in that notebook
    depth: int  # 1 for a notebook the root includes, 2 for one that notebook includes, ...
    prefix: str  # what qualifies its stage names where another notebook uses the same
    kale: bool = False  # referenced in Kale 2.3's spelling (`notebook:NAME` + `notebook_path` metadata)
    settings: dict = field(default_factory=dict, hash=False, compare=False)

    @property
    def folder(self) -> str:
        """Its folder relative to the root notebook's ("" when the same): where its stages run."""
        return posixpath.dirname(self.path)

    def to_json(self) -> dict:
        return {"path": self.path, "parent": self.parent, "cell": self.cell, "depth": self.depth,
                "prefix": self.prefix, "spelling": "kale" if self.kale else "native"}


@dataclass(frozen=True)
class Parameter:
    """A pipeline parameter from the ``parameters`` cell, with its literal default."""

    name: str
    default: Any
    type: str  # "int" | "float" | "bool" | "str" | "list" | "dict" | "NoneType"
    cell: int

    def to_json(self) -> dict:
        return {"name": self.name, "default": self.default, "type": self.type, "cell": self.cell}


@dataclass(frozen=True)
class WorkFolder:
    """A stage that works in a fresh folder of its own rather than the notebook's (an Elyra node):
    what is copied into it, and the environment it sets. The files upstream stages pass on are
    ``Stage.files_in``; see :mod:`jupyter_pipeline.stage.workfolder`."""

    base: str  # folder (relative to the pipeline file's) that ``ship`` is relative to
    ship: tuple[str, ...] = ()  # files or globs copied into the working folder: the stage's file, its dependencies
    recursive: bool = False  # a shipped folder brings its sub-folders too
    env: dict[str, str] = field(default_factory=dict, hash=False)  # set in the kernel, locally too
    keep_env: tuple[str, ...] = ()  # names a pod may already have from a Kubernetes secret, which then wins
    env_parameters: tuple[str, ...] = ()  # pipeline parameters passed as environment variables
    digest: str = ""  # of the shipped files' contents, so that editing one re-runs the stage
    run: str = ""  # "python" or "r": the stage runs the script ``ship[0]`` (else its cells are a notebook's)

    def to_json(self) -> dict:
        return {"base": self.base, "ship": list(self.ship), "recursive": self.recursive, "env": dict(self.env),
                "keep_env": list(self.keep_env), "env_parameters": list(self.env_parameters), "digest": self.digest,
                "run": self.run}


@dataclass(frozen=True)
class Stage:
    """A pipeline stage: its cells, its dependencies and the variables it receives and sends."""

    name: str
    cells: tuple[int, ...]  # indices of its cells (code and markdown) in notebook order
    after: tuple[str, ...] = ()  # explicit `after:` dependencies
    options: StageOptions = StageOptions()
    defines: frozenset[str] = frozenset()  # top-level names it binds
    uses: frozenset[str] = frozenset()  # names it reads before binding them
    inputs: tuple[tuple[str, str], ...] = ()  # (variable, producing stage), sorted
    outputs: tuple[str, ...] = ()  # variables later stages receive from it
    parameters: tuple[str, ...] = ()  # parameters its code (or the setup code) uses
    depends_on: tuple[str, ...] = ()  # every upstream stage: data edges plus `after:`
    metrics_cell: bool = False  # Kale's pipeline-metrics: log its names as metrics
    #: (variable, kind) of its outputs a later stage's condition reads: saved as plain scalars too,
    #: and on Kubeflow outputs of its component (kind: "float", "str" or "bool"; see notebook.condition)
    scalars: tuple[tuple[str, str], ...] = ()
    #: Files, passed through the store like variables: (file or glob, producing stage) it receives
    #: into its working folder, and the files (or globs) of its working folder later stages receive.
    files_in: tuple[tuple[str, str], ...] = ()
    files_out: tuple[str, ...] = ()
    workdir: WorkFolder | None = None  # runs in a working folder of its own (an Elyra node)
    notebook: str = ""  # the included notebook whose cells it holds ("" for the root notebook)

    @property
    def folder(self) -> str:
        """The folder it runs in, relative to the root notebook's ("" for the root's own)."""
        return posixpath.dirname(self.notebook)

    def to_json(self) -> dict:
        return {
            "name": self.name,
            "notebook": self.notebook,
            "cells": list(self.cells),
            "after": list(self.after),
            "depends_on": list(self.depends_on),
            "inputs": [{"name": n, "from": s} for n, s in self.inputs],
            "outputs": list(self.outputs),
            "parameters": list(self.parameters),
            "gpu": self.options.gpu,
            "condition": self.options.condition,
            "scalars": [name for name, _ in self.scalars],
            "options": self.options.to_json(),
            "files_in": [{"file": f, "from": s} for f, s in self.files_in],
            "files_out": list(self.files_out),
            "workdir": self.workdir.to_json() if self.workdir else None,
        }


@dataclass(frozen=True)
class Problem:
    """One validation finding, returned as data with every other one."""

    severity: str  # "error" | "warning" | "info"
    code: str  # stable id, e.g. "cycle", "undefined-name"
    message: str
    stage: str | None = None
    cell: int | None = None
    line: int | None = None
    notebook: str | None = None  # an included notebook the cell is in (None: the notebook itself)

    def describe(self) -> str:
        where = [self.notebook] if self.notebook else []
        if self.cell is not None:
            # Messages count cells from 1, as people do; the JSON field ``cell`` is the 0-based index.
            where.append(f"cell {self.cell + 1}" + (f" line {self.line}" if self.line else ""))
        if self.stage:
            where.append(f"stage '{self.stage}'")
        return (f"[{', '.join(where)}] " if where else "") + self.message

    def to_json(self) -> dict:
        return {
            "severity": self.severity,
            "code": self.code,
            "message": self.message,
            "stage": self.stage,
            "cell": self.cell,
            "line": self.line,
            **({"notebook": self.notebook} if self.notebook else {}),  # in an included notebook only
        }


@dataclass(frozen=True)
class Pipeline:
    """A parsed notebook: its stages in notebook order, parameters, setup code and problems."""

    name: str
    path: str
    cells: tuple[Cell, ...]
    stages: tuple[Stage, ...]
    parameters: tuple[Parameter, ...] = ()
    setup_cells: tuple[int, ...] = ()
    settings: dict = field(default_factory=dict, hash=False, compare=False)
    problems: tuple[Problem, ...] = ()
    star_import: bool = False
    kernel_name: str = "python3"
    notebooks: tuple[Included, ...] = ()  # notebooks its `notebook:` cells include, in reading order

    # -- lookups ---------------------------------------------------------------------------------
    def stage(self, name: str) -> Stage:
        for stage in self.stages:
            if stage.name == name:
                return stage
        from ..exceptions import PipelineError

        raise PipelineError(f"Pipeline '{self.name}' has no stage '{name}'; stages: {', '.join(self.stage_names)}.")

    @property
    def stage_names(self) -> list[str]:
        return [s.name for s in self.stages]

    def setup_source(self, index: int) -> str:
        """The code setup cell ``index`` runs at the start of every stage: all of it, but only the imports
        of a ``parameters`` cell (its assignments are the parameters, injected with each run's values)."""
        cell = self.cells[index]
        if cell.role == Role.PARAMETERS:
            from .analysis import imports_only

            return imports_only(cell.source)
        return cell.source

    def setup_cells_of(self, stage: Stage) -> tuple[int, ...]:
        """The setup cells ``stage`` runs: those of its own notebook (an included notebook's are its own)."""
        seen: set[int] = set()
        mine = []
        for index in self.setup_cells:
            cell = self.cells[index]
            if cell.notebook == stage.notebook and cell.own_index not in seen:
                seen.add(cell.own_index)
                mine.append(index)
        return tuple(mine)

    @property
    def notebook_edges(self) -> list[tuple[str, str, list[str]]]:
        """``(upstream notebook, downstream notebook, variables)`` for stage edges that cross notebooks."""
        by_name = {s.name: s for s in self.stages}
        found: dict[tuple[str, str], list[str]] = {}
        for s in self.stages:
            for up in s.depends_on:
                if up in by_name and by_name[up].notebook != s.notebook:
                    names = found.setdefault((by_name[up].notebook, s.notebook), [])
                    names += [v for v, p in s.inputs if p == up and v not in names]
        return [(a, b, names) for (a, b), names in found.items()]

    def stage_json(self, stage: Stage) -> dict:
        """``stage.to_json()`` with its cells numbered in its own notebook."""
        return {**stage.to_json(), "cells": [self.cells[i].own_index for i in stage.cells]}

    def parameter(self, name: str) -> Parameter | None:
        return next((p for p in self.parameters if p.name == name), None)

    @property
    def edges(self) -> list[tuple[str, str]]:
        """(upstream, downstream) pairs, in notebook order of the downstream stage."""
        return [(up, s.name) for s in self.stages for up in s.depends_on]

    def dependency_order(self) -> list[Stage]:
        """Stages with every upstream stage first, otherwise in notebook order (``after:`` may name a
        later stage); raises :class:`TargetError` on a cycle, which validation reports first."""
        done: dict[str, Stage] = {}
        by_name = {s.name: s for s in self.stages}

        def visit(stage: Stage, path: tuple) -> None:
            if stage.name in done:
                return
            if stage.name in path:
                from ..exceptions import TargetError

                raise TargetError(f"{self.path}: stages {' -> '.join(path + (stage.name,))} form a cycle.")
            for up in stage.depends_on:
                visit(by_name[up], path + (stage.name,))
            done[stage.name] = stage

        for stage in self.stages:
            visit(stage, ())
        return list(done.values())

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == "error"]

    @property
    def ok(self) -> bool:
        return not self.errors

    def require_valid(self) -> "Pipeline":
        """Return self, or raise :class:`ValidationFailed` listing the errors."""
        if self.errors:
            from ..exceptions import ValidationFailed

            raise ValidationFailed(self.path, self.errors)
        return self

    def to_json(self) -> dict:
        return {
            "name": self.name,
            "path": self.path,
            "stages": [self.stage_json(s) for s in self.stages],
            "edges": [list(e) for e in self.edges],
            "parameters": [{**p.to_json(), "cell": self.cells[p.cell].own_index,
                            "notebook": self.cells[p.cell].notebook} for p in self.parameters],
            "setup_cells": [self.cells[i].own_index for i in self.setup_cells if not self.cells[i].notebook],
            "notebooks": [n.to_json() for n in self.notebooks],
            "notebook_edges": [{"from": a, "to": b, "variables": v} for a, b, v in self.notebook_edges],
            "settings": self.settings,
            "problems": [p.to_json() for p in self.problems],
        }
