"""What the KFP UI shows of a stage: its executed notebook (``Output[HTML]``), the metrics it logged
(``Output[Metrics]``) and the models it registered (``Output[Model]``).

Written by the stage's component in its pod from the files the stage runner left in the store
(``output.ipynb``, ``metrics.json``, ``models.json``); the store keeps its own copies as before.
KFP uploads a task's outputs only when the task succeeds, so the executed notebooks of failed
stages are shown by the pipeline's exit task (:func:`failures_page`).
"""

from __future__ import annotations

import html as html_lib
import json
import math
from pathlib import Path

from ..store.records import stage_key

RESULT_FILE = "result.json"


def notebook_html(store, key: str) -> str | None:
    """The notebook at ``key`` rendered as a standalone HTML page (JupyterLab's look), or None."""
    if not store.exists(key):
        return None
    import nbformat
    from nbconvert import HTMLExporter

    with store.reading(key) as path:
        nb = nbformat.read(path, as_version=4)
    body, _ = HTMLExporter(template_name="lab").from_notebook_node(nb)
    return body


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
    for stage in stages:
        key = stage_key(run_id, stage, RESULT_FILE)
        result = store.get_json(key) if store.exists(key) else None
        if not result or result.get("status") == "succeeded":
            continue
        notebook = notebook_html(store, stage_key(run_id, stage, "output.ipynb"))
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
