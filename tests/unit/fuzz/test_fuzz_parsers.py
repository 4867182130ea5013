"""Hypothesis fuzzers of everything that parses what a host or a proxy sends back, each with an oracle.

Targets (plugins/plugin_utils): _httpauth.parse_challenges (WWW-/Proxy-Authenticate), the SPNEGO provider's
handling of challenge tokens, _connection.HTTPConnection's response reader (h11 under it), the transport's
reading of MS-WSMV encrypted answers (_encrypted_framing under it), and the CONNECT handshake with a proxy
answering arbitrary bytes.

Every fuzzer checks an oracle on the inputs whose right answer is known (a challenge list parses back to what
was written; a real NTLM challenge is answered with a token the acceptor accepts; a well-formed response reads
back as written; decrypt(encrypt(x)) == x with real NTLM sealing from pyspnego, and any accepted body
decrypts to exactly x) and, on everything else, that only the expected classes come out, refused on purpose
(tests/integration/reliability/_verdict.py: nothing unexpected in the cause chain).

Each fuzzer runs twice: a fixed corpus (derandomized; PINNED_FUZZ_EXAMPLES examples, default 200, the socket
one a quarter), then a randomised run of PINNED_FUZZ_RANDOM_EXAMPLES (default 100) seeded with
PINNED_FUZZ_SEED (default: a fresh random seed). The seed is printed and shown in the report row; a failure
of the randomised run says how to replay it.
"""

from __future__ import annotations

import base64
import dataclasses
import os
import random
import socket
import threading
import time
import types
import typing as t

import pytest
from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st

from ansible_collections.pinned.winrm.plugins.plugin_utils import _connection, _encrypted_framing, _httpauth, _transport
from ansible_collections.pinned.winrm.plugins.plugin_utils._errors import (
    MalformedAnswerError,
    PinnedError,
    TransportError,
)
from ansible_collections.pinned.winrm.plugins.plugin_utils._spec import build_spec
from tests.integration.reliability import report
from tests.integration.reliability._verdict import unexpected_in
from tests.lab import _msgenc
from tests.unit.spnego_pairs import USER, Store

EXAMPLES = int(os.environ.get("PINNED_FUZZ_EXAMPLES", "200"))
RANDOM_EXAMPLES = int(os.environ.get("PINNED_FUZZ_RANDOM_EXAMPLES", "100"))
SEED = int(os.environ.get("PINNED_FUZZ_SEED") or random.SystemRandom().randrange(2**32))
FIXED = settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
                 suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture,
                                        HealthCheck.data_too_large, HealthCheck.filter_too_much])

pytestmark = pytest.mark.timeout(600)


class Tally:
    """Counts examples and the outcome classes seen, for the report row."""

    def __init__(self) -> None:
        self.examples = 0
        self.kinds: dict[str, int] = {}

    def saw(self, kind: str) -> None:
        self.examples += 1
        self.kinds[kind] = self.kinds.get(kind, 0) + 1

    def text(self) -> str:
        kinds = ", ".join(f"{k} x{v}" for k, v in sorted(self.kinds.items(), key=lambda kv: -kv[1])[:6])
        return f"{self.examples} examples; outcomes: {kinds}"


def explore(strategies: t.Sequence[st.SearchStrategy[t.Any]], body: t.Callable[..., None], *,
            examples: int = EXAMPLES, random_examples: int = RANDOM_EXAMPLES, randomised: bool = True,
            every_bug: bool = True) -> str:
    """Run `body` on the fixed corpus, then (unless told not to) on a randomised run seeded with SEED."""
    settings(FIXED, max_examples=examples, report_multiple_bugs=every_bug)(given(*strategies)(body))()
    if not randomised or random_examples <= 0:
        return "fixed corpus only"
    print(f"randomised fuzz run: seed {SEED} (replay with PINNED_FUZZ_SEED={SEED})")
    run = seed(SEED)(settings(FIXED, max_examples=random_examples, derandomize=False)(given(*strategies)(body)))
    try:
        run()
    except BaseException as e:
        e.add_note(f"the randomised fuzz run failed: replay it with PINNED_FUZZ_SEED={SEED}")
        raise
    return f"fixed corpus + {random_examples} random with seed {SEED}"


def refused(exc: BaseException, allowed: tuple[type[BaseException], ...]) -> str:
    """The outcome class of an exception a fuzzer caught; AssertionError unless it is an allowed refusal with
    nothing unexpected under it."""
    assert isinstance(exc, allowed), f"{type(exc).__name__} is not one of {[a.__name__ for a in allowed]}: {exc}"
    bugs = unexpected_in(exc)
    assert not bugs, f"{type(exc).__name__} has an unexpected {type(bugs[0]).__name__} under it: {bugs[0]!r}"
    return type(exc).__name__


# -- WWW-Authenticate / Proxy-Authenticate ------------------------------------------------------------

_token = st.text(alphabet="!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ", min_size=1, max_size=12)
_b64 = st.binary(min_size=1, max_size=48).map(lambda b: base64.b64encode(b).decode())
_qvalue = st.text(alphabet=st.characters(codec="latin-1", exclude_characters='"\\\r\n'), max_size=20)


@st.composite
def _challenge(draw: st.DrawFn) -> tuple[str, str | None, dict[str, str]]:
    scheme = draw(_token)
    if draw(st.booleans()):
        return scheme, draw(_b64), {}
    params = draw(st.dictionaries(_token.map(str.lower), _qvalue, max_size=4))
    return scheme, None, params


def _render(ch: tuple[str, str | None, dict[str, str]]) -> str:
    scheme, token, params = ch
    if token is not None:
        return f"{scheme} {token}"
    if not params:
        return scheme
    return scheme + " " + ", ".join(f'{k}="{v}"' for k, v in params.items())


@report.row("Bad input", "fuzz: WWW-/Proxy-Authenticate parser on arbitrary header text",
            "never raises, returns Challenge objects, < 1 s per header; fixed corpus and a seeded random run",
            report.BAD_INPUT)
def test_fuzz_challenge_parser_never_raises_on_arbitrary_headers(check) -> None:
    row = check()
    tally = Tally()

    def fuzz(values: list[str]) -> None:
        # the parser's own CPU time (this thread's), which other load on the machine does not stretch: a parser
        # that backtracks without bound on some header spends far more than a second of it
        started = time.thread_time()
        result = _httpauth.parse_challenges(values)
        assert all(isinstance(c, _httpauth.Challenge) for c in result)
        assert time.thread_time() - started < 1.0
        tally.saw(f"{min(len(result), 3)}+ challenges" if len(result) >= 3 else f"{len(result)} challenges")

    runs = explore([st.lists(st.text(max_size=400), min_size=0, max_size=4)], fuzz)
    row.see(f"{tally.text()} ({runs})")


@report.row("Bad input", "fuzz: challenge parser round trip (scheme, token68, quoted params)",
            "every well-formed challenge list parses back to the same schemes, tokens and params (the oracle)",
            report.BAD_INPUT)
def test_fuzz_challenge_parser_reads_back_what_a_peer_writes(check) -> None:
    row = check()
    tally = Tally()

    def fuzz(challenges: list[tuple[str, str | None, dict[str, str]]]) -> None:
        header = ", ".join(_render(c) for c in challenges)
        parsed = _httpauth.parse_challenges([header])
        assert [(c.scheme, c.token, c.params) for c in parsed] == [(s, tk, p) for s, tk, p in challenges], header
        tally.saw("round trip")

    runs = explore([st.lists(_challenge(), min_size=1, max_size=4)], fuzz)
    row.see(f"{tally.text()} ({runs})")


# -- the SPNEGO provider on challenge tokens ---------------------------------------------------------------

def _mutate(draw: st.DrawFn, data: bytes, mutation: str) -> bytes:
    if mutation == "truncate":
        return data[: draw(st.integers(0, max(0, len(data) - 1)))]
    if mutation == "flip" and data:
        at = draw(st.integers(0, len(data) - 1))
        return data[:at] + bytes([data[at] ^ draw(st.integers(1, 255))]) + data[at + 1:]
    if mutation == "insert":
        at = draw(st.integers(0, len(data)))
        return data[:at] + draw(st.binary(min_size=1, max_size=40)) + data[at:]
    if mutation == "random":
        return draw(st.binary(max_size=400))
    return data


def _provider(password: str, label: str) -> _httpauth.SpnegoAuth:
    return _httpauth.SpnegoAuth(USER, password, protocol="ntlm", hostname="host", service="HTTP",
                                labels=("Negotiate", "NTLM"), first_label=label)


def _spnego_fuzz(store: Store, tally: Tally) -> t.Callable[..., None]:
    def fuzz(garbage: str | None, label: str, mutation: str, data: st.DataObject) -> None:
        provider = _provider(store.password, label)
        first = provider.initial()
        assert first is not None and first.startswith(f"{label} ")
        acceptor = None
        if garbage is None:  # a real acceptor's challenge to this very negotiate message, maybe mutated
            acceptor = store.acceptor()
            challenge = acceptor.step(base64.b64decode(first.split(" ", 1)[1]))
            token = base64.b64encode(_mutate(data.draw, challenge, mutation)).decode()
        else:
            token, mutation = garbage, "garbage"
        try:
            answer = provider.respond(_httpauth.parse_challenges([f"{label} {token}"]), "POST", "/wsman")
        except _httpauth.AuthRejected as e:
            assert mutation != "none", f"a real challenge was refused: {e}"
            tally.saw(refused(e, (_httpauth.AuthRejected,)))
            return
        kind, _, b64 = answer.partition(" ")
        assert kind == label and base64.b64decode(b64, validate=True), answer
        if mutation == "none":  # the oracle: the acceptor takes the answer and the context completes
            assert acceptor is not None
            acceptor.step(base64.b64decode(b64))
            assert acceptor.complete, "the acceptor did not complete on the provider's answer"
            tally.saw("real challenge answered and accepted")
        else:
            tally.saw("answered")

    return fuzz


# None: a real acceptor's challenge (half the examples), untouched in a third of those
_SPNEGO = [st.one_of(st.none(), st.none(), st.text(max_size=200), _b64), st.sampled_from(["NTLM", "Negotiate"]),
           st.sampled_from(["none", "none", "truncate", "flip", "insert", "random"]), st.data()]


@report.row("Bad input", "fuzz: NTLM provider given challenge tokens: a real acceptor's (unchanged or mutated) "
            "and arbitrary text (host or proxy 401/407)", "a real challenge is answered and the acceptor completes "
            "(the oracle); anything else is answered or refused with AuthRejected on purpose (only pyspnego's own "
            "parser errors under it), never another exception", report.BAD_INPUT)
def test_fuzz_spnego_provider_answers_real_challenges_and_refuses_garbage(check, tmp_path) -> None:
    row = check()
    tally = Tally()
    runs = explore(_SPNEGO, _spnego_fuzz(Store(tmp_path), tally))
    row.see(f"{tally.text()} ({runs})")


# -- the HTTP response reader -----------------------------------------------------------------------


class _ScriptedStream:
    """A Stream that hands out pre-split bytes, then EOF (the reader's only input)."""

    def __init__(self, parts: list[bytes]) -> None:
        self.parts = list(parts)
        self.sent = b""

    def send_all(self, data: bytes) -> None:
        self.sent += data

    def recv(self, size: int) -> bytes:
        if not self.parts:
            return b""
        head, self.parts[0] = self.parts[0][:size], self.parts[0][size:]
        if not self.parts[0]:
            self.parts.pop(0)
        return head

    def probe(self) -> bytes | None:
        return None

    def close(self) -> None:
        pass


class _ReaderUnderTest(_connection.HTTPConnection):
    def _settimeout(self, timeout: float | None) -> None:  # no socket under the scripted stream
        pass


_STATUS_LINES = st.sampled_from([b"HTTP/1.1 200 OK\r\n", b"HTTP/1.1 401 Unauthorized\r\n", b"HTTP/1.0 200 OK\r\n",
                                 b"HTTP/1.1 500 Internal Server Error\r\n", b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\n",
                                 b"HTTP/1.1 99999 X\r\n", b"HTTP/2 200\r\n", b"ICY 200 OK\r\n", b""])
_HEADERS = st.lists(st.sampled_from([
    b"Content-Length: 10\r\n", b"Content-Length: -1\r\n", b"Content-Length: 99999999999\r\n",
    b"Content-Length: 5\r\nContent-Length: 6\r\n", b"Transfer-Encoding: chunked\r\n", b"Transfer-Encoding: gzip\r\n",
    b"Connection: close\r\n", b"Content-Type: application/soap+xml\r\n", b"WWW-Authenticate: Negotiate\r\n",
    b"X: \x00\xff\r\n", b" folded\r\n", b"NoColon\r\n",
]), max_size=5)
_MAX_RESPONSE = 64 * 1024


@dataclasses.dataclass
class _Answer:
    parts: list[bytes]
    status: int | None = None  # set for a well-formed answer: the oracle
    body: bytes = b""


def _split(draw: st.DrawFn, blob: bytes) -> list[bytes]:
    cuts = sorted(draw(st.lists(st.integers(0, max(0, len(blob))), max_size=4)))
    parts, last = [], 0
    for cut in cuts:
        parts.append(blob[last:cut])
        last = cut
    parts.append(blob[last:])
    return [p for p in parts if p]


@st.composite
def _response_bytes(draw: st.DrawFn) -> _Answer:
    shape = draw(st.sampled_from(["valid", "random", "mangled"]))
    if shape == "valid":  # a well-formed answer: it must read back exactly
        status = draw(st.sampled_from([200, 401, 500]))
        body = draw(st.binary(max_size=300))
        head = f"HTTP/1.1 {status} X\r\nContent-Type: application/soap+xml\r\n".encode()
        if draw(st.booleans()):
            blob = head + f"Content-Length: {len(body)}\r\n\r\n".encode() + body
        else:
            sizes = draw(st.lists(st.integers(1, 64), max_size=8))
            chunks, at = [], 0
            for size in sizes:
                if at >= len(body):
                    break
                chunks.append(body[at:at + size])
                at += size
            if at < len(body):
                chunks.append(body[at:])
            blob = head + b"Transfer-Encoding: chunked\r\n\r\n" + b"".join(
                f"{len(c):x}\r\n".encode() + c + b"\r\n" for c in chunks) + b"0\r\n\r\n"
        return _Answer(_split(draw, blob), status, body)
    if shape == "random":
        blob = draw(st.binary(max_size=600))
    else:
        blob = draw(_STATUS_LINES) + b"".join(draw(_HEADERS)) + b"\r\n" + draw(st.binary(max_size=200))
        if draw(st.booleans()):
            blob += draw(st.sampled_from([b"5\r\nhello\r\n0\r\n\r\n", b"ffffffffff\r\n", b"zz\r\n", b"0\r\n\r\n"]))
    return _Answer(_split(draw, blob))


def _reader_fuzz(tally: Tally) -> t.Callable[..., None]:
    def fuzz(answer: _Answer, method: str) -> None:
        conn = _ReaderUnderTest(_ScriptedStream(answer.parts), party="Windows host fuzz:5985", max_response=_MAX_RESPONSE)
        target = "/wsman" if method == "POST" else "host:5986"
        try:
            resp = conn.request(method, target, [("Host", "fuzz")], b"x", timeout=5)
        except PinnedError as e:
            assert answer.status is None, f"a well-formed answer was refused: {e!r}"
            tally.saw(refused(e, (MalformedAnswerError, _connection.ConnectionLost, TransportError)))
            return
        except Exception as e:
            raise AssertionError(f"the reader raised {type(e).__name__}, not a TransportError: {e}") from e
        assert len(resp.body) <= _MAX_RESPONSE
        if answer.status is not None and method == "POST":  # the oracle
            assert (resp.status, resp.body) == (answer.status, answer.body)
            tally.saw("well-formed answer read back exactly")
        else:
            tally.saw("response")

    return fuzz


@report.row("Bad input", "fuzz: HTTP/1.1 response reader (h11) on well-formed, arbitrary and mangled answers, split "
            "anywhere", "a well-formed answer reads back exactly (the oracle); anything else is a Response or a "
            "refusal on purpose (MalformedAnswerError, ConnectionLost, too large) with nothing unexpected under it",
            report.BAD_INPUT)
def test_fuzz_http_response_reader_raises_only_transport_errors(check) -> None:
    row = check()
    tally = Tally()
    runs = explore([_response_bytes(), st.sampled_from(["POST", "CONNECT"])], _reader_fuzz(tally))
    row.see(f"{tally.text()} ({runs})")


# -- MS-WSMV encrypted answers, sealed for real -----------------------------------------------------------


_ENCRYPTED = [st.binary(min_size=0, max_size=300),
              st.sampled_from(["none", "none", "truncate", "flip", "insert", "random"]),
              st.sampled_from(["Encrypted Boundary"] * 4 + ["Other", ""]), st.booleans(), st.data()]


def _framing_fuzz(store: Store, tally: Tally) -> t.Callable[..., None]:
    spec = build_spec({"remote_addr": "fuzz.example", "protocol": "http", "auth": "ntlm", "remote_user": USER,
                       "remote_password": store.password})

    def fuzz(plaintext: bytes, mutation: str, boundary: str, space: bool, data: st.DataObject) -> None:
        from pypsrp.encryption import WinRMEncryption

        client, server = store.pair()  # fresh contexts: sealing is sequenced (NTLM's RC4 stream too)
        content_type, body = _msgenc.encrypt(server, _msgenc.SPNEGO, plaintext)
        body = _mutate(data.draw, body, mutation)
        if space:  # Exchange's "-- Encrypted Boundary", which Windows clients accept
            body = body.replace(b"--Encrypted Boundary", b"-- Encrypted Boundary")
        content_type = content_type.replace('boundary="Encrypted Boundary"', f'boundary="{boundary}"')
        transport = _transport.WinRMTransport(spec)
        transport._encryption = WinRMEncryption(client, WinRMEncryption.SPNEGO)
        resp = _connection.Response(200, "OK", [("content-type", content_type)], body, False)
        try:
            got = transport._decrypt(resp)
        except PinnedError as e:
            assert (mutation, boundary) != ("none", "Encrypted Boundary"), f"an untouched answer was refused: {e!r}"
            tally.saw(refused(e, (MalformedAnswerError,)))
            return
        except Exception as e:
            raise AssertionError(f"decrypting raised {type(e).__name__}, not a MalformedAnswerError: {e}") from e
        # the oracle: whatever is accepted decrypts to exactly what the host sealed
        assert got == plaintext, f"{mutation}: decrypted {len(got)} bytes that are not the {len(plaintext)} sealed"
        tally.saw("decrypted exactly" if mutation == "none" else f"decrypted exactly despite {mutation}")

    return fuzz


@report.row("Bad input", "fuzz: MS-WSMV encrypted answers sealed for real (pyspnego NTLM), untouched or truncated, "
            "flipped, inserted, random, other boundaries", "decrypt(encrypt(x)) == x for every untouched answer and "
            "every answer accepted (the oracle); the rest refused on purpose (MalformedAnswerError, only pyspnego's "
            "integrity error under it)", report.BAD_INPUT)
def test_fuzz_encrypted_framing_is_decrypted_exactly_or_refused(check, tmp_path) -> None:
    row = check()
    tally = Tally()
    runs = explore(_ENCRYPTED, _framing_fuzz(Store(tmp_path), tally))
    row.see(f"{tally.text()} ({runs})")


# -- the CONNECT handshake with a proxy answering arbitrary bytes -----------------------------------------


class _OneShotProxy:
    """Answers each CONNECT with the current example's bytes, then closes."""

    def __init__(self) -> None:
        self.answer = b""
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(8)
        self.port = self.listener.getsockname()[1]
        self._stop = threading.Event()
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self) -> None:
        self.listener.settimeout(0.2)
        while not self._stop.is_set():
            try:
                conn, _ = self.listener.accept()
            except OSError:
                continue
            with conn:
                try:
                    conn.settimeout(2)
                    data = b""
                    while b"\r\n\r\n" not in data and len(data) < 65536:
                        chunk = conn.recv(4096)
                        if not chunk:
                            break
                        data += chunk
                    conn.sendall(self.answer)
                except OSError:
                    pass

    def close(self) -> None:
        self._stop.set()
        self.listener.close()


_PROXY_ANSWERS = st.one_of(
    st.binary(max_size=300),
    st.tuples(
        st.sampled_from([b"HTTP/1.1 407 Proxy Authentication Required\r\n", b"HTTP/1.1 200 Connection established\r\n",
                         b"HTTP/1.1 403 Forbidden\r\n", b"HTTP/1.1 502 Bad Gateway\r\n", b"HTTP/1.0 407 X\r\n"]),
        st.lists(st.one_of(
            st.sampled_from([b"Proxy-Authenticate: NTLM\r\n", b"Proxy-Authenticate: Basic realm=\"x\"\r\n",
                             b"Proxy-Authenticate: Digest nonce=\"n\", realm=\"r\", qop=\"auth\"\r\n",
                             b"Proxy-Authenticate: NTLM !!!!\r\n", b"Proxy-Authenticate: Digest algorithm=XYZ\r\n",
                             b"Connection: close\r\n", b"Content-Length: 3\r\n", b"X-Squid-Error: ERR_X 0\r\n"]),
            st.binary(max_size=40).map(lambda b: b"Proxy-Authenticate: " + b.replace(b"\r", b"").replace(b"\n", b"") + b"\r\n"),
        ), max_size=4),
        st.binary(max_size=30),
    ).map(lambda p: p[0] + b"".join(p[1]) + b"\r\n" + p[2]),
)


@pytest.mark.parametrize("proxy_auth", ["basic", "digest", "ntlm"])
@report.row("Bad input", "fuzz: CONNECT handshake with a proxy answering arbitrary bytes ({proxy_auth} proxy auth)",
            "a refusal on purpose naming the proxy (or the host behind a 200) in < 5 s, nothing unexpected under "
            "it, never another exception; fixed corpus and a seeded random run", report.BAD_INPUT)
def test_fuzz_proxy_connect_handshake_fails_as_a_proxy_error(check, proxy_auth: str) -> None:
    row = check()
    tally = Tally()
    proxy = _OneShotProxy()
    spec = build_spec({
        "remote_addr": "127.0.0.1", "port": 9, "protocol": "https", "auth": "ntlm", "remote_user": "u",
        "remote_password": "Fuzz-Pw-1", "proxy": f"http://127.0.0.1:{proxy.port}", "proxy_auth": proxy_auth,
        "proxy_user": "p", "proxy_password": "Fuzz-Proxy-Pw-1", "read_timeout": 3, "operation_timeout": 1,
        "connection_timeout": 3,
    } | ({"proxy_auth": "digest"} if proxy_auth == "basic" else {}))
    if proxy_auth == "basic":
        # the spec refuses Basic to an http:// proxy; the transport's Basic leg parser is still fuzzed here
        spec = dataclasses.replace(spec, proxy=dataclasses.replace(spec.proxy, auth="basic"))

    def fuzz(answer: bytes) -> None:
        proxy.answer = answer
        transport = _transport.WinRMTransport(spec)
        started = time.monotonic()
        try:
            transport.send(b"<x/>")
            raise AssertionError("a hostile proxy cannot complete a WinRM exchange")
        except PinnedError as e:
            assert time.monotonic() - started < 5
            assert "proxy" in str(e).lower() or "127.0.0.1:9" in str(e), str(e)
            tally.saw(refused(e, (TransportError,)))
        finally:
            transport.close()

    try:
        runs = explore([_PROXY_ANSWERS], fuzz, examples=max(10, EXAMPLES // 4),
                       random_examples=max(5, RANDOM_EXAMPLES // 4))
    finally:
        proxy.close()
    row.see(f"{tally.text()} ({runs})")


# -- the fuzzers' criteria fail on a broken build ------------------------------------------------------------

_MUTANT_EXAMPLES = 40


def _fails(fuzz: t.Callable[..., None], strategies: list[t.Any]) -> str:
    """Run a fuzzer's fixed corpus on a mutated product; its first line of failure (AssertionError if it passed)."""
    with pytest.raises(BaseException) as caught:
        explore(strategies, fuzz, examples=_MUTANT_EXAMPLES, randomised=False, every_bug=False)
    assert not isinstance(caught.value, (KeyboardInterrupt, SystemExit))
    return f"{type(caught.value).__name__}: {str(caught.value).splitlines()[0][:200]}"


@report.row("Criteria that can fail", "mutation: the encrypted-answer reader returns the body it was given, "
            "unverified and undecrypted", "the encrypted-answers fuzzer fails on its oracle: an untouched answer "
            "does not decrypt to what was sealed", report.MUTATION)
def test_the_framing_fuzzer_fails_when_answers_are_not_decrypted(check, tmp_path, monkeypatch) -> None:
    row = check()
    monkeypatch.setattr(_transport, "unwrap", lambda context, protocol, content_type, body, *, party: body)
    failure = _fails(_framing_fuzz(Store(tmp_path), Tally()), _ENCRYPTED)
    row.see(f"the fuzzer failed: {failure}")
    assert "not the" in failure and "sealed" in failure


@report.row("Criteria that can fail", "mutation: an IndexError raised inside the MS-WSMV framing reader",
            "the encrypted-answers fuzzer fails: an IndexError is not a MalformedAnswerError", report.MUTATION)
def test_the_framing_fuzzer_fails_on_an_index_error_inside_the_reader(check, tmp_path, monkeypatch) -> None:
    row = check()

    def broken_unpack(fmt: str, buffer: bytes, offset: int = 0) -> tuple[int, ...]:
        raise IndexError("tuple index out of range")

    monkeypatch.setattr(_encrypted_framing, "struct", types.SimpleNamespace(unpack_from=broken_unpack))
    failure = _fails(_framing_fuzz(Store(tmp_path), Tally()), _ENCRYPTED)
    row.see(f"the fuzzer failed: {failure}")
    assert "IndexError" in failure


@report.row("Criteria that can fail", "mutation: the response reader's refusal of invalid HTTP crashes in its error "
            "path (a bare ValueError instead of MalformedAnswerError)", "the response-reader fuzzer fails: a "
            "ValueError is not a TransportError", report.MUTATION)
def test_the_reader_fuzzer_fails_on_a_crash_in_the_error_path(check, monkeypatch) -> None:
    row = check()
    monkeypatch.setattr(_connection, "MalformedAnswerError", ValueError)
    failure = _fails(_reader_fuzz(Tally()), [_response_bytes(), st.sampled_from(["POST", "CONNECT"])])
    row.see(f"the fuzzer failed: {failure}")
    assert "ValueError" in failure


@report.row("Criteria that can fail", "mutation: the NTLM provider answers a challenge with its token cut by one "
            "byte", "the provider fuzzer fails on its oracle: the acceptor does not complete on the answer to a real "
            "challenge", report.MUTATION)
def test_the_provider_fuzzer_fails_when_answers_are_corrupted(check, tmp_path, monkeypatch) -> None:
    row = check()
    respond = _httpauth.SpnegoAuth.respond

    def corrupted(self: _httpauth.SpnegoAuth, *args: t.Any, **kwargs: t.Any) -> str:
        label, _, token = respond(self, *args, **kwargs).partition(" ")
        return f"{label} {base64.b64encode(base64.b64decode(token)[:-1]).decode()}"

    monkeypatch.setattr(_httpauth.SpnegoAuth, "respond", corrupted)
    failure = _fails(_spnego_fuzz(Store(tmp_path), Tally()), _SPNEGO)
    row.see(f"the fuzzer failed: {failure}")

