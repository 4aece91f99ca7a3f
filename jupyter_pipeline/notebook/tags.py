"""Cell tags to pipeline roles: the native dialect, Kale's spellings and the ``%%stage`` line.

Each dialect is a function ``(tag, spec) -> bool`` registered in :data:`dialects`; it returns True
when it understood the tag and updated ``spec``. Tags no dialect knows are left alone (cells carry
other tools' tags too), but a tag that is clearly ours with a bad value is reported.
"""

from __future__ import annotations

import argparse
import re
import shlex
from dataclasses import dataclass, field
from typing import Callable

from . import condition as condition_mod, pod
from .pipeline import Role
from .pod import METADATA_KEY_RE, QUANTITY_RE  # noqa: F401 - re-exported (notebook settings check keys)
from ..registry import Registry

STAGE_NAME_RE = re.compile(r"^[a-z][a-z0-9_-]{0,62}$")
MAGIC_RE = re.compile(r"^\s*%%stage\b(.*)$")
#: This package's line magics: they drive the pipeline from a notebook, they are not part of it.
PIPELINE_MAGIC_RE = re.compile(r"^\s*%(pipeline\b|(re)?load_ext\s+jupyter_pipeline\s*$)")


@dataclass
class CellSpec:
    """What a cell's tags say: its role, stage, dependencies and options."""

    role: Role = Role.CONTINUE
    stage: str | None = None
    after: list[str] = field(default_factory=list)
    options: dict = field(default_factory=dict)  # StageOptions fields this cell sets
    problems: list[tuple[str, str]] = field(default_factory=list)  # (code, message) of malformed tags
    from_magic: bool = False
    after_tags: dict[str, str] = field(default_factory=dict)  # stage named by `after:`/`prev:` -> the tag as written
    prev: list[str] = field(default_factory=list)  # Kale's `prev:` stages, kept only on a cell that names its step
    joins_setup: bool = False  # Kale's `imports`/`functions`: untagged code cells after it join the setup

    def add_after(self, name: str, tag: str, kale: bool = False) -> None:
        """Depend on stage ``name`` (``kale``: a ``prev:`` tag, which counts only on a cell naming its step)."""
        (self.prev if kale else self.after).append(name)
        self.after_tags.setdefault(name, tag)
    include: str | None = None  # `notebook:PATH` (or Kale's `notebook:NAME`): the value after the colon
    included: int = 0  # set by compose: which inclusion of the expanded notebook it starts

    def problem(self, message: str, code: str = "bad-tag") -> None:
        self.problems.append((code, message))

    def set_stage(self, name: str, tag: str) -> None:
        if self.stage is not None and self.stage != name:
            self.problem(f"tag '{tag}' names stage '{name}' but this cell already starts stage "
                         f"'{self.stage}'; a cell belongs to one stage, so keep one of the two tags",
                         "two-stage-names")
            return
        self.role = Role.STAGE
        self.stage = name
        if not STAGE_NAME_RE.match(name):
            self.problem(
                f"tag '{tag}': stage name '{name}' is not valid; use lowercase letters, digits, "
                "'-' and '_', starting with a letter (at most 63 characters)"
            )

    def add_option(self, key: str, name: str, value) -> None:
        """Add ``name: value`` to the mapping option ``key`` (labels, annotations, env, node_selector)."""
        self.options.setdefault(key, {})[name] = value

    def add_entry(self, key: str, entry: dict) -> None:
        """Add ``entry`` to the list option ``key`` (secrets, volumes, tolerations)."""
        self.options[key] = self.options.get(key, ()) + (entry,)


Dialect = Callable[[str, CellSpec], bool]
dialects: Registry[Dialect] = Registry("tag dialect")


def _int_option(spec: CellSpec, tag: str, key: str, text: str, minimum: int = 0) -> None:
    try:
        value = int(text)
        if value < minimum:
            raise ValueError
    except ValueError:
        spec.problem(f"tag '{tag}': '{text}' is not a whole number ≥ {minimum}")
        return
    spec.options[key] = value


def _quantity_option(spec: CellSpec, tag: str, key: str, text: str) -> None:
    if not QUANTITY_RE.match(text):
        spec.problem(f"tag '{tag}': '{text}' is not a Kubernetes quantity (e.g. 2, 500m, 8Gi)")
        return
    spec.options[key] = text


def _gpu_option(spec: CellSpec, tag: str, text: str) -> None:
    count, _, gpu_type = text.partition(":")
    _int_option(spec, tag, "gpu", count)
    if gpu_type:
        spec.options["gpu_type"] = gpu_type


IDENTIFIER_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
def _map_option(spec: CellSpec, tag: str, text: str) -> None:
    """``map:VAR``, ``map:VAR:CHUNKS``, ``map:VAR:as=NAME``, ``map:VAR:CHUNKS:as=NAME``."""
    var, *rest = text.split(":")
    if not IDENTIFIER_RE.match(var):
        spec.problem(f"tag '{tag}': '{var}' is not a variable name")
        return
    spec.options["map_var"] = var
    for part in rest:
        if part.startswith("as="):
            name = part[3:]
            if not IDENTIFIER_RE.match(name):
                spec.problem(f"tag '{tag}': '{name}' is not a variable name")
            else:
                spec.options["map_as"] = name
        else:
            _int_option(spec, tag, "map_chunks", part, minimum=1)


def _workers_option(spec: CellSpec, tag: str, text: str) -> None:
    """``workers:N``: N ≥ 2 replicas started together (one replica is what every stage is)."""
    if not text.isdigit() or int(text) < 2:
        spec.problem(f"tag '{tag}': a distributed stage needs at least 2 workers (workers:2 or more); "
                     "without the tag a stage runs as one process", "bad-workers")
        return
    spec.options["workers"] = int(text)


def _condition_option(spec: CellSpec, tag: str, text: str) -> None:
    """``if:EXPR``: the stage runs only when EXPR holds; several on one cell must all hold."""
    try:
        parsed = condition_mod.parse(text)
    except condition_mod.ConditionError as exc:
        spec.problem(f"tag '{tag}': {exc}", "bad-condition")
        return
    known = spec.options.get("condition")
    spec.options["condition"] = f"({known}) and ({parsed.text})" if known else parsed.text


_ROLE_TAGS = {
    "parameters": Role.PARAMETERS,
    "setup": Role.SETUP,
    "imports": Role.SETUP,
    "functions": Role.SETUP,
    "skip": Role.SKIP,
}


def native(tag: str, spec: CellSpec) -> bool:
    """The tags of docs/tags.md: ``stage:``, ``after:``, roles and per-stage options."""
    if tag in _ROLE_TAGS:
        spec.role = _ROLE_TAGS[tag]
        spec.joins_setup = tag in ("imports", "functions")  # Kale's spellings keep Kale's meaning
        return True
    key, sep, value = tag.partition(":")
    if not sep:
        return False
    if key == "stage":
        spec.set_stage(value, tag)
    elif key == "after":
        spec.add_after(value, tag)
    elif key == "notebook":
        spec.role = Role.INCLUDE
        spec.include = value
    elif key == "gpu":
        _gpu_option(spec, tag, value)
    elif key in ("cpu", "memory"):
        _quantity_option(spec, tag, key, value)
    elif key == "image":
        if not value:
            spec.problem(f"tag '{tag}': the image reference is empty")
        spec.options["image"] = value
    elif key == "retries":
        _int_option(spec, tag, "retries", value)
    elif key == "timeout":
        _int_option(spec, tag, "timeout", value, minimum=1)
    elif key == "map":
        _map_option(spec, tag, value)
    elif key == "parallelism":
        _int_option(spec, tag, "parallelism", value, minimum=1)
    elif key == "workers":
        _workers_option(spec, tag, value)
    elif key == "if":
        _condition_option(spec, tag, value)
    elif key == "cache":
        if value not in ("off", "on", "enabled", "disabled"):
            spec.problem(f"tag '{tag}': use cache:off or cache:on")
        spec.options["cache"] = value in ("on", "enabled")
    elif key in pod.TAGS:
        pod.TAGS[key](spec, tag, value)
    else:
        return False
    return True


def kale(tag: str, spec: CellSpec) -> bool:
    """Kubeflow Kale's spellings, so Kale-tagged notebooks convert unchanged."""
    if tag == "pipeline-parameters":
        spec.role = Role.PARAMETERS
        return True
    if tag == "pipeline-metrics":
        spec.role = Role.METRICS
        spec.stage = "pipeline-metrics"
        return True
    key, sep, value = tag.partition(":")
    if not sep:
        return False
    if key in ("step", "block"):
        if value:
            spec.set_stage(value, tag)
        # An empty `block:`/`step:` (Kale's editor writes them) continues the stage above.
    elif key == "prev":
        spec.add_after(value, tag, kale=True)
    elif key == "limit":
        resource, _, amount = value.rpartition(":")
        if resource.endswith("/gpu"):
            _int_option(spec, tag, "gpu", amount)
        elif resource in ("cpu", "memory"):
            _quantity_option(spec, tag, resource, amount)
        else:
            return False
    else:
        return False
    return True


class _MagicParser(argparse.ArgumentParser):
    def error(self, message):  # argparse would print and exit; we want a problem record
        raise ValueError(message)


def magic_parser() -> argparse.ArgumentParser:
    """The argument parser of ``%%stage NAME [options]``, shared with the live magic."""
    p = _MagicParser(prog="%%stage", add_help=False)
    p.add_argument("name")
    p.add_argument("--after", nargs="+", default=[], metavar="STAGE")
    p.add_argument("--gpu", metavar="N[:TYPE]")
    p.add_argument("--cpu")
    p.add_argument("--memory")
    p.add_argument("--image")
    p.add_argument("--retries")
    p.add_argument("--timeout")
    p.add_argument("--workers")
    p.add_argument("--no-cache", action="store_true")
    p.add_argument("--if", dest="condition", metavar="EXPR")
    for flag, metavar in pod.MAGIC_FLAGS.items():  # pod options: repeatable, as their tags are
        p.add_argument(f"--{flag}", action="append", default=[], metavar=metavar)
    return p


def magic_line_tags(line: str) -> list[str]:
    """Tags equivalent to a ``%%stage`` line's arguments; raises ValueError when malformed."""
    args = magic_parser().parse_args(shlex.split(line))
    tags = [f"stage:{args.name}"] + [f"after:{a}" for a in args.after]
    for key in ("gpu", "cpu", "memory", "image", "retries", "timeout", "workers"):
        if getattr(args, key) is not None:
            tags.append(f"{key}:{getattr(args, key)}")
    if args.no_cache:
        tags.append("cache:off")
    if args.condition is not None:
        tags.append(f"if:{args.condition}")
    tags += [f"{flag}:{value}" for flag in pod.MAGIC_FLAGS for value in getattr(args, flag)]
    return tags


def split_magic(source: str) -> tuple[str | None, str]:
    """``(arguments of a leading %%stage line or None, the source without that line)``."""
    first, nl, rest = source.partition("\n")
    m = MAGIC_RE.match(first)
    if not m:
        return None, source
    return m.group(1).strip(), rest


def read_cell(tags: list[str] | tuple[str, ...], source: str, cell_type: str = "code") -> tuple[CellSpec, str]:
    """Interpret a cell's tags (and ``%%stage`` line); return its spec and its runnable source."""
    spec = CellSpec()
    magic_args, body = split_magic(source) if cell_type == "code" else (None, source)
    all_tags = list(tags)
    if magic_args is not None:
        spec.from_magic = True
        try:
            all_tags += magic_line_tags(magic_args)
        except ValueError as exc:
            spec.problem(f"'%%stage {magic_args}': {exc}")
    for tag in all_tags:
        if not isinstance(tag, str):
            spec.problem(f"tag {tag!r} is not text; every tag in `metadata.tags` must be a string", "invalid-cell")
            continue
        tag = tag.strip()
        for dialect in dialects.values():
            if dialect(tag, spec):
                break
    if spec.stage:
        # Kale reads `prev:` only where a step starts; on a continuation cell (an empty `block:`) it ignores it.
        spec.after += [name for name in spec.prev if name not in spec.after]
    if cell_type == "code" and spec.role == Role.CONTINUE and magic_only(body):
        spec.role = Role.SKIP  # `%pipeline publish` in a stage would publish from inside the run
    return spec, body


def magic_only(source: str) -> bool:
    """Whether every line of ``source`` but blanks and comments is a ``%pipeline``/``%load_ext`` of ours."""
    lines = [line for line in source.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    return bool(lines) and all(PIPELINE_MAGIC_RE.match(line) for line in lines)


dialects.register("native", native)
dialects.register("kale", kale)
