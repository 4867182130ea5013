"""A Lab built in this process cleans up after itself, and answers the LabClient calls directly."""

from __future__ import annotations

import os
import pathlib
import socket

import pytest

from tests.lab._control import LabClient
from tests.lab._lab import Lab, LabError, LabOptions, UnknownComponent

pytestmark = pytest.mark.timeout(60)


def _port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


class _FailingProxiesLab(Lab):
    """A lab whose proxy step fails after the realm is up, as a proxy that does not start would."""

    def _start_proxies(self) -> None:
        assert self.kdc is not None and _port_open(self.kdc.port)
        self.seen_kdc_port = self.kdc.port
        raise LabError("proxy did not start")


def test_a_failure_half_way_through_start_stops_what_was_started(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KRB5_CONFIG", raising=False)
    lab = _FailingProxiesLab(LabOptions(hosts=0, squid_auth=(), tinyproxy=False, kdc=True))
    with pytest.raises(LabError, match="proxy did not start"):
        lab.start()
    assert not _port_open(lab.seen_kdc_port)
    assert "KRB5_CONFIG" not in os.environ  # the realm's settings do not outlive it
    assert lab.workdir is not None and not lab.workdir.exists()


def test_the_lab_object_and_its_control_api_give_the_same_answers(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KRB5_CONFIG", "/nonexistent/krb5.conf")
    with Lab(LabOptions(hosts=0, squid_auth=(), tinyproxy=False, kdc=True)) as lab:
        desc = lab.describe()
        assert os.environ["KRB5_CONFIG"] == desc["kdc"]["krb5_config"]
        assert oct(pathlib.Path(desc["workdir"]).stat().st_mode & 0o777) == "0o700"
        client = LabClient(desc["control_url"])
        assert client.describe() == desc
        with pytest.raises(UnknownComponent):
            lab.host_counters("WIN-LAB1")
        with pytest.raises(LabError, match="no latency relays"):
            lab.set_rtt(10)
    assert os.environ["KRB5_CONFIG"] == "/nonexistent/krb5.conf"
    assert not _port_open(desc["kdc"]["port"])
    assert not _port_open(int(desc["control_url"].rsplit(":", 1)[1]))


def test_the_control_api_is_only_reachable_on_loopback_over_http() -> None:
    with pytest.raises(ValueError):
        LabClient("http://192.0.2.1:8080")
    with pytest.raises(ValueError):
        LabClient("https://127.0.0.1:8080")


def test_unknown_squid_schemes_are_refused_before_anything_starts() -> None:
    with pytest.raises(LabError, match="unknown Squid auth"):
        LabOptions(squid_auth=("kerberos5",))
    assert LabOptions(squid_auth=("negotiate",), hosts=0).kdc is True


def test_windows_quotas_are_set_per_host_by_their_windows_names_at_start_and_through_the_control_api() -> None:
    from tests.lab.__main__ import build_parser
    from tests.lab._control import ControlError

    args = build_parser().parse_args(
        ["up", "--limit", "MaxShellsPerUser=5", "--limit", "Lab.Big:MaximumReceivedDataSizePerCommandMB=1024",
         "--limit", "maximumreceivedobjectsizemb=off"])
    options = LabOptions(hosts=1, squid_auth=(), tinyproxy=False, limits=tuple(args.limits))
    with Lab(options) as lab:
        client = LabClient(lab.describe()["control_url"])
        limits = client.get_limits("WIN-LAB1")
        assert limits["limits"]["MaxShellsPerUser"] == 5
        assert limits["limits"]["MaxEnvelopeSizekb"] == 500  # Windows' default where nothing was said
        assert limits["limits"]["MaximumReceivedObjectSizeMB"] is None
        assert limits["configurations"]["Lab.Big"]["MaximumReceivedDataSizePerCommandMB"] == 1024
        assert limits["configurations"]["Microsoft.PowerShell"]["MaximumReceivedDataSizePerCommandMB"] == 50
        described = lab.describe()["hosts"][0]
        assert "Lab.Big" in described["configurations"]
        assert described["limits"]["MaxShellsPerUser"] == 5
        assert described["configuration_limits"]["Lab.Big"]["MaximumReceivedDataSizePerCommandMB"] == 1024
        changed = client.set_limits("WIN-LAB1", MaxShellsPerUser=None, MaximumReceivedDataSizePerCommandMB=100)
        assert changed["limits"]["MaxShellsPerUser"] is None
        assert lab.hosts["WIN-LAB1"].config.max_shells_per_user == 2147483647  # Windows' "unlimited"
        assert changed == lab.get_limits("WIN-LAB1")
        with pytest.raises(ControlError) as unknown:
            client.set_limits("WIN-LAB1", MaxShells=3)
        assert unknown.value.status == 400 and "MaxShellsPerUser" in unknown.value.message
        with pytest.raises(ControlError) as service_quota:
            client.set_limits("WIN-LAB1", configuration="Lab.Big", MaxShellsPerUser=3)
        assert service_quota.value.status == 400


def test_no_limits_lifts_every_quota_and_a_service_quota_cannot_be_scoped_to_a_configuration() -> None:
    with Lab(LabOptions(hosts=1, squid_auth=(), tinyproxy=False, no_limits=True)) as lab:
        assert set(lab.get_limits("WIN-LAB1")["limits"].values()) == {None}
    with pytest.raises(LabError, match="MaxShellsPerUser is a WinRM service quota"):
        LabOptions(limits=(("Lab.Big", "MaxShellsPerUser", 3.0),))
