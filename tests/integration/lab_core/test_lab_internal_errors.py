"""The lab's own failures are counted and reach every test: a bug of the lab never passes for a fault it injected.

tests/lab/_internal.py records them; the Lab object, its control API and the host's counters and log give them
back; tests/lab/pytest_plugin.py's autouse fixture fails a test during which one happened.
"""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys
import textwrap
import typing as t

import pytest
from pypsrp.exceptions import WinRMError
from pypsrp.wsman import WSMan

from tests.lab import _internal
from tests.lab._control import LabClient
from tests.lab._lab import Lab, LabOptions

pytestmark = pytest.mark.timeout(120)
ROOT = pathlib.Path(__file__).resolve().parents[3]


@pytest.mark.lab_internal_error  # provokes one on purpose
def test_an_exception_inside_the_lab_is_counted_and_served_by_the_lab_and_its_control_api(monkeypatch) -> None:
    with Lab(LabOptions(hosts=1, squid_auth=(), tinyproxy=False)) as lab:
        desc = lab.describe()
        host = desc["hosts"][0]
        client = LabClient(desc["control_url"])
        service = lab.hosts[host["name"]].service
        start = _internal.total()

        def broken(*args: t.Any, **kwargs: t.Any) -> t.NoReturn:
            raise KeyError("planted lab bug")

        monkeypatch.setattr(service, "_dispatch", broken)
        user = next(u for u in host["users"] if u.get("kind", "local") == "local")
        wsman = WSMan(host["address"], port=host["http_port"], ssl=False, auth="ntlm", username=user["username"],
                      password=user["password"], encryption="auto", connection_timeout=10, read_timeout=30)
        with wsman, pytest.raises(WinRMError) as answered:
            wsman.get_server_config()
        # What a client sees is Windows' answer to a failing provider, naming the failure
        assert "planted lab bug" in str(answered.value)
        from_lab = lab.internal_errors(start)
        from_api = client.internal_errors(start)
        assert [(e["host"], e["where"], e["error"]) for e in from_lab] == [
            (host["name"], "WS-Management Get", "KeyError: 'planted lab bug'")]
        assert from_api == from_lab
        assert "broken" in from_lab[0]["traceback"]
        assert lab.host_counters(host["name"])["lab_internal_errors"] == 1
        logged = [e for e in lab.host_log(host["name"]) if e.get("kind") == "lab_internal_error"]
        assert [e["where"] for e in logged] == ["WS-Management Get"]
        assert client.internal_errors(from_lab[-1]["seq"]) == []


def test_a_test_during_which_the_lab_failed_fails_unless_it_provokes_that_on_purpose(tmp_path) -> None:
    (tmp_path / "test_inner.py").write_text(textwrap.dedent("""
        import pytest
        from tests.lab import _internal

        def test_unmarked():
            _internal.lab_bug("an inner test", RuntimeError("planted"))

        @pytest.mark.lab_internal_error
        def test_marked():
            _internal.lab_bug("an inner test", RuntimeError("planted"))

        def test_clean():
            pass
    """))
    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    env.pop("LAB_CONTROL_URL", None)
    run = subprocess.run([sys.executable, "-m", "pytest", "-p", "tests.lab.pytest_plugin", "-p", "no:cacheprovider",
                          "-q", "-rA", str(tmp_path / "test_inner.py")], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=100)
    out = run.stdout
    assert run.returncode == 1, out + run.stderr
    # The fixture fails the test at its teardown (reported as an error of that test): the run fails either way
    assert "3 passed, 1 error" in out, out
    assert "ERROR test_inner.py::test_unmarked" in out and "test_inner.py::test_marked -" not in out, out
    assert "the lab had 1 internal error(s) during this test" in out and "RuntimeError: planted" in out, out
