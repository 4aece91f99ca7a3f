"""Plain-text summaries of runs and sweeps: what the CLI prints and the magics show as text/plain."""

from __future__ import annotations


def table(rows: list[list[str]], headers: list[str]) -> str:
    """Rows under headers, columns padded to their widest cell."""
    cols = [headers] + [[str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cols) for i in range(len(headers))]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths)).rstrip()]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in cols[1:]]
    return "\n".join(lines)


def seconds(value) -> str:
    """A duration in seconds as people read it (``-`` when unknown)."""
    if value is None:
        return "-"
    return f"{value:.1f} s" if value < 120 else f"{value / 60:.1f} min"


def fmt(v) -> str:
    """A value as a table shows it: floats to four significant digits."""
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def run_summary(record) -> str:
    """A run's stages (status, duration, executed notebook), metrics and outcome."""
    rows = []
    for name, rec in record.stages.items():
        status = rec.status.value + (" (reused)" if rec.reused or rec.reused_from else "")
        rows.append([name, status, seconds(rec.duration), rec.output_notebook or "-"])
    out = [table(rows, ["stage", "status", "duration", "executed notebook"])]
    out += [f"{name} skipped: {rec.skip_reason}" for name, rec in record.stages.items() if rec.skip_reason]
    metrics = record.metrics()
    if metrics:
        out.append("metrics: " + ", ".join(f"{k}={fmt(v)}" for k, v in metrics.items()))
    out.append(f"run {record.run_id} {record.status.value}" + (f": {record.error}" if record.error else ""))
    if record.url:
        out.append(f"run page: {record.url}")
    return "\n".join(out)


def ranked_variants(data: dict) -> list[tuple[int, dict, object]]:
    """``(rank, variant, its metric value or None)`` for each variant of a sweep, in the result's order."""
    metric = data["metric"]
    return [(rank, v, v["metrics"].get(metric) if metric else None) for rank, v in enumerate(data["variants"], 1)]


def sweep_table(data: dict) -> str:
    """A sweep's variants ranked by its metric (``SweepResult.to_json()``), the best starred."""
    metric = data["metric"]
    rows = []
    for rank, v, value in ranked_variants(data):
        params = ", ".join(f"{k}={fmt(val)}" for k, val in v["parameters"].items())
        rows.append([("★ " if v["best"] else "  ") + str(rank), params, fmt(value) if value is not None else "-",
                     v["status"], v["run_id"]])
    out = [table(rows, ["rank", "parameters", metric or "metric", "status", "run"])]
    out.append(f"sweep {data['sweep_id']}: {len(data['variants'])} variant(s), {data['stages_executed']} stage "
               f"execution(s) for {data['stages_used']} stage result(s) (identical stages shared)")
    if data["best"]:
        out.append(f"best: {data['best']} by {metric} ({data['goal']})")
    return "\n".join(out)
