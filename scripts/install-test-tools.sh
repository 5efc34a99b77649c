#!/usr/bin/env bash
# Install the command-line tools tests/deploy needs, when they are missing:
#   docker-compose  (Debian's compose v1; validates docker-compose.yml with `config`, no engine)
#   promtool        (from Debian's `prometheus` package; validates deploy/prometheus/*.yml)
#   prometheus      (the same package; tests/deploy/test_live_stack.py scrapes a live stack)
#   amtool          (from Debian's `prometheus-alertmanager`; validates deploy/alertmanager)
#   chromium        (Debian's Chromium; the console's browser tests drive it with Playwright)
#
# Idempotent: does nothing when all of them are on PATH. Never fails the build: when it cannot
# install (not Debian, not root and no passwordless sudo, no network) it prints why and
# exits 0; the tests that need the tool then skip, naming it.
# The prometheus package is installed without starting its daemon (policy-rc.d), and any
# prometheus process that appears during the install is stopped, so nothing is left on :9090.
set -u

need=()
command -v docker-compose >/dev/null 2>&1 || need+=(docker-compose)
{ command -v promtool && command -v prometheus; } >/dev/null 2>&1 || need+=(prometheus)
command -v amtool >/dev/null 2>&1 || need+=(prometheus-alertmanager)
command -v chromium >/dev/null 2>&1 || need+=(chromium)
[ "${#need[@]}" -eq 0 ] && exit 0

say() { echo "install-test-tools: $*" >&2; }

if ! command -v apt-get >/dev/null 2>&1; then
    say "cannot install ${need[*]}: no apt-get on this machine; the deploy tests that need them will skip"
    exit 0
fi

SUDO=()
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1 && sudo -n true >/dev/null 2>&1; then
        SUDO=(sudo -n)
    else
        say "cannot install ${need[*]}: not root and no passwordless sudo; the deploy tests that need them will skip"
        exit 0
    fi
fi

POLICY=/usr/sbin/policy-rc.d
made_policy=0
cleanup() {
    if [ "$made_policy" -eq 1 ]; then
        "${SUDO[@]}" rm -f "$POLICY"
    fi
}
trap cleanup EXIT

# Package maintainer scripts must not start daemons (prometheus would listen on :9090).
if [ ! -e "$POLICY" ]; then
    if printf '#!/bin/sh\nexit 101\n' | "${SUDO[@]}" tee "$POLICY" >/dev/null \
        && "${SUDO[@]}" chmod 0755 "$POLICY"; then
        made_policy=1
    fi
fi

before_pids=" $(pgrep -x prometheus 2>/dev/null | tr '\n' ' ') $(pgrep -f '^/usr/bin/prometheus-alertmanager' 2>/dev/null | tr '\n' ' ') "
log=$(mktemp)
apt_opts=(-y --no-install-recommends -o DPkg::Lock::Timeout=300 -o Dpkg::Use-Pty=0)

say "installing ${need[*]} with apt-get (needed by tests/deploy)"
export DEBIAN_FRONTEND=noninteractive
if ! "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install "${apt_opts[@]}" "${need[@]}" >"$log" 2>&1; then
    say "first install attempt failed; running apt-get update and retrying"
    if ! { "${SUDO[@]}" apt-get update -o DPkg::Lock::Timeout=300 >>"$log" 2>&1 \
        && "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install "${apt_opts[@]}" "${need[@]}" >>"$log" 2>&1; }; then
        say "could not install ${need[*]}; the deploy tests that need them will skip. apt-get said:"
        tail -n 15 "$log" >&2
        rm -f "$log"
        exit 0
    fi
fi
rm -f "$log"

# Stop any prometheus or alertmanager daemon the install started despite the policy (by pid,
# only new ones).
for pid in $(pgrep -x prometheus 2>/dev/null) $(pgrep -f '^/usr/bin/prometheus-alertmanager' 2>/dev/null); do
    case "$before_pids" in
        *" $pid "*) ;;
        *) say "stopping prometheus daemon $pid started by the package install"
           "${SUDO[@]}" kill "$pid" 2>/dev/null || true ;;
    esac
done

for tool in docker-compose promtool prometheus amtool; do
    if command -v "$tool" >/dev/null 2>&1; then
        say "$tool: $(command -v "$tool")"
    else
        say "$tool still missing after install; the deploy tests that need it will skip"
    fi
done
exit 0
