"""Kale 2.3's order in a composition: a notebook's own steps run in reading order with its references.

In a notebook holding Kale ``notebook:NAME`` references, Kale orders its units (its own steps and the
referenced notebooks) as they read: each own step after every unit above it and before every unit
below; two references with nothing between them stay parallel. Here those become dependencies on top
of the data edges, and only those not implied by others (so graphs stay readable): a stage after the
last stages of the notebooks included since the stage above (or after that stage), an included
notebook's first stages after the stage above its reference. Native ``notebook:PATH`` references
keep data edges only, as stages do.
"""

from __future__ import annotations

from dataclasses import replace

from .compose import Expanded
from .pipeline import Role, Stage


def kale_reading_order(stages: list[Stage], out: Expanded, instance_of: dict[str, int]) -> list[Stage]:
    """``stages`` with Kale's reading-order dependencies added where a notebook holds Kale references."""
    kale_parents = {out.parents[i] for i, inc in enumerate(out.notebooks, 1) if inc.kale}
    if not kale_parents:
        return stages
    by_name = {s.name: s for s in stages}
    extra: dict[str, set[str]] = {s.name: set() for s in stages}
    for parent in kale_parents:
        last: str | None = None
        units: list[set[str]] = []
        seen: set[str] = set()
        for entry in out.entries:
            if entry.instance != parent:
                continue
            stage = entry.spec.stage if entry.spec.role in (Role.STAGE, Role.METRICS) else None
            if stage and stage in by_name and stage not in seen:
                seen.add(stage)
                sinks = set().union(*(_ends(u, by_name, first=False) for u in units))
                extra[stage] |= sinks or ({last} if last else set())
                last, units = stage, []
            elif entry.spec.role == Role.INCLUDE and out.notebooks[entry.spec.included - 1].kale:
                inside = _subtree(out, entry.spec.included)
                members = {s for s, i in instance_of.items() if i in inside}
                if last:
                    for first in _ends(members, by_name, first=True):
                        extra[first].add(last)
                units.append(members)
    return _without_implied(stages, extra)


def _subtree(out: Expanded, instance: int) -> set[int]:
    """``instance`` and every inclusion nested in it."""
    found, new = set(), {instance}
    while new:
        found |= new
        new = {child for child, parent in out.parents.items() if parent in new} - found
    return found


def _ends(members: set[str], by_name: dict[str, Stage], first: bool) -> set[str]:
    """The stages of ``members`` that depend on none of the others (first) or that none of the others depend on."""
    if first:
        return {m for m in members if m in by_name and not set(by_name[m].depends_on) & members}
    used = {d for m in members if m in by_name for d in by_name[m].depends_on}
    return {m for m in members if m in by_name and m not in used}


def _without_implied(stages: list[Stage], extra: dict[str, set[str]]) -> list[Stage]:
    """Add each stage's ``extra`` dependencies that no other dependency of it already runs after."""
    position = {s.name: k for k, s in enumerate(stages)}
    deps = {s.name: set(s.depends_on) | extra[s.name] for s in stages}
    memo: dict[str, set[str]] = {}

    def upstream(name: str, path: frozenset = frozenset()) -> set[str]:
        if name not in memo:
            found: set[str] = set()
            for d in deps.get(name, ()):
                if d not in path:  # a cycle is reported by validation, not followed here
                    found |= {d} | upstream(d, path | {name})
            memo[name] = found
        return memo[name]

    out = []
    for s in stages:
        added = {d for d in extra[s.name] - set(s.depends_on)
                 if not any(d in upstream(other) for other in deps[s.name] - {d})}
        out.append(replace(s, depends_on=tuple(sorted(set(s.depends_on) | added, key=position.get))) if added else s)
    return out
