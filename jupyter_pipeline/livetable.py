"""Live tables the magics draw in a notebook cell: a run's stages, a sweep's variants.

Each table is a MIME bundle (HTML for Jupyter, ``text/plain`` for everything else) that
:func:`drive` redraws in place, through one display id, on every run event.
"""

from __future__ import annotations

import html
import queue
import threading
import time
from typing import Callable

from .store.records import error_with_cell
from .summary import ranked_variants, sweep_table


class MagicFailed(Exception):
    """Raised to end a magic with a one-paragraph message and no traceback (the cell still fails)."""

    def _render_traceback_(self):
        return [f"\x1b[31mpipeline error:\x1b[0m {self}"]


MARKS = {"succeeded": "✔", "failed": "✖", "skipped": "–", "cancelled": "■", "running": "▶",
         "interrupted": "!", "pending": "·"}
COLOURS = {"succeeded": "#2e7d32", "failed": "#c62828", "running": "#1565c0", "cancelled": "#6d4c41",
           "interrupted": "#ef6c00", "skipped": "#757575", "pending": "#757575"}


def drive(start, cancel: Callable[[], None] | None, draw: Callable, final: Callable | None = None,
          what: str = "run"):
    """Run ``start(on_event)`` in a thread; redraw ``draw(record, elapsed)`` here, on each event, in this cell.

    Events are drawn from the kernel's main thread (outputs from other threads can land in another
    cell); an interrupt (the kernel's stop button) calls ``cancel`` and waits for the result, or,
    without ``cancel``, leaves the work going. The last drawing is ``final(result)`` (default
    ``draw(result, elapsed)``); returns what ``start`` returned.
    """
    from IPython.display import display

    events: queue.Queue = queue.Queue()
    outcome: dict = {}

    def work():
        try:
            outcome["result"] = start(lambda kind, record, stage: events.put(record))
        except BaseException as exc:
            outcome["error"] = exc
        finally:
            events.put(None)

    handle = display({"text/plain": f"starting the {what}…"}, raw=True, display_id=True)
    thread = threading.Thread(target=work, name=f"jp-magic-{what}", daemon=True)
    thread.start()
    t0, interrupted = time.monotonic(), False
    while True:
        try:
            record = events.get()
        except KeyboardInterrupt:
            if cancel is None:
                raise MagicFailed(f"interrupted: the {what} goes on; `%pipeline status` follows its runs") from None
            interrupted = True
            cancel()
            continue
        if record is None:
            break
        handle.update(draw(record, time.monotonic() - t0), raw=True)
    thread.join()
    if "error" in outcome:
        handle.update({"text/plain": f"{what} failed to start: {outcome['error']}"}, raw=True)
        raise outcome["error"]
    result = outcome["result"]
    handle.update(final(result) if final else draw(result, time.monotonic() - t0), raw=True)
    if interrupted:
        raise KeyboardInterrupt
    return result


def badge(status: str) -> str:
    return f"<span style='color:{COLOURS.get(status, '#111')}'>{MARKS.get(status, '?')} {status}</span>"


def _metrics(m: dict) -> str:
    return ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in m.items())


def _table(head: list[str], rows: list[list[str]]) -> str:
    cells = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    return "<table><tr>" + "".join(f"<th>{h}</th>" for h in head) + f"</tr>{cells}</table>"


def run_bundle(record, elapsed: float | None = None) -> dict:
    """A run record as a progress table: HTML for Jupyter, text for everything else."""
    def secs(v):
        return "" if v is None else f"{v:.1f} s"

    head = f"run {record.run_id} ({record.target}): {record.status.value}"
    if elapsed is not None:
        head += f" after {elapsed:.1f} s"
    lines = [head]
    rows = []
    for name, rec in record.stages.items():
        status = rec.status.value + (" (reused)" if rec.reused else "")
        error = (error_with_cell(rec.error, rec.error_cell) if rec.status.value == "failed"
                 else rec.error or rec.skip_reason or "")  # skip_reason: why a condition skipped it
        err = f" — {error}" if error and (rec.status.value == "failed" or rec.skip_reason) else ""
        lines.append(f"  {MARKS.get(rec.status.value, '?')} {name:<20} {status:<11} {secs(rec.duration):>8}  "
                     f"{_metrics(rec.metrics)}{err}")
        rows.append([html.escape(name), badge(rec.status.value), secs(rec.duration),
                     html.escape(_metrics(rec.metrics)), html.escape(error)])
    tail = []
    if record.error:
        tail.append(html.escape(record.error))
        lines.append(f"  {record.error}")
    if record.url:
        tail.append(f"<a href='{html.escape(record.url)}' target='_blank'>run page</a>")
        lines.append(f"  run page: {record.url}")
    body = (f"<p><b>{html.escape(head)}</b></p>" + _table(["stage", "status", "duration", "metrics", "error"], rows)
            + "".join(f"<p>{t}</p>" for t in tail))
    return {"text/plain": "\n".join(lines), "text/html": body}


class SweepProgress:
    """The variants of a running sweep, one row each, from the run events of their records."""

    def __init__(self, swept: list[str], metric: str | None):
        self.swept, self.metric = swept, metric
        self.records: dict[str, object] = {}

    def bundle(self, record, elapsed: float) -> dict:
        self.records[record.run_id] = record
        head = f"sweep over {', '.join(self.swept)}: {len(self.records)} variant(s) started, after {elapsed:.1f} s"
        lines, rows = [head], []
        for r in self.records.values():
            params = ", ".join(f"{k}={r.parameters.get(k)!r}" for k in self.swept)
            done = sum(s.status.value == "succeeded" for s in r.stages.values())
            value = r.metrics().get(self.metric, "") if self.metric else ""
            lines.append(f"  {MARKS.get(r.status.value, '?')} {params:<30} {done}/{len(r.stages)} stages  {value}")
            rows.append([html.escape(params), badge(r.status.value), f"{done}/{len(r.stages)}", html.escape(str(value)),
                         f"<code>{r.run_id}</code>"])
        table = _table(["parameters", "status", "stages ok", html.escape(self.metric or "metric"), "run"], rows)
        return {"text/plain": "\n".join(lines), "text/html": f"<p><b>{html.escape(head)}</b></p>{table}"}


def sweep_bundle(data: dict) -> dict:
    """A finished sweep (``SweepResult.to_json()``): its variants ranked, the best marked."""
    metric = data["metric"]
    rows = []
    for rank, v, value in ranked_variants(data):
        params = ", ".join(f"{k}={val!r}" for k, val in v["parameters"].items())
        rows.append([("★ " if v["best"] else "") + str(rank), html.escape(params),
                     "-" if value is None else html.escape(f"{value:.4g}" if isinstance(value, float) else str(value)),
                     badge(v["status"]), f"<code>{v['run_id']}</code>"])
    summary = (f"sweep {data['sweep_id']}: {len(data['variants'])} variant(s), {data['stages_executed']} stage "
               f"execution(s) for {data['stages_used']} stage result(s)"
               + (f"; best: {data['best']} by {metric} ({data['goal']})" if data["best"] else ""))
    table = _table(["rank", "parameters", html.escape(metric or "metric"), "status", "run"], rows)
    return {"text/plain": sweep_table(data), "text/html": f"<p><b>{html.escape(summary)}</b></p>{table}"}
