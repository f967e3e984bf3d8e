"""The image catalog: reference parsing, Kubernetes' command/args rules, each family's
command line and pod mounts, the pull error, and the bundled web apps' answers."""

from __future__ import annotations

import json
import os
import shutil
import sys

import pytest

from pocketkube.node import images
from pocketkube.node.images import busybox, nginx
from pocketkube.node.images.programs import webapps

POD = {"metadata": {"name": "web-1", "namespace": "default", "uid": "u1"}, "spec": {}}


def resolve(image, command=None, args=None, tmp_path=None, container=None):
    run_dir = str(tmp_path / "run") if tmp_path else "/nonexistent"
    return images.resolve(image, command, args, POD, container or {"name": "c", "image": image},
                          run_dir=run_dir, cache_dir=str(tmp_path / "cache") if tmp_path else "/nonexistent")


@pytest.mark.parametrize("image, name, normalized", [
    ("nginx", "nginx", "docker.io/library/nginx:latest"),
    ("nginx:1.25-alpine", "nginx", "docker.io/library/nginx:1.25-alpine"),
    ("docker.io/library/nginx:1.25", "nginx", "docker.io/library/nginx:1.25"),
    ("index.docker.io/library/busybox", "busybox", "docker.io/library/busybox:latest"),
    ("nginx@sha256:abcd", "nginx", "docker.io/library/nginx@sha256:abcd"),
    ("luksa/kubia:v2", "luksa/kubia", "docker.io/luksa/kubia:v2"),
    ("registry.k8s.io/pause:3.9", "registry.k8s.io/pause", "registry.k8s.io/pause:3.9"),
    ("localhost:5000/team/app:1", "localhost:5000/team/app", "localhost:5000/team/app:1"),
    ("gcr.io/google-samples/hello-app:2.0", "gcr.io/google-samples/hello-app",
     "gcr.io/google-samples/hello-app:2.0"),
])
def test_parse_image(image, name, normalized):
    ref = images.parse_image(image)
    assert ref.name == name
    assert ref.normalized == normalized


@pytest.mark.parametrize("entrypoint, cmd, command, args, expected", [
    (["/ep"], ["default"], None, None, ["/ep", "default"]),
    (["/ep"], ["default"], ["other"], None, ["other"]),          # command drops CMD too
    (["/ep"], ["default"], None, ["a", "b"], ["/ep", "a", "b"]),  # args replace CMD
    (["/ep"], ["default"], ["other"], ["x"], ["other", "x"]),
    ([], ["sh"], None, None, ["sh"]),
])
def test_kubernetes_command_rules(entrypoint, cmd, command, args, expected):
    assert images.kubernetes_argv(entrypoint, cmd, command, args) == expected


def test_nginx_runs_debian_nginx_with_the_pod_config(tmp_path):
    resolved = resolve("nginx:1.25", tmp_path=tmp_path)
    assert resolved.argv == [nginx.NGINX, "-g", "daemon off;"]
    assert resolved.image == "docker.io/library/nginx:1.25"
    conf = resolved.files[resolved.mounts["/etc/nginx/nginx.conf"]].decode()
    assert "pid        /run/nginx.pid;" in conf and "access_log  /dev/stdout  main;" in conf
    assert "error_log  stderr notice;" in conf and "worker_processes  1;" in conf
    server = resolved.files[os.path.join(resolved.mounts["/etc/nginx/conf.d"], "default.conf")].decode()
    assert "listen       80;" in server
    html = resolved.mounts["/usr/share/nginx/html"]
    with open(os.path.join(html, "index.html")) as f:
        assert "<title>Welcome to nginx!</title>" in f.read()


def test_nginx_command_given_by_the_user_still_uses_debian_nginx(tmp_path):
    resolved = resolve("nginx", command=["nginx", "-g", "daemon off; worker_processes 2;"], tmp_path=tmp_path)
    assert resolved.argv[0] == nginx.NGINX


@pytest.mark.skipif(shutil.which("busybox") is None, reason="busybox is not installed")
@pytest.mark.parametrize("image", ["busybox", "busybox:1.36", "alpine:3.19", "docker.io/library/busybox"])
def test_busybox_images_get_applets_as_bin(image, tmp_path):
    resolved = resolve(image, tmp_path=tmp_path)
    assert resolved.argv == ["sh"]
    assert resolved.env["PATH"].startswith("/bin:")
    bin_dir = resolved.mounts["/bin"]
    for applet in ("sh", "nslookup", "cat", "sleep", "env", "ls"):
        assert os.readlink(os.path.join(bin_dir, applet)) == busybox.busybox_binary()
    assert os.access(os.path.join(bin_dir, "wget"), os.X_OK)  # the -T wrapper


@pytest.fixture
def loopback_http():
    """An HTTP server on loopback that answers "hi", and a port that accepts and never answers."""
    import socket
    import threading

    server, silent = socket.socket(), socket.socket()
    for sock in (server, silent):
        sock.bind(("127.0.0.1", 0))
        sock.listen(8)

    def serve():
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            with conn:
                conn.recv(4096)
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nConnection: close\r\n\r\nhi\n")

    threading.Thread(target=serve, daemon=True).start()
    yield server.getsockname()[1], silent.getsockname()[1]
    server.close()
    silent.close()


@pytest.mark.skipif(shutil.which("busybox") is None, reason="busybox is not installed")
@pytest.mark.parametrize("timeout_args", [[], ["-T", "2"], ["-T2"]])
def test_busybox_wget_takes_a_timeout(timeout_args, tmp_path, loopback_http):
    """Debian's busybox wget crashes on -T; the pods' wget honours it as busybox's image does."""
    import subprocess

    answering, silent = loopback_http
    wget = os.path.join(busybox.ensure_bin_dir(str(tmp_path)), "wget")
    cp = subprocess.run([wget, "-qO-", *timeout_args, f"http://127.0.0.1:{answering}/"],
                        capture_output=True, text=True, timeout=30)
    assert (cp.returncode, cp.stdout) == (0, "hi\n")
    if timeout_args:
        cp = subprocess.run([wget, "-qO-", *timeout_args, f"http://127.0.0.1:{silent}/"],
                            capture_output=True, text=True, timeout=30)
        assert (cp.returncode, cp.stderr) == (1, "wget: download timed out\n")


@pytest.mark.skipif(shutil.which("busybox") is None, reason="busybox is not installed")
def test_busybox_command_and_args(tmp_path):
    resolved = resolve("busybox", command=["wget", "-O-"], args=["http://x"], tmp_path=tmp_path)
    assert resolved.argv == ["wget", "-O-", "http://x"]


@pytest.mark.skipif(shutil.which("busybox") is None, reason="busybox is not installed")
@pytest.mark.parametrize("args, expected", [
    (None, ["curl"]),
    (["-s", "http://x"], ["curl", "-s", "http://x"]),
    (["curl", "http://x"], ["curl", "http://x"]),
    (["sh"], ["sh"]),
])
def test_curl_image_entrypoint(args, expected, tmp_path):
    assert resolve("curlimages/curl", args=args, tmp_path=tmp_path).argv == expected


@pytest.mark.parametrize("image, command, args, tail", [
    ("luksa/kubia", None, None, ["kubia", "v1", "app.js"]),
    ("luksa/kubia:v2", None, None, ["kubia", "v2", "app.js"]),
    ("luksa/kubia-unhealthy", None, None, ["kubia", "unhealthy", "app.js"]),
    ("hashicorp/http-echo", None, ["-text=hello"], ["http-echo", "-text=hello"]),
    ("hashicorp/http-echo:1.0", ["/http-echo", "-listen=:8080", "-text", "hi"], None,
     ["http-echo", "-listen=:8080", "-text", "hi"]),
    ("ealen/echo-server", None, None, ["echo-server", "json", "80", "webserver"]),
    ("kicbase/echo-server:1.0", None, None, ["echo-server", "text", "8080"]),
    ("gcr.io/google-samples/hello-app:2.0", None, None, ["hello-app", "2.0"]),
])
def test_bundled_app_images(image, command, args, tail):
    resolved = resolve(image, command, args)
    assert resolved.argv[:3] == [sys.executable, "-I", "-u"]
    assert resolved.argv[3] == os.path.join(images.PROGRAMS_DIR, "webapps.py")
    assert resolved.argv[4:] == tail


AGNHOST_PY = os.path.join(images.PROGRAMS_DIR, "agnhost.py")


@pytest.mark.skipif(shutil.which("busybox") is None, reason="busybox is not installed")
@pytest.mark.parametrize("image, command, args, tail", [
    ("k8s.gcr.io/e2e-test-images/agnhost:2.21", None, None, ["pause"]),
    ("registry.k8s.io/e2e-test-images/agnhost:2.39", None, ["netexec", "--http-port=8080", "--udp-port=8081"],
     ["netexec", "--http-port=8080", "--udp-port=8081"]),
    ("k8s.gcr.io/e2e-test-images/agnhost:2.21", ["/agnhost", "serve-hostname"], None, ["serve-hostname"]),
    ("k8s.gcr.io/e2e-test-images/agnhost:2.21", ["/agnhost-2", "entrypoint-tester"], None,
     ["--as", "/agnhost-2", "entrypoint-tester"]),
    ("k8s.gcr.io/e2e-test-images/agnhost:2.21", ["/coredns"], ["-conf", "/etc/coredns/Corefile"],
     ["-conf", "/etc/coredns/Corefile"]),
])
def test_agnhost_image_runs_the_bundled_agnhost(image, command, args, tail, tmp_path):
    resolved = resolve(image, command, args, tmp_path=tmp_path)
    program = "coredns.py" if command == ["/coredns"] else "agnhost.py"
    assert resolved.argv == [sys.executable, "-I", "-u", os.path.join(images.PROGRAMS_DIR, program), *tail]


@pytest.mark.skipif(shutil.which("busybox") is None, reason="busybox is not installed")
def test_agnhost_image_layout(tmp_path):
    """/agnhost is a program of the pod (for `kubectl exec`), /bin has alpine's busybox with
    the programs upstream adds over it, /uploads is the pod's, the localhost certificate is there."""
    resolved = resolve("k8s.gcr.io/e2e-test-images/agnhost:2.21", tmp_path=tmp_path)
    script = resolved.files[resolved.mounts["/agnhost"]].decode()
    assert script.startswith("#!/bin/sh\n") and f"{AGNHOST_PY} \"$@\"" in script
    assert "--as /agnhost-2" in resolved.files[resolved.mounts["/agnhost-2"]].decode()
    assert os.path.isdir(resolved.mounts["/uploads"])
    assert resolved.env["PATH"].startswith("/bin:")
    bin_dir = resolved.mounts["/bin"]
    assert os.readlink(os.path.join(bin_dir, "sh")) == busybox.busybox_binary()
    for program in ("curl", "dig", "nc"):
        if shutil.which(program):
            assert os.readlink(os.path.join(bin_dir, program)) != busybox.busybox_binary()
    if shutil.which("openssl"):
        assert resolved.files[resolved.mounts["/localhost.crt"]].startswith(b"-----BEGIN CERTIFICATE-----")
        assert b"PRIVATE KEY" in resolved.files[resolved.mounts["/localhost.key"]]


@pytest.mark.skipif(shutil.which("busybox") is None, reason="busybox is not installed")
@pytest.mark.parametrize("image", ["docker.io/library/httpd:2.4.38-alpine", "httpd:2.4.39-alpine", "httpd"])
def test_httpd_image_serves_it_works(image, tmp_path):
    resolved = resolve(image, tmp_path=tmp_path)
    assert resolved.argv[3:5] == [os.path.join(images.PROGRAMS_DIR, "webapps.py"), "httpd"]
    htdocs = resolved.mounts["/usr/local/apache2/htdocs"]
    assert resolved.files[os.path.join(htdocs, "index.html")] == b"<html><body><h1>It works!</h1></body></html>\n"
    assert resolved.working_dir == "/usr/local/apache2"
    assert os.readlink(os.path.join(resolved.mounts["/bin"], "sh")) == busybox.busybox_binary()
    assert os.readlink(os.path.join(resolved.mounts["/bin"], "mv")) == shutil.which("mv")  # it has -v


@pytest.mark.parametrize("image", ["gcr.io/kubernetes-e2e-test-images/jessie-dnsutils:1.0",
                                   "k8s.gcr.io/e2e-test-images/jessie-dnsutils:1.4"])
def test_jessie_dnsutils_is_a_debian_shell(image):
    resolved = resolve(image, command=["sh", "-c", "dig +short kubernetes.default"])
    assert resolved.in_catalog and resolved.argv[:2] == ["sh", "-c"]
    assert resolve(image).argv == ["bash"]


def test_nginx_alpine_tags_are_our_nginx(tmp_path):
    assert resolve("docker.io/library/nginx:1.14-alpine", tmp_path=tmp_path).argv[0] == nginx.NGINX


def test_pause_image_is_catatonit_in_pause_mode():
    resolved = resolve("registry.k8s.io/pause:3.9")
    assert os.path.basename(resolved.argv[0]) == "catatonit" and resolved.argv[1:] == ["-P"]
    assert resolved.argv[0] in resolved.holds  # static: its one file is all the image holds


def test_unknown_image_with_a_command_runs_the_command():
    resolved = resolve("python:3.12", command=["python3", "-c"], args=["print(1)"])
    assert resolved.argv == ["python3", "-c", "print(1)"]
    assert not resolved.in_catalog and resolved.image == "docker.io/library/python:3.12"


def test_unknown_image_without_a_command_is_a_pull_error():
    with pytest.raises(images.ImageNotFound) as err:
        resolve("foo/bar")
    message = err.value.message
    assert message.startswith('failed to pull image "foo/bar": image not in the pocketkube catalog (known: ')
    for name in ("nginx", "busybox", "alpine", "luksa/kubia", "hashicorp/http-echo", "ealen/echo-server",
                 "registry.k8s.io/pause"):
        assert name in message


def test_image_ids_are_stable_digests():
    first, second = resolve("luksa/kubia"), resolve("luksa/kubia")
    assert first.image_id == second.image_id
    assert first.image_id.startswith("docker.io/luksa/kubia@sha256:") and len(first.image_id.split(":")[-1]) == 64


# ---- the bundled apps' answers ---------------------------------------------------------------

class FakeRequest:
    def __init__(self, path="/", headers=None, body=b""):
        self.path = path
        self.requestline = f"GET {path} HTTP/1.1"
        self.command = "GET"
        self.request_version = "HTTP/1.1"
        self.client_address = ("10.244.1.7", 41234)
        self.headers = {"Host": "10.244.1.5:8080", "User-Agent": "curl/8", **(headers or {})}
        self._body = body

    def body(self):
        return self._body


def test_kubia_names_the_pod(capsys):
    app = webapps.Kubia(["v1"])
    app.hostname = "kubia-abc12"
    assert app.answer(FakeRequest())[:2] == (200, "You've hit kubia-abc12\n")
    assert "Received request from ::ffff:10.244.1.7" in capsys.readouterr().out


def test_kubia_unhealthy_fails_after_five_requests(capsys):
    app = webapps.Kubia(["unhealthy"])
    codes = [app.answer(FakeRequest())[0] for _ in range(7)]
    assert codes == [200] * 5 + [500, 500]


@pytest.mark.parametrize("args, text, port", [
    (["-text=hello"], "hello", 5678),
    (["-text", "hi there", "-listen=:8080"], "hi there", 8080),
    (["--text=x", "--listen", "0.0.0.0:9000"], "x", 9000),
])
def test_http_echo_flags(args, text, port, capsys):
    app = webapps.HttpEcho(args)
    assert app.port == port
    assert app.answer(FakeRequest())[:2] == (200, text + "\n")


def test_json_echo_server_reports_the_request():
    app = webapps.EchoServer(["json", "80"])
    app.hostname = "echo-1"
    status, body, content_type = app.answer(FakeRequest("/a/b?x=1", {"X-Test": "yes"}))
    data = json.loads(body)
    assert status == 200 and content_type.startswith("application/json")
    assert data["http"]["method"] == "GET" and data["http"]["originalUrl"] == "/a/b?x=1"
    assert data["request"]["query"] == {"x": "1"} and data["request"]["headers"]["x-test"] == "yes"
    assert data["client"] == {"address": "10.244.1.7", "port": 41234}
    assert data["environment"]["HOSTNAME"] == "echo-1"


def test_text_echo_server_reports_the_request():
    app = webapps.EchoServer(["text", "8080"])
    app.hostname = "echo-2"
    body = app.answer(FakeRequest("/hi"))[1]
    assert body.startswith("Request served by echo-2\n\nHTTP/1.1 GET /hi\n\nClient: 10.244.1.7:41234\n")
    assert "Host: 10.244.1.5:8080" in body


def test_httpd_serves_htdocs_as_apache(tmp_path, capsys):
    (tmp_path / "index.html").write_bytes(b"<html><body><h1>It works!</h1></body></html>\n")
    app = webapps.Httpd(["2.4.38"])
    app.root = str(tmp_path)
    assert app.answer(FakeRequest("/")) == (200, b"<html><body><h1>It works!</h1></body></html>\n", "text/html")
    status, body, _ = app.answer(FakeRequest("/index.html"))
    assert status == 200
    status, body, content_type = app.answer(FakeRequest("/../../etc/passwd"))
    assert status == 404 and b"<title>404 Not Found</title>" in body
    assert app.server_header()["server_version"] == "Apache/2.4.38 (Unix)"
    assert '"GET / HTTP/1.1" 200 45' in capsys.readouterr().out


def test_hello_app():
    app = webapps.HelloApp(["2.0"])
    app.hostname = "hello-1"
    assert app.answer(FakeRequest())[1] == "Hello, world!\nVersion: 2.0.0\nHostname: hello-1\n"


@pytest.mark.skipif(shutil.which("busybox") is None, reason="busybox is not installed")
def test_e2e_dns_queriers_find_what_their_probes_run(tmp_path):
    """The DNS tests' queriers: agnhost runs `getent hosts` (alpine has it), jessie-dnsutils
    `hostname -i | awk ...`: awk on Debian is a link through /etc/alternatives, which the
    image holds with /usr."""
    agnhost = resolve("k8s.gcr.io/e2e-test-images/agnhost:2.21", tmp_path=tmp_path)
    if shutil.which("getent"):
        assert os.readlink(os.path.join(agnhost.mounts["/bin"], "getent")) == shutil.which("getent")
        assert shutil.which("getent") in agnhost.holds
    jessie = resolve("gcr.io/kubernetes-e2e-test-images/jessie-dnsutils:1.0", ["sh"], tmp_path=tmp_path)
    assert {"/usr", "/etc/alternatives"} <= set(jessie.holds)
