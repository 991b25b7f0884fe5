"""Provisioning for the real-kernel test tier: tools, a Debian kernel, an initramfs. All cached.

Run by hand (as root on Debian 12)::

    .venv/bin/python -m tests.realkernel.provision          # provision (or reuse) and print a summary
    .venv/bin/python -m tests.realkernel.provision --check  # only check the host tools

What it does, each step skipped when its result is already in the cache:

1. checks the host tools: ``qemu-system-x86_64`` (Debian ``qemu-system-x86``), a *static*
   ``busybox`` (``busybox-static``), ``depmod``/``modprobe`` (``kmod``), ``lspci`` (``pciutils``,
   used inside the guest), ``timeout`` (coreutils). ``scripts/setup.sh test`` apt-installs them;
   here a missing one is a clear :class:`ProvisionError`, never an install.
2. resolves ``linux-image-amd64`` to its ``linux-image-6.1.0-NN-amd64`` dependency
   (``apt-get update`` once if apt knows no candidate), ``apt-get download``s it, ``dpkg -x``
   into ``<cache>/kernel/<package>_<version>/root``, runs ``depmod -b`` on the tree, and extracts
   the uncompressed ELF ``vmlinux`` from the bzImage's xz payload (qemu then boots it through the
   PVH entry, ~3 s faster than the bzImage under TCG). Once a kernel is cached it is reused as is
   (no apt call at all); ``PCIPASS_REALKERNEL_KERNEL_PKG=linux-image-...`` picks another one.
3. builds an initramfs (``busybox cpio -o -H newc``; the host has no ``cpio``) holding the static
   busybox, ``initramfs_init.sh`` as ``/init`` and the virtio-pci/9p/overlay modules (dependency
   order from ``modprobe --show-depends``). Its cache key hashes the init script, the module list,
   the kernel version and busybox, so editing ``initramfs_init.sh`` rebuilds it.

Cache directory: ``$PCIPASS_REALKERNEL_CACHE`` or ``<repo>/.cache/realkernel``. A file lock makes
concurrent pytest runs in the same tree provision once.
"""

from __future__ import annotations

import argparse
import dataclasses
import fcntl
import hashlib
import lzma
import os
import shutil
import stat
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
INIT_SCRIPT = HERE / "initramfs_init.sh"
STAGE2_SCRIPT = HERE / "guest_stage2.sh"

# Modules the initramfs needs to reach the 9p root (dependencies are added by modprobe).
INITRAMFS_MODULES = ("virtio_pci", "9pnet_virtio", "9p", "overlay")
KERNEL_META_PACKAGE = "linux-image-amd64"

# tool -> Debian package that provides it
REQUIRED_TOOLS = {
    "qemu-system-x86_64": "qemu-system-x86",
    "busybox": "busybox-static",
    "depmod": "kmod",
    "modprobe": "kmod",
    "lspci": "pciutils",
    "timeout": "coreutils",
}
SBIN_DIRS = ("/usr/local/sbin", "/usr/sbin", "/sbin", "/usr/local/bin", "/usr/bin", "/bin")


class ProvisionError(RuntimeError):
    """Provisioning could not produce a bootable guest; the message says why and what to do."""


@dataclasses.dataclass(frozen=True)
class Kernel:
    package: str
    version: str
    kver: str
    tree: Path  # dpkg -x root
    vmlinuz: Path
    vmlinux: Path | None  # uncompressed ELF for PVH boot, when extraction worked

    @property
    def modules_dir(self) -> Path:
        return self.tree / "lib" / "modules" / self.kver

    @property
    def boot_image(self) -> Path:
        return self.vmlinux or self.vmlinuz


@dataclasses.dataclass(frozen=True)
class Provisioned:
    cache: Path
    kernel: Kernel
    initramfs: Path
    tools: dict[str, str]
    timings: dict[str, float]
    #: The sample mdev driver built for the kernel (tests/realkernel/mtty.py); None with ``mtty_error`` saying
    #: why (the guest tests that need it fail with that reason, the others run).
    mtty: Path | None = None
    mtty_error: str | None = None


def cache_dir() -> Path:
    env = os.environ.get("PCIPASS_REALKERNEL_CACHE")
    return Path(env).resolve() if env else REPO / ".cache" / "realkernel"


def _log(msg: str) -> None:
    print(f"[realkernel] {msg}", file=sys.stderr, flush=True)


def _which(tool: str) -> str | None:
    found = shutil.which(tool)
    if found:
        return found
    for d in SBIN_DIRS:
        p = Path(d) / tool
        if p.is_file() and os.access(p, os.X_OK):
            return str(p)
    return None


def _elf_is_static(path: str) -> bool:
    """True when the ELF file has no PT_INTERP program header (statically linked)."""
    with open(path, "rb") as f:
        head = f.read(64)
        if head[:4] != b"\x7fELF" or head[4] != 2:  # 64-bit only
            return False
        phoff = struct.unpack_from("<Q", head, 0x20)[0]
        phentsize, phnum = struct.unpack_from("<HH", head, 0x36)
        f.seek(phoff)
        table = f.read(phentsize * phnum)
    for i in range(phnum):
        if struct.unpack_from("<I", table, i * phentsize)[0] == 3:  # PT_INTERP
            return False
    return True


def check_tools() -> dict[str, str]:
    """Path of every required host tool; ProvisionError naming the Debian packages otherwise."""
    found: dict[str, str] = {}
    missing: dict[str, str] = {}
    for tool, pkg in REQUIRED_TOOLS.items():
        path = _which(tool)
        if tool == "qemu-system-x86_64" and os.environ.get("PCIPASS_REALKERNEL_QEMU"):
            override = os.environ["PCIPASS_REALKERNEL_QEMU"]
            path = override if os.access(override, os.X_OK) else None
            if path is None:
                tool = f"PCIPASS_REALKERNEL_QEMU={override} (not executable)"
        if path is None:
            missing[tool] = pkg
        else:
            found[tool] = path
    if "busybox" in found and not _elf_is_static(os.path.realpath(found["busybox"])):
        missing["busybox (static)"] = "busybox-static"
    if missing:
        pkgs = " ".join(sorted(set(missing.values())))
        raise ProvisionError(
            "real-kernel tier: missing host tools "
            + ", ".join(f"{t} (Debian package {p})" for t, p in missing.items())
            + f". Install them with `apt-get install --no-install-recommends {pkgs}` "
            "(scripts/setup.sh test does this), or opt out with PCIPASS_SKIP_REALKERNEL=1 (not honoured in CI)."
        )
    return found


def _run(cmd: list[str], *, cwd: Path | None = None, timeout: float = 600, what: str = "") -> str:
    try:
        p = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as e:
        raise ProvisionError(f"{what or cmd[0]}: timed out after {timeout:.0f} s: {' '.join(cmd)}") from e
    except OSError as e:
        raise ProvisionError(f"{what or cmd[0]}: cannot run {' '.join(cmd)}: {e}") from e
    if p.returncode != 0:
        tail = (p.stderr or p.stdout).strip().splitlines()[-15:]
        raise ProvisionError(f"{what or cmd[0]} failed (exit {p.returncode}): {' '.join(cmd)}\n" + "\n".join(tail))
    return p.stdout


class _Lock:
    def __init__(self, path: Path):
        self.path = path

    def __enter__(self):
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.fd = os.open(self.path, os.O_CREAT | os.O_RDWR, 0o644)
        fcntl.flock(self.fd, fcntl.LOCK_EX)
        return self

    def __exit__(self, *exc):
        fcntl.flock(self.fd, fcntl.LOCK_UN)
        os.close(self.fd)


# --------------------------------------------------------------------------- kernel


def _resolve_kernel_package() -> str:
    """linux-image-amd64 -> linux-image-6.1.0-NN-amd64 (apt-get update once if needed)."""

    def depends() -> str | None:
        p = subprocess.run(["apt-cache", "depends", KERNEL_META_PACKAGE], capture_output=True, text=True, timeout=120)
        for line in p.stdout.splitlines():
            line = line.strip()
            if line.startswith("Depends:"):
                name = line.split(":", 1)[1].strip()
                if name.startswith("linux-image-") and name.endswith("-amd64"):
                    return name
        return None

    if not _which("apt-cache") or not _which("apt-get"):
        raise ProvisionError(
            "real-kernel tier: no kernel cached and no apt-get/apt-cache to download one (Debian needed)"
        )
    name = depends()
    if name is None:
        if os.geteuid() != 0:
            raise ProvisionError(
                f"real-kernel tier: apt knows no {KERNEL_META_PACKAGE}; run `apt-get update` as root first"
            )
        _log("apt-get update (apt knows no kernel package yet)")
        _run(["apt-get", "update", "-qq"], what="apt-get update", timeout=600)
        name = depends()
    if name is None:
        raise ProvisionError(
            f"real-kernel tier: cannot resolve {KERNEL_META_PACKAGE} to a kernel package via apt-cache"
        )
    return name


def _extract_vmlinux(vmlinuz: Path, out: Path) -> bool:
    """Decompress the xz payload of a bzImage into an ELF vmlinux. False if not possible."""
    data = vmlinuz.read_bytes()
    start = 0
    while True:
        i = data.find(b"\xfd7zXZ\x00", start)
        if i < 0:
            return False
        try:
            dec = lzma.LZMADecompressor(format=lzma.FORMAT_XZ)
            payload = dec.decompress(data[i:])
        except lzma.LZMAError:
            start = i + 1
            continue
        if payload[:4] == b"\x7fELF":
            tmp = out.with_suffix(".tmp")
            tmp.write_bytes(payload)
            tmp.replace(out)
            return True
        start = i + 1


def _kernel_from_dir(d: Path) -> Kernel | None:
    if not (d / ".complete").exists():
        return None
    mods = sorted((d / "root" / "lib" / "modules").glob("*"))
    if not mods:
        return None
    kver = mods[0].name
    package, _, version = d.name.partition("_")
    vmlinuz = d / "root" / "boot" / f"vmlinuz-{kver}"
    vmlinux = d / "vmlinux"
    return Kernel(package, version, kver, d / "root", vmlinuz, vmlinux if vmlinux.exists() else None)


def ensure_kernel(cache: Path, timings: dict[str, float]) -> Kernel:
    kdir = cache / "kernel"
    wanted = os.environ.get("PCIPASS_REALKERNEL_KERNEL_PKG")
    candidates = [k for d in sorted(kdir.glob("linux-image-*")) if (k := _kernel_from_dir(d))]
    if wanted:
        candidates = [k for k in candidates if k.package == wanted]
    if candidates:
        return candidates[-1]

    t0 = time.monotonic()
    package = wanted or _resolve_kernel_package()
    kdir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=kdir, prefix=".download-") as tmp:
        _log(f"apt-get download {package}")
        download = ["apt-get", "download", "-o", "APT::Sandbox::User=root", package]
        try:
            _run(download, cwd=Path(tmp), what="apt-get download", timeout=900)
        except ProvisionError:
            if os.geteuid() != 0:
                raise
            # stale package lists (the mirror dropped that version): refresh once and retry
            _log("apt-get download failed; apt-get update and retry")
            _run(["apt-get", "update", "-qq"], what="apt-get update", timeout=600)
            if not wanted:
                package = _resolve_kernel_package()
                download[-1] = package
            _run(download, cwd=Path(tmp), what="apt-get download", timeout=900)
        debs = sorted(Path(tmp).glob(f"{package}_*.deb"))
        if not debs:
            raise ProvisionError(f"apt-get download {package} produced no .deb")
        deb = debs[-1]
        version = deb.name.split("_")[1]
        timings["kernel_download_s"] = time.monotonic() - t0
        dest = kdir / f"{package}_{version}"
        if dest.exists():
            shutil.rmtree(dest)
        staging = Path(tmp) / "tree"
        t1 = time.monotonic()
        _log(f"dpkg -x {deb.name}")
        staging.mkdir()
        _run(["dpkg", "-x", str(deb), str(staging / "root")], what="dpkg -x")
        mods = sorted((staging / "root" / "lib" / "modules").glob("*"))
        if not mods:
            raise ProvisionError(f"{deb.name} has no lib/modules/<kver> tree")
        kver = mods[0].name
        _run([_which("depmod") or "depmod", "-b", str(staging / "root"), kver], what="depmod -b")
        vmlinuz = staging / "root" / "boot" / f"vmlinuz-{kver}"
        if not vmlinuz.exists():
            raise ProvisionError(f"{deb.name} has no boot/vmlinuz-{kver}")
        if not _extract_vmlinux(vmlinuz, staging / "vmlinux"):
            _log("could not extract an ELF vmlinux; booting the bzImage (slower)")
        (staging / ".complete").write_text(f"{package} {version} {kver}\n")
        staging.rename(dest)
        timings["kernel_extract_s"] = time.monotonic() - t1
    k = _kernel_from_dir(dest)
    assert k is not None
    return k


# --------------------------------------------------------------------------- initramfs


def _module_files(kernel: Kernel, names: tuple[str, ...]) -> list[Path]:
    """Module files for ``names``, dependencies first, each once (``modprobe --show-depends`` on the tree)."""
    out = _run(
        [_which("modprobe") or "modprobe", "-d", str(kernel.tree), "-S", kernel.kver, "-a", "--show-depends", *names],
        what="modprobe --show-depends",
    )
    seen: list[Path] = []
    for line in out.splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[0] == "insmod":
            p = Path(parts[1])
            if p not in seen:
                seen.append(p)
    if not seen:
        raise ProvisionError(f"no modules found for {names} in {kernel.tree}")
    return seen


def initramfs_modules(kernel: Kernel) -> list[Path]:
    """Module files for INITRAMFS_MODULES, dependencies first, each once."""
    return _module_files(kernel, INITRAMFS_MODULES)


#: Modules stage 1 loads from the 9p root for an ext4 upper disk (``vm.run_guest(upper_disk=...)``).
UPPER_DISK_MODULES = ("virtio_blk", "ext4")


def upper_disk_modules(kernel: Kernel) -> list[str]:
    """UPPER_DISK_MODULES and their dependencies, in load order, relative to the kernel's module tree."""
    return [os.path.relpath(os.path.normpath(p), kernel.modules_dir) for p in _module_files(kernel, UPPER_DISK_MODULES)]


def _initramfs_key(kernel: Kernel, modules: list[Path], busybox: str) -> str:
    h = hashlib.sha256()
    h.update(INIT_SCRIPT.read_bytes())
    h.update(kernel.kver.encode())
    for m in modules:
        h.update(f"{m.name}:{m.stat().st_size}\n".encode())
    st = os.stat(busybox)
    h.update(f"busybox:{st.st_size}:{int(st.st_mtime)}".encode())
    return h.hexdigest()[:16]


def ensure_initramfs(cache: Path, kernel: Kernel, tools: dict[str, str], timings: dict[str, float]) -> Path:
    busybox = os.path.realpath(tools["busybox"])
    modules = initramfs_modules(kernel)
    key = _initramfs_key(kernel, modules, busybox)
    out = cache / "initramfs" / f"initramfs-{kernel.kver}-{key}.cpio"
    if out.exists():
        return out
    t0 = time.monotonic()
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out.parent, prefix=".build-") as tmp:
        root = Path(tmp) / "root"
        for d in ("bin", "dev", "proc", "sys", "modules", "lower", "rw", "newroot"):
            (root / d).mkdir(parents=True)
        shutil.copy2(busybox, root / "bin" / "busybox")
        (root / "bin" / "sh").symlink_to("busybox")
        shutil.copy2(INIT_SCRIPT, root / "init")
        os.chmod(root / "init", 0o755)
        for m in modules:
            shutil.copy2(m, root / "modules" / m.name)
        (root / "modules" / "order").write_text("".join(m.name + "\n" for m in modules))
        if os.geteuid() == 0:  # an initial console for the kernel to hand to /init
            os.mknod(root / "dev" / "console", 0o600 | stat.S_IFCHR, os.makedev(5, 1))
        names = ["."]
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames.sort()
            rel = Path(dirpath).relative_to(root)
            for n in dirnames + sorted(filenames):
                names.append(str(rel / n) if str(rel) != "." else n)
        tmp_out = Path(tmp) / "initramfs.cpio"
        with open(tmp_out, "wb") as f:
            p = subprocess.run(
                [busybox, "cpio", "-o", "-H", "newc"],
                cwd=root,
                input="\n".join(names).encode() + b"\n",
                stdout=f,
                stderr=subprocess.PIPE,
                timeout=120,
            )
        if p.returncode != 0:
            raise ProvisionError(f"busybox cpio failed: {p.stderr.decode(errors='replace')[-2000:]}")
        tmp_out.replace(out)
    # drop stale images of the same kernel
    for old in out.parent.glob(f"initramfs-{kernel.kver}-*.cpio"):
        if old != out:
            old.unlink(missing_ok=True)
    timings["initramfs_build_s"] = time.monotonic() - t0
    return out


# --------------------------------------------------------------------------- entry points


def provision(cache: Path | None = None) -> Provisioned:
    """Make sure tools, kernel and initramfs are there (cached); ProvisionError otherwise."""
    cache = cache or cache_dir()
    timings: dict[str, float] = {}
    t0 = time.monotonic()
    tools = check_tools()
    from .mtty import ensure_mtty

    with _Lock(cache / ".provision.lock"):
        kernel = ensure_kernel(cache, timings)
        initramfs = ensure_initramfs(cache, kernel, tools, timings)
        mtty, mtty_error = None, None
        try:
            mtty = ensure_mtty(cache, kernel, timings)
        except ProvisionError as e:
            mtty_error = str(e)
    timings["provision_total_s"] = time.monotonic() - t0
    return Provisioned(cache, kernel, initramfs, tools, timings, mtty, mtty_error)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tests.realkernel.provision", description=__doc__.split("\n")[0])
    ap.add_argument("--check", action="store_true", help="only check the host tools")
    args = ap.parse_args(argv)
    try:
        if args.check:
            for tool, path in check_tools().items():
                print(f"{tool:20} {path}")
            return 0
        p = provision()
    except ProvisionError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(f"cache      {p.cache}")
    print(f"kernel     {p.kernel.package} {p.kernel.version} ({p.kernel.kver})")
    print(f"boot image {p.kernel.boot_image}")
    print(f"modules    {p.kernel.modules_dir}")
    print(f"initramfs  {p.initramfs}")
    print(f"mtty       {p.mtty or p.mtty_error}")
    for k, v in p.timings.items():
        print(f"{k:20} {v:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
