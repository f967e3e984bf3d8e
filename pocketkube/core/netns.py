"""Network namespaces from Python threads: setns(2) for the calling thread only.

A socket belongs to the namespace of the thread that created it, so a component that needs
sockets in another namespace (the agent's port-forward, the userspace proxy run from outside
its node) moves one thread of its own there and makes them in it.
"""

from __future__ import annotations

import os
import socket
import threading

from pocketkube.core.linux import CLONE_NEWNET, setns


def enter_netns(path: str) -> None:
    """Move the calling thread into the network namespace at path (unless it is there)."""
    mine, theirs = os.stat("/proc/thread-self/ns/net"), os.stat(path)
    if (mine.st_dev, mine.st_ino) == (theirs.st_dev, theirs.st_ino):
        return
    setns(path, CLONE_NEWNET)


def socket_in(path: str | None, family: int, kind: int, proto: int = 0) -> socket.socket:
    """A socket of the network namespace at `path` (None, or the calling thread's own: made
    here). Made by a short-lived thread that enters the namespace, so no thread of the caller
    changes namespace; the socket keeps working in the namespace it was made in."""
    if path is None or _same_file(path, "/proc/thread-self/ns/net"):
        return socket.socket(family, kind, proto)
    result: dict = {}

    def enter_and_open() -> None:
        try:
            enter_netns(path)
            result["sock"] = socket.socket(family, kind, proto)
        except BaseException as exc:  # handed to the caller
            result["error"] = exc

    thread = threading.Thread(target=enter_and_open, name="socket-in-netns")
    thread.start()
    thread.join()
    if "error" in result:
        raise result["error"]
    return result["sock"]


def _same_file(a: str, b: str) -> bool:
    try:
        sa, sb = os.stat(a), os.stat(b)
    except OSError:
        return False
    return (sa.st_dev, sa.st_ino) == (sb.st_dev, sb.st_ino)
