"""Network namespaces from Python threads: setns(2) for the calling thread only.

A socket belongs to the namespace of the thread that created it, so a component that needs
sockets in another namespace (the agent's port-forward, the userspace proxy run from outside
its node) moves one thread of its own there and makes them in it.
"""

from __future__ import annotations

import ctypes
import os

CLONE_NEWNET = 0x40000000


def enter_netns(path: str) -> None:
    """Move the calling thread into the network namespace at path (unless it is there)."""
    mine, theirs = os.stat("/proc/thread-self/ns/net"), os.stat(path)
    if (mine.st_dev, mine.st_ino) == (theirs.st_dev, theirs.st_ino):
        return
    libc = ctypes.CDLL(None, use_errno=True)
    fd = os.open(path, os.O_RDONLY)
    try:
        if libc.setns(fd, CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"setns {path}: {os.strerror(err)}")
    finally:
        os.close(fd)
