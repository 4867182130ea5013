"""What "rejected cleanly" means, checkably: a refusal made on purpose, not a bug that happened to be wrapped.

An error is a clean refusal when it is of the row's documented class (exactly), its message says the row's
reason, and nothing under it (its ``__cause__`` and ``__context__`` chain, which the engine's wrappers keep)
is an exception nobody raised on purpose: an IndexError from a parser wrapped into a TransportError naming the
host is a failure of the row, not a rejection.
"""

from __future__ import annotations

import binascii
import os
import re
import ssl
import typing as t
from xml.etree import ElementTree

import h11
from pypsrp.exceptions import WinRMError
from spnego.exceptions import SpnegoError

from ansible_collections.pinned.winrm.plugins.plugin_utils._errors import PinnedError, UnexpectedError
from ansible_collections.pinned.winrm.plugins.plugin_utils._httpauth import AuthRejected

# Exceptions raised on purpose: the engine's own, and those the libraries under it document as their refusals
# (a socket or TLS error, h11's protocol error, expat's parse error, base64's decoding error, pyspnego's and
# pypsrp's own errors).
ON_PURPOSE: tuple[type[BaseException], ...] = (
    PinnedError, AuthRejected, OSError, ssl.SSLError, h11.ProtocolError, ElementTree.ParseError, binascii.Error,
    SpnegoError, WinRMError,
)


def chain(exc: BaseException | None) -> list[BaseException]:
    """`exc` and what our wrappers put under it (causes and contexts), each once.

    Below a library's own refusal (h11's protocol error, expat's parse error, pyspnego's error, ...) the walk
    stops: how the library decided is its business (h11 turns an internal KeyError into its ProtocolError);
    what this checks is that none of *our* wrappers hides a bug.
    """
    out: list[BaseException] = []
    todo = [exc] if exc is not None else []
    while todo and len(out) < 50:  # bounded: a chain is short
        current = todo.pop()
        if any(current is seen for seen in out):
            continue
        out.append(current)
        if isinstance(current, ON_PURPOSE) and not isinstance(current, (PinnedError, AuthRejected)):
            continue  # a library's documented refusal: its insides are not ours to judge
        todo += [e for e in (current.__cause__, current.__context__) if e is not None]
    return out


def raised_in_pyspnego(exc: BaseException) -> bool:
    """Whether `exc` was raised inside a call into pyspnego (its parser refusing a peer's token): a frame of
    pyspnego's own code lies between where it was caught and where it was raised."""
    tb = exc.__traceback__
    while tb is not None:
        if f"{os.sep}spnego{os.sep}" in tb.tb_frame.f_code.co_filename:
            return True
        tb = tb.tb_next
    return False


def unexpected_in(exc: BaseException | None) -> list[BaseException]:
    """The exceptions in `exc`'s chain that nobody raised on purpose (an UnexpectedError among them).

    pyspnego raises struct.error, ValueError and the like from its own token parser on a peer's garbage; the
    auth providers turn those into AuthRejected on purpose, so under an AuthRejected they are refusals too.
    """
    links = chain(exc)
    rejected = any(isinstance(e, AuthRejected) for e in links)
    return [e for e in links if isinstance(e, UnexpectedError)
            or not (isinstance(e, ON_PURPOSE) or (rejected and raised_in_pyspnego(e)))]


def refusal_problem(exc: BaseException | None, cls: type[BaseException], pattern: str) -> str | None:
    """Why `exc` is not a clean refusal of class `cls` whose message matches `pattern` (None: it is one)."""
    if exc is None:
        return "no error at all"
    bugs = unexpected_in(exc)
    if bugs:
        return "an unexpected " + " under ".join(f"{type(b).__name__} ({str(b)[:120]})" for b in bugs)
    if type(exc) is not cls:
        return f"a {type(exc).__name__}, not a {cls.__name__}: {str(exc)[:200]}"
    if not re.search(pattern, str(exc)):
        return f"a {cls.__name__} that does not say {pattern!r}: {str(exc)[:200]}"
    return None


class Refusal(t.NamedTuple):
    """A row's expected refusal: its class (exactly), a regular expression its message matches, and how the
    report's expected column says it."""

    cls: type[BaseException]
    pattern: str
    says: str

    def __str__(self) -> str:
        return f"a {self.cls.__name__} saying {self.says}"


def assert_refused(exc: BaseException | None, refusal: Refusal) -> None:
    """AssertionError unless `exc` is a clean refusal (see refusal_problem)."""
    problem = refusal_problem(exc, refusal.cls, refusal.pattern)
    assert problem is None, f"not a clean refusal ({refusal}): {problem}"
