"""The served models: which versions are loaded, hot reload by polling the store, atomic swaps.

The repository holds one immutable :class:`ModelState` per model name in a dict that is only ever
*replaced*, never changed in place. A request resolves its :class:`ServedModel` once, from the
dict current at that moment, and keeps it to the end; a new version is loaded, compiled and
warmed up on a background thread and published by swapping in a new dict. So a swap never waits
for requests, and no request sees a half-loaded model or fails because of one.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Any, Callable

from ..store import models
from ..exceptions import PipelineError, redact
from ..store.base import Store
from .batcher import Batcher
from .errors import ModelNotFound, ModelNotReady
from .inference import ModelStats
from .predictor import Predictor
from .protocol import Signature
from .runtimes import platform_of, predictor_for

log = logging.getLogger("jupyter_pipeline.serving")


@dataclass(frozen=True)
class ModelSpec:
    """A ``--model NAME[:VERSION]`` selection; no version means "latest, and follow new ones"."""

    name: str
    version: int | None = None

    @classmethod
    def parse(cls, text: str) -> "ModelSpec":
        name, _, version = text.partition(":")
        models._check_name(name)
        if version and not version.isdigit():
            raise PipelineError(f"--model {text!r}: the version after ':' must be a number.")
        return cls(name, int(version) if version else None)


@dataclass
class ServedModel:
    """One loaded, compiled version of a model and its request batcher."""

    name: str
    version: int
    meta: dict
    predictor: Predictor
    batcher: Batcher
    loaded_at: float = field(default_factory=time.time)
    stats: ModelStats = field(default_factory=ModelStats)
    last_used: float = field(default_factory=time.monotonic)  # kept for versions asked for by number

    @property
    def signature(self) -> Signature:
        return self.predictor.signature

    @property
    def platform(self) -> str:
        return platform_of(self.meta)

    @property
    def parameters(self) -> dict:
        """What the model metadata adds to the signature: the format, and a classifier's classes."""
        out = {"format": self.meta.get("format", "keras")}
        classes = (self.meta.get("signature") or {}).get("classes")
        if classes is not None:
            out["classes"] = classes
        return out


@dataclass(frozen=True)
class ModelState:
    """What the server knows about one model name; replaced whole on every change."""

    name: str
    registered: tuple[int, ...] = ()
    ready: dict[int, ServedModel] = field(default_factory=dict)
    failed: dict[int, str] = field(default_factory=dict)
    pinned: int | None = None
    promoted: int | None = None  # the version the alias followed points at, once it is loaded

    @property
    def default(self) -> ServedModel | None:
        """The version answering requests that name no version: the pinned one, else the promoted
        one (the ``production`` alias), else the newest loaded one."""
        if self.pinned is not None:
            return self.ready.get(self.pinned)
        if self.promoted in self.ready:
            return self.ready[self.promoted]
        return self.ready[max(self.ready)] if self.ready else None

    @property
    def addressable(self) -> tuple[int, ...]:
        return (self.pinned,) if self.pinned is not None else self.registered


class ModelRepository:
    """Loads registered models from ``store`` and keeps them current.

    ``specs`` limits serving to some models (and pins versions); without it every model in the
    store is served. A model that is not pinned answers with the version its ``alias`` points at
    (``production``, set by ``promote_model``) when it has one, else its newest. ``refresh``
    (blocking; run it off the event loop) picks up new versions and moved aliases; older versions
    load on first request through :meth:`resolve`.
    """

    def __init__(self, store: Store, specs: list[ModelSpec] | None = None, *, executor: Executor,
                 max_batch_size: int = 32, max_wait_ms: float = 2.0, max_loaded_versions: int = 3,
                 on_batch: Callable[[str], Callable] | None = None, listener: Any = None,
                 alias: str = models.PRODUCTION):
        self.store = store
        self.alias = alias
        self.specs = {s.name: s for s in specs or []}
        self.executor = executor  # runs model calls
        self.max_batch_size = max_batch_size
        self.max_wait_ms = max_wait_ms
        self.max_loaded_versions = max(1, max_loaded_versions)  # per model; pinned and latest always stay
        self.on_batch = on_batch
        self.listener = listener
        self.loaded_once = False
        self._states: dict[str, ModelState] = {}
        self._write = threading.Lock()  # serialises publishers; readers never lock
        self._loader = ThreadPoolExecutor(1, thread_name_prefix="jp-model-load")
        self._loading: dict[tuple[str, int], asyncio.Future] = {}

    # -- reading (event loop) -----------------------------------------------------------------
    def names(self) -> list[str]:
        return sorted(self._states)

    def state(self, name: str) -> ModelState:
        state = self._states.get(name)
        if state is None:
            raise ModelNotFound(f"No model named '{name}' is served here.")
        return state

    def index(self) -> list[dict]:
        """Every registered version of every served model: ``{name, version, state, reason}``."""
        out = []
        for name in self.names():
            state = self._states[name]
            for v in sorted(set(state.addressable) | set(state.ready) | set(state.failed)):
                if v in state.ready:
                    status, reason = "READY", ""
                elif v in state.failed:
                    status, reason = "UNAVAILABLE", state.failed[v]
                else:
                    status, reason = "UNAVAILABLE", "not loaded; loads on its first request"
                out.append({"name": name, "version": str(v), "state": status, "reason": reason})
        return out

    def get(self, name: str, version: int | str | None = None) -> ServedModel | None:
        """The served version (default: latest); ``None`` when registered but not loaded yet."""
        state = self.state(name)
        if version is None:
            served = state.default
            if served is None:
                detail = "; ".join(f"version {v}: {m}" for v, m in sorted(state.failed.items()))
                raise ModelNotReady(f"Model '{name}' is not ready" + (f" ({detail})." if detail else "."))
            return served
        v = _version_number(name, version)
        if v not in state.addressable:
            raise ModelNotFound(f"Model '{name}' has no version {v} here; versions: "
                                f"{', '.join(map(str, state.addressable)) or 'none'}.")
        if v in state.failed:
            raise ModelNotReady(f"Model '{name}' version {v} failed to load: {state.failed[v]}")
        served = state.ready.get(v)
        if served is not None:
            served.last_used = time.monotonic()
        return served

    async def resolve(self, name: str, version: int | str | None = None) -> ServedModel:
        """Like :meth:`get`, loading a registered older version on first use."""
        served = self.get(name, version)
        if served is not None:
            return served
        v = int(version)
        key = (name, v)
        future = self._loading.get(key)
        if future is None:
            future = asyncio.get_running_loop().run_in_executor(self._loader, self._load_and_publish, name, v)
            self._loading[key] = future
            future.add_done_callback(lambda _f: self._loading.pop(key, None))
        await asyncio.shield(future)
        served = self.get(name, v)
        if served is None:
            raise ModelNotReady(f"Model '{name}' version {v} is not loaded.")
        return served

    # -- writing (background thread) ----------------------------------------------------------
    def refresh(self) -> None:
        """Scan the store once: load new latest versions, drop deleted ones, publish the result."""
        try:
            names = list(self.specs) or [k.rstrip("/").rsplit("/", 1)[-1]
                                          for k in self.store.list(models.MODELS_PREFIX) if k.endswith("/")]
            for name in names:
                self._refresh_model(name)
            if not self.specs:
                for gone in set(self._states) - set(names):
                    self._publish(gone, None)
                    log.info("model %s is no longer in the store; unloaded", gone)
        except PipelineError as exc:
            log.warning("could not scan the store %s for models: %s", self.store.url, exc)
        finally:
            self.loaded_once = True

    def _refresh_model(self, name: str) -> None:
        registered = tuple(models.list_versions(self.store, name))
        old = self._states.get(name) or ModelState(name, pinned=self.specs.get(name, ModelSpec(name)).version)
        if not registered and old.pinned is None:
            if name in self._states:
                self._publish(name, None)
            return
        state = replace(old, registered=registered,
                        ready={v: m for v, m in old.ready.items() if v in registered},
                        failed={v: e for v, e in old.failed.items() if v in registered},
                        promoted=old.promoted if old.promoted in registered else None)
        self._publish(name, state)
        promoted = None
        if state.pinned is None and registered:
            promoted = models.aliases(self.store, name).get(self.alias)
            promoted = promoted if promoted in registered else None
        if state.pinned is None and promoted is not None:
            self._follow_alias(name, promoted)
            return
        if state.promoted is not None:  # the alias was removed: back to the newest version
            self._publish(name, replace(self._states[name], promoted=None))
        if state.pinned is not None:
            wanted = [state.pinned] if state.pinned in registered else []
        else:
            # Newest first; older ones only while nothing at all is loaded (a bad newest version
            # must not take the model down when an older one works).
            wanted = sorted(registered, reverse=True)
        for v in wanted:
            current = self._states[name]
            if current.ready and (state.pinned is not None or v <= max(current.ready)):
                break
            if v in current.failed:
                continue
            self._load_and_publish(name, v)
            if self._states[name].ready:
                break

    def _follow_alias(self, name: str, version: int) -> None:
        """Answer unnamed requests with ``version`` (where the alias points) once it is loaded;
        until then, and if it fails to load, the version answering them so far goes on."""
        current = self._states[name]
        if current.promoted == version:
            return
        if version not in current.ready and version not in current.failed:
            self._load_and_publish(name, version)
        current = self._states[name]
        if version in current.ready:
            self._publish(name, replace(current, promoted=version))
            log.info("model %s: alias %s -> version %s, which now answers requests that name no version",
                     name, self.alias, version)

    def _shown(self, message: str) -> str:
        """``message`` as clients may read it (the status routes answer anyone): the store's own location
        (a folder of this machine, a URL with credentials) becomes keys relative to it."""
        where = self.store.uri("").rstrip("/")
        return redact(message.replace(where + "/", "").replace(where, "the model store"))

    def _load_and_publish(self, name: str, version: int) -> None:
        started = time.perf_counter()
        try:
            served = self._load(name, version)
        except Exception as exc:
            message = _one_line(exc)
            log.error("model %s version %s failed to load: %s", name, version, message)
            state = self._states.get(name) or ModelState(name)
            self._publish(name, replace(state, failed={**state.failed, version: self._shown(message)}))
            if self.listener:
                self.listener.load_failed(name, version)
            return
        state = self._states.get(name) or ModelState(name, registered=(version,))
        self._publish(name, self._bounded(replace(state, ready={**state.ready, version: served}), version))
        log.info("model %s version %s ready (%.2f s to load and compile)", name, version,
                 time.perf_counter() - started)

    def _bounded(self, state: ModelState, keep: int) -> ModelState:
        """``state`` with its least recently used versions unloaded, down to ``max_loaded_versions``;
        the version serving unnamed requests (pinned or latest) and ``keep`` always stay. Requests
        already holding an unloaded version finish on it; a later one loads it again."""
        excess = len(state.ready) - self.max_loaded_versions
        if excess <= 0:
            return state
        protected = {keep} | ({state.default.version} if state.default is not None else set())
        by_use = sorted((m.last_used, v) for v, m in state.ready.items() if v not in protected)
        gone = {v for _, v in by_use[:excess]}
        for v in sorted(gone):
            log.info("model %s version %s unloaded (least recently used of more than %d loaded versions)",
                     state.name, v, self.max_loaded_versions)
        return replace(state, ready={v: m for v, m in state.ready.items() if v not in gone})

    def _load(self, name: str, version: int) -> ServedModel:
        meta, model = models.load_meta_and_model(self.store, name, version)
        predictor = predictor_for(model, meta, self.max_batch_size)
        predictor.warm_up()
        batcher = Batcher(predictor, self.executor, self.max_batch_size, self.max_wait_ms,
                          batchable=predictor.signature.batched,
                          on_batch=self.on_batch(name) if self.on_batch else None)
        return ServedModel(name, version, meta, predictor, batcher)

    def _publish(self, name: str, state: ModelState | None) -> None:
        with self._write:
            states = dict(self._states)
            before = states.get(name)
            if state is None:
                states.pop(name, None)
            else:
                states[name] = state
            self._states = states  # the atomic swap: readers see the old dict or the new one
        if self.listener:
            self.listener.versions_changed(name, set(before.ready) if before else set(),
                                           set(state.ready) if state else set())

    def close(self) -> None:
        self._loader.shutdown(wait=False, cancel_futures=True)


def _version_number(name: str, version: int | str) -> int:
    try:
        return int(version)
    except (TypeError, ValueError):
        raise ModelNotFound(f"Model '{name}' has no version {version!r}; versions are numbers.") from None


def _one_line(exc: Exception) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= 300 else text[:297] + "..."
