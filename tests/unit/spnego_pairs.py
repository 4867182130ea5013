"""Completed pyspnego initiator/acceptor pairs for unit tests and fuzzers: real sealing, no stand-in cipher.

The acceptor reads the lab's NTLM store (tests/lab/_hostauth.py), never NTLM_USER_FILE from os.environ.
"""

from __future__ import annotations

import pathlib
import secrets
import typing as t

import spnego

from tests.lab._hostauth import _NTLM_STORE, _install_ntlm_store_hook

USER = "lab"


class Store:
    """One NTLM user (`lab`, a random password) in a file the lab's acceptors read."""

    def __init__(self, directory: pathlib.Path) -> None:
        self.password = secrets.token_urlsafe(12)
        self.path = directory / "ntlm-users"
        self.path.write_text(f":{USER}:{self.password}\n")
        _install_ntlm_store_hook()

    def acceptor(self, protocol: str = "ntlm") -> t.Any:
        """An acceptor context bound to this store (the store is read when it checks a token)."""
        token = _NTLM_STORE.set(str(self.path))
        try:
            return _Bound(spnego.server(protocol=protocol, options=_options(protocol)), self.path)
        finally:
            _NTLM_STORE.reset(token)

    def pair(self, protocol: str = "ntlm") -> tuple[t.Any, t.Any]:
        """(client, server) contexts after a complete handshake: each seals what the other unseals."""
        client = spnego.client(USER, self.password, protocol=protocol, options=_options(protocol))
        server = self.acceptor(protocol)
        answer = client.step()
        while answer is not None:
            answer = server.step(answer)
            if answer is None:
                break
            answer = client.step(answer)
        assert client.complete and server.complete
        return client, server


def _options(protocol: str) -> spnego.NegotiateOptions:
    return spnego.NegotiateOptions.wrapping_winrm if protocol == "ntlm" else spnego.NegotiateOptions.none


class _Bound:
    """A context whose every call runs with the store set (the acceptor looks its users up lazily)."""

    def __init__(self, context: t.Any, store: pathlib.Path) -> None:
        self._context = context
        self._store = str(store)

    def __getattr__(self, name: str) -> t.Any:
        value = getattr(self._context, name)
        if not callable(value):
            return value

        def call(*args: t.Any, **kwargs: t.Any) -> t.Any:
            token = _NTLM_STORE.set(self._store)
            try:
                return value(*args, **kwargs)
            finally:
                _NTLM_STORE.reset(token)

        return call
