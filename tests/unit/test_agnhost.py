"""The bundled agnhost (programs/agnhost.py): its command line, Go's formats, and netexec's,
serve-hostname's and porter's answers, with servers on loopback ports of this machine only."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request

import pytest

from pocketkube.node.images import PROGRAMS_DIR
from pocketkube.node.images.programs import agnhost

PROGRAM = os.path.join(PROGRAMS_DIR, "agnhost.py")
HOST = socket.gethostname()


# ---- the command line and Go's formats ---------------------------------------------------------

@pytest.mark.parametrize("argv, flags, args", [
    (["netexec"], {"http-port": 8080, "udp-port": 8081, "http-override": ""}, []),
    (["netexec", "--http-port=80", "--udp-port", "90"], {"http-port": 80, "udp-port": 90}, []),
    (["serve-hostname", "--http=false", "--tcp", "--udp"], {"http": False, "tcp": True, "udp": True,
                                                            "port": 9376}, []),
    (["serve-hostname", "--port", "9000", "--close"], {"http": True, "close": True, "port": 9000}, []),
    (["connect", "--timeout=3s", "10.0.0.1:80"], {"timeout": 3.0, "protocol": "tcp"}, ["10.0.0.1:80"]),
    (["connect", "10.0.0.1:80", "--protocol", "tcp", "--timeout", "500ms"], {"timeout": 0.5}, ["10.0.0.1:80"]),
    (["porter", "--json-response"], {"json-response": True}, []),
    (["test-webserver", "--port=8000"], {"port": 8000}, []),
])
def test_command_line(argv, flags, args):
    inv = agnhost.parse_command_line(argv)
    assert inv.name == argv[0] and inv.args == args
    for name, value in flags.items():
        assert inv.flags[name] == value


@pytest.mark.parametrize("argv, message", [
    (["nope"], 'unknown command "nope" for "agnhost"'),
    (["netexec", "--nope=1"], "unknown flag: --nope"),
    (["netexec", "--http-port=x"], 'invalid argument "x" for "--http-port" flag'),
    (["netexec", "extra"], "accepts at most 0 arg(s), received 1"),
    (["connect"], "accepts 1 arg(s), received 0"),
    (["connect", "--timeout=3", "a:1"], 'time: missing unit in duration "3"'),
])
def test_command_line_errors(argv, message):
    with pytest.raises(agnhost.UsageError) as err:
        agnhost.parse_command_line(argv)
    assert message in str(err.value)


def test_usage_error_exits_1_as_cobra_does():
    cp = subprocess.run([sys.executable, "-I", PROGRAM, "netexec", "--bogus"], capture_output=True, text=True,
                        timeout=30)
    assert cp.returncode == 1
    assert cp.stderr == "Error: unknown flag: --bogus\nRun 'agnhost netexec --help' for usage.\n"


@pytest.mark.parametrize("text, seconds", [
    ("0", 0), ("1s", 1), ("1.5s", 1.5), ("300ms", 0.3), ("1h2m3s", 3723), ("-2s", -2), ("10us", 1e-5)])
def test_parse_duration(text, seconds):
    assert agnhost.parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "1", "s", "1x", "1s2"])
def test_parse_duration_rejects(text):
    with pytest.raises(ValueError):
        agnhost.parse_duration(text)


@pytest.mark.parametrize("seconds, text", [(0, "0s"), (1.5, "1.5s"), (0.3, "300ms"), (120, "2m0s"), (3723, "1h2m3s")])
def test_format_duration(seconds, text):
    assert agnhost.format_duration(seconds) == text


def test_go_json_is_compact_sorted_and_escapes_html():
    assert agnhost.go_json({"responses": ["a<b>&"], "errors": ["x"]}) == \
        '{"errors":["x"],"responses":["a\\u003cb\\u003e\\u0026"]}'
    assert agnhost.go_json({}) == "{}"


@pytest.mark.parametrize("address, text", [
    (("10.244.1.5", 80), "10.244.1.5:80"), (("::ffff:10.244.1.5", 80), "10.244.1.5:80"),
    (("fd00::1", 80, 0, 0), "[fd00::1]:80")])
def test_host_port(address, text):
    assert agnhost.host_port(address) == text


# ---- netexec ------------------------------------------------------------------------------------

@pytest.fixture
def netexec():
    """netexec's HTTP and UDP servers on loopback ports; yields (http_port, udp_port, app)."""
    flags = agnhost.parse_command_line(["netexec", "--http-port=0", "--udp-port=0"]).flags
    app = agnhost.Netexec(flags)
    udp = agnhost.udp_socket(0, "127.0.0.1")
    threading.Thread(target=app.udp_server, args=(udp,), daemon=True).start()
    app.server = agnhost.GoServer(0, app, host="127.0.0.1")
    agnhost.serve_in_thread(app.server)
    assert app.udp_ready.wait(5)
    yield app.server.server_address[1], udp.getsockname()[1], app
    app.server.shutdown()
    app.server.server_close()
    udp.close()


def get(port: int, path: str) -> tuple[int, str, dict]:
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}")
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}), NoRedirect())
    try:
        with opener.open(request, timeout=10) as response:
            return response.status, response.read().decode(), dict(response.headers)
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode(), dict(exc.headers)


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


def closed_port(kind: int) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_netexec_routes(netexec):
    port, _, _ = netexec
    assert get(port, "/hostname")[:2] == (200, HOST)
    assert get(port, "/hostName")[:2] == (200, HOST)
    status, body, headers = get(port, "/healthz")
    assert (status, body, headers["Content-Length"]) == (200, "", "0")
    status, body, headers = get(port, "/echo?msg=hello")
    assert (status, body, headers["Content-Type"]) == (200, "hello", "text/plain; charset=utf-8")
    assert "Server" not in headers and "Date" in headers
    assert get(port, "/echo?msg=nope&code=404")[:2] == (404, "nope")
    assert get(port, "/clientip")[1].startswith("127.0.0.1:")
    assert get(port, "/anything")[1].startswith("NOW: ")
    status, _, headers = get(port, "/redirect?location=/echo%3Fmsg%3Dfoobar&code=307")
    assert (status, headers["Location"]) == (307, "/echo?msg=foobar")
    assert get(port, "/redirect?location=/x")[0] == 302


def test_netexec_shell(netexec):
    port, _, _ = netexec
    assert json.loads(get(port, "/shell?cmd=echo%20hi")[1]) == {"output": "hi\n"}
    assert json.loads(get(port, "/shell?shellCommand=echo%20x;%20exit%203")[1]) == \
        {"output": "x\n", "error": "exit status 3"}


def test_netexec_dial_http_and_udp(netexec):
    port, udp_port, _ = netexec
    status, body, _ = get(port, f"/dial?request=hostname&protocol=http&host=127.0.0.1&port={port}&tries=2")
    assert (status, json.loads(body)) == (200, {"responses": [HOST, HOST]})
    body = get(port, f"/dial?request=hostname&protocol=udp&host=localhost&port={udp_port}&tries=1")[1]
    assert json.loads(body) == {"responses": [HOST]}
    body = get(port, f"/dial?request=echo%20Hello&protocol=udp&host=127.0.0.1&port={udp_port}")[1]
    assert json.loads(body) == {"responses": ["hello"]}  # netexec lowercases what it receives
    body = get(port, f"/dial?request=clientip&protocol=udp&host=127.0.0.1&port={udp_port}")[1]
    assert json.loads(body)["responses"][0].startswith("127.0.0.1:")
    body = get(port, f"/dial?request=echo%3Fmsg%3Dhi&host=127.0.0.1&port={port}")[1]
    assert json.loads(body) == {"responses": ["hi"]}


def test_netexec_dial_errors(netexec):
    port, _, _ = netexec
    dead_tcp = closed_port(socket.SOCK_STREAM)
    body = json.loads(get(port, f"/dial?request=hostname&protocol=http&host=127.0.0.1&port={dead_tcp}")[1])
    assert body == {"errors": [f'Get "http://127.0.0.1:{dead_tcp}/hostname": dial tcp 127.0.0.1:{dead_tcp}: '
                               f'connect: connection refused']}
    dead_udp = closed_port(socket.SOCK_DGRAM)
    body = json.loads(get(port, f"/dial?request=hostname&protocol=udp&host=127.0.0.1&port={dead_udp}")[1])
    assert list(body) == ["errors"] and body["errors"][0].startswith("reading from udp connection failed.")
    status, body, headers = get(port, "/dial?host=127.0.0.1&port=1")
    assert (status, body) == (400, "request parameter not specified. <nil>\n")
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert get(port, "/dial?request=x&protocol=sctp2&host=127.0.0.1&port=1")[:2] == \
        (400, "unsupported protocol. sctp2\n")
    assert get(port, "/dial?request=x&host=127.0.0.1&port=1&tries=x")[0] == 400
    assert get(port, "/dial?request=x&host=127.0.0.1&port=http")[1].startswith("host and/or port param are invalid.")


def test_netexec_dial_keeps_responses_only_when_the_last_try_answered(netexec, monkeypatch):
    """Go's quirk: "responses" is dropped when the last try failed, even after successes."""
    port, _, app = netexec
    answers = iter(["pod-a", agnhost.DialError("boom")])

    def fake(request, address):
        answer = next(answers)
        if isinstance(answer, Exception):
            raise answer
        return answer

    monkeypatch.setattr(agnhost, "dial_http", fake)
    body = get(port, f"/dial?request=hostname&host=127.0.0.1&port={port}&tries=2")[1]
    assert json.loads(body) == {"errors": ["boom"]}


def test_netexec_healthz_waits_for_the_udp_server():
    flags = agnhost.parse_command_line(["netexec"]).flags
    app = agnhost.Netexec(flags)
    server = agnhost.GoServer(0, app, host="127.0.0.1")
    agnhost.serve_in_thread(server)
    try:
        assert get(server.server_address[1], "/healthz")[0] == 412
    finally:
        server.shutdown()
        server.server_close()


def test_netexec_http_override(netexec):
    port, _, app = netexec
    app.override = "/echo?msg=overridden"
    assert get(port, "/hostname")[1] == "overridden"


@pytest.fixture
def program(tmp_path):
    """Runs programs/agnhost.py as a process (own process group, killed at the end)."""
    started = []

    def run(*args, env=None):
        proc = subprocess.Popen([sys.executable, "-I", "-u", PROGRAM, *args], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, env={**os.environ, **(env or {})},
                                cwd=str(tmp_path), start_new_session=True)
        started.append(proc)
        return proc

    yield run
    for proc in started:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)
        for stream in (proc.stdout, proc.stderr):
            stream.close()


def wait_for_port(port: int, kind: int = socket.SOCK_STREAM) -> None:
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.05)
    raise AssertionError(f"nothing listens on 127.0.0.1:{port}")


def test_netexec_exit_with_a_code(program):
    port = closed_port(socket.SOCK_STREAM)
    proc = program("netexec", f"--http-port={port}", f"--udp-port={closed_port(socket.SOCK_DGRAM)}")
    wait_for_port(port)
    assert get(port, "/exit?code=7&timeout=2s")[0] == 200
    assert proc.wait(10) == 7
    err = proc.stderr.read()
    assert "Will begin shutdown in 0s, allowing 2s for connections to close, then will exit with 7" in err
    assert "Graceful shutdown completed with: <nil>" in err


def test_netexec_dies_on_sigterm_as_a_go_program(program):
    port = closed_port(socket.SOCK_STREAM)
    proc = program("netexec", f"--http-port={port}", f"--udp-port={closed_port(socket.SOCK_DGRAM)}")
    wait_for_port(port)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(10) == 2
    lines = proc.stderr.read().splitlines()
    assert any(line.endswith(f" Started HTTP server on port {port}") for line in lines)
    assert all(time.strptime(line[:19], "%Y/%m/%d %H:%M:%S") for line in lines)  # Go's log format


# ---- serve-hostname, porter, pause, connect -------------------------------------------------------

def test_serve_hostname_refuses_http_with_tcp(program):
    proc = program("serve-hostname", "--tcp")
    assert proc.wait(10) == 1
    assert proc.stderr.read().endswith("Can't server TCP/UDP mode and HTTP mode at the same time\n")


def test_serve_hostname_tcp_and_udp(program):
    port = closed_port(socket.SOCK_STREAM)
    proc = program("serve-hostname", "--http=false", "--tcp", "--udp", f"--port={port}")
    wait_for_port(port)
    with socket.create_connection(("127.0.0.1", port), timeout=15) as conn:
        assert conn.recv(100) == HOST.encode()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(15)  # generous: other tests may load the machine
        sock.sendto(b"x", ("127.0.0.1", port))
        assert sock.recv(100) == HOST.encode()
    proc.send_signal(signal.SIGTERM)
    time.sleep(0.5)
    assert proc.poll() is None  # it waits 60 s for the pod's deletion, as upstream
    proc.kill()
    err = proc.stderr.read()
    assert f"Serving on port {port}." in err and "Shutting down after receiving signal: terminated." in err


def test_serve_hostname_http(program):
    port = closed_port(socket.SOCK_STREAM)
    program("serve-hostname", f"--port={port}", "--close")
    wait_for_port(port)
    status, body, headers = get(port, "/anything")
    assert (status, body, headers["Connection"]) == (200, HOST, "close")


def test_porter_serves_its_environment(program, tmp_path):
    plain, json_port = closed_port(socket.SOCK_STREAM), closed_port(socket.SOCK_STREAM)
    program("porter", env={f"SERVE_PORT_{plain}": '<a href="/rewriteme">test</a>'})
    program("porter", "--json-response", env={f"SERVE_PORT_{json_port}": "foo"})
    wait_for_port(plain)
    wait_for_port(json_port)
    status, body, headers = get(plain, "/any/path")
    assert (status, body, headers["Content-Type"]) == (200, '<a href="/rewriteme">test</a>', "text/html; charset=utf-8")
    status, body, headers = get(json_port, "/")
    assert (json.loads(body), headers["Content-Type"]) == ({"Method": "GET", "Body": "foo"}, "application/json")


def test_pause_exits_2_on_sigterm(program):
    proc = program("pause")
    assert proc.stdout.readline() == "Paused\n"
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(10) == 2


def test_connect_reports_refused_and_success(program):
    dead = closed_port(socket.SOCK_STREAM)
    proc = program("connect", f"127.0.0.1:{dead}", "--timeout=1s")
    assert (proc.wait(10), proc.stderr.read()) == (1, "REFUSED\n")
    with socket.create_server(("127.0.0.1", 0)) as listener:
        proc = program("connect", "--timeout=3s", f"127.0.0.1:{listener.getsockname()[1]}")
        assert proc.wait(10) == 0
    proc = program("connect", "no-port")
    assert proc.wait(10) == 1 and proc.stderr.read().startswith("UNKNOWN: ")


def test_entrypoint_tester_prints_its_command_line(program):
    proc = program("--as", "/agnhost-2", "entrypoint-tester", "a", "b")
    assert (proc.wait(10), proc.stdout.read()) == (0, "[/agnhost-2 entrypoint-tester a b]\n")


# ---- mounttest ------------------------------------------------------------------------------------

@pytest.mark.parametrize("mode, text", [
    (0o100644, "-rw-r--r--"), (0o040777, "drwxrwxrwx"), (0o041777, "dtrwxrwxrwx"), (0o104755, "urwxr-xr-x"),
    (0o020666, "Dcrw-rw-rw-"), (0o120777, "Lrwxrwxrwx"), (0o644, "-rw-r--r--")])
def test_go_file_mode(mode, text):
    assert agnhost.go_file_mode(mode) == text


def test_mounttest_reports_as_upstream(program, tmp_path):
    new = tmp_path / "new"
    proc = program("mounttest", f"--new_file_0660={new}", f"--file_perm={new}", f"--file_mode={tmp_path}",
                   f"--file_content={tmp_path / 'missing'}")
    assert proc.wait(10) == 1  # the missing file
    assert proc.stdout.read().splitlines() == [
        f'content of file "{new}": mount-tester new file', "",
        f'mode of file "{tmp_path}": {agnhost.go_file_mode(os.stat(tmp_path).st_mode)}',
        f'perms of file "{new}": -rw-rw----',
        f'error reading file content for "{tmp_path / "missing"}": open {tmp_path / "missing"}: '
        f'no such file or directory']
    shm = "/dev/shm" if os.path.isdir("/dev/shm") else None
    if shm:
        proc = program("mounttest", f"--fs_type={shm}")
        assert (proc.wait(10), proc.stdout.read()) == (0, f'mount type of "{shm}": tmpfs\n')
