"""Running Debian's nginx as the Ingress data plane: write a candidate configuration, check it
with `nginx -t`, put it in place and reload nginx gracefully (SIGHUP: old workers finish their
requests); a rejected configuration leaves the last good one running. nginx runs in the
foreground as the controller's child in a process group of its own, its logs going to the
controller's (the container's) output; when the master dies, its orphaned workers (which would
go on serving the old configuration) are killed with the group, and nginx is started again
after a short back-off.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import time

from pocketkube.core.linux import write_atomic
from pocketkube.ingress import certificates
from pocketkube.ingress.nginxconf import Layout

log = logging.getLogger(__name__)

NGINX = "/usr/sbin/nginx"
RESTART_BACKOFF = (0.1, 0.5, 1.0, 2.0, 5.0)


class ConfigRejected(Exception):
    """`nginx -t` refused a configuration; the message is nginx's."""


def _write(path: str, data: bytes, mode: int = 0o600) -> None:
    write_atomic(path, data, mode)


class Nginx:
    def __init__(self, layout: Layout, binary: str = NGINX, default_certificate: tuple[bytes, bytes] | None = None):
        self.layout = layout
        self.binary = binary
        self.conf = os.path.join(layout.work_dir, "nginx.conf")
        self._default_certificate = default_certificate
        self.process: asyncio.subprocess.Process | None = None
        self.text = ""              # the configuration nginx runs
        self.reloads = 0
        self.restarts = 0
        self._watch: asyncio.Task | None = None
        self._stopping = False
        self.running = asyncio.Event()

    def prepare(self) -> None:
        """Directories, and the default certificate (made once, kept across restarts)."""
        for d in (self.layout.work_dir, self.layout.ssl_dir, os.path.join(self.layout.work_dir, "tmp")):
            os.makedirs(d, exist_ok=True)
        if not os.path.exists(self.layout.default_certificate):
            cert, key = self._default_certificate or certificates.fake_certificate()
            _write(self.layout.default_certificate, cert + key)

    async def check(self, text: str, files: dict[str, bytes], name: str = "candidate") -> None:
        """Write the certificates and the candidate (`nginx.conf.NAME`); raise ConfigRejected
        with nginx's message."""
        for path, content in files.items():
            if not os.path.exists(path):
                _write(path, content)
        candidate = f"{self.conf}.{name}"
        _write(candidate, text.encode(), 0o644)
        proc = await asyncio.create_subprocess_exec(self.binary, "-t", "-q", "-e", "stderr", "-c", candidate,
                                                    stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
        _, err = await proc.communicate()
        if proc.returncode != 0:
            message = " ".join(line.removeprefix("nginx: ") for line in err.decode(errors="replace").splitlines()
                               if "test failed" not in line)
            raise ConfigRejected(message.replace(candidate, "nginx.conf").strip())

    async def apply(self, text: str, files: dict[str, bytes]) -> bool:
        """Check and load a configuration; False when it is the one running already."""
        if text == self.text and self.process is not None and self.process.returncode is None:
            return False
        await self.check(text, files)
        os.replace(self.conf + ".candidate", self.conf)
        self.text = text
        if self.process is None or self.process.returncode is not None:
            await self._start()
        else:
            self.process.send_signal(signal.SIGHUP)
            self.reloads += 1
        self._prune_certificates(files)
        return True

    def _prune_certificates(self, files: dict[str, bytes]) -> None:
        keep = set(files) | {self.layout.default_certificate}
        for name in os.listdir(self.layout.ssl_dir):
            path = os.path.join(self.layout.ssl_dir, name)
            if path not in keep and name.endswith(".pem"):
                os.unlink(path)

    async def _spawn(self) -> asyncio.subprocess.Process:
        # -e stderr: not the compiled-in /var/log/nginx/error.log, which the image does not have
        return await asyncio.create_subprocess_exec(self.binary, "-e", "stderr", "-c", self.conf,
                                                    "-g", "daemon off; master_process on;", start_new_session=True)

    @staticmethod
    def _kill_group(proc: asyncio.subprocess.Process) -> None:
        """SIGKILL what is left of nginx's process group (our child's own group)."""
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass

    async def _start(self) -> None:
        self.process = await self._spawn()
        self.running.set()
        if self._watch is None:
            self._watch = asyncio.get_running_loop().create_task(self._keep_running())

    async def _keep_running(self) -> None:
        failures = 0
        while not self._stopping:
            proc = self.process
            if proc is None:
                return
            started = time.monotonic()
            code = await proc.wait()
            self._kill_group(proc)
            if self._stopping:
                return
            self.running.clear()
            failures = 0 if time.monotonic() - started > 10 else failures + 1
            delay = RESTART_BACKOFF[min(failures, len(RESTART_BACKOFF) - 1)]
            log.warning("nginx exited with %s; starting it again in %.1f s", code, delay)
            await asyncio.sleep(delay)
            if self._stopping:
                return
            self.restarts += 1
            try:
                self.process = await self._spawn()
                self.running.set()
            except OSError as exc:
                log.error("cannot start nginx: %s", exc)

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.returncode is None

    async def stop(self) -> None:
        """SIGQUIT (graceful), then SIGKILL after 5 s."""
        self._stopping = True
        proc = self.process
        if proc is not None and proc.returncode is None:
            proc.send_signal(signal.SIGQUIT)
            try:
                await asyncio.wait_for(proc.wait(), 5)
            except asyncio.TimeoutError:
                proc.kill()
                await proc.wait()
        if proc is not None:
            self._kill_group(proc)
        if self._watch is not None:
            self._watch.cancel()
            await asyncio.gather(self._watch, return_exceptions=True)
