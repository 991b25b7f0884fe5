#!/usr/bin/env bash
# One entry point for setting up pcipass on a fresh Debian machine.
#   scripts/setup.sh run   install pcipass in .venv, then run the main job on this host and on
#                          the bundled example host (examples/hpe-gen9-a2.tar.xz)
#   scripts/setup.sh test  install everything the tests need (Debian packages as root, Python
#                          packages in .venv), then the static gates (ruff, mypy) and the whole test
#                          suite, real-kernel tier included
# Extra arguments after `test` go to pytest. The virtual environment is made by the first `python3` on PATH, in
# .venv (or $PCIPASS_VENV: CI keeps a second one for another python3).
set -euo pipefail
cd "$(dirname "$0")/.."
mode=${1:-}
shift || true
VENV=${PCIPASS_VENV:-.venv}

RUN_DEBS=(python3-venv python3-pip pci.ids)
# qemu/busybox/kmod/pciutils: the real-kernel tier; libvirt-dev + pkg-config: building libvirt-python;
# libvirt-daemon*: the end-to-end scenarios run a real libvirtd inside the guest; make, gcc-12, xz-utils: the
# sample mdev driver mtty built for the tier's kernel (tests/realkernel/mtty.py); strace: the guest test that
# proves status opens nothing under /dev/vfio.
TEST_DEBS=(qemu-system-x86 busybox-static kmod pciutils libvirt-dev pkg-config libxml2-utils
           libvirt-daemon-system libvirt-daemon-driver-qemu libvirt-clients iproute2 gcc python3-dev
           make gcc-12 xz-utils strace)

apt_install() {
    local missing=()
    for p in "$@"; do dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p"); done
    [ ${#missing[@]} -eq 0 ] && return 0
    if [ "$(id -u)" -ne 0 ]; then
        echo "setup: need root to install Debian packages: ${missing[*]}" >&2
        exit 4
    fi
    echo "setup: apt-get install ${missing[*]}" >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
}

venv() {
    if [ ! -x "$VENV/bin/python" ]; then
        python3 -m venv "$VENV"
    fi
    "$VENV/bin/python" -m pip install -q --upgrade pip >&2
    "$VENV/bin/python" -m pip install -q -e ".$1" >&2
}

case "$mode" in
run)
    apt_install "${RUN_DEBS[@]}"
    venv ""
    echo "== pcipass check-iommu (this host)"
    "$VENV/bin/pcipass" check-iommu || true
    echo "== pcipass list (this host)"
    "$VENV/bin/pcipass" list
    echo "== pcipass --root examples/hpe-gen9-a2.tar.xz list --tree (bundled example host)"
    "$VENV/bin/pcipass" --root examples/hpe-gen9-a2.tar.xz list --tree
    echo "== pcipass --root examples/hpe-gen9-a2.tar.xz check-iommu"
    "$VENV/bin/pcipass" --root examples/hpe-gen9-a2.tar.xz check-iommu || true
    ;;
test)
    apt_install "${RUN_DEBS[@]}" "${TEST_DEBS[@]}"
    venv "[test,libvirt]"
    "$VENV/bin/python" scripts/gen_docs.py --check
    # The static gates (configured in pyproject.toml) before the tests.
    "$VENV/bin/ruff" check .
    "$VENV/bin/ruff" format --check .
    "$VENV/bin/mypy"
    exec "$VENV/bin/python" -m pytest "$@"
    ;;
*)
    echo "usage: scripts/setup.sh run|test [pytest args...]" >&2
    exit 2
    ;;
esac
