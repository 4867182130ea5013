"""Messages written from a template of their shape: the mechanics _pipeline_template and _envelope_template share.

Each of them asks pypsrp to write a message once per *shape* with a marker in place of each value, splits the
bytes at the markers (a ``Template``), keeps it in a bounded ``ShapeCache``, and then writes every message of
that shape by joining the template's chunks with the message's own values. What a shape is, and how a value is
escaped, is theirs.
"""

from __future__ import annotations

import re
import threading
import typing as t
import uuid

MARKER = uuid.uuid4().hex  # letters and digits only: neither pypsrp nor ElementTree escapes any of them
_MARKERS = re.compile(f"{MARKER}n([0-9]+)q".encode("ascii"))
UNKNOWN: t.Any = object()  # a shape not met yet (None is a shape no template can serve)


class Unshaped(Exception):
    """The message holds something its template cannot write as pypsrp would: pypsrp writes it."""


def marker(index: int) -> str:
    """The marker standing for value `index` while pypsrp writes a shape's template."""
    return f"{MARKER}n{index}q"


class Template:
    """A message's bytes split at its values' markers: chunks, and which value goes after each chunk but the last."""

    __slots__ = ("chunks", "order")

    def __init__(self, chunks: tuple[bytes, ...], order: tuple[int, ...]) -> None:
        self.chunks = chunks
        self.order = order

    @classmethod
    def split(cls, written: bytes, count: int, *, once: bool) -> Template | None:
        """The template of `written`, in which pypsrp wrote the markers of `count` values; None unless each value
        was written where the message holds it (exactly once when `once`, else at least once)."""
        parts = _MARKERS.split(written)
        chunks, order = tuple(parts[0::2]), tuple(int(p) for p in parts[1::2])
        wanted = list(range(count))
        if (sorted(order) if once else sorted(set(order))) != wanted:
            return None
        return cls(chunks, order)

    def join(self, values: t.Sequence[bytes]) -> bytes:
        """The message: the chunks with `values` (as written) between them."""
        out = [self.chunks[0]]
        for index, chunk in zip(self.order, self.chunks[1:]):
            out.append(values[index])
            out.append(chunk)
        return b"".join(out)


class ShapeCache:
    """Templates by shape, at most `limit` of them (a client sending ever new shapes cannot grow it without bound).

    A look-up is one dict read, safe beside another thread's store; stores take a lock.
    """

    def __init__(self, limit: int) -> None:
        self._entries: dict[t.Hashable, Template | None] = {}
        self._limit = limit
        self._lock = threading.Lock()

    def get(self, shape: t.Hashable) -> t.Any:
        """The shape's template, None when no template can serve it, UNKNOWN when not met yet."""
        return self._entries.get(shape, UNKNOWN)

    def put(self, shape: t.Hashable, template: Template | None) -> None:
        with self._lock:
            if len(self._entries) >= self._limit:
                self._entries.clear()
            self._entries[shape] = template

    def __len__(self) -> int:
        return len(self._entries)
