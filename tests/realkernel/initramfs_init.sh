#!/bin/busybox sh
# pcipass real-kernel guest, stage 1 (baked into the initramfs; changing this file rebuilds it).
# Loads the virtio/9p/overlay modules shipped in the initramfs, mounts the host's / (read-only,
# virtio-9p) under a tmpfs overlay, and runs stage 2 (a script on the host, path from the kernel
# command line) chrooted into it. Whatever happens, the guest ends with poweroff -f.
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
mount -t tmpfs -o mode=0755 tmpfs /rw || fail "tmpfs"
mkdir -p /rw/upper /rw/work
mount -t overlay overlay -o lowerdir=/lower,upperdir=/rw/upper,workdir=/rw/work /newroot \
    || fail "overlay mount failed"
echo "pcipass-init: chroot into the host root (overlay), stage 2: $STAGE2" >/dev/console
chroot /newroot /bin/sh "$STAGE2" </dev/console >/dev/console 2>&1
echo "pcipass-init: stage 2 ended with status $?, powering off" >/dev/console
sync
poweroff -f
echo o >/proc/sysrq-trigger
sleep 5
