"""The bundled web applications of the image catalog (standard library only).

Run as `python -I -u webapps.py APP [ARGS...]` inside a pod; APP is kubia, http-echo,
hello-app, echo-server or httpd (agnhost is programs/agnhost.py). Each answers as the real image does; the hostname is the
pod's (its own UTS namespace), so answers name the pod that served them.
"""

from __future__ import annotations

import json
import mimetypes
import os
import socket
import signal
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlsplit


def log(line: str) -> None:
    print(line, flush=True)


def go_log(line: str) -> None:
    """Go's log package format: `2006/01/02 15:04:05 message`."""
    log(time.strftime("%Y/%m/%d %H:%M:%S ") + line)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "pocketkube"
    app: "App"

    def log_message(self, format: str, *args) -> None:  # the apps log their own way
        pass

    def _serve(self) -> None:
        status, body, content_type = self.app.answer(self)
        data = body.encode() if isinstance(body, str) else body
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = _serve

    def body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""


class App:
    port = 8080
    text_plain = "text/plain; charset=utf-8"

    def __init__(self, args: list[str]):
        self.args = args
        self.hostname = socket.gethostname()
        self.requests = 0
        self.lock = threading.Lock()

    def count(self) -> int:
        with self.lock:
            self.requests += 1
            return self.requests

    def answer(self, req: Handler) -> tuple[int, str | bytes, str]:
        raise NotImplementedError

    def starting(self) -> None:
        pass

    def server_header(self) -> dict:
        """Handler attributes that make the Server header (the default names pocketkube)."""
        return {}

    def serve(self, host: str = "") -> None:
        handler = type("AppHandler", (Handler,), {"app": self, **self.server_header()})
        server = ThreadingHTTPServer((host, self.port), handler)
        server.daemon_threads = True
        self.starting()
        server.serve_forever()


class Kubia(App):
    """luksa/kubia: v1, v2, v3 (fails after 5 requests) and kubia-unhealthy."""

    def starting(self) -> None:
        log("Kubia server starting...")

    def answer(self, req):
        mode = self.args[0] if self.args else "v1"
        log(f"Received request from ::ffff:{req.client_address[0]}")
        n = self.count()
        if mode == "unhealthy" and n > 5:
            return 500, "I'm not well. Please restart me!", self.text_plain
        if mode == "v3" and n > 5:
            return 500, f"Some internal error has occurred! This is pod {self.hostname}\n", self.text_plain
        if mode in ("v2", "v3"):
            return 200, f"This is {mode} running in pod {self.hostname}\n", self.text_plain
        return 200, f"You've hit {self.hostname}\n", self.text_plain


def go_flags(args: list[str], defaults: dict[str, str]) -> dict[str, str]:
    """Go's flag syntax: -name=value, -name value, --name=value."""
    values = dict(defaults)
    i = 0
    while i < len(args):
        arg = args[i]
        if not arg.startswith("-"):
            i += 1
            continue
        name, eq, value = arg.lstrip("-").partition("=")
        if not eq and i + 1 < len(args) and name in defaults and defaults[name] != "bool":
            value = args[i + 1]
            i += 1
        values[name] = value if (eq or value) else "true"
        i += 1
    return values


class HttpEcho(App):
    """hashicorp/http-echo: answers -text on -listen (default :5678)."""

    def __init__(self, args):
        super().__init__(args)
        self.flags = go_flags(args, {"text": "", "listen": ":5678", "status-code": "200"})
        self.port = int(self.flags["listen"].rpartition(":")[2] or 5678)

    def starting(self) -> None:
        go_log(f"[INFO] server is listening on {self.flags['listen']}")

    def answer(self, req):
        started = time.monotonic()
        if urlsplit(req.path).path == "/health":
            status, body = 200, '{"status":"ok"}\n'
        else:
            status, body = int(self.flags["status-code"]), self.flags["text"] + "\n"
        micros = (time.monotonic() - started) * 1e6
        go_log(f'{req.headers.get("Host", "")} {req.client_address[0]}:{req.client_address[1]} '
               f'"{req.command} {req.path} {req.request_version}" {status} {len(body)} '
               f'"{req.headers.get("User-Agent", "")}" {micros:.3f}µs')
        return status, body, self.text_plain


class HelloApp(App):
    """gcr.io/google-samples/hello-app."""

    def __init__(self, args):
        super().__init__(args)
        version = args[0] if args else "1.0"
        self.version = version if version.count(".") >= 2 else version + ".0"
        self.port = int(os.environ.get("PORT") or 8080)

    def starting(self) -> None:
        go_log(f"Server listening on port {self.port}")

    def answer(self, req):
        go_log(f"Serving request: {urlsplit(req.path).path}")
        return 200, f"Hello, world!\nVersion: {self.version}\nHostname: {self.hostname}\n", self.text_plain


class EchoServer(App):
    """Echo servers: JSON (ealen/echo-server) or text (jmalloc/echo-server)."""

    def __init__(self, args):
        super().__init__(args)
        self.format = args[0] if args else "text"
        self.port = int(os.environ.get("PORT") or (args[1] if len(args) > 1 else 8080))

    def starting(self) -> None:
        if self.format == "json":
            log(f"Listening on port {self.port}.")
        else:
            log(f"Echo server listening on port {self.port}.")

    def answer(self, req):
        ip, port = req.client_address[0], req.client_address[1]
        body = req.body()
        if self.format == "json":
            return 200, json.dumps(self.as_json(req, ip, port, body)), "application/json; charset=utf-8"
        lines = [f"Request served by {self.hostname}", "", f"{req.request_version} {req.command} {req.path}", "",
                 f"Client: {ip}:{port}"]
        lines += [f"{name}: {value}" for name, value in req.headers.items()]
        text = "\n".join(lines) + "\n"
        if body:
            text += "\n" + body.decode(errors="replace") + "\n"
        return 200, text, self.text_plain

    def as_json(self, req, ip: str, port: int, body: bytes) -> dict:
        url = urlsplit(req.path)
        query = {k: v[0] if len(v) == 1 else v for k, v in parse_qs(url.query).items()}
        host = req.headers.get("Host", "").rpartition(":")[0] or req.headers.get("Host", "")
        try:
            parsed_body = json.loads(body) if body else {}
        except ValueError:
            parsed_body = body.decode(errors="replace")
        return {
            "host": {"hostname": host, "ip": f"::ffff:{ip}", "ips": []},
            "http": {"method": req.command, "baseUrl": "", "originalUrl": req.path, "protocol": "http"},
            "request": {"params": {"0": url.path}, "query": query, "cookies": {}, "body": parsed_body,
                        "headers": {k.lower(): v for k, v in req.headers.items()}},
            "client": {"address": ip, "port": port},
            "environment": {"HOSTNAME": self.hostname, **{k: v for k, v in os.environ.items() if k != "HOSTNAME"}},
        }


class Httpd(App):
    """httpd (Apache's official image): the files of /usr/local/apache2/htdocs on port 80,
    index.html for a directory, Apache's 404 page, the common log format on stdout."""

    port = 80
    root = "/usr/local/apache2/htdocs"
    not_found = ('<!DOCTYPE HTML PUBLIC "-//IETF//DTD HTML 2.0//EN">\n<html><head>\n<title>404 Not Found</title>\n'
                 '</head><body>\n<h1>Not Found</h1>\n<p>The requested URL was not found on this server.</p>\n'
                 '</body></html>\n')

    def __init__(self, args):
        super().__init__(args)
        self.version = args[0] if args and args[0][:1].isdigit() else "2.4"

    def starting(self) -> None:
        stamp = time.strftime("%a %b %d %H:%M:%S.000000 %Y")
        print(f"[{stamp}] [mpm_event:notice] [pid {os.getpid()}:tid 1] AH00489: Apache/{self.version} (Unix) "
              "configured -- resuming normal operations", file=sys.stderr, flush=True)

    def answer(self, req):
        path = os.path.normpath("/" + unquote(urlsplit(req.path).path))
        target = os.path.join(self.root, path.lstrip("/"))
        if os.path.isdir(target):
            target = os.path.join(target, "index.html")
        try:
            with open(target, "rb") as f:
                status, body, content_type = 200, f.read(), self.content_type(target)
        except OSError:
            status, body, content_type = 404, self.not_found.encode(), "text/html; charset=iso-8859-1"
        stamp = time.strftime("%d/%b/%Y:%H:%M:%S %z")
        log(f'{req.client_address[0]} - - [{stamp}] "{req.requestline}" {status} {len(body)}')
        return status, body, content_type

    @staticmethod
    def content_type(path: str) -> str:
        return mimetypes.guess_type(path)[0] or "text/plain"

    def server_header(self) -> dict:
        return {"server_version": f"Apache/{self.version} (Unix)", "sys_version": ""}


APPS = {"kubia": Kubia, "http-echo": HttpEcho, "hello-app": HelloApp, "echo-server": EchoServer,
        "httpd": Httpd}


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in APPS:
        print(f"usage: webapps.py {{{','.join(APPS)}}} [args...]", file=sys.stderr)
        return 2
    app = APPS[argv[0]](argv[1:])
    if isinstance(app, HttpEcho) and not app.flags["text"]:
        print("Missing -text option!", file=sys.stderr)
        return 127
    # As PID 1 of its container a process gets no default SIGTERM action; these servers stop
    # on it, as the real images (Go http servers) do, so deletion does not wait out the grace period.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(0))
    try:
        app.serve()
    except KeyboardInterrupt:
        return 0
    except OSError as exc:
        print(f"listen tcp :{app.port}: {exc.strerror}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
