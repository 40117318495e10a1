#!/usr/bin/env bash
# Install the Debian packages mailops needs for its local mail server, benchmarks and report
# screenshots -- only those that are missing. Safe to re-run.
set -euo pipefail
need=()
have() { command -v "$1" >/dev/null 2>&1 || [ -x "/usr/sbin/$1" ] || [ -x "/usr/bin/$1" ]; }
if ! have dovecot; then
  need+=(dovecot-imapd dovecot-lmtpd)
elif [ ! -e /usr/lib/dovecot/lmtp ]; then
  need+=(dovecot-lmtpd)
fi
have mbsync || need+=(isync)              # the benchmark's peer
have chromium || need+=(chromium)         # screenshots of HTML reports in tests
have spamassassin || need+=(spamassassin) # optional: tests check no mailops-caused rule fires on sent mail
have openssl || need+=(openssl)
if [ ${#need[@]} -eq 0 ]; then
  echo "system packages: all present"
  exit 0
fi
if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null; then
  echo "error: missing Debian packages: ${need[*]} (install them as root: apt-get install -y ${need[*]})" >&2
  exit 1
fi
echo "installing Debian packages: ${need[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
# The package may start a system dovecot on *:143 where policy-rc.d allows it; ours uses its own
# ports and directory, so leave it alone.
echo "system packages installed"
