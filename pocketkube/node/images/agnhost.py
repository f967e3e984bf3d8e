"""The Kubernetes e2e suite's test images: agnhost, and httpd as the suite uses it.

- registry.k8s.io/e2e-test-images/agnhost (and k8s.gcr.io/e2e-test-images/agnhost, the 1.20
  suite's 2.21): the bundled program programs/agnhost.py with upstream's subcommands. The image
  is laid out as upstream's: ENTRYPOINT ["/agnhost"], CMD ["pause"], /agnhost and /agnhost-2 as
  programs of the pod (so `kubectl exec ... -- /agnhost connect HOST:PORT` works), /uploads for
  netexec, /localhost.crt and /localhost.key for porter's TLS ports (a self-signed certificate
  for 127.0.0.1, ::1 and localhost, made once per node with openssl). Upstream builds it on
  alpine with bind-tools, curl, netcat-openbsd, iproute2 and bash: the pod's /bin is busybox's
  applets, as in alpine, with this machine's nc (netcat-openbsd), dig, nslookup, host, ip, ss,
  bash and getent (alpine's musl-utils has it; the DNS tests' queriers run `getent hosts`) over
  them. Its /coredns (CoreDNS, which agnhost images carry for the DNS tests' server pods) is
  the bundled programs/coredns.py: `-conf` Corefiles with the hosts plugin.
- httpd (docker.io/library/httpd, the suite's 2.4.38-alpine webserver): the bundled program
  serving the pod's own /usr/local/apache2/htdocs ("It works!") on 80 as Apache does, with
  alpine's busybox as /bin (the StatefulSet tests `mv -v` index.html away to fail the readiness
  probe).
"""

from __future__ import annotations

import os
import shlex
import subprocess

from pocketkube.node.images import PROGRAMS_DIR, ImageConfig, ImageContext, file_size, python_holds, python_program
from pocketkube.node.images.busybox import BUSYBOX_PATH, bin_dir_holds, ensure_bin_dir

AGNHOST = ("registry.k8s.io/e2e-test-images/agnhost", "k8s.gcr.io/e2e-test-images/agnhost",
           "gcr.io/kubernetes-e2e-test-images/agnhost")
HTTPD = ("httpd",)
NAMES = AGNHOST + HTTPD
HEADLINE = ("registry.k8s.io/e2e-test-images/agnhost", "httpd")

AGNHOST_PROGRAMS = ("nc=nc.openbsd", "dig", "nslookup", "host", "ip", "ss", "bash", "curl", "getent")
# Debian builds busybox's mv without -v, alpine's has it: the StatefulSet tests fail a readiness
# probe with `mv -v .../htdocs/index.html /tmp/ || true`, so mv is this machine's (coreutils).
HTTPD_PROGRAMS = ("mv",)
HTDOCS = "/usr/local/apache2/htdocs"
IT_WORKS = b"<html><body><h1>It works!</h1></body></html>\n"


def localhost_certificate(cache_dir: str) -> tuple[str, str] | None:
    """The node's self-signed certificate and key for localhost (made once), or None without openssl."""
    crt, key = os.path.join(cache_dir, "agnhost-localhost.crt"), os.path.join(cache_dir, "agnhost-localhost.key")
    if os.path.exists(crt) and os.path.exists(key):
        return crt, key
    os.makedirs(cache_dir, exist_ok=True)
    tmp = f".{os.getpid()}.tmp"
    try:
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "36500",
                        "-subj", "/CN=localhost", "-addext", "subjectAltName=IP:127.0.0.1,IP:::1,DNS:localhost",
                        "-keyout", key + tmp, "-out", crt + tmp], capture_output=True, timeout=60, check=True)
    except (OSError, subprocess.SubprocessError):
        return None
    os.replace(key + tmp, key)
    os.replace(crt + tmp, crt)
    return crt, key


def _read(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()


def agnhost_config(ctx: ImageContext) -> ImageConfig:
    run = python_program(ctx, program="agnhost.py")
    run_as_2 = python_program(ctx, "--as", "/agnhost-2", program="agnhost.py")
    scripts = {"/agnhost": run, "/agnhost-2": run_as_2}
    files = {os.path.join(ctx.run_dir, name.lstrip("/")): f'#!/bin/sh\nexec {shlex.join(argv)} "$@"\n'.encode()
             for name, argv in scripts.items()}
    mounts = {name: os.path.join(ctx.run_dir, name.lstrip("/")) for name in scripts}
    uploads = os.path.join(ctx.run_dir, "uploads")
    os.makedirs(uploads, exist_ok=True)
    mounts["/uploads"] = uploads
    certificate = localhost_certificate(ctx.cache_dir)
    if certificate:
        for name, source in zip(("localhost.crt", "localhost.key"), certificate):
            files[os.path.join(ctx.run_dir, name)] = _read(source)
            mounts["/" + name] = os.path.join(ctx.run_dir, name)
    mounts["/bin"] = ensure_bin_dir(ctx.cache_dir, AGNHOST_PROGRAMS)
    programs = {"/agnhost": run, "./agnhost": run, "agnhost": run, "/agnhost-2": run_as_2, "./agnhost-2": run_as_2,
                "/coredns": python_program(ctx, program="coredns.py")}
    return ImageConfig(entrypoint=["/agnhost"], cmd=["pause"], env={"PATH": BUSYBOX_PATH}, programs=programs,
                       files=files, mounts=mounts, holds=python_holds(ctx) + bin_dir_holds(AGNHOST_PROGRAMS),
                       size=file_size(os.path.join(PROGRAMS_DIR, "agnhost.py")))


def httpd_config(ctx: ImageContext) -> ImageConfig:
    htdocs = os.path.join(ctx.run_dir, "htdocs")
    run = python_program(ctx, "httpd", ctx.ref.effective_tag.partition("-")[0])
    env = {"PATH": "/usr/local/apache2/bin:" + BUSYBOX_PATH, "HTTPD_PREFIX": "/usr/local/apache2"}
    if ctx.ref.effective_tag[:1].isdigit():
        env["HTTPD_VERSION"] = ctx.ref.effective_tag.partition("-")[0]
    return ImageConfig(cmd=["httpd-foreground"], env=env, working_dir="/usr/local/apache2",
                       programs={"httpd-foreground": run, "/usr/local/bin/httpd-foreground": run},
                       files={os.path.join(htdocs, "index.html"): IT_WORKS},
                       mounts={HTDOCS: htdocs, "/bin": ensure_bin_dir(ctx.cache_dir, HTTPD_PROGRAMS)},
                       holds=python_holds(ctx) + bin_dir_holds(HTTPD_PROGRAMS),
                       size=file_size(os.path.join(PROGRAMS_DIR, "webapps.py")))


def image_config(ctx: ImageContext) -> ImageConfig:
    return httpd_config(ctx) if ctx.ref.name in HTTPD else agnhost_config(ctx)
