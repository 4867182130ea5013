"""Each fault switch of tests/lab/_faults.py does what it says at the HTTP layer."""

from __future__ import annotations

import base64
import http.client
import time

import pytest
import requests
from pypsrp.exceptions import AuthenticationError, WinRMTransportError

from tests.integration.lab_host._echo import request_envelope


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
    for _ in range(5):
        transport.send(request_envelope())
        # Let the host's close reach the client before it reuses the connection: urllib3 checks for it
        # only before sending, and a request racing the close is reset (pypsrp does not resend a POST).
        time.sleep(0.1)
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
    assert time.monotonic() - started >= 0.6


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
    transport.send(request_envelope())
    lab.faults.update(stall_next_s=[1.0])
    with pytest.raises(requests.exceptions.ReadTimeout):
        transport.send(request_envelope(), timeout=(2, 0.3))
    started = time.monotonic()
    transport.send(request_envelope())
    assert time.monotonic() - started < 1.0


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
