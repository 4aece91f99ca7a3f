"""Notebook paths from the browser, resolved inside the server's root directory.

The REST API takes the same relative paths as Jupyter's contents API (``dir/nb.ipynb``). Anything
that could reach outside the root is refused before a file is opened: absolute paths, ``..``
parts, and symlinks whose target lies outside.
"""

from __future__ import annotations

import os
import re
from pathlib import Path, PurePosixPath

from ..exceptions import PipelineError

#: Run ids and stage names travel into store keys; these are the shapes the core creates.
RUN_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,200}$")
STAGE_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")


class PathNotAllowed(PipelineError):
    """Raised when a requested path is absolute, climbs out with ``..`` or leaves the root by a symlink."""

    http_status = 403


class BadRequest(PipelineError):
    """Raised when a request lacks a field or a field has the wrong shape."""

    http_status = 400


class OutputExists(PipelineError):
    """Raised when a compile output would replace an existing file without ``"overwrite": true``."""

    http_status = 409


#: Longer paths and names are refused before the file system refuses them (Linux's PATH_MAX, NAME_MAX).
MAX_PATH_BYTES, MAX_NAME_BYTES = 4000, 255

#: The only files ``POST compile`` writes.
OUTPUT_SUFFIXES = (".yaml", ".yml")


def resolve_notebook(root_dir: str | os.PathLike, path: object) -> Path:
    """The absolute path of notebook ``path`` (relative to ``root_dir``); it may not exist yet."""
    if not isinstance(path, str) or not path.strip():
        raise BadRequest("Give the notebook's path relative to the server's root, e.g. \"path\": \"dir/nb.ipynb\".")
    if "\0" in path:
        raise BadRequest("The notebook path contains a NUL character.")
    text = path.replace("\\", "/")
    parts = PurePosixPath(text).parts
    if text.startswith("/") or text.startswith("~") or re.match(r"^[A-Za-z]:", text) or os.path.isabs(path):
        raise PathNotAllowed(f"Path {path!r} is absolute; give it relative to the server's root directory.")
    if ".." in parts:
        raise PathNotAllowed(f"Path {path!r} contains '..'; paths must stay inside the server's root directory.")
    shown = path if len(path) <= 80 else f"{path[:60]}... ({len(path)} characters)"
    if len(text.encode()) > MAX_PATH_BYTES or any(len(p.encode()) > MAX_NAME_BYTES for p in parts):
        raise BadRequest(f"Path {shown!r} is longer than a file's path can be ({MAX_PATH_BYTES} bytes, "
                         f"{MAX_NAME_BYTES} per name).")
    root = Path(root_dir).resolve()
    try:
        full = (root / Path(*parts)).resolve()
    except RuntimeError:  # Python's word for a symlink loop
        raise BadRequest(f"Path {shown!r} is a symlink that leads to itself (a loop).") from None
    except OSError as exc:
        raise BadRequest(f"Path {shown!r} cannot be used: {exc.strerror or exc}.") from None
    if full != root and root not in full.parents:
        # Only a symlink can get here; do not say where it points.
        raise PathNotAllowed(f"Path {shown!r} leads outside the server's root directory.")
    if full == root:
        raise BadRequest(f"Path {shown!r} names the server's root folder; give a notebook's path, e.g. \"dir/nb.ipynb\".")
    return full


def resolve_output(root_dir: str | os.PathLike, path: object, *, overwrite: bool = False,
                   forbidden: tuple[str | os.PathLike, ...] = ()) -> Path:
    """Where ``POST compile`` may write ``path``: a ``.yaml``/``.yml`` file inside the root.

    Never a notebook or any other kind of file, never inside a ``forbidden`` folder (the store),
    and an existing file only when ``overwrite`` is set (and it is a YAML file too). Symlinks are
    judged by where they lead.
    """
    full = resolve_notebook(root_dir, path)
    shown = relative_to_root(root_dir, str(full)) or str(path)
    if full.suffix.lower() not in OUTPUT_SUFFIXES:
        raise PathNotAllowed(f"The compiled pipeline is saved only as a .yaml or .yml file; {shown!r} is not one.")
    for folder in forbidden:
        folder = Path(folder).resolve()
        if full == folder or folder in full.parents:
            raise PathNotAllowed(f"{shown!r} is inside the pipeline store; save the compiled pipeline elsewhere.")
    if full.is_dir():
        raise OutputExists(f"{shown!r} is a folder; name a .yaml file to save the compiled pipeline in.")
    if full.exists() and not overwrite:
        raise OutputExists(f"{shown!r} already exists; send \"overwrite\": true to replace it.")
    if not full.parent.is_dir():
        parent = relative_to_root(root_dir, str(full.parent)) or "its folder"
        raise BadRequest(f"Cannot save {shown!r}: the folder {parent!r} does not exist.")
    return full


def relative_to_root(root_dir: str | os.PathLike, path: str) -> str | None:
    """``path`` (absolute) as a root-relative API path, or None when it is outside the root."""
    root = Path(root_dir).resolve()
    try:
        return Path(path).resolve().relative_to(root).as_posix()
    except ValueError:
        return None


def check_run_id(run_id: str) -> str:
    if not RUN_ID_RE.match(run_id) or ".." in run_id:
        raise BadRequest(f"{run_id!r} is not a run id.")
    return run_id


def check_stage(name: str) -> str:
    if not STAGE_RE.match(name) or ".." in name:
        raise BadRequest(f"{name!r} is not a stage name.")
    return name
