# Copyright (c) 2026 pinned.winrm contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import annotations


class ModuleDocFragment:
    # Proxy options shared by every pinned.winrm connection plugin.
    DOCUMENTATION = r"""
options:
  proxy:
    description:
    - URL of the proxy between the controller and the Windows host, V(http://proxy:3128),
      V(https://proxy:3129) (TLS to the proxy), or a SOCKS5 proxy, V(socks5://bastion:1080) (the controller
      resolves the host's name) or V(socks5h://bastion:1080) (the proxy resolves it).
    - "HTTPS endpoints go through a CONNECT tunnel; HTTP endpoints are forwarded (or tunnelled with O(proxy_tunnel)).
      A SOCKS5 proxy relays one stream to the host for either."
    - A SOCKS5 proxy takes O(proxy_user) and O(proxy_password) (RFC 1929), which need an V(https) endpoint (rule R1)
      and, since RFC 1929 sends the password in clear, O(proxy_allow_basic_over_http). SOCKS4 is not supported.
      SOCKS needs the python-socks library.
    - Credentials embedded in the URL (V(http://user:pass@proxy:3128)) are taken as O(proxy_user) and
      O(proxy_password) with O(proxy_auth=basic), as ansible.builtin.psrp users write them.
    - The proxy is used only as configured here; environment variables are ignored unless
      O(proxy_from_env) is set (rule R7).
    type: str
    vars:
    - name: ansible_psrp_proxy
  proxy_auth:
    description:
    - How to authenticate to the proxy, independently of O(auth) for the host (rule R2).
    - V(basic) and V(digest) send O(proxy_user)/O(proxy_password); V(ntlm) runs the NTLM handshake on the
      CONNECT connection; V(negotiate) and V(kerberos) use Kerberos (a ticket for C(HTTP/<proxy host>)) with
      the given credentials or the caller's credential cache.
    - Default is V(basic) when O(proxy_user) is set, otherwise no proxy authentication.
    - Proxy authentication needs an HTTPS endpoint (rule R1). V(basic) also needs an V(https://) proxy, since it
      sends the password itself, unless O(proxy_allow_basic_over_http) accepts that risk.
    type: str
    choices:
    - basic
    - digest
    - ntlm
    - negotiate
    - kerberos
    vars:
    - name: ansible_psrp_proxy_auth
    version_added: 1.0.0
  proxy_allow_basic_over_http:
    description:
    - Accept V(basic) proxy authentication (or credentials in the proxy URL) with an V(http://) proxy, which
      sends the proxy password readable (base64) on the network between the controller and the proxy.
    - Also required for a password to a SOCKS5 proxy (O(proxy) V(socks5://)), which RFC 1929 sends in clear.
    - For proxies that offer nothing else. The connection to the Windows host must still be HTTPS (rule R1),
      as PowerShell's own WinRM client requires; the host's credentials and messages stay inside TLS.
    - Every run prints a warning naming the proxy and the proxy user.
    type: bool
    default: false
    vars:
    - name: ansible_psrp_proxy_allow_basic_over_http
    version_added: 1.0.0
  proxy_user:
    description:
    - The proxy account's user name, never sent to the Windows host (rule R2).
    type: str
    vars:
    - name: ansible_psrp_proxy_user
    version_added: 1.0.0
  proxy_password:
    description:
    - The proxy account's password, never sent to the Windows host (rule R2). Use Ansible Vault.
    type: str
    vars:
    - name: ansible_psrp_proxy_password
    version_added: 1.0.0
  proxy_negotiate_hostname_override:
    description:
    - The proxy's host name in its Kerberos service principal (C(HTTP/<name>)) for O(proxy_auth=negotiate)
      or O(proxy_auth=kerberos), when O(proxy) names it by IP address or another alias.
    - Defaults to the host part of O(proxy).
    type: str
    vars:
    - name: ansible_psrp_proxy_negotiate_hostname_override
    version_added: 1.0.0
  proxy_negotiate_service:
    description:
    - The service part of the proxy's Kerberos service principal.
    type: str
    default: HTTP
    vars:
    - name: ansible_psrp_proxy_negotiate_service
    version_added: 1.0.0
  proxy_ca_cert:
    description:
    - Path to a PEM CA bundle that verifies the certificate of an V(https://) proxy.
    - Only valid with an V(https://) O(proxy); the system trust store is used when unset.
    type: path
    vars:
    - name: ansible_psrp_proxy_ca_cert
    version_added: 1.0.0
  proxy_bypass:
    description:
    - Hosts reached directly, without the proxy. Each entry is a host name (V(win01.corp.example)), a
      suffix wildcard (V(*.corp.example) or V(.corp.example)), an IP address, a CIDR range (V(10.20.0.0/16)),
      V(<local>) for names without a dot, or V(*) for every host.
    - Matched against the Windows host's address (O(remote_addr)). A comma-separated string is accepted too.
    type: list
    elements: str
    vars:
    - name: ansible_psrp_proxy_bypass
    version_added: 1.0.0
  proxy_from_env:
    description:
    - Use C(HTTPS_PROXY)/C(HTTP_PROXY)/C(ALL_PROXY) and C(NO_PROXY) from the controller's environment when
      O(proxy) is not set.
    - Off by default, like the WinRM client of Windows, so that an internet proxy configured for other tools
      never receives WinRM traffic by surprise (rule R7).
    type: bool
    default: false
    vars:
    - name: ansible_psrp_proxy_from_env
    version_added: 1.0.0
  proxy_tunnel:
    description:
    - Use a CONNECT tunnel through the proxy for V(http://) endpoints too, instead of forwarding each request.
    - The fix for proxies that do not keep connection affinity (NTLM/Kerberos over HTTP then fails there with
      an error naming the proxy; rule R5). HTTPS endpoints always use a tunnel.
    type: bool
    default: false
    vars:
    - name: ansible_psrp_proxy_tunnel
    version_added: 1.0.0
"""
