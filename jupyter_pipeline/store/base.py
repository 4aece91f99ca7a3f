"""Artifact stores: where run records, stage notebooks, variables and models live.

A store is addressed by URL and chosen by scheme from :data:`stores`: a plain path or
``file://`` is a :class:`LocalStore` (the default, ``./.pipeline-store``); other schemes (``s3://``)
register themselves. Keys are ``/``-separated relative paths in the layout of docs/store.md.

Subclasses implement the byte-level primitives; the base class owns JSON, run-record layout and
the "give me a local file for this key" helpers that let large values stream without copies.
"""

from __future__ import annotations

import contextlib
import errno
import importlib
import json
import os
import secrets
import shutil
import tempfile
import time
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Callable, Iterator, TypeVar
from urllib.parse import urlparse

from . import jsontext
from ..exceptions import ArtifactNotFound, StoreError
from ..registry import Registry
from ..settings import DEFAULT_STORE  # noqa: F401 - re-exported

T = TypeVar("T")


class NotJSON(StoreError, ValueError):
    """Raised when an object of the store that holds JSON (a run record, a model's meta.json) does not."""


class Store(ABC):
    """Base class of artifact stores; a new backend implements the abstract primitives."""

    scheme = ""
    #: Whether a missing container (an S3 bucket) may be created on first write. Only a store run
    #: with on this machine creates one; pods, ``serve`` and ``deploy`` open theirs with ``create=False``
    #: (Kubeflow's per-namespace users may not create buckets).
    may_create = True

    def __init__(self, url: str):
        self.url = url

    # -- primitives ---------------------------------------------------------------------------
    @abstractmethod
    def put_bytes(self, key: str, data: bytes) -> None:
        """Write ``data`` at ``key``; readers see the old object or the new one, never a part."""

    @abstractmethod
    def get_bytes(self, key: str) -> bytes:
        """Return the object at ``key`` or raise :class:`ArtifactNotFound`."""

    @abstractmethod
    def put_file(self, key: str, path: str | os.PathLike) -> None:
        """Upload a local file to ``key``, streaming."""

    @abstractmethod
    def get_file(self, key: str, path: str | os.PathLike) -> None:
        """Download ``key`` into a local file, streaming."""

    @abstractmethod
    def exists(self, key: str) -> bool:
        """Whether an object exists at ``key``."""

    @abstractmethod
    def list(self, prefix: str = "", recursive: bool = False) -> list[str]:
        """Keys under ``prefix``; without ``recursive``, one level, sub-folders ending in ``/``."""

    @abstractmethod
    def delete(self, key: str) -> None:
        """Remove the object at ``key`` (no error when absent)."""

    def check(self) -> None:  # noqa: B027 - optional hook: a store that needs no check inherits this
        """Raise :class:`StoreError` with a precise message unless the store is usable now."""

    def absolute_url(self) -> str:
        """A URL naming this store from any working directory (passed to stage kernels)."""
        return self.url

    def uri(self, key: str) -> str:
        """A location a person can open: a file path or an ``s3://`` URI."""
        return f"{self.url.rstrip('/')}/{key}"

    def create_exclusive(self, key: str, data: bytes) -> bool:
        """Write ``key`` only if it does not exist yet; return whether this call created it.

        Used to claim model versions so two concurrent writers never get the same number.
        """
        if self.exists(key):
            return False
        self.put_bytes(key, data)
        return True

    # -- local-file views (backends that have real files override these to avoid copies) ------
    @contextlib.contextmanager
    def writing(self, key: str) -> Iterator[Path]:
        """Yield a local path to write; on success its content is published at ``key``."""
        with tempfile.TemporaryDirectory(prefix="jp-put-") as tmp:
            path = Path(tmp) / Path(key).name
            yield path
            self.put_file(key, path)

    @contextlib.contextmanager
    def reading(self, key: str) -> Iterator[Path]:
        """Yield a local path holding the content of ``key``."""
        with tempfile.TemporaryDirectory(prefix="jp-get-") as tmp:
            path = Path(tmp) / Path(key).name
            self.get_file(key, path)
            yield path

    # -- JSON -----------------------------------------------------------------------------------
    def put_json(self, key: str, value) -> None:
        self.put_bytes(key, jsontext.dumps(value, indent=1, sort_keys=False).encode())

    def get_json(self, key: str):
        data = self.get_bytes(key)
        try:
            return json.loads(data)
        except (ValueError, RecursionError) as exc:
            raise NotJSON(f"{self.uri(key)} is not valid JSON ({exc}); it was changed or cut short outside "
                          "jupyter-pipeline: restore or remove it.") from None

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.url!r})"


class LocalStore(Store):
    """A folder on the local disk; the default store."""

    scheme = "file"

    def __init__(self, url: str):
        super().__init__(url)
        parsed = urlparse(url)
        raw = parsed.path if parsed.scheme == "file" else url
        self.root = Path(os.path.expanduser(raw)).resolve()

    @contextlib.contextmanager
    def _taking(self, key: str):
        """Turn what the file system refuses inside (a read-only folder, a full disk, a folder replaced by a
        file) into one :class:`StoreError` naming the store and the error; errors about files outside
        the store (a source file that is missing) pass unchanged."""
        try:
            yield
        except OSError as exc:
            named = [Path(os.fsdecode(n)) for n in (exc.filename, exc.filename2) if n is not None]
            if named and not any(n == self.root or self.root in n.parents for n in named):
                raise
            raise StoreError(f"The store {self.root} does not take writes: {exc.strerror or exc} "
                             f"(writing {key}).") from None

    def _path(self, key: str) -> Path:
        path = (self.root / key).resolve()
        if path != self.root and self.root not in path.parents:
            raise StoreError(f"Key {key!r} points outside the store {self.root}.")
        return path

    def put_bytes(self, key: str, data: bytes) -> None:
        with self.writing(key) as path:
            path.write_bytes(data)

    def get_bytes(self, key: str) -> bytes:
        try:
            return self._path(key).read_bytes()
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            raise ArtifactNotFound(f"{key} is not in store {self.root}") from None
        except OSError as exc:
            if exc.errno == errno.ENAMETOOLONG:  # (a run id of 300 characters, say): no such object
                raise ArtifactNotFound(f"{key[:80]}... is not in store {self.root}") from None
            raise StoreError(f"The store {self.root} cannot be read: {exc.strerror or exc} (reading {key}).") from None

    def put_file(self, key: str, path) -> None:
        if Path(path).resolve() == self._path(key):
            return
        with self.writing(key) as target:
            shutil.copyfile(path, target)

    def get_file(self, key: str, path) -> None:
        source = self._path(key)
        if not source.is_file():
            raise ArtifactNotFound(f"{key} is not in store {self.root}")
        if source != Path(path).resolve():
            shutil.copyfile(source, path)

    def exists(self, key: str) -> bool:
        try:
            return self._path(key).is_file()
        except OSError as exc:
            if exc.errno == errno.ENAMETOOLONG:
                return False
            raise StoreError(f"The store {self.root} cannot be read: {exc.strerror or exc} (reading {key}).") from None

    def list(self, prefix: str = "", recursive: bool = False) -> list[str]:
        base = self._path(prefix) if prefix else self.root
        if not base.is_dir():
            return []
        rel = prefix.rstrip("/") + "/" if prefix else ""
        if recursive:
            return sorted(
                rel + p.relative_to(base).as_posix()
                for p in base.rglob("*")
                if p.is_file() and not p.name.startswith(".jp-tmp-")
            )
        out = []
        for p in sorted(base.iterdir()):
            if p.name.startswith(".jp-tmp-"):
                continue
            out.append(rel + p.name + ("/" if p.is_dir() else ""))
        return out

    def delete(self, key: str) -> None:
        with self._taking(key), contextlib.suppress(FileNotFoundError):
            self._path(key).unlink()

    def check(self) -> None:
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(f"Cannot create the store folder {self.root}: {exc.strerror}.") from None
        if not os.access(self.root, os.W_OK):
            raise StoreError(f"The store folder {self.root} is not writable.")

    def uri(self, key: str) -> str:
        return str(self.root / key)

    def absolute_url(self) -> str:
        return str(self.root)

    def create_exclusive(self, key: str, data: bytes) -> bool:
        path = self._path(key)
        with self._taking(key):
            path.parent.mkdir(parents=True, exist_ok=True)
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
            except FileExistsError:
                return False
            with os.fdopen(fd, "wb") as f:
                f.write(data)
        return True

    @contextlib.contextmanager
    def writing(self, key: str) -> Iterator[Path]:
        # Write beside the target, then rename: a reader never sees a half-written file.
        target = self._path(key)
        with self._taking(key):
            target.parent.mkdir(parents=True, exist_ok=True)
            # Created with mode 0666 so the umask decides, as for any file (mkstemp would force 0600 and
            # keep a team sharing the store folder from reading each other's runs).
            tmp = target.parent / f".jp-tmp-{secrets.token_hex(8)}.{target.name}"
            os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
            try:
                yield Path(tmp)
                os.replace(tmp, target)
            finally:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)

    @contextlib.contextmanager
    def reading(self, key: str) -> Iterator[Path]:
        path = self._path(key)
        if not path.is_file():
            raise ArtifactNotFound(f"{key} is not in store {self.root}")
        yield path


#: How long a write that must not be lost (a run's final record, a stage's executed notebook) keeps
#: being tried while the store is unreachable, beyond the backend's own few retries, unless the
#: ``store_patience`` setting (``JUPYTER_PIPELINE_STORE_PATIENCE``) says otherwise.
PATIENCE_SECONDS = 120.0


def store_patience() -> float:
    """Seconds :func:`patiently` waits for a store that is down (the ``store_patience`` setting)."""
    from ..settings import Settings

    value = Settings(in_cluster=False).get("store_patience")
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        seconds = -1.0
    if not seconds >= 0:  # also refuses NaN
        raise StoreError(f"store_patience (JUPYTER_PIPELINE_STORE_PATIENCE) must be a number of seconds "
                         f"of 0 or more, got {value!r}.")
    return seconds


def patiently(fn: Callable[[], T], patience: float | None = None) -> T:
    """``fn()``, tried again with growing pauses for up to ``patience`` seconds while the store is down
    (by default :func:`store_patience`).

    Only transient failures (unreachable, stalled, overloaded) are waited out; a store that
    refuses (credentials, permissions, a missing key) fails at once.
    """
    if patience is None:
        patience = store_patience()
    deadline, pause = time.monotonic() + patience, 0.5
    while True:
        try:
            return fn()
        except StoreError as exc:
            if not exc.transient or time.monotonic() + pause > deadline:
                raise
        time.sleep(pause)
        pause = min(pause * 2, 8.0)


#: Store classes by URL scheme. ``""`` (a plain path) and ``file`` are the local folder.
stores: Registry[type[Store]] = Registry("store scheme")


def resolve_store_url(explicit: str | None = None, notebook_settings: dict | None = None) -> str:
    """The store URL in effect (see :mod:`jupyter_pipeline.settings` for the precedence)."""
    from ..settings import Settings

    return Settings(flags={"store": explicit}, notebook=notebook_settings).get("store")


def open_store(url: str | Store | None = None, create: bool = True) -> Store:
    """Return the store for ``url`` (a :class:`Store` is returned as is); ``create=False``: never
    create its bucket (a missing one is an error naming the bucket and what to set)."""
    if isinstance(url, Store):
        return url
    url = url or resolve_store_url()
    scheme = urlparse(url).scheme
    if len(scheme) == 1:  # a Windows drive letter, not a scheme
        scheme = ""
    if scheme not in stores and scheme in BACKEND_MODULES:
        # Backends outside this module register themselves on import; import them by name, so this
        # module never depends on them (boto3 is only imported for an s3:// store).
        with contextlib.suppress(ImportError):
            importlib.import_module(BACKEND_MODULES[scheme])
    store = stores.get(scheme)(url)
    store.may_create = create
    return store


#: Modules that register a store scheme when imported.
BACKEND_MODULES = {"s3": "jupyter_pipeline.store.s3"}


stores.register("", LocalStore)
stores.register("file", LocalStore)
