"""Working files that travel with a run: files and folders next to the notebook that stages read.

What travels: the notebook setting ``files`` (globs relative to the notebook's folder) and every
string literal in a stage's or a setup cell's code that names an existing file or folder next to
the notebook (``pd.read_csv("data/train.csv")``, ``open("config.yaml")``). They are packed into
one gzip'd tar, stored once per content under ``files/<sha256>.tar.gz`` in the store the pods use,
and unpacked into the working directory of each stage's kernel before it runs. The bundle's key
is a constant input of every stage, so an unchanged bundle keeps KFP's cache valid.
"""

from __future__ import annotations

import ast
import gzip
import hashlib
import io
import posixpath
import tarfile
from dataclasses import dataclass
from pathlib import Path

from ..notebook import analysis
from ..exceptions import TargetError
from ..notebook.pipeline import Pipeline

#: Total size (before compression) of the files that may travel, unless ``files_max_mb`` says otherwise.
DEFAULT_MAX_MB = 50
BUNDLE_PREFIX = "files/"
#: Folders never packed: caches, checkpoints, virtual environments, version control, local stores.
SKIPPED_PARTS = frozenset({"__pycache__", ".ipynb_checkpoints", ".git", ".venv", "venv", "node_modules"})


@dataclass(frozen=True)
class Bundle:
    """The packed working files: their paths (relative to the notebook), bytes and store key."""

    paths: tuple[str, ...]
    data: bytes  # the gzip'd tar
    size: int  # of the files
    digest: str  # sha256 of the tar before compression (zlib versions compress differently)

    @property
    def key(self) -> str:
        return f"{BUNDLE_PREFIX}{self.digest}.tar.gz"


def notebook_dir(pipeline: Pipeline, directory: str | Path | None = None) -> Path | None:
    """The folder the notebook's working files are relative to: ``directory`` when given (a
    notebook not read from its file), else the notebook file's own folder."""
    if directory is not None:
        return Path(directory).resolve()
    path = Path(pipeline.path)
    return path.resolve().parent if path.suffix in (".ipynb", ".pipeline") and path.is_file() else None


def _inside(root: Path, path: Path) -> bool:
    try:
        rel = path.resolve().relative_to(root)
    except ValueError:
        return False
    return not any(part in SKIPPED_PARTS or part.startswith(".") for part in rel.parts)


def _expand(root: Path, path: Path) -> list[Path]:
    if path.is_dir():
        return [p for p in sorted(path.rglob("*")) if p.is_file() and _inside(root, p)]
    return [path] if path.is_file() and _inside(root, path) else []


def literal_paths(source: str) -> list[str]:
    """String literals in ``source`` that look like relative paths."""
    try:
        tree = ast.parse(analysis.to_python(source))
    except SyntaxError:
        return []
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            text = node.value.strip()
            if 0 < len(text) < 256 and "\n" not in text and "://" not in text and not text.startswith(("/", "~")):
                out.append(text)
    return out


def travelling(pipeline: Pipeline, directory: str | Path | None = None) -> list[str]:
    """The files that travel with ``pipeline``, relative to its notebook's folder, sorted."""
    root = notebook_dir(pipeline, directory)
    if root is None:
        return []
    notebook = Path(pipeline.path).resolve()
    found: set[Path] = set()
    for folder, pattern in _patterns(pipeline):
        for match in (root / folder).glob(pattern):
            found.update(_expand(root, match))
    cells = set(pipeline.setup_cells) | {i for s in pipeline.stages for i in s.cells}
    for index in sorted(cells):
        cell = pipeline.cells[index]
        if cell.cell_type != "code":
            continue
        base = (root / posixpath.dirname(cell.notebook)).resolve()  # an included notebook's paths are its folder's
        for text in literal_paths(cell.source):
            candidate = base / text
            if candidate.exists() and candidate.resolve() != base:
                found.update(_expand(root, candidate))
    found.discard(notebook)
    found.difference_update((root / n.path).resolve() for n in pipeline.notebooks)
    return sorted(p.resolve().relative_to(root).as_posix() for p in found)


def _patterns(pipeline: Pipeline) -> list[tuple[str, str]]:
    """``(folder, glob)`` of every notebook's ``files`` setting: an included notebook's are relative to its folder."""
    out = []
    for folder, settings in [("", pipeline.settings)] + [(n.folder, n.settings) for n in pipeline.notebooks]:
        value = settings.get("files") or []
        out += [(folder, p) for p in ([value] if isinstance(value, str) else [str(v) for v in value])
                if (folder, p) not in out]
    return out


def max_bytes(pipeline: Pipeline) -> int:
    try:
        return int(float(pipeline.settings.get("files_max_mb", DEFAULT_MAX_MB)) * 1024 * 1024)
    except (TypeError, ValueError):
        return DEFAULT_MAX_MB * 1024 * 1024


def bundle(pipeline: Pipeline) -> Bundle | None:
    """Pack the travelling files (the same content always gives the same bytes); None if none."""
    paths = travelling(pipeline)
    if not paths:
        return None
    root = notebook_dir(pipeline)
    sizes = {p: (root / p).stat().st_size for p in paths}
    total, limit = sum(sizes.values()), max_bytes(pipeline)
    if total > limit:
        largest = ", ".join(f"{p} ({sizes[p] / 1e6:.1f} MB)" for p in sorted(paths, key=sizes.get, reverse=True)[:3])
        raise TargetError(
            f"{pipeline.path}: the {len(paths)} file(s) that would travel with the run to the pods add up to "
            f"{total / 1e6:.1f} MB, over the limit of {limit / 1e6:.0f} MB (largest: {largest}). Keep large data "
            "in the store or on a volume (tag volume:CLAIM:/path), narrow the notebook's `files` setting, or raise "
            "its `files_max_mb` setting.")
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for rel in paths:
            info = tarfile.TarInfo(rel)
            info.size, info.mode, info.mtime = sizes[rel], 0o644, 0
            with open(root / rel, "rb") as f:
                tar.addfile(info, f)
    data = gzip.compress(raw.getvalue(), mtime=0)
    return Bundle(tuple(paths), data, total, hashlib.sha256(raw.getvalue()).hexdigest())


def upload(store, packed: Bundle | None) -> None:
    """Put ``packed`` in ``store`` unless a bundle with the same content is there already."""
    if packed is not None and not store.exists(packed.key):
        store.put_bytes(packed.key, packed.data)


def publish(url: str, packed: Bundle | None) -> None:
    """Upload ``packed`` to the store the pods use (``url``), saying clearly when this machine cannot."""
    from ..exceptions import PipelineError
    from ..store.base import open_store

    if packed is None:
        return
    try:
        upload(open_store(url, create=False), packed)  # on Kubeflow nothing creates buckets
    except (PipelineError, OSError) as exc:
        raise TargetError(
            f"{len(packed.paths)} working file(s) ({', '.join(packed.paths[:3])}{', ...' if len(packed.paths) > 3 else ''}) "
            f"travel to the pods through the store {url}, which cannot be written from here: {exc} Make it "
            "reachable (JUPYTER_PIPELINE_S3_ENDPOINT and credentials), name a store both reach with --kfp-store, or "
            "compile with --no-upload-files (the bundle is written next to the YAML, to copy to the store before "
            "running)."
        ) from None


def unpack(store, key: str, dest: str | Path) -> list[str]:
    """Unpack the bundle at ``key`` (if any) into ``dest``; return the paths it held."""
    if not key:
        return []
    with store.reading(key) as path, tarfile.open(path, mode="r:gz") as tar:
        tar.extractall(dest, filter="data")
        return tar.getnames()


__all__ = ["Bundle", "bundle", "travelling", "upload", "publish", "unpack"]
