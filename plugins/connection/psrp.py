# Copyright (c) 2026 pinned.winrm contributors
# Option descriptions shared with ansible.builtin.psrp: Copyright (c) 2018 Ansible Project
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
author: pinned.winrm contributors (@pinned-winrm)
name: psrp
short_description: Run tasks over PSRP through proxies, on one pinned WinRM session per host
description:
- Runs commands and transfers files on Windows hosts over the PowerShell Remoting Protocol (WinRM), like
  P(ansible.builtin.psrp#connection), with which every C(ansible_psrp_*) variable keeps its meaning.
- Reaches hosts directly or through HTTP proxies, with proxy authentication (Basic, Digest, NTLM,
  Negotiate, Kerberos) independent of the host's, CONNECT tunnels, and bypass lists; or through SOCKS5 proxies.
- Keeps one authenticated, encrypted session per host in a local per-user daemon and reuses it for every
  task and the next playbook run (O(persist)), the way OpenSSH ControlPersist does for ssh.
- A task's C(timeout), Ctrl-C or a killed worker stop the task's command on the host and free its session.
  What the host refuses during a task (a script, put or fetch error, a WS-Management fault) fails the task as
  with P(ansible.builtin.psrp#connection); network, proxy and TLS failures make the host unreachable.
- Refuses, before sending anything, configurations that would put credentials or unencrypted WinRM
  messages on a proxy (rules R1 and R3 in the collection's security model).
version_added: 1.0.0
requirements:
- pypsrp>=0.9.0,<1.0.0 (Python library)
- pyspnego (Python library; with the C(kerberos) extra for Kerberos)
- requests-credssp (Python library, for CredSSP)
- h11 (Python library)
- python-socks (Python library, for SOCKS5 proxies)
extends_documentation_fragment:
- ansible.builtin.connection_pipelining
- pinned.winrm.proxy
options:
  remote_addr:
    description:
    - The hostname or IP address of the remote host.
    default: inventory_hostname
    type: str
    vars:
    - name: inventory_hostname
    - name: ansible_host
    - name: ansible_psrp_host
  remote_user:
    description:
    - The user to log in as.
    type: str
    vars:
    - name: ansible_user
    - name: ansible_psrp_user
    keyword:
    - name: remote_user
  remote_password:
    description:
    - Authentication password for the O(remote_user). Can be supplied as CLI option.
    - With a password, V(kerberos) (and V(negotiate) with a C(user@REALM) name) get the session's own ticket from
      the KDC into a private in-memory cache, without C(kinit) and without touching the user's cache.
    - Without a password, V(kerberos) and V(negotiate) use the tickets of the run's own credential cache
      (C(KRB5CCNAME), else the default cache of its C(krb5.conf)) or client keytab (C(KRB5_CLIENT_KTNAME));
      a pinned session is bound to that cache and its principal, so runs with other tickets get their own.
    type: str
    vars:
    - name: ansible_password
    - name: ansible_winrm_pass
    - name: ansible_winrm_password
    aliases:
    - password
  port:
    description:
    - The port for PSRP to connect on the remote target.
    - Default is V(5986) if O(protocol) is not defined or is V(https), otherwise the port is V(5985).
    type: int
    vars:
    - name: ansible_port
    - name: ansible_psrp_port
    keyword:
    - name: port
  protocol:
    description:
    - Set the protocol to use for the connection.
    - Default is V(https) if O(port) is not defined or O(port) is not V(5985).
    type: str
    choices:
    - http
    - https
    vars:
    - name: ansible_psrp_protocol
  path:
    description:
    - The URI path to connect to.
    type: str
    vars:
    - name: ansible_psrp_path
    default: 'wsman'
  auth:
    description:
    - The authentication protocol to use when authenticating the remote user.
    - The default, V(negotiate), will attempt to use Kerberos (V(kerberos)) if it is available and fall back
      to NTLM (V(ntlm)) if it isn't.
    type: str
    vars:
    - name: ansible_psrp_auth
    choices:
    - basic
    - certificate
    - negotiate
    - kerberos
    - ntlm
    - credssp
    default: negotiate
  cert_validation:
    description:
    - Whether to validate the remote server's certificate or not.
    - Set to V(ignore) to not validate any certificates.
    - O(ca_cert) can be set to the path of a PEM certificate chain to use in the validation.
    - Through a proxy, V(ignore) means the TLS to the host cannot keep the proxy out, so the rules for C(http)
      apply (R1, R3) - O(auth=basic), O(auth=certificate), O(message_encryption=never) and
      O(negotiate_send_cbt=false) are refused, and O(message_encryption=auto) encrypts WinRM messages inside
      the TLS. Unlike ansible.builtin.psrp, which accepts them.
    choices:
    - validate
    - ignore
    default: validate
    type: str
    vars:
    - name: ansible_psrp_cert_validation
  ca_cert:
    description:
    - The path to a PEM certificate chain to use when validating the server's certificate.
    - This value is ignored if O(cert_validation) is set to V(ignore).
    - When unset, the bundle named by the C(REQUESTS_CA_BUNDLE) or C(CURL_CA_BUNDLE) environment variable is
      used (also for an V(https://) proxy without O(proxy_ca_cert)), as ansible.builtin.psrp does, else the
      system trust store.
    type: path
    vars:
    - name: ansible_psrp_cert_trust_path
    - name: ansible_psrp_ca_cert
    aliases: [ cert_trust_path ]
  connection_timeout:
    description:
    - The connection timeout for making the request to the remote host (and to the proxy).
    - This is measured in seconds.
    type: int
    vars:
    - name: ansible_psrp_connection_timeout
    default: 30
  read_timeout:
    description:
    - The read timeout for receiving data from the remote host.
    - This value must always be greater than O(operation_timeout). When it is not, it is raised to
      O(operation_timeout) + 5 (a quiet command's Receive is answered only when the operation timeout runs
      out), and C(-vvv) says so.
    - This is measured in seconds.
    type: int
    vars:
    - name: ansible_psrp_read_timeout
    default: 30
  reconnection_retries:
    description:
    - The number of retries on connection errors.
    - Retried, with O(reconnection_backoff) between attempts, are a refused or timed-out connection to the host or
      the proxy, a connection reset before the request was fully sent, and HTTP 425, 429 and 503 answers (the
      host did not process the request; a C(Retry-After) of up to 60 seconds is honoured). A request whose
      outcome on the host is unknown is never resent, so no command runs twice.
    - Re-authentication after a proxy dropped the connection (rule R5) is tried at least once whatever this
      value, and only where resending is safe.
    type: int
    vars:
    - name: ansible_psrp_reconnection_retries
    default: 0
  reconnection_backoff:
    description:
    - The backoff time to use in between reconnection attempts. (First sleeps X, then sleeps 2*X, then sleeps 4*X, ...)
    - This is measured in seconds.
    type: int
    vars:
    - name: ansible_psrp_connection_backoff
    - name: ansible_psrp_reconnection_backoff
    default: 2
  message_encryption:
    description:
    - Controls the message encryption settings, this is different from TLS encryption when O(protocol) is V(https).
    - Only the auth protocols V(negotiate), V(kerberos), V(ntlm), and V(credssp) can do message encryption.
      The other authentication protocols only support encryption when V(protocol) is set to V(https).
    - V(auto) means message encryption is only used when not using TLS/HTTPS, or through a proxy with
      O(cert_validation=ignore) (where TLS proves nothing about who reads the messages).
    - V(always) is the same as V(auto) but message encryption is always used even when running over TLS/HTTPS.
    - V(never) disables any encryption checks that are in place when running over HTTP and disables any
      authentication encryption processes. It is refused when the connection goes through a proxy over
      HTTP (rule R3).
    type: str
    vars:
    - name: ansible_psrp_message_encryption
    choices:
    - auto
    - always
    - never
    default: auto
  ignore_proxy:
    description:
    - Never use proxy settings from the environment, even with O(proxy_from_env).
    - This option is ignored if O(proxy) is set.
    - Unlike ansible.builtin.psrp, environment proxies are already ignored unless O(proxy_from_env) is set.
    vars:
    - name: ansible_psrp_ignore_proxy
    type: bool
    default: false
  certificate_key_pem:
    description:
    - The local path to an X509 certificate key to use with certificate auth.
    - If the certificate key is encrypted then O(certificate_key_password) must also be set.
    type: path
    vars:
    - name: ansible_psrp_certificate_key_pem
  certificate_pem:
    description:
    - The local path to an X509 certificate to use with certificate auth.
    type: path
    vars:
    - name: ansible_psrp_certificate_pem
  certificate_key_password:
    description:
    - The password for the O(certificate_key_pem) key file if it is encrypted.
    type: str
    vars:
    - name: ansible_psrp_certificate_key_password
  credssp_auth_mechanism:
    description:
    - The sub authentication mechanism to use with CredSSP auth.
    - When V(auto), both Kerberos and NTLM is attempted with kerberos being preferred.
    type: str
    choices:
    - auto
    - kerberos
    - ntlm
    default: auto
    vars:
    - name: ansible_psrp_credssp_auth_mechanism
  credssp_disable_tlsv1_2:
    description:
    - Disables the use of TLSv1.2 on the CredSSP authentication channel.
    - This should not be set to V(yes) unless dealing with a host that does not have TLSv1.2.
    default: false
    type: bool
    vars:
    - name: ansible_psrp_credssp_disable_tlsv1_2
  credssp_minimum_version:
    description:
    - The minimum CredSSP server authentication version that will be accepted.
    - Set to V(5) to ensure the server has been patched and is not vulnerable to CVE 2018-0886.
    default: 2
    type: int
    vars:
    - name: ansible_psrp_credssp_minimum_version
  negotiate_delegate:
    description:
    - Allow the remote user the ability to delegate it's credentials to another server, i.e. credential delegation.
    - Only valid when Kerberos was the negotiated auth or was explicitly set as the authentication.
    - Ignored when NTLM was the negotiated auth.
    type: bool
    vars:
    - name: ansible_psrp_negotiate_delegate
  negotiate_hostname_override:
    description:
    - Override the remote hostname when searching for the host in the Kerberos lookup.
    - This allows Ansible to connect over IP but authenticate with the remote server using it's DNS name.
    - Only valid when Kerberos was the negotiated auth or was explicitly set as the authentication.
    - Ignored when NTLM was the negotiated auth.
    type: str
    vars:
    - name: ansible_psrp_negotiate_hostname_override
  negotiate_send_cbt:
    description:
    - Send the Channel Binding Token (CBT) structure when authenticating.
    - CBT is used to provide extra protection against Man in the Middle C(MitM) attacks by binding the outer
      transport channel to the auth channel.
    - CBT is not used when using just C(HTTP), only C(HTTPS).
    default: true
    type: bool
    vars:
    - name: ansible_psrp_negotiate_send_cbt
  negotiate_service:
    description:
    - Override the service part of the SPN used during Kerberos authentication.
    - Only valid when Kerberos was the negotiated auth or was explicitly set as the authentication.
    - Ignored when NTLM was the negotiated auth.
    default: host
    type: str
    vars:
    - name: ansible_psrp_negotiate_service
  operation_timeout:
    description:
    - Sets the WSMan timeout for each operation.
    - This is measured in seconds.
    - This should not exceed the value for O(connection_timeout).
    type: int
    vars:
    - name: ansible_psrp_operation_timeout
    default: 20
  max_envelope_size:
    description:
    - Sets the maximum size of each WSMan message sent to the remote host.
    - This is measured in bytes.
    - Defaults to C(150KiB) for compatibility with older hosts.
    type: int
    vars:
    - name: ansible_psrp_max_envelope_size
    default: 153600
  configuration_name:
    description:
    - The name of the PowerShell configuration endpoint to connect to.
    type: str
    vars:
    - name: ansible_psrp_configuration_name
    default: Microsoft.PowerShell
  no_profile:
    description:
    - Do not load the user's PowerShell profile when connecting.
    type: bool
    default: false
    vars:
    - name: ansible_psrp_no_profile
  kerberos_config:
    description:
    - Path to the C(krb5.conf) (realms, KDCs, encryption types) for this host's Kerberos, V(kerberos) or
      V(negotiate), to the host and to a proxy. The task's process and its pin daemon read this file, not the
      controller's C(/etc/krb5.conf) nor C(KRB5_CONFIG); runs naming different files use different daemons.
    - Unset, the C(KRB5_CONFIG) of the run (else C(/etc/krb5.conf)) is used, as ansible.builtin.psrp does.
    type: path
    vars:
    - name: ansible_psrp_kerberos_config
    version_added: 1.0.0
  kerberos_keytab:
    description:
    - Path to a client keytab holding the key of O(remote_user) (or of O(proxy_user) for a proxy login without a
      password). The session gets its own ticket from it, without C(kinit) and without touching any credential
      cache of the user.
    - With a password (O(remote_password)) no keytab is needed for that either - V(kerberos) (and V(negotiate) with a
      C(user@REALM) name) log on to the KDC themselves into a private in-memory cache of the session.
    type: path
    vars:
    - name: ansible_psrp_kerberos_keytab
    version_added: 1.0.0
  max_output_mb:
    description:
    - The most output (stdout and stderr together, in MiB) one command may return. Past it the command is stopped
      on the host and the task fails naming this option.
    - Output streams from the host to the task piece by piece and is held whole only in the task's own process,
      as Ansible needs it there.
    - V(0) sets no bound, as ansible.builtin.psrp, which keeps all of it in memory several times over until the
      controller runs out.
    type: int
    default: 256
    vars:
    - name: ansible_psrp_max_output_mb
    env:
    - name: ANSIBLE_PSRP_MAX_OUTPUT_MB
    ini:
    - section: pinned_winrm
      key: max_output_mb
    version_added: 1.0.0
  persist:
    description:
    - Keep the authenticated session in a local per-user daemon and reuse it for the next tasks and playbook
      runs against the same host with the same settings and credentials.
    - V(false) opens and closes a session for every task, like ansible.builtin.psrp.
    type: bool
    default: true
    vars:
    - name: ansible_psrp_persist
    env:
    - name: ANSIBLE_PSRP_PERSIST
    ini:
    - section: pinned_winrm
      key: persist
    version_added: 1.0.0
  persist_idle_timeout:
    description:
    - Seconds a pinned session may stay unused before the daemon closes it (and the daemon exits when it
      holds none).
    - When runs with different values share a session, the shorter wins; a later run never extends it.
    type: int
    default: 60
    vars:
    - name: ansible_psrp_persist_idle_timeout
    env:
    - name: ANSIBLE_PSRP_PERSIST_IDLE_TIMEOUT
    ini:
    - section: pinned_winrm
      key: persist_idle_timeout
    version_added: 1.0.0
  persist_max_age:
    description:
    - Seconds after which a pinned session is closed and opened anew, even if in use (a bound on how long
      one authentication is trusted).
    - When runs with different values share a session, the shorter wins; a later run never extends it.
    type: int
    default: 3600
    vars:
    - name: ansible_psrp_persist_max_age
    env:
    - name: ANSIBLE_PSRP_PERSIST_MAX_AGE
    ini:
    - section: pinned_winrm
      key: persist_max_age
    version_added: 1.0.0
  persist_max_tasks:
    description:
    - How many tasks a pinned session's Runspace Pool runs before it is closed and a new one opened (a new
      C(wsmprovhost.exe) process on the host), between two tasks, never during one. Each exec, put or fetch
      counts; a module task is usually one.
    - Bounds what a long-lived host process keeps that no restore can put back (loaded .NET assemblies, static
      state of compiled types). The pool is also recycled, whatever this count, before its process nears the
      host's C(MaxMemoryPerShellMB), and when a task left state it cannot put back.
    - V(0) recycles only for memory and state.
    type: int
    default: 100
    vars:
    - name: ansible_psrp_persist_max_tasks
    env:
    - name: ANSIBLE_PSRP_PERSIST_MAX_TASKS
    ini:
    - section: pinned_winrm
      key: persist_max_tasks
    version_added: 1.0.0
  persist_pool_size:
    description:
    - How many sessions the daemon may open to one host with the same settings when tasks overlap (two
      playbooks at once, or free strategy). A task waits for a free session when all are busy.
    type: int
    default: 2
    vars:
    - name: ansible_psrp_persist_pool_size
    env:
    - name: ANSIBLE_PSRP_PERSIST_POOL_SIZE
    ini:
    - section: pinned_winrm
      key: persist_pool_size
    version_added: 1.0.0
  persist_command_timeout:
    description:
    - Seconds a task may run on its session before it is stopped, its session closed and the host reported
      unreachable, with and without persistence.
    - Bounds the whole task however the host answers (a peer sending a byte at a time included); each single
      answer is bounded by O(read_timeout) anyway.
    - V(0), the default, sets no bound, like ansible.builtin.psrp. The outcome of a stopped task on the host is
      unknown.
    type: int
    default: 0
    vars:
    - name: ansible_psrp_persist_command_timeout
    env:
    - name: ANSIBLE_PSRP_PERSIST_COMMAND_TIMEOUT
    ini:
    - section: pinned_winrm
      key: persist_command_timeout
    version_added: 1.0.0
  persist_dir:
    description:
    - Directory under which the daemon's private socket directory is created (mode 0700, one per user).
    - Defaults to Ansible's persistent connection control path directory (C(~/.ansible/pc)).
    type: path
    vars:
    - name: ansible_psrp_persist_dir
    env:
    - name: ANSIBLE_PSRP_PERSIST_DIR
    ini:
    - section: pinned_winrm
      key: persist_dir
    version_added: 1.0.0
"""

EXAMPLES = r"""
# Inventory (YAML). Switch from ansible.builtin.psrp by changing ansible_connection only.

# 1. No proxy, HTTPS with NTLM, the session pinned across tasks:
all:
  vars:
    ansible_connection: pinned.winrm.psrp
    ansible_user: ansible
    ansible_password: "{{ vault_windows_password }}"
    ansible_psrp_auth: ntlm
    ansible_psrp_ca_cert: /etc/pki/corp-ca.pem

# 2. HTTP through a forward proxy; WinRM message encryption is mandatory there (rule R3):
#    ansible_psrp_protocol: http
#    ansible_psrp_proxy: http://proxy.corp.example:3128
#    ansible_psrp_auth: negotiate

# 3. HTTPS through a CONNECT tunnel with NTLM proxy authentication (Basic, Digest, Negotiate, Kerberos alike):
#    ansible_psrp_protocol: https
#    ansible_psrp_proxy: http://proxy.corp.example:3128
#    ansible_psrp_proxy_auth: ntlm
#    ansible_psrp_proxy_user: CORP\svc-proxy
#    ansible_psrp_proxy_password: "{{ vault_proxy_password }}"

# 4. Kerberos to the host through an https:// proxy that wants Kerberos too:
#    ansible_psrp_auth: kerberos
#    ansible_psrp_proxy: https://proxy.corp.example:3129
#    ansible_psrp_proxy_ca_cert: /etc/pki/corp-ca.pem
#    ansible_psrp_proxy_auth: kerberos

# 5. A proxy that breaks connection affinity (tinyproxy, some load balancers): tunnel HTTP too:
#    ansible_psrp_protocol: http
#    ansible_psrp_proxy: http://tinyproxy.corp.example:8888
#    ansible_psrp_proxy_tunnel: true

# 6. Bypass the proxy for some hosts:
#    ansible_psrp_proxy_bypass: ["*.dc.corp.example", "10.20.0.0/16", "jump01"]

# 7. Old behaviour: take HTTPS_PROXY/NO_PROXY from the environment:
#    ansible_psrp_proxy_from_env: true

# 8. Turn persistence off (a session per task, like ansible.builtin.psrp):
#    ansible_psrp_persist: false
"""

import logging
import os
import typing as t

from ansible import constants as C
from ansible.errors import AnsibleAuthenticationFailure, AnsibleConnectionFailure, AnsibleError, AnsibleFileNotFound
from ansible.module_utils.common.text.converters import to_bytes, to_text
from ansible.plugins.connection import ConnectionBase
from ansible.utils.display import Display

# The engine modules a task's worker loads with persistence on, in dependency order. Ansible's collection loader
# compiles every collection module from source in each process that imports it, and each task's worker is a new
# process: about 6 ms of compiling per task for these. Loaded through Python's own file loader instead, as
# Ansible loads this plugin file itself, they get Python's bytecode cache (__pycache__ beside them, or under
# PYTHONPYCACHEPREFIX; with PYTHONDONTWRITEBYTECODE only what `python -m compileall` wrote beforehand).
WORKER_MODULES = ("_option_definitions", "_errors", "_pin_protocol", "_pin_paths", "_runner", "_pin_client")


def import_worker_modules(names: t.Sequence[str] = WORKER_MODULES) -> None:
    """Import the engine's worker-side modules with Python's bytecode cache (a module already imported is kept).

    Where the files cannot be loaded that way, the plain imports that follow load them as usual.
    """
    import importlib
    import importlib.util
    import sys

    package_name = __name__.rsplit(".", 2)[0] + ".plugin_utils"
    directory = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "plugin_utils")
    try:
        package = importlib.import_module(package_name)
    except ImportError:
        return
    for name in names:
        full_name = f"{package_name}.{name}"
        path = os.path.join(directory, f"{name}.py")
        if full_name in sys.modules or not os.path.isfile(path):
            continue
        spec = importlib.util.spec_from_file_location(full_name, path)
        if spec is None or spec.loader is None:
            return
        module = importlib.util.module_from_spec(spec)
        sys.modules[full_name] = module
        try:
            spec.loader.exec_module(module)
        except ImportError:
            del sys.modules[full_name]
            return  # the plain import below reports it (HAS_ENGINE)
        except BaseException:
            del sys.modules[full_name]
            raise
        setattr(package, name, module)


import_worker_modules()

# Nothing else of the engine is imported here: the spec module (validation) only where the worker builds the spec
# (persistence off, -vvv), since with persistence on the pin daemon validates the options before it sends anything;
# pypsrp and the transport never in a worker that talks to the daemon.
try:
    from ansible_collections.pinned.winrm.plugins.plugin_utils._errors import (
        ConfigError,
        HostAuthError,
        HostError,
        LocalFileError,
        OutputLimitError,
        PinnedError,
        PoolBusyError,
        ReadTimeoutError,
        SessionOpenError,
        TransportError,
        UnexpectedError,
    )

    HAS_ENGINE = True
    ENGINE_IMPORT_ERROR: Exception | None = None
except ImportError as _err:  # pragma: no cover - reported from _connect()
    HAS_ENGINE = False
    ENGINE_IMPORT_ERROR = _err


if t.TYPE_CHECKING:
    from ansible_collections.pinned.winrm.plugins.plugin_utils._pin_client import SessionOptions
    from ansible_collections.pinned.winrm.plugins.plugin_utils._runner import Runner, TaskReport
    from ansible_collections.pinned.winrm.plugins.plugin_utils._spec import SessionSpec

display = Display()

# T3, in one place: which engine errors make the host unreachable and which only fail the task (first match
# wins). Unreachable stops the host's play and feeds `unreachable` handling; a failed task is what
# ignore_errors, rescue and failed_when act on, as with ansible.builtin.psrp.
FAILURE_CLASSES: tuple[tuple[type[BaseException], type[AnsibleError]], ...] = (
    (ConfigError, AnsibleError),  # bad settings: nothing was sent
    (UnexpectedError, AnsibleError),  # a bug (here or in a library), not the network: fail and show it
    (HostAuthError, AnsibleAuthenticationFailure),  # rejected credentials: never retried (account lockout)
    (SessionOpenError, AnsibleConnectionFailure),  # no Runspace Pool could be opened (builtin: unreachable)
    (HostError, AnsibleError),  # the host refused a command, put or fetch, or faulted while it ran
    (LocalFileError, AnsibleError),  # a controller file could not be read or written
    (OutputLimitError, AnsibleError),  # the output passed ansible_psrp_max_output_mb; the command was stopped
    (PoolBusyError, AnsibleError),  # every pinned session stayed busy; nothing ran
    (TransportError, AnsibleConnectionFailure),  # network, TLS, proxy, timeouts, the daemon lost mid-task
    (PinnedError, AnsibleConnectionFailure),
    (OSError, AnsibleConnectionFailure),  # a socket error the engine did not wrap is still the network's
) if HAS_ENGINE else ()


def ansible_error(exc: BaseException, host: str, *, builtin_text: str = "") -> AnsibleError:
    """The Ansible error for an engine error (FAILURE_CLASSES), led by ansible.builtin.psrp's text if it has one."""
    for engine_class, ansible_class in FAILURE_CLASSES:
        if isinstance(exc, engine_class):
            break
    else:
        # a bug, not the network: fail the task and show what happened rather than hide the host
        return AnsibleError(f"{builtin_text}pinned.winrm.psrp to {host}: unexpected {type(exc).__name__}: {exc}")
    if isinstance(exc, ConfigError):
        return AnsibleError(f"pinned.winrm.psrp: {exc}")
    return ansible_class(f"{builtin_text}pinned.winrm.psrp to {host}: {exc}")


# Options that make up the SessionSpec (every other option steers persistence or Ansible itself).
SPEC_OPTIONS = (
    "remote_addr", "remote_user", "remote_password", "port", "protocol", "path", "auth", "cert_validation",
    "ca_cert", "connection_timeout", "read_timeout", "reconnection_retries", "reconnection_backoff",
    "message_encryption", "proxy", "ignore_proxy", "certificate_key_pem", "certificate_pem",
    "certificate_key_password", "credssp_auth_mechanism", "credssp_disable_tlsv1_2", "credssp_minimum_version",
    "negotiate_delegate", "negotiate_hostname_override", "negotiate_send_cbt", "negotiate_service",
    "operation_timeout", "max_envelope_size", "configuration_name", "no_profile", "proxy_auth", "proxy_user",
    "proxy_password", "proxy_ca_cert", "proxy_bypass", "proxy_from_env", "proxy_tunnel",
    "proxy_negotiate_hostname_override", "proxy_negotiate_service", "proxy_allow_basic_over_http",
    "kerberos_config", "kerberos_keytab",
)


def spec_options(get_option: t.Callable[[str], t.Any]) -> dict[str, t.Any]:
    """The option values a SessionSpec is built from (SPEC_OPTIONS), by option name."""
    return {name: get_option(name) for name in SPEC_OPTIONS}


def build_session_spec(
    get_option: t.Callable[[str], t.Any], environ: t.Mapping[str, str], notes: list[tuple[str, str]] | None = None
) -> SessionSpec:
    """Map the plugin's options onto a SessionSpec (one table, tested row by row); adjustments go to `notes`."""
    from ansible_collections.pinned.winrm.plugins.plugin_utils._spec import build_spec

    return build_spec(spec_options(get_option), environ, notes)


def parse_encoded_cmdline(cmd: str) -> tuple[str, list[str]] | None:
    """`-EncodedCommand` (+ `-EncodedArguments`) command lines, parsed as ansible.builtin.psrp does."""
    try:
        from ansible._internal._powershell._script import parse_encoded_cmdline as _parse
    except ImportError:  # ansible-core without the helper
        pass
    else:
        parsed: tuple[str, list[str]] | None = _parse(cmd)
        return parsed
    import base64
    import shlex

    parts = shlex.split(cmd)
    if "-EncodedCommand" not in parts:
        return None
    index = parts.index("-EncodedCommand")
    if len(parts) <= index + 1:
        return None
    return base64.b64decode(parts[index + 1]).decode("utf-16-le"), []


class Connection(ConnectionBase):
    """PSRP connection with proxy support and pinned sessions."""

    transport = "pinned.winrm.psrp"
    module_implementation_preferences = (".ps1", ".exe", "")
    allow_executable = False
    has_pipelining = True
    _connected: bool  # ConnectionBase's (untyped here: ansible-core ships no type information)

    def __init__(self, *args: t.Any, **kwargs: t.Any) -> None:
        self._shell_type = "powershell"
        # what the runner opens a session for: the options (the pin daemon validates them) or a built spec
        self._spec: SessionSpec | SessionOptions | None = None
        self._runner: Runner | None = None
        super().__init__(*args, **kwargs)
        if self._shell.SHELL_FAMILY != "powershell":
            display.warning(
                "The pinned.winrm.psrp connection plugin should have the shell type of powershell and not "
                f"{self._shell.SHELL_FAMILY}. Unset ansible_shell_type or set it to powershell."
            )

    # -- set-up ------------------------------------------------------------

    def _host_label(self) -> str:
        try:
            return str(self.get_option("remote_addr"))
        except Exception:
            return "unknown"

    def _connect(self) -> Connection:
        if not HAS_ENGINE:
            raise AnsibleError(f"pinned.winrm.psrp could not load its engine: {ENGINE_IMPORT_ERROR}")
        if self._connected:
            return self
        super()._connect()
        self._spec = self._session_target()
        self._runner = self._build_runner()
        self._connected = True
        return self

    def _session_target(self, announce: bool = True) -> SessionSpec | SessionOptions:
        """What the runner opens a session for: the option values, validated by the pin daemon (persistence on),
        or a SessionSpec built and validated here (persistence off, and at -vvv, which shows it before use).

        Either way nothing reaches a host before the spec is valid, and an invalid one fails the task naming the
        setting: the pin daemon validates with the same build_spec, so the error text is the same.
        """
        self._use_kerberos_config()
        if self.get_option("persist") and display.verbosity < 3:
            from ansible_collections.pinned.winrm.plugins.plugin_utils._pin_client import SessionOptions

            return SessionOptions.from_plugin(spec_options(self.get_option), os.environ)
        spec = self._session_spec()
        if announce:
            described = spec.describe()
            display.vvv(
                f"PSRP: ESTABLISH SESSION FOR USER: {spec.username} ON {spec.endpoint} AUTH {spec.auth}"
                + (f" VIA PROXY {described['proxy']} ({'CONNECT tunnel' if spec.use_tunnel else 'forward'}"
                   f"{', proxy auth ' + str(spec.proxy.auth) if spec.proxy and spec.proxy.auth else ''})"
                   if spec.proxy else " DIRECT"),
                host=spec.host,
            )
        return spec

    def _use_kerberos_config(self) -> None:
        if self.get_option("kerberos_config"):
            # this task's process (a fork of its own) and the pin daemon it picks read the run's krb5.conf
            os.environ["KRB5_CONFIG"] = os.path.abspath(os.path.expanduser(str(self.get_option("kerberos_config"))))

    def _session_spec(self) -> SessionSpec:
        notes: list[tuple[str, str]] = []
        self._use_kerberos_config()
        try:
            spec = build_session_spec(self.get_option, os.environ, notes)
        except ConfigError as e:
            raise self._translate(e) from e
        self._show_notes(notes, spec.host)
        return spec

    def _show_notes(self, notes: t.Iterable[t.Sequence[str]], host: str) -> None:
        """What building the spec adjusted (-vvv) or must warn about (every run)."""
        for level, text in notes:
            if level == "warning":
                display.warning(f"pinned.winrm.psrp to {host}: {text}")
            else:
                display.vvv(f"PSRP: {text}", host=host)

    def _build_runner(self) -> Runner:
        command_timeout = int(self.get_option("persist_command_timeout") or 0)
        if command_timeout < 0:
            raise AnsibleError("pinned.winrm.psrp: ansible_psrp_persist_command_timeout must be 0 (no bound) or more.")
        if self.get_option("persist"):
            from ansible_collections.pinned.winrm.plugins.plugin_utils._pin_client import PinClient

            pool_size = int(self.get_option("persist_pool_size"))
            if pool_size < 1:
                raise AnsibleError("pinned.winrm.psrp: ansible_psrp_persist_pool_size must be at least 1.")
            max_tasks = int(self.get_option("persist_max_tasks"))
            if max_tasks < 0:
                raise AnsibleError("pinned.winrm.psrp: ansible_psrp_persist_max_tasks must be 0 (recycle for memory "
                                   "and state only) or more.")
            return PinClient(
                self.get_option("persist_dir"),
                connect_timeout=float(self.get_option("connection_timeout")),
                command_timeout=float(command_timeout) or None,
                pool_max=pool_size,
                max_tasks=max_tasks,
            )
        from ansible_collections.pinned.winrm.plugins.plugin_utils._local_runner import LocalRunner

        if not C.DEFAULT_DEBUG:
            # In-process, pyspnego would log raw authentication tokens at DEBUG and pypsrp message bodies (with
            # persistence on they run in the pin daemon, whose log is private and redacted). Set here, not for
            # every connection: each setLevel walks every logger, in every task's worker.
            for name in ("spnego", "pypsrp", "requests_credssp", "urllib3", "ansible_collections.pinned.winrm"):
                logging.getLogger(name).setLevel(logging.WARNING)
        return LocalRunner(command_timeout=float(command_timeout) or None)

    def _lifetime(self) -> dict[str, float]:
        return {
            "idle_timeout": float(self.get_option("persist_idle_timeout")),
            "max_age": float(self.get_option("persist_max_age")),
        }

    def _report(self, info: TaskReport) -> None:
        """-vvv: whether this task reused a session or opened one, and why a re-authentication happened."""
        host = self._spec.host if self._spec else None
        if info.get("notes"):  # what the pin daemon's validation of the options adjusted or warns about
            self._show_notes(info["notes"], str(host))
        parts = [f"PSRP: session {info.get('session', '?')}"]
        if info.get("session_id"):
            parts.append(f"id {info['session_id']}")
        if info.get("tasks"):
            parts.append(f"tasks served {info['tasks']}")
        if info.get("reauths"):
            parts.append(f"re-authentications this task: {info['reauths']}")
        reasons = info.get("reauth_reasons") or {}
        items = reasons.items() if isinstance(reasons, dict) else ((r, 1) for r in reasons)
        for reason, count in items:
            parts.append(f"re-authenticated {count}x because {reason}")
        display.vvv("; ".join(parts), host=host)
        if info.get("timing_line"):  # computed where the work happened (daemon or session); printed as is
            display.vvv(f"PSRP: timing: {info['timing_line']}", host=host)
        for kind, detail in info.get("events") or ():
            display.vvvv(f"PSRP: {kind}: {detail}", host=host)

    def _translate(self, exc: BaseException, builtin_text: str = "") -> AnsibleError:
        return ansible_error(exc, self._host_label(), builtin_text=builtin_text)

    # -- operations ----------------------------------------------------------

    def _open(self) -> tuple[SessionSpec | SessionOptions, Runner]:
        """Connect (once per task) and return what the operations run on: the session target and the runner."""
        self._connect()
        if self._spec is None or self._runner is None:  # _connect sets both or raises
            raise AnsibleError("pinned.winrm.psrp: the connection has no session target after connecting.")
        return self._spec, self._runner

    def exec_command(self, cmd: str, in_data: bytes | None = None, sudoable: bool = True) -> tuple[int, bytes, bytes]:
        super().exec_command(cmd, in_data=in_data, sudoable=sudoable)
        target, runner = self._open()
        input_lines: list[str] | None
        if enc := parse_encoded_cmdline(cmd):
            script, arguments = enc
            text = to_text(in_data, errors="surrogate_or_strict", nonstring="passthru") if in_data else None
            input_lines = text.splitlines() if text else None
        else:
            # Raw commands: propagate the native command's rc, as ansible.builtin.psrp does.
            script = f"{cmd}\nexit $LASTEXITCODE"
            arguments = []
            input_lines = to_text(in_data).splitlines() if in_data else None
            display.vvv(f"PSRP: EXEC {script}", host=target.host)
        max_output_mb = int(self.get_option("max_output_mb"))
        if max_output_mb < 0:
            raise AnsibleError("pinned.winrm.psrp: ansible_psrp_max_output_mb must be 0 (no bound) or more.")
        try:
            result, info = runner.exec(
                target,
                script,
                arguments=arguments,
                input_lines=input_lines,
                verbose_errors=display.verbosity >= 3,
                max_output=max_output_mb * 1024 * 1024 or None,
                **self._lifetime(),
            )
        except Exception as e:
            # ansible.builtin.psrp's text for a read timeout while a command runs leads ours
            raise self._translate(e, "HTTP read timeout during PSRP script execution: "
                                  if isinstance(e, ReadTimeoutError) else "") from e
        self._report(info)
        if self._play_context.no_log:
            display.vvvvv("PSRP RC/STDOUT/STDERR: <censored due to no log>", host=target.host)
        else:
            display.vvvvv(f"PSRP RC: {result.rc}", host=target.host)
            display.vvvvv(f"PSRP STDOUT: {to_text(result.stdout)}", host=target.host)
            display.vvvvv(f"PSRP STDERR: {to_text(result.stderr)}", host=target.host)
        return result.rc, result.stdout, result.stderr

    def put_file(self, in_path: str, out_path: str) -> None:
        super().put_file(in_path, out_path)
        target, runner = self._open()
        display.vvv(f"PUT {in_path} TO {out_path}", host=target.host)
        if not os.path.exists(to_bytes(in_path, errors="surrogate_or_strict")):
            raise AnsibleFileNotFound(f'file or module does not exist: "{in_path}"')
        try:
            info = runner.put_file(target, in_path, out_path, **self._lifetime())
        except Exception as e:
            raise self._translate(e) from e
        self._report(info)

    def fetch_file(self, in_path: str, out_path: str) -> None:
        super().fetch_file(in_path, out_path)
        target, runner = self._open()
        display.vvv(f"FETCH {in_path} TO {out_path}", host=target.host)
        try:
            info = runner.fetch_file(target, in_path, out_path.replace("\\", "/"), **self._lifetime())
        except Exception as e:
            # ansible.builtin.psrp's text for what the host or the controller's disk refused leads ours
            failed = isinstance(e, (HostError, LocalFileError)) and not isinstance(e, SessionOpenError)
            raise self._translate(e, f"failed to transfer file to '{out_path}': " if failed else "") from e
        self._report(info)

    def reset(self) -> None:
        """`meta: reset_connection`: close this host's pinned session(s)."""
        if self._spec is None:
            self._spec = self._session_target(announce=False)
        if self._runner is None:
            self._runner = self._build_runner()
        try:
            closed = self._runner.reset(self._spec)
        except Exception as e:
            raise self._translate(e) from e
        display.vvv(f"PSRP: reset_connection closed {closed} pinned session(s)", host=self._spec.host)

    def close(self) -> None:
        runner, self._runner = self._runner, None
        if runner is not None:
            # persistence off: closes this task's session; on: the pinned session stays with the daemon
            runner.release()
        self._connected = False

    def is_pipelining_enabled(self, wrap_async: bool = False) -> bool:
        return True


# -- configuration definitions, parsed once -----------------------------------------------------------------
# Ansible parses DOCUMENTATION, with its fragments, into the plugin's configuration definitions in every process
# that loads the plugin, and each task's worker fork is one: about 10 ms of YAML per task, as much as the rest of
# a warm pinned task costs the controller. plugin_utils/_option_definitions.py carries that parse, generated from
# DOCUMENTATION (python -m tests.unit.plugins.connection._config_definitions --write) and compared with Ansible's own
# parse by the unit tests. On the ansible-core versions it was compared on, loading the plugin registers it (less
# `choices:`, which the spec checks with its own messages), so Ansible finds the definitions present and skips the
# parse; any other version parses DOCUMENTATION as usual, and then checks the choices itself.
CONFIG_DEFINITIONS_CHECKED_ON = ("2.20", "2.21")


def register_config_definitions(name: str = __name__) -> bool:
    """Register the pre-parsed option definitions under the plugin's load name; False where Ansible parses them."""
    from ansible.release import __version__

    if ".".join(__version__.split(".")[:2]) not in CONFIG_DEFINITIONS_CHECKED_ON:
        return False
    if C.config.has_configuration_definition("connection", name):
        return False
    from ansible_collections.pinned.winrm.plugins.plugin_utils._option_definitions import for_ansible

    C.config.initialize_plugin_configuration_definitions("connection", name, for_ansible())
    return True


register_config_definitions()
