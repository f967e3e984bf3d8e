"""agnhost, the test image of Kubernetes' e2e suite (k8s.gcr.io/e2e-test-images/agnhost), in Python.

Run as `python -I -u agnhost.py SUBCOMMAND [--flag[=value]...] [ARGS]`: the image's ENTRYPOINT
/agnhost, CMD `pause`. Standard library only. Each subcommand answers as upstream's Go code
(test/images/agnhost, 2.21 as the 1.20 suite uses it) does where a test can see it: routes,
flags and their defaults (cobra/pflag syntax), bodies, status codes, JSON as Go's encoding/json
writes it, logs as Go's log package writes them (to stderr), exit codes.

- netexec: HTTP(S) on --http-port (8080) with /, /clientip, /dial, /echo, /exit, /healthz,
  /hostname, /hostName, /redirect, /shell, /shutdown, /upload; UDP on --udp-port (8081)
  answering `hostname`, `echo MSG`, `clientip`; --http-override; --tls-cert-file/-private-key-file.
- serve-hostname: the hostname over HTTP (default), or raw --tcp and/or --udp, on --port (9376).
- porter: the value of each SERVE_PORT_N / SERVE_TLS_PORT_N variable on port N.
- pause, connect, test-webserver, liveness, dns-suffix, dns-server-list, etc-hosts,
  entrypoint-tester, mounttest (what the volume tests read back from a pod).

The hostname is the pod's (its own UTS namespace), so answers name the pod that served them.
"""

from __future__ import annotations

import email.parser
import email.policy
import errno
import json
import logging
import mimetypes
import os
import re
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from datetime import datetime, timezone
from email.utils import formatdate
from html import escape
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable
from urllib.parse import parse_qs, quote, unquote, urljoin, urlsplit

log = logging.getLogger("agnhost")
TEXT = "text/plain; charset=utf-8"


# ---- Go's conventions --------------------------------------------------------------------------

class GoLogFormat(logging.Formatter):
    """Go's log package: `2006/01/02 15:04:05 message`, one newline at most."""

    def __init__(self):
        super().__init__("%(asctime)s %(message)s", "%Y/%m/%d %H:%M:%S")

    def format(self, record: logging.LogRecord) -> str:
        return super().format(record).removesuffix("\n")


def setup_logging() -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(GoLogFormat())
    log.addHandler(handler)
    log.setLevel(logging.INFO)


def fatal(message: str) -> None:
    """log.Fatal: log, then exit 1."""
    log.error(message)
    os._exit(1)


def go_json(value) -> str:
    """encoding/json.Marshal: compact, keys of maps sorted, <, > and & escaped."""
    text = json.dumps(value, separators=(",", ":"), ensure_ascii=False, sort_keys=True)
    for char, escaped in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026"),
                          ("\u2028", "\\u2028"), ("\u2029", "\\u2029")):
        text = text.replace(char, escaped)
    return text


_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "μs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h)")


def parse_duration(text: str) -> float:
    """time.ParseDuration, in seconds: `1.5s`, `300ms`, `1h2m`, `-2s`, `0`."""
    sign, rest = (-1, text[1:]) if text.startswith("-") else (1, text.removeprefix("+"))
    if rest == "0":
        return 0.0
    if not rest:
        raise ValueError(f'time: invalid duration "{text}"')
    total, pos = 0.0, 0
    while pos < len(rest):
        match = _DURATION_PART.match(rest, pos)
        if not match:
            if re.match(r"(\d+(\.\d*)?|\.\d+)$", rest[pos:]):
                raise ValueError(f'time: missing unit in duration "{text}"')
            raise ValueError(f'time: invalid duration "{text}"')
        total += float(match.group(1)) * _UNITS[match.group(2)]
        pos = match.end()
    return sign * total


def format_duration(seconds: float) -> str:
    """time.Duration.String for the values agnhost logs: `0s`, `1.5s`, `2m0s`, `300ms`."""
    if seconds == 0:
        return "0s"
    if abs(seconds) < 1:
        return f"{seconds * 1000:g}ms"
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    text = f"{secs:.9f}".rstrip("0").rstrip(".") + "s"
    if hours:
        return f"{int(hours)}h{int(minutes)}m{text}"
    if minutes:
        return f"{int(minutes)}m{text}"
    return text


def host_port(address: tuple) -> str:
    """net.JoinHostPort of a socket address; IPv4-mapped IPv6 addresses show as IPv4, as Go does."""
    host, port = address[0], address[1]
    if host.startswith("::ffff:") and "." in host:
        host = host[7:]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def hostname() -> str:
    return socket.gethostname()


def go_time_now() -> str:
    """time.Now().String(): `2021-01-13 10:20:30.123456789 +0000 UTC m=+1.234567890`."""
    now = datetime.now(timezone.utc).astimezone()
    frac = f"{now.microsecond:06d}000"
    zone = now.strftime("%z")
    return (f"{now.strftime('%Y-%m-%d %H:%M:%S')}.{frac} {zone} {now.tzname() or zone} "
            f"m=+{time.monotonic() - STARTED:.9f}")


STARTED = time.monotonic()


# ---- the command line (cobra and pflag) --------------------------------------------------------

class UsageError(Exception):
    pass


@dataclass
class Command:
    run: Callable[["Invocation"], int | None]
    flags: dict[str, object] = field(default_factory=dict)   # name -> default (its type is the flag's)
    max_args: int | None = 0
    exact_args: int | None = None


@dataclass
class Invocation:
    name: str
    flags: dict[str, object]
    args: list[str]
    argv: list[str]          # the whole command line, as os.Args


def _flag_value(name: str, default: object, text: str) -> object:
    if isinstance(default, bool):
        if text.lower() in ("1", "t", "true"):
            return True
        if text.lower() in ("0", "f", "false"):
            return False
        raise UsageError(f'invalid argument "{text}" for "--{name}" flag: strconv.ParseBool: parsing '
                         f'"{text}": invalid syntax')
    if isinstance(default, int):
        try:
            return int(text, 0)
        except ValueError:
            raise UsageError(f'invalid argument "{text}" for "--{name}" flag: strconv.ParseInt: parsing '
                             f'"{text}": invalid syntax') from None
    if isinstance(default, float):  # a duration
        try:
            return parse_duration(text)
        except ValueError as exc:
            raise UsageError(f'invalid argument "{text}" for "--{name}" flag: {exc}') from None
    return text


def parse_command_line(argv: list[str], argv0: str = "/agnhost") -> Invocation:
    """`agnhost SUBCOMMAND [flags] [args]`: `--name=value`, `--name value`, `--bool`, `--` ends flags."""
    if not argv:
        raise UsageError("a subcommand is required (agnhost --help lists them)")
    name = argv[0]
    command = COMMANDS.get(name)
    if command is None:
        raise UsageError(f'unknown command "{name}" for "agnhost"')
    flags = dict(command.flags)
    args: list[str] = []
    rest = argv[1:]
    i = 0
    while i < len(rest):
        arg = rest[i]
        i += 1
        if arg == "--":
            args.extend(rest[i:])
            break
        if not arg.startswith("--") or arg == "-":
            if arg.startswith("-") and arg != "-":
                raise UsageError(f"unknown shorthand flag: '{arg[1:2]}' in {arg}")
            args.append(arg)
            continue
        flag, eq, value = arg[2:].partition("=")
        if flag not in command.flags:
            raise UsageError(f"unknown flag: --{flag}")
        default = command.flags[flag]
        if not eq:
            if isinstance(default, bool):
                value = "true"
            elif i < len(rest):
                value = rest[i]
                i += 1
            else:
                raise UsageError(f"flag needs an argument: --{flag}")
        flags[flag] = _flag_value(flag, default, value)
    if command.exact_args is not None and len(args) != command.exact_args:
        raise UsageError(f"accepts {command.exact_args} arg(s), received {len(args)}")
    if command.max_args is not None and len(args) > command.max_args:
        raise UsageError(f"accepts at most {command.max_args} arg(s), received {len(args)}")
    return Invocation(name, flags, args, [argv0, *argv])


# ---- an HTTP server that answers as Go's net/http does ----------------------------------------

@dataclass
class Reply:
    status: int = 200
    body: str | bytes = b""
    headers: dict[str, str] = field(default_factory=dict)


def http_error(message: str, status: int) -> Reply:
    """http.Error: the message and a newline, as plain text that must not be sniffed."""
    return Reply(status, message + "\n", {"Content-Type": TEXT, "X-Content-Type-Options": "nosniff"})


def sniff(data: bytes) -> str:
    """http.DetectContentType, for what these servers write: HTML, text, or bytes."""
    head = data[:512].lstrip(b"\t\n\x0c\r ").lower()
    if head.startswith((b"<!doctype html", b"<html", b"<head", b"<body", b"<a", b"<p", b"<div", b"<h1",
                        b"<br", b"<table", b"<title", b"<script", b"<pre", b"<!--")):
        return "text/html; charset=utf-8"
    if any(b < 0x20 and b not in (9, 10, 12, 13, 27) for b in data[:512]):
        return "application/octet-stream"
    return TEXT


class GoHandler(BaseHTTPRequestHandler):
    """Serves `self.server.app.handle(request) -> Reply` with Go's headers: Date, Content-Length,
    a sniffed Content-Type, no Server header."""

    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args) -> None:  # the apps log their own way
        pass

    def version_string(self) -> str:
        return ""

    @property
    def remote_addr(self) -> str:
        return host_port(self.client_address)

    def _serve(self) -> None:
        app = self.server.app  # type: ignore[attr-defined]
        app.busy(+1)
        try:
            self.url = urlsplit(self.path)
            reply = app.handle(self)
            self.send(reply)
        finally:
            app.busy(-1)

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = _serve

    def send(self, reply: Reply) -> None:
        data = reply.body.encode() if isinstance(reply.body, str) else reply.body
        headers = dict(reply.headers)
        if data and "Content-Type" not in headers:
            headers["Content-Type"] = sniff(data)
        self.send_response_only(reply.status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Date", formatdate(usegmt=True))
        self.send_header("Content-Length", str(len(data)))
        if headers.get("Connection") == "close":
            self.close_connection = True
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)
        self.wfile.flush()

    def body(self) -> bytes:
        if not hasattr(self, "_body"):
            length = int(self.headers.get("Content-Length") or 0)
            self._body = self.rfile.read(length) if length > 0 else b""
        return self._body

    def form_value(self, name: str) -> str:
        """Request.FormValue: a url-encoded POST/PUT/PATCH body first, then the query."""
        if self.command in ("POST", "PUT", "PATCH") and (self.headers.get("Content-Type") or "").startswith(
                "application/x-www-form-urlencoded"):
            values = parse_qs(self.body().decode(errors="replace"), keep_blank_values=True).get(name)
            if values:
                return values[0]
        return (parse_qs(self.url.query, keep_blank_values=True).get(name) or [""])[0]


class GoServer(ThreadingHTTPServer):
    """Listens on every address of the pod (`:PORT`, IPv4 and IPv6 when there is IPv6), or on `host`."""

    daemon_threads = True
    address_family = socket.AF_INET6 if socket.has_ipv6 else socket.AF_INET

    def __init__(self, port: int, app, tls: tuple[str, str] | None = None, host: str = ""):
        self.app = app
        if host:
            self.address_family = socket.AF_INET6 if ":" in host else socket.AF_INET
        try:
            super().__init__((host or ("::" if self.address_family == socket.AF_INET6 else ""), port), GoHandler)
        except OSError as exc:
            if self.address_family != socket.AF_INET6 or exc.errno != errno.EAFNOSUPPORT:
                raise
            self.address_family = socket.AF_INET
            super().__init__(("", port), GoHandler)
        if tls:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(tls[0], tls[1] or None)
            self.socket = context.wrap_socket(self.socket, server_side=True)

    def server_bind(self) -> None:
        if self.address_family == socket.AF_INET6 and self.server_address[0] == "::":
            self.socket.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        super().server_bind()

    def handle_error(self, request, client_address) -> None:  # a client that went away
        pass


def listen_error(proto: str, port: int, exc: OSError) -> str:
    """Go's message for a failed listen: `listen tcp :8080: bind: address already in use`."""
    return f"listen {proto} :{port}: bind: {(exc.strerror or str(exc)).lower()}"


def udp_socket(port: int, host: str = "") -> socket.socket:
    if host:
        sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind((host, port))
        return sock
    try:
        sock = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        sock.bind(("::", port))
    except OSError as exc:
        if exc.errno != errno.EAFNOSUPPORT:
            raise
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind(("", port))
    return sock


class App:
    """One server program: `handle(request) -> Reply`; counts requests in flight for /exit."""

    def __init__(self):
        self.in_flight = 0
        self.lock = threading.Lock()

    def busy(self, delta: int) -> None:
        with self.lock:
            self.in_flight += delta

    def handle(self, req: GoHandler) -> Reply:
        raise NotImplementedError


def serve_in_thread(server: GoServer) -> threading.Thread:
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    return thread


def redirect(req: GoHandler, location: str, code: int) -> Reply:
    """http.Redirect: a relative location is made absolute against the request path."""
    if not urlsplit(location).scheme:
        if not location.startswith("/"):
            base = req.url.path or "/"
            location = urljoin(base, location)
    headers = {"Location": location}
    body = ""
    if req.command in ("GET", "HEAD"):
        headers["Content-Type"] = "text/html; charset=utf-8"
        body = f'<a href="{escape(location)}">{STATUS_TEXT.get(code, "")}</a>.\n\n'
    return Reply(code, body, headers)


STATUS_TEXT = {301: "Moved Permanently", 302: "Found", 303: "See Other", 307: "Temporary Redirect",
               308: "Permanent Redirect"}


# ---- netexec ------------------------------------------------------------------------------------

def resolve_address(host: str, port: str, kind: int) -> tuple:
    """net.ResolveTCPAddr / ResolveUDPAddr: a numeric port; a name resolves, IPv4 first."""
    if not port.isdigit() or int(port) > 65535:
        raise ValueError(f"address {port}: invalid port" if port else "missing port in address")
    try:
        infos = socket.getaddrinfo(host or None, int(port), type=kind)
    except socket.gaierror:
        raise ValueError(f"lookup {host}: no such host") from None
    infos.sort(key=lambda info: info[0] != socket.AF_INET)
    return infos[0][4][:2]


def go_net_error(exc: BaseException) -> str:
    """What Go's net package would say, as near as it matters to a reader."""
    if isinstance(exc, (socket.timeout, TimeoutError)):
        return "i/o timeout"
    if isinstance(exc, OSError) and exc.errno is not None:
        return (exc.strerror or str(exc)).lower()
    return str(exc)


def status_param(code: str, default: int) -> int | None:
    """The optional `code` of /echo and /redirect; None when it is not an integer."""
    try:
        return int(code) if code else default
    except ValueError:
        return None


def bad_status_param(code: str) -> Reply:
    return Reply(200, f'argument \'code\' must be an integer or empty, got "{code}"\n')


class Netexec(App):
    def __init__(self, flags: dict):
        super().__init__()
        self.http_port = flags["http-port"]
        self.udp_port = flags["udp-port"]
        self.override = flags["http-override"]
        self.cert, self.key = flags["tls-cert-file"], flags["tls-private-key-file"]
        self.udp_ready = threading.Event()
        self.server: GoServer | None = None
        self.routes = {"/clientip": self.clientip, "/dial": self.dial, "/echo": self.echo, "/exit": self.exit,
                       "/healthz": self.healthz, "/hostname": self.hostname, "/redirect": self.redirect,
                       "/shell": self.shell, "/upload": self.upload, "/hostName": self.hostname_old,
                       "/shutdown": self.shutdown}

    def run(self) -> int:
        threading.Thread(target=self.udp_server, daemon=True).start()
        log.info("Started HTTP server on port %d", self.http_port)
        try:
            self.server = GoServer(self.http_port, self, (self.cert, self.key) if self.cert else None)
        except OSError as exc:
            fatal(listen_error("tcp", self.http_port, exc))
        except ssl.SSLError as exc:
            fatal(f"tls: failed to load the key pair: {exc}")
        self.server.serve_forever()
        threading.Event().wait()  # stopped by /exit: graceful_exit ends the process
        return 0

    def handle(self, req):
        if self.override:
            # Served as a new GET of the override path: no body, no remote address (Go's NewRequest).
            req.url = urlsplit(self.override)
            req.command = "GET"
            req.client_address = ("", "")
            req._body = b""
        route = self.routes.get(req.url.path, self.root)
        return route(req)

    def root(self, req):
        log.info("GET /")
        return Reply(200, f"NOW: {go_time_now()}")

    def echo(self, req):
        msg, code = req.form_value("msg"), req.form_value("code")
        log.info("GET /echo?msg=%s&code=%s", msg, code)
        status = status_param(code, 200)
        return Reply(status, msg) if status else bad_status_param(code)

    def clientip(self, req):
        log.info("GET /clientip")
        return Reply(200, req.remote_addr if req.client_address[0] else "")

    def exit(self, req):
        wait, timeout, code = req.form_value("wait"), req.form_value("timeout"), req.form_value("code")
        log.info("GET /exit?code=%s&timeout=%s&wait=%s", code, timeout, wait)
        try:
            timeout_s = parse_duration(timeout) if timeout else 0.0
        except ValueError:
            return Reply(200, f"argument 'timeout' must be a valid golang duration or empty, got \"{timeout}\"\n")
        try:
            wait_s = parse_duration(wait) if wait else 0.0
        except ValueError:
            return Reply(200, f"argument 'wait' must be a valid golang duration or empty, got \"{wait}\"\n")
        try:
            exit_code = int(code) if code else 0
        except ValueError:
            return Reply(200, f"argument 'code' must be an integer [0-127] or empty, got \"{code}\"\n")
        log.info("Will begin shutdown in %s, allowing %s for connections to close, then will exit with %d",
                 format_duration(wait_s), format_duration(timeout_s), exit_code)
        time.sleep(max(wait_s, 0))
        if timeout_s <= 0:
            os._exit(exit_code)
        threading.Thread(target=self.graceful_exit, args=(exit_code, timeout_s), daemon=True).start()
        return Reply(200, "", {"Connection": "close"})

    def graceful_exit(self, code: int, timeout: float) -> None:
        """server.Shutdown: stop accepting, let requests in flight finish (up to `timeout`), exit."""
        self.server.shutdown()
        self.server.server_close()
        deadline = time.monotonic() + timeout
        while self.in_flight > 1 and time.monotonic() < deadline:  # 1: the /exit request itself
            time.sleep(0.05)
        time.sleep(0.05)
        result = "<nil>" if self.in_flight <= 1 else "context deadline exceeded"
        log.info("Graceful shutdown completed with: %s", result)
        os._exit(code)

    def hostname(self, req):
        log.info("GET /hostname")
        return Reply(200, hostname())

    def hostname_old(self, req):
        log.info("GET /hostName")
        return Reply(200, hostname())

    def healthz(self, req):
        log.info("GET /healthz")
        return Reply(200 if self.udp_ready.is_set() else 412)

    def shutdown(self, req):
        log.info("GET /shutdown")
        os._exit(0)

    def redirect(self, req):
        location, code = req.form_value("location"), req.form_value("code")
        log.info("%s /redirect?msg=%s&code=%s", req.command, location, code)
        status = status_param(code, 302)
        return redirect(req, location, status) if status else bad_status_param(code)

    def dial(self, req):
        query = parse_qs(req.url.query, keep_blank_values=True)
        get = lambda name: (query.get(name) or [""])[0]  # noqa: E731
        host, port, request, protocol, tries_param = (get("host"), get("port"), get("request"), get("protocol"),
                                                      get("tries"))
        log.info("GET /dial?host=%s&protocol=%s&port=%s&request=%s&tries=%s", host, protocol, port, request,
                 tries_param)
        tries = 1
        if tries_param:
            try:
                tries = int(tries_param)
            except ValueError:
                return http_error(f'tries parameter is invalid. strconv.Atoi: parsing "{tries_param}": '
                                  f'invalid syntax', 400)
        if not request:
            return http_error("request parameter not specified. <nil>", 400)
        protocol = protocol.lower() or "http"
        if protocol not in ("http", "udp"):
            return http_error(f"unsupported protocol. {protocol}", 400)
        try:
            address = resolve_address(host, port, socket.SOCK_STREAM if protocol == "http" else socket.SOCK_DGRAM)
        except ValueError as exc:
            return http_error(f"host and/or port param are invalid. {exc}", 400)
        dialer = dial_http if protocol == "http" else dial_udp
        responses, errors, last = [], [], ""
        for _ in range(tries):
            try:
                last = dialer(request, address)
                responses.append(last)
            except DialError as exc:
                last = ""
                errors.append(str(exc))
        output = {}
        if last:
            output["responses"] = responses
        if errors:
            output["errors"] = errors
        return Reply(200, go_json(output))

    def shell(self, req):
        command = req.form_value("shellCommand") or req.form_value("cmd")
        log.info("GET /shell?cmd=%s", command)
        output = {}
        try:
            cp = subprocess.run(["/bin/sh", "-c", command], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
            if cp.stdout:
                output["output"] = cp.stdout.decode(errors="replace")
            if cp.returncode > 0:
                output["error"] = f"exit status {cp.returncode}"
            elif cp.returncode < 0:
                output["error"] = f"signal: {signal.Signals(-cp.returncode).name[3:].lower()}"
        except OSError as exc:
            output["error"] = f"fork/exec /bin/sh: {go_net_error(exc)}"
        log.info("Output: map[%s]", " ".join(f"{k}:{v}" for k, v in sorted(output.items())))
        return Reply(200, go_json(output))

    def upload(self, req):
        log.info("GET /upload")
        data = uploaded_file(req)
        if data is None:
            log.info("Unable to upload file: http: no such file")
            return Reply(200, go_json({"error": "Unable to upload file."}))
        try:
            fd, path = tempfile.mkstemp(prefix="upload", dir="/uploads")
        except OSError as exc:
            log.info("Unable to open file for write: %s", exc)
            return Reply(200, go_json({"error": "Unable to open file for write"}))
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(path, 0o700)
        log.info("Wrote upload to %s", path)
        return Reply(201, go_json({"output": path}))

    def udp_server(self, sock: socket.socket | None = None) -> None:
        """`hostname`, `echo MSG` and `clientip`, case-insensitive, surrounding space ignored."""
        try:
            sock = sock or udp_socket(self.udp_port)
        except OSError as exc:
            fatal(f"Error occurred: failed to create listener for UDP address :{self.udp_port}:"
                  f"{listen_error('udp', self.udp_port, exc)}")
        log.info("Started UDP server on port %d", self.udp_port)
        self.udp_ready.set()
        while True:
            try:
                data, client = sock.recvfrom(2048)
            except OSError as exc:
                if sock.fileno() == -1:  # closed by its owner (tests)
                    self.udp_ready.clear()
                    return
                fatal(f"Error occurred: failed accepting UDP connections:{exc}")
            text = data.decode(errors="replace").strip().lower()
            client_text = host_port(client)
            if text == "hostname":
                log.info("Sending udp hostName response")
                answer = hostname()
            elif text.startswith("echo "):
                answer = text.split(" ", 1)[1]
                log.info("Echoing %s to UDP client %s\n", answer, client_text)
            elif text == "clientip":
                log.info("Sending clientip back to UDP client %s\n", client_text)
                answer = client_text
            else:
                if text:
                    log.info("Unknown UDP command received from %s: %s\n", client_text, text)
                continue
            try:
                sock.sendto(answer.encode(), client)
            except OSError as exc:
                log.info("failed to answer UDP client %s: %s", client_text, exc)


def uploaded_file(req: GoHandler) -> bytes | None:
    """The `file` part of a multipart/form-data body (Request.FormFile)."""
    content_type = req.headers.get("Content-Type") or ""
    if not content_type.startswith("multipart/form-data"):
        return None
    raw = f"Content-Type: {content_type}\r\nMIME-Version: 1.0\r\n\r\n".encode() + req.body()
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(raw)
    if not message.is_multipart():
        return None
    for part in message.iter_parts():
        if part.get_param("name", header="content-disposition") == "file":
            return part.get_payload(decode=True) or b""
    return None


class DialError(Exception):
    pass


class _NoProxy(urllib.request.ProxyHandler):
    def __init__(self):
        super().__init__({})  # never a proxy from the environment


def dial_http(request: str, address: tuple) -> str:
    """GET http://ADDRESS/REQUEST with Go's client: 5 s in all, redirects followed, any status."""
    target = host_port(address)
    url = f"http://{target}/{request}"
    opener = urllib.request.build_opener(_NoProxy())
    opener.addheaders = [("User-Agent", "Go-http-client/1.1")]
    try:
        with opener.open(url, timeout=5) as response:
            return response.read().decode(errors="replace")
    except urllib.error.HTTPError as exc:
        return exc.read().decode(errors="replace")
    except urllib.error.URLError as exc:
        reason = exc.reason
        if isinstance(reason, (socket.timeout, TimeoutError)):
            raise DialError(f'Get "{url}": context deadline exceeded (Client.Timeout exceeded while '
                            f'awaiting headers)') from None
        raise DialError(f'Get "{url}": dial tcp {target}: connect: {go_net_error(reason)}') from None
    except (socket.timeout, TimeoutError):
        raise DialError(f'Get "{url}": context deadline exceeded (Client.Timeout exceeded while reading '
                        f'body)') from None
    except OSError as exc:
        raise DialError(f'Get "{url}": {go_net_error(exc)}') from None


def dial_udp(request: str, address: tuple) -> str:
    """Send REQUEST in one datagram, wait 5 s for one answer."""
    family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as sock:
        try:
            sock.connect(address)
        except OSError as exc:
            raise DialError(f"udp dial failed. err:dial udp {host_port(address)}: {go_net_error(exc)}") from None
        local = f"{host_port(sock.getsockname())}->{host_port(address)}"
        try:
            sock.send(request.encode())
        except OSError as exc:
            raise DialError(f"udp connection write failed. err:write udp {local}: write: "
                            f"{go_net_error(exc)}") from None
        sock.settimeout(5)
        try:
            data = sock.recv(2048)
        except (socket.timeout, TimeoutError):
            raise DialError(f"reading from udp connection failed. err:'read udp {local}: i/o timeout'") from None
        except OSError as exc:
            raise DialError(f"reading from udp connection failed. err:'read udp {local}: read: "
                            f"{go_net_error(exc)}'") from None
    if not data:
        raise DialError("reading from udp connection failed. err:'<nil>'")
    return data.decode(errors="replace")


# ---- serve-hostname -----------------------------------------------------------------------------

class ServeHostname(App):
    def __init__(self, flags: dict):
        super().__init__()
        self.tcp, self.udp, self.http, self.close = flags["tcp"], flags["udp"], flags["http"], flags["close"]
        self.port = flags["port"]
        self.name = hostname()

    def run(self) -> int:
        if self.http and (self.tcp or self.udp):
            fatal("Can't server TCP/UDP mode and HTTP mode at the same time")
        if self.tcp:
            try:
                listener = socket.create_server(("", self.port), family=socket.AF_INET6, dualstack_ipv6=True) \
                    if socket.has_dualstack_ipv6() else socket.create_server(("", self.port))
            except OSError as exc:
                fatal(f"Error from net.Listen(): {listen_error('tcp', self.port, exc)}")
            threading.Thread(target=self.serve_tcp, args=(listener,), daemon=True).start()
        if self.udp:
            try:
                sock = udp_socket(self.port)
            except OSError as exc:
                fatal(f"Error from ListenUDP(): {listen_error('udp', self.port, exc)}")
            threading.Thread(target=self.serve_udp, args=(sock,), daemon=True).start()
        if self.http:
            try:
                serve_in_thread(GoServer(self.port, self))
            except OSError as exc:
                fatal(listen_error("tcp", self.port, exc))
        log.info("Serving on port %d.\n", self.port)
        signal.sigwait({signal.SIGTERM})
        log.info("Shutting down after receiving signal: terminated.\n")
        log.info("Awaiting pod deletion.\n")
        time.sleep(60)
        return 0

    def serve_tcp(self, listener: socket.socket) -> None:
        while True:
            conn, client = listener.accept()
            log.info("TCP request from %s", host_port(client))
            with conn:
                try:
                    conn.sendall(self.name.encode())
                except OSError:
                    pass

    def serve_udp(self, sock: socket.socket) -> None:
        while True:
            _, client = sock.recvfrom(16)
            log.info("UDP request from %s", host_port(client))
            try:
                sock.sendto(self.name.encode(), client)
            except OSError:
                pass

    def handle(self, req):
        log.info("HTTP request from %s", req.remote_addr)
        return Reply(200, self.name, {"Connection": "close"} if self.close else {})


# ---- porter -------------------------------------------------------------------------------------

class Porter(App):
    """SERVE_PORT_N=value: HTTP on port N answering value; SERVE_TLS_PORT_N: the same over TLS
    (CERT_FILE / KEY_FILE, default localhost.crt / localhost.key in the working directory)."""

    def __init__(self, flags: dict, environ: dict[str, str]):
        super().__init__()
        self.json = flags["json-response"]
        self.values: dict[int, str] = {}
        self.plain: list[str] = []
        self.tls: list[str] = []
        for key, value in environ.items():
            if key.startswith("SERVE_PORT_"):
                self.plain.append(key.removeprefix("SERVE_PORT_"))
            elif key.startswith("SERVE_TLS_PORT_"):
                self.tls.append(key.removeprefix("SERVE_TLS_PORT_"))
            else:
                continue
            if key.rpartition("_")[2].isdigit():
                self.values[int(key.rpartition("_")[2])] = value

    def run(self) -> int:
        cert = os.environ.get("CERT_FILE") or "localhost.crt"
        key = os.environ.get("KEY_FILE") or "localhost.key"
        for port in self.plain + self.tls:
            tls = (cert, key) if port in self.tls else None
            try:
                serve_in_thread(GoServer(int(port), self, tls))
            except (OSError, ValueError, ssl.SSLError) as exc:
                what = f"tls server on port {port!r} with certFile={cert!r}, keyFile={key!r}" if tls else \
                    f"server on port {port!r}"
                log.info('%s failed: %s', what.replace("'", '"'), exc)
        while True:
            time.sleep(3600)

    def handle(self, req):
        value = self.values.get(req.server.server_address[1], "")
        if self.json:
            return Reply(200, go_json({"Body": value, "Method": req.command}), {"Content-Type": "application/json"})
        return Reply(200, value)


# ---- the small ones -----------------------------------------------------------------------------

def run_netexec(inv: Invocation) -> int:
    return Netexec(inv.flags).run()


def run_serve_hostname(inv: Invocation) -> int:
    return ServeHostname(inv.flags).run()


def run_porter(inv: Invocation) -> int:
    return Porter(inv.flags, dict(os.environ)).run()


def run_pause(inv: Invocation) -> int:
    """Prints "Paused", then exits 2 on SIGTERM and 1 on SIGINT."""
    print("Paused", flush=True)
    received = signal.sigwait({signal.SIGTERM, signal.SIGINT})
    return 2 if received == signal.SIGTERM else 1


def run_connect(inv: Invocation) -> int:
    """One TCP connection to HOST:PORT; failures print UNKNOWN, DNS, TIMEOUT, REFUSED or OTHER."""
    dest, timeout, protocol = inv.args[0], inv.flags["timeout"], inv.flags["protocol"]
    if protocol not in ("", "tcp"):
        sys.stderr.write(f"Unsupported protocol\n%!(EXTRA string={protocol})")
        return 1
    host, sep, port = dest.rpartition(":")
    if not sep:
        sys.stderr.write(f"UNKNOWN: address {dest}: missing port in address\n")
        return 1
    host = host.removeprefix("[").removesuffix("]")
    try:
        address = resolve_address(host, port, socket.SOCK_STREAM)
    except ValueError as exc:
        sys.stderr.write(f"DNS: {exc}\n")
        return 1
    try:
        socket.create_connection(address, timeout=timeout or None).close()
        return 0
    except (socket.timeout, TimeoutError):
        sys.stderr.write("TIMEOUT\n")
    except ConnectionRefusedError:
        sys.stderr.write("REFUSED\n")
    except OSError as exc:
        sys.stderr.write(f"OTHER: dial tcp {dest}: connect: {go_net_error(exc)}\n")
    return 1


class TestWebserver(App):
    """A file server of the whole filesystem (http.FileServer of "/") with CORS headers."""

    HEADERS = {"Cache-Control": "private", "Access-Control-Allow-Origin": "*",
               "Access-Control-Allow-Credentials": "true", "Access-Control-Allow-Methods": "GET, POST, OPTIONS",
               "Access-Control-Allow-Headers": "DNT,X-Mx-ReqToken,Keep-Alive,User-Agent,X-Requested-With,"
                                               "Cache-Control,Content-Type"}

    def handle(self, req):
        return serve_file(req, unquote(req.url.path), dict(self.HEADERS))


def serve_file(req: GoHandler, path: str, headers: dict[str, str]) -> Reply:
    """http.FileServer's answers: the file, a directory listing, index.html, or 404."""
    clean = os.path.normpath("/" + path)
    if os.path.isdir(clean):
        if not req.url.path.endswith("/"):
            return redirect(req, os.path.basename(req.url.path) + "/", 301) if req.url.path else \
                redirect(req, "/", 301)
        index = os.path.join(clean, "index.html")
        if os.path.isfile(index):
            clean = index
        else:
            try:
                names = sorted(n + ("/" if os.path.isdir(os.path.join(clean, n)) else "") for n in os.listdir(clean))
            except OSError:
                return http_error("500 Internal Server Error", 500)
            listing = "".join(f'<a href="{quote(n)}">{escape(n)}</a>\n' for n in names)
            return Reply(200, f"<pre>\n{listing}</pre>\n", {**headers, "Content-Type": "text/html; charset=utf-8"})
    try:
        with open(clean, "rb") as f:
            data = f.read()
        stat = os.stat(clean)
    except FileNotFoundError:
        return http_error("404 page not found", 404)
    except OSError:
        return http_error("403 Forbidden", 403)
    content_type = mimetypes.guess_type(clean)[0]
    if content_type:
        headers["Content-Type"] = content_type + ("; charset=utf-8" if content_type.startswith("text/") else "")
    headers["Last-Modified"] = formatdate(stat.st_mtime, usegmt=True)
    headers["Accept-Ranges"] = "bytes"
    return Reply(200, data, headers)


def run_test_webserver(inv: Invocation) -> int:
    try:
        server = GoServer(inv.flags["port"], TestWebserver())
    except OSError as exc:
        fatal(listen_error("tcp", inv.flags["port"], exc))
    server.serve_forever()
    return 0


class Liveness(App):
    """Healthy for 10 seconds, then /healthz answers 500."""

    def __init__(self):
        super().__init__()
        self.started = time.monotonic()

    def handle(self, req):
        age = time.monotonic() - self.started
        if req.url.path == "/started":
            return Reply(200, format_duration(age))
        if req.url.path == "/healthz":
            return Reply(500, f"error: {age}") if age > 10 else Reply(200, "ok")
        if req.url.path == "/redirect":
            return redirect(req, unquote((parse_qs(req.url.query).get("loc") or [""])[0]), 302)
        return http_error("404 page not found", 404)


def run_liveness(inv: Invocation) -> int:
    try:
        server = GoServer(8080, Liveness())
    except OSError as exc:
        fatal(listen_error("tcp", 8080, exc))
    server.serve_forever()
    return 0


def resolv_conf_field(keyword: str) -> list[str]:
    with open("/etc/resolv.conf") as f:
        for line in f.read().split("\n"):
            if line.startswith(keyword):
                return line.split(" ")[1:]
    raise SystemExit("panic: Could not find DNS search list!")


def run_dns_suffix(inv: Invocation) -> int:
    print(",".join(resolv_conf_field("search")))
    return 0


def run_dns_server_list(inv: Invocation) -> int:
    print(",".join(resolv_conf_field("nameserver")))
    return 0


def run_etc_hosts(inv: Invocation) -> int:
    with open("/etc/hosts") as f:
        print(f.read())
    return 0


# ---- mounttest: what the volume tests read back from a pod -------------------------------------

TMPFS_MAGIC = 0x01021994
NEW_FILE_CONTENT = "mount-tester new file\n"


def fs_type(path: str) -> int:
    """statfs(2)'s f_type (the first field of struct statfs on Linux)."""
    import ctypes
    import ctypes.util

    libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    buf = ctypes.create_string_buffer(256)
    if libc.statfs(os.fsencode(path), buf) != 0:
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code))
    return ctypes.c_long.from_buffer(buf).value & 0xFFFFFFFF


def go_file_mode(mode: int) -> str:
    """os.FileMode.String: type and special bits as `dalTLDpSugct?` letters, then rwxrwxrwx."""
    import stat

    letters = ""
    for test, letter in ((stat.S_ISDIR, "d"), (stat.S_ISLNK, "L"), (lambda m: stat.S_ISBLK(m) or stat.S_ISCHR(m), "D"),
                         (stat.S_ISFIFO, "p"), (stat.S_ISSOCK, "S")):
        if test(mode):
            letters += letter
    letters += "u" if mode & stat.S_ISUID else ""
    letters += "g" if mode & stat.S_ISGID else ""
    letters += "c" if stat.S_ISCHR(mode) else ""
    letters += "t" if mode & stat.S_ISVTX else ""
    rwx = "".join(char if mode & (1 << (8 - i)) else "-" for i, char in enumerate("rwxrwxrwx"))
    return (letters or "-") + rwx


def go_error(exc: OSError, op: str, path: str) -> str:
    """A Go *PathError: `open /x: no such file or directory`."""
    return f"{op} {path}: {(exc.strerror or str(exc)).lower()}"


def run_mounttest(inv: Invocation) -> int:
    """Each flag's check in upstream's order, one line each; exit 1 if any failed."""
    flags = inv.flags
    os.umask(0)
    failed = False

    def read(path: str) -> bool:
        try:
            with open(path) as f:
                print(f'content of file "{path}": {f.read()}')
            return True
        except OSError as exc:
            print(f'error reading file content for "{path}": {go_error(exc, "open", path)}')
            return False

    def check(flag: str, action: Callable[[str], bool]) -> None:
        nonlocal failed
        if flags[flag] and not action(flags[flag]):
            failed = True

    def fstype(path: str) -> bool:
        try:
            kind = fs_type(path)
        except OSError as exc:
            print(f'error from statfs("{path}"): {(exc.strerror or "").lower()}')
            return False
        print(f'mount type of "{path}": {"tmpfs" if kind == TMPFS_MAGIC else kind}')
        return True

    def new_file(perm: int) -> Callable[[str], bool]:
        def write(path: str) -> bool:
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, perm)
                with os.fdopen(fd, "w") as f:
                    f.write(NEW_FILE_CONTENT)
            except OSError as exc:
                print(f'error writing new file "{path}": {go_error(exc, "open", path)}')
                return False
            return read(path)
        return write

    def stat_line(show: Callable[[os.stat_result, str], str]) -> Callable[[str], bool]:
        def run(path: str) -> bool:
            try:
                st = os.stat(path)
            except OSError as exc:
                print(f'error from Stat("{path}"): {go_error(exc, "stat", path)}')
                return False
            print(show(st, path))
            return True
        return run

    def in_loop(path: str) -> bool:
        deadline = time.monotonic() + flags["retry_time"]
        ok = False
        while time.monotonic() < deadline:
            try:
                with open(path) as f:
                    content = f.read()
                ok = True
            except OSError as exc:
                print(f"Error reading file {path}: {go_error(exc, 'open', path)}, retrying")
                ok = False
                time.sleep(2)
                continue
            print(f'content of file "{path}": {content}')
            if not flags["break_on_expected_content"]:
                time.sleep(2)
                continue
            if content == NEW_FILE_CONTENT:
                break
            print(f"Unexpected content. Expected: {NEW_FILE_CONTENT}. Retrying", end="")
            time.sleep(2)
        return ok

    check("fs_type", fstype)
    for perm in ("0644", "0666", "0660", "0777"):
        check(f"new_file_{perm}", new_file(int(perm, 8)))
    check("file_mode", stat_line(lambda st, path: f'mode of file "{path}": {go_file_mode(st.st_mode)}'))
    check("file_perm", stat_line(lambda st, path: f'perms of file "{path}": {go_file_mode(st.st_mode & 0o777)}'))
    check("file_owner", stat_line(lambda st, path: f'owner UID of "{path}": {st.st_uid}\n'
                                                   f'owner GID of "{path}": {st.st_gid}'))
    check("file_content", read)
    check("file_content_in_loop", in_loop)
    return 1 if failed else 0


def run_entrypoint_tester(inv: Invocation) -> int:
    """Prints its whole command line as Go prints a []string: `[/agnhost entrypoint-tester a b]`."""
    print("[" + " ".join(inv.argv) + "]")
    return 0


COMMANDS: dict[str, Command] = {
    "netexec": Command(run_netexec, {"http-port": 8080, "udp-port": 8081, "sctp-port": -1, "tls-cert-file": "",
                                     "tls-private-key-file": "", "http-override": ""}),
    "serve-hostname": Command(run_serve_hostname, {"tcp": False, "udp": False, "http": True, "close": False,
                                                   "port": 9376}),
    "porter": Command(run_porter, {"json-response": False}),
    "pause": Command(run_pause),
    "connect": Command(run_connect, {"timeout": 0.0, "protocol": "tcp"}, max_args=None, exact_args=1),
    "test-webserver": Command(run_test_webserver, {"port": 80}),
    "liveness": Command(run_liveness),
    "dns-suffix": Command(run_dns_suffix),
    "dns-server-list": Command(run_dns_server_list),
    "etc-hosts": Command(run_etc_hosts),
    "entrypoint-tester": Command(run_entrypoint_tester, max_args=None),
    "mounttest": Command(run_mounttest, {"fs_type": "", "file_mode": "", "file_perm": "", "file_owner": "",
                                         "new_file_0644": "", "new_file_0666": "", "new_file_0660": "",
                                         "new_file_0777": "", "file_content": "", "file_content_in_loop": "",
                                         "retry_time": 180, "break_on_expected_content": True}),
}

# Programs that keep running until stopped die on SIGTERM as Go programs do when PID 1 of their
# container: the runtime's handler re-raises it, the kernel ignores it for PID 1, and the
# program exits with status 2. pause and serve-hostname handle SIGTERM themselves.
OWN_SIGTERM = {"pause": {signal.SIGTERM, signal.SIGINT}, "serve-hostname": {signal.SIGTERM}}


def main(argv: list[str]) -> int:
    setup_logging()
    argv0 = "/agnhost"
    if argv[:1] == ["--as"]:  # run as /agnhost-2 (the image's second name for the program)
        argv0, argv = argv[1], argv[2:]
    if argv and argv[0] in ("-h", "--help", "help"):
        print("agnhost: " + ", ".join(sorted(COMMANDS)))
        return 0
    try:
        invocation = parse_command_line(argv, argv0)
    except UsageError as exc:
        sys.stderr.write(f"Error: {exc}\nRun 'agnhost {argv[0] if argv and argv[0] in COMMANDS else ''}"
                         f"{' ' if argv and argv[0] in COMMANDS else ''}--help' for usage.\n")
        return 1
    if invocation.name in OWN_SIGTERM:  # blocked in every thread, taken by sigwait()
        signal.pthread_sigmask(signal.SIG_BLOCK, OWN_SIGTERM[invocation.name])
    else:
        signal.signal(signal.SIGTERM, lambda signum, frame: os._exit(2))
    try:
        return COMMANDS[invocation.name].run(invocation) or 0
    except KeyboardInterrupt:
        return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
