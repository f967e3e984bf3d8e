"""Linux helpers every component shares: entering a namespace (setns), atomic file writes,
reading procfs (a process's start time, whether it is still the same process) and removing a
tree without crossing mount points. Standard library only; no state.
"""

from __future__ import annotations

import ctypes
import os

CLONE_NEWNET = 0x40000000
PF_EXITING = 0x4  # in /proc/<pid>/stat's flags


def setns(path: str, nstype: int = CLONE_NEWNET) -> None:
    """Move the calling thread into the namespace at `path` (setns(2))."""
    libc = ctypes.CDLL(None, use_errno=True)
    fd = os.open(path, os.O_RDONLY)
    try:
        if libc.setns(fd, nstype) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"setns {path}: {os.strerror(err)}")
    finally:
        os.close(fd)


def write_atomic(path: str, data: bytes | str, mode: int = 0o644) -> None:
    """Replace `path` with `data` at once: readers see the old file or the new one, never half.
    The file is created with `mode` (never readable by others first when private)."""
    tmp = f"{path}.tmp{os.getpid()}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as f:
        f.write(data.encode() if isinstance(data, str) else data)
    os.chmod(tmp, mode)
    os.replace(tmp, path)


def proc_stat(pid: int | str) -> list[bytes] | None:
    """The fields of /proc/PID/stat after the command name (the first is the state, the second
    the parent's pid, the 20th the start time), or None when the process is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return None
    fields = data[data.rfind(b")") + 2:].split()
    return fields if len(fields) > 19 else None


def process_start_ticks(pid: int) -> int | None:
    """A process's start time (clock ticks since boot): with the pid, it names a process
    for good, even if the pid is reused later. None for a process that is gone, a zombie
    or exiting (the init of a PID namespace exits only once the others are reaped)."""
    fields = proc_stat(pid)
    if fields is None or fields[0] in (b"Z", b"X") or int(fields[6]) & PF_EXITING:
        return None
    return int(fields[19])


def process_alive(pid: int, start_ticks: int | None) -> bool:
    return pid > 0 and start_ticks is not None and process_start_ticks(pid) == start_ticks


def remove_tree(path: str) -> None:
    """rm -rf that never crosses into a mount point (a pod's mounts live in its own mount
    namespace, but this stays safe even if one were visible here)."""
    if not os.path.lexists(path):
        return
    if os.path.islink(path) or not os.path.isdir(path):
        os.unlink(path)
        return
    if os.path.ismount(path):
        return
    for entry in os.scandir(path):
        if entry.is_dir(follow_symlinks=False):
            remove_tree(entry.path)
        else:
            try:
                os.unlink(entry.path)
            except FileNotFoundError:
                pass
    try:
        os.rmdir(path)
    except OSError:
        pass


def read_text(path: str) -> str:
    """The file's text, or "" when it cannot be read."""
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return ""
