"""Printing for the CLI: JSON, tables, progress lines and one-paragraph errors."""

from __future__ import annotations

import sys
import textwrap
import time
import traceback

from ..exceptions import PipelineError, redact
from ..store import jsontext
from ..store.records import error_with_cell
from ..summary import fmt, run_summary, seconds, table  # noqa: F401 - the CLI's printing, in one import

EXIT_FAILED = 1
EXIT_INTERNAL = 70


class CommandFailed(Exception):
    """Raised by a handler to end with a message and exit status (already user-facing)."""

    def __init__(self, message: str, status: int = EXIT_FAILED):
        self.status = status
        super().__init__(message)


def fail(message: str, status: int = EXIT_FAILED):
    raise CommandFailed(message, status)


def paragraph(text: str) -> str:
    # Paths and URLs stay whole (no breaks inside words or at hyphens): they must be copyable.
    words = " ".join(str(text).split())
    return "\n".join(textwrap.wrap(words, width=100, break_long_words=False, break_on_hyphens=False)) or str(text)


def report_error(exc: BaseException, debug: bool = False) -> int:
    if debug:
        traceback.print_exception(exc, file=sys.stderr)
    if isinstance(exc, CommandFailed):
        print(f"error: {paragraph(str(exc))}", file=sys.stderr)
        return exc.status
    if isinstance(exc, PipelineError):
        print(f"error: {paragraph(str(exc))}", file=sys.stderr)
        return EXIT_FAILED
    print(
        paragraph(f"internal error: {type(exc).__name__}: {redact(str(exc))}. This is a bug in jupyter-pipeline; "
                  "re-run with --debug for the traceback and report it."),
        file=sys.stderr,
    )
    return EXIT_INTERNAL


def error_json(exc: BaseException) -> dict:
    """The one JSON object a ``--json`` command prints when it fails before it has a result."""
    from ..exceptions import ValidationFailed

    if isinstance(exc, KeyboardInterrupt):
        return {"status": "interrupted", "error": "interrupted"}
    if isinstance(exc, ValidationFailed):
        return {"status": "invalid", "error": str(exc), "notebook": exc.notebook,
                "problems": [p.to_json() for p in exc.problems]}
    known = isinstance(exc, (CommandFailed, PipelineError))
    return {"status": "error", "error": str(exc) if known else f"internal error: {type(exc).__name__}: {redact(str(exc))}",
            "error_type": type(exc).__name__}


def print_json(value) -> None:
    jsontext.dump(value, sys.stdout, indent=2)
    sys.stdout.write("\n")


_MARKS = {"succeeded": "✔", "failed": "✖", "skipped": "–", "cancelled": "■", "running": "▶", "interrupted": "!"}


class Progress:
    """Prints one line per stage event on stderr while a run goes on."""

    def __init__(self, stream=sys.stderr):
        self.stream = stream
        self.t0 = time.monotonic()

    def __call__(self, kind: str, record, stage: str | None) -> None:
        clock = f"[{time.monotonic() - self.t0:6.1f}s]"
        if kind == "run-started":
            todo = [n for n, r in record.stages.items() if not (r.reused or r.reused_from)]
            print(f"{clock} run {record.run_id}: {len(todo)} stage(s) to run, store {record.store}",
                  file=self.stream, flush=True)
            for note in record.history:
                if note.get("event") == "kernel-fallback":
                    print(f"{clock} note: {note['message']}", file=self.stream, flush=True)
        elif kind == "stage-started":
            if record.stages[stage].reused_from:
                return  # reported once, when it is done
            why = record.stages[stage].why
            print(f"{clock} {_MARKS['running']} {stage} started" + (f" ({why})" if why else ""),
                  file=self.stream, flush=True)
        elif kind == "stage-finished":
            rec = record.stages[stage]
            status = rec.status.value
            if rec.reused_from and status == "succeeded":
                status = f"reused from run {rec.reused_from}"
            extra = f" in {seconds(rec.duration)}" if rec.duration is not None and not rec.reused_from else ""
            if rec.metrics:
                extra += "  " + ", ".join(f"{k}={fmt(v)}" for k, v in rec.metrics.items())
            if rec.error and status == "failed":
                extra += f": {error_with_cell(rec.error, rec.error_cell)}"
            elif rec.skip_reason:
                extra += f": {rec.skip_reason}"
            print(f"{clock} {_MARKS.get(rec.status.value, '?')} {stage} {status}{extra}", file=self.stream, flush=True)
