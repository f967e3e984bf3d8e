"""The agent's side of the sandbox spawner (nsinit.py run on its own, `nsinit_command`): one small process,
started on first use and again if it died, that forks pod holders and container processes on
request (one JSON line each, answered by "<id> ok <pid>" or "<id> error <why>").
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys

import orjson

NSINIT_DIR = os.path.dirname(os.path.abspath(__file__))


def nsinit_command(*args: str) -> list[str]:
    """The command that runs nsinit.py with `args` (none: the spawner; `--exec CONFIG`: an exec
    session). An interpreter that loads no site (-I -S) imports it as a module, so its compiled
    bytecode is used: run as a script it was compiled at each start, ~15 ms of every exec session
    and exec probe. Its directory goes last on the path: the standard library comes first."""
    boot = f"import sys; sys.path.append({NSINIT_DIR!r}); import nsinit; sys.exit(nsinit.main(sys.argv[1:]))"
    return [sys.executable, "-I", "-S", "-c", boot, *args]


class SpawnError(Exception):
    """The spawner could not start a holder (the sandbox manager's FailedCreatePodSandBox)."""


def _kill_unwanted(answer: "asyncio.Future[str]") -> None:
    """The answer to a request given up on (cancelled, timed out): kill what it started."""
    status, _, detail = ("" if answer.cancelled() else answer.result()).partition(" ")
    pid = detail.split(" ", 1)[0]
    if not pid.isdigit() or int(pid) <= 0:
        return
    if status == "ok":
        try:
            os.kill(int(pid), signal.SIGKILL)
        except ProcessLookupError:
            pass
    try:
        os.waitpid(int(pid), 0)  # a container's process is this process' child
    except ChildProcessError:
        pass


class Spawner:
    """The agent's side of the sandbox spawner process (see the module docstring)."""

    def __init__(self):
        self.proc = None
        self.pending: dict[str, object] = {}
        self.counter = 0
        self.reader = None
        self.starting = None

    async def _ensure(self) -> None:
        if self.starting is None:
            self.starting = asyncio.Lock()
        async with self.starting:  # one spawner, however many pods ask at once
            if self.proc is not None and self.proc.returncode is None and not self.proc.stdout.at_eof():
                return
            self.proc = await asyncio.create_subprocess_exec(
                *nsinit_command(), stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL, start_new_session=True)
            self.reader = asyncio.create_task(self._read(self.proc), name="sandbox-spawner")

    async def _read(self, proc) -> None:
        while line := await proc.stdout.readline():
            request_id, _, rest = line.decode(errors="replace").strip().partition(" ")
            future = self.pending.pop(request_id, None)
            if future is not None and not future.done():
                future.set_result(rest)
        for future in self.pending.values():
            if not future.done():
                future.set_result("error the sandbox spawner exited")
        self.pending.clear()

    async def _request(self, config: dict) -> tuple[str, str]:
        """Send one request; returns the answer's status ("ok" or "error") and the rest."""
        await self._ensure()
        self.counter += 1
        request_id = str(self.counter)
        future = asyncio.get_running_loop().create_future()
        self.pending[request_id] = future
        self.proc.stdin.write(b"%s %s\n" % (request_id.encode(), orjson.dumps(config)))
        try:
            await self.proc.stdin.drain()
            answer = await asyncio.wait_for(asyncio.shield(future), 30)
        except BaseException:
            future.add_done_callback(_kill_unwanted)  # what starts after all must not live on
            raise
        status, _, detail = answer.partition(" ")
        return status, detail

    async def spawn(self, config: dict) -> int:
        """Start a holder for `config`; returns its pid."""
        status, detail = await self._request(config)
        if status != "ok":
            raise SpawnError("failed to create pod sandbox: " + detail)
        return int(detail)

    async def start_container(self, config: dict) -> int:
        """Start a container's main process (`_start_container`: holder_pid, pid_namespace,
        program, argv, env, working_dir, cgroup, log_path, stdin_fd / tty_fd: fds of this
        process, open until this returns); returns its pid, a child of this process. Raises
        OSError with the reason it could not start (a failed child is reaped here)."""
        status, detail = await self._request({**config, "kind": "container", "agent_pid": os.getpid()})
        if status == "ok":
            return int(detail)
        pid, _, message = detail.partition(" ")
        if not pid.isdigit():
            raise OSError(detail)
        if int(pid) > 0:
            try:
                os.waitpid(int(pid), 0)
            except ChildProcessError:
                pass
        raise OSError(message)

    async def close(self) -> None:
        """Stop the spawner (the holders it started keep running)."""
        if self.proc is None:
            return
        if self.proc.returncode is None:
            self.proc.stdin.close()
            await self.proc.wait()
        if self.reader is not None:
            await self.reader
        self.proc = None
