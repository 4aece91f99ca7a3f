"""Helpers shared by the benchmark scripts: repeated timing with medians, and result rows."""

from __future__ import annotations

import json
import statistics
import time
from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_notebook


def timed(fn, repeat: int = 5) -> tuple[float, list[float]]:
    """Median wall time of ``fn()`` over ``repeat`` runs, and all the samples."""
    samples = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - t0)
    return statistics.median(samples), samples


def write_notebook(path: Path, cells: list[tuple[list[str], str]]) -> Path:
    """A notebook of ``(tags, source)`` code cells."""
    out = []
    for tags, source in cells:
        c = new_code_cell(source)
        if tags:
            c.metadata["tags"] = tags
        out.append(c)
    nb = new_notebook(cells=out)
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, path)
    return path


def row(what: str, ours: float, baseline: float | None, unit: str, baseline_name: str, note: str = "") -> dict:
    """One result row; ``ratio`` is ours / baseline (for times: lower is better)."""
    ratio = (ours / baseline) if baseline else None
    return {"what": what, "ours": ours, "baseline": baseline, "unit": unit, "baseline_name": baseline_name,
            "ratio": ratio, "note": note}


def print_rows(rows: list[dict]) -> None:
    for r in rows:
        base = f"{r['baseline']:.4g} {r['unit']} ({r['baseline_name']})" if r["baseline"] is not None else "-"
        ratio = f"{r['ratio']:.2f}x" if r["ratio"] is not None else "-"
        print(f"{r['what']:<58} ours {r['ours']:.4g} {r['unit']:<6} baseline {base:<40} ratio {ratio}  {r['note']}")


def save_rows(name: str, rows: list[dict]) -> None:
    out = Path(__file__).parent / "results"
    out.mkdir(exist_ok=True)
    (out / f"{name}.json").write_text(json.dumps(rows, indent=1))
