#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# Builds (once) the VM tier's kernel from Debian's linux-source-6.12 and prints the cached bzImage's path.
#
# The cache lives outside the checkout, keyed by the config fragment's hash and the source package's
# version: /var/cache/migd-test-kernel/<key>/bzImage (or $XDG_CACHE_HOME/migd-test-kernel when /var/cache
# is not writable; MIGD_VM_KERNEL_CACHE overrides). Exit 77 when no kernel source is installed.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
fragment=$here/kernel.config
tarball=${MIGD_VM_KERNEL_SOURCE:-/usr/src/linux-source-6.12.tar.xz}
# Bump when the recipe below changes in a way the fragment does not show.
recipe=1

if [ ! -r "$tarball" ]; then
    echo "build-kernel: $tarball not found (apt-get install linux-source-6.12)" >&2
    exit 77
fi

pkgver=$(dpkg-query -W -f='${Version}' linux-source-6.12 2>/dev/null || stat -c %Y "$tarball")
key=$( { cat "$fragment"; echo "recipe=$recipe pkg=$pkgver"; } | sha256sum | cut -c1-16)

if [ -n "${MIGD_VM_KERNEL_CACHE:-}" ]; then
    cache=$MIGD_VM_KERNEL_CACHE
elif mkdir -p /var/cache/migd-test-kernel 2>/dev/null && [ -w /var/cache/migd-test-kernel ]; then
    cache=/var/cache/migd-test-kernel
else
    cache=${XDG_CACHE_HOME:-$HOME/.cache}/migd-test-kernel
fi
out=$cache/$key
mkdir -p "$out"

if [ -s "$out/bzImage" ]; then
    echo "$out/bzImage"
    exit 0
fi

# One build at a time per key: parallel test runs wait for the first instead of building twice.
exec 9>"$out/lock"
flock 9
if [ -s "$out/bzImage" ]; then
    echo "$out/bzImage"
    exit 0
fi

start=$(date +%s)
src=$out/src
rm -rf "$src"
mkdir -p "$src"
echo "build-kernel: unpacking $tarball (package $pkgver) into $src" >&2
# Documentation is most of the tarball but not needed, except Documentation/Kconfig (which Kconfig sources):
# the pattern drops every entry in it whose name does not end in "g".
tar -xJf "$tarball" -C "$src" --strip-components=1 \
    --exclude='*/Documentation/*[!g]' --exclude='*/tools/testing' --exclude='*/tools/perf'

jobs=$(nproc)
make -C "$src" -s ARCH=x86_64 tinyconfig >&2
"$src/scripts/kconfig/merge_config.sh" -m -O "$src" "$src/.config" "$fragment" >/dev/null
make -C "$src" -s ARCH=x86_64 olddefconfig >&2

# merge_config does not fail on options Kconfig dropped; a kernel without them is useless here.
missing=0
while IFS= read -r line; do
    case "$line" in CONFIG_*=y) ;; *) continue ;; esac
    if ! grep -qx "$line" "$src/.config"; then
        echo "build-kernel: $line did not survive olddefconfig" >&2
        missing=1
    fi
done <"$fragment"
[ "$missing" = 0 ] || exit 1

echo "build-kernel: compiling with $jobs jobs (several minutes)" >&2
make -C "$src" -s ARCH=x86_64 -j"$jobs" bzImage >"$out/build.log" 2>&1 || {
    tail -n 40 "$out/build.log" >&2
    exit 1
}
cp "$src/arch/x86/boot/bzImage" "$out/bzImage.tmp"
cp "$src/.config" "$out/config"
mv "$out/bzImage.tmp" "$out/bzImage"
rm -rf "$src"
echo "build-kernel: built in $(( $(date +%s) - start )) s: $out/bzImage" >&2
echo "$out/bzImage"
