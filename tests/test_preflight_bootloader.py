"""Boot-loader detection and the exact edit printed for each loader (nothing is ever edited)."""

import os

from pcipass.cmdline import Cmdline
from pcipass.host import Host
from pcipass.preflight import bootloader, files
from pcipass.preflight.bootloader import Kind

RUNNING = Cmdline.parse("BOOT_IMAGE=/vmlinuz-6.1 root=/dev/sda1 ro quiet intel_iommu=off")


def _detect(fake, running=RUNNING):
    return bootloader.detect(Host(fake.root), running)


def _snapshot(fake):
    """Every file under the root with its content: to prove detection and remedies write nothing."""
    out = {}
    for dirpath, _, names in os.walk(fake.root):
        for n in names:
            p = os.path.join(dirpath, n)
            out[p] = open(p, "rb").read() if os.path.isfile(p) else None
    return out


def test_grub_debian(fake):
    fake.write(
        "etc/default/grub", '# comment\nGRUB_CMDLINE_LINUX_DEFAULT="quiet intel_iommu=off"\nGRUB_CMDLINE_LINUX=""\n'
    )
    fake.write("usr/sbin/update-grub", "")
    before = _snapshot(fake)
    bl = _detect(fake)
    assert bl.kind is Kind.GRUB and bl.regenerate == "update-grub"
    assert bl.description == "GRUB (/etc/default/grub; Debian family)"
    assert bl.remedy(["intel_iommu=on", "iommu=pt"], ["intel_iommu"]) == (
        'in /etc/default/grub set GRUB_CMDLINE_LINUX_DEFAULT="quiet intel_iommu=on iommu=pt"; '
        "then run update-grub and reboot"
    )
    assert _snapshot(fake) == before


def test_grub_debian_by_os_release_and_dropin_wins(fake):
    fake.write("etc/os-release", 'NAME="Ubuntu"\nID=ubuntu\nID_LIKE=debian\n')
    fake.write("etc/default/grub", 'GRUB_CMDLINE_LINUX_DEFAULT="quiet splash"\n')
    fake.write(
        "etc/default/grub.d/50-cloudimg-settings.cfg",
        "GRUB_CMDLINE_LINUX_DEFAULT='console=tty1 console=ttyS0 intel_iommu=off'\n",
    )
    bl = _detect(fake)
    assert bl.regenerate == "update-grub"
    assert bl.remedy(["intel_iommu=on"], ["intel_iommu"]) == (
        'in /etc/default/grub.d/50-cloudimg-settings.cfg set GRUB_CMDLINE_LINUX_DEFAULT="console=tty1 console=ttyS0 '
        'intel_iommu=on"; then run update-grub and reboot'
    )


def test_grub_removal_from_linux_and_addition_to_linux_when_no_default(fake):
    fake.write("etc/default/grub", 'GRUB_TIMEOUT=5\nGRUB_CMDLINE_LINUX="crashkernel=auto rhgb iommu=off"\n')
    fake.write("usr/sbin/grub2-mkconfig", "")
    bl = _detect(fake)
    assert bl.regenerate == "grub2-mkconfig -o /boot/grub2/grub.cfg"
    assert bl.remedy(["intel_iommu=on"], ["iommu"]) == (
        'in /etc/default/grub set GRUB_CMDLINE_LINUX="crashkernel=auto rhgb intel_iommu=on"; '
        "then run grub2-mkconfig -o /boot/grub2/grub.cfg and reboot"
    )


def test_grub_mkconfig_paths_bios_and_uefi(fake):
    fake.write("etc/default/grub", 'GRUB_CMDLINE_LINUX="rhgb"\n')
    fake.write("etc/os-release", 'ID=rhel\nID_LIKE="fedora"\n')
    # BIOS, nothing generated yet: the distribution's default name
    assert _detect(fake).regenerate == "grub2-mkconfig -o /boot/grub2/grub.cfg"
    # UEFI with the whole configuration on the ESP (RHEL 8 and older Fedora)
    fake.path("sys/firmware/efi").mkdir(parents=True)
    fake.write("boot/efi/EFI/redhat/grub.cfg", "### BEGIN /etc/grub.d/00_header ###\nset timeout=5\n")
    bl = _detect(fake)
    assert bl.regenerate == "grub2-mkconfig -o /boot/efi/EFI/redhat/grub.cfg"
    assert "UEFI, configuration on the ESP" in bl.description
    # UEFI with a stub that loads /boot/grub2/grub.cfg (Fedora 34+, RHEL 9): never overwrite the stub
    fake.write(
        "boot/efi/EFI/redhat/grub.cfg",
        "search --no-floppy --fs-uuid --set=dev 1234\nset prefix=($dev)/grub2\nconfigfile $prefix/grub.cfg\n",
    )
    fake.write("boot/grub2/grub.cfg", "### BEGIN /etc/grub.d/00_header ###\n")
    bl = _detect(fake)
    assert bl.regenerate == "grub2-mkconfig -o /boot/grub2/grub.cfg"
    assert "/boot/efi/EFI/redhat/grub.cfg is a stub" in bl.description


def test_grub_mkconfig_arch(fake):
    fake.write("etc/default/grub", 'GRUB_CMDLINE_LINUX_DEFAULT="loglevel=3 quiet"\n')
    fake.write("usr/bin/grub-mkconfig", "")
    fake.write("boot/grub/grub.cfg", "")
    assert _detect(fake).regenerate == "grub-mkconfig -o /boot/grub/grub.cfg"


def test_unreadable_esp_falls_back_and_says_so(fake, monkeypatch):
    fake.write("etc/default/grub", 'GRUB_CMDLINE_LINUX="rhgb"\n')
    fake.write("usr/sbin/grub2-mkconfig", "")
    fake.path("sys/firmware/efi").mkdir(parents=True)
    fake.path("boot/efi/EFI").mkdir(parents=True)
    esp = os.fspath(fake.path("boot/efi/EFI"))
    real = files._listdir

    def guarded(path):
        if os.fspath(path) == esp:
            raise PermissionError(13, "Permission denied", esp)
        return real(path)

    monkeypatch.setattr(files, "_listdir", guarded)
    bl = _detect(fake)
    assert bl.regenerate == "grub2-mkconfig -o /boot/grub2/grub.cfg"
    assert "/boot/efi not readable (permission denied (run as root))" in bl.description


def test_grub_already_configured(fake):
    fake.write("etc/default/grub", 'GRUB_CMDLINE_LINUX_DEFAULT="quiet intel_iommu=on"\n')
    fake.write("usr/sbin/update-grub", "")
    assert _detect(fake).remedy(["intel_iommu=on"], ["intel_iommu"]) == (
        "the GRUB configuration already has intel_iommu=on, but the running kernel was not booted with it: "
        "then run update-grub and reboot"
    )


def test_grubby_wins_on_fedora(fake):
    fake.write("etc/default/grub", 'GRUB_CMDLINE_LINUX="rhgb"\n')
    fake.write("usr/sbin/grubby", "")
    bl = _detect(fake)
    assert bl.kind is Kind.GRUBBY
    assert bl.remedy(["intel_iommu=on", "iommu=pt"], ["intel_iommu"]) == (
        'run: grubby --update-kernel=ALL --args="intel_iommu=on iommu=pt" --remove-args="intel_iommu=off"; then reboot'
    )


def test_systemd_boot_kernel_install(fake):
    fake.write("etc/kernel/cmdline", "# managed by hand\nroot=UUID=ab rw quiet\n")
    fake.write("usr/lib/modules/6.1.0-test-amd64/vmlinuz", "")
    bl = _detect(fake)
    assert bl.kind is Kind.KERNEL_CMDLINE
    assert bl.remedy(["intel_iommu=on"]) == (
        "set /etc/kernel/cmdline to: root=UUID=ab rw quiet intel_iommu=on; then run kernel-install add "
        "6.1.0-test-amd64 /usr/lib/modules/6.1.0-test-amd64/vmlinuz and reboot"
    )
    assert bl.remedy((), ["quiet"]).startswith("set /etc/kernel/cmdline to: root=UUID=ab rw;")


def test_systemd_boot_without_cmdline_file_seeds_from_running(fake):
    fake.write("boot/efi/loader/loader.conf", "default @saved\n")
    bl = _detect(fake, Cmdline.parse("initrd=\\initrd.img BOOT_IMAGE=x root=/dev/vda2 ro"))
    assert bl.remedy(["iommu=pt"]) == (
        "create /etc/kernel/cmdline to: root=/dev/vda2 ro iommu=pt; then run "
        "kernel-install add 6.1.0-test-amd64 /boot/vmlinuz-6.1.0-test-amd64 and reboot"
    )


def test_proxmox(fake):
    fake.write("etc/kernel/proxmox-boot-uuids", "1234-ABCD\n")
    fake.write("etc/kernel/cmdline", "root=ZFS=rpool/ROOT/pve-1 boot=zfs\n")
    fake.write("usr/sbin/grubby", "")  # ignored on Proxmox
    bl = _detect(fake)
    assert bl.kind is Kind.KERNEL_CMDLINE and bl.regenerate == "proxmox-boot-tool refresh"
    fake.write("etc/default/grub", 'GRUB_CMDLINE_LINUX_DEFAULT="quiet"\n')
    bl = _detect(fake)
    assert bl.kind is Kind.GRUB and bl.regenerate == "proxmox-boot-tool refresh"


def test_unknown(fake):
    bl = _detect(fake)
    assert bl.kind is Kind.UNKNOWN
    assert bl.remedy(["intel_iommu=on"], ["intel_iommu"]) == (
        "remove intel_iommu=off and add intel_iommu=on on the kernel command line in your boot loader's configuration "
        "(no GRUB, grubby or systemd-boot configuration was found), then reboot"
    )


def test_initramfs_command(fake):
    host = Host(fake.root)
    assert bootloader.initramfs_command(host) is None
    fake.write("usr/bin/dracut", "")
    assert bootloader.initramfs_command(host) == "dracut -f --regenerate-all"
    fake.write("usr/sbin/update-initramfs", "")
    assert bootloader.initramfs_command(host) == "update-initramfs -u -k all"
