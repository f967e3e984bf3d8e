"""Cluster DNS against a real `pocketkube server`: `pocketkube dns` runs as its own process on
127.0.0.1 with a random port, watching the API through a kubeconfig; the tests create Services
and pods with kubectl and the kubernetes client (playing the kubelet for pod status) and ask
with `dig` and dnspython. Names outside the cluster go to a fake upstream resolver the tests run
on 127.0.0.1 (this machine has no outside network). Truncation and TCP fallback, and SERVFAIL
when no upstream answers, are checked against an in-process server fed directly."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import urllib.request

import dns.flags
import dns.message
import dns.query
import dns.rcode
import dns.rdatatype
import dns.rrset
import pytest

from pocketkube.dns.server import DNSServer
from pocketkube.dns.view import ClusterView
from tests.conftest import ROOT
from tests.integration.test_endpoints import eventually, nodes, running_pod, set_status  # noqa: F401

pytestmark = pytest.mark.kubectl
DIG = shutil.which("dig")


@pytest.fixture(scope="module")
def core(k8s_client):
    client, api_client = k8s_client
    return client.CoreV1Api(api_client)


def free_port(kind=socket.SOCK_STREAM) -> int:
    """A port free for `kind`; for SOCK_DGRAM, free for TCP too (DNS listens on both)."""
    while True:
        with socket.socket(socket.AF_INET, kind) as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
            if kind != socket.SOCK_DGRAM:
                return port
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
                try:
                    tcp.bind(("127.0.0.1", port))
                except OSError:
                    continue  # the TCP side is taken (a connection's local port): pick another
                return port


class FakeUpstream:
    """A tiny resolver on 127.0.0.1: `*.example.test` A 192.0.2.10, everything else NXDOMAIN."""

    def __init__(self):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.asked: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self):
        while not self._stop.is_set():
            try:
                data, addr = self.sock.recvfrom(4096)
            except socket.timeout:
                continue
            query = dns.message.from_wire(data)
            name = query.question[0].name.to_text().lower()
            self.asked.append(name)
            reply = dns.message.make_response(query)
            reply.flags |= dns.flags.RA
            if name.endswith("example.test.") and query.question[0].rdtype == dns.rdatatype.A:
                reply.answer.append(dns.rrset.from_text(query.question[0].name, 300, "IN", "A", "192.0.2.10"))
            elif not name.endswith("example.test."):
                reply.set_rcode(dns.rcode.NXDOMAIN)
            self.sock.sendto(reply.to_wire(), addr)

    def stop(self):
        self._stop.set()
        self._thread.join()
        self.sock.close()


@pytest.fixture(scope="module")
def upstream():
    up = FakeUpstream()
    yield up
    up.stop()


@pytest.fixture(scope="module")
def dns_server(server, upstream):
    """`pocketkube dns` on 127.0.0.1:<random>, forwarding to the fake upstream."""
    port, metrics, health, ready = free_port(socket.SOCK_DGRAM), free_port(), free_port(), free_port()
    log = open(os.path.join(server.data_dir, "dns.log"), "ab")
    proc = subprocess.Popen(
        [sys.executable, "-m", "pocketkube.cli.main", "dns", "--kubeconfig", server.kubeconfig,
         "--listen", "127.0.0.1", "--port", str(port), "--metrics-port", str(metrics), "--health-port", str(health),
         "--ready-port", str(ready), "--upstream", f"127.0.0.1:{upstream.port}"],
        stdout=subprocess.PIPE, stderr=log, cwd=ROOT, start_new_session=True)
    line = proc.stdout.readline().decode()
    if "serving" not in line:
        proc.kill()
        proc.wait()
        with open(os.path.join(server.data_dir, "dns.log")) as f:
            raise RuntimeError("pocketkube dns did not start:\n" + f.read()[-3000:])
    yield {"port": port, "metrics": metrics, "health": health, "ready": ready}
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def dig(port: int, *args: str) -> str:
    if DIG is None:
        pytest.fail("dig is not installed (dnsutils)")
    cp = subprocess.run([DIG, "@127.0.0.1", "-p", str(port), "+time=3", "+tries=1", *args],
                        capture_output=True, text=True, timeout=30)
    return cp.stdout


def short(port: int, *args: str) -> list[str]:
    return sorted(dig(port, "+short", *args).split())


def ask(port: int, name: str, rdtype: str = "A", tcp: bool = False) -> dns.message.Message:
    query = dns.message.make_query(name, rdtype)
    return (dns.query.tcp if tcp else dns.query.udp)(query, "127.0.0.1", port=port, timeout=5)


def cluster_ip(server, ns, name) -> str:
    return server.kubectl("get", "svc", name, "-n", ns, "-o", "jsonpath={.spec.clusterIP}").stdout


# --- the seed flows ---------------------------------------------------------------------------

def test_kubernetes_and_a_new_service(server, dns_server, ns, core):
    port = dns_server["port"]
    assert short(port, "kubernetes.default.svc.cluster.local") == [cluster_ip(server, "default", "kubernetes")]
    running_pod(core, ns, "my-nginx-1", "10.244.1.21", labels={"app": "my-nginx"})
    server.kubectl("create", "service", "clusterip", "my-nginx", "--tcp=80:80", "-n", ns)
    ip = cluster_ip(server, ns, "my-nginx")
    eventually(lambda: short(port, f"my-nginx.{ns}.svc.cluster.local") == [ip], timeout=5)
    assert short(port, f"MY-NGINX.{ns.upper()}.svc.Cluster.Local") == [ip]
    out = dig(port, f"my-nginx.{ns}.svc.cluster.local")
    assert "status: NOERROR" in out and "flags: qr aa rd;" in out
    assert f"my-nginx.{ns}.svc.cluster.local. 30 IN A\t{ip}" in out
    assert short(port, "-x", ip) == [f"my-nginx.{ns}.svc.cluster.local."]
    assert short(port, "SRV", f"_tcp._tcp.my-nginx.{ns}.svc.cluster.local") == []  # unnamed port: no SRV


def test_named_port_srv_and_nxdomain_with_soa(server, dns_server, ns):
    port = dns_server["port"]
    server.kubectl("apply", "-n", ns, "-f", "-", input="""
apiVersion: v1
kind: Service
metadata: {name: api}
spec:
  selector: {app: api}
  ports: [{name: http, port: 8080, targetPort: 80}]
""")
    name = f"_http._tcp.api.{ns}.svc.cluster.local"
    eventually(lambda: short(port, "SRV", name) == ["0", "100", "8080", f"api.{ns}.svc.cluster.local."], timeout=5)
    msg = ask(port, f"nope.{ns}.svc.cluster.local")
    assert msg.rcode() == dns.rcode.NXDOMAIN
    soa = msg.authority[0]
    assert soa.name.to_text() == "cluster.local." and soa.ttl == 30
    assert soa[0].mname.to_text() == "ns.dns.cluster.local." and soa[0].rname.to_text() == "hostmaster.cluster.local."
    assert (soa[0].refresh, soa[0].retry, soa[0].expire, soa[0].minimum) == (7200, 1800, 86400, 30)
    empty = ask(port, f"api.{ns}.svc.cluster.local", "AAAA")
    assert empty.rcode() == dns.rcode.NOERROR and not empty.answer and empty.authority
    assert ask(port, f"{ns}.svc.cluster.local").rcode() == dns.rcode.NOERROR
    version = ask(port, "dns-version.cluster.local", "TXT")
    assert version.answer[0].to_text() == 'dns-version.cluster.local. 28800 IN TXT "1.1.0"'


def test_headless_service_follows_pod_readiness(server, dns_server, ns, core):
    port = dns_server["port"]
    server.kubectl("apply", "-n", ns, "-f", "-", input="""
apiVersion: v1
kind: Service
metadata: {name: mysql}
spec:
  clusterIP: None
  selector: {app: mysql}
  ports: [{name: mysql, port: 3306}]
""")
    for i in range(2):
        running_pod(core, ns, f"mysql-{i}", f"10.244.2.{10 + i}", labels={"app": "mysql"},
                    hostname=f"mysql-{i}", subdomain="mysql")
    host = f"mysql.{ns}.svc.cluster.local"
    eventually(lambda: short(port, host) == ["10.244.2.10", "10.244.2.11"], timeout=5)
    assert short(port, f"mysql-0.{host}") == ["10.244.2.10"]
    assert short(port, "SRV", f"_mysql._tcp.{host}") == sorted(
        ["0", "50", "3306", f"mysql-0.{host}.", "0", "50", "3306", f"mysql-1.{host}."])
    assert short(port, "-x", "10.244.2.11") == [f"mysql-1.{host}."]
    set_status(core, ns, "mysql-1", "10.244.2.11", ready=False)
    eventually(lambda: short(port, host) == ["10.244.2.10"], timeout=5)
    assert ask(port, f"mysql-1.{host}").rcode() == dns.rcode.NXDOMAIN
    core.delete_namespaced_pod("mysql-0", ns, grace_period_seconds=0)
    eventually(lambda: ask(port, host).rcode() == dns.rcode.NXDOMAIN, timeout=5)


def test_pod_records(dns_server, ns):
    assert short(dns_server["port"], f"10-244-1-5.{ns}.pod.cluster.local") == ["10.244.1.5"]
    assert ask(dns_server["port"], "10-244-1-5.no-such-ns.pod.cluster.local").rcode() == dns.rcode.NXDOMAIN


def test_external_name_and_forwarding(server, dns_server, upstream, ns):
    port = dns_server["port"]
    server.kubectl("create", "service", "externalname", "search", "--external-name", "www.example.test", "-n", ns)
    name = f"search.{ns}.svc.cluster.local"
    eventually(lambda: ask(port, name).answer, timeout=5)
    assert [rr.to_text() for rr in ask(port, name).answer] == [
        f"{name}. 30 IN CNAME www.example.test.", "www.example.test. 300 IN A 192.0.2.10"]
    forwarded = ask(port, "api.example.test")
    assert forwarded.rcode() == dns.rcode.NOERROR and forwarded.answer[0][0].address == "192.0.2.10"
    assert ask(port, "nothing.invalid").rcode() == dns.rcode.NXDOMAIN
    assert "nothing.invalid." in upstream.asked
    over_tcp = ask(port, name, tcp=True)  # TCP answers the same (the fake upstream speaks UDP only)
    assert [rr.to_text() for rr in over_tcp.answer][0] == f"{name}. 30 IN CNAME www.example.test."


def test_metrics_health_ready(dns_server):
    ask(dns_server["port"], "kubernetes.default.svc.cluster.local")
    text = urllib.request.urlopen(f"http://127.0.0.1:{dns_server['metrics']}/metrics", timeout=5).read().decode()
    assert 'coredns_dns_requests_total{family="1",proto="udp"' in text
    assert 'coredns_dns_responses_total{plugin="kubernetes",rcode="NOERROR"' in text
    assert "coredns_dns_request_duration_seconds_bucket" in text
    for key in ("health", "ready"):
        with urllib.request.urlopen(f"http://127.0.0.1:{dns_server[key]}/{key}", timeout=5) as resp:
            assert resp.status == 200 and resp.read() == b"OK"


# --- the informer transform: the caches hold converted objects only ---------------------------

async def test_informer_caches_hold_only_what_dns_reads(server, ns, core):
    """ClusterDNS in-process against the real API server: each informer's store keeps the key,
    the resourceVersion and the converted form (the object the view indexes), and updates and
    deletes still reach the answers."""
    import asyncio

    from pocketkube.core.client import from_kubeconfig
    from pocketkube.dns.server import ClusterDNS
    from pocketkube.dns.view import CONVERTED

    server.kubectl("create", "service", "clusterip", "slim", "--tcp=80:8080", "-n", ns)
    server.kubectl("annotate", "service", "slim", "-n", ns, "big=" + "x" * 2000)
    running_pod(core, ns, "slim-1", "10.244.1.31", labels={"app": "slim"})
    server.kubectl("label", "service", "slim", "-n", ns, "app=slim")
    server.kubectl("set", "selector", "service", "slim", "app=slim", "-n", ns)
    client = from_kubeconfig(server.kubeconfig, field_manager="coredns")
    dns_ = ClusterDNS(client, address="127.0.0.1", port=0, metrics_port=None, upstreams=[])
    await dns_.start()
    try:
        name = f"slim.{ns}.svc.cluster.local"
        services = dns_.factory.informer("v1", "services")
        cached = services.get(f"{ns}/slim")
        assert set(cached) == {"metadata", CONVERTED}
        assert set(cached["metadata"]) == {"name", "namespace", "resourceVersion"}
        assert cached[CONVERTED] is dns_.view.service(ns, "slim")  # one copy, shared with the view
        slices = dns_.factory.informer("discovery.k8s.io/v1", "endpointslices")

        async def until(check):
            for _ in range(100):
                if check():
                    return
                await asyncio.sleep(0.05)
            raise AssertionError("not true after 5 s")

        await until(lambda: any(ep.ip == "10.244.1.31" for ep in dns_.view.endpoints(ns, "slim")))
        assert all(set(o) == {"metadata", CONVERTED} for o in slices.list(ns))
        assert all(set(o) == {"metadata"} for o in dns_.factory.informer("v1", "namespaces").list())
        ip = cluster_ip(server, ns, "slim")
        assert await run_in_thread(short, dns_.port, name) == [ip]
        assert await run_in_thread(short, dns_.port, "-x", "10.244.1.31") == [f"10-244-1-31.slim.{ns}.svc.cluster.local."]
        server.kubectl("delete", "service", "slim", "-n", ns)
        await until(lambda: services.get(f"{ns}/slim") is None)
        assert (await run_in_thread(ask, dns_.port, name)).rcode() == dns.rcode.NXDOMAIN
    finally:
        await dns_.stop()
        await client.close()


# --- explain-dns against the real API server (no cluster network: the record logic answers) ---

def explain_dns(server, *args):
    return subprocess.run([sys.executable, "-m", "pocketkube.cli.main", "explain-dns", "--kubeconfig",
                           server.kubeconfig, *args], capture_output=True, text=True, timeout=60, cwd=ROOT)


def test_explain_dns_follows_a_pods_search_list(server, ns, core):
    server.kubectl("create", "service", "clusterip", "my-nginx", "--tcp=80:80", "-n", ns)
    server.kubectl("run", "bb", "--image=busybox", "-n", ns, "--", "sleep", "3600")
    ip = cluster_ip(server, ns, "my-nginx")
    cp = explain_dns(server, "my-nginx", "--from", "bb", "-n", ns)
    assert cp.returncode == 0, cp.stderr
    assert f"explain-dns my-nginx (A) from pod {ns}/bb (dnsPolicy ClusterFirst)" in cp.stdout
    assert f"search {ns}.svc.cluster.local svc.cluster.local cluster.local" in cp.stdout
    assert f"1. my-nginx.{ns}.svc.cluster.local. A → NOERROR" in cp.stdout
    assert f"why: the ClusterIP of Service {ns}/my-nginx" in cp.stdout
    assert cp.stdout.rstrip().endswith(f"resolved by query 1: my-nginx.{ns}.svc.cluster.local → {ip}")
    # without --from: a ClusterFirst pod in `default`, where my-nginx does not exist
    cp = explain_dns(server, "my-nginx")
    assert "1. my-nginx.default.svc.cluster.local. A → NXDOMAIN" in cp.stdout
    assert "why: no service default/my-nginx" in cp.stdout
    assert cp.stdout.rstrip().splitlines()[-1].startswith("no candidate resolved: ")


def test_explain_dns_pod_not_found_is_kubectls_error(server, ns):
    cp = explain_dns(server, "kubernetes", "--from", "nope", "-n", ns)
    assert cp.returncode == 1
    assert cp.stderr.strip() == 'Error from server (NotFound): pods "nope" not found'
    assert cp.stdout == ""


# --- in-process: truncation, TCP fallback, no upstream ----------------------------------------

def big_headless_view(n: int) -> ClusterView:
    view = ClusterView()
    view.apply_namespace({"metadata": {"name": "default"}})
    view.apply_service({"metadata": {"namespace": "default", "name": "many"},
                        "spec": {"clusterIP": "None", "ports": [{"name": "http", "port": 80}]}})
    view.apply_endpointslice({
        "metadata": {"namespace": "default", "name": "many-x", "labels": {"kubernetes.io/service-name": "many"}},
        "addressType": "IPv4", "ports": [{"name": "http", "port": 80, "protocol": "TCP"}],
        "endpoints": [{"addresses": [f"10.244.3.{i}"], "conditions": {"ready": True}} for i in range(1, n + 1)]})
    view.mark_synced()
    return view


async def run_in_thread(fn, *args):
    import asyncio

    return await asyncio.get_running_loop().run_in_executor(None, fn, *args)


async def test_truncation_sets_tc_and_dig_falls_back_to_tcp():
    server = DNSServer(big_headless_view(60), address="127.0.0.1", port=0, metrics_port=None, upstreams=[])
    await server.start()
    try:
        name = "many.default.svc.cluster.local"
        ignored = await run_in_thread(dig, server.port, "+noedns", "+ignore", name)
        assert "flags: qr aa tc rd;" in ignored
        full = (await run_in_thread(short, server.port, "+noedns", name))
        assert len(full) == 60
        edns = await run_in_thread(dig, server.port, "+bufsize=4096", name)
        assert " tc " not in edns and "ANSWER: 60" in edns
    finally:
        await server.stop()


async def test_servfail_when_no_upstream_answers():
    silent = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    silent.bind(("127.0.0.1", 0))
    server = DNSServer(big_headless_view(1), address="127.0.0.1", port=0, metrics_port=None,
                       upstreams=[silent.getsockname()], forward_timeout=0.5)
    await server.start()
    try:
        msg = await run_in_thread(ask, server.port, "www.example.test")
        assert msg.rcode() == dns.rcode.SERVFAIL
        assert (await run_in_thread(ask, server.port, "many.default.svc.cluster.local")).answer
    finally:
        await server.stop()
        silent.close()


async def test_a_burst_queued_while_the_server_is_busy_is_answered_whole():
    """3,000 queries arrive while the server's loop is busy (this test holds it: the sends run
    on the loop): the socket keeps them all (pocketkube/dns/server.py _grow_receive_buffer),
    and each gets its answer once the loop runs."""
    view = big_headless_view(1)
    view.apply_service({"metadata": {"namespace": "default", "name": "web"},
                        "spec": {"clusterIP": "10.96.0.20", "clusterIPs": ["10.96.0.20"],
                                 "ports": [{"name": "http", "port": 80}]}})
    server = DNSServer(view, address="127.0.0.1", port=0, metrics_port=None, upstreams=[])
    await server.start()
    client = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    client.setsockopt(socket.SOL_SOCKET, getattr(socket, "SO_RCVBUFFORCE", 33), 8 << 20)  # room for the answers
    client.connect(("127.0.0.1", server.port))
    try:
        for ident in range(3000):
            q = dns.message.make_query("web.default.svc.cluster.local", "A")
            q.id = ident
            client.send(q.to_wire())

        def receive() -> set[int]:
            client.settimeout(5)
            seen = set()
            while len(seen) < 3000:
                try:
                    reply = dns.message.from_wire(client.recv(4096))
                except socket.timeout:
                    break
                assert [rd.address for rd in reply.answer[0]] == ["10.96.0.20"]
                seen.add(reply.id)
            return seen

        assert await run_in_thread(receive) == set(range(3000))
    finally:
        client.close()
        await server.stop()
