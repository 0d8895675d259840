#!/usr/bin/env bash
# Installs everything the tests need, then runs the whole suite: lint, types and pytest.
# Usage: scripts/test.sh [pytest args...]   (CI runs it through .ci/run)
set -euo pipefail
cd "$(dirname "$0")/.."

# Real peers the tests talk to: dig (bind9-dnsutils), nsd as an authoritative upstream,
# unbound and dnsmasq for export checks and the benchmark, dnsperf, prometheus + promtool,
# nftables and iproute2 for the egress tests, systemd for systemd-analyze (deploy/systemd),
# publicsuffix for `dnsfilter lists lint`, openssl for the DNS-over-TLS tests' certificates
# (unbound serves DoT with them), bind9 for named, which loads the RPZ export and RPZ lists
# in tests/integration/test_lists_peers.py; groff-base and man-db render docs/dnsfilter.8
# (tests/docs/test_manpage.py).
DEBIAN_PACKAGES=(bind9-dnsutils nsd unbound dnsmasq dnsperf prometheus nftables iproute2 tcpdump systemd
  publicsuffix openssl bind9 groff-base man-db)

missing=()
for pkg in "${DEBIAN_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if ((${#missing[@]})); then
  echo "== installing Debian packages: ${missing[*]}"
  SUDO=""
  if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null || { echo "need root or sudo to install: ${missing[*]}" >&2; exit 1; }
    SUDO="sudo"
  fi
  # Keep the packages' own daemons (nsd, unbound, dnsmasq, prometheus) from starting on
  # install: the tests start their own instances on loopback with their own configs.
  added_policy=""
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' | $SUDO tee /usr/sbin/policy-rc.d >/dev/null
    $SUDO chmod +x /usr/sbin/policy-rc.d
    added_policy=1
  fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends \
    "${missing[@]}" >/dev/null
  [ -n "$added_policy" ] && $SUDO rm -f /usr/sbin/policy-rc.d
fi

PYTHON="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  echo "== creating .venv"
  "$PYTHON" -m venv .venv
fi
echo "== installing dnsfilter with its dev dependencies"
.venv/bin/python -m pip install -q --disable-pip-version-check -e '.[dev]'

echo "== ruff"
.venv/bin/ruff check .
.venv/bin/ruff format --check .
echo "== mypy --strict"
.venv/bin/mypy
# pytest's last line is tests/skipguard.py's "skipped: N (reason: n, ...) — this run did not
# prove: ..." (or "skipped: 0"); with CI set every would-be skip fails the run instead.
# Twice: on the compiled datapath (built by the install above when a C compiler is present)
# and with DNSFILTER_PURE=1 on the pure-Python one it accelerates, which stays the reference.
for datapath in compiled pure; do
  echo "== pytest ($datapath datapath)"
  status=0
  if [ "$datapath" = pure ]; then
    DNSFILTER_PURE=1 .venv/bin/pytest "$@" || status=$?
  else
    .venv/bin/pytest "$@" || status=$?
  fi
  if [ "$status" -eq 5 ]; then
    echo "pytest collected no tests: that is a failure here" >&2
    exit 1
  fi
  [ "$status" -eq 0 ] || exit "$status"
done
