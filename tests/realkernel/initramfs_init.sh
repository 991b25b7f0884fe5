#!/bin/busybox sh
# pcipass real-kernel guest, stage 1 (baked into the initramfs; changing this file rebuilds it).
# Loads the virtio/9p/overlay modules shipped in the initramfs, mounts the host's / (read-only,
# virtio-9p) under a tmpfs overlay, and runs stage 2 (a script on the host, path from the kernel
# command line) chrooted into it. Whatever happens, the guest ends with poweroff -f.
# Two variants for the reboot tests (tests/realkernel/test_reboot.py): pcipass_upper=DEV puts the overlay's
# upper layer on an ext4 disk instead of a tmpfs (so /etc survives to the next boot; the ext4 and virtio-blk
# modules, pcipass_upper_modules=a.ko,b.ko relative to the kernel's module tree, are loaded from the 9p
# root), and pcipass_systemd=1 hands the root over to systemd as PID 1 after stage 2 prepared it.
/bin/busybox --install -s /bin
export PATH=/bin

fail() {
    echo "pcipass-init: FATAL: $*" >/dev/console
    poweroff -f
    echo o >/proc/sysrq-trigger
    sleep 5
    exit 1
}

mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
exec 0</dev/console 1>/dev/console 2>&1
echo "pcipass-init: stage 1 (initramfs) up" >/dev/console

for arg in $(cat /proc/cmdline); do
    case "$arg" in
        pcipass_stage2=*) STAGE2=${arg#pcipass_stage2=} ;;
        pcipass_root_tag=*) ROOT_TAG=${arg#pcipass_root_tag=} ;;
        pcipass_modules=*) MODULES=${arg#pcipass_modules=} ;;
        pcipass_upper=*) UPPER=${arg#pcipass_upper=} ;;
        pcipass_upper_modules=*) UPPER_MODULES=${arg#pcipass_upper_modules=} ;;
        pcipass_systemd=1) SYSTEMD=1 ;;
    esac
done
[ -n "$STAGE2" ] || fail "no pcipass_stage2= on the kernel command line"
[ -n "$ROOT_TAG" ] || ROOT_TAG=pcipass-root

while read -r m; do
    [ -n "$m" ] || continue
    insmod "/modules/$m" || fail "insmod $m"
done </modules/order

mkdir -p /lower /rw /newroot
mount -t 9p -o trans=virtio,version=9p2000.L,ro,cache=loose,msize=262144 "$ROOT_TAG" /lower \
    || fail "mount of the host root over 9p failed"
if [ -n "$UPPER" ]; then
    # Already loaded ones (virtio, virtio_ring) and a crc32c flavour the CPU lacks fail harmlessly: the mount
    # says whether what it needs is there.
    for m in $(echo "$UPPER_MODULES" | tr , ' '); do insmod "/lower$MODULES/$m" 2>/dev/null; done
    i=0
    while [ ! -b "$UPPER" ] && [ $i -lt 50 ]; do sleep 0.1; i=$((i + 1)); done
    mount -t ext4 "$UPPER" /rw || fail "mount of the upper disk $UPPER failed"
else
    mount -t tmpfs -o mode=0755 tmpfs /rw || fail "tmpfs"
fi
mkdir -p /rw/upper /rw/work
mount -t overlay overlay -o lowerdir=/lower,upperdir=/rw/upper,workdir=/rw/work /newroot \
    || fail "overlay mount failed"
echo "pcipass-init: chroot into the host root (overlay), stage 2: $STAGE2" >/dev/console
chroot /newroot /bin/sh "$STAGE2" </dev/console >/dev/console 2>&1
rc=$?
if [ -n "$SYSTEMD" ] && [ $rc -eq 0 ]; then
    echo "pcipass-init: stage 2 done, systemd as PID 1" >/dev/console
    exec switch_root /newroot /lib/systemd/systemd
    fail "switch_root to systemd failed"
fi
echo "pcipass-init: stage 2 ended with status $rc, powering off" >/dev/console
sync
poweroff -f
echo o >/proc/sysrq-trigger
sleep 5
