"""Pipelines of several notebooks: a ``notebook:`` cell includes another notebook's cells in its place.

:func:`expand` reads a notebook's cells and, at each reference cell, the cells of the notebook it
names (recursively, in order), so that parse groups and binds them as if they stood there: the
included cells read names bound above the reference and the cells below read what they bind.
Two spellings of a reference: ``notebook:PATH`` (ours, the path relative to the referencing
notebook) and Kale 2.3's ``notebook:NAME`` with the path in the cell's ``notebook_path`` metadata.

What stays per notebook: its ``setup`` cells (run in its own stages only), its settings (``files``
relative to its folder, ``image`` and the other stage defaults for its stages), the folder its stages
run in, and its stage names, qualified by the notebook (``features-train``) where two notebooks use
the same one. Every problem found while reading names the notebook and the cell.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field, replace
from pathlib import Path

from .metadata import notebook_settings
from .pipeline import Included, Parameter, Problem, Role
from .tags import STAGE_NAME_RE, CellSpec, read_cell

#: Kale 2.3's reference tag: ``notebook:NAME`` (the path is in the cell metadata ``notebook_path``).
KALE_NAME_RE = re.compile(r"^[_a-z][_a-z0-9]*$")
KALE_PATH_KEY = "notebook_path"


@dataclass
class Entry:
    """One cell of the expanded notebook: what parse reads, and where it comes from."""

    cell_type: str
    tags: tuple
    spec: CellSpec
    source: str
    notebook: str  # its notebook's path relative to the root notebook's folder ("" for the root)
    index: int  # its index in that notebook
    instance: int  # which inclusion it belongs to (0: the root; n: ``notebooks[n - 1]``)
    closes: int = 0  # inclusions that end after this cell (the last cell of a notebook, or an empty one's reference)


@dataclass
class Expanded:
    """A notebook with its references expanded."""

    folder: Path  # the root notebook's folder: included notebooks' paths are relative to it
    entries: list[Entry] = field(default_factory=list)
    notebooks: list[Included] = field(default_factory=list)  # every inclusion, in reading order
    #: inclusion without stage tags -> its stages: one, and a next one below each of its references
    whole: dict[int, list[str]] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)  # in each notebook's own cell numbers
    parents: dict[int, int] = field(default_factory=dict)  # inclusion -> the inclusion that references it

    def depth(self, instance: int) -> int:
        return 0 if instance == 0 else self.notebooks[instance - 1].depth

    def label(self, entry: Entry) -> str:
        """How messages name a cell: ``cell 4``, or ``cell 4 of parts/features.ipynb`` in an included notebook."""
        return f"cell {entry.index + 1}" + (f" of {entry.notebook}" if entry.notebook else "")

    def first_stage(self, instance: int) -> str | None:
        """The stage of a notebook without stage tags (None for a tagged one)."""
        return (self.whole.get(instance) or [None])[0]

    def stage_after(self, instance: int, stage: str | None) -> str | None:
        """The stage a notebook without stage tags goes on with below a reference (None for a tagged one):
        its code above and below runs before and after the included stages, as when read top to bottom."""
        stages = self.whole.get(instance) or []
        return stages[stages.index(stage) + 1] if stage in stages[:-1] else None

    def cell_label(self, position: int) -> str:
        """:meth:`label` of the cell at ``position`` of the expanded notebook."""
        return self.label(self.entries[position])


def expand(nb, path: str, cell_parts, folder: str | os.PathLike | None = None) -> Expanded:
    """Read ``nb``'s cells, each reference cell followed by the cells of the notebook it includes.

    ``cell_parts(raw, index, problems)`` reads one raw cell (parse's schema checks). References are
    relative to ``folder``, by default the folder of ``path`` (the server names a notebook by its
    path under the server's root, and says where that is).
    """
    own = not path.startswith("<")
    if folder is not None:
        root = Path(folder).resolve() / Path(path).name if own else None
    else:
        root = Path(path).resolve() if own else None
    out = Expanded(folder=root.parent if root else Path(folder or Path.cwd()).resolve())
    _read(nb, "", 0, out.folder, (root,) if root else (), out, cell_parts)
    _find_whole_notebooks(out, path)
    _qualify(out)
    return out


def _read(nb, notebook: str, instance: int, folder: Path, chain: tuple, out: Expanded, cell_parts) -> None:
    for index, raw in enumerate(nb.get("cells") or []):
        found: list[Problem] = []
        cell_type, source, cell_tags = cell_parts(raw, index, found)
        out.problems.extend(replace(p, notebook=notebook or None) for p in found)
        spec, body = read_cell(cell_tags, source, cell_type)
        entry = Entry(cell_type, cell_tags, spec, body, notebook, index, instance)
        out.entries.append(entry)
        if spec.role == Role.INCLUDE and cell_type == "code":
            metadata = raw.get("metadata") if isinstance(raw, dict) else None
            _include(entry, metadata if isinstance(metadata, dict) else {}, folder, chain, out, cell_parts)
        elif spec.role == Role.INCLUDE:
            spec.role = Role.SKIP
            out.problems.append(_problem(entry, "include-not-code", (
                f"tag 'notebook:{spec.include}' is on a {cell_type} cell; a reference to another notebook is a code "
                "cell (empty, or holding only comments), so this one includes nothing")))


def _problem(entry: Entry, code: str, message: str, severity: str = "error") -> Problem:
    return Problem(severity, code, message, cell=entry.index, notebook=entry.notebook or None)


def _include(entry: Entry, metadata: dict, folder: Path, chain: tuple, out: Expanded, cell_parts) -> None:
    """Append the cells of the notebook ``entry`` references, or say why it cannot be read."""
    from .parse import read_notebook  # parse imports this module
    from ..exceptions import NotebookReadError

    spec = entry.spec
    spec.role = Role.SKIP  # unless the notebook is read below, the cell is left out
    kale_path = metadata.get(KALE_PATH_KEY)
    tag = f"notebook:{spec.include}"
    if kale_path is not None and not isinstance(kale_path, str):
        out.problems.append(_problem(entry, "bad-include", f"`{tag}`: its `{KALE_PATH_KEY}` metadata is not a path"))
        return
    target = kale_path or spec.include
    if kale_path and spec.include and not KALE_NAME_RE.match(spec.include):
        out.problems.append(_problem(entry, "bad-include", (
            f"`{tag}`: with the path in the cell's `{KALE_PATH_KEY}` metadata (Kale's spelling), the tag names the "
            "included notebook with lowercase letters, digits and '_' (like `notebook:features`)")))
    if not target:
        out.problems.append(_problem(entry, "bad-include", (
            f"`{tag}` names no notebook: write the path in the tag (`notebook:features.ipynb`, relative to this "
            f"notebook) or, as Kale does, in the cell's `{KALE_PATH_KEY}` metadata")))
        return
    code = [line for line in entry.source.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    if code:
        out.problems.append(_problem(entry, "include-has-code", (
            f"the `{tag}` cell holds code ({code[0].strip()[:60]!r}); a reference cell holds no code of its own "
            "(comments are fine), so move the code to a cell of its own")))
    file = (folder / target).resolve()
    rel = Path(os.path.relpath(file, out.folder)).as_posix()
    if file in chain:
        loop = " → ".join(_name(p) for p in chain[chain.index(file):]) + f" → {_name(file)}"
        out.problems.append(_problem(entry, "include-cycle", (
            f"`{tag}` would include {rel} inside itself ({loop}); a notebook cannot include itself, directly or "
            "through others, so this reference is left out")))
        return
    try:
        child = read_notebook(file)
    except NotebookReadError as exc:
        hint = "" if kale_path or target.endswith(".ipynb") or not KALE_NAME_RE.match(target) else (
            f" (in Kale's spelling `notebook:{target}`, the path is in the cell's `{KALE_PATH_KEY}` metadata)")
        out.problems.append(_problem(entry, "include-missing", (
            f"`{tag}` includes {target}, relative to this notebook's folder, but {exc.reason} at {file}{hint}; "
            "the reference is left out")))
        return
    metadata = child.get("metadata") if isinstance(child.get("metadata"), dict) else {}
    settings, found = notebook_settings(metadata)
    out.problems.extend(replace(p, notebook=rel) for p in found)
    if rel.startswith("../"):
        out.problems.append(_problem(entry, "include-outside-folder", (
            f"`{tag}` includes {rel}, outside this pipeline's folder: its stages run in its own folder here, but "
            "on Kubeflow only files under the pipeline's folder travel to the pods, so the files it reads do not; "
            "move it into the folder (or a sub-folder) if it reads files"), severity="warning"))
    instance = len(out.notebooks) + 1
    kale_name = spec.include if kale_path else None
    out.notebooks.append(Included(path=rel, parent=entry.notebook, cell=entry.index, depth=out.depth(entry.instance) + 1,
                                  prefix=_prefix(kale_name or Path(rel).stem), kale=kale_path is not None,
                                  settings=settings))
    out.parents[instance] = entry.instance
    spec.role = Role.INCLUDE
    spec.included = instance
    _read(child, rel, instance, file.parent, chain + (file,), out, cell_parts)
    out.entries[-1].closes += 1


def _name(path: Path) -> str:
    return path.name


def _prefix(text: str) -> str:
    name = re.sub(r"^[^a-z]+", "", re.sub(r"[^a-z0-9-]+", "-", text.lower())).strip("-")
    return name[:30].rstrip("-") or "notebook"


def _find_whole_notebooks(out: Expanded, path: str) -> None:
    """The stage of each notebook with code but no stage tags: it runs whole, as at the top level."""
    from .parse import whole_notebook_stage

    code, tagged = set(), set()
    for e in out.entries:
        if e.cell_type == "code" and e.spec.role == Role.CONTINUE and e.source.strip():
            code.add(e.instance)
        if e.spec.role in (Role.STAGE, Role.METRICS):
            tagged.add(e.instance)
    for instance in sorted(code - tagged):
        if instance == 0:
            base = whole_notebook_stage(path)
        else:
            included = out.notebooks[instance - 1]
            base = included.prefix if included.kale else whole_notebook_stage(included.path)
        references = sum(1 for e in out.entries if e.instance == instance and e.spec.role == Role.INCLUDE)
        out.whole[instance] = [base] + [f"{base[:58]}-{k}" for k in range(2, references + 2)]


def _qualify(out: Expanded) -> None:
    """Rename the stages of included notebooks whose names another notebook uses too: ``prefix-name``."""
    names: dict[int, list[str]] = {}
    for e in out.entries:
        if e.spec.role in (Role.STAGE, Role.METRICS) and e.spec.stage and e.spec.stage not in names.get(e.instance, []):
            names.setdefault(e.instance, []).append(e.spec.stage)
    for instance, stages in out.whole.items():
        names.setdefault(instance, []).extend(stages)
    owners: dict[str, set[int]] = {}
    for instance, own in names.items():
        for name in own:
            owners.setdefault(name, set()).add(instance)
    taken = set(owners)
    prefixes: dict[int, str] = {}
    renames: dict[int, dict[str, str]] = {}
    for instance in sorted(names):
        if instance == 0:
            continue
        for name in names[instance]:
            if len(owners[name]) < 2:
                continue
            if instance not in prefixes:
                prefix = base = out.notebooks[instance - 1].prefix
                n = 2
                while prefix in prefixes.values():
                    prefix, n = f"{base}-{n}", n + 1
                prefixes[instance] = prefix
            new = f"{prefixes[instance]}-{name}"[:63].rstrip("-_")
            n = 2
            while new in taken or not STAGE_NAME_RE.match(new):
                new, n = f"{prefixes[instance][:50]}-{name[:8]}-{n}", n + 1
            taken.add(new)
            renames.setdefault(instance, {})[name] = new
    for e in out.entries:
        rename = renames.get(e.instance)
        if rename:
            if e.spec.stage in rename:
                e.spec.stage = rename[e.spec.stage]
            e.spec.after = [rename.get(a, a) for a in e.spec.after]
    for instance, stages in list(out.whole.items()):
        out.whole[instance] = [renames.get(instance, {}).get(name, name) for name in stages]


# -- what parse asks of the expanded notebook ----------------------------------------------------
def unheld(held: list[int], out: Expanded) -> Problem:
    """The error for untagged code below a ``notebook:`` cell that no stage of its notebook takes; clears ``held``."""
    first = out.entries[held[0]]
    reference = next(e for e in reversed(out.entries[:held[0]]) if e.instance == first.instance
                     and e.spec.role == Role.INCLUDE)
    numbers = ", ".join(str(out.entries[i].index + 1) for i in held)
    problem = Problem("error", "code-after-include", (
        f"cell{'s' if len(held) > 1 else ''} {numbers} below the `notebook:` {out.label(reference)} "
        f"belong{'s' if len(held) == 1 else ''} to no stage: code below a reference joins the next stage-tagged "
        "cell of its notebook (as in Kale), and none comes before the next reference or the end; tag the first "
        "of them `stage:NAME`"), cell=held[0])
    held.clear()
    return problem


def by_notebook(positions: list[int], out: Expanded) -> list[list[int]]:
    """``positions`` grouped by the inclusion their cells belong to, in reading order."""
    groups: dict[int, list[int]] = {}
    for position in positions:
        groups.setdefault(out.entries[position].instance, []).append(position)
    return list(groups.values())


def own_setup(setup_cells: list[int], out: Expanded, instance: int) -> list[int]:
    """The setup cells a stage of ``instance`` runs: its own notebook's (each once, if it is included twice)."""
    notebook = out.notebooks[instance - 1].path if instance else ""
    seen: set[int] = set()
    mine = []
    for position in setup_cells:
        entry = out.entries[position]
        if entry.notebook == notebook and entry.index not in seen:
            seen.add(entry.index)
            mine.append(position)
    return mine


def apply_notebook_defaults(options: dict, instance_of: dict[str, int], out: Expanded) -> None:
    """An included notebook's settings (``image``, ``stage_tags``, ...) are the defaults of its own stages."""
    from .metadata import stage_defaults

    defaults, reported = {}, set()
    for instance, included in enumerate(out.notebooks, 1):
        found: list[Problem] = []
        defaults[instance] = stage_defaults(included.settings, found)
        if included.path not in reported:  # a notebook included twice: its settings' problems once
            reported.add(included.path)
            out.problems.extend(replace(p, notebook=included.path) for p in found)
    for name, instance in instance_of.items():
        if instance:
            options[name] = defaults[instance].merged(options[name])


def winning_parameters(found: list[tuple[int, Parameter]], out: Expanded, problems: list[Problem]) -> list[Parameter]:
    """One parameter per name: the shallowest notebook's (the including one wins), else the first in reading order."""
    chosen: dict[str, tuple[int, Parameter]] = {}
    for depth, parameter in found:
        held = chosen.get(parameter.name)
        if held is None or depth < held[0]:
            chosen[parameter.name] = (depth, parameter)
    for depth, parameter in found:
        kept_depth, kept = chosen[parameter.name]
        if kept is not parameter and kept_depth == depth and kept.default != parameter.default:
            problems.append(Problem("warning", "parameter-twice", (
                f"parameter '{parameter.name}' = {parameter.default!r} here, and = {kept.default!r} in "
                f"{out.cell_label(kept.cell)}; one value reaches every notebook, so the pipeline's default is "
                f"{kept.default!r} (the first); a notebook that includes both wins by defining it too"),
                cell=parameter.cell))
    return sorted((p for _, p in chosen.values()), key=lambda p: p.cell)


def merged_settings(settings: dict, out: Expanded) -> dict:
    """The root's settings, with the ``packages`` every included notebook needs installed too."""
    extra = [p for inc in out.notebooks for p in inc.settings.get("packages") or () if isinstance(p, str)]
    packages = list(settings.get("packages") or [])
    added = [p for p in dict.fromkeys(extra) if p not in packages]
    return {**settings, "packages": packages + added} if added else settings


def in_notebooks(problems: list[Problem], out: Expanded) -> tuple[Problem, ...]:
    """Problems found on the expanded notebook, in reading order, with each cell as its own notebook numbers it."""
    where = {}
    for position, entry in enumerate(out.entries):
        where.setdefault((entry.notebook or None, entry.index), position)
    def own_numbers(p: Problem) -> Problem:
        entry = out.entries[p.cell]
        return replace(p, cell=entry.index, notebook=entry.notebook or None)

    placed = [(-1 if p.cell is None else p.cell, p.code, p if p.cell is None else own_numbers(p)) for p in problems]
    placed += [(-1 if p.cell is None else where.get((p.notebook, p.cell), -1), p.code, p) for p in out.problems]
    placed.sort(key=lambda item: item[:2])
    return tuple(p for _, _, p in placed)
