#!/usr/bin/env bash
# Installs the Debian packages pgmux needs to build, test, run and benchmark — only the missing
# ones, quietly, so it is cheap to call before every make target.
#   scripts/deps.sh [extra packages...]
set -euo pipefail
# libpam0g-dev, libldap-dev: auth_type pam and ldap; libpam-pwdfile and slapd: the PAM and LDAP
# tests' password module and directory server.
want=(libev-dev libssl-dev libpq-dev libpam0g-dev libldap-dev postgresql postgresql-contrib openssl
      libpam-pwdfile slapd "$@")
missing=()
for p in "${want[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" != 0 ]; then
  echo "missing packages: ${missing[*]} (run as root, or: sudo apt-get install ${missing[*]})" >&2
  exit 1
fi
echo "installing: ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >/dev/null
# Debian's postgresql package would start a system cluster; pgmux's tests start their own.
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
if [[ " ${missing[*]} " == *" slapd "* ]]; then
  # The LDAP tests start their own slapd from a temp dir; Debian's would serve an empty
  # directory on port 389 for nothing.
  { systemctl disable --now slapd || { service slapd stop; update-rc.d slapd disable; }; } >/dev/null 2>&1 || true
fi
