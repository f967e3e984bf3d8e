"""The node agent's streaming server (the kubelet's :10250): logs, exec, attach, port-forward.

`StreamingServer(pods, host=..., port=10250, token=...)` is a component (`start`, `stop`,
`ready`) serving plain HTTP on the node address; the API server is its only client and
proves it with `Authorization: Bearer <token>` (the cluster token) when a token is set.
Routes, as the kubelet's (always with the pod UID, so the agent needs no pod lookup):

    GET       /containerLogs/{namespace}/{pod}/{uid}/{container}?follow&tailLines&...
    GET       /logs/[PATH]   the node's log directory (PodManager.log_files), listed and served
                             as the kubelet's http.FileServer serves /var/log
    GET|POST  /exec/{namespace}/{pod}/{uid}/{container}?command=...&stdin&stdout&stderr&tty
    GET|POST  /attach/{namespace}/{pod}/{uid}/{container}?stdin&stdout&stderr&tty
    GET|POST  /portForward/{namespace}/{pod}/{uid}

GET with `Upgrade: websocket` speaks the channel protocols: for exec/attach v5.channel.k8s.io,
v4.channel.k8s.io and the older channel.k8s.io (an error as text, not a Status), each also in
its base64 form; for port-forward v4.channel.k8s.io (a data and an error channel per
requested `port`, each opened with the port as 2 little-endian bytes, as the kubelet does) or
SPDY/3.1 tunnelled in WebSocket (SPDY/3.1+portforward.k8s.io). POST with `Upgrade: SPDY/3.1`
speaks SPDY (kubectl-compat.md F.1-F.3). The pods themselves are reached through the PodManager
(node.md): exec_command, attach, read_logs, container_pid, pod_netns_path.
"""

from __future__ import annotations

import abc
import asyncio
import fcntl
import hmac
import html
import json
import logging
import os
import pty
import shlex
import signal
import socket
import struct
import termios
import threading
import urllib.parse
from typing import AsyncIterator, Protocol

import orjson
from aiohttp import WSMsgType, web

from pocketkube.core.upgrade import hijack
from pocketkube.core.netns import enter_netns
from pocketkube.core.query import query_bool
from pocketkube.node import spdy, wsstream

log = logging.getLogger(__name__)

V5, V4 = "v5.channel.k8s.io", "v4.channel.k8s.io"
# What a WebSocket exec/attach may negotiate, best first ("" is a client that names none).
CHANNEL_PROTOCOLS = (V5, V4, "v4.base64.channel.k8s.io", "channel.k8s.io", "base64.channel.k8s.io")
SPDY_EXEC_PROTOCOL = V4  # v4 semantics over SPDY: Status on the error stream
PORT_FORWARD_WS_PROTOCOL = "SPDY/3.1+portforward.k8s.io"
PORT_FORWARD_CHANNEL_PROTOCOLS = (V4, "v4.base64.channel.k8s.io")
PORT_FORWARD_PROTOCOL = "portforward.k8s.io"
STDIN, STDOUT, STDERR, ERROR, RESIZE, CLOSE = 0, 1, 2, 3, 4, 255
STREAM_CREATION_TIMEOUT = 30.0
OUTPUT_DRAIN_TIMEOUT = 2.0  # after the process exits, how long its children may keep output open
SUCCESS = {"metadata": {}, "status": "Success"}


class AttachHandle(Protocol):
    """A container's main process streams, as PodManager.attach returns them."""

    tty: bool

    async def write_stdin(self, data: bytes) -> None: ...

    def close_stdin(self) -> None:
        """This session's stdin ended (the runtime closes the process's stdin if stdinOnce)."""

    def resize(self, width: int, height: int) -> None: ...

    def output(self) -> AsyncIterator[tuple[int, bytes]]:
        """(1 stdout | 2 stderr, bytes) from now on; ends when the process exits."""


class PodStreams(Protocol):
    """The part of PodManager (pocketkube/node/pods.py) this server uses."""

    def pod_netns_path(self, uid: str) -> str: ...

    def container_pid(self, uid: str, container: str) -> int | None: ...

    def exec_command(self, uid: str, container: str, argv: list[str]) -> list[str]: ...

    def attach(self, uid: str, container: str) -> AttachHandle: ...

    def read_logs(self, uid: str, container: str, *, follow: bool, tail_lines: int | None,
                  since_seconds: int | None, timestamps: bool, previous: bool,
                  limit_bytes: int | None) -> AsyncIterator[bytes]: ...

    def log_files(self) -> dict[str, str]:
        """The node's log directory: relative path -> file."""


# ---- errors ----------------------------------------------------------------------------

def status_failure(code: int, reason: str, message: str) -> dict:
    return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": message, "reason": reason, "code": code}


def status_response(code: int, reason: str, message: str) -> web.Response:
    return web.Response(status=code, body=orjson.dumps(status_failure(code, reason, message)),
                        content_type="application/json")


def exit_status(code: int, argv: list[str]) -> dict:
    """The v4 error-channel Status for a finished command (ExitCode cause for kubectl)."""
    if code == 0:
        return SUCCESS
    return {"metadata": {}, "status": "Failure",
            "message": f"command terminated with non-zero exit code: command '{shlex.join(argv)}' "
                       f"exited with {code}",
            "reason": "NonZeroExitCode",
            "details": {"causes": [{"reason": "ExitCode", "message": str(code)}]}}


def _not_found() -> web.Response:
    return web.Response(status=404, body=b"404 page not found\n",
                        headers={"Content-Type": "text/plain; charset=utf-8", "X-Content-Type-Options": "nosniff"})


def _flag(request: web.Request, name: str) -> bool:
    return query_bool(request.query, name)


def _int_param(request: web.Request, name: str) -> int | None:
    raw = request.query.get(name)
    if raw is None or raw == "":
        return None
    try:
        return int(raw)
    except ValueError:
        raise web.HTTPBadRequest(text=f"invalid {name}: {raw!r}") from None


# ---- the session's client side, whatever the transport -----------------------------------

class ResizeDecoder:
    """Terminal sizes arrive as a stream of JSON objects {"Width":w,"Height":h}."""

    def __init__(self) -> None:
        self._buf = ""
        self._decoder = json.JSONDecoder()

    def feed(self, data: bytes) -> list[tuple[int, int]]:
        self._buf += data.decode(errors="replace")
        sizes = []
        while True:
            text = self._buf.lstrip()
            if not text:
                self._buf = ""
                return sizes
            try:
                obj, end = self._decoder.raw_decode(text)
            except json.JSONDecodeError:
                self._buf = text
                return sizes
            self._buf = text[end:]
            if isinstance(obj, dict):
                sizes.append((int(obj.get("Width") or 0), int(obj.get("Height") or 0)))


class Channels(abc.ABC):
    """One exec/attach client: stdin and resize events in, output and the final Status out."""

    def __init__(self) -> None:
        self.stdin: asyncio.Queue = asyncio.Queue()  # bytes, then None at end of input
        self.resizes: asyncio.Queue = asyncio.Queue()  # (width, height)
        self.gone = asyncio.Event()  # the client went away

    @abc.abstractmethod
    async def send(self, channel: int, data: bytes) -> None:
        """Output for the client on channel 1 (stdout) or 2 (stderr)."""

    @abc.abstractmethod
    async def finish(self, status: dict) -> None:
        """Send the final Status on the error channel and end the session."""


class WebSocketChannels(Channels):
    """The channel protocol: messages `[channel][payload]` (kubectl-compat.md F.1)."""

    def __init__(self, ws: web.WebSocketResponse, *, stdout: bool, stderr: bool):
        super().__init__()
        self._ws = ws
        self._codec = wsstream.ChannelCodec(ws.ws_protocol)
        self._status_as_object = ws.ws_protocol in (V5, V4, "v4.base64.channel.k8s.io")
        self._open = {STDOUT: stdout, STDERR: stderr}
        self._resize = ResizeDecoder()
        self._stdin_closed = False
        self._reader = asyncio.create_task(self._read())

    async def start(self) -> None:
        """The kubelet's hello: an empty message on the lowest channel the client reads."""
        if self._ws.ws_protocol != V5:
            channel = STDOUT if self._open[STDOUT] else STDERR if self._open[STDERR] else ERROR
            await self._codec.send(self._ws, channel, b"")

    async def _read(self) -> None:
        try:
            async for msg in self._ws:
                frame = self._codec.decode(msg)
                if frame is None:
                    continue
                channel, payload = frame
                if channel == STDIN and payload:
                    self.stdin.put_nowait(payload)
                elif channel == RESIZE:
                    for size in self._resize.feed(payload):
                        self.resizes.put_nowait(size)
                elif channel == CLOSE and payload[:1] == bytes([STDIN]) and self._ws.ws_protocol == V5:
                    self._end_stdin()
        finally:
            self._end_stdin()
            self.gone.set()

    def _end_stdin(self) -> None:
        if not self._stdin_closed:
            self._stdin_closed = True
            self.stdin.put_nowait(None)

    async def send(self, channel: int, data: bytes) -> None:
        if data and self._open.get(channel) and not self._ws.closed:
            try:
                await self._codec.send(self._ws, channel, data)
            except (ConnectionError, RuntimeError):
                self.gone.set()

    async def finish(self, status: dict) -> None:
        if not self._ws.closed:
            try:
                if self._status_as_object:
                    await self._codec.send(self._ws, ERROR, orjson.dumps(status))
                elif status.get("status") != "Success":  # before v4: the error's text alone
                    await self._codec.send(self._ws, ERROR, status.get("message", "").encode())
                await self._ws.close(code=1000)
            except (ConnectionError, RuntimeError):
                pass
        self._reader.cancel()


class SpdyChannels(Channels):
    """The SPDY form: one stream per channel, named by its `streamtype` header (F.2)."""

    def __init__(self, conn: spdy.SpdyConnection, streams: dict[str, spdy.SpdyStream]):
        super().__init__()
        self._conn = conn
        self._streams = streams
        self._tasks = [asyncio.create_task(self._watch_close())]
        if "stdin" in streams:
            self._tasks.append(asyncio.create_task(self._read_stdin(streams["stdin"])))
        else:
            self.stdin.put_nowait(None)
        if "resize" in streams:
            self._tasks.append(asyncio.create_task(self._read_resize(streams["resize"])))

    async def _watch_close(self) -> None:
        await self._conn.closed.wait()
        self.gone.set()

    async def _read_stdin(self, stream: spdy.SpdyStream) -> None:
        while (data := await stream.read()) is not None:
            self.stdin.put_nowait(data)
        self.stdin.put_nowait(None)

    async def _read_resize(self, stream: spdy.SpdyStream) -> None:
        decoder = ResizeDecoder()
        while (data := await stream.read()) is not None:
            for size in decoder.feed(data):
                self.resizes.put_nowait(size)

    async def send(self, channel: int, data: bytes) -> None:
        stream = self._streams.get({STDOUT: "stdout", STDERR: "stderr"}.get(channel, ""))
        if stream is not None and data:
            await stream.write(data)

    async def finish(self, status: dict) -> None:
        error = self._streams.get("error")
        if error is not None:
            await error.write(orjson.dumps(status))
        for stream in self._streams.values():
            await stream.close()
        await self._conn.goaway()
        for task in self._tasks:
            task.cancel()


async def collect_spdy_streams(conn: spdy.SpdyConnection, queue: asyncio.Queue,
                               wanted: set[str]) -> dict[str, spdy.SpdyStream]:
    """Wait for the client to open every stream the request asked for."""
    streams: dict[str, spdy.SpdyStream] = {}
    loop = asyncio.get_running_loop()
    deadline = loop.time() + STREAM_CREATION_TIMEOUT
    while not wanted <= streams.keys():
        remaining = deadline - loop.time()
        if remaining <= 0 or conn.closed.is_set():
            raise TimeoutError(f"timed out waiting for client streams {sorted(wanted - streams.keys())}")
        getter = asyncio.ensure_future(queue.get())
        closed = asyncio.ensure_future(conn.closed.wait())
        done, _ = await asyncio.wait({getter, closed}, timeout=remaining, return_when=asyncio.FIRST_COMPLETED)
        closed.cancel()
        if getter in done:
            stream = getter.result()
            streams[stream.headers.get("streamtype", "")] = stream
        else:
            getter.cancel()
    return streams


# ---- running a command -----------------------------------------------------------------

def _set_winsize(fd: int, width: int, height: int) -> None:
    if width > 0 and height > 0:
        fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", height, width, 0, 0))


def _take_controlling_tty() -> None:  # runs in the child, after setsid
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


async def _write_fd(fd: int, data: bytes) -> None:
    loop = asyncio.get_running_loop()
    view = memoryview(data)
    while view:
        try:
            view = view[os.write(fd, view):]
        except BlockingIOError:
            ready = loop.create_future()
            loop.add_writer(fd, lambda: ready.done() or ready.set_result(None))
            try:
                await ready
            finally:
                loop.remove_writer(fd)


def _fd_chunks(fd: int) -> asyncio.Queue:
    """Bytes read from a pty master as they come; None at end (EIO once every slave closed)."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue = asyncio.Queue()

    def readable() -> None:
        try:
            data = os.read(fd, 65536)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            loop.remove_reader(fd)
        queue.put_nowait(data or None)

    loop.add_reader(fd, readable)
    return queue


async def _drain(tasks: list[asyncio.Task]) -> None:
    if tasks:
        _, pending = await asyncio.wait(tasks, timeout=OUTPUT_DRAIN_TIMEOUT)
        for task in pending:
            task.cancel()


def _kill_group(proc: asyncio.subprocess.Process) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


async def _wait_or_gone(proc: asyncio.subprocess.Process, channels: Channels) -> int:
    """The exit code; if the client goes away first, the command is killed."""
    waiter = asyncio.ensure_future(proc.wait())
    gone = asyncio.ensure_future(channels.gone.wait())
    await asyncio.wait({waiter, gone}, return_when=asyncio.FIRST_COMPLETED)
    gone.cancel()
    if not waiter.done():
        _kill_group(proc)
    code = await waiter
    return 128 - code if code < 0 else code  # killed by a signal: 128+N, as runc reports


FIRST_SIZE_WAIT = 0.5  # seconds a tty exec waits for the client's terminal size


async def run_exec(argv: list[str], channels: Channels, *, stdin: bool, stdout: bool, stderr: bool,
                   tty: bool) -> dict:
    """Run argv wired to the client's channels; returns the final Status."""
    try:
        if tty:
            return await _exec_tty(argv, channels, stdin=stdin)
        return await _exec_pipes(argv, channels, stdin=stdin, stdout=stdout, stderr=stderr)
    except OSError as exc:
        return {"metadata": {}, "status": "Failure", "reason": "InternalError", "code": 500,
                "message": f"Internal error occurred: error executing command in container: {exc}"}


async def _exec_tty(argv: list[str], channels: Channels, *, stdin: bool) -> dict:
    # kubectl sends the terminal's size beside the first keystrokes, in no fixed order; a shell
    # started before it arrives reads 0x0. Wait a moment for it so the size holds from the start.
    sizes = []
    try:
        sizes.append(await asyncio.wait_for(channels.resizes.get(), FIRST_SIZE_WAIT))
    except asyncio.TimeoutError:
        pass
    while not channels.resizes.empty():
        sizes.append(channels.resizes.get_nowait())
    master, slave = pty.openpty()
    for size in sizes[-1:]:
        _set_winsize(master, *size)
    try:
        os.set_blocking(master, False)
        proc = await asyncio.create_subprocess_exec(
            *argv, stdin=slave, stdout=slave, stderr=slave, start_new_session=True,
            preexec_fn=_take_controlling_tty)
    except BaseException:
        os.close(master)
        raise
    finally:
        os.close(slave)
    chunks = _fd_chunks(master)

    async def output() -> None:
        while (data := await chunks.get()) is not None:
            await channels.send(STDOUT, data)

    async def feed_stdin() -> None:
        while (data := await channels.stdin.get()) is not None:
            if stdin:
                await _write_fd(master, data)
        if stdin:
            await _write_fd(master, b"\x04")  # end of input on a terminal: ^D

    async def resize() -> None:
        while True:
            _set_winsize(master, *await channels.resizes.get())

    out = asyncio.create_task(output())
    helpers = [asyncio.create_task(feed_stdin()), asyncio.create_task(resize())]
    try:
        code = await _wait_or_gone(proc, channels)
        await _drain([out])
    finally:
        for task in helpers:
            task.cancel()
        asyncio.get_running_loop().remove_reader(master)
        os.close(master)
    return exit_status(code, argv)


async def _exec_pipes(argv: list[str], channels: Channels, *, stdin: bool, stdout: bool,
                      stderr: bool) -> dict:
    pipe, null = asyncio.subprocess.PIPE, asyncio.subprocess.DEVNULL
    proc = await asyncio.create_subprocess_exec(
        *argv, stdin=pipe if stdin else null, stdout=pipe if stdout else null,
        stderr=pipe if stderr else null, start_new_session=True)

    async def copy(reader: asyncio.StreamReader, channel: int) -> None:
        while data := await reader.read(65536):
            await channels.send(channel, data)

    async def feed_stdin() -> None:
        try:
            while (data := await channels.stdin.get()) is not None:
                proc.stdin.write(data)
                await proc.stdin.drain()
        except ConnectionError:
            return
        finally:
            proc.stdin.close()

    outputs = [asyncio.create_task(copy(r, ch)) for r, ch in ((proc.stdout, STDOUT), (proc.stderr, STDERR)) if r]
    feeder = asyncio.create_task(feed_stdin()) if stdin else None
    try:
        code = await _wait_or_gone(proc, channels)
        await _drain(outputs)
    finally:
        if feeder:
            feeder.cancel()
    return exit_status(code, argv)


async def run_attach(handle: AttachHandle, channels: Channels, *, stdin: bool) -> dict:
    """Wire the client to a container's main process until it exits or the client leaves."""
    output = handle.output()

    async def copy_output() -> None:
        async for channel, data in output:
            await channels.send(STDOUT if handle.tty else channel, data)

    async def feed_stdin() -> None:
        while (data := await channels.stdin.get()) is not None:
            if stdin:
                await handle.write_stdin(data)
        if stdin:
            handle.close_stdin()

    async def resize() -> None:
        while True:
            handle.resize(*await channels.resizes.get())

    copier = asyncio.create_task(copy_output())
    helpers = [asyncio.create_task(feed_stdin()), asyncio.create_task(resize())]
    gone = asyncio.ensure_future(channels.gone.wait())
    try:
        await asyncio.wait({copier, gone}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        gone.cancel()
        copier.cancel()
        for task in helpers:
            task.cancel()
        aclose = getattr(output, "aclose", None)
        if aclose is not None:
            await aclose()
    return SUCCESS


# ---- port-forward ----------------------------------------------------------------------

def _connect_localhost(port: int) -> socket.socket:
    errors = []
    for family, address in ((socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1")):
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.settimeout(5)
        try:
            sock.connect((address, port))
        except OSError as exc:
            sock.close()
            kind = "tcp4" if family == socket.AF_INET else "tcp6"
            shown = address if family == socket.AF_INET else f"[{address}]"
            errors.append(f"dial {kind} {shown}:{port}: connect: {(exc.strerror or str(exc)).lower()}")
            continue
        sock.setblocking(False)
        return sock
    raise OSError(f"IPv4: {errors[0]} IPv6 {errors[1]}")


def _settle(future: asyncio.Future, value, exc: BaseException | None) -> None:
    if future.cancelled():
        if value is not None:
            value.close()
    elif exc is not None:
        future.set_exception(exc)
    else:
        future.set_result(value)


async def connect_in_netns(netns_path: str, port: int) -> socket.socket:
    """Connect to localhost:port inside a pod's network namespace, as the kubelet does.

    setns(2) moves only the calling thread, so a short-lived thread of its own does it."""
    loop = asyncio.get_running_loop()
    result: asyncio.Future = loop.create_future()

    def work() -> None:
        try:
            enter_netns(netns_path)
            sock = _connect_localhost(port)
        except OSError as exc:
            loop.call_soon_threadsafe(_settle, result, None, exc)
        else:
            loop.call_soon_threadsafe(_settle, result, sock, None)

    threading.Thread(target=work, name=f"portforward-{port}", daemon=True).start()
    return await result


class PortStream(Protocol):
    """One direction pair of a forwarded port, as a SPDY stream offers it."""

    async def read(self) -> bytes | None: ...

    async def write(self, data: bytes) -> None: ...

    async def close(self) -> None: ...


class ChannelStream:
    """A port's data or error channel of a WebSocket port-forward, shaped as a SPDY stream.

    The v4 channel protocol cannot close one channel: the client learns that a port is done
    when the whole connection ends, as with the kubelet."""

    def __init__(self, ws: web.WebSocketResponse, codec: wsstream.ChannelCodec, channel: int):
        self._ws, self._codec, self.channel = ws, codec, channel
        self.incoming: asyncio.Queue = asyncio.Queue()  # bytes from the client; None at its end

    async def read(self) -> bytes | None:
        return await self.incoming.get()

    async def write(self, data: bytes) -> None:
        if not self._ws.closed:
            try:
                await self._codec.send(self._ws, self.channel, data)
            except (ConnectionError, RuntimeError):
                pass

    async def close(self) -> None:
        pass


def port_forward_ports(values: list[str]) -> list[int]:
    """The kubelet's V4Options: the `port` query values, comma-separated; ValueError says why not."""
    if not values:
        raise ValueError('query parameter "port" is required')
    ports = []
    for value in values:
        if not value:
            raise ValueError('query parameter "port" cannot be empty')
        for part in value.split(","):
            if not (part.isascii() and part.isdigit()) or int(part) > 65535:
                problem = "value out of range" if part.isascii() and part.isdigit() else "invalid syntax"
                raise ValueError(f'unable to parse "{value}" as a port: strconv.ParseUint: parsing "{part}": '
                                 f"{problem}")
            if int(part) < 1:
                raise ValueError(f'port "{value}" must be > 0')
            ports.append(int(part))
    return ports


class PortForwarder:
    """One port-forward connection: pairs the error and data streams of each request."""

    def __init__(self, pods: PodStreams, namespace: str, pod: str, uid: str):
        self._pods, self._namespace, self._pod, self._uid = pods, namespace, pod, uid
        self._pending: dict[str, dict[str, spdy.SpdyStream]] = {}
        self._tasks: set[asyncio.Task] = set()

    def on_stream(self, stream: spdy.SpdyStream) -> None:
        request_id = stream.headers.get("requestid", "")
        pair = self._pending.setdefault(request_id, {})
        pair[stream.headers.get("streamtype", "")] = stream
        if "error" in pair and "data" in pair:
            del self._pending[request_id]
            task = asyncio.create_task(self._forward(pair["error"], pair["data"]))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()

    async def _forward(self, error: spdy.SpdyStream, data: spdy.SpdyStream) -> None:
        raw_port = data.headers.get("port", "")
        try:
            port = int(raw_port)
            if not 0 < port < 65536:
                raise ValueError
        except ValueError:
            await self._fail(error, data, f"invalid port: {raw_port!r}")
            return
        await self.forward(port, error, data)

    async def forward(self, port: int, error: "PortStream", data: "PortStream") -> None:
        """Connect to the pod's localhost:port and copy both ways until the pod side ends."""
        netns = ""
        try:
            netns = self._pods.pod_netns_path(self._uid)
            sock = await connect_in_netns(netns, port)
        except (OSError, LookupError) as exc:
            await self._fail(error, data, f"error forwarding port {port} to pod {self._namespace}/{self._pod}, "
                                          f"uid {self._uid}: failed to connect to localhost:{port} inside "
                                          f"namespace \"{netns}\": {exc}")
            return
        reader, writer = await asyncio.open_connection(sock=sock)

        async def to_pod() -> None:
            try:
                while (chunk := await data.read()) is not None:
                    writer.write(chunk)
                    await writer.drain()
                if writer.can_write_eof():
                    writer.write_eof()
            except ConnectionError:
                pass

        async def from_pod() -> None:
            try:
                while chunk := await reader.read(65536):
                    await data.write(chunk)
            except ConnectionError:
                pass
            await data.close()

        sender = asyncio.create_task(to_pod())
        try:
            await from_pod()
        finally:
            sender.cancel()
            writer.close()
            await error.close()

    @staticmethod
    async def _fail(error: "PortStream", data: "PortStream", message: str) -> None:
        await error.write(message.encode())
        await error.close()
        await data.close()


# ---- the server ------------------------------------------------------------------------

class StreamingServer:
    """The agent's HTTP server for the API server's streaming requests."""

    def __init__(self, pods: PodStreams, *, host: str, port: int = 10250, token: str | None = None):
        self.pods = pods
        self.host = host
        self.port = port
        self.token = token
        self.ready = asyncio.Event()
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        app = web.Application(middlewares=[self._auth])
        app.router.add_get("/containerLogs/{namespace}/{pod}/{uid}/{container}", self.logs)
        app.router.add_get("/logs/{path:.*}", self.node_logs)
        for verb in ("exec", "attach"):
            app.router.add_route("*", f"/{verb}/{{namespace}}/{{pod}}/{{uid}}/{{container}}", self.remote_command)
        app.router.add_route("*", "/portForward/{namespace}/{pod}/{uid}", self.port_forward)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port, reuse_address=True)
        await site.start()
        if self.port == 0:
            self.port = self._runner.addresses[0][1]
        self.ready.set()
        log.info("streaming server listening on %s:%d", self.host, self.port)

    async def stop(self) -> None:
        if self._runner:
            await self._runner.cleanup()

    @web.middleware
    async def _auth(self, request: web.Request, handler):
        if self.token:
            header = request.headers.get("Authorization", "")
            if not header.startswith("Bearer ") or not hmac.compare_digest(header[7:].strip().encode(), self.token.encode()):
                return status_response(401, "Unauthorized", "Unauthorized")
        try:
            return await handler(request)
        except web.HTTPBadRequest as exc:
            return status_response(400, "BadRequest", exc.text or "bad request")

    # ---- logs ----------------------------------------------------------------------------

    async def logs(self, request: web.Request) -> web.StreamResponse:
        m = request.match_info
        try:
            chunks = self.pods.read_logs(
                m["uid"], m["container"], follow=_flag(request, "follow"),
                tail_lines=_int_param(request, "tailLines"), since_seconds=_int_param(request, "sinceSeconds"),
                timestamps=_flag(request, "timestamps"), previous=_flag(request, "previous"),
                limit_bytes=_int_param(request, "limitBytes"))
            first = await anext(chunks, b"")
        except LookupError as exc:
            return status_response(400, "BadRequest", str(exc.args[0] if exc.args else exc))
        resp = web.StreamResponse(headers={"Content-Type": "text/plain"})
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        try:
            if first:
                await resp.write(first)
            async for chunk in chunks:
                await resp.write(chunk)
            await resp.write_eof()
        except (ConnectionError, RuntimeError):
            pass
        finally:
            aclose = getattr(chunks, "aclose", None)
            if aclose is not None:
                await aclose()
        return resp

    async def node_logs(self, request: web.Request) -> web.StreamResponse:
        """The node's log directory as Go's http.FileServer serves a directory tree: a file's
        bytes, a directory's <pre> listing (sorted, subdirectories with a slash), a directory
        asked without its slash redirected to it, 404 for what is not there."""
        path = request.match_info["path"]
        files = self.pods.log_files()
        if path in files:
            try:
                with open(files[path], "rb") as f:
                    body = f.read()
            except OSError:
                return _not_found()
            return web.Response(body=body, headers={"Content-Type": "text/plain; charset=utf-8"})
        prefix = path if not path or path.endswith("/") else path + "/"
        children = sorted({rest.split("/", 1)[0] + ("/" if "/" in rest else "")
                           for name in files if name.startswith(prefix) and (rest := name[len(prefix):])})
        if not children and path:
            return _not_found()
        if prefix != path:
            return web.Response(status=301, headers={"Location": path.rsplit("/", 1)[-1] + "/"})
        lines = "".join(f'<a href="{urllib.parse.quote(child)}">{html.escape(child)}</a>\n' for child in children)
        body = f'<!doctype html>\n<meta name="viewport" content="width=device-width">\n<pre>\n{lines}</pre>\n'
        return web.Response(body=body.encode(), headers={"Content-Type": "text/html; charset=utf-8"})

    # ---- exec and attach ----------------------------------------------------------------

    async def remote_command(self, request: web.Request) -> web.StreamResponse:
        m = request.match_info
        is_exec = request.path.startswith("/exec/")
        uid, container = m["uid"], m["container"]
        command = request.query.getall("command", [])
        opts = {name: _flag(request, name) for name in ("stdin", "stdout", "stderr", "tty")}
        if opts["tty"]:
            opts["stderr"] = False  # a terminal has one output stream
        if is_exec and not command:
            return status_response(400, "BadRequest", "you must specify at least one command for the container")
        if not (opts["stdin"] or opts["stdout"] or opts["stderr"]):
            return status_response(400, "BadRequest", "you must specify at least 1 of stdin, stdout, stderr")
        if self.pods.container_pid(uid, container) is None:
            return web.Response(status=500, text=f'container not found ("{container}")')
        if is_exec:
            argv = self.pods.exec_command(uid, container, command)

            async def session(channels: Channels) -> dict:
                return await run_exec(argv, channels, **opts)
        else:
            handle = self.pods.attach(uid, container)

            async def session(channels: Channels) -> dict:
                return await run_attach(handle, channels, stdin=opts["stdin"])

        if request.headers.get("Upgrade", "").lower() == "websocket":
            return await self._websocket_session(request, session, opts)
        if request.headers.get("Upgrade", "").lower().startswith("spdy/"):
            return await self._spdy_session(request, session, opts)
        return status_response(400, "BadRequest", "Upgrade request required")

    async def _websocket_session(self, request: web.Request, session, opts: dict) -> web.StreamResponse:
        ws = await self._accept_websocket(request, CHANNEL_PROTOCOLS)
        if not isinstance(ws, web.WebSocketResponse):
            return ws
        channels = WebSocketChannels(ws, stdout=opts["stdout"], stderr=opts["stderr"])
        await channels.start()
        status = await session(channels)
        await channels.finish(status)
        return ws

    @staticmethod
    async def _accept_websocket(request: web.Request, protocols: tuple[str, ...]) -> web.StreamResponse:
        """The upgraded WebSocket, on the first of the client's subprotocols that we speak (none
        named is the plain channel protocol), or the 400 that refuses it."""
        ws = web.WebSocketResponse(protocols=protocols, autoping=True, max_msg_size=0)
        offered = request.headers.get("Sec-WebSocket-Protocol", "")
        if offered.strip() and ws.can_prepare(request).protocol not in protocols:
            return status_response(400, "BadRequest",
                                   f"unable to upgrade: unable to negotiate protocol: client supports [{offered}], "
                                   f"server supports {list(protocols)}")
        await ws.prepare(request)
        return ws

    async def _spdy_session(self, request: web.Request, session, opts: dict) -> web.StreamResponse:
        offered = request.headers.getall("X-Stream-Protocol-Version", [])
        if SPDY_EXEC_PROTOCOL not in offered and "v5.channel.k8s.io" not in offered:
            return status_response(403, "Forbidden",
                                   f"unable to upgrade: unable to negotiate protocol: client supports {offered}, "
                                   f"server supports [{SPDY_EXEC_PROTOCOL}]")
        reader, send, resp = await hijack(request, {
            "Connection": "Upgrade", "Upgrade": "SPDY/3.1", "X-Stream-Protocol-Version": SPDY_EXEC_PROTOCOL},
            wsstream.READ_LIMIT)
        arrivals: asyncio.Queue = asyncio.Queue()
        conn = spdy.SpdyConnection(reader, send, arrivals.put_nowait)
        serving = asyncio.create_task(conn.serve())
        wanted = {"error"} | {name for name in ("stdin", "stdout", "stderr") if opts[name]}
        if opts["tty"]:
            wanted.add("resize")
        try:
            streams = await collect_spdy_streams(conn, arrivals, wanted)
        except TimeoutError as exc:
            log.info("exec/attach over SPDY: %s", exc)
            serving.cancel()
            return resp
        channels = SpdyChannels(conn, streams)
        status = await session(channels)
        await channels.finish(status)
        serving.cancel()
        return resp

    # ---- port-forward --------------------------------------------------------------------

    async def port_forward(self, request: web.Request) -> web.StreamResponse:
        m = request.match_info
        forwarder = PortForwarder(self.pods, m["namespace"], m["pod"], m["uid"])
        upgrade = request.headers.get("Upgrade", "").lower()
        if upgrade == "websocket":
            protocols = (PORT_FORWARD_WS_PROTOCOL, *PORT_FORWARD_CHANNEL_PROTOCOLS)
            ports: list[int] = []
            if web.WebSocketResponse(protocols=protocols).can_prepare(request).protocol != PORT_FORWARD_WS_PROTOCOL:
                try:
                    ports = port_forward_ports(request.query.getall("port", []))
                except ValueError as exc:
                    return web.Response(status=400, text=str(exc))
            ws = await self._accept_websocket(request, protocols)
            if not isinstance(ws, web.WebSocketResponse):
                return ws
            if ws.ws_protocol == PORT_FORWARD_WS_PROTOCOL:
                return await self._port_forward_spdy_in_websocket(ws, forwarder)
            return await self._port_forward_channels(ws, forwarder, ports)
        if upgrade.startswith("spdy/"):
            if PORT_FORWARD_PROTOCOL not in request.headers.getall("X-Stream-Protocol-Version", [PORT_FORWARD_PROTOCOL]):
                return status_response(403, "Forbidden", "unable to upgrade: unable to negotiate protocol")
            reader, send, resp = await hijack(request, {
                "Connection": "Upgrade", "Upgrade": "SPDY/3.1", "X-Stream-Protocol-Version": PORT_FORWARD_PROTOCOL},
                wsstream.READ_LIMIT)
            conn = spdy.SpdyConnection(reader, send, forwarder.on_stream)
            try:
                await conn.serve()
            finally:
                await forwarder.close()
            return resp
        return status_response(400, "BadRequest", "Upgrade request required")

    @staticmethod
    async def _port_forward_spdy_in_websocket(ws: web.WebSocketResponse, forwarder: PortForwarder) -> web.StreamResponse:
        reader, pump = wsstream.ws_byte_stream(ws)
        conn = spdy.SpdyConnection(reader, ws.send_bytes, forwarder.on_stream)
        try:
            await conn.serve()
        finally:
            await forwarder.close()
            pump.cancel()
            await ws.close()
        return ws

    @staticmethod
    async def _port_forward_channels(ws: web.WebSocketResponse, forwarder: PortForwarder,
                                     ports: list[int]) -> web.StreamResponse:
        """Channels 2i (data) and 2i+1 (error) for the i-th port; the connection ends when every
        port is done or the client goes."""
        codec = wsstream.ChannelCodec(ws.ws_protocol)
        pairs = [(ChannelStream(ws, codec, 2 * i), ChannelStream(ws, codec, 2 * i + 1)) for i in range(len(ports))]
        for port, (data, error) in zip(ports, pairs):
            header = struct.pack("<H", port)
            await data.write(header)
            await error.write(header)

        async def read() -> None:
            try:
                async for msg in ws:
                    frame = codec.decode(msg)
                    if frame is not None and frame[0] % 2 == 0 and frame[0] // 2 < len(pairs) and frame[1]:
                        pairs[frame[0] // 2][0].incoming.put_nowait(frame[1])
            finally:
                for data, _ in pairs:
                    data.incoming.put_nowait(None)

        reader = asyncio.create_task(read())
        forwards = [asyncio.create_task(forwarder.forward(port, error, data))
                    for port, (data, error) in zip(ports, pairs)]
        try:
            await asyncio.wait([asyncio.gather(*forwards), reader], return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in forwards:
                task.cancel()
            await asyncio.gather(*forwards, return_exceptions=True)
            await ws.close()
            reader.cancel()
        return ws
