#!/usr/bin/env bash
# Installs the Debian packages pgmux needs to build, test, run and benchmark — only the missing
# ones, quietly, so it is cheap to call before every make target.
#   scripts/deps.sh [extra packages...]
set -euo pipefail
# libc-ares-dev: asynchronous DNS. libpam0g-dev, libldap-dev, libkrb5-dev: auth_type pam, ldap and
# hba gss; libpam-pwdfile, slapd and
# the krb5 packages: the PAM, LDAP and GSSAPI tests' password module, directory server and KDC;
# php-cli, php-pgsql, ruby-pg, libdbd-pg-perl, golang-go, golang-github-jackc-pgx-v4-dev: the
# driver tests of transaction pooling (DriverTests).
want=(libev-dev libssl-dev libpq-dev libc-ares-dev libpam0g-dev libldap-dev libkrb5-dev postgresql postgresql-contrib
      openssl libpam-pwdfile slapd krb5-kdc krb5-admin-server krb5-user php-cli php-pgsql ruby-pg
      libdbd-pg-perl golang-go golang-github-jackc-pgx-v4-dev "$@")
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
# The LDAP and GSSAPI tests start their own slapd and KDC from temp dirs; Debian's services would
# serve an empty directory on port 389, or fail for want of a realm, for nothing.
for service in slapd krb5-kdc krb5-admin-server; do
  if [[ " ${missing[*]} " == *" $service "* ]]; then
    { systemctl disable --now "$service" || { service "$service" stop; update-rc.d "$service" disable; }; } >/dev/null 2>&1 || true
  fi
done
