"""The simulated host's OS state: the service table's SCM rules, accounts, scheduled restarts and reboots."""

from __future__ import annotations

import threading

import pytest

from tests.lab import _machine as m


@pytest.fixture
def machine() -> m.Machine:
    mach = m.Machine("WIN-TEST", {"ansible": "Pw-1", "labuser": "Pw-2"}, admins=("ansible",))
    yield mach
    mach.close()


# -- services -----------------------------------------------------------------------------------

def test_automatic_services_run_after_boot_and_manual_ones_do_not(machine: m.Machine) -> None:
    services = machine.services
    assert services.get("Spooler").state == "running"
    assert services.get("WinRM").state == "running"
    assert services.get("W32Time").state == "stopped"
    # WinRM depends on the HTTP driver (demand start): booting WinRM started it
    assert services.get("HTTP").state == "running"


def test_a_service_is_found_by_display_name_case_insensitively(machine: m.Machine) -> None:
    assert machine.services.get("print spooler").name == "Spooler"
    assert machine.services.get("SPOOLER").display_name == "Print Spooler"
    with pytest.raises(m.Win32Error) as e:
        machine.services.get("NoSuchService")
    assert e.value.code == m.ERROR_SERVICE_DOES_NOT_EXIST


def test_starting_a_service_starts_its_stopped_dependencies_first(machine: m.Machine) -> None:
    services = machine.services
    services.stop("RpcSs", with_dependents=True)
    started = services.start("BITS")
    assert started == ["RpcSs", "BITS"]  # RpcEptMapper and DcomLaunch were still running
    assert services.get("RpcSs").state == "running"


def test_starting_a_disabled_service_or_one_whose_dependency_is_disabled_fails(machine: m.Machine) -> None:
    services = machine.services
    with pytest.raises(m.Win32Error) as e:
        services.start("Fax")
    assert e.value.code == m.ERROR_SERVICE_DISABLED
    services.configure("W32Time", dependencies=["Fax"])
    with pytest.raises(m.Win32Error) as e:
        services.start("W32Time")
    assert e.value.code == m.ERROR_SERVICE_DEPENDENCY_FAIL
    assert services.get("W32Time").state == "stopped"


def test_starting_a_running_service_and_stopping_a_stopped_one_are_refused(machine: m.Machine) -> None:
    with pytest.raises(m.Win32Error) as e:
        machine.services.start("Spooler")
    assert e.value.code == m.ERROR_SERVICE_ALREADY_RUNNING
    with pytest.raises(m.Win32Error) as e:
        machine.services.stop("W32Time")
    assert e.value.code == m.ERROR_SERVICE_NOT_ACTIVE


def test_stopping_a_service_with_running_dependents_needs_them_stopped_too(machine: m.Machine) -> None:
    services = machine.services
    with pytest.raises(m.Win32Error) as e:
        services.stop("RpcSs")
    assert e.value.code == m.ERROR_DEPENDENT_SERVICES_RUNNING
    assert services.get("RpcSs").state == "running"
    stopped = services.stop("RpcSs", with_dependents=True)
    assert stopped[-1] == "RpcSs"
    assert {"WinRM", "Spooler", "SamSS", "LanmanServer"} <= set(stopped)
    assert stopped.index("LanmanServer") < stopped.index("SamSS")  # outermost dependents stop first


def test_only_services_that_accept_it_can_be_paused(machine: m.Machine) -> None:
    services = machine.services
    with pytest.raises(m.Win32Error) as e:
        services.pause("Spooler")
    assert e.value.code == m.ERROR_INVALID_SERVICE_CONTROL
    services.pause("LanmanServer")
    assert services.get("LanmanServer").state == "paused"
    services.resume("LanmanServer")
    assert services.get("LanmanServer").state == "running"


def test_a_dependency_cycle_and_a_duplicate_display_name_are_refused(machine: m.Machine) -> None:
    services = machine.services
    with pytest.raises(m.Win32Error) as e:
        services.configure("RpcEptMapper", dependencies=["WinRM"])
    assert e.value.code == m.ERROR_CIRCULAR_DEPENDENCY
    with pytest.raises(m.Win32Error) as e:
        services.configure("W32Time", display_name="print spooler")
    assert e.value.code == m.ERROR_DUPLICATE_SERVICE_NAME
    with pytest.raises(ValueError, match="start_mode"):
        services.configure("W32Time", start_mode="sometimes")


def test_a_running_service_deleted_is_marked_and_gone_after_the_next_boot(machine: m.Machine) -> None:
    services = machine.services
    services.create("LabAgent", r"C:\lab\agent.exe", display_name="Lab Agent", start_mode="auto")
    services.start("LabAgent")
    services.delete("LabAgent")
    assert services.get("LabAgent").marked_for_delete
    with pytest.raises(m.Win32Error) as e:
        services.start("LabAgent")
    assert e.value.code == m.ERROR_SERVICE_MARKED_FOR_DELETE
    machine.reboot(down_s=None)
    machine.boot()
    assert services.find("LabAgent") is None


def test_the_snapshot_lists_each_services_dependents(machine: m.Machine) -> None:
    rpc = machine.services.snapshot("rpcss")
    assert {"WinRM", "Spooler", "BITS"} <= set(rpc["depended_by"])
    assert rpc["dependencies"] == ["RpcEptMapper", "DcomLaunch"]


# -- accounts -----------------------------------------------------------------------------------

def test_accounts_log_on_with_their_own_password_in_any_name_form(machine: m.Machine) -> None:
    assert machine.logon("labuser", "Pw-2").name == "labuser"
    assert machine.logon(r".\LABUSER", "Pw-2").name == "labuser"
    assert machine.logon(r"WIN-TEST\labuser", "Pw-2").name == "labuser"
    with pytest.raises(PermissionError, match="user name or password is incorrect"):
        machine.logon("labuser", "Pw-1")
    with pytest.raises(PermissionError):
        machine.logon(r"OTHERDOMAIN\labuser", "Pw-2")  # a local account is not another domain's
    assert machine.logon("SYSTEM", None).sid == m.SYSTEM_SID


def test_accounts_have_distinct_sids_of_the_machine_domain_and_their_groups(machine: m.Machine) -> None:
    ansible, labuser = machine.account("ansible"), machine.account("labuser")
    assert ansible is not None and labuser is not None
    prefix = m.machine_sid("WIN-TEST")
    assert ansible.sid.startswith(prefix + "-") and labuser.sid.startswith(prefix + "-")
    assert ansible.sid != labuser.sid
    assert ansible.is_admin and not labuser.is_admin
    assert labuser.profile_path() == r"C:\Users\labuser"


# -- power --------------------------------------------------------------------------------------

def test_a_second_scheduled_shutdown_is_refused_and_abort_cancels_the_first(machine: m.Machine) -> None:
    assert machine.schedule_shutdown(600, restart=True, comment="patch") == 0
    assert machine.power == "shutdown_scheduled"
    assert machine.schedule_shutdown(600, restart=True) == m.ERROR_SHUTDOWN_IS_SCHEDULED
    assert machine.abort_shutdown() == 0
    assert machine.power == "running"
    assert machine.abort_shutdown() == m.ERROR_NO_SHUTDOWN_IN_PROGRESS
    assert machine.boots == 1


def test_a_reboot_tells_listeners_down_then_up_and_the_boot_time_changes(machine: m.Machine) -> None:
    events: list[str] = []
    machine.on_power(events.append)
    before = machine.describe()
    machine.services.start("W32Time")
    machine.reboot(down_s=None)  # held down until boot(): no timing involved
    assert events == ["down"]
    assert machine.power == "down"
    assert m.LOGON_UI_SESSION_KEY.lower() not in machine.registry_keys
    assert machine.services.get("Spooler").state == "stopped"
    machine.boot()
    after = machine.describe()
    assert events == ["down", "up"]
    assert after["boots"] == before["boots"] + 1
    assert after["boot_filetime"] > before["boot_filetime"]
    assert machine.services.get("Spooler").state == "running"
    assert machine.services.get("W32Time").state == "stopped"  # a manual service does not survive a reboot
    assert m.LOGON_UI_SESSION_KEY.lower() in machine.registry_keys
    assert after["last_shutdown"]["restart"] is True


def test_a_scheduled_restart_goes_down_by_itself_and_refuses_another_meanwhile(machine: m.Machine) -> None:
    down = threading.Event()
    release = threading.Event()

    def listener(event: str) -> None:
        if event == "down":
            down.set()
            release.wait(10)  # hold the machine mid-shutdown

    machine.on_power(listener)
    machine.reboot_down_s = 3600  # stays down until boot() below
    assert machine.schedule_shutdown(0, restart=True, comment="now") == 0
    assert down.wait(10)
    assert machine.schedule_shutdown(5, restart=True) == m.ERROR_SHUTDOWN_IN_PROGRESS
    assert machine.abort_shutdown() == m.ERROR_SHUTDOWN_IN_PROGRESS
    release.set()
    assert machine.wait_for_power("down", 10)
    machine.boot()
    assert machine.power == "running" and machine.boots == 2


def test_the_filetime_of_a_known_moment_matches_windows() -> None:
    import datetime as dt

    # [DateTime]::new(2020,1,1,0,0,0,'Utc').ToFileTime() on Windows
    assert m.filetime(dt.datetime(2020, 1, 1, tzinfo=dt.timezone.utc)) == 132223104000000000
