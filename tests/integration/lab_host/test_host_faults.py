"""Each fault switch of tests/lab/_faults.py does what it says at the HTTP layer."""

from __future__ import annotations

import base64
import http.client
import threading
import time
import typing as t

import pytest
import requests
from pypsrp.exceptions import AuthenticationError, WinRMTransportError

from tests.integration.lab_host._echo import request_envelope


def _wait_until(predicate: t.Callable[[], bool], timeout: float = 20.0) -> bool:
    """Poll for a state the lab reaches by itself; the bound only stops a broken lab from hanging the test."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def _basic(lab) -> dict[str, str]:
    token = base64.b64encode(f"alice:{lab.password('alice')}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


def test_close_after_requests_drops_the_connection_after_n_answers(lab) -> None:
    lab.faults.update(close_after_requests=2)
    raw = lab.raw(tls=True)
    for _ in range(2):
        response, _ = raw.post(request_envelope(), _basic(lab))
        assert response.status == 200
        assert response.getheader("Connection") is None  # no warning: the close is abrupt
    raw.conn.sock.settimeout(2)
    assert raw.conn.sock.recv(16) == b""
    raw.close()
    transport = lab.pypsrp(ssl=True, auth="basic")
    for index in range(5):
        transport.send(request_envelope())
        if index % 2 == 1:
            # The host has closed its side before the client reuses the connection: urllib3 checks for the
            # close only before sending, and a request racing it is reset (pypsrp does not resend a POST).
            assert _wait_until(lambda: lab.host.open_connections() == 0)
    assert lab.counters.get("tcp_connections") == 1 + 3  # pypsrp reopened after every second answer


def test_close_after_each_response_announces_and_closes(lab) -> None:
    lab.faults.update(close_after_each_response=True)
    transport = lab.pypsrp(ssl=True, auth="basic")
    for _ in range(4):
        transport.send(request_envelope())
    assert lab.counters.get("tcp_connections") == 4
    response, _ = lab.raw(tls=True).post(request_envelope(), _basic(lab))
    assert response.getheader("Connection") == "close"


def test_close_after_each_response_breaks_an_encrypted_ntlm_session(lab) -> None:
    transport = lab.pypsrp(ssl=False, auth="ntlm")
    transport.send(request_envelope())
    lab.faults.update(close_after_each_response=True)
    transport.send(request_envelope())  # answered, then closed
    with pytest.raises(AuthenticationError):
        transport.send(request_envelope())  # sealed message on a fresh connection: 401
    assert lab.counters.get("rejected.unauthenticated_encrypted") == 1


def test_delay_response_holds_every_answer(lab) -> None:
    transport = lab.pypsrp(ssl=True, auth="basic")
    transport.send(request_envelope())
    lab.faults.update(delay_response_s=0.3)
    started = time.monotonic()
    transport.send(request_envelope())
    transport.send(request_envelope())
    # A lower bound only: scheduling adds time, never removes it.
    assert time.monotonic() - started >= 0.6
    assert [e.get("delay_s") for e in lab.counters.log()] == [None, 0.3, 0.3]


def test_http_status_next_answers_500_with_a_wsman_fault_then_503_then_normally(lab) -> None:
    transport = lab.pypsrp(ssl=False, auth="ntlm")
    transport.send(request_envelope())
    lab.faults.update(http_status_next=[500, 503])
    message = request_envelope("Command")
    with pytest.raises(WinRMTransportError) as fault:
        transport.send(message)
    assert fault.value.code == 500
    # Sealed like every answer on this session, and tied to the request it refuses.
    message_id = message.split(b"<wsa:MessageID>")[1].split(b"<")[0].decode()
    assert "w:InternalError" in fault.value.response_text and message_id in fault.value.response_text
    with pytest.raises(WinRMTransportError) as unavailable:
        transport.send(request_envelope())
    assert unavailable.value.code == 503
    assert "HTTP Error 503. The service is unavailable." in unavailable.value.response_text
    transport.send(request_envelope())
    assert lab.counters.get("http_status.500") == 1 and lab.counters.get("http_status.503") == 1
    assert len(lab.service.received) == 2  # the faulted requests never reached the service


def test_refuse_auth_refuses_correct_credentials(lab) -> None:
    lab.faults.update(refuse_auth=True)
    with pytest.raises(AuthenticationError):
        lab.pypsrp(ssl=False, auth="negotiate").send(request_envelope())
    response, _ = lab.raw(tls=True).post(request_envelope(), _basic(lab))
    assert response.status == 401
    assert lab.counters.get("auth_failures") == 2 and lab.counters.get("auth_handshakes") == 0
    lab.faults.update(refuse_auth=False)
    lab.pypsrp(ssl=False, auth="negotiate").send(request_envelope())


def test_stall_next_delays_only_the_next_request(lab) -> None:
    transport = lab.pypsrp(ssl=True, auth="basic")
    transport.send(request_envelope("Get", "before"))
    # Far longer than the client's read timeout, so the stalled request cannot be answered in time however
    # slow the machine is; the host stops stalling when the test stops it.
    lab.faults.update(stall_next_s=[60.0])
    with pytest.raises(requests.exceptions.ReadTimeout):
        transport.send(request_envelope("Get", "stalled"), timeout=(5, 0.3))
    transport.send(request_envelope("Get", "after"))  # answered: the stall was for one request only
    assert lab.faults.get("stall_next_s") == []
    payloads = [body for _, body in lab.service.received]
    assert len(payloads) == 2 and b"before" in payloads[0] and b"after" in payloads[1]


def test_hold_on_action_nth_holds_that_request_until_released(lab) -> None:
    lab.faults.update(hold_on_action_nth={"Send": 2})
    transport = lab.pypsrp(ssl=True, auth="basic")
    transport.send(request_envelope("Send", "first"))  # the first Send passes
    transport.send(request_envelope("Get", "other"))  # other actions are not counted
    answered: list[bytes] = []
    sender = threading.Thread(target=lambda: answered.append(transport.send(request_envelope("Send", "second"))))
    sender.start()
    held = lab.faults.wait_held(20)
    assert [h["action"] for h in held] == ["Send"] and held[0]["user"] == "alice"
    # Held: read, neither handled nor answered, for as long as the test wants.
    assert len(lab.service.received) == 2 and answered == []
    assert lab.counters.get("faults.held.Send") == 1
    assert lab.faults.release() == 1
    sender.join(20)
    assert len(answered) == 1 and b"second" in lab.service.received[-1][1]
    assert lab.faults.held() == [] and lab.faults.get("hold_on_action_nth") == {"Send": 0}
    assert [e.get("held") for e in lab.counters.log()] == [None, None, True]
    transport.send(request_envelope("Send", "third"))  # counted down: nothing more is held


def test_clearing_the_faults_releases_a_held_request(lab) -> None:
    lab.faults.update(hold_on_action_nth={"Receive": 1})
    transport = lab.pypsrp(ssl=True, auth="basic")
    answered: list[bytes] = []
    sender = threading.Thread(target=lambda: answered.append(transport.send(request_envelope("Receive"))))
    sender.start()
    assert lab.faults.wait_held(20)
    lab.faults.clear()
    sender.join(20)
    assert len(answered) == 1


def test_a_held_request_is_dropped_when_the_host_stops(lab) -> None:
    lab.faults.update(hold_on_action_nth={"Command": 1})
    transport = lab.pypsrp(ssl=True, auth="basic")
    failed: list[BaseException] = []

    def send() -> None:
        try:
            transport.send(request_envelope("Command"))
        except Exception as exc:  # the host went away: no answer
            failed.append(exc)

    sender = threading.Thread(target=send)
    sender.start()
    assert lab.faults.wait_held(20)
    lab.host.stop()
    sender.join(20)
    assert len(failed) == 1 and lab.service.received == []


def test_drop_on_action_next_closes_without_answering_that_action_only(lab) -> None:
    lab.faults.update(drop_on_action_next={"Receive": 1})
    transport = lab.pypsrp(ssl=True, auth="basic")
    transport.send(request_envelope("Get"))  # other actions pass
    with pytest.raises(requests.exceptions.ConnectionError):
        transport.send(request_envelope("Receive"))
    transport.send(request_envelope("Receive"))
    dropped = [e for e in lab.counters.log() if e.get("reason") == "drop_on_action:Receive"]
    assert len(dropped) == 1 and dropped[0]["status"] is None
    assert [body.count(b"Receive") > 0 for _, body in lab.service.received] == [False, True]


def test_drop_on_action_reads_the_action_inside_an_encrypted_message(lab) -> None:
    transport = lab.pypsrp(ssl=False, auth="ntlm")
    transport.send(request_envelope("Get"))
    lab.faults.update(drop_on_action_next={"Command": 1})
    with pytest.raises(requests.exceptions.ConnectionError):
        transport.send(request_envelope("Command"))
    assert lab.faults.get("drop_on_action_next") == {"Command": 0}


def test_faults_are_visible_in_the_raw_http_exchange(lab) -> None:
    lab.faults.update(http_status_next=[503])
    conn = http.client.HTTPSConnection("127.0.0.1", lab.config.https_port, timeout=5,
                                       context=__import__("ssl").create_default_context(cafile=str(lab.ca.cert_path)))
    conn.request("POST", "/wsman", body=request_envelope(), headers=_basic(lab))
    response = conn.getresponse()
    assert (response.status, response.getheader("Content-Type")) == (503, "text/html; charset=us-ascii")
    assert response.getheader("Server") == "Microsoft-HTTPAPI/2.0"
