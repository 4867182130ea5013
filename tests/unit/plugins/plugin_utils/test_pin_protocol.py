"""Frames, errors over the socket, and the daemon's child environment."""

from __future__ import annotations

import socket
import struct
import threading

import pytest

import _pin_fakes  # noqa: F401  (puts the collection on sys.path)
from ansible_collections.pinned.winrm.plugins.plugin_utils import _errors
from ansible_collections.pinned.winrm.plugins.plugin_utils import _pin_protocol as proto
from ansible_collections.pinned.winrm.plugins.plugin_utils._pin_start import (
    collection_sys_path_root,
    daemon_env,
)


@pytest.fixture
def pair():
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    a.settimeout(5)
    b.settimeout(5)
    yield a, b
    a.close()
    b.close()


def test_json_and_binary_frames_arrive_unchanged_and_in_order(pair):
    a, b = pair
    payload = bytes(range(256)) * 5000  # more than one DATA_CHUNK: split into several frames

    def write() -> None:
        proto.send_json(a, {"op": "put", "text": "caf\u00e9"})
        proto.send_data(a, payload)
        proto.send_json(a, {"end": True})

    writer = threading.Thread(target=write)
    writer.start()
    assert proto.recv_json(b) == {"op": "put", "text": "caf\u00e9"}
    got = bytearray()
    while True:
        kind, value = proto.recv_frame(b)
        if kind == proto.KIND_JSON:
            assert value == {"end": True}
            break
        assert len(value) <= proto.DATA_CHUNK
        got += value
    writer.join(5)
    assert bytes(got) == payload


def test_a_data_frame_larger_than_the_bound_is_refused_before_reading_it(pair):
    a, b = pair
    a.sendall(struct.pack("!cI", b"D", proto.MAX_DATA_FRAME + 1))
    with pytest.raises(proto.ProtocolError, match="exceeds"):
        proto.recv_frame(b)


def test_unknown_frame_kind_and_non_object_json_are_protocol_errors(pair):
    a, b = pair
    a.sendall(struct.pack("!cI", b"X", 0))
    with pytest.raises(proto.ProtocolError, match="unknown frame kind"):
        proto.recv_frame(b)
    a.sendall(struct.pack("!cI", b"J", 2) + b"[]")
    with pytest.raises(proto.ProtocolError, match="object"):
        proto.recv_frame(b)


def test_eof_inside_a_frame_is_reported_as_peer_closed(pair):
    a, b = pair
    a.sendall(struct.pack("!cI", b"J", 100) + b'{"op"')
    a.close()
    with pytest.raises(proto.PeerClosed, match="inside a frame"):
        proto.recv_frame(b)


@pytest.mark.parametrize(
    "exc",
    [
        _errors.ConfigError("bad setting"),
        _errors.TransportError("reset"),
        _errors.ProxyAuthError("proxy said 407", status=407),
        _errors.AffinityLostError("lost"),
        _errors.HostAuthError("host said 401", status=401),
        _errors.HostError("fault", status=None),
    ],
)
def test_errors_cross_the_socket_as_the_same_class_with_message_and_status(exc):
    back = proto.error_from_wire(proto.error_to_wire(exc))
    assert type(back) is type(exc)
    assert str(back) == str(exc)
    assert getattr(back, "status", None) == getattr(exc, "status", None)


def test_an_error_subclass_unknown_to_the_client_becomes_its_nearest_known_base():
    class ConnectionLost(_errors.TransportError):
        pass

    back = proto.error_from_wire(proto.error_to_wire(ConnectionLost("peer closed")))
    assert type(back) is _errors.TransportError
    assert str(back) == "peer closed"


def test_an_unexpected_daemon_exception_comes_back_as_an_unexpected_error_naming_it():
    """A bug in the daemon fails the task (UnexpectedError), it does not pass for the network (unreachable)."""
    back = proto.error_from_wire(proto.error_to_wire(KeyError("spec")))
    assert type(back) is _errors.UnexpectedError
    assert "unexpected KeyError" in str(back)


def test_the_daemon_environment_drops_secrets_and_proxy_variables_and_finds_the_collection():
    base = {
        "HOME": "/home/u",
        "ANSIBLE_PSRP_PASSWORD": "x",
        "MY_TOKEN": "x",
        "AWS_SECRET_ACCESS_KEY": "x",
        "https_proxy": "http://p:3128",
        "NO_PROXY": "a",
        "PYTHONPATH": "/extra",
    }
    env = daemon_env(base, "/coll")
    assert env == {"HOME": "/home/u", "PYTHONPATH": "/coll:/extra"}
    import os

    assert os.path.isdir(os.path.join(collection_sys_path_root(), "ansible_collections", "pinned", "winrm"))
