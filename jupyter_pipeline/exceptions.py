"""The exception hierarchy of jupyter-pipeline.

Every error a user can cause is a :class:`PipelineError`. Fronts (CLI, REST, magics) print
``str(error)`` as one paragraph and never a traceback; structured fields let them say more.
"""

from __future__ import annotations

import re

#: The user information of a URL (``https://user:password@host``): credentials, never shown.
_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^/\s@'\"<>]+@")


def redact(text: str) -> str:
    """``text`` with the ``user:password@`` of every URL in it replaced by ``***@``: messages and logs
    name a KFP host or a store by its URL, which may carry credentials."""
    return _USERINFO.sub(r"\1***@", text)


class PipelineError(Exception):
    """Raised when anything in jupyter-pipeline fails in a way the user can act on."""

    #: HTTP status a REST front answers with; 400 unless a subclass knows better.
    http_status = 400

    def __str__(self) -> str:
        return redact(super().__str__())  # every front shows str(error): none shows a URL's credentials


class NotebookReadError(PipelineError):
    """Raised when a notebook file is missing, unreadable or not a notebook."""

    http_status = 404

    def __init__(self, path, reason: str):
        self.path = str(path)
        self.reason = reason
        super().__init__(f"Cannot read notebook {self.path}: {reason}")


class MalformedNotebook(NotebookReadError):
    """Raised when a notebook file exists but is not a readable Jupyter notebook (bad JSON, wrong shape)."""

    http_status = 422


class PipelineFileError(NotebookReadError):
    """Raised when an Elyra pipeline file is missing, unreadable or not pipeline-flow JSON."""

    def __init__(self, path, reason: str):
        super().__init__(path, reason)
        self.args = (f"Cannot read pipeline file {self.path}: {reason}",)


class ValidationFailed(PipelineError):
    """Raised when a notebook has validation errors and an action needs a valid pipeline."""

    http_status = 422

    def __init__(self, notebook: str, problems: list):
        self.notebook = notebook
        self.problems = problems
        super().__init__(f"{self.summary()} Run `jupyter-pipeline validate {notebook}` to see every problem.")

    def summary(self) -> str:
        """The errors in one sentence, without the command-line hint (fronts add their own)."""
        errors = [p for p in self.problems if p.severity == "error"]
        lines = "; ".join(p.describe() for p in errors[:5])
        more = f" (and {len(errors) - 5} more)" if len(errors) > 5 else ""
        return f"{self.notebook} is not a valid pipeline: {lines}{more}."


class DistributedError(PipelineError):
    """Raised when the replicas of a ``workers:`` stage cannot form their gang or join JAX's runtime."""


class UnknownKeyError(PipelineError, KeyError):
    """Raised when a registry is asked for a key nothing was registered under."""

    def __init__(self, kind: str, key: str, known):
        self.kind, self.key = kind, key
        choices = ", ".join(sorted(known)) or "none"
        super().__init__(f"Unknown {kind} {key!r}; known {kind}s: {choices}.")

    __str__ = Exception.__str__


class ParameterError(PipelineError):
    """Raised when a run parameter is unknown or its value does not fit the declared type."""


class VariableNotSavable(PipelineError):
    """Raised when a value a later stage needs cannot be written to the store."""

    #: What to do instead, for each kind of live state that no other process can receive.
    ADVICE = {
        "a generator": "turn it into a list (`list(...)`) where it is made, if it is finite, or create "
                       "the generator in the stage that uses it",
        "a coroutine": "await it where it is made and pass its result",
        "an open file": "pass the file's path (or what you read from it) and open the file in the stage "
                        "that needs it",
        "a lock": "create it in a `setup` cell so every stage has its own",
        "a connection": "pass what it takes to connect (an address, a path) and connect in the stage that "
                        "uses it, or in a `setup` cell",
        "a running thread or process": "wait for it where it is started and pass its result",
    }
    GENERIC_ADVICE = "recompute it in the stage that needs it, or create it in a `setup` cell so every stage has its own"

    def __init__(self, variable: str, stage: str | None, type_name: str, reason: str, *,
                 cell: int | None = None, part: str | None = None, kind: str | None = None):
        self.variable, self.stage, self.type_name, self.cell = variable, stage, type_name, cell
        where = "".join([f" in stage '{stage}'" if stage else "", f" (cell {cell})" if cell else ""])
        if kind and part and part != variable:
            what = f"`{part}` is {kind}, which cannot be saved"
        elif kind:
            what = f"it holds {kind}{'' if type_name in kind else f' ({type_name})'}, which cannot be saved"
        else:
            what = f"a value of type {type_name} cannot be saved ({reason})"
        advice = self.ADVICE.get(kind or "", self.GENERIC_ADVICE)
        super().__init__(f"Variable '{variable}'{where} cannot be passed to later stages: {what}. "
                         f"Instead, {advice}.")


class VariableNotLoadable(PipelineError):
    """Raised when a stage cannot load a value an upstream stage saved for it."""

    def __init__(self, variable: str, stage: str | None, producer: str, reason: str, cause: str, *,
                 cell: int | None = None, producer_cell: int | None = None):
        self.variable, self.stage, self.producer, self.cell = variable, stage, producer, cell
        where = "".join([f"Stage '{stage}'" if stage else "This stage", f" (cell {cell})" if cell else ""])
        made = f"stage '{producer}' made" + (f" in cell {producer_cell}" if producer_cell else "")
        super().__init__(f"{where} could not load variable '{variable}', which {made}: {reason}. "
                         f"Likely cause: {cause}.")


class StoreError(PipelineError):
    """Raised when the artifact store cannot be reached, read or written."""

    http_status = 502
    #: Whether the same request may succeed later (the store was unreachable, stalled or overloaded).
    transient = False


class ArtifactNotFound(StoreError):
    """Raised when a key is not in the store."""

    http_status = 404


class RunNotFound(PipelineError):
    """Raised when a run id is not in the store."""

    http_status = 404

    def __init__(self, run_id: str, store_url: str):
        self.run_id = run_id
        super().__init__(f"No run '{run_id}' in store {store_url}. `jupyter-pipeline runs` lists the runs.")


class ModelNotFound(PipelineError):
    """Raised when a registered model name or version does not exist."""

    http_status = 404


class TargetError(PipelineError):
    """Raised when a run target (Kubeflow, kfp.local) rejects or cannot take a pipeline."""

    http_status = 502
