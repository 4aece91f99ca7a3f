"""Drawings of a pipeline's stage graph: a text tree, Graphviz DOT and Mermaid."""

from __future__ import annotations

from .pipeline import Pipeline, Stage


def _label(stage: Stage) -> str:
    badges = []
    if stage.options.gpu:
        badges.append(f"gpu {stage.options.gpu}" + (f" {stage.options.gpu_type}" if stage.options.gpu_type else ""))
    if stage.parameters:
        badges.append("params: " + ", ".join(stage.parameters))
    return stage.name + (f"  [{'; '.join(badges)}]" if badges else "")


def text_tree(pipeline: Pipeline) -> str:
    """Stages as a tree from the roots; a stage with several parents is drawn once, then referenced."""
    children: dict[str, list[str]] = {s.name: [] for s in pipeline.stages}
    for up, down in pipeline.edges:
        children[up].append(down)
    stages = {s.name: s for s in pipeline.stages}
    inputs_from = {s.name: {} for s in pipeline.stages}
    for s in pipeline.stages:
        for var, producer in s.inputs:
            inputs_from[s.name].setdefault(producer, []).append(var)
    lines = [f"{pipeline.name}: {len(pipeline.stages)} stage(s), {len(pipeline.edges)} edge(s)"]
    drawn: set[str] = set()

    def draw(name: str, prefix: str, last: bool, parent: str | None) -> None:
        branch = "" if parent is None else ("└─▶ " if last else "├─▶ ")
        passed = inputs_from[name].get(parent, []) if parent else []
        via = f"  ({', '.join(passed)})" if passed else ""
        if name in drawn:
            lines.append(f"{prefix}{branch}{name}{via}  ↑ see above")
            return
        drawn.add(name)
        lines.append(f"{prefix}{branch}{_label(stages[name])}{via}")
        kids = children[name]
        ext = "" if parent is None else ("    " if last else "│   ")
        for i, kid in enumerate(kids):
            draw(kid, prefix + ext, i == len(kids) - 1, name)

    for s in pipeline.stages:
        if not s.depends_on:
            draw(s.name, "", True, None)
    for s in pipeline.stages:  # stages only reachable through a cycle
        if s.name not in drawn:
            draw(s.name, "", True, None)
    return "\n".join(lines)


def _edge_label(pipeline: Pipeline, up: str, down: str) -> str:
    names = [v for v, p in pipeline.stage(down).inputs if p == up]
    return ", ".join(names) if names else "after"


def dot(pipeline: Pipeline) -> str:
    lines = [f'digraph "{pipeline.name}" {{', "  rankdir=TB;", '  node [shape=box, style="rounded"];']
    for s in pipeline.stages:
        attrs = f'label="{_label(s)}"' + (', color="darkgreen", penwidth=2' if s.options.gpu else "")
        lines.append(f'  "{s.name}" [{attrs}];')
    for up, down in pipeline.edges:
        lines.append(f'  "{up}" -> "{down}" [label="{_edge_label(pipeline, up, down)}"];')
    lines.append("}")
    return "\n".join(lines)


def mermaid(pipeline: Pipeline) -> str:
    ids = {s.name: f"s{i}" for i, s in enumerate(pipeline.stages)}
    lines = ["flowchart TD"]
    for s in pipeline.stages:
        text = _label(s).replace('"', "'")
        lines.append(f'  {ids[s.name]}["{text}"]')
    for up, down in pipeline.edges:
        lines.append(f'  {ids[up]} -->|"{_edge_label(pipeline, up, down)}"| {ids[down]}')
    for s in pipeline.stages:
        if s.options.gpu:
            lines.append(f"  style {ids[s.name]} stroke:#2e7d32,stroke-width:3px")
    return "\n".join(lines)


FORMATS = {"text": text_tree, "dot": dot, "mermaid": mermaid}
