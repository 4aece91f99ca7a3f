"""A small keyed registry, the one extension mechanism used for every kind of pluggable part.

Savers, stores, tag dialects and run targets each have one module-level ``Registry``; built-ins
are registered at the bottom of their module, and third parties call ``register`` the same way.
"""

from __future__ import annotations

from typing import Generic, Iterator, TypeVar

from .exceptions import UnknownKeyError

T = TypeVar("T")


class Registry(Generic[T]):
    """An ordered mapping from keys to implementations of one kind of part."""

    def __init__(self, kind: str):
        self.kind = kind
        self._items: dict[str, T] = {}

    def register(self, key: str, impl: T, *, first: bool = False) -> T:
        """Register ``impl`` under ``key`` (replacing an earlier one); ``first`` puts it ahead."""
        self._items.pop(key, None)
        if first:
            self._items = {key: impl, **self._items}
        else:
            self._items[key] = impl
        return impl

    def get(self, key: str) -> T:
        """Return the implementation for ``key`` or raise :class:`UnknownKeyError`."""
        try:
            return self._items[key]
        except KeyError:
            raise UnknownKeyError(self.kind, key, self._items) from None

    def __contains__(self, key: object) -> bool:
        return key in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def values(self):
        return list(self._items.values())

    def items(self):
        return list(self._items.items())
