"""A fake kernel for the binding engine: applies the PCI core's semantics to a FakeHost tree, with faults.

What it models (drivers/pci/pci-driver.c, drivers/base/bus.c, drivers/pci/pci-sysfs.c, 6.1):
- ``driver_override``: stored; ``"\\n"`` clears it (reads back ``(null)``).
- ``devices/<D>/driver/unbind``: the path goes through the driver link (ENOENT when unbound).
- ``drivers/<X>/unbind``: ENODEV unless the device is bound to X.
- ``drivers/<X>/bind``: ENODEV when the device is missing or driver_override names another driver, EBUSY
  when bound, EINVAL when X's probe fails (vfio drivers without an IOMMU group).
- ``drivers_probe``: succeeds even when nothing binds; binds the override's driver, else the device's
  default driver (the one it had when the fake kernel was made, unless told otherwise).
- a vfio driver binding creates ``dev/vfio/<group>``; the last one leaving the group removes it.
- ``VFIO_GROUP_GET_STATUS``: viable when every endpoint of the group is on a vfio driver, pci-stub or none.

Faults, by write index (0 = the first write of the run): ``fail[i] = errno`` (before the kernel acts),
``fail_after[i] = errno`` (after it acted), ``hang`` (the write is abandoned with ETIMEDOUT, as
``sysfs.write_attr`` does), ``kill_at`` (the process dies: a BaseException the engine does not catch),
``remove_at[i] = address`` (the device is hot-unplugged just before write i); ``probe_noop`` (addresses
drivers_probe leaves unbound), ``probe_delay`` (addresses bound that many seconds after drivers_probe),
``vfio_answer`` (force the viability answer), ``module_fail``.

SR-IOV (drivers/pci/iov.c sriov_numvfs_store, drivers/pci/pci-driver.c pci_device_can_probe; a PF made with
``FakeHost.make_sriov_pf``):
- ``sriov_numvfs``: EINVAL unless a number; ERANGE above ``sriov_totalvfs``; the same count: nothing; ENOENT
  without a PF driver; EBUSY from one non-zero count to another; 0 removes every VF (a VF on vfio-pci whose
  group a process holds would block the kernel: the fake raises AssertionError, the engine must refuse first);
  N creates N VFs at the PF's routing ID + offset + i * stride, each in a new IOMMU group, linked
  ``virtfnN``/``physfn``, probed by ``vf_driver[pf]`` only when ``sriov_drivers_autoprobe`` is 1.
- ``sriov_drivers_autoprobe``: 0 or 1, else EINVAL.
- ``drivers_probe`` on a VF of a PF with autoprobe 0 binds only through ``driver_override``.
- faults: ``sriov_errno[pf] = errno`` (the PF driver's sriov_configure fails, e.g. ENOSYS), ``sriov_partial[pf]
  = k`` (the driver enables only k VFs and the write succeeds).
"""

from __future__ import annotations

import errno as E
import os
import shutil
from pathlib import Path

from pcipass.drivers import is_vfio_driver, normalize
from pcipass.engine.vfio import VfioGroupStatus
from pcipass.errors import ModuleError, SysfsError
from tests.support.fakehost import FakeHost


class Killed(BaseException):
    """Stands for SIGKILL: nothing after it runs in the engine (no rollback, no state update)."""


_MODULE_DRIVERS = {"vfio_pci": "vfio-pci", "pci_stub": "pci-stub"}


class FakeKernel:
    def __init__(self, fake: FakeHost) -> None:
        self.fake = fake
        self.root = fake.root
        self.default: dict[str, str | None] = {a: self.driver(a) for a in fake.devices}
        self.writes: list[tuple[str, str]] = []
        self.loaded: list[str] = []
        self.fail: dict[int, int] = {}
        self.fail_after: dict[int, int] = {}
        self.hang: set[int] = set()
        self.kill_at: int | None = None
        self.remove_at: dict[int, str] = {}
        self.probe_noop: set[str] = set()
        self.probe_delay: dict[str, float] = {}
        self.vfio_answer: dict[int, bool] = {}
        self.module_fail: set[str] = set()
        self.vf_driver: dict[str, str] = {}
        self.sriov_errno: dict[str, int] = {}
        self.sriov_partial: dict[str, int] = {}

    # --- reading the fake tree ---------------------------------------------------------------------------
    def dev_dir(self, address: str) -> Path:
        return self.root / "sys/bus/pci/devices" / address

    def driver(self, address: str) -> str | None:
        link = self.dev_dir(address) / "driver"
        return os.path.basename(os.readlink(link)) if link.is_symlink() else None

    def override(self, address: str) -> str | None:
        text = (self.dev_dir(address) / "driver_override").read_text().strip()
        return None if text in ("", "(null)") else text

    def group(self, address: str) -> int | None:
        link = self.dev_dir(address) / "iommu_group"
        return int(os.path.basename(os.readlink(link))) if link.is_symlink() else None

    def _is_bridge(self, address: str) -> bool:
        return (self.dev_dir(address) / "pci_bus").is_dir()

    # --- the Kernel protocol ------------------------------------------------------------------------------
    def write(self, path: Path, value: str, *, address: str | None, timeout: float | None) -> None:
        i = len(self.writes)
        rel = os.path.relpath(path, self.root)
        self.writes.append((rel, value))
        if i in self.remove_at:
            self._remove(self.remove_at[i])
        if self.kill_at == i:
            raise Killed()
        if i in self.hang:
            raise SysfsError(
                f"write {rel} still blocked after {timeout} s; abandoned", address=address, path=rel, errno=E.ETIMEDOUT
            )
        if i in self.fail:
            raise OSError(self.fail[i], os.strerror(self.fail[i]))
        self._apply(rel, value)
        if i in self.fail_after:
            raise OSError(self.fail_after[i], os.strerror(self.fail_after[i]))

    def load_module(self, name: str, *, timeout: float) -> None:
        if name in self.module_fail:
            raise ModuleError(f"modprobe {name} failed: injected")
        self.loaded.append(name)
        self.fake.add_driver(_MODULE_DRIVERS.get(name, name), module=name)
        if name == "vfio_pci":
            # vfio (a dependency) creates the container node /dev/vfio/vfio when it loads.
            self.fake.write("dev/vfio/vfio", "")

    def close(self) -> None:
        pass

    def preload(self, module: str) -> None:
        """The module was loaded before the test (not by the engine)."""
        self.load_module(module, timeout=0)
        self.loaded.remove(module)

    def vfio_status(self, group: int) -> VfioGroupStatus:
        node = self.root / "dev/vfio" / str(group)
        if not node.exists():
            return VfioGroupStatus(group, None, False, f"no VFIO node for group {group}")
        if group in self.vfio_answer:
            return VfioGroupStatus(group, self.vfio_answer[group], False, None)
        return VfioGroupStatus(group, self._viable(group), False, None)

    # --- semantics ----------------------------------------------------------------------------------------
    def _members(self, group: int) -> list[str]:
        return sorted(os.listdir(self.root / "sys/kernel/iommu_groups" / str(group) / "devices"))

    def _viable(self, group: int) -> bool:
        for a in self._members(group):
            if self._is_bridge(a):
                continue
            drv = self.driver(a)
            if not (drv is None or normalize(drv) == "pci_stub" or is_vfio_driver(drv)):
                return False
        return True

    def _remove(self, address: str) -> None:
        real = self.dev_dir(address).resolve()
        self.fake.unbind(address)
        g = self.group(address)
        if g is not None:
            (self.root / "sys/kernel/iommu_groups" / str(g) / "devices" / address).unlink()
        self.dev_dir(address).unlink()
        shutil.rmtree(real)

    def _apply(self, rel: str, value: str) -> None:
        parts = rel.split("/")
        if parts[:4] == ["sys", "bus", "pci", "devices"]:
            address = parts[4]
            if not self.dev_dir(address).exists():
                raise OSError(E.ENOENT, "No such file or directory")
            attr = parts[5:]
            if attr == ["driver_override"]:
                text = value.strip()
                (self.dev_dir(address) / "driver_override").write_text((text or "(null)") + "\n")
                return
            if attr == ["sriov_numvfs"]:
                self._set_numvfs(address, value)
                return
            if attr == ["sriov_drivers_autoprobe"]:
                if value.strip() not in ("0", "1"):
                    raise OSError(E.EINVAL, "Invalid argument")
                (self.dev_dir(address) / "sriov_drivers_autoprobe").write_text(value.strip() + "\n")
                return
            if attr == ["driver", "unbind"]:
                if self.driver(address) is None:
                    raise OSError(E.ENOENT, "No such file or directory")
                if value.strip() != address:
                    raise OSError(E.ENODEV, "No such device")
                self._unbind(address)
                return
            raise AssertionError(f"the engine wrote an attribute the fake kernel does not model: {rel}")
        if rel == "sys/bus/pci/drivers_probe":
            address = value.strip()
            if not self.dev_dir(address).exists():
                raise OSError(E.ENODEV, "No such device")
            if self.driver(address) is None and address not in self.probe_noop and self._can_probe(address):
                want = self.override(address) or self.default.get(address)
                if want and (self.root / "sys/bus/pci/drivers" / want).is_dir() and self._probe_ok(want, address):
                    if address in self.probe_delay:  # a driver that probes asynchronously
                        import threading

                        threading.Timer(self.probe_delay[address], self._bind, (address, want)).start()
                    else:
                        self._bind(address, want)
            return
        if parts[:4] == ["sys", "bus", "pci", "drivers"] and len(parts) == 6:
            drv, op, address = parts[4], parts[5], value.strip()
            if not (self.root / "sys/bus/pci/drivers" / drv).is_dir():
                raise OSError(E.ENOENT, "No such file or directory")
            if not self.dev_dir(address).exists():
                raise OSError(E.ENODEV, "No such device")
            if op == "unbind":
                if self.driver(address) != drv:
                    raise OSError(E.ENODEV, "No such device")
                self._unbind(address)
                return
            if op == "bind":
                ovr = self.override(address)
                if ovr is not None and ovr != drv:
                    raise OSError(E.ENODEV, "No such device")
                if self.driver(address) is not None:
                    raise OSError(E.EBUSY, "Device or resource busy")
                if not self._probe_ok(drv, address):
                    raise OSError(E.EINVAL, "Invalid argument")
                self._bind(address, drv)
                return
        raise AssertionError(f"the engine wrote an attribute the fake kernel does not model: {rel}")

    # --- SR-IOV ---------------------------------------------------------------------------------------------
    def _attr(self, address: str, name: str) -> str:
        return (self.dev_dir(address) / name).read_text().strip()

    def _can_probe(self, address: str) -> bool:
        physfn = self.dev_dir(address) / "physfn"
        if not physfn.is_symlink():
            return True
        pf = os.path.basename(os.readlink(physfn))
        return self._attr(pf, "sriov_drivers_autoprobe") == "1" or self.override(address) is not None

    def vfs(self, pf: str) -> list[str]:
        d = self.dev_dir(pf)
        links = sorted((int(e.name[6:]), e) for e in d.iterdir() if e.name.startswith("virtfn"))
        return [os.path.basename(os.readlink(link)) for _, link in links]

    def _set_numvfs(self, pf: str, value: str) -> None:
        try:
            want = int(value.strip(), 0)
        except ValueError:
            raise OSError(E.EINVAL, "Invalid argument") from None
        if not 0 <= want <= int(self._attr(pf, "sriov_totalvfs")):
            raise OSError(E.ERANGE, "Numerical result out of range")
        have = int(self._attr(pf, "sriov_numvfs"))
        if want == have:
            return
        if self.driver(pf) is None:
            raise OSError(E.ENOENT, "No such file or directory")
        if want and have:
            raise OSError(E.EBUSY, "Device or resource busy")
        if pf in self.sriov_errno:
            raise OSError(self.sriov_errno[pf], os.strerror(self.sriov_errno[pf]))
        if want:
            self._create_vfs(pf, self.sriov_partial.get(pf, want))
            return
        for i, vf in enumerate(self.vfs(pf)):
            g = self.group(vf)
            node = str(self.root / "dev/vfio" / str(g))
            held = [fd for fd in self.root.glob("proc/*/fd/*") if fd.is_symlink() and os.readlink(fd) == node]
            assert not (held and is_vfio_driver(self.driver(vf))), f"removing {vf} would block: {held}"
            self._unbind(vf)
            self._remove(vf)
            gdir = self.root / "sys/kernel/iommu_groups" / str(g)
            if g is not None and not any((gdir / "devices").iterdir()):
                shutil.rmtree(gdir)
            self.fake.devices.pop(vf, None)
            (self.dev_dir(pf) / f"virtfn{i}").unlink()
        (self.dev_dir(pf) / "sriov_numvfs").write_text("0\n")

    def _create_vfs(self, pf: str, count: int) -> None:
        from pcipass.address import PciAddress

        a = PciAddress.parse(pf)
        rid = (a.bus << 8) | (a.slot << 3) | a.function
        offset, stride = int(self._attr(pf, "sriov_offset")), int(self._attr(pf, "sriov_stride"))
        pf_path = self.fake.devices[pf].path
        parent = next((p for p, d in self.fake.devices.items() if d.path == pf_path.parent), None)
        groups = self.root / "sys/kernel/iommu_groups"
        autoprobe = self._attr(pf, "sriov_drivers_autoprobe") == "1"
        for i in range(count):
            r = rid + offset + i * stride
            vf = str(PciAddress(a.domain, r >> 8 & 0xFF, r >> 3 & 0x1F, r & 7))
            group = max((int(g.name) for g in groups.iterdir()), default=-1) + 1
            self.fake.add_device(
                vf,
                vendor=self._attr(pf, "vendor")[2:],
                device=self._attr(pf, "sriov_vf_device"),
                class_=self._attr(pf, "class")[2:],
                parent=parent,
                group=group,
            )
            vf_path = self.fake.devices[vf].path
            self.fake.symlink(str((vf_path / "physfn").relative_to(self.root)), pf_path)
            self.fake.symlink(str((pf_path / f"virtfn{i}").relative_to(self.root)), vf_path)
            self.default[vf] = self.vf_driver.get(pf)
            if autoprobe and pf in self.vf_driver:
                self._bind(vf, self.vf_driver[pf])
        (self.dev_dir(pf) / "sriov_numvfs").write_text(f"{count}\n")

    def _probe_ok(self, drv: str, address: str) -> bool:
        # vfio-pci's probe fails without an IOMMU group (vfio_pci_core_register_device → -EINVAL).
        return not is_vfio_driver(drv) or self.group(address) is not None

    def _bind(self, address: str, drv: str) -> None:
        self.fake.bind(address, drv)
        g = self.group(address)
        if is_vfio_driver(drv) and g is not None:
            node = self.root / "dev/vfio" / str(g)
            node.parent.mkdir(parents=True, exist_ok=True)
            node.touch()

    def _unbind(self, address: str) -> None:
        drv = self.driver(address)
        self.fake.unbind(address)
        g = self.group(address)
        if is_vfio_driver(drv) and g is not None:
            if not any(is_vfio_driver(self.driver(a)) for a in self._members(g)):
                (self.root / "dev/vfio" / str(g)).unlink(missing_ok=True)


def tree_digest(root: Path, *, exclude: tuple[str, ...] = ()) -> dict[str, str]:
    """Every file's content, every link's target and every directory under ``root`` (paths relative)."""
    out: dict[str, str] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        rel_dir = os.path.relpath(dirpath, root)
        if any(rel_dir == x or rel_dir.startswith(x + "/") for x in exclude):
            dirnames[:] = []
            continue
        out[rel_dir + "/"] = "dir"
        for name in dirnames + filenames:
            p = os.path.join(dirpath, name)
            rel = os.path.normpath(os.path.join(rel_dir, name))
            if any(rel == x or rel.startswith(x + "/") for x in exclude):
                continue
            if os.path.islink(p):
                out[rel] = "-> " + os.readlink(p)
            elif os.path.isfile(p):
                with open(p, "rb") as fh:
                    out[rel] = fh.read().hex()
    return out
