#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# Installs exactly the Debian 12 packages migd's build, demo and tests need; does nothing when all are there.
set -euo pipefail

packages=(
    # build
    gcc meson ninja-build pkg-config
    libsystemd-dev libjson-c-dev libglib2.0-dev libgnutls28-dev libvirt-dev
    # tests: a real dbus-daemon, busctl and systemd-analyze, gdbus, certtool, setpriv
    dbus-daemon systemd libglib2.0-bin gnutls-bin util-linux python3
    # migctl -H is tested against a real sshd on loopback
    openssh-server openssh-client
    # the vm suite: QEMU, the kernel source and what building a kernel takes (tests/vm/build-kernel.sh)
    qemu-system-x86 linux-source-6.12 bc bison flex libelf-dev libssl-dev cpio xz-utils make
    # the libvirt hook and suite: libxml2, two real libvirtd with the QEMU driver, virsh, virt-xml-validate
    libxml2-dev libxml2-utils libvirt-daemon libvirt-daemon-driver-qemu libvirt-clients
)

missing=()
for p in "${packages[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q '^install ok installed$'; then
        missing+=("$p")
    fi
done
[ ${#missing[@]} -eq 0 ] && exit 0

sudo=()
if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null || { echo "install-deps: not root and no sudo; install: ${missing[*]}" >&2; exit 1; }
    sudo=(sudo)
fi
echo "install-deps: installing ${missing[*]}" >&2
"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq
"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
