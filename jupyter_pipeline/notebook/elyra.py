"""Elyra pipeline files (``*.pipeline``, pipeline-flow v3 JSON) read as a :class:`Pipeline`.

Each notebook, Python or R node of the primary pipeline is one stage that runs its file whole, as
Elyra runs it: a notebook's cells in one kernel (papermill), a script with ``python``/``Rscript``.
The stage works in a folder of its own (:class:`~.pipeline.WorkFolder`) holding the node's file,
its ``dependencies`` and the ``outputs`` of every node upstream of it, which travel through the
store (``Stage.files_in``/``files_out``). Links are dependencies; node properties, merged over the
pipeline's ``pipeline_defaults``, become the stage's options (image, resources, env, secrets,
volumes, pod metadata, tolerations, shared memory, caching); ``pipeline_parameters`` become the
pipeline's parameters, passed to the nodes that list them as environment variables, as Elyra does.
Whatever has no equivalent is a warning naming the field and the node; what cannot run (an unknown
node type, a missing file, a link cycle) is an error naming the node.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
from pathlib import Path

import nbformat

from ..exceptions import PipelineFileError
from .elyra_options import Node, linked, node_options
from .pipeline import Cell, Parameter, Pipeline, Problem, Role, Stage, StageOptions, WorkFolder

SUFFIX = ".pipeline"
#: Node ops this reader runs, and how: the key ``run_file`` of the stage's code takes.
RUNNERS = {"execute-notebook-node": "notebook", "execute-python-node": "python", "execute-r-node": "r"}
#: Elyra's pipeline parameter types and ours.
PARAMETER_TYPES = {"String": str, "Integer": int, "Float": float, "Bool": bool, "Boolean": bool}
#: Node properties read below; anything else in ``component_parameters`` is a warning.
KNOWN = frozenset({
    "filename", "runtime_image", "dependencies", "include_subdirectories", "outputs", "env_vars",
    "kubernetes_secrets", "mounted_volumes", "kubernetes_pod_labels", "kubernetes_pod_annotations",
    "kubernetes_tolerations", "kubernetes_shared_mem_size", "cpu", "gpu", "memory", "gpu_vendor",
    "disable_node_caching", "pipeline_parameters", "cpu_limit", "memory_limit",
})
#: Pipeline properties that need no equivalent (what Elyra's editor shows, or which runtime it targets).
PIPELINE_KEYS = frozenset({"name", "description", "runtime", "runtime_type", "pipeline_defaults",
                           "pipeline_parameters", "disable_node_caching"})


def is_pipeline_file(path) -> bool:
    """Whether ``path`` names an Elyra pipeline file (by its suffix, as JupyterLab and Elyra tell them)."""
    return Path(str(path)).suffix.lower() == SUFFIX


def read_pipeline_file(path) -> dict:
    """The JSON of the pipeline file at ``path``; every way it can fail is :class:`PipelineFileError`."""
    path = Path(path)
    if not path.exists():
        raise PipelineFileError(path, "no such file")
    if path.is_dir():
        raise PipelineFileError(path, "it is a directory")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise PipelineFileError(path, str(exc)) from None
    except ValueError as exc:
        raise PipelineFileError(path, f"not JSON ({exc})") from None
    if not isinstance(data, dict) or data.get("doc_type", "pipeline") != "pipeline" or \
            not isinstance(data.get("pipelines"), list):
        raise PipelineFileError(path, "not an Elyra pipeline (pipeline-flow JSON with `doc_type` \"pipeline\" "
                                      "and a list of `pipelines`)")
    if not str(data.get("version", "3")).startswith("3"):
        raise PipelineFileError(path, f"pipeline-flow version {data.get('version')!r}; only version 3 "
                                      "(what Elyra 3 and 4 write) is read")
    return data


def load_pipeline_file(path, shown: str | None = None) -> Pipeline:
    """Read and check the Elyra pipeline at ``path``; ``shown`` is the path messages and the
    pipeline's ``path`` use (the server passes the path relative to its root)."""
    return Reader(Path(path), shown or str(path)).read(read_pipeline_file(path))


def stage_name(label: str, taken: set[str]) -> str:
    """A stage name (``^[a-z][a-z0-9_-]{0,62}$``) made from a node's label, unique among ``taken``."""
    stem = re.sub(r"\.(ipynb|py|r)$", "", label.strip(), flags=re.I).lower()
    base = re.sub(r"^[^a-z]+", "", re.sub(r"[^a-z0-9_-]+", "-", stem))[:60].strip("-_") or "node"
    name, n = base, 2
    while name in taken:
        name, n = f"{base}-{n}", n + 1
    taken.add(name)
    return name


class Reader:
    """Turns pipeline-flow JSON into stages, collecting every problem."""

    def __init__(self, path: Path, shown: str):
        self.path, self.shown, self.root = path, shown, path.resolve().parent
        self.problems: list[Problem] = []
        self.cells: list[Cell] = []
        self.files: list[str] = []  # what travels to the pods (kfp/files.py): paths relative to the root

    def problem(self, severity: str, code: str, message: str, stage: str | None = None) -> None:
        self.problems.append(Problem(severity, code, message, stage=stage))

    def read(self, data: dict) -> Pipeline:
        primary = self._primary(data)
        app = primary.get("app_data") if isinstance(primary.get("app_data"), dict) else {}
        props = app.get("properties") if isinstance(app.get("properties"), dict) else {}
        defaults = props.get("pipeline_defaults") if isinstance(props.get("pipeline_defaults"), dict) else {}
        parameters = self._parameters(props.get("pipeline_parameters") or [])
        for key in sorted(set(props) - PIPELINE_KEYS):
            self.problem("warning", "elyra-unsupported", f"pipeline property `{key}` has no equivalent here and "
                         "is ignored" + (" (node files go to the run's folder in the store)"
                                         if key == "cos_object_prefix" else ""))
        pipelines = {p.get("id"): p for p in data["pipelines"] if isinstance(p, dict)}
        nodes = self._nodes(primary.get("nodes") or [], defaults, pipelines)
        taken: set[str] = set()
        names = {n.id: stage_name(n.label, taken) for n in nodes}
        stages = [self._stage(n, names, {p.name for p in parameters}) for n in nodes]
        stages = self._with_files(stages, nodes, names)
        self._cycles(stages, {names[n.id]: n for n in nodes})
        if not stages:
            self.problem("error", "no-stages", "the pipeline has no nodes to run")
        images = sorted({s.options.image for s in stages if s.options.image})
        if images:
            self.problem("info", "elyra-runtime-image", f"on Kubeflow each node runs in its runtime image "
                         f"({', '.join(images)}), which must have jupyter-pipeline and kfp installed, as any stage's "
                         "image (Elyra's bootstrapper installs its own tools into the image when the pod starts; "
                         "here build an image FROM it with `pip install jupyter-pipeline`); local runs do not use it")
        name = props.get("name") or app.get("name") or self.path.stem
        return Pipeline(
            name=re.sub(r"[^a-z0-9-]+", "-", str(name).lower()).strip("-") or "pipeline",
            path=self.shown, cells=tuple(self.cells), stages=tuple(stages), parameters=tuple(parameters),
            settings={"files": sorted(set(self.files))},
            problems=tuple(self.problems), kernel_name="python3",
        )

    def _primary(self, data: dict) -> dict:
        pipelines = [p for p in data["pipelines"] if isinstance(p, dict)]
        wanted = data.get("primary_pipeline")
        primary = next((p for p in pipelines if p.get("id") == wanted), pipelines[0] if pipelines else None)
        if primary is None:
            raise PipelineFileError(self.shown, "its `pipelines` list is empty")
        return primary

    def _parameters(self, raw) -> list[Parameter]:
        out = []
        for entry in raw if isinstance(raw, list) else []:
            if not isinstance(entry, dict) or not entry.get("name"):
                continue
            default = entry.get("default_value") if isinstance(entry.get("default_value"), dict) else {}
            kind = PARAMETER_TYPES.get(default.get("type"), str)
            value = entry.get("value") if entry.get("value") not in (None, "") else default.get("value")
            try:
                value = kind() if value in (None, "") else kind(value)
            except (TypeError, ValueError):
                self.problem("error", "elyra-parameter", f"pipeline parameter '{entry['name']}' has the value "
                             f"{value!r}, which is not of its type {default.get('type')}")
                continue
            out.append(Parameter(str(entry["name"]), value, kind.__name__, -1))
        return out

    def _nodes(self, raw: list, defaults: dict, pipelines: dict, outer: dict | None = None,
               seen: tuple = ()) -> list[Node]:
        """The runnable nodes of ``raw``; a supernode's nodes stand in its place (``outer``: the
        supernode whose pipeline ``raw`` is, whose input ports link into its nodes)."""
        nodes = []
        for item in raw:
            if not isinstance(item, dict):
                continue
            node = Node(item, defaults)
            if outer is not None:
                node.parents += linked(outer.get("inputs") or [], f"{node.id}_inPort")
            if node.type == "binding":
                continue  # a supernode's port: the links already say what it connects
            if node.type == "super_node":
                ref = (item.get("subflow_ref") or {}).get("pipeline_id_ref")
                if ref in pipelines and ref not in seen:
                    nodes += self._nodes(pipelines[ref].get("nodes") or [], defaults, pipelines, item, seen + (ref,))
                else:
                    self.problem("error", "elyra-node-type", f"supernode '{node.label}' refers to pipeline {ref}, "
                                 + ("which contains it" if ref in seen else "which is not in the file"))
                continue
            if node.type != "execution_node":
                self.problem("error", "elyra-node-type", f"{node} is a `{node.type}`; jupyter-pipeline runs "
                             "execution nodes (notebooks, Python and R scripts) only")
                continue
            if node.op not in RUNNERS:
                self.problem("error", "elyra-node-type", f"{node} runs the component `{node.op}`; jupyter-pipeline "
                             "runs notebook (execute-notebook-node), Python (execute-python-node) and R "
                             "(execute-r-node) nodes only")
                continue
            nodes.append(node)
        return nodes

    def _stage(self, node: Node, names: dict[str, str], parameters: set[str]) -> Stage:
        name = names[node.id]
        kind = RUNNERS[node.op]
        for key in sorted(set(node.params) - KNOWN):
            self.problem("warning", "elyra-unsupported", f"{node}: property `{key}` has no equivalent here and is "
                         "ignored", name)
        file = self.root / node.filename if node.filename else None
        cells = self._code(node, name, kind, file)
        folder = (Path(node.filename).parent.as_posix() if node.filename else ".")
        ship = [Path(node.filename).name] + [str(d) for d in node.params.get("dependencies") or [] if d]
        recursive = bool(node.params.get("include_subdirectories"))
        self._ship(node, name, folder, ship)
        options, env, secret_env = self._options(node, name)
        used = [p for p in node.params.get("pipeline_parameters") or [] if isinstance(p, str)]
        for p in used:
            if p not in parameters:
                self.problem("error", "elyra-parameter", f"{node} uses pipeline parameter '{p}', which the pipeline "
                             f"does not define (it has: {', '.join(sorted(parameters)) or 'none'})", name)
        used = tuple(p for p in used if p in parameters)
        outputs = tuple(str(o) for o in node.params.get("outputs") or [] if o)
        parents = [names[p] for p in node.parents if p in names]
        for p in node.parents:
            if p not in names:
                self.problem("error", "elyra-link", f"{node} is linked to node {p}, which is not in the pipeline "
                             "(or is not a node that runs)", name)
        return Stage(
            name=name, cells=tuple(cells), after=tuple(dict.fromkeys(parents)), options=options,
            parameters=used, depends_on=tuple(dict.fromkeys(parents)), files_out=outputs, notebook=node.filename,
            workdir=WorkFolder(folder, tuple(ship), recursive, env, secret_env, used, self._digest(folder, ship),
                              run="" if kind == "notebook" else kind),
        )

    def _code(self, node: Node, name: str, kind: str, file: Path | None) -> list[int]:
        """The stage's cells: a notebook's own cells; none for a script (the stage notebook runs it)."""
        if file is None or not file.is_file():
            self.problem("error", "elyra-missing-file",
                         f"node '{node.label}': its file {node.filename or '(none given)'} does not exist"
                         + (f" (looked in {file.parent})" if file is not None else "")
                         + "; node files are relative to the pipeline file's folder", name)
            return []
        if kind == "r" and shutil.which("Rscript") is None:
            self.problem("warning", "elyra-no-rscript", f"{node} is an R script, and `Rscript` is not on PATH here: "
                         "a local run of it fails (install R); on Kubeflow its runtime image must have R", name)
        if kind != "notebook":
            return []  # the stage notebook runs the script (WorkFolder.run); its content is in the digest
        try:
            nb = nbformat.read(file, as_version=4)
        except Exception as exc:
            reason = (str(exc).splitlines() or [type(exc).__name__])[0][:200]
            self.problem("error", "elyra-missing-file", f"{node}: {node.filename} is not a Jupyter notebook "
                         f"({reason})", name)
            return []
        language = (nb.metadata.get("kernelspec") or {}).get("language") or \
            (nb.metadata.get("language_info") or {}).get("name") or "python"
        if language.lower() != "python":
            self.problem("error", "elyra-kernel", f"{node}: the notebook is written for {language}; notebook "
                         "nodes run in a Python kernel here", name)
        indices = []
        for number, cell in enumerate(nb.cells):
            if cell.cell_type in ("code", "markdown"):
                indices.append(self._add(Cell(len(self.cells), cell.cell_type, cell.source, Role.CONTINUE,
                                              stage=name, notebook=node.filename, source_index=number)))
        if not any(self.cells[i].cell_type == "code" for i in indices):
            self.problem("warning", "empty-stage", f"{node}: the notebook has no code cells", name)
        return indices

    def _add(self, cell: Cell) -> int:
        self.cells.append(cell)
        return cell.index

    def _ship(self, node: Node, name: str, folder: str, ship: list[str]) -> None:
        """Check the node's file and dependencies exist; list them among the files that travel."""
        base = (self.root / folder).resolve()
        for pattern in ship[1:]:
            if not list(base.glob(pattern)):
                self.problem("error", "elyra-missing-file", f"{node}: its dependency {pattern} matches no file in "
                             f"{base} (dependencies are relative to the node file's folder)", name)
        for pattern in ship:
            try:
                rel = (base / pattern).resolve().relative_to(self.root) if "*" not in pattern else \
                    base.relative_to(self.root) / pattern
            except ValueError:
                self.problem("warning", "elyra-outside", f"{node}: {Path(folder, pattern).as_posix()} is outside "
                             "the pipeline file's folder, so it cannot travel to Kubeflow (local runs find it); "
                             "move the pipeline file up", name)
                continue
            self.files.append(Path(rel).as_posix())

    def _digest(self, folder: str, ship: list[str]) -> str:
        """Of the shipped files' contents: an edited dependency makes the stage run again (``--incremental``)."""
        h = hashlib.sha256()
        base = self.root / folder
        for pattern in ship:
            for match in sorted(base.glob(pattern)):
                for path in [match] if match.is_file() else sorted(match.rglob("*")):
                    if path.is_file():
                        h.update(path.relative_to(base).as_posix().encode() + b"\0" + path.read_bytes())
        return h.hexdigest()[:16]

    def _options(self, node: Node, name: str) -> tuple[StageOptions, dict, tuple]:
        options, env, secret_env, notes = node_options(node.params)
        for key, message in notes:
            self.problem("warning", "elyra-unsupported", f"{node}: {key} {message}", name)
        return options, env, secret_env

    def _with_files(self, stages: list[Stage], nodes: list[Node], names: dict[str, str]) -> list[Stage]:
        """Each stage receives the outputs of every node upstream of it (Elyra propagates them down the
        whole pipeline), nearer producers last so that their file wins."""
        by_name = {s.name: s for s in stages}
        order = _order(by_name)
        received: dict[str, list[tuple[str, str]]] = {}
        for stage in order:
            got: list[tuple[str, str]] = []
            for up in stage.depends_on:
                if up in by_name:
                    got += [f for f in received.get(up, []) if f not in got]
                    got += [(o, up) for o in by_name[up].files_out if (o, up) not in got]
            received[stage.name] = got
        from dataclasses import replace

        return [replace(s, files_in=tuple(received.get(s.name, ()))) for s in stages]

    def _cycles(self, stages: list[Stage], nodes: dict[str, Node]) -> None:
        deps = {s.name: [d for d in s.depends_on if d in nodes] for s in stages}
        state: dict[str, int] = {}
        reported: set[frozenset] = set()

        def visit(name: str, path: list[str]) -> None:
            state[name] = 1
            for dep in deps[name]:
                if state.get(dep) == 1:
                    cycle = path[path.index(dep):] + [name] if dep in path else [name, dep]
                    cycle = list(dict.fromkeys(cycle))
                    if frozenset(cycle) not in reported:
                        reported.add(frozenset(cycle))
                        chain = " → ".join(str(nodes[n]) for n in reversed(cycle + [cycle[0]]))
                        self.problem("error", "cycle", f"links form a cycle: {chain}; a pipeline's links must not "
                                     "lead back to a node", cycle[0])
                elif state.get(dep) is None:
                    visit(dep, path + [name])
            state[name] = 2

        for name in deps:
            if name not in state:
                visit(name, [])


def _order(by_name: dict[str, Stage]) -> list[Stage]:
    """Stages with their upstream stages first; a cycle (reported elsewhere) is cut where it closes."""
    done: dict[str, Stage] = {}

    def visit(stage: Stage, path: tuple) -> None:
        if stage.name in done or stage.name in path:
            return
        for up in stage.depends_on:
            if up in by_name:
                visit(by_name[up], path + (stage.name,))
        done[stage.name] = stage

    for stage in by_name.values():
        visit(stage, ())
    return list(done.values())
