"""Drawings of a pipeline's stage graph: a text tree, Graphviz DOT, Mermaid and a self-contained SVG."""

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


def _layers(pipeline: Pipeline) -> list[list[str]]:
    """Stages by depth (longest path from a root), each layer in notebook order; cycles cannot loop."""
    depth: dict[str, int] = {}
    for s in pipeline.stages:  # notebook order: producers come first unless there is a cycle
        depth[s.name] = max((depth[u] + 1 for u in s.depends_on if u in depth), default=0)
    layers: list[list[str]] = [[] for _ in range(max(depth.values(), default=-1) + 1)]
    for s in pipeline.stages:
        layers[depth[s.name]].append(s.name)
    return layers


def svg(pipeline: Pipeline) -> str:
    """The stage graph as a standalone SVG (top to bottom), so notebooks show it without any renderer."""
    from html import escape

    char_w, box_h, gap_x, gap_y, pad = 7.2, 30, 28, 46, 16
    stages = {s.name: s for s in pipeline.stages}
    widths = {n: max(60.0, len(_label(s)) * char_w + 20) for n, s in stages.items()}
    layers = _layers(pipeline)
    row_w = [sum(widths[n] for n in row) + gap_x * (len(row) - 1) for row in layers]
    total_w = max(row_w, default=120) + 2 * pad
    pos: dict[str, tuple[float, float]] = {}
    for i, row in enumerate(layers):
        x = pad + (total_w - 2 * pad - row_w[i]) / 2
        for name in row:
            pos[name] = (x, pad + i * (box_h + gap_y))
            x += widths[name] + gap_x
    total_h = pad * 2 + len(layers) * box_h + max(0, len(layers) - 1) * gap_y
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{total_w:.0f}" height="{total_h:.0f}" '
        f'viewBox="0 0 {total_w:.0f} {total_h:.0f}" font-family="sans-serif" font-size="12">',
        f"<title>{escape(pipeline.name)}: {len(stages)} stage(s)</title>",
        '<defs><marker id="jp-arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7" markerHeight="7" '
        'orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" fill="#555"/></marker></defs>',
    ]
    for up, down in pipeline.edges:
        (ux, uy), (dx, dy) = pos[up], pos[down]
        x1, y1 = ux + widths[up] / 2, uy + box_h
        x2, y2 = dx + widths[down] / 2, dy
        out.append(f'<line x1="{x1:.1f}" y1="{y1:.1f}" x2="{x2:.1f}" y2="{y2:.1f}" stroke="#555" '
                   'marker-end="url(#jp-arrow)"/>')
        out.append(f'<text x="{(x1 + x2) / 2 + 4:.1f}" y="{(y1 + y2) / 2 + 4:.1f}" fill="#666" font-size="10">'
                   f"{escape(_edge_label(pipeline, up, down))}</text>")
    for name, (x, y) in pos.items():
        gpu = stages[name].options.gpu
        stroke = 'stroke="#2e7d32" stroke-width="2.5"' if gpu else 'stroke="#1565c0" stroke-width="1.2"'
        out.append(f'<g class="jp-stage"><rect x="{x:.1f}" y="{y:.1f}" width="{widths[name]:.1f}" height="{box_h}" '
                   f'rx="7" fill="#f5f9ff" {stroke}/><text x="{x + widths[name] / 2:.1f}" y="{y + box_h / 2 + 4:.1f}" '
                   f'text-anchor="middle" fill="#111">{escape(_label(stages[name]))}</text></g>')
    out.append("</svg>")
    return "\n".join(out)


FORMATS = {"text": text_tree, "dot": dot, "mermaid": mermaid, "svg": svg}
