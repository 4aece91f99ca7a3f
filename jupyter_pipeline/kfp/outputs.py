"""What the KFP UI shows of a stage: its executed notebook (``Output[HTML]``), the metrics it logged
(``Output[Metrics]``) and the models it registered (``Output[Model]``).

Written by the stage's component in its pod from the files the stage runner left in the store
(``output.ipynb``, ``metrics.json``, ``models.json``); the store keeps its own copies as before.
KFP uploads a task's outputs only when the task succeeds, so the executed notebooks of failed
stages are shown by the pipeline's exit task (:func:`failures_page`).

The page renders with no network (air-gapped clusters): nbconvert's ``lab`` template inlines its
styles, and :data:`OFFLINE_TEMPLATE` drops the scripts it would load from public CDNs (require.js,
MathJax, mermaid, the widget manager), as :func:`_offline` drops outputs' own external scripts and
styles. It stays under :data:`MAX_PAGE_BYTES`: the largest outputs are cut, each with a note, and
a note at the top names the full notebook in the store.
"""

from __future__ import annotations

import html as html_lib
import json
import math
import re
from pathlib import Path

from ..store.records import stage_key

RESULT_FILE = "result.json"
#: The largest page a stage publishes: the KFP UI loads it whole into the browser.
MAX_PAGE_BYTES = 5 * 1024 * 1024
#: What is kept of a text output that is cut: its beginning.
KEPT_TEXT_CHARS = 2000
#: nbconvert's ``lab`` template without the scripts it loads from public CDNs; math shows as its
#: TeX source and mermaid diagrams as their text, which is what an air-gapped browser shows anyway.
OFFLINE_TEMPLATE = """{%- extends 'index.html.j2' -%}
{%- block html_head_js_requirejs -%}{%- endblock html_head_js_requirejs -%}
{%- block jupyter_widgets -%}{%- endblock jupyter_widgets -%}
{%- block html_head_js_mathjax -%}{%- endblock html_head_js_mathjax -%}
{%- block html_head_js_mermaidjs -%}{%- endblock html_head_js_mermaidjs -%}
"""
#: Script and stylesheet tags of outputs that load from the network (plotly/bokeh CDN builds...).
_EXTERNAL = re.compile(r"""<script\b[^>]*\bsrc\s*=\s*["']?(?:https?:)?//[^>]*>.*?</script\s*>"""
                       r"""|<link\b[^>]*\bhref\s*=\s*["']?(?:https?:)?//[^>]*>""", re.IGNORECASE | re.DOTALL)


def notebook_html(store, key: str, limit: int = MAX_PAGE_BYTES) -> str | None:
    """The notebook at ``key`` as a standalone HTML page (JupyterLab's look) that needs no network
    and holds at most ``limit`` bytes (the largest outputs cut, with notes), or None."""
    if not store.exists(key):
        return None
    import nbformat

    with store.reading(key) as path:
        nb = nbformat.read(path, as_version=4)
    _offline(nb)
    page = _render(nb)
    size = len(page.encode())
    if size <= limit:
        return page
    outputs = sum(_size(o) for cell in nb.cells for o in cell.get("outputs", []))
    cut = _cut_outputs(nb, budget=max(0, limit - (size - outputs) - 4096))
    nb.cells.insert(0, nbformat.v4.new_markdown_cell(
        f"**jupyter-pipeline:** {cut} output(s) of this notebook were cut to keep this page under "
        f"{limit / 1024 / 1024:.1f} MiB; the whole executed notebook is `{store.uri(key)}`."))
    return _render(nb)


def _render(nb) -> str:
    from jinja2 import DictLoader
    from nbconvert import HTMLExporter

    exporter = HTMLExporter(template_name="lab", extra_loaders=[DictLoader({"jp-offline.html.j2": OFFLINE_TEMPLATE})],
                            template_file="jp-offline.html.j2")
    body, _ = exporter.from_notebook_node(nb)
    return body


def _offline(nb) -> None:
    """Drop the external scripts and stylesheets outputs carry (an air-gapped browser cannot load them)."""
    for cell in nb.cells:
        for output in cell.get("outputs", []):
            data = output.get("data") or {}
            html = data.get("text/html")
            if html is not None:
                text = "".join(html) if isinstance(html, list) else html
                data["text/html"] = _EXTERNAL.sub("<!-- jupyter-pipeline: external script or style removed -->", text)


def _size(output) -> int:
    return len(json.dumps(output))


def _cut_outputs(nb, budget: int) -> int:
    """Cut the largest outputs until all of them fit in ``budget`` bytes; return how many were cut."""
    from nbformat.v4 import new_output

    outputs = [(cell, i) for cell in nb.cells for i in range(len(cell.get("outputs", [])))]
    sizes = {id(cell.outputs[i]): _size(cell.outputs[i]) for cell, i in outputs}
    total, cut = sum(sizes.values()), 0
    for cell, i in sorted(outputs, key=lambda ci: sizes[id(ci[0].outputs[ci[1]])], reverse=True):
        output = cell.outputs[i]
        if total <= budget:
            break
        if output.get("output_type") == "error":
            continue  # the error is what a failed stage's page is for
        size = sizes[id(output)]
        note = f"[jupyter-pipeline: output cut, {size / 1024 / 1024:.1f} MiB; see the whole notebook in the store]"
        if output.get("output_type") == "stream":
            text = "".join(output.text) if isinstance(output.text, list) else output.text
            cell.outputs[i] = new_output("stream", name=output.name, text=text[:KEPT_TEXT_CHARS] + "\n...\n" + note)
        else:
            cell.outputs[i] = new_output("display_data", data={"text/plain": note})
        total -= size - _size(cell.outputs[i])
        cut += 1
    return cut


def write_html(artifact, store, key: str) -> None:
    """Render the executed notebook at ``key`` into the ``Output[HTML]`` ``artifact``."""
    page = notebook_html(store, key) or "<p>The stage ended before its notebook was saved.</p>"
    write_text(artifact, page)


def write_metrics(artifact, metrics: dict) -> None:
    """Log each numeric metric on the ``Output[Metrics]`` ``artifact`` (KFP compares runs by them);
    its file holds them as JSON."""
    numeric = {name: value for name, value in sorted((metrics or {}).items())
               if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)}
    for name, value in numeric.items():
        artifact.log_metric(name, value)
    write_text(artifact, json.dumps(numeric, indent=1))


def write_models(artifact, store, run_id: str, stage: str, item: int | None = None) -> list[dict]:
    """Describe the models the stage registered on the ``Output[Model]`` ``artifact``: its file is
    the list (JSON), its metadata names the last one's registry URI and version; promotions
    (``promote_model``'s entries, with an ``alias``) are listed in ``promoted``."""
    key = stage_key(run_id, stage, "models.json", item)
    listed = store.get_json(key) if store.exists(key) else []
    models = [m for m in listed if "alias" not in m]
    write_text(artifact, json.dumps(models, indent=1))
    if models:
        last = models[-1]
        artifact.metadata.update(name=last["name"], version=last["version"], uri=last["uri"],
                                 registry="jupyter-pipeline")
    artifact.metadata["models"] = [f"{m['name']}:{m['version']}" for m in models]
    promoted = [f"{m['name']}:{m['version']} -> {m['alias']}" for m in listed if "alias" in m]
    if promoted:
        artifact.metadata["promoted"] = promoted
    return models


def failures_page(store, run_id: str, stages: list[str]) -> str:
    """One HTML page holding the executed notebook of each stage of ``run_id`` that failed."""
    parts = []
    limit = MAX_PAGE_BYTES // max(1, len(stages))  # the failed stages' pages share one page's limit
    for stage in stages:
        key = stage_key(run_id, stage, RESULT_FILE)
        result = store.get_json(key) if store.exists(key) else None
        if not result or result.get("status") == "succeeded":
            continue
        notebook = notebook_html(store, stage_key(run_id, stage, "output.ipynb"), limit)
        parts.append(f"<h2>Stage {html_lib.escape(stage)} failed</h2><p>{html_lib.escape(str(result.get('error')))}"
                     f"</p>" + (notebook or "<p>No executed notebook was saved.</p>"))
    if not parts:
        return f"<p>No stage of run {html_lib.escape(run_id)} failed.</p>"
    return "\n<hr>\n".join(parts)


def write_text(artifact, text: str) -> None:
    """Write ``text`` as the content of an output ``artifact``."""
    path = Path(artifact.path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
