"""Auth providers: challenge parsing, Digest for CONNECT, NTLM legs, R2 separation of credentials."""

from __future__ import annotations

import base64
import hashlib
import pathlib
import sys
import tempfile

import pytest
import spnego
from requests.utils import parse_dict_header

try:
    from ansible_collections.pinned.winrm.plugins.plugin_utils import _httpauth
except ImportError:  # running from a checkout: expose it as ansible_collections.pinned.winrm
    _root = pathlib.Path(__file__).resolve().parents[4]
    _tree = pathlib.Path(tempfile.mkdtemp(prefix="pinned-coll-"))
    (_tree / "ansible_collections" / "pinned").mkdir(parents=True)
    (_tree / "ansible_collections" / "pinned" / "winrm").symlink_to(_root)
    sys.path.insert(0, str(_tree))
    from ansible_collections.pinned.winrm.plugins.plugin_utils import _httpauth

from ansible_collections.pinned.winrm.plugins.plugin_utils._spec import ProxySpec, SessionSpec

parse = _httpauth.parse_challenges


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        (["Negotiate"], [("Negotiate", None, {})]),
        (["Negotiate, NTLM"], [("Negotiate", None, {}), ("NTLM", None, {})]),
        (["NTLM TlRMTVNTUAACAAAA"], [("NTLM", "TlRMTVNTUAACAAAA", {})]),
        (["Negotiate YIIab+/c=="], [("Negotiate", "YIIab+/c==", {})]),
        (['Basic realm="a, b"', "Kerberos"], [("Basic", None, {"realm": "a, b"}), ("Kerberos", None, {})]),
        (
            ['Digest realm="r", nonce="abc=", qop="auth,auth-int", algorithm=MD5, Basic realm="x"'],
            [("Digest", None, {"realm": "r", "nonce": "abc=", "qop": "auth,auth-int", "algorithm": "MD5"}), ("Basic", None, {"realm": "x"})],
        ),
    ],
)
def test_challenges_are_split_into_schemes_tokens_and_params(values: list[str], expected: list[tuple]) -> None:
    assert [(c.scheme, c.token, c.params) for c in parse(values)] == expected


def test_digest_answers_connect_with_the_authority_as_digest_uri() -> None:
    provider = _httpauth.DigestAuth("alice", "s3cret")
    chal = parse(['Digest realm="squid", nonce="abc123", qop="auth", algorithm=MD5'])
    value = provider.respond(chal, "CONNECT", "win.example.com:5986")
    scheme, _, data = value.partition(" ")
    p = parse_dict_header(data)
    assert scheme == "Digest" and p["uri"] == "win.example.com:5986"
    ha1 = hashlib.md5(b"alice:squid:s3cret").hexdigest()
    ha2 = hashlib.md5(b"CONNECT:win.example.com:5986").hexdigest()
    assert p["response"] == hashlib.md5(f"{ha1}:abc123:{p['nc']}:{p['cnonce']}:auth:{ha2}".encode()).hexdigest()
    # the same nonce challenged again means the answer was refused, unless the proxy says it is stale
    with pytest.raises(_httpauth.AuthRejected):
        provider.respond(chal, "CONNECT", "win.example.com:5986")
    stale = parse(['Digest realm="squid", nonce="abc123", qop="auth", stale=true'])
    assert provider.respond(stale, "CONNECT", "win.example.com:5986").startswith("Digest ")


def test_digest_challenged_again_with_a_fresh_nonce_means_refused() -> None:
    # Squid answers wrong Digest credentials with a new nonce and no stale flag: that is a refusal, not a retry
    provider = _httpauth.DigestAuth("alice", "wrong")
    provider.respond(parse(['Digest realm="squid", nonce="n1", qop="auth"']), "CONNECT", "h:5986")
    with pytest.raises(_httpauth.AuthRejected):
        provider.respond(parse(['Digest realm="squid", nonce="n2", qop="auth"']), "CONNECT", "h:5986")


def test_basic_for_the_proxy_waits_for_a_challenge_and_answers_once() -> None:
    provider = _httpauth.BasicAuth("bob", "pw", send_first=False)
    assert provider.preemptive() is None
    assert provider.respond(parse(['Basic realm="p"']), "CONNECT", "h:1") == "Basic " + base64.b64encode(b"bob:pw").decode()
    with pytest.raises(_httpauth.AuthRejected):
        provider.respond(parse(['Basic realm="p"']), "CONNECT", "h:1")


def test_basic_not_offered_is_rejected() -> None:
    with pytest.raises(_httpauth.AuthRejected):
        _httpauth.BasicAuth("bob", "pw", send_first=False).respond(parse(["NTLM"]), "CONNECT", "h:1")


def test_proxy_ntlm_prefers_the_ntlm_header_and_completes_with_an_acceptor(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> None:
    users = tmp_path / "users"
    users.write_text(":carol:pw1\n")
    monkeypatch.setenv("NTLM_USER_FILE", str(users))
    proxy = ProxySpec(url="http://127.0.0.1:3128", scheme="http", host="127.0.0.1", port=3128, auth="ntlm", username="carol", password="pw1")
    provider = _httpauth.proxy_provider(proxy)
    assert provider is not None
    acceptor = spnego.server(protocol="ntlm")
    first = provider.respond(parse(["Negotiate", "NTLM"]), "CONNECT", "h:5986")
    assert first.startswith("NTLM ")
    challenge = acceptor.step(base64.b64decode(first.split()[1]))
    third = provider.respond(parse([f"NTLM {base64.b64encode(challenge).decode()}"]), "CONNECT", "h:5986")
    acceptor.step(base64.b64decode(third.split()[1]))
    assert acceptor.complete
    # a bare challenge after the last leg: the proxy refused the credentials
    with pytest.raises(_httpauth.AuthRejected):
        provider.respond(parse(["NTLM"]), "CONNECT", "h:5986")


def test_host_and_proxy_providers_use_only_their_own_credentials() -> None:
    proxy = ProxySpec(url="https://p:3128", scheme="https", host="p", port=3128, auth="negotiate", username="puser", password="ppw")
    spec = SessionSpec(scheme="https", host="win", port=5986, auth="ntlm", username="huser", password="hpw", proxy=proxy)
    host = _httpauth.host_provider(spec, channel_bindings=None)
    via = _httpauth.proxy_provider(proxy)
    assert (host._username, host._password) == ("huser", "hpw")  # type: ignore[attr-defined]
    assert (via._username, via._password, via._hostname, via._service) == ("puser", "ppw", "p", "HTTP")  # type: ignore[union-attr]


def test_no_proxy_auth_means_no_provider() -> None:
    proxy = ProxySpec(url="http://p:3128", scheme="http", host="p", port=3128)
    assert _httpauth.proxy_provider(proxy) is None


def test_channel_binding_is_tls_server_end_point_over_the_certificate_hash() -> None:
    cert_pem, _key, _pub = spnego.tls.generate_tls_certificate()
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    der = x509.load_pem_x509_certificate(cert_pem).public_bytes(serialization.Encoding.DER)
    assert _httpauth.certificate_binding(der) == b"tls-server-end-point:" + hashlib.sha256(der).digest()
    assert _httpauth.certificate_binding(None) is None
