#!/usr/bin/env bash
# Install the Debian/Ubuntu packages the lab needs (real proxies and a throwaway Kerberos realm).
# Idempotent: installs only what is missing, and does nothing when all is present.
# Run as root (make system-deps, CI). As another user it prints what to install and exits 1.
#
#   squid-openssl      Squid with TLS (the lab's https:// proxy port), its basic/digest helpers
#   tinyproxy          a forward proxy that keeps no connection affinity
#   microsocks         a SOCKS5 server, with and without RFC 1929 user name and password (test-only: users need none)
#   krb5-kdc krb5-admin-server krb5-user libkrb5-dev   the lab's MIT KDC, kinit, and headers for gssapi/krb5 wheels
#   openssl            hashes for Squid's htpasswd file (Python 3.13 has no crypt module)
#   python3            the system python Squid's unprivileged helper bridge runs under when the lab runs as root
set -euo pipefail

packages=(squid-openssl tinyproxy microsocks krb5-kdc krb5-admin-server krb5-user libkrb5-dev openssl python3)
# services these packages start on install; the lab starts its own instances on free loopback ports
services=(squid tinyproxy krb5-kdc krb5-admin-server)

if ! command -v dpkg-query >/dev/null 2>&1; then
    echo "install-system-packages.sh: not a Debian/Ubuntu system; install the equivalents of: ${packages[*]}" >&2
    echo "(see bindep.txt for RPM names of the Kerberos ones)" >&2
    exit 1
fi

missing=()
for pkg in "${packages[@]}"; do
    status=$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null || true)
    [[ "$status" == "install ok installed" ]] || missing+=("$pkg")
done

if [[ ${#missing[@]} -eq 0 ]]; then
    echo "lab system packages: all present (${packages[*]})"
    exit 0
fi

if [[ $(id -u) -ne 0 ]]; then
    echo "lab system packages missing: ${missing[*]}" >&2
    echo "install them as root:" >&2
    echo "  sudo apt-get update && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends ${missing[*]}" >&2
    exit 1
fi

export DEBIAN_FRONTEND=noninteractive
# krb5-config asks for a default realm and KDC names; the lab writes its own krb5.conf, so leave them empty
echo "krb5-config krb5-config/default_realm string" | debconf-set-selections 2>/dev/null || true
echo "krb5-config krb5-config/add_servers_realm string" | debconf-set-selections 2>/dev/null || true
echo "installing lab system packages: ${missing[*]}"
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}"

# The packages' own daemons are not the lab's: stop them where a service manager runs them.
if command -v systemctl >/dev/null 2>&1 && [[ -d /run/systemd/system ]]; then
    for svc in "${services[@]}"; do
        systemctl disable --now "$svc" >/dev/null 2>&1 || true
    done
fi
echo "lab system packages installed"
