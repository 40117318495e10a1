#!/usr/bin/env bash
# Install the Debian packages mailops needs -- only those that are missing. Safe to re-run.
# The list is scripts/debian-packages.txt (package, then the test proving it is present).
# With arguments, only those packages of the list: scripts/install-system-deps.sh python3-venv
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
have() { command -v "$1" >/dev/null 2>&1 || [ -x "/usr/sbin/$1" ] || [ -x "/usr/bin/$1" ]; }
need=()
known=()
while read -r pkg check; do
  check="${check%%#*}"
  [ -n "$pkg" ] && [ "${pkg:0:1}" != "#" ] || continue
  known+=("$pkg")
  if [ $# -gt 0 ] && [[ " $* " != *" $pkg "* ]]; then
    continue
  fi
  eval "$check" >/dev/null 2>&1 || need+=("$pkg")
done <"$here/debian-packages.txt"
for wanted in "$@"; do
  [[ " ${known[*]} " == *" $wanted "* ]] || { echo "error: $wanted is not in scripts/debian-packages.txt" >&2; exit 2; }
done
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
