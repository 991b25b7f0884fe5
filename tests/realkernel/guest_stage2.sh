#!/bin/sh
# pcipass real-kernel guest, stage 2: runs as root chrooted into the overlay of the host's /.
# Read from the host's tree over 9p at every boot (not baked into the initramfs).
# Mounts the pseudo filesystems, bind-mounts the extracted kernel's modules, mounts the writable
# result channel, loads drivers for every device (modprobe on each modalias, two passes: there is
# no udev here), then runs the host-written command script and records its exit status.
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export HOME=/root
umask 022

say() { echo "pcipass-stage2: [$(cut -d' ' -f1 /proc/uptime)s] $*"; }

mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mkdir -p /dev/pts /dev/shm
mount -t devpts devpts /dev/pts
mount -t tmpfs tmpfs /dev/shm
mount -t tmpfs -o mode=0755 tmpfs /run
# /tmp is NOT replaced by a tmpfs: the project may live under the host's /tmp (a CI clone); the
# overlay already makes it writable and keeps writes in the guest.
[ -d /sys/kernel/debug ] && mount -t debugfs debugfs /sys/kernel/debug 2>/dev/null

IO_TAG=pcipass-io
IO_MNT=/run/pcipass-io
MODULES=
NODRIVERS=
SYSTEMD=
for arg in $(cat /proc/cmdline); do
    case "$arg" in
        pcipass_modules=*) MODULES=${arg#pcipass_modules=} ;;
        pcipass_io_tag=*) IO_TAG=${arg#pcipass_io_tag=} ;;
        pcipass_nodrivers=1) NODRIVERS=1 ;;
        pcipass_systemd=1) SYSTEMD=1 ;;
    esac
done
KVER=$(uname -r)
say "kernel $KVER"

if [ -n "$MODULES" ]; then
    mkdir -p "/lib/modules/$KVER"
    mount --bind "$MODULES" "/lib/modules/$KVER" || say "WARNING: cannot bind $MODULES"
fi

mkdir -p "$IO_MNT"
if ! mount -t 9p -o trans=virtio,version=9p2000.L,msize=262144 "$IO_TAG" "$IO_MNT"; then
    say "FATAL: cannot mount the result channel ($IO_TAG)"
    exit 3
fi

# Only pci/virtio/hdaudio/usb/hid aliases: the cpu/acpi/platform ones pull in crypto, kvm_amd, edac and
# friends (+4 s under TCG) and nothing the PCI passthrough tests look at. -b honours blacklists.
load_drivers() {
    find /sys/devices -name modalias -type f -exec cat {} + 2>/dev/null \
        | grep -E '^(pci|virtio|hdaudio|usb|hid):' | sort -u >/tmp/modaliases
    xargs -r modprobe -q -a -b </tmp/modaliases 2>/dev/null
}
if [ -z "$NODRIVERS" ]; then
    load_drivers
    load_drivers
    # The USB keyboard: its interface appears once the controller has enumerated it (a moment under TCG),
    # its HID device once usbhid has bound the interface, its input device once hid-generic has: a pass each.
    if [ -d /sys/bus/usb/devices ]; then
        i=0
        while [ $i -lt 50 ] && ! ls /sys/bus/usb/devices | grep -q ':'; do sleep 0.1; i=$((i + 1)); done
        load_drivers
        load_drivers
    fi
    say "drivers loaded ($(wc -l </tmp/modaliases) modaliases)"
fi

hostname pcipass-guest 2>/dev/null
ip link set lo up 2>/dev/null

if [ -n "$SYSTEMD" ]; then
    # The drivers are bound (the coldplug a real host's udev does; there is no udevd here): systemd takes over
    # (stage 1 switches root), and the units the test installed do the rest.
    say "handing over to systemd"
elif [ -f "$IO_MNT/command.sh" ]; then
    say "running command.sh"
    /bin/sh "$IO_MNT/command.sh" >"$IO_MNT/command.log" 2>&1 </dev/null
    rc=$?
    echo "$rc" >"$IO_MNT/command.rc"
    say "command.sh exited with $rc"
else
    say "no command.sh in the result channel"
    echo 127 >"$IO_MNT/command.rc"
fi
sync
exit 0
