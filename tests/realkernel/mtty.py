"""The kernel's sample mdev driver ``mtty``, built out of tree for the tier's kernel and cached.

Debian's kernel has the mdev core (``CONFIG_VFIO_MDEV=m``) but no sample driver; ``samples/vfio-mdev/mtty.c``
of the same kernel version builds against the matching headers in seconds and gives real mdev types
(``mtty-1``, ``mtty-2``). Steps, each only when ``<cache>/mtty/<kver>/mtty.ko`` is missing:

1. ``apt-get download`` the kernel's own version of ``linux-source-<major.minor>``, ``linux-headers-<kver>``,
   ``linux-headers-<abi>-common`` and ``linux-kbuild-<major.minor>`` (~150 MB, the source tarball nearly all);
2. stream ``samples/vfio-mdev/`` out of the source tarball (``dpkg-deb --fsys-tarfile | tar -xO | xz -dc |
   tar -x``, nothing else of it is written), ``dpkg -x`` the header packages;
3. point the headers' Makefile at the extracted common headers (it includes ``/usr/src/...`` by absolute
   path) and run ``make -C <headers> M=<dir> modules``, with the compiler the kernel was built with
   (``gcc-12``, from the headers' ``.kernelvariables``);
4. check the module's vermagic names the kernel release, keep ``mtty.ko``, drop the rest.

Host tools: ``make``, ``gcc-12``, ``xz``, ``dpkg-deb``/``dpkg`` (Debian packages make, gcc-12, xz-utils, dpkg;
``scripts/setup.sh test`` installs them).
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
import time
from pathlib import Path

from .provision import Kernel, ProvisionError, _log, _run, _which

TOOLS = {"make": "make", "gcc-12": "gcc-12", "xz": "xz-utils", "dpkg-deb": "dpkg", "tar": "tar", "modinfo": "kmod"}


def _tools() -> dict[str, str]:
    found = {t: _which(t) for t in TOOLS}
    missing = sorted({TOOLS[t] for t, p in found.items() if p is None})
    if missing:
        raise ProvisionError(
            f"mtty: missing host tools (Debian packages {' '.join(missing)}): "
            f"apt-get install --no-install-recommends {' '.join(missing)}"
        )
    return {t: p for t, p in found.items() if p}


def packages(kernel: Kernel) -> list[str]:
    """``pkg=version`` of the four packages, all of the kernel package's own version."""
    m = re.fullmatch(r"(\d+\.\d+)\.\d+-(\d+)-(.+)", kernel.kver)
    if not m:
        raise ProvisionError(f"mtty: cannot derive the header package names from the kernel release {kernel.kver}")
    series, abi = m[1], f"{m[1]}.0-{m[2]}"
    v = kernel.version
    return [
        f"linux-source-{series}={v}",
        f"linux-headers-{kernel.kver}={v}",
        f"linux-headers-{abi}-common={v}",
        f"linux-kbuild-{series}={v}",
    ]


def module_path(cache: Path, kernel: Kernel) -> Path:
    return cache / "mtty" / kernel.kver / "mtty.ko"


def ensure_mtty(cache: Path, kernel: Kernel, timings: dict[str, float]) -> Path:
    out = module_path(cache, kernel)
    if out.exists():
        return out
    tools = _tools()
    t0 = time.monotonic()
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out.parent, prefix=".build-") as tmp_text:
        tmp = Path(tmp_text)
        wanted = packages(kernel)
        _log(f"mtty: apt-get download {' '.join(wanted)}")
        _run(
            ["apt-get", "download", "-o", "APT::Sandbox::User=root", *wanted],
            cwd=tmp,
            what="apt-get download",
            timeout=900,
        )
        debs = {p.name.split("_")[0]: p for p in tmp.glob("*.deb")}
        source = next((p for n, p in debs.items() if n.startswith("linux-source-")), None)
        if source is None or len(debs) != 4:
            raise ProvisionError(f"mtty: apt-get download gave {sorted(debs)}, not the four packages {wanted}")
        series = source.name.split("_")[0].removeprefix("linux-source-")
        # Only samples/vfio-mdev of the ~1 GB source tree is written.
        pipeline = (
            f"set -o pipefail; {tools['dpkg-deb']} --fsys-tarfile {source} | {tools['tar']} -xO "
            f"./usr/src/linux-source-{series}.tar.xz | {tools['xz']} -dc | {tools['tar']} -x --wildcards "
            f"'linux-source-{series}/samples/vfio-mdev/*'"
        )
        _run(["bash", "-c", pipeline], cwd=tmp, what="mtty: source extraction", timeout=900)
        src = tmp / f"linux-source-{series}" / "samples" / "vfio-mdev" / "mtty.c"
        if not src.exists():
            raise ProvisionError(f"mtty: {source.name} has no samples/vfio-mdev/mtty.c")
        hdr = tmp / "headers"
        for name, deb in debs.items():
            if deb is not source:
                _run(["dpkg", "-x", str(deb), str(hdr)], what=f"dpkg -x {name}")
        kdir = hdr / "usr" / "src" / f"linux-headers-{kernel.kver}"
        makefile = kdir / "Makefile"
        makefile.write_text(makefile.read_text().replace("/usr/src/", f"{hdr}/usr/src/"))
        build = tmp / "build"
        build.mkdir()
        shutil.copy2(src, build / "mtty.c")
        (build / "Makefile").write_text("obj-m := mtty.o\n")
        _log("mtty: make modules")
        _run([tools["make"], "-C", str(kdir), f"M={build}", "modules"], what="mtty: make", timeout=900)
        vermagic = _run([tools["modinfo"], "-F", "vermagic", str(build / "mtty.ko")], what="modinfo").strip()
        if vermagic.split()[:1] != [kernel.kver]:
            raise ProvisionError(f"mtty: built for {vermagic!r}, not {kernel.kver}")
        tmp_ko = out.with_suffix(".tmp")
        shutil.copy2(build / "mtty.ko", tmp_ko)
        os.replace(tmp_ko, out)
    timings["mtty_build_s"] = time.monotonic() - t0
    return out
