"""Starting a host process inside a pod's namespaces (the process runtime's sandbox).

The process runs through this file as a small launcher (`launcher(...)` + the command): it joins
the pod's network namespace, takes a UTS namespace of its own with the pod's hostname and, if
the pod has one, a mount namespace in which the pod's resolv.conf is bound over
/etc/resolv.conf (the mounts stay private to it), then execs the command. A launcher process,
not a `preexec_fn`: the agent has threads (netlink, the engine), and a child forked from a
threaded process may only exec, not call into libc. Python 3.11 has no `os.setns`/`os.unshare`,
hence libc through ctypes. The launcher imports nothing but the standard library.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

CLONE_NEWNS = 0x00020000
CLONE_NEWUTS = 0x04000000
CLONE_NEWNET = 0x40000000
MS_BIND = 4096
MS_REC = 16384
MS_PRIVATE = 1 << 18
FAILED_TO_ENTER = 126  # the shell's "cannot execute"


def launcher(netns_path: str, hostname: str, resolv_conf: str = "") -> list[str]:
    """The argv prefix that runs a command inside the pod's namespaces."""
    return [sys.executable, "-S", "-E", os.path.abspath(__file__), netns_path, hostname, resolv_conf, "--"]


def _check(result: int, what: str) -> None:
    if result != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"{what}: {os.strerror(errno)}")


def enter(netns_path: str, hostname: str, resolv_conf: str) -> None:
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    fd = os.open(netns_path, os.O_RDONLY)
    try:
        _check(libc.setns(fd, CLONE_NEWNET), "setns")
    finally:
        os.close(fd)
    _check(libc.unshare(CLONE_NEWUTS), "unshare(UTS)")
    name = hostname.encode()
    _check(libc.sethostname(name, len(name)), "sethostname")
    if resolv_conf:
        _check(libc.unshare(CLONE_NEWNS), "unshare(mount)")
        _check(libc.mount(b"none", b"/", None, MS_REC | MS_PRIVATE, None), "mount --make-rprivate /")
        bound = libc.mount(resolv_conf.encode(), b"/etc/resolv.conf", None, MS_BIND, None)
        _check(bound, "bind resolv.conf")


def main(argv: list[str]) -> None:
    netns_path, hostname, resolv_conf, separator, *command = argv
    if separator != "--" or not command:
        sys.exit(f"usage: {__file__} NETNS HOSTNAME RESOLV_CONF -- COMMAND...")
    try:
        enter(netns_path, hostname, resolv_conf)
        os.execvp(command[0], command)
    except OSError as err:
        print(f"cannot run {command[0]!r} in the pod's namespaces: {err}", file=sys.stderr)
        sys.exit(FAILED_TO_ENTER)


if __name__ == "__main__":
    main(sys.argv[1:])
