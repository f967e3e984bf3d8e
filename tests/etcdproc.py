"""A throwaway etcd for tests: Debian's `etcd` binary on free loopback ports with a temporary
data dir, started in its own process group and stopped by its PID.

`etcd_missing` is the skip mark for tests that need it (only when the binary is absent; CI
installs etcd-server through scripts/setup). The `etcd_server` fixture (tests/conftest.py)
gives one per test.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.request

import pytest

ETCD = shutil.which("etcd") or "/usr/bin/etcd"
etcd_missing = pytest.mark.skipif(not os.access(ETCD, os.X_OK), reason="etcd is not installed (apt-get install etcd-server)")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class EtcdProcess:
    """One etcd member on 127.0.0.1; `url` is its client URL (plain HTTP). `kill()` and
    `start()` again keep its ports and data (a restart)."""

    def __init__(self, data_dir: str | None = None):
        self._own_dir = data_dir is None
        self.data_dir = data_dir or tempfile.mkdtemp(prefix="pk-etcd-")
        os.makedirs(self.data_dir, exist_ok=True)
        self.url = f"http://127.0.0.1:{free_port()}"
        self.peer_url = f"http://127.0.0.1:{free_port()}"
        self.log_path = os.path.join(self.data_dir, "etcd.log")
        self.proc: subprocess.Popen | None = None
        self.start()

    def start(self) -> None:
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [ETCD, "--name", "test", "--data-dir", os.path.join(self.data_dir, "member-data"),
                 "--listen-client-urls", self.url, "--advertise-client-urls", self.url,
                 "--listen-peer-urls", self.peer_url, "--initial-advertise-peer-urls", self.peer_url,
                 "--initial-cluster", f"test={self.peer_url}", "--logger", "zap", "--log-level", "warn"],
                stdout=log, stderr=log, start_new_session=True)
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(self.url + "/health", timeout=2) as reply:
                    if b"true" in reply.read():
                        return
            except OSError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                with open(self.log_path) as f:
                    raise RuntimeError("etcd did not start:\n" + f.read()[-3000:])
            time.sleep(0.05)

    def kill(self) -> None:
        """SIGKILL, by PID: a crash."""
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()
        if self._own_dir:
            shutil.rmtree(self.data_dir, ignore_errors=True)
