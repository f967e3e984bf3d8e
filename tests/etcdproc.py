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
import ssl
import subprocess
import tempfile
import time
import urllib.request

import pytest

from pocketkube.apiserver.certs import EtcdPKI
from pocketkube.cli import up

ETCD = shutil.which("etcd") or "/usr/bin/etcd"
etcd_missing = pytest.mark.skipif(not os.access(ETCD, os.X_OK), reason="etcd is not installed (apt-get install etcd-server)")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class EtcdProcess:
    """One etcd member on 127.0.0.1, run as `pocketkube up` runs it (up.etcd_argv); `url` is its
    client URL: plain HTTP, or HTTPS requiring a client certificate when given `pki`
    (certs.make_etcd_pki's files); `socket_url` its unix socket listener in the data dir (the
    one `up` gives the API server). `kill()` and `start()` again keep its ports and data."""

    def __init__(self, data_dir: str | None = None, pki: EtcdPKI | None = None):
        self._own_dir = data_dir is None
        self.data_dir = data_dir or tempfile.mkdtemp(prefix="pk-etcd-")
        os.makedirs(self.data_dir, exist_ok=True)
        os.chmod(self.data_dir, 0o700)  # the socket's access control, as `up`'s data dir
        self.pki = pki
        self.url = f"{'https' if pki else 'http'}://127.0.0.1:{free_port()}"
        self.peer_url = f"http://127.0.0.1:{free_port()}"
        self.log_path = os.path.join(self.data_dir, "etcd.log")
        self.socket_url = up.ETCD_UNIX + os.path.join(self.data_dir, up.etcd_socket("etcd"))
        self.proc: subprocess.Popen | None = None
        self.start()

    def start(self) -> None:
        if os.path.exists(self.socket_url[len(up.ETCD_UNIX):]):  # a killed etcd's socket (as up's "stale")
            os.unlink(self.socket_url[len(up.ETCD_UNIX):])
        with open(self.log_path, "ab") as log:
            tls = (self.pki.ca_cert, self.pki.server_cert, self.pki.server_key) if self.pki else None
            argv = up.etcd_argv("test", os.path.join(self.data_dir, "member-data"), self.url, self.peer_url, tls,
                                socket=up.etcd_socket("etcd"))
            self.proc = subprocess.Popen([ETCD, *argv[1:]], stdout=log, stderr=log, start_new_session=True,
                                         cwd=self.data_dir)
        context = None
        if self.pki:
            context = ssl.create_default_context(cafile=self.pki.ca_cert)
            context.load_cert_chain(self.pki.client_cert, self.pki.client_key)
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(self.url + "/health", timeout=2, context=context) as reply:
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


class EtcdCluster:
    """Three etcd members on 127.0.0.1, as `pocketkube up --etcd-members 3` runs them
    (up.etcd_argv): TLS for clients and between members (certs.make_etcd_pki's peer
    certificate). `urls` are the client URLs; `kill(i)` SIGKILLs member i by its PID."""

    def __init__(self, base_dir: str, pki: EtcdPKI, size: int = 3):
        self.base_dir = base_dir
        self.pki = pki
        ports = [free_port() for _ in range(2 * size)]
        self.urls = [f"https://127.0.0.1:{p}" for p in ports[:size]]
        self.peer_urls = [f"https://127.0.0.1:{p}" for p in ports[size:]]
        self.names = [f"test-{i}" for i in range(size)]
        initial = ",".join(f"{n}={u}" for n, u in zip(self.names, self.peer_urls))
        self.procs: list[subprocess.Popen] = []
        for i, name in enumerate(self.names):
            argv = up.etcd_argv(name, os.path.join(base_dir, name), self.urls[i], self.peer_urls[i],
                                (pki.ca_cert, pki.server_cert, pki.server_key), initial,
                                (pki.ca_cert, pki.peer_cert, pki.peer_key), "test-etcd")
            with open(os.path.join(base_dir, f"{name}.log"), "ab") as log:
                self.procs.append(subprocess.Popen([ETCD, *argv[1:]], stdout=log, stderr=log, start_new_session=True))
        context = ssl.create_default_context(cafile=pki.ca_cert)
        context.load_cert_chain(pki.client_cert, pki.client_key)
        deadline = time.monotonic() + 60
        for url in self.urls:
            while True:
                try:
                    with urllib.request.urlopen(url + "/health", timeout=2, context=context) as reply:
                        if b"true" in reply.read():
                            break
                except OSError:
                    pass
                if time.monotonic() > deadline or any(p.poll() is not None for p in self.procs):
                    self.stop()
                    raise RuntimeError("the etcd cluster did not start; see " + base_dir)
                time.sleep(0.1)

    def kill(self, index: int) -> None:
        proc = self.procs[index]
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                os.kill(proc.pid, signal.SIGTERM)
        for i, proc in enumerate(self.procs):
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                self.kill(i)
