"""Upstream kube-apiserver (v1.20.2) on Debian's etcd, on loopback: the API peer bench/api.py
measures pocketkube's server against.

`scripts/kube-apiserver-peer` builds the binary on first use into a cache outside the checkout
and prints its path (it says where its build log is); etcd is Debian's `etcd-server`, which
scripts/setup installs. Each run gets a temporary directory on tmpfs (/dev/shm) holding etcd's
data, the certificates (pocketkube's own CA and serving-certificate code: ECDSA P-256, as
pocketkube serves), a service-account signing key and a token file naming the client
`kubernetes-admin` in `system:masters`, the identity pocketkube's admin token has. tmpfs because
etcd fsyncs every commit while pocketkube's SQLite (synchronous=NORMAL) does not: on tmpfs
neither pays for the disk, so the servers are what is compared.

    with KubeAPIServer(cpu=0, authorization_mode="RBAC") as peer:
        peer.url, peer.ca, peer.token, peer.pids   # pids: kube-apiserver's, then etcd's
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import time
import urllib.error
import urllib.request

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from pocketkube.apiserver import certs

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def binary() -> str:
    """The kube-apiserver's path, built first if it is not yet (the script says so, on stderr)."""
    out = subprocess.run([os.path.join(ROOT, "scripts", "kube-apiserver-peer")], check=True,
                         stdout=subprocess.PIPE, text=True)
    return out.stdout.strip().splitlines()[-1]


class KubeAPIServer:
    """kube-apiserver and its etcd, both pinned to `cpu` (None: not pinned), started on enter,
    stopped (process groups, then the directory removed) on exit."""

    def __init__(self, cpu: int | None = None, authorization_mode: str = "RBAC"):
        self.cpu = cpu
        self.authorization_mode = authorization_mode
        self.dir = ""
        self.procs: list[subprocess.Popen] = []
        self.url = self.ca = self.token = ""

    @property
    def pids(self) -> list[int]:
        """kube-apiserver's, then etcd's."""
        return [p.pid for p in reversed(self.procs)]

    def __enter__(self) -> "KubeAPIServer":
        etcd = shutil.which("etcd")
        if etcd is None:
            raise SystemExit("bench.api: etcd is not installed; scripts/setup installs it (Debian's etcd-server)")
        kube_apiserver = binary()
        self.dir = tempfile.mkdtemp(prefix="pk-bench-kube-apiserver-", dir="/dev/shm")
        try:
            self._start(etcd, kube_apiserver)
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def _start(self, etcd: str, kube_apiserver: str) -> None:
        d = self.dir
        pki = certs.ensure_pki(os.path.join(d, "pki"), ["127.0.0.1", "localhost"])
        self.ca = pki.ca_cert
        sa_key, sa_pub = os.path.join(d, "pki", "sa.key"), os.path.join(d, "pki", "sa.pub")
        key = ec.generate_private_key(ec.SECP256R1())
        with open(sa_key, "wb") as f:
            f.write(certs.pem(key=key))
        with open(sa_pub, "wb") as f:
            f.write(key.public_key().public_bytes(serialization.Encoding.PEM,
                                                  serialization.PublicFormat.SubjectPublicKeyInfo))
        self.token = secrets.token_hex(24)
        tokens = os.path.join(d, "tokens.csv")
        with open(tokens, "w") as f:
            f.write(f'{self.token},kubernetes-admin,kubernetes-admin,"system:masters"\n')
        pin = ["taskset", "-c", str(self.cpu)] if self.cpu is not None else []
        client, peer, port = free_port(), free_port(), free_port()
        etcd_url = f"http://127.0.0.1:{client}"
        self._spawn("etcd", pin + [
            etcd, "--name", "bench", "--data-dir", os.path.join(d, "etcd"),
            "--listen-client-urls", etcd_url, "--advertise-client-urls", etcd_url,
            "--listen-peer-urls", f"http://127.0.0.1:{peer}",
            "--initial-advertise-peer-urls", f"http://127.0.0.1:{peer}",
            "--initial-cluster", f"bench=http://127.0.0.1:{peer}"])
        self._wait(f"{etcd_url}/health", "etcd", None)
        self._spawn("kube-apiserver", pin + [
            kube_apiserver, "--etcd-servers", etcd_url,
            "--bind-address", "127.0.0.1", "--advertise-address", "127.0.0.1",
            "--secure-port", str(port), "--insecure-port", "0",
            "--tls-cert-file", pki.server_cert, "--tls-private-key-file", pki.server_key,
            "--token-auth-file", tokens, "--authorization-mode", self.authorization_mode,
            "--service-account-issuer", "https://kubernetes.default.svc.cluster.local",
            "--service-account-signing-key-file", sa_key, "--service-account-key-file", sa_pub,
            "--service-cluster-ip-range", "10.96.0.0/12"])
        self.url = f"https://127.0.0.1:{port}"
        # Ready, and the bootstrap controller has made the namespace the bench writes into.
        self._wait(f"{self.url}/api/v1/namespaces/default", "kube-apiserver", ssl.create_default_context(cafile=self.ca))

    def _spawn(self, name: str, argv: list[str]) -> None:
        log = open(os.path.join(self.dir, f"{name}.log"), "ab")
        self.procs.append(subprocess.Popen(argv, stdout=log, stderr=log, stdin=subprocess.DEVNULL,
                                           start_new_session=True))
        log.close()

    def _wait(self, url: str, name: str, ctx: ssl.SSLContext | None, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.procs[-1].poll() is not None:
                break
            req = urllib.request.Request(url, headers={"Authorization": f"Bearer {self.token}"})
            try:
                with urllib.request.urlopen(req, timeout=5, context=ctx) as r:
                    if r.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.3)
        with open(os.path.join(self.dir, f"{name}.log"), errors="replace") as f:
            tail = f.read()[-3000:]
        raise RuntimeError(f"{name} did not become ready; the end of its log:\n{tail}")

    def __exit__(self, *exc) -> None:
        for proc in reversed(self.procs):  # kube-apiserver first, then etcd
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
                try:
                    proc.wait(15)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait()
        self.procs = []
        if self.dir:
            shutil.rmtree(self.dir, ignore_errors=True)
            self.dir = ""
