"""A stand-in WS-Management service for the HTTP-layer tests: its answer is derived from
the bytes it received, so framing and encryption round trips are proven end to end."""

from __future__ import annotations

import hashlib
import re
import threading
import uuid

_ACTION = re.compile(rb"<(?:\w+:)?Action\b[^>]*>([^<]+)</")
_MESSAGE_ID = re.compile(rb"<(?:\w+:)?MessageID\b[^>]*>([^<]+)</")


def request_envelope(action: str = "Get", payload: str = "") -> bytes:
    """A minimal WS-Management request whose body carries payload."""
    return (
        '<s:Envelope xmlns:s="http://www.w3.org/2003/05/soap-envelope" '
        'xmlns:wsa="http://schemas.xmlsoap.org/ws/2004/08/addressing"><s:Header>'
        f'<wsa:Action s:mustUnderstand="true">http://schemas.xmlsoap.org/ws/2004/09/transfer/{action}</wsa:Action>'
        f"<wsa:MessageID>uuid:{str(uuid.uuid4()).upper()}</wsa:MessageID>"
        f"</s:Header><s:Body><Payload>{payload}</Payload></s:Body></s:Envelope>"
    ).encode("utf-8")


def expected_answer(user: str, body: bytes) -> tuple[str, int]:
    """(digest, length) the echo service reports for body."""
    return hashlib.sha256(body).hexdigest(), len(body)


class EchoService:
    """Answers every request with the sha256 and length of the body it got, and the user."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.received: list[tuple[str, bytes]] = []
        self.expired = 0

    def handle(self, user: str, body: bytes) -> tuple[int, bytes]:
        with self.lock:
            self.received.append((user, body))
        digest, length = expected_answer(user, body)
        action = _ACTION.search(body)
        message_id = _MESSAGE_ID.search(body)
        # Echo the payload too, so large answers (CredSSP multi-part) are exercised.
        payload = re.search(rb"<Payload>(.*)</Payload>", body, re.S)
        return 200, (
            '<s:Envelope xmlns:s="http://www.w3.org/2003/05/soap-envelope" '
            'xmlns:a="http://schemas.xmlsoap.org/ws/2004/08/addressing"><s:Header>'
            f"<a:Action>{(action.group(1).decode() if action else 'none')}Response</a:Action>"
            f"<a:RelatesTo>{(message_id.group(1).decode() if message_id else '')}</a:RelatesTo>"
            f"</s:Header><s:Body><Echo user=\"{user}\" sha256=\"{digest}\" length=\"{length}\">"
            f"{(payload.group(1).decode() if payload else '')}</Echo></s:Body></s:Envelope>"
        ).encode("utf-8")

    def expire_shells(self) -> int:
        self.expired += 1
        return 0
