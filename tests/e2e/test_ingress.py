"""Ingress end to end on the real 2-node cluster: `pocketkube addons enable ingress` installs
the controller as ingress-nginx's bare-metal manifest lays it out, and real curl from the host
(through the controller Service's NodePort, with --resolve so SNI and Host are the browser's)
and busybox wget from a pod reach echo pods by host and path: fanout, virtual and wildcard
hosts, Exact vs Prefix, the default backend, rewrite-target, TLS with SNI and the 308 redirect,
canary by header, forwarded headers, and what bad input gets (503, Events, the API's
validation). The add-on is disabled at the end, which removes what it made.
"""

from __future__ import annotations

import json
import os
import re
import ssl
import socket
import subprocess
import uuid

import pytest

from tests.e2e.test_services import _ready_pod, until

pytestmark = pytest.mark.e2e

ECHO_PORT = {"name": "http", "port": 80, "targetPort": "http"}


def echo(name: str, text: str | None = None) -> list[dict]:
    """A Deployment and Service `name`: jmalloc/echo-server (echoes the request), or
    http-echo answering `text`."""
    if text is None:
        container = {"name": "echo", "image": "jmalloc/echo-server", "ports": [{"name": "http", "containerPort": 8080}],
                     "readinessProbe": {"httpGet": {"path": "/", "port": "http"}, "periodSeconds": 1}}
    else:
        container = {"name": "echo", "image": "hashicorp/http-echo", "args": [f"-text={text}", "-listen=:8080"],
                     "ports": [{"name": "http", "containerPort": 8080}],
                     "readinessProbe": {"httpGet": {"path": "/", "port": "http"}, "periodSeconds": 1}}
    labels = {"app": name}
    return [{"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
             "spec": {"replicas": 1, "selector": {"matchLabels": labels},
                      "template": {"metadata": {"labels": labels},
                                   "spec": {"terminationGracePeriodSeconds": 1, "containers": [container]}}}},
            {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name},
             "spec": {"selector": labels, "ports": [ECHO_PORT]}}]


def ingress(name: str, rules: list[dict], annotations: dict | None = None, **spec) -> dict:
    return {"apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
            "metadata": {"name": name, "annotations": annotations or {}}, "spec": {"rules": rules, **spec}}


def rule(host: str | None, *paths: tuple[str, str, str]) -> dict:
    r = {"http": {"paths": [{"path": p, "pathType": t, "backend": {"service": {"name": s, "port": {"number": 80}}}}
                            for p, t, s in paths]}}
    if host:
        r["host"] = host
    return r


def eventually(get, expected, what: str, timeout: float = 60, times: int = 3):
    """Poll `get()` until it returns `expected` `times` in a row (after a reload, nginx's old
    workers may answer for a moment: ADR 0008); fail with the last value seen."""
    seen = []
    streak = [0]

    def check():
        seen[:] = [get()]
        streak[0] = streak[0] + 1 if seen[0] == expected else 0
        return streak[0] >= times
    try:
        until(check, what, timeout=timeout)
    except AssertionError as exc:
        raise AssertionError(f"{exc}; last value: {seen[0] if seen else None!r}") from None


def apply(cluster, ns: str, *objects: dict) -> None:
    cluster.kubectl("apply", "-n", ns, "-f", "-", input="\n".join(json.dumps(o) for o in objects))


class Entry:
    """The controller's NodePorts on node 1, and requests through them."""

    def __init__(self, node_ip: str, http: int, https: int):
        self.node_ip, self.http, self.https = node_ip, http, https

    def request(self, host: str, path: str = "/", scheme: str = "http", headers: dict | None = None,
                follow: bool = False) -> tuple[int, str, dict]:
        """(status, body, response headers) of curl from the host."""
        port = self.http if scheme == "http" else self.https
        argv = ["curl", "-sS", "-m", "5", "-k", "--resolve", f"{host}:{port}:{self.node_ip}", "-D", "-",
                f"{scheme}://{host}:{port}{path}"]
        for k, v in (headers or {}).items():
            argv += ["-H", f"{k}: {v}"]
        cp = subprocess.run(argv, capture_output=True, timeout=20)  # bytes: keep the CRLFs
        if cp.returncode != 0:
            return 0, cp.stderr.decode(errors="replace"), {}
        head, _, body = cp.stdout.decode(errors="replace").partition("\r\n\r\n")
        lines = head.split("\r\n")
        status = int(lines[0].split()[1])
        found = {}
        for line in lines[1:]:
            k, _, v = line.partition(":")
            found[k.strip().lower()] = v.strip()
        return status, body, found

    def text(self, host: str, path: str = "/", **kw) -> str:
        status, body, _ = self.request(host, path, **kw)
        return body.strip() if status == 200 else f"HTTP {status}"

    def certificate(self, server_name: str) -> dict:
        """The certificate the HTTPS port presents for an SNI name."""
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        with socket.create_connection((self.node_ip, self.https), timeout=5) as sock:
            with ctx.wrap_socket(sock, server_hostname=server_name) as tls:
                der = tls.getpeercert(binary_form=True)
        from cryptography import x509
        from cryptography.x509.oid import NameOID

        cert = x509.load_der_x509_certificate(der)
        return {"cn": cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value}


@pytest.fixture(scope="module")
def ing(cluster, tmp_path_factory):
    """The add-on enabled, a namespace with echo backends; both removed at the end."""
    enabled = cluster.pocketkube("addons", "enable", "ingress", "--name", cluster.name, timeout=240)
    assert enabled.returncode == 0, enabled.stdout + enabled.stderr
    ns = "ing-" + uuid.uuid4().hex[:6]
    cluster.kubectl("create", "namespace", ns)
    try:
        apply(cluster, ns, *echo("echo"), *echo("one", "from-one"), *echo("two", "from-two"),
              *echo("canary", "from-canary"))
        for app in ("echo", "one", "two", "canary"):
            _ready_pod(cluster, ns, f"app={app}")
        svc = cluster.kubectl_json("get", "svc", "ingress-nginx-controller", "-n", "ingress-nginx")
        ports = {p["name"]: p["nodePort"] for p in svc["spec"]["ports"]}
        node = cluster.net.node_list()[0]
        yield {"ns": ns, "entry": Entry(node.ip, ports["http"], ports["https"]), "svc": svc,
               "tmp": tmp_path_factory.mktemp("ingress")}
    finally:
        cluster.kubectl("delete", "namespace", ns, "--wait=false", check=False)


def test_addon_lays_out_the_controller_as_the_bare_metal_manifest(cluster, ing):
    row = cluster.kubectl("get", "svc", "-n", "ingress-nginx", "ingress-nginx-controller", "--no-headers").stdout.split()
    assert row[1] == "NodePort" and re.fullmatch(r"80:3\d{4}/TCP,443:3\d{4}/TCP", row[4]), row
    classes = cluster.kubectl("get", "ingressclass").stdout
    assert re.search(r"^nginx\s+k8s.io/ingress-nginx\s", classes, re.M), classes
    ic = cluster.kubectl_json("get", "ingressclass", "nginx")
    assert ic["metadata"]["annotations"]["ingressclass.kubernetes.io/is-default-class"] == "true"
    cluster.kubectl("get", "configmap", "-n", "ingress-nginx", "ingress-nginx-controller")
    listed = cluster.pocketkube("addons", "list", "--name", cluster.name)
    assert re.search(r"^ingress\s+enabled \(1/1 ready\)", listed.stdout, re.M), listed.stdout


def test_fanout_by_path_with_the_default_class_and_an_address(cluster, ing):
    ns, entry = ing["ns"], ing["entry"]
    cluster.kubectl("create", "ingress", "fanout", "-n", ns, "--rule=fan.example/one*=one:80",
                    "--rule=fan.example/two*=two:80")
    assert cluster.kubectl_json("get", "ingress", "fanout", "-n", ns)["spec"]["ingressClassName"] == "nginx"
    eventually(lambda: entry.text("fan.example", "/one"), "from-one", "/one reaches service one")
    assert entry.text("fan.example", "/two/deeper") == "from-two"
    assert entry.request("fan.example", "/three")[0] == 404
    assert entry.request("nobody.example", "/one")[0] == 404
    node_ips = {n.ip for n in cluster.net.node_list()}
    row = until(lambda: (r := cluster.kubectl("get", "ingress", "fanout", "-n", ns, "--no-headers").stdout.split())
                and r[3] in node_ips and r, "the Ingress gets the controller's node address")
    assert row[1] == "nginx" and row[2] == "fan.example" and row[4] == "80", row
    describe = cluster.kubectl("describe", "ingress", "fanout", "-n", ns).stdout
    one_ip = _ready_pod(cluster, ns, "app=one")["status"]["podIP"]
    assert re.search(rf"/one\s+one:80 \({re.escape(one_ip)}:8080\)", describe), describe
    assert re.search(r"Normal\s+Sync\s+.*nginx-ingress-controller\s+Scheduled for sync", describe), describe


def test_virtual_and_wildcard_hosts_and_the_default_backend(cluster, ing):
    ns, entry = ing["ns"], ing["entry"]
    apply(cluster, ns, ingress("vhosts", [rule("a.example", ("/", "Prefix", "one")),
                                          rule("*.wild.example", ("/", "Prefix", "two"))]),
          ingress("fallback", [], defaultBackend={"service": {"name": "canary", "port": {"number": 80}}}))
    eventually(lambda: entry.text("x.wild.example"), "from-two", "a wildcard host routes")
    assert entry.text("a.example", "/anything") == "from-one"
    # one label only: a deeper name is not the wildcard's, so the catch-all (defaultBackend) answers
    eventually(lambda: entry.text("y.x.wild.example"), "from-canary", "the defaultBackend catches the rest")
    assert entry.text("unknown.example", "/") == "from-canary"


def test_exact_beats_prefix_and_prefix_is_element_wise(cluster, ing):
    ns, entry = ing["ns"], ing["entry"]
    apply(cluster, ns, ingress("paths", [rule("paths.example", ("/foo", "Exact", "one"), ("/foo", "Prefix", "two"),
                                              ("/foo/bar", "Prefix", "canary"))]))
    eventually(lambda: entry.text("paths.example", "/foo"), "from-one", "Exact /foo wins")
    assert entry.text("paths.example", "/foo/") == "from-two"
    assert entry.text("paths.example", "/foo/baz") == "from-two"
    assert entry.text("paths.example", "/foo/bar/baz") == "from-canary"  # the longest path wins
    assert entry.request("paths.example", "/foobar")[0] == 404           # element-wise


def test_rewrite_target_with_capture_groups_and_forwarded_headers(cluster, ing):
    ns, entry = ing["ns"], ing["entry"]
    apply(cluster, ns, ingress("rewrite", [rule("rw.example", ("/something(/|$)(.*)", "ImplementationSpecific", "echo"))],
                               {"nginx.ingress.kubernetes.io/rewrite-target": "/$2",
                                "nginx.ingress.kubernetes.io/use-regex": "true"}))
    body = until(lambda: (t := entry.text("rw.example", "/something/new/path?q=1")).startswith("Request served by")
                 and t, "the rewritten request reaches the echo server")
    assert "HTTP/1.1 GET /new/path?q=1" in body, body
    assert "X-Forwarded-Proto: http" in body and "Host: rw.example" in body, body
    assert re.search(r"^X-Real-Ip: \d+\.\d+\.\d+\.\d+$", body, re.M | re.I), body
    assert re.search(r"^X-Forwarded-For: \d+\.\d+\.\d+\.\d+$", body, re.M | re.I), body
    assert "HTTP/1.1 GET /" in entry.text("rw.example", "/something")


def _certificate(tmp, host: str) -> tuple[str, str]:
    key, crt = os.path.join(tmp, f"{host}.key"), os.path.join(tmp, f"{host}.crt")
    subprocess.run(["openssl", "req", "-x509", "-nodes", "-days", "1", "-newkey", "rsa:2048", "-keyout", key,
                    "-out", crt, "-subj", f"/CN={host}", "-addext", f"subjectAltName=DNS:{host}"],
                   check=True, capture_output=True)
    return crt, key


def test_tls_with_sni_the_default_certificate_and_the_redirect(cluster, ing):
    ns, entry = ing["ns"], ing["entry"]
    crt, key = _certificate(str(ing["tmp"]), "secure.example")
    cluster.kubectl("create", "secret", "tls", "secure-tls", "-n", ns, "--cert", crt, "--key", key)
    apply(cluster, ns, ingress("secure", [rule("secure.example", ("/", "Prefix", "one"))],
                               tls=[{"hosts": ["secure.example"], "secretName": "secure-tls"}]))
    eventually(lambda: entry.certificate("secure.example")["cn"], "secure.example", "SNI picks the secret")
    eventually(lambda: entry.text("secure.example", "/x", scheme="https"), "from-one", "HTTPS reaches the backend")
    status, _, headers = entry.request("secure.example", "/x?y=1")
    assert status == 308 and headers["location"] == "https://secure.example/x?y=1", (status, headers)
    assert entry.certificate("other.example")["cn"] == "Kubernetes Ingress Controller Fake Certificate"
    # a missing secret: the default certificate, and a Warning on the Ingress
    apply(cluster, ns, ingress("missing-tls", [rule("missing.example", ("/", "Prefix", "two"))],
                               tls=[{"hosts": ["missing.example"], "secretName": "nope"}]))
    eventually(lambda: entry.text("missing.example", "/", scheme="https"), "from-two", "served with TLS")
    assert entry.certificate("missing.example")["cn"] == "Kubernetes Ingress Controller Fake Certificate"
    assert until(lambda: 'secret "%s/nope" not found' % ns in cluster.kubectl("describe", "ingress", "missing-tls",
                                                                              "-n", ns).stdout, "a TLS Warning")


def test_canary_by_header_and_from_a_pod(cluster, ing):
    ns, entry = ing["ns"], ing["entry"]
    apply(cluster, ns, ingress("main", [rule("canary.example", ("/", "Prefix", "one"))]),
          ingress("main-canary", [rule("canary.example", ("/", "Prefix", "canary"))],
                  {"nginx.ingress.kubernetes.io/canary": "true",
                   "nginx.ingress.kubernetes.io/canary-by-header": "X-Canary"}))
    eventually(lambda: entry.text("canary.example", headers={"X-Canary": "always"}), "from-canary",
               "the header selects the canary")
    assert entry.text("canary.example") == "from-one"
    assert entry.text("canary.example", headers={"X-Canary": "never"}) == "from-one"
    # from a pod, through the controller's Service
    cluster_ip = ing["svc"]["spec"]["clusterIP"]
    cluster.kubectl("run", "wget", "-n", ns, "--image=busybox", "--restart=Never", "--", "sleep", "3600")
    _ready_pod(cluster, ns, "run=wget")
    out = cluster.kubectl("exec", "-n", ns, "wget", "--", "wget", "-qO-", "-T", "5", "--header",
                          "Host: canary.example", f"http://{cluster_ip}/").stdout
    assert out.strip() == "from-one"


def test_bad_input_gets_503_events_and_the_api_s_validation(cluster, ing):
    ns, entry = ing["ns"], ing["entry"]
    apply(cluster, ns, ingress("nobackend", [rule("nobackend.example", ("/", "Prefix", "does-not-exist"))]))
    eventually(lambda: entry.request("nobackend.example")[0], 503, "a missing Service answers 503")
    assert until(lambda: f'Service "{ns}/does-not-exist" not found' in
                 cluster.kubectl("describe", "ingress", "nobackend", "-n", ns).stdout, "a Warning says why")
    # the same host and path again, in a newer Ingress: the older one keeps it
    apply(cluster, ns, ingress("usurper", [rule("a.example", ("/", "Prefix", "two"))]))
    assert until(lambda: "is already defined in Ingress" in
                 cluster.kubectl("describe", "ingress", "usurper", "-n", ns).stdout, "the newer one gets an Event")
    assert entry.text("a.example") == "from-one"
    # a host with a port, or an IP: the API server refuses it
    for host, message in (("foo.example:8080", "a lowercase RFC 1123 subdomain must consist of"),
                          ("10.1.2.3", "must be a DNS name, not an IP address")):
        bad = cluster.kubectl("apply", "-n", ns, "-f", "-", check=False,
                              input=json.dumps(ingress("bad", [rule(host, ("/", "Prefix", "one"))])))
        assert bad.returncode == 1 and f'spec.rules[0].host: Invalid value: "{host}": {message}' in bad.stderr, \
            bad.stderr
    # an annotation the controller does not know: an Event, and routing goes on
    apply(cluster, ns, ingress("odd", [rule("odd.example", ("/", "Prefix", "two"))],
                               {"nginx.ingress.kubernetes.io/no-such-thing": "1",
                                "nginx.ingress.kubernetes.io/proxy-body-size": "lots"}))
    eventually(lambda: entry.text("odd.example"), "from-two", "routing goes on")
    describe = cluster.kubectl("describe", "ingress", "odd", "-n", ns).stdout
    assert "no-such-thing is not supported" in describe and "proxy-body-size" in describe, describe


def test_trace_explains_the_request(cluster, ing):
    ns = ing["ns"]
    out = cluster.pocketkube("trace", "--to", "http://paths.example/foo/bar/x", "--cluster-name", cluster.name)
    assert out.returncode == 0, out.stderr
    text = out.stdout
    node_ips = {n.ip for n in cluster.net.node_list()}
    entered = re.search(rf"it enters at ([0-9.]+):{ing['entry'].http} \(ADDRESS", text)
    assert entered and entered.group(1) in node_ips, text
    assert 'host "paths.example" matches server_name paths.example' in text, text
    assert f"location /foo/bar/ (Ingress {ns}/paths, Prefix /foo/bar) is the longest prefix of /foo/bar/x" in text, text
    assert f"location /foo/ (Ingress {ns}/paths, Prefix /foo) is a prefix too, but shorter" in text, text
    canary_ip = _ready_pod(cluster, ns, "app=canary")["status"]["podIP"]
    assert f"=> proxied to Service {ns}/canary port 80 (target http): straight to its ready endpoints, round robin: " \
           f"{canary_ip}:8080" in text, text
    assert "ingress-nginx-controller" in text  # the way in, through the controller Service's rules
    out = cluster.pocketkube("trace", "--to", "http://secure.example/", "--cluster-name", cluster.name)
    assert "=> nginx answers 308 with Location: https://secure.example/" in out.stdout, out.stdout
    out = cluster.pocketkube("trace", "--to", "http://canary.example/", "--header", "X-Canary: always",
                             "--cluster-name", cluster.name)
    assert f"selects the canary Ingress {ns}/main-canary" in out.stdout, out.stdout
    out = cluster.pocketkube("trace", "--to", "http://nowhere.example/", "--cluster-name", cluster.name)
    assert 'host "nowhere.example" matches no rule host' in out.stdout, out.stdout  # the catch-all server:
    assert f"location / (Ingress {ns}/fallback, spec.defaultBackend)" in out.stdout, out.stdout  # its defaultBackend
    out = cluster.pocketkube("trace", "--to", "http://x/", "--header", "nocolon", "--cluster-name", cluster.name)
    assert out.returncode == 1 and "--header must be NAME:VALUE" in out.stderr, out.stderr


WS_SERVER = """
import base64, hashlib, socket
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); s.bind(("", 8080)); s.listen(8)
while True:
    c, _ = s.accept()
    head = c.recv(4096).decode()
    key = [l.split(":", 1)[1].strip() for l in head.split("\\r\\n") if l.lower().startswith("sec-websocket-key")]
    if not key:
        c.sendall(b"HTTP/1.1 200 OK\\r\\nContent-Length: 2\\r\\n\\r\\nok"); c.close(); continue
    accept = base64.b64encode(hashlib.sha1((key[0] + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11").encode()).digest())
    c.sendall(b"HTTP/1.1 101 Switching Protocols\\r\\nUpgrade: websocket\\r\\nConnection: Upgrade\\r\\n"
              b"Sec-WebSocket-Accept: " + accept + b"\\r\\n\\r\\n")
    frame = c.recv(4096); n = frame[1] & 127; mask = frame[2:6]
    text = bytes(b ^ mask[i % 4] for i, b in enumerate(frame[6:6 + n]))
    c.sendall(bytes([0x81, len(text) + 5]) + b"echo " + text); c.close()
"""


def test_websocket_upgrade_passes_through(cluster, ing):
    ns, entry = ing["ns"], ing["entry"]
    labels = {"app": "ws"}
    apply(cluster, ns, {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "ws", "labels": labels},
                        "spec": {"terminationGracePeriodSeconds": 1, "containers": [
                            {"name": "ws", "image": "busybox", "command": ["python3", "-c", WS_SERVER],
                             "ports": [{"name": "http", "containerPort": 8080}],
                             "readinessProbe": {"tcpSocket": {"port": 8080}, "periodSeconds": 1}}]}},
          {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "ws"},
           "spec": {"selector": labels, "ports": [ECHO_PORT]}},
          ingress("ws", [rule("ws.example", ("/", "Prefix", "ws"))]))
    _ready_pod(cluster, ns, "app=ws")
    eventually(lambda: entry.text("ws.example"), "ok", "ws.example routed")
    with socket.create_connection((entry.node_ip, entry.http), timeout=5) as s:
        s.sendall(b"GET /chat HTTP/1.1\r\nHost: ws.example\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                  b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
        head = s.recv(4096)
        assert head.startswith(b"HTTP/1.1 101"), head
        assert b"Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=" in head, head
        mask, text = b"\x01\x02\x03\x04", b"hello"
        s.sendall(bytes([0x81, 0x80 | len(text)]) + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(text)))
        frame = s.recv(4096)
        assert frame[2:] == b"echo hello", frame


def test_disable_removes_the_addon(cluster, ing):
    out = cluster.pocketkube("addons", "disable", "ingress", "--name", cluster.name)
    assert out.returncode == 0 and "disabled" in out.stdout, out.stdout + out.stderr
    assert cluster.kubectl("get", "ingressclass", "nginx", check=False).returncode == 1
    until(lambda: cluster.kubectl("get", "namespace", "ingress-nginx", check=False).returncode == 1,
          "the ingress-nginx namespace goes away", timeout=60)
    listed = cluster.pocketkube("addons", "list", "--name", cluster.name).stdout
    assert re.search(r"^ingress\s+disabled", listed, re.M), listed


def test_load_balancer_controller_publishes_its_address(cluster, ing):
    """The cloud manifest's layout: the controller Service of type LoadBalancer, its address
    the Ingresses' ADDRESS, answering from the host on port 80."""
    ns = ing["ns"]
    enabled = cluster.pocketkube("addons", "enable", "ingress", "--service-type", "LoadBalancer",
                                 "--name", cluster.name, timeout=240)
    try:
        assert enabled.returncode == 0, enabled.stdout + enabled.stderr
        svc = until(lambda: (s := cluster.kubectl_json("get", "svc", "-n", "ingress-nginx", "ingress-nginx-controller"))
                    ["status"].get("loadBalancer", {}).get("ingress") and s, "the controller gets an address")
        ip = svc["status"]["loadBalancer"]["ingress"][0]["ip"]
        apply(cluster, ns, ingress("lb", [rule("lb.example", ("/", "Prefix", "one"))]))
        eventually(lambda: cluster.kubectl("get", "ingress", "lb", "-n", ns, "--no-headers").stdout.split()[3],
                   ip, "the Ingress ADDRESS is the load-balancer address", times=1)
        entry = Entry(ip, 80, 443)
        eventually(lambda: entry.text("lb.example"), "from-one", "curl http://LB-IP/ with Host lb.example")
    finally:
        cluster.pocketkube("addons", "disable", "ingress", "--name", cluster.name)
