"""A stage that works in a folder of its own, run in the stage's kernel (an Elyra node).

:func:`enter` makes the folder: the files the stage ships (its notebook or script and its
dependencies, copied from the pipeline's folder, or from the working files unpacked in a pod) and
the files its upstream stages passed on (fetched from the store), then sets the stage's environment
and moves into it. :func:`run_file` runs a script there, as Elyra does (``python FILE``,
``Rscript FILE``). :func:`save_files` puts the files the stage passes on into the store, listed in
its output index next to any variables (entries with ``"saver": "file"``), so a reader on another
pod, a resumed run or a run reusing this stage finds them as it finds values.
"""

from __future__ import annotations

import atexit
import fnmatch
import glob
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from . import context
from ..store.records import stage_key

#: Prefix, in a stage's folder of the store, of the files it passes on.
FILES_PREFIX = "files"
FILE_SAVER = "file"


_home: list[str] = []  # the folder the kernel started in: the pipeline file's (or the unpacked files')


class FileStageError(RuntimeError):
    """Raised in a stage's kernel when its files cannot be shipped, fetched, run or passed on."""


def enter(spec: dict, parameters: dict | None = None) -> str:
    """Make the stage's working folder from ``spec`` (``folder``: WorkFolder.to_json(), ``files``:
    ``[[pattern, producer], ...]``) and move into it; return its path. ``parameters`` are the
    pipeline parameters passed to the stage as environment variables."""
    ctx = context.current()
    folder = spec.get("folder") or {}
    from .io import scratch

    # In the stage process's scratch folder, which it removes when the stage ends (failed ones too);
    # without one (a shared kernel), when the kernel exits.
    work = tempfile.mkdtemp(prefix=f"jp-{ctx.stage if ctx else 'stage'}-work-", dir=scratch[0] if scratch else None)
    if not scratch:
        atexit.register(shutil.rmtree, work, True)
    if not _home:
        _home.append(os.getcwd())  # a shared kernel runs several stages: each starts from the first folder
    base = Path(_home[0], folder.get("base") or ".")
    for pattern in folder.get("ship") or []:
        _ship(base, pattern, Path(work), bool(folder.get("recursive")))
    if ctx is not None:
        for pattern, producer in spec.get("files") or []:
            fetch(ctx, pattern, producer, work)
    elif spec.get("files"):  # the notebook run outside a pipeline run (a debug notebook, say)
        print(f"jupyter-pipeline: no pipeline run is active, so the files upstream stages passed on "
              f"({', '.join(p for p, _ in spec['files'])}) are not in the working folder {work}", file=sys.stderr)
    keep = set(folder.get("keep_env") or ())
    for name, value in (folder.get("env") or {}).items():
        if not (name in keep and name in os.environ):  # on a pod a Kubernetes secret set it: that wins
            os.environ[name] = str(value)
    for name, value in (parameters or {}).items():
        os.environ[name] = str(value)
    os.environ["ELYRA_RUNTIME_ENV"] = "kfp" if os.environ.get("KUBERNETES_SERVICE_HOST") else "local"
    if ctx is not None:
        os.environ["ELYRA_RUN_NAME"] = ctx.run_id
    os.chdir(work)
    sys.path.insert(0, work)  # `import helper` finds a shipped helper.py, as in Elyra's working folder
    return work


def _ship(base: Path, pattern: str, work: Path, recursive: bool) -> None:
    matches = [Path(p) for p in glob.glob(str(base / pattern), recursive=recursive)]
    if not matches:
        raise FileStageError(f"{pattern} (relative to {base}) matches no file to ship into the working folder")
    for match in matches:
        files = [match] if match.is_file() else [p for p in (match.rglob("*") if recursive else match.glob("*"))
                                                 if p.is_file()]
        for path in files:
            try:
                rel = path.resolve().relative_to(base.resolve())
            except ValueError:
                rel = Path(path.name)  # outside the node's folder: next to its file, as Elyra's archive has it
            (work / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, work / rel)


def fetch(ctx, pattern: str, producer: str, work: str) -> list[str]:
    """Copy the files ``producer`` passed on that match ``pattern`` into ``work``; return their paths."""
    index_key = stage_key(ctx.run_id, producer, "outputs.json")
    index = ctx.store.get_json(index_key) if ctx.store.exists(index_key) else {}
    got = []
    for name, entry in index.items():
        if entry.get("saver") != FILE_SAVER or not _matches(name, pattern):
            continue
        key = f"{stage_key(entry.get('run_id', ctx.run_id), producer, entry.get('prefix', FILES_PREFIX))}/{entry['file']}"
        dest = Path(work, name)
        dest.parent.mkdir(parents=True, exist_ok=True)
        ctx.store.get_file(key, dest)
        got.append(name)
    if not got:
        raise FileStageError(f"stage '{producer}' passed on no file matching {pattern}, which stage "
                             f"'{ctx.stage}' receives")
    return got


def _matches(name: str, pattern: str) -> bool:
    pattern = pattern.strip().rstrip("/").removeprefix("./")
    return fnmatch.fnmatchcase(name, pattern) or name.startswith(pattern + "/")


def save_files(patterns: list[str]) -> list[str]:
    """Put the files of the working folder that match ``patterns`` in the store and list them in the
    stage's output index; a pattern that matches nothing fails the stage (Elyra's upload would)."""
    ctx = context.current()
    if ctx is None or ctx.rank:
        return []
    work = Path(os.getcwd())
    index_key = ctx.key("outputs.json")
    index = ctx.store.get_json(index_key) if ctx.store.exists(index_key) else {}
    saved = []
    for pattern in patterns:
        matches = sorted(Path(p) for p in glob.glob(str(work / pattern), recursive=True))
        files = [f for m in matches for f in ([m] if m.is_file() else sorted(m.rglob("*"))) if f.is_file()]
        if not files:
            raise FileStageError(f"stage '{ctx.stage}' declares the output {pattern}, which is not in its working "
                                 "folder after it ran (outputs are relative to the node file's folder)")
        for path in files:
            rel = path.relative_to(work).as_posix()
            ctx.store.put_file(f"{ctx.key(FILES_PREFIX)}/{rel}", path)
            index[rel] = {"file": rel, "prefix": FILES_PREFIX, "saver": FILE_SAVER, "type": "file",
                          "size": path.stat().st_size}
            saved.append(rel)
    ctx.store.put_json(index_key, index)
    return saved


def run_file(kind: str, path: str) -> None:
    """Run the script ``path`` of the working folder: ``python`` (this kernel's) or ``Rscript``, its
    output shown as the cell's; a non-zero exit fails the stage with the end of its error output."""
    if kind == "r":
        command = shutil.which("Rscript")
        if command is None:
            raise FileStageError(f"{path} is an R script and `Rscript` is not on PATH in this stage's environment; "
                                 "install R (e.g. the r-base package), or run it on an image that has it")
        argv = [command, path]
    else:
        argv = [sys.executable, path]
    process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1)
    tail: list[str] = []
    for line in process.stdout:
        sys.stdout.write(line)
        tail = (tail + [line.rstrip()])[-20:]
    code = process.wait()
    sys.stdout.flush()
    if code != 0:
        last = next((t for t in reversed(tail) if t.strip()), "")
        raise FileStageError(f"{' '.join(['python' if kind != 'r' else 'Rscript', path])} exited with status {code}"
                             + (f": {last.strip()}" if last else ""))
