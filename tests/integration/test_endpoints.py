"""Endpoints and EndpointSlices against a real `pocketkube server`, with the real kubectl and
the kubernetes Python client. The tests play the kubelet: they create Nodes, and pods bound to
them whose status (phase, podIP, Ready) they patch through /status."""

from __future__ import annotations

import datetime as dt
import os
import re
import subprocess
import sys
import time

import pytest

from tests.conftest import ROOT, RunningServer

pytestmark = pytest.mark.kubectl

SERVICE_NAME_LABEL = "kubernetes.io/service-name"
MANAGED_BY_LABEL = "endpointslice.kubernetes.io/managed-by"
TRIGGER_TIME = "endpoints.kubernetes.io/last-change-trigger-time"


def eventually(fn, timeout: float = 10, interval: float = 0.1):
    """Call fn until it returns a truthy value without failing an assertion."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            result = fn()
            if result:
                return result
        except AssertionError:
            if time.monotonic() >= deadline:
                raise
        if time.monotonic() >= deadline:
            raise AssertionError(f"not true after {timeout}s: {result!r}")
        time.sleep(interval)


def cols(line: str) -> list[str]:
    return re.split(r"\s{2,}", line.strip())


@pytest.fixture(scope="module")
def core(k8s_client):
    client, api_client = k8s_client
    return client.CoreV1Api(api_client)


@pytest.fixture(scope="module")
def discovery(k8s_client):
    client, api_client = k8s_client
    return client.DiscoveryV1Api(api_client)


@pytest.fixture(scope="module", autouse=True)
def nodes(core):
    """Two Ready nodes, the first in zone-a, as node agents would register them."""
    from kubernetes.client.rest import ApiException

    for name, zone in (("node-1", "zone-a"), ("node-2", None)):
        labels = {"kubernetes.io/hostname": name}
        if zone:
            labels["topology.kubernetes.io/zone"] = zone
        try:
            core.create_node({"apiVersion": "v1", "kind": "Node", "metadata": {"name": name, "labels": labels}})
        except ApiException as exc:
            if exc.status != 409:
                raise
        core.patch_node_status(name, {"status": {"conditions": [{"type": "Ready", "status": "True"}]}})


def now() -> str:
    return dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def create_pod(core, ns, name, labels=None, node="node-1", ports=None, hostname=None, subdomain=None):
    spec = {"nodeName": node,
            "containers": [{"name": "app", "image": "nginx",
                            "ports": [{"containerPort": 80}] if ports is None else ports}]}
    if hostname:
        spec["hostname"] = hostname
    if subdomain:
        spec["subdomain"] = subdomain
    core.create_namespaced_pod(ns, {"apiVersion": "v1", "kind": "Pod",
                                    "metadata": {"name": name, "labels": labels or {"app": "web"}},
                                    "spec": spec})


def set_status(core, ns, name, ip, ready=True):
    """What a kubelet reports once the pod runs (and whether its readiness probe passes)."""
    status = {"phase": "Running", "hostIP": "172.18.0.2", "podIP": ip, "podIPs": [{"ip": ip}],
              "conditions": [{"type": "Ready", "status": "True" if ready else "False",
                              "lastTransitionTime": now()}]}
    core.patch_namespaced_pod_status(name, ns, {"status": status})


def running_pod(core, ns, name, ip, ready=True, **kwargs):
    create_pod(core, ns, name, **kwargs)
    set_status(core, ns, name, ip, ready)


def endpoints(server, ns, name):
    return server.kubectl_json("get", "endpoints", name, "-n", ns)


def slices(server, ns, name):
    items = server.kubectl_json("get", "endpointslices", "-n", ns, "-l", f"{SERVICE_NAME_LABEL}={name}")["items"]
    return sorted(items, key=lambda s: -len(s.get("endpoints") or []))


def ready_ips(subsets):
    return sorted(a["ip"] for s in subsets or [] for a in s.get("addresses") or [])


def not_ready_ips(subsets):
    return sorted(a["ip"] for s in subsets or [] for a in s.get("notReadyAddresses") or [])


def slice_conditions(items):
    return {e["addresses"][0]: e["conditions"] for s in items for e in s.get("endpoints") or []}


# --- the seed flow ----------------------------------------------------------------------

def test_expose_get_endpoints_describe_unready_delete(server, ns, core):
    for i in range(4):
        running_pod(core, ns, f"web-{i}", f"10.244.1.{5 + i}")
    server.kubectl("create", "service", "clusterip", "web", "--tcp=80:80", "-n", ns)

    def four_ready():
        assert ready_ips(endpoints(server, ns, "web").get("subsets")) == [f"10.244.1.{i}" for i in (5, 6, 7, 8)]
        return True
    eventually(four_ready)
    rows = [cols(line) for line in server.kubectl("get", "ep", "web", "-n", ns).stdout.splitlines()]
    assert rows[0] == ["NAME", "ENDPOINTS", "AGE"]
    assert rows[1][:2] == ["web", "10.244.1.5:80,10.244.1.6:80,10.244.1.7:80 + 1 more..."]

    ep = endpoints(server, ns, "web")
    assert ep["metadata"]["labels"] == {"app": "web"}  # the Service's labels
    assert TRIGGER_TIME in ep["metadata"]["annotations"]
    address = next(a for a in ep["subsets"][0]["addresses"] if a["ip"] == "10.244.1.5")
    pod_uid = core.read_namespaced_pod("web-0", ns).metadata.uid
    assert address == {"ip": "10.244.1.5", "nodeName": "node-1",
                       "targetRef": {"kind": "Pod", "namespace": ns, "name": "web-0", "uid": pod_uid}}
    assert ep["subsets"][0]["ports"] == [{"name": "80-80", "port": 80, "protocol": "TCP"}]

    [es] = eventually(lambda: [s for s in slices(server, ns, "web") if len(s.get("endpoints") or []) == 4])
    assert es["metadata"]["name"].startswith("web-") and len(es["metadata"]["name"]) == len("web-") + 5
    assert es["metadata"]["labels"] == {"app": "web", SERVICE_NAME_LABEL: "web",
                                        MANAGED_BY_LABEL: "endpointslice-controller.k8s.io"}
    svc_uid = core.read_namespaced_service("web", ns).metadata.uid
    assert es["metadata"]["ownerReferences"] == [{"apiVersion": "v1", "kind": "Service", "name": "web",
                                                  "uid": svc_uid, "controller": True, "blockOwnerDeletion": True}]
    assert es["addressType"] == "IPv4" and es["ports"] == [{"name": "80-80", "port": 80, "protocol": "TCP"}]
    assert TRIGGER_TIME in es["metadata"]["annotations"]
    first = next(e for e in es["endpoints"] if e["addresses"] == ["10.244.1.5"])
    assert first == {"addresses": ["10.244.1.5"], "conditions": {"ready": True, "serving": True, "terminating": False},
                     "nodeName": "node-1", "zone": "zone-a",
                     "targetRef": {"kind": "Pod", "namespace": ns, "name": "web-0", "uid": pod_uid}}

    describe = server.kubectl("describe", "svc", "web", "-n", ns).stdout
    assert re.search(r"^Endpoints:\s+10\.244\.1\.5:80,10\.244\.1\.6:80,10\.244\.1\.7:80 \+ 1 more\.\.\.$",
                     describe, re.M), describe
    rows = [cols(line) for line in server.kubectl("get", "endpointslices", "-n", ns).stdout.splitlines()]
    assert rows[0] == ["NAME", "ADDRESSTYPE", "PORTS", "ENDPOINTS", "AGE"]
    assert rows[1][:4] == [es["metadata"]["name"], "IPv4", "80",
                           "10.244.1.5,10.244.1.6,10.244.1.7 + 1 more..."]

    # the readiness probe of web-1 fails: it moves to notReadyAddresses, ready false in the slice
    set_status(core, ns, "web-1", "10.244.1.6", ready=False)

    def web1_unready():
        ep = endpoints(server, ns, "web")
        assert not_ready_ips(ep.get("subsets")) == ["10.244.1.6"]
        assert ready_ips(ep.get("subsets")) == ["10.244.1.5", "10.244.1.7", "10.244.1.8"]
        assert slice_conditions(slices(server, ns, "web"))["10.244.1.6"] == \
            {"ready": False, "serving": False, "terminating": False}
        return True
    eventually(web1_unready)

    # pods go away: the endpoints follow
    for name in ("web-0", "web-2"):
        core.delete_namespaced_pod(name, ns, grace_period_seconds=0)

    def two_left():
        ep = endpoints(server, ns, "web")
        assert ready_ips(ep.get("subsets")) == ["10.244.1.8"] and not_ready_ips(ep.get("subsets")) == ["10.244.1.6"]
        assert sorted(slice_conditions(slices(server, ns, "web"))) == ["10.244.1.6", "10.244.1.8"]
        return True
    eventually(two_left)

    for name in ("web-1", "web-3"):
        core.delete_namespaced_pod(name, ns, grace_period_seconds=0)

    def none_left():
        assert "subsets" not in endpoints(server, ns, "web")
        [placeholder] = slices(server, ns, "web")
        assert placeholder.get("endpoints") is None and "ports" not in placeholder
        return True
    eventually(none_left)
    assert cols(server.kubectl("get", "ep", "web", "-n", ns).stdout.splitlines()[1])[:2] == ["web", "<none>"]
    assert re.search(r"^Endpoints:\s+$", server.kubectl("describe", "svc", "web", "-n", ns).stdout, re.M)


def test_terminating_pod_leaves_endpoints_but_stays_in_slice_as_terminating(server, ns, core):
    running_pod(core, ns, "web-0", "10.244.2.5", node="node-2")
    running_pod(core, ns, "web-1", "10.244.2.6", node="node-2")
    server.kubectl("create", "service", "clusterip", "web", "--tcp=80:80", "-n", ns)
    eventually(lambda: len(ready_ips(endpoints(server, ns, "web").get("subsets"))) == 2)
    core.delete_namespaced_pod("web-0", ns)  # graceful: bound to a node, it terminates

    def terminating():
        assert ready_ips(endpoints(server, ns, "web").get("subsets")) == ["10.244.2.6"]
        conditions = slice_conditions(slices(server, ns, "web"))
        assert conditions["10.244.2.5"] == {"ready": False, "serving": True, "terminating": True}
        return True
    eventually(terminating)
    core.delete_namespaced_pod("web-0", ns, grace_period_seconds=0)  # the kubelet is done
    eventually(lambda: sorted(slice_conditions(slices(server, ns, "web"))) == ["10.244.2.6"])


def test_publish_not_ready_addresses(server, ns, core):
    running_pod(core, ns, "web-0", "10.244.1.20", ready=False)
    server.kubectl("apply", "-n", ns, "-f", "-", input="""\
apiVersion: v1
kind: Service
metadata: {name: peers}
spec:
  clusterIP: None
  publishNotReadyAddresses: true
  selector: {app: web}
  ports: [{name: gossip, port: 7000}]
""")

    def published():
        ep = endpoints(server, ns, "peers")
        assert ready_ips(ep.get("subsets")) == ["10.244.1.20"] and not not_ready_ips(ep.get("subsets"))
        assert ep["metadata"]["labels"] == {"service.kubernetes.io/headless": ""}
        [es] = slices(server, ns, "peers")
        assert es["endpoints"][0]["conditions"] == {"ready": True, "serving": False, "terminating": False}
        assert es["metadata"]["labels"]["service.kubernetes.io/headless"] == ""
        assert es["ports"] == [{"name": "gossip", "port": 7000, "protocol": "TCP"}]
        return True
    eventually(published)


def test_headless_service_with_statefulset_hostnames(server, ns, core):
    server.kubectl("create", "service", "clusterip", "mysql", "--clusterip=None", "-n", ns)
    for i in range(2):
        running_pod(core, ns, f"mysql-{i}", f"10.244.1.{30 + i}", labels={"app": "mysql"},
                    hostname=f"mysql-{i}", subdomain="mysql", ports=[{"containerPort": 3306}])

    def hostnames():
        ep = endpoints(server, ns, "mysql")
        assert {a["ip"]: a["hostname"] for s in ep["subsets"] for a in s["addresses"]} == \
            {"10.244.1.30": "mysql-0", "10.244.1.31": "mysql-1"}
        [es] = slices(server, ns, "mysql")
        assert {e["addresses"][0]: e["hostname"] for e in es["endpoints"]} == \
            {"10.244.1.30": "mysql-0", "10.244.1.31": "mysql-1"}
        return True
    eventually(hostnames)


def test_named_target_ports_resolve_per_pod(server, ns, core):
    running_pod(core, ns, "v1", "10.244.1.40", ports=[{"name": "http", "containerPort": 8080}])
    running_pod(core, ns, "v2", "10.244.1.41", ports=[{"name": "http", "containerPort": 9090}])
    running_pod(core, ns, "other", "10.244.1.42", ports=[{"name": "admin", "containerPort": 8080}])
    server.kubectl("apply", "-n", ns, "-f", "-", input="""\
apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  selector: {app: web}
  ports: [{name: web, port: 80, targetPort: http}]
""")

    def resolved():
        ep = endpoints(server, ns, "web")
        by_port = {s["ports"][0]["port"]: ready_ips([s]) for s in ep["subsets"]}
        assert by_port == {8080: ["10.244.1.40"], 9090: ["10.244.1.41"]}
        ports = {s["ports"][0]["port"] if s.get("ports") else None: [e["addresses"][0] for e in s["endpoints"]]
                 for s in slices(server, ns, "web")}
        assert ports == {8080: ["10.244.1.40"], 9090: ["10.244.1.41"], None: ["10.244.1.42"]}
        return True
    eventually(resolved)
    out = server.kubectl("get", "ep", "web", "-n", ns).stdout
    assert "10.244.1.40:8080" in out and "10.244.1.41:9090" in out and "10.244.1.42" not in out


def test_150_pods_make_two_slices(server, ns, core):
    for i in range(150):
        running_pod(core, ns, f"web-{i:03d}", f"10.244.{3 + i // 100}.{i % 100 + 1}", node="node-2")
    server.kubectl("create", "service", "clusterip", "web", "--tcp=80:80", "-n", ns)
    eventually(lambda: [len(s.get("endpoints") or []) for s in slices(server, ns, "web")] == [100, 50], timeout=30)
    assert len(ready_ips(endpoints(server, ns, "web")["subsets"])) == 150


def test_selectorless_service_with_manual_endpoints_is_mirrored(server, ns, core):
    server.kubectl("apply", "-n", ns, "-f", "-", input="""\
apiVersion: v1
kind: Service
metadata: {name: external-db}
spec:
  ports: [{port: 5432}]
---
apiVersion: v1
kind: Endpoints
metadata:
  name: external-db
  labels: {team: data}
subsets:
- addresses: [{ip: 192.168.10.5}, {ip: 192.168.10.6}]
  ports: [{port: 5432}]
""")

    def mirrored():
        [es] = slices(server, ns, "external-db")
        assert es["metadata"]["labels"] == {"team": "data", SERVICE_NAME_LABEL: "external-db",
                                            MANAGED_BY_LABEL: "endpointslicemirroring-controller.k8s.io"}
        assert es["metadata"]["ownerReferences"][0]["kind"] == "Endpoints"
        assert sorted(e["addresses"][0] for e in es["endpoints"]) == ["192.168.10.5", "192.168.10.6"]
        assert es["ports"] == [{"name": "", "port": 5432, "protocol": "TCP"}]
        return True
    eventually(mirrored)
    server.kubectl("patch", "endpoints", "external-db", "-n", ns, "--type=merge",
                   "-p", '{"subsets":[{"addresses":[{"ip":"192.168.10.7"}],"ports":[{"port":5432}]}]}')
    eventually(lambda: [e["addresses"][0] for e in slices(server, ns, "external-db")[0]["endpoints"]]
               == ["192.168.10.7"])
    # the Endpoints controller leaves manual Endpoints alone
    time.sleep(0.5)
    assert ready_ips(endpoints(server, ns, "external-db")["subsets"]) == ["192.168.10.7"]
    assert "192.168.10.7:5432" in server.kubectl("describe", "svc", "external-db", "-n", ns).stdout
    server.kubectl("delete", "service", "external-db", "-n", ns)
    eventually(lambda: slices(server, ns, "external-db") == [])


# --- bad input --------------------------------------------------------------------------

def test_selector_matching_nothing_gives_empty_endpoints(server, ns, core):
    server.kubectl("create", "service", "clusterip", "nothing", "--tcp=80:80", "-n", ns)
    eventually(lambda: endpoints(server, ns, "nothing"))
    assert "subsets" not in endpoints(server, ns, "nothing")
    eventually(lambda: len(slices(server, ns, "nothing")) == 1)
    assert cols(server.kubectl("get", "ep", "nothing", "-n", ns).stdout.splitlines()[1])[1] == "<none>"


def test_pods_without_ip_or_port_are_left_out(server, ns, core):
    create_pod(core, ns, "pending")  # scheduled, no IP yet
    running_pod(core, ns, "good", "10.244.1.50", ports=[{"name": "http", "containerPort": 80}])
    running_pod(core, ns, "portless", "10.244.1.51", ports=[])
    server.kubectl("apply", "-n", ns, "-f", "-", input="""\
apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  selector: {app: web}
  ports: [{port: 80, targetPort: http}]
""")
    eventually(lambda: ready_ips(endpoints(server, ns, "web").get("subsets")) == ["10.244.1.50"])
    set_status(core, ns, "pending", "10.244.1.52")
    eventually(lambda: ready_ips(endpoints(server, ns, "web").get("subsets")) == ["10.244.1.50"]
               and "10.244.1.52" in slice_conditions(slices(server, ns, "web")))


def test_pod_on_an_unknown_node_waits_for_the_node(server, ns, core):
    from kubernetes.client.rest import ApiException

    node = f"late-{ns}"
    running_pod(core, ns, "web-0", "10.244.1.80", node=node)
    running_pod(core, ns, "web-1", "10.244.1.81")
    server.kubectl("create", "service", "clusterip", "web", "--tcp=80:80", "-n", ns)
    # Endpoints do not look at Nodes; the slice leaves the pod out and says why
    eventually(lambda: ready_ips(endpoints(server, ns, "web").get("subsets")) == ["10.244.1.80", "10.244.1.81"])
    eventually(lambda: sorted(slice_conditions(slices(server, ns, "web"))) == ["10.244.1.81"])
    eventually(lambda: f"skipping Pod web-0 for Service {ns}/web: Node {node} Not Found"
               in server.kubectl("describe", "svc", "web", "-n", ns).stdout)
    try:
        core.create_node({"apiVersion": "v1", "kind": "Node", "metadata": {"name": node}})
        eventually(lambda: sorted(slice_conditions(slices(server, ns, "web"))) == ["10.244.1.80", "10.244.1.81"])
    finally:
        try:
            core.delete_node(node)
        except ApiException:
            pass


def test_deleted_service_takes_its_endpoints_and_slices(server, ns, core):
    running_pod(core, ns, "web-0", "10.244.1.60")
    server.kubectl("create", "service", "clusterip", "web", "--tcp=80:80", "-n", ns)
    eventually(lambda: slices(server, ns, "web") and endpoints(server, ns, "web").get("subsets"))
    server.kubectl("delete", "service", "web", "-n", ns)
    eventually(lambda: slices(server, ns, "web") == [])
    eventually(lambda: server.kubectl("get", "endpoints", "web", "-n", ns, check=False).returncode != 0)
    assert server.proc.poll() is None


def test_service_recreated_at_once_gets_fresh_slices(server, ns, core):
    running_pod(core, ns, "web-0", "10.244.1.70")
    for _ in range(3):
        server.kubectl("create", "service", "clusterip", "web", "--tcp=80:80", "-n", ns)
        server.kubectl("delete", "service", "web", "-n", ns)
    server.kubectl("create", "service", "clusterip", "web", "--tcp=80:80", "-n", ns)
    uid = core.read_namespaced_service("web", ns).metadata.uid

    def owned_by_the_last():
        items = slices(server, ns, "web")
        assert [s["metadata"]["ownerReferences"][0]["uid"] for s in items] == [uid]
        assert ready_ips(endpoints(server, ns, "web").get("subsets")) == ["10.244.1.70"]
        return True
    eventually(owned_by_the_last)


# --- the kubernetes Service's own endpoints ---------------------------------------------

@pytest.fixture(scope="module")
def advertised_server(tmp_path_factory):
    """A server whose --advertise-address is not loopback (the API refuses loopback
    endpoint addresses, as Kubernetes does)."""
    data_dir = str(tmp_path_factory.mktemp("pk-advertised"))
    log = open(os.path.join(data_dir, "server.log"), "ab")
    proc = subprocess.Popen([sys.executable, "-m", "pocketkube.cli.main", "server", "--data-dir", data_dir,
                             "--port", "0", "--datastore", "memory", "--advertise-address", "172.18.0.1"],
                            stdout=subprocess.PIPE, stderr=log, cwd=ROOT, start_new_session=True)
    url = ""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not url:
        line = proc.stdout.readline().decode()
        if not line:
            break
        if "listening on" in line:
            url = line.strip().rsplit(" ", 1)[-1]
    if not url:
        proc.kill()
        proc.wait()
        pytest.fail("pocketkube server did not start")
    env = {**os.environ, "KUBECONFIG": os.path.join(data_dir, "kubeconfig"), "HOME": data_dir,
           "KUBECACHEDIR": os.path.join(data_dir, "kubecache")}
    srv = RunningServer(proc, data_dir, url, env["KUBECONFIG"], env)
    try:
        yield srv
    finally:
        srv.stop()


def test_kubernetes_service_endpoints_are_the_api_servers_address(advertised_server):
    srv = advertised_server
    port = int(srv.url.rsplit(":", 1)[1])

    def published():
        ep = srv.kubectl_json("get", "endpoints", "kubernetes", "-n", "default")
        assert ep["metadata"]["labels"] == {"endpointslice.kubernetes.io/skip-mirror": "true"}
        assert ep["subsets"] == [{"addresses": [{"ip": "172.18.0.1"}],
                                  "ports": [{"name": "https", "port": port, "protocol": "TCP"}]}]
        es = srv.kubectl_json("get", "endpointslice", "kubernetes", "-n", "default")
        assert es["metadata"]["labels"] == {SERVICE_NAME_LABEL: "kubernetes"}
        assert es["addressType"] == "IPv4"
        assert es["endpoints"] == [{"addresses": ["172.18.0.1"], "conditions": {"ready": True}}]
        assert es["ports"] == [{"name": "https", "port": port, "protocol": "TCP"}]
        return True
    eventually(published)
    # the mirroring controller leaves it alone: one slice only
    items = srv.kubectl_json("get", "endpointslices", "-n", "default",
                             "-l", f"{SERVICE_NAME_LABEL}=kubernetes")["items"]
    assert [s["metadata"]["name"] for s in items] == ["kubernetes"]
    # someone breaks it: the reconciler puts it back
    srv.kubectl("delete", "endpoints", "kubernetes", "-n", "default")
    eventually(published)
