"""Hostile or broken answers from the "Windows host" fail cleanly: no hang, bounded memory, a PinnedError.

Two peers of our own on loopback (tests/integration/reliability/_hostile.py):
- a scripted host that answers the first WinRM message (the Runspace Pool's Create) with broken XML,
  entity bombs, oversized or endless bodies, wrong content types or no HTTP at all (Basic over http,
  no message encryption: the first request already carries a WinRM message);
- a tampering relay in front of a real lab host that lets NTLM and message encryption run for real
  and breaks the encrypted framing of the first WinRM answer.
Each attempt opens a Session (pypsrp's RunspacePool over our transport) in a worker thread, bounded in
time, with tracemalloc measuring the peak of Python allocations (the hostile peers reuse one buffer).
"""

from __future__ import annotations

import pathlib
import struct
import threading
import time
import tracemalloc
import types
import typing as t

import pytest

from ansible_collections.pinned.winrm.plugins.plugin_utils import _session
from ansible_collections.pinned.winrm.plugins.plugin_utils._errors import (
    ConnectTimeoutError,
    MalformedAnswerError,
    PinnedError,
    ReadTimeoutError,
    TransportError,
    UnexpectedError,
)
from ansible_collections.pinned.winrm.plugins.plugin_utils._session import Session
from ansible_collections.pinned.winrm.plugins.plugin_utils._spec import build_spec

from . import report
from ._hostile import ScriptedHost, TamperingRelay, http_response
from ._verdict import Refusal, assert_refused

pytestmark = pytest.mark.timeout(120)

READ_TIMEOUT = 4
HARD_LIMIT_S = 25.0  # a check that takes longer counts as a hang
MEMORY_LIMIT = 48 * 1024 * 1024  # peak Python allocations during one attempt
MIB = 1024 * 1024
_CHUNK = b"A" * MIB  # one buffer, sent again and again (so the peer allocates nothing per chunk)
SOAP = [("Content-Type", "application/soap+xml;charset=UTF-8")]

_ENVELOPE = (
    '<s:Envelope xmlns:s="http://www.w3.org/2003/05/soap-envelope" '
    'xmlns:a="http://schemas.xmlsoap.org/ws/2004/08/addressing" '
    'xmlns:w="http://schemas.dmtf.org/wbem/wsman/1/wsman.xsd" '
    'xmlns:rsp="http://schemas.microsoft.com/wbem/wsman/1/windows/shell">'
    '<s:Header><a:Action>http://schemas.xmlsoap.org/ws/2004/09/transfer/CreateResponse</a:Action>'
    '<a:RelatesTo>uuid:00000000-0000-0000-0000-000000000000</a:RelatesTo></s:Header>'
    '<s:Body><x:ResourceCreated xmlns:x="http://schemas.xmlsoap.org/ws/2004/09/transfer">'
    '<a:Address>http://host:5985/wsman</a:Address><a:ReferenceParameters>'
    '<w:ResourceURI>http://schemas.microsoft.com/powershell/Microsoft.PowerShell</w:ResourceURI>'
    '<w:SelectorSet><w:Selector Name="ShellId">0000</w:Selector></w:SelectorSet>'
    '</a:ReferenceParameters></x:ResourceCreated><rsp:Shell><rsp:ShellId>0000</rsp:ShellId></rsp:Shell>'
    '</s:Body></s:Envelope>'
).encode()

_LAUGHS = (
    '<?xml version="1.0"?><!DOCTYPE s:Envelope [<!ENTITY l0 "lollollollollollollollollollol">'
    + "".join(f'<!ENTITY l{i} "{("&l" + str(i - 1) + ";") * 10}">' for i in range(1, 10))
    + ']><s:Envelope xmlns:s="http://www.w3.org/2003/05/soap-envelope"><s:Body>&l9;</s:Body></s:Envelope>'
).encode()


def _endless_chunked(delay: float = 0.0, chunk: bytes = _CHUNK) -> t.Iterator[bytes]:
    yield b"HTTP/1.1 200 OK\r\nContent-Type: application/soap+xml;charset=UTF-8\r\nTransfer-Encoding: chunked\r\n\r\n"
    frame = f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n"
    for _ in range(100_000):  # bounded: 100 GiB at most, the client must stop long before
        if delay:
            time.sleep(delay)
        yield frame


def _oversized(total: int) -> t.Iterator[bytes]:
    yield f"HTTP/1.1 200 OK\r\nContent-Type: application/soap+xml;charset=UTF-8\r\nContent-Length: {total}\r\n\r\n".encode()
    for _ in range(total // MIB):
        yield _CHUNK


def _silence(seconds: float) -> t.Iterator[bytes]:
    time.sleep(seconds)
    yield b""


class Attempt(t.NamedTuple):
    error: BaseException | None
    seconds: float
    peak: int
    hung: bool

    def describe(self) -> str:
        if self.hung:
            return f"still running after {HARD_LIMIT_S:g}s (hang)"
        what = "no error" if self.error is None else f"{type(self.error).__name__}: {str(self.error)[:220]}"
        return f"{what}; after {self.seconds:.1f}s; peak Python memory {self.peak / MIB:.1f} MiB"

    def assert_refused(self, refusal: Refusal) -> None:
        """The row's criterion: a refusal on purpose (class, reason, nothing unexpected under it), in bounded time
        and memory."""
        assert not self.hung and self.seconds < HARD_LIMIT_S, self.describe()
        assert self.peak < MEMORY_LIMIT, self.describe()
        assert_refused(self.error, refusal)


def _attempt(spec: t.Any, on_hang: t.Callable[[], None]) -> Attempt:
    """Open a Session in a worker thread, bounded in time; measure its peak allocations."""
    box: dict[str, BaseException | None] = {"error": None}

    def work() -> None:
        session = Session(spec)
        try:
            session.open()
        except BaseException as e:  # noqa: BLE001 - the attempt reports whatever escaped
            box["error"] = e
        finally:
            try:
                session.close()
            except BaseException:  # noqa: BLE001
                pass

    tracemalloc.start()
    tracemalloc.reset_peak()
    started = time.monotonic()
    worker = threading.Thread(target=work, daemon=True)
    worker.start()
    worker.join(HARD_LIMIT_S)
    hung = worker.is_alive()
    seconds = time.monotonic() - started
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    if hung:
        on_hang()
        worker.join(10)
    return Attempt(box["error"], seconds, peak, hung)


def _basic_spec(port: int) -> t.Any:
    return build_spec({
        "remote_addr": "127.0.0.1", "port": port, "protocol": "http", "auth": "basic",
        "remote_user": "lab-user", "remote_password": "Hostile-Peer-Pw-1", "message_encryption": "never",
        "read_timeout": READ_TIMEOUT, "operation_timeout": 2, "connection_timeout": 5,
    })


# The refusal each row expects: its class (exactly), what its message says, and how the report says it.
NOT_XML = Refusal(MalformedAnswerError, r"Windows host 127\.0\.0\.1 sent an answer that is not well-formed XML",
                  "the host's answer is not well-formed XML")
TOO_LARGE = Refusal(TransportError, r"Windows host 127\.0\.0\.1:\d+ sent an answer larger than \d+ bytes",
                    "the answer is larger than the bound")
NOT_HTTP = Refusal(MalformedAnswerError, r"Windows host 127\.0\.0\.1:\d+ sent an invalid HTTP response",
                   "the host sent an invalid HTTP response")
NO_ANSWER = Refusal(ReadTimeoutError, r"Windows host 127\.0\.0\.1:\d+.*within 4s \(ansible_psrp_read_timeout\)",
                    "no (whole) answer within the read timeout, naming ansible_psrp_read_timeout")
NOT_WSMAN = Refusal(TransportError, r"answer from 127\.0\.0\.1:\d+ is not a WS-Management message",
                    "the answer is not a WS-Management message")
LOST = Refusal(TransportError, r"connection to 127\.0\.0\.1:\d+ was lost after the request was sent.*not resent",
               "the connection was lost after the request, not resent")
FRAMING = Refusal(MalformedAnswerError, r"encrypted answer from 127\.0\.0\.1:\d+ is not well-formed MS-WSMV framing",
                  "the framing is not MS-WSMV's")
NOT_VERIFIED = Refusal(MalformedAnswerError, r"encrypted answer from 127\.0\.0\.1:\d+ did not verify",
                       "the sealed answer did not verify")
NOT_ENCRYPTED = Refusal(TransportError, r"answer from 127\.0\.0\.1:\d+ \(HTTP 200\) was not encrypted",
                        "the answer was not encrypted (R3)")

SCRIPTED: list[tuple[str, str, t.Callable[[int, bytes], t.Any], Refusal]] = [
    ("truncated XML", "half of a CreateResponse envelope",
     lambda i, b: http_response(200, SOAP, _ENVELOPE[: len(_ENVELOPE) // 2]), NOT_XML),
    ("XML entity expansion (billion laughs)", "nine nested entities, 10^9 expansions",
     lambda i, b: http_response(200, SOAP, _LAUGHS), NOT_XML),
    ("oversized envelope", "a 256 MiB body with an honest Content-Length",
     lambda i, b: _oversized(256 * MIB), TOO_LARGE),
    ("endless stream (fast)", "chunked body of 1 MiB chunks that never ends",
     lambda i, b: _endless_chunked(), TOO_LARGE),
    ("endless stream (trickle)", "chunked body, 16 bytes every 0.2 s, never ends",
     lambda i, b: _endless_chunked(0.2, b"<s:Envelope>...."), NO_ANSWER),
    ("wrong content type", "200 with text/html (a captive portal page)",
     lambda i, b: http_response(200, [("Content-Type", "text/html")], b"<html><body>Please log in</body></html>"),
     NOT_WSMAN),
    ("empty 200", "200 with no body at all",
     lambda i, b: http_response(200, SOAP, b""), NOT_XML),
    ("not HTTP", "an SSH banner instead of an HTTP answer",
     lambda i, b: iter([b"SSH-2.0-OpenSSH_9.6\r\n"] + [b"x" * 4096] * 4), NOT_HTTP),
    ("header bomb", "an endless header section",
     lambda i, b: iter([b"HTTP/1.1 200 OK\r\n"] + [b"X-Filler: " + b"y" * 1000 + b"\r\n"] * 100_000), NOT_HTTP),
    ("lying Content-Length", "Content-Length 1 MiB, 100 bytes sent, connection held open",
     lambda i, b: iter([b"HTTP/1.1 200 OK\r\nContent-Type: application/soap+xml\r\nContent-Length: 1048576\r\n\r\n"
                        + b"<" * 100, *_silence(READ_TIMEOUT * 3)]), NO_ANSWER),
    ("no answer", "the request is read, nothing is ever sent",
     lambda i, b: _silence(READ_TIMEOUT * 3), NO_ANSWER),
    ("closed without answer", "the request is read and the connection closed",
     lambda i, b: iter([b""]), LOST),
]


def _scripted_attempt(answer: t.Callable[[int, bytes], t.Any]) -> tuple[Attempt, float]:
    """What a Session opening against the scripted peer ends with, and the MiB the peer sent."""
    with ScriptedHost(answer) as peer:
        result = _attempt(_basic_spec(peer.port), peer.close)
        return result, peer.bytes_sent / MIB


@pytest.mark.parametrize("name, detail, answer, refusal", SCRIPTED, ids=[s[0] for s in SCRIPTED])
@report.row("Bad input", "host answer: {name} ({detail})",
            "refused on purpose: {refusal}, nothing unexpected under it (its cause chain); within "
            f"{HARD_LIMIT_S:g}s (read timeout {READ_TIMEOUT}s), peak memory < {MEMORY_LIMIT // MIB} MiB",
            report.BAD_INPUT)
def test_broken_host_answer_fails_cleanly(check, name: str, detail: str, answer: t.Any, refusal: Refusal) -> None:
    row = check()
    result, sent = _scripted_attempt(answer)
    row.see(f"{result.describe()}; peer sent {sent:.1f} MiB")
    result.assert_refused(refusal)


# -- the encrypted framing, through a tampering relay in front of a real lab host ------------------------


def _framing_parts(body: bytes) -> tuple[bytes, bytes, bytes]:
    """(head up to the signature length, the 4-byte length, the rest) of an MS-WSMV encrypted body."""
    marker = b"Content-Type: application/octet-stream\r\n"
    at = body.index(marker) + len(marker)
    return body[:at], body[at:at + 4], body[at + 4:]


def _content_type(headers: list[tuple[str, str]]) -> str:
    return next(v for k, v in headers if k.lower() == "content-type")


def _replace_header(headers: list[tuple[str, str]], name: str, value: str) -> list[tuple[str, str]]:
    return [(k, value if k.lower() == name.lower() else v) for k, v in headers]


TAMPERS: list[tuple[str, t.Callable[[int, list[tuple[str, str]], bytes], t.Any], Refusal]] = [
    ("encrypted body truncated", lambda s, h, b: http_response(s, h, b[: len(b) // 2]), FRAMING),
    ("signature length 0xFFFFFFFF", lambda s, h, b: http_response(
        s, h, (lambda p: p[0] + struct.pack("<I", 0xFFFFFFFF) + p[2])(_framing_parts(b))), FRAMING),
    ("signature length 0", lambda s, h, b: http_response(
        s, h, (lambda p: p[0] + struct.pack("<I", 0) + p[2])(_framing_parts(b))), FRAMING),
    ("ciphertext bytes flipped", lambda s, h, b: http_response(
        s, h, (lambda p: p[0] + p[1] + p[2][:40] + bytes(x ^ 0x5A for x in p[2][40:80]) + p[2][80:])(_framing_parts(b))),
     NOT_VERIFIED),
    ("boundary mismatch", lambda s, h, b: http_response(
        s, _replace_header(h, "content-type", _content_type(h).replace("Encrypted Boundary", "Other Boundary")), b),
     FRAMING),
    ("original length header lies", lambda s, h, b: http_response(
        s, h, b.replace(b"Length=", b"Length=9", 1)), FRAMING),
    ("plaintext answer while encryption is on", lambda s, h, b: http_response(s, SOAP, _ENVELOPE), NOT_ENCRYPTED),
    ("encrypted answer replaced by an endless stream", lambda s, h, b: _endless_chunked(), TOO_LARGE),
]
_TAMPER = {name: (tamper, refusal) for name, tamper, refusal in TAMPERS}


def _framing_attempt(lab_description: dict[str, t.Any], tamper: t.Any) -> tuple[Attempt, int]:
    """A Session opening through a relay that applies `tamper` to the first WinRM answer of a real lab host;
    returns what it ended with and how many answers the relay tampered with."""
    host = lab_description["hosts"][0]
    user = next(u for u in host["users"] if u["username"] == "ansible")
    relay = TamperingRelay(host["address"], host["http_port"],
                           lambda index, status, headers, body: tamper(status, headers, body) if index == 0 else None)
    with relay:
        spec = build_spec({
            "remote_addr": "127.0.0.1", "port": relay.port, "protocol": "http", "auth": "ntlm",
            "remote_user": user["username"], "remote_password": user["password"],
            "read_timeout": READ_TIMEOUT, "operation_timeout": 2, "connection_timeout": 5,
        })
        return _attempt(spec, relay.close), relay.tampered


def _framing_verdict(result: Attempt, tampered: int, refusal: Refusal) -> None:
    assert tampered == 1, "the relay never saw the first WinRM answer"
    result.assert_refused(refusal)


@pytest.mark.parametrize("name, tamper, refusal", TAMPERS, ids=[t_[0] for t_ in TAMPERS])
@report.row("Bad input", "encrypted framing: {name} (NTLM over http, first WinRM answer)",
            "refused on purpose: {refusal}, nothing unexpected under it (nothing decrypted is accepted); within "
            f"{HARD_LIMIT_S:g}s, peak memory < {MEMORY_LIMIT // MIB} MiB", report.BAD_INPUT)
def test_broken_encryption_framing_fails_cleanly(check, lab_description, name: str, tamper: t.Any,
                                                 refusal: Refusal) -> None:
    row = check()
    result, tampered = _framing_attempt(lab_description, tamper)
    row.see(f"{result.describe()}; answers tampered: {tampered}")
    _framing_verdict(result, tampered, refusal)


def _pypsrp_blind_unwrap(context: t.Any, protocol: str, content_type: str, body: bytes, *, party: str) -> bytes:
    """The reader as it was: pypsrp's parser, fed the boundary the answer names, every exception wrapped."""
    import re

    from pypsrp.encryption import WinRMEncryption

    boundary = re.search(r'boundary="([^"]+)"', content_type)
    try:
        return WinRMEncryption(context, protocol).unwrap_message(body, boundary.group(1) if boundary else "")
    except Exception as e:
        raise TransportError(f"The encrypted answer from {party} could not be decrypted ({type(e).__name__}: {e}); "
                             "it was refused and the connection closed.") from None


@report.row("Criteria that can fail", "mutation: the encrypted answer read by pypsrp's blind parser, every "
            "exception wrapped into a TransportError naming the host (the reader before this suite's fix)",
            "the 'encrypted framing: boundary mismatch' row fails: an IndexError sits under the TransportError",
            report.MUTATION)
def test_the_framing_criterion_fails_on_an_index_error_wrapped_as_a_refusal(check, lab_description,
                                                                           monkeypatch) -> None:
    from ansible_collections.pinned.winrm.plugins.plugin_utils import _transport

    row = check()
    monkeypatch.setattr(_transport, "unwrap", _pypsrp_blind_unwrap)
    tamper, refusal = _TAMPER["boundary mismatch"]
    result, tampered = _framing_attempt(lab_description, tamper)
    with pytest.raises(AssertionError) as caught:
        _framing_verdict(result, tampered, refusal)
    row.see(f"the row's criterion failed: {str(caught.value).splitlines()[0][:220]}")
    assert "IndexError" in str(caught.value)


@report.row("Criteria that can fail", "mutation: an IndexError raised inside the MS-WSMV framing reader",
            "the 'encrypted framing: signature length 0' row fails: the IndexError becomes an UnexpectedError, not "
            "a refusal", report.MUTATION)
def test_the_framing_criterion_fails_on_an_index_error_inside_the_reader(check, lab_description,
                                                                         monkeypatch) -> None:
    from ansible_collections.pinned.winrm.plugins.plugin_utils import _encrypted_framing

    row = check()

    def broken_unpack(fmt: str, buffer: bytes, offset: int = 0) -> tuple[int, ...]:
        raise IndexError("tuple index out of range")  # what a blind parser raises

    # the reader's own name for struct, not the struct module every thread shares
    monkeypatch.setattr(_encrypted_framing, "struct", types.SimpleNamespace(unpack_from=broken_unpack))
    tamper, refusal = _TAMPER["signature length 0"]
    result, tampered = _framing_attempt(lab_description, tamper)
    with pytest.raises(AssertionError) as caught:
        _framing_verdict(result, tampered, refusal)
    row.see(f"the row's criterion failed: {str(caught.value).splitlines()[0][:220]}")
    assert "UnexpectedError" in str(caught.value) and "IndexError" in str(caught.value)


_HOST_ERROR_FROM = _session._host_error_from


def _old_host_error_from(exc: Exception, spec: t.Any) -> PinnedError:
    """The session's error mapping as it was: anything it did not know became a TransportError naming the host."""
    mapped = _HOST_ERROR_FROM(exc, spec)
    if not isinstance(exc, PinnedError) and isinstance(mapped, (MalformedAnswerError, UnexpectedError)):
        return TransportError(f"the WinRM exchange with {spec.host} failed: {type(exc).__name__}: {exc}")
    return mapped


@report.row("Criteria that can fail", "mutation: the session maps an exception it does not know (XML that does not "
            "parse) to a TransportError naming the host (the mapping before this suite's fix)",
            "the 'host answer: truncated XML' row fails: a TransportError is not the MalformedAnswerError it "
            "expects", report.MUTATION)
def test_the_host_answer_criterion_fails_when_any_exception_passes_for_a_transport_error(check, monkeypatch) -> None:
    row = check()
    monkeypatch.setattr(_session, "_host_error_from", _old_host_error_from)
    name, detail, answer, refusal = next(s for s in SCRIPTED if s[0] == "truncated XML")
    result, _ = _scripted_attempt(answer)
    with pytest.raises(AssertionError) as caught:
        result.assert_refused(refusal)
    row.see(f"the row's criterion failed: {str(caught.value).splitlines()[0][:220]}")


# -- a peer that trickles bytes: one deadline for the whole handshake and the whole answer ----------------------


TLS_TIMEOUT = Refusal(ConnectTimeoutError, r"TLS handshake with the Windows host 127\.0\.0\.1 timed out after 2s "
                      r"\(ansible_psrp_connection_timeout\)", "the TLS handshake timed out, naming "
                      "ansible_psrp_connection_timeout")
TRICKLES = [
    ("handshake", "the TLS handshake flight, one byte every 0.25 s", "ansible_psrp_connection_timeout 2 s",
     TLS_TIMEOUT),
    ("answer", "after a normal handshake, one TLS record of the answer, one byte every 0.25 s", "read timeout 4 s",
     NO_ANSWER),
]


@pytest.mark.parametrize("mode, detail, bound, refusal", TRICKLES, ids=[m[0] for m in TRICKLES])
@report.row("Bad input", "host trickles {detail} (each byte well within any per-read timeout)",
            "refused on purpose when the deadline passes ({bound}), not when the peer stops: {refusal}",
            report.BAD_INPUT)
def test_a_peer_trickling_tls_bytes_is_cut_off_at_the_deadline(check, tmp_path, mode: str, detail: str,
                                                                bound: str, refusal: Refusal) -> None:
    from tests.lab._certs import LabCA

    from ._hostile import TricklingTLSHost

    row = check()
    cert, key = LabCA.create(tmp_path / "ca").issue_server("trickle", ["localhost"], ["127.0.0.1"])
    with TricklingTLSHost(str(cert), str(key), mode=mode) as peer:
        spec = build_spec({
            "remote_addr": "127.0.0.1", "port": peer.port, "protocol": "https", "auth": "basic",
            "remote_user": "lab-user", "remote_password": "Hostile-Peer-Pw-1", "cert_validation": "ignore",
            "read_timeout": READ_TIMEOUT, "operation_timeout": 2, "connection_timeout": 2,
        })
        result = _attempt(spec, peer.close)
        row.see(f"{result.describe()}; the peer had trickled {peer.trickled} bytes")
    result.assert_refused(refusal)  # within HARD_LIMIT_S: the peer would trickle for 100 s


# -- an unencrypted error on an encrypted session (review point 7) ------------------------------------------------


def _forged_shell_not_found() -> bytes:
    """The fault Windows sends for an unknown shell (0x8033805B), in plain text: what a proxy could forge."""
    from tests.lab import _soap

    envelope = _soap.shell_not_found().render("WIN-LAB1", "uuid:00000000-0000-0000-0000-000000000000")
    return http_response(500, [("Content-Type", "application/soap+xml;charset=UTF-8")], envelope,
                         reason="Internal Server Error")


def _once_it_ran(counter: pathlib.Path, deadline_s: float = 20.0) -> bytes:  # under the read_timeout (30 s)
    """The forged fault, held until the Command's script has written its run to `counter` on the host.

    The host answers a Command before its pipeline runs, so without the hold the test could read the counter
    before the one run it expects had happened."""
    ran = threading.Event()
    end = time.monotonic() + deadline_s
    while not counter.exists() and time.monotonic() < end:
        ran.wait(0.02)
    return _forged_shell_not_found()


@pytest.mark.parametrize("auth", ["ntlm", "kerberos"])
@report.row("Hostile proxy", "a forward proxy (a tampering relay before the lab host, {auth} over http) passes a "
            "Command to the host, then replaces its encrypted answer with an unencrypted 500 'shell not found' "
            "fault", "the answer is refused as unencrypted (R3) before the session acts on it: no pool rebuild, the "
            "command is not resent (it ran once on the host), the task fails", report.BAD_INPUT)
def test_a_forged_unencrypted_fault_never_makes_a_command_run_twice(check, lab_description, auth: str) -> None:

    row = check()
    host = lab_description["hosts"][0]
    if auth == "kerberos":
        if not lab_description.get("kdc"):
            pytest.skip("the lab runs without its KDC")
        user = next(u for u in host["users"] if u.get("kind") == "domain")
        login = {"remote_user": user["principal"], "negotiate_hostname_override": host["hostname"]}
    else:
        user = next(u for u in host["users"] if u["username"] == "ansible")
        login = {"remote_user": user["username"]}
    folder = pathlib.Path(host["root"]) / "temp" / "forged-fault"
    folder.mkdir(parents=True, exist_ok=True)
    counter = folder / f"runs-{auth}.txt"
    counter.unlink(missing_ok=True)
    padding = "#" + "p" * 40_000  # makes the Command request the only big one: the relay forges only its answer
    script = f"Add-Content -Path 'C:\\temp\\forged-fault\\runs-{auth}.txt' -Value 'ran'\n{padding}\n"
    relay = TamperingRelay(host["address"], host["http_port"],
                           lambda index, status, headers, body: _once_it_ran(counter) if index == 0 else None,
                           request_filter=lambda body: len(body) > 30_000)
    with relay:
        session = Session(build_spec({
            "remote_addr": "127.0.0.1", "port": relay.port, "protocol": "http", "auth": auth, **login,
            "remote_password": user["password"], "read_timeout": 30, "operation_timeout": 10, "connection_timeout": 10,
        }))
        error: BaseException | None = None
        try:
            session.run(script)
        except PinnedError as exc:
            error = exc
        finally:
            rebuilds = session.stats["pool_rebuilds"]
            session.close()
    runs = counter.read_text().split() if counter.exists() else []
    row.see(f"{type(error).__name__}: {str(error)[:170]}; answers forged: {relay.tampered}; pool rebuilds: {rebuilds}; "
            f"the command ran {len(runs)} time(s) on the host")
    assert relay.tampered == 1, "the relay never saw the Command's answer"
    assert_refused(error, Refusal(TransportError, r"answer from 127\.0\.0\.1:\d+ \(HTTP 500\) was not encrypted",
                                  "not encrypted"))
    assert rebuilds == 0 and runs == ["ran"]


# -- a final 200 without the mutual-authentication token (review point 4) ------------------------------------------


def _strip_final_token(index: int, status: int, headers: list[tuple[str, str]], body: bytes) -> t.Any:
    """The 200 that ends the handshake, without its WWW-Authenticate (the host's mutual-authentication token)."""
    if status != 200:
        return None
    kept = [(k, v) for k, v in headers if k.lower() != "www-authenticate"]
    return http_response(status, kept, body)


@pytest.mark.parametrize("auth", ["kerberos", "negotiate"])
@report.row("Hostile proxy", "{auth} (Kerberos) over https: a relay terminating TLS drops the host's final token "
            "from the 200 that ends the handshake", "refused as a failed mutual authentication (the context is not "
            "complete): nothing runs", report.BAD_INPUT)
def test_a_final_200_without_the_mutual_authentication_token_is_refused(check, lab_description, tmp_path,
                                                                         auth: str) -> None:
    from ansible_collections.pinned.winrm.plugins.plugin_utils._errors import HostAuthError
    from tests.lab._certs import LabCA

    if not lab_description.get("kdc"):
        pytest.skip("the lab runs without its KDC")
    row = check()
    host = lab_description["hosts"][0]
    user = next(u for u in host["users"] if u.get("kind") == "domain")
    cert, key = LabCA.create(tmp_path / "relay-ca").issue_server("relay", ["localhost"], ["127.0.0.1"])
    relay = TamperingRelay(host["address"], host["https_port"], _strip_final_token, legs=True,
                           tls=(str(cert), str(key)))
    with relay:
        session = Session(build_spec({
            "remote_addr": "127.0.0.1", "port": relay.port, "protocol": "https", "auth": auth,
            "remote_user": user["principal"], "remote_password": user["password"],
            "negotiate_hostname_override": host["hostname"], "negotiate_send_cbt": False,  # the relay's TLS is its own
            "cert_validation": "ignore", "read_timeout": 30, "operation_timeout": 10, "connection_timeout": 10,
        }))
        error: BaseException | None = None
        try:
            output = session.run("Write-Output accepted").stdout.decode().strip()
        except PinnedError as exc:
            error, output = exc, ""
        finally:
            session.close()
    row.see(f"{type(error).__name__}: {str(error)[:200]}; output {output!r}; final tokens dropped: {relay.tampered}")
    assert relay.tampered == 1
    assert_refused(error, Refusal(HostAuthError, r"final authentication token did not verify.*mutual authentication",
                                  "mutual authentication failed"))
    assert output == ""
