"""pytest fixtures for the lab: one lab per test session, shared by every test that asks for it.

Loaded by tests/conftest.py (``pytest_plugins``). Fixtures:

- ``lab`` (session): a started ``Lab`` (tests/lab/_lab.py), or a ``LabClient`` for a
  lab already running elsewhere when ``LAB_CONTROL_URL`` is set. Both answer
  ``describe()``, ``host_counters(host)``, ``set_faults(host, ...)``, ... (docs/lab.md).
- ``lab_client`` (session): a ``LabClient`` talking to the same lab over its control API.
- ``lab_description`` (session): ``lab.describe()``.
- ``lab_host`` (function): the description of the first host, counters reset and faults
  cleared before the test.
- ``lab_internal_errors_fail_the_test`` (autouse, every test): a test during which a lab of
  this process (or the external lab the test uses) had an internal error fails, with the
  error's traceback, unless it is marked ``@pytest.mark.lab_internal_error`` because it
  provokes one on purpose. The lab turns its own exceptions into what Windows would show (a
  dropped connection, an InternalError fault, a failed pipeline): without this, a test that
  only needs "it failed" would pass on a bug of the lab (tests/lab/_internal.py).

What the session lab contains (ini option in pytest.ini, or environment variable, which wins):

    lab_hosts         LAB_HOSTS          number of hosts (default 2)
    lab_squid_auth    LAB_SQUID_AUTH     Squid variants, comma-separated (default none,basic,digest,ntlm,negotiate)
    lab_squid_https   LAB_SQUID_HTTPS    a Basic Squid with a TLS port too (default true)
    lab_tinyproxy     LAB_TINYPROXY      tinyproxy (default true)
    lab_socks         LAB_SOCKS          the SOCKS5 proxies (microsocks), with and without a password (default true)
    lab_mitm          LAB_MITM           the inspecting proxy (default true)
    lab_kdc           LAB_KDC            the Kerberos realm LAB.TEST (default true)
    lab_relays        LAB_RELAYS         latency relays in front of every host port (default true, RTT 0)
    lab_rtt_ms        LAB_RTT_MS         RTT the relays add at start (default 0; lab.set_rtt() changes it)
                      LAB_WORKDIR        keep the lab's files there (default: a temp dir, removed)
                      LAB_CONTROL_URL    use the lab already running there instead of starting one

Every component that is on must start, or the session errors.
"""

from __future__ import annotations

import logging
import os
import pathlib
import typing as t

import pytest

from tests.lab import _internal
from tests.lab._control import LabClient
from tests.lab._lab import Lab, LabOptions

log = logging.getLogger(__name__)

_DEFAULTS: dict[str, str] = {
    "hosts": "2",
    "squid_auth": "none,basic,digest,ntlm,negotiate",
    "squid_https": "true",
    "tinyproxy": "true",
    "socks": "true",
    "mitm": "true",
    "kdc": "true",
    "relays": "true",
    "rtt_ms": "0",
}


def pytest_addoption(parser: pytest.Parser) -> None:
    for name, default in _DEFAULTS.items():
        parser.addini(f"lab_{name}", f"session lab: {name} (env LAB_{name.upper()}; default {default})",
                      default=None)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "lab_internal_error: the test provokes an internal error of the lab on "
                                       "purpose (otherwise any makes it fail)")


@pytest.fixture(autouse=True)
def lab_internal_errors_fail_the_test(request: pytest.FixtureRequest) -> t.Iterator[None]:
    """Fail the test if a lab had an internal error while it ran (set-up and teardown of its fixtures included)."""
    external = os.environ.get("LAB_CONTROL_URL") if "lab" in request.fixturenames else None
    client = LabClient(external) if external else None
    start = _internal.total()
    start_external = max((e["seq"] for e in client.internal_errors()), default=0) if client else 0
    yield
    found = _internal.internal_errors(start) + (client.internal_errors(start_external) if client else [])
    if found and request.node.get_closest_marker("lab_internal_error") is None:
        shown = "\n\n".join(f"{e['host'] or 'the lab'} ({e['where']}): {e['error']}\n{e['traceback']}" for e in found[:3])
        pytest.fail(f"the lab had {len(found)} internal error(s) during this test; a bug of the lab is not a fault "
                    f"it injected, fix it in tests/lab:\n{shown}", pytrace=False)


def _setting(config: pytest.Config, name: str) -> tuple[str, bool]:
    """(value, explicitly set?) from the environment, then pytest.ini, then the default."""
    env = os.environ.get(f"LAB_{name.upper()}")
    if env is not None:
        return env, True
    try:
        ini = config.getini(f"lab_{name}")
    except ValueError:
        ini = None
    if ini:
        return str(ini), True
    return _DEFAULTS[name], False


def _bool(value: str) -> bool:
    return value.strip().lower() in ("1", "true", "yes", "on")


def lab_options_from(config: pytest.Config) -> LabOptions:
    """The session lab's LabOptions from environment, ini and defaults (see the module docstring)."""
    values = {name: _setting(config, name) for name in _DEFAULTS}

    def wanted(name: str) -> bool:
        return _bool(values[name][0])

    squid_auth = tuple(s.strip() for s in values["squid_auth"][0].split(",") if s.strip())
    hosts = int(values["hosts"][0])
    workdir = os.environ.get("LAB_WORKDIR")
    return LabOptions(
        hosts=hosts,
        squid_auth=squid_auth,
        squid_https=bool(squid_auth) and wanted("squid_https"),
        tinyproxy=wanted("tinyproxy"),
        socks=wanted("socks"),
        mitm=wanted("mitm"),
        kdc=_bool(values["kdc"][0]),
        relays=_bool(values["relays"][0]),
        rtt_ms=float(values["rtt_ms"][0]),
        workdir=pathlib.Path(workdir) if workdir else None,
        keep_workdir=bool(workdir),
    )


@pytest.fixture(scope="session")
def lab(pytestconfig: pytest.Config) -> t.Iterator[Lab | LabClient]:
    """The session's lab: started once, shared by every test, stopped at the end of the session."""
    external = os.environ.get("LAB_CONTROL_URL")
    if external:
        yield LabClient(external)
        return
    instance = Lab(lab_options_from(pytestconfig))
    instance.start()
    try:
        yield instance
    finally:
        instance.stop()


@pytest.fixture(scope="session")
def lab_description(lab: Lab | LabClient) -> dict[str, t.Any]:
    """lab.describe(), read once per session."""
    return lab.describe()


@pytest.fixture(scope="session")
def lab_client(lab: Lab | LabClient, lab_description: dict[str, t.Any]) -> LabClient:
    """A LabClient for the session lab, over its control API (what a subprocess would use)."""
    if isinstance(lab, LabClient):
        return lab
    url = lab_description.get("control_url")
    if not url:
        pytest.skip("the session lab runs without its control API")
    return LabClient(url)


@pytest.fixture
def lab_host(lab: Lab | LabClient, lab_description: dict[str, t.Any]) -> t.Iterator[dict[str, t.Any]]:
    """The first host's description, its counters reset and faults cleared before and after the test."""
    if not lab_description["hosts"]:
        pytest.skip("the session lab has no hosts")
    host = lab_description["hosts"][0]
    lab.reset_host(host["name"])
    lab.clear_faults(host["name"])
    yield host
    lab.clear_faults(host["name"])
