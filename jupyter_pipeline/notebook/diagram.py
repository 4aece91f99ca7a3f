"""Drawings of a pipeline's stage graph: a text tree, Graphviz DOT, Mermaid and a self-contained SVG.

A pipeline of several notebooks (``notebook:`` cells) is drawn grouped: a box per notebook around its
stages (a DOT cluster, a Mermaid subgraph, an SVG frame), edges between notebooks drawn bold, and the
text tree marks each included notebook's stages and lists the notebook-to-notebook edges.
"""

from __future__ import annotations

from .pipeline import Pipeline, Stage


def _label(stage: Stage) -> str:
    badges = [f"if {stage.options.condition}"] if stage.options.condition else []
    if stage.options.gpu:
        badges.append(f"gpu {stage.options.gpu}" + (f" {stage.options.gpu_type}" if stage.options.gpu_type else ""))
    if stage.parameters:
        badges.append("params: " + ", ".join(stage.parameters))
    return stage.name + (f"  [{'; '.join(badges)}]" if badges else "")


def groups(pipeline: Pipeline) -> list[tuple[str, list[Stage]]]:
    """``(notebook, its stages)`` in reading order, the root notebook ("") first; [] without includes."""
    if not pipeline.notebooks:
        return []
    found: dict[str, list[Stage]] = {"": []}
    for n in pipeline.notebooks:
        found.setdefault(n.path, [])
    for s in pipeline.stages:
        found.setdefault(s.notebook, []).append(s)
    return [(nb, stages) for nb, stages in found.items() if stages]


def _notebook_title(pipeline: Pipeline, notebook: str) -> str:
    return notebook or (pipeline.path.rsplit("/", 1)[-1] if not pipeline.path.startswith("<") else pipeline.name)


def _crosses(pipeline: Pipeline, up: str, down: str) -> bool:
    return bool(pipeline.notebooks) and pipeline.stage(up).notebook != pipeline.stage(down).notebook


def text_tree(pipeline: Pipeline) -> str:
    """Stages as a tree from the roots; a stage with several parents is drawn once, then referenced."""
    children: dict[str, list[str]] = {s.name: [] for s in pipeline.stages}
    for up, down in pipeline.edges:
        children[up].append(down)
    stages = {s.name: s for s in pipeline.stages}
    inputs_from = {s.name: {} for s in pipeline.stages}
    for s in pipeline.stages:
        for var, producer in s.inputs + s.files_in:  # variables and files (an Elyra node's outputs)
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
        where = f"  — {stages[name].notebook}" if stages[name].notebook else ""
        lines.append(f"{prefix}{branch}{_label(stages[name])}{via}{where}")
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
    if pipeline.notebooks:
        lines.append("notebooks:")
        for notebook, members in groups(pipeline):
            lines.append(f"  {_notebook_title(pipeline, notebook)}: {', '.join(s.name for s in members)}")
        for up, down, names in pipeline.notebook_edges:
            lines.append(f"  {_notebook_title(pipeline, up)} ─▶ {_notebook_title(pipeline, down)}"
                         + (f"  ({', '.join(names)})" if names else "  (after)"))
    return "\n".join(lines)


def _edge_label(pipeline: Pipeline, up: str, down: str) -> str:
    stage = pipeline.stage(down)
    names = [v for v, p in stage.inputs + stage.files_in if p == up]
    return ", ".join(names) if names else "after"


def dot(pipeline: Pipeline) -> str:
    lines = [f'digraph "{pipeline.name}" {{', "  rankdir=TB;", '  node [shape=box, style="rounded"];']

    def node(s: Stage, indent: str = "  ") -> None:
        label = _label(s).replace('"', '\\"')
        attrs = (f'label="{label}"' + (', color="darkgreen", penwidth=2' if s.options.gpu else "")
                 + (', style="rounded,dashed"' if s.options.condition else ""))
        lines.append(f'{indent}"{s.name}" [{attrs}];')

    clusters = groups(pipeline)
    for k, (notebook, members) in enumerate(clusters):
        lines.append(f'  subgraph "cluster_{k}" {{')
        lines.append(f'    label="{_notebook_title(pipeline, notebook)}"; style="rounded,dashed"; color="#888888";')
        for s in members:
            node(s, "    ")
        lines.append("  }")
    if not clusters:
        for s in pipeline.stages:
            node(s)
    for up, down in pipeline.edges:
        bold = ", penwidth=2, color=\"#6a1b9a\"" if _crosses(pipeline, up, down) else ""
        lines.append(f'  "{up}" -> "{down}" [label="{_edge_label(pipeline, up, down)}"{bold}];')
    lines.append("}")
    return "\n".join(lines)


def mermaid(pipeline: Pipeline) -> str:
    ids = {s.name: f"s{i}" for i, s in enumerate(pipeline.stages)}
    lines = ["flowchart TD"]

    def node(s: Stage, indent: str = "  ") -> None:
        # Mermaid reads < and > in a label as markup: its entity codes keep a condition's operators.
        text = _label(s).replace('"', "'").replace("<", "#lt;").replace(">", "#gt;")
        lines.append(f'{indent}{ids[s.name]}["{text}"]')

    clusters = groups(pipeline)
    for k, (notebook, members) in enumerate(clusters):
        lines.append(f'  subgraph n{k}["{_notebook_title(pipeline, notebook)}"]')
        for s in members:
            node(s, "    ")
        lines.append("  end")
    if not clusters:
        for s in pipeline.stages:
            node(s)
    for up, down in pipeline.edges:
        arrow = "==>" if _crosses(pipeline, up, down) else "-->"
        lines.append(f'  {ids[up]} {arrow}|"{_edge_label(pipeline, up, down)}"| {ids[down]}')
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


def _columns(pipeline, clusters, layers, widths, pos, pad, box_h, gap_x, gap_y):
    """Place each notebook's stages in a column of their own (so frames never overlap): fills ``pos``;
    returns the drawing's width and the frames."""
    frame_pad, title_h = 10, 16
    layer_of = {name: i for i, row in enumerate(layers) for name in row}
    x, frames = pad, []
    for notebook, members in clusters:
        rows: dict[int, list[str]] = {}
        for s in members:
            rows.setdefault(layer_of[s.name], []).append(s.name)
        row_w = {i: sum(widths[n] for n in row) + gap_x * (len(row) - 1) for i, row in rows.items()}
        col_w = max(max(row_w.values()), 7.2 * len(_notebook_title(pipeline, notebook)) + 16)
        for i, row in rows.items():
            rx = x + frame_pad + (col_w - row_w[i]) / 2
            for name in row:
                pos[name] = (rx, pad + i * (box_h + gap_y))
                rx += widths[name] + gap_x
        top, bottom = min(rows), max(rows)
        y = pad + top * (box_h + gap_y) - frame_pad - title_h
        frames.append((_notebook_title(pipeline, notebook), x, y, col_w + 2 * frame_pad,
                       (bottom - top) * (box_h + gap_y) + box_h + 2 * frame_pad + title_h))
        x += col_w + 2 * frame_pad + gap_x
    return x - gap_x + pad, frames


def svg(pipeline: Pipeline) -> str:
    """The stage graph as a standalone SVG (top to bottom), so notebooks show it without any renderer."""
    from html import escape

    char_w, box_h, gap_x, gap_y, pad = 7.2, 30, 28, 46, 16
    stages = {s.name: s for s in pipeline.stages}
    widths = {n: max(60.0, len(_label(s)) * char_w + 20) for n, s in stages.items()}
    layers = _layers(pipeline)
    clusters = groups(pipeline)
    frames: list[tuple[str, float, float, float, float]] = []  # (title, x, y, width, height) per notebook
    pos: dict[str, tuple[float, float]] = {}
    if clusters:
        pad += 10  # room for the frames' titles
        total_w, frames = _columns(pipeline, clusters, layers, widths, pos, pad, box_h, gap_x, gap_y)
    else:
        row_w = [sum(widths[n] for n in row) + gap_x * (len(row) - 1) for row in layers]
        total_w = max(row_w, default=120) + 2 * pad
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
    for title, x, y, w, h in frames:
        out.append(f'<g class="jp-notebook"><rect x="{x:.1f}" y="{y:.1f}" width="{w:.1f}" height="{h:.1f}" rx="9" '
                   'fill="#fafafa" stroke="#999" stroke-dasharray="5 3"/>'
                   f'<text x="{x + 8:.1f}" y="{y + 14:.1f}" fill="#555" font-size="11">{escape(title)}</text></g>')
    for up, down in pipeline.edges:
        (ux, uy), (dx, dy) = pos[up], pos[down]
        x1, y1 = ux + widths[up] / 2, uy + box_h
        x2, y2 = dx + widths[down] / 2, dy
        width = ' stroke-width="2.2"' if _crosses(pipeline, up, down) else ""
        out.append(f'<line x1="{x1:.1f}" y1="{y1:.1f}" x2="{x2:.1f}" y2="{y2:.1f}" stroke="#555"{width} '
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
