"""DOCUMENTATION is the one source of the options' defaults and valid values: the spec agrees with it.

The spec (_spec.build_spec) reads defaults and choices from the parsed documentation the collection carries
(_option_definitions); these tests hold it to Ansible's own parse of DOCUMENTATION, what ansible-doc shows.
"""

from __future__ import annotations

import io
import pathlib
import re
import typing as t

import pytest
from ansible.playbook.play_context import PlayContext
from ansible.plugins.loader import connection_loader

from ansible_collections.pinned.winrm.plugins.connection import psrp
from ansible_collections.pinned.winrm.plugins.plugin_utils._errors import ConfigError
from ansible_collections.pinned.winrm.plugins.plugin_utils._spec import SessionSpec, build_spec
from tests.unit.plugins.connection import _config_definitions as defs

pytestmark = pytest.mark.compat

DOCUMENTED = defs.parsed_by_ansible()
WITH_CHOICES = sorted(name for name, option in DOCUMENTED.items() if option.get("choices"))
# what else a value needs before the spec reaches the option's own check
CONTEXT: dict[str, dict[str, t.Any]] = {
    "proxy_auth": {"proxy": "https://proxy:3129", "proxy_user": "pu", "proxy_password": "pp"},
}


def _plugin_options(variables: dict[str, t.Any] | None = None) -> dict[str, t.Any]:
    """The spec's options as the plugin reads them through Ansible (DOCUMENTATION's defaults applied by Ansible)."""
    conn = connection_loader.get("pinned.winrm.psrp", PlayContext(), io.StringIO())
    conn.set_options(var_options={"ansible_host": "win01", **(variables or {})})
    return psrp.spec_options(conn.get_option)


def test_every_documented_option_is_the_specs_or_read_by_the_plugin_itself() -> None:
    assert set(psrp.SPEC_OPTIONS) <= set(DOCUMENTED)
    plugin_source = pathlib.Path(psrp.__file__).read_text(encoding="utf-8")
    read_by_plugin = set(re.findall(r'get_option\("([a-z0-9_]+)"\)', plugin_source))
    unaccounted = set(DOCUMENTED) - set(psrp.SPEC_OPTIONS) - read_by_plugin - {"pipelining"}  # Ansible reads it
    assert unaccounted == set(), f"documented options nothing reads: {sorted(unaccounted)}"


def test_the_carried_definitions_are_the_documentation_with_its_choices() -> None:
    from ansible_collections.pinned.winrm.plugins.plugin_utils import _option_definitions

    assert _option_definitions.definitions() == DOCUMENTED
    assert {"auth", "protocol", "cert_validation", "message_encryption", "credssp_auth_mechanism",
            "proxy_auth"} <= set(WITH_CHOICES)


def test_an_option_left_out_gets_the_documented_default_in_the_spec() -> None:
    # Ansible fills every unset option from DOCUMENTATION; the spec fills an absent one itself: the same spec
    # (a password keeps the run's own Kerberos tickets out of it)
    from_ansible = build_spec(_plugin_options({"ansible_user": "u", "ansible_password": "p"}), {})
    from_spec_alone = build_spec({"remote_addr": "win01", "remote_user": "u", "remote_password": "p"}, {})
    assert from_spec_alone == from_ansible
    # and a spec built directly takes the same values for every field it is not given
    direct = SessionSpec(scheme=from_ansible.scheme, host=from_ansible.host, port=from_ansible.port,
                         username="u", password="p")
    assert direct == from_ansible


@pytest.mark.parametrize("name", WITH_CHOICES)
def test_the_spec_accepts_exactly_the_documented_choices_naming_the_variable(name: str) -> None:
    documented = [str(c) for c in DOCUMENTED[name]["choices"]]
    variable = f"ansible_psrp_{name}"
    for value in documented + [value.upper() for value in documented]:  # any case, as before they were documented
        try:
            build_spec({"remote_addr": "win01", **CONTEXT.get(name, {}), name: value}, {})
        except ConfigError as e:  # a rule spanning options may refuse the combination, never the value itself
            assert "must be one of" not in str(e), (value, str(e))
    with pytest.raises(ConfigError) as err:
        build_spec({"remote_addr": "win01", **CONTEXT.get(name, {}), name: "not-a-choice"}, {})
    assert str(err.value).startswith(f"{variable}: must be one of {', '.join(documented)}, got 'not-a-choice'")


@pytest.mark.parametrize("name", WITH_CHOICES)
def test_through_ansible_a_bad_choice_is_refused_by_the_spec_naming_the_variable(name: str) -> None:
    # Ansible's config manager does not check the choices (the plugin registers them without): the spec's
    # message, naming the inventory variable and the valid values, is the one the user sees
    options = _plugin_options({**{f"ansible_psrp_{k}": v for k, v in CONTEXT.get(name, {}).items()},
                               f"ansible_psrp_{name}": "not-a-choice"})
    with pytest.raises(ConfigError, match=f"^ansible_psrp_{name}: must be one of"):
        build_spec(options, {})
