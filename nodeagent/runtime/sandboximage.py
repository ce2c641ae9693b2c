"""The image of the pod sandboxes the Docker runtime makes (the kubelet's pause image).

No registry is needed: the image is imported once into the engine from the host's static
busybox (Debian's busybox-static), holding `sh` and `sleep` only. Its one process sleeps and
exits at once on SIGTERM.
"""

from __future__ import annotations

import io
import shutil
import tarfile
from pathlib import Path

SANDBOX_IMAGE = "steer-sandbox:local"
SANDBOX_COMMAND = ["/bin/sh", "-c", "trap 'exit 0' TERM INT; while :; do sleep 3600 & wait $!; done"]
BUSYBOX_CANDIDATES = ("/bin/busybox", "/usr/bin/busybox")


class NoBusybox(Exception):
    pass


def _busybox() -> Path:
    for candidate in (*BUSYBOX_CANDIDATES, shutil.which("busybox") or ""):
        if candidate and Path(candidate).is_file():
            return Path(candidate)
    raise NoBusybox("no busybox on this host to make the sandbox image from (install busybox-static)")


def sandbox_image_tar() -> bytes:
    """A root filesystem with /bin/busybox, /bin/sh and /bin/sleep, as a tar archive."""
    binary = _busybox().read_bytes()
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tar:
        folder = tarfile.TarInfo("bin")
        folder.type, folder.mode = tarfile.DIRTYPE, 0o755
        tar.addfile(folder)
        entry = tarfile.TarInfo("bin/busybox")
        entry.size, entry.mode = len(binary), 0o755
        tar.addfile(entry, io.BytesIO(binary))
        for applet in ("sh", "sleep"):
            link = tarfile.TarInfo(f"bin/{applet}")
            link.type, link.linkname = tarfile.SYMTYPE, "busybox"
            tar.addfile(link)
    return out.getvalue()
