"""Cluster DNS on a real cluster, asked from a busybox pod with the real kubectl (`nslookup`,
and `dig`, which busybox pods run from this machine's /usr/bin): the seed flows of issue 6,
answered by the `coredns` Deployment behind kube-dns (the service range's .10). The objects carry the seed
names in `default` (where `nslookup kubernetes` resolves through the search list), are made
once for the module and removed at its end; the pods are few on purpose (e2e time matters):
the client and one StatefulSet pod that backs every Service here."""

from __future__ import annotations

import shutil
import subprocess
import uuid

import pytest

from tests.e2e.test_cluster_pods import eventually

pytestmark = pytest.mark.e2e
DIG = shutil.which("dig")

OBJECTS = """
apiVersion: v1
kind: Service
metadata: {name: nginx, labels: {app: nginx}}
spec:
  clusterIP: None
  selector: {app: nginx}
  ports: [{name: http, port: 80}]
---
apiVersion: v1
kind: Service
metadata: {name: my-nginx}
spec:
  selector: {app: nginx}
  ports: [{name: http, port: 80, protocol: TCP}]
---
apiVersion: v1
kind: Service
metadata: {name: ext}
spec:
  type: ExternalName
  externalName: www.example.test
---
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: web}
spec:
  serviceName: nginx
  replicas: 1
  selector: {matchLabels: {app: nginx}}
  template:
    metadata: {labels: {app: nginx}}
    spec:
      containers:
      - name: nginx
        image: nginx
        ports: [{name: http, containerPort: 80}]
"""


def ready(cluster, name: str) -> dict | None:
    pod = cluster.kubectl_json("get", "pod", name, "-n", "default")
    conditions = {c["type"]: c["status"] for c in pod["status"].get("conditions", [])}
    return pod if conditions.get("Ready") == "True" and pod["status"].get("podIP") else None


@pytest.fixture(scope="module")
def dns_cluster(cluster):
    """The module's objects in `default`, the client pod, and the addresses tests compare."""
    client = "dns-client-" + uuid.uuid4().hex[:5]
    digger = "dns-dig-" + uuid.uuid4().hex[:5]  # busybox has no dig: the e2e suite's dnsutils image has
    cluster.kubectl("apply", "-n", "default", "-f", "-", input=OBJECTS)
    cluster.kubectl("run", client, "--image=busybox", "-n", "default", "--", "sleep", "3600")
    cluster.kubectl("run", digger, "--image=registry.k8s.io/e2e-test-images/jessie-dnsutils:1.7", "-n", "default",
                    "--", "sleep", "3600")
    try:
        web = eventually(lambda: ready(cluster, "web-0"), timeout=60)
        eventually(lambda: ready(cluster, client), timeout=60)
        eventually(lambda: ready(cluster, digger), timeout=60)
        eventually(lambda: _dns_ready(cluster), timeout=60)
        yield {"client": client, "digger": digger, "web_ip": web["status"]["podIP"],
               "my_nginx": cluster.kubectl_json("get", "svc", "my-nginx")["spec"]["clusterIP"]}
    finally:
        for pod in (client, digger):
            cluster.kubectl("delete", "pod", pod, "--grace-period=0", "--wait=false", check=False)
        cluster.kubectl("delete", "-n", "default", "-f", "-", "--wait=false", input=OBJECTS, check=False)


def _dns_ready(cluster) -> bool:
    pods = cluster.kubectl_json("get", "pods", "-n", "kube-system", "-l", "k8s-app=kube-dns")["items"]
    return any(c["type"] == "Ready" and c["status"] == "True" for p in pods for c in p["status"].get("conditions", []))


def in_pod(cluster, dns_cluster, *command: str, check: bool = True) -> subprocess.CompletedProcess:
    pod = dns_cluster["digger" if command[0] == "dig" else "client"]
    return cluster.kubectl("exec", pod, "-n", "default", "--", *command, check=check)


def nslookup(cluster, dns_cluster, name: str) -> str:
    cp = in_pod(cluster, dns_cluster, "nslookup", name, check=False)
    return cp.stdout + cp.stderr


def host_dig(cluster, *args: str) -> str:
    if DIG is None:
        pytest.fail("dig is not installed (dnsutils)")
    return subprocess.run([DIG, f"@{cluster.net.cluster_dns}", "+time=2", "+tries=2", *args], capture_output=True, text=True,
                          timeout=30).stdout


def test_resolv_conf_has_the_search_list_and_ndots(cluster, dns_cluster):
    resolv = in_pod(cluster, dns_cluster, "cat", "/etc/resolv.conf").stdout
    assert "search default.svc.cluster.local svc.cluster.local cluster.local" in resolv
    assert f"nameserver {cluster.net.cluster_dns}" in resolv and "options ndots:5" in resolv


def test_nslookup_services_by_short_and_full_name(cluster, dns_cluster):
    out = nslookup(cluster, dns_cluster, "kubernetes")
    assert f"Server:\t\t{cluster.net.cluster_dns}" in out
    kubernetes = cluster.net.service_cidr.network_address + 1
    assert f"Name:\tkubernetes.default.svc.cluster.local\nAddress: {kubernetes}" in out, out
    ip = dns_cluster["my_nginx"]
    out = nslookup(cluster, dns_cluster, "my-nginx")  # through the search list
    assert f"Name:\tmy-nginx.default.svc.cluster.local\nAddress: {ip}" in out, out
    out = nslookup(cluster, dns_cluster, "my-nginx.default.svc.cluster.local")
    assert f"Name:\tmy-nginx.default.svc.cluster.local\nAddress: {ip}" in out, out
    out = nslookup(cluster, dns_cluster, "kube-dns.kube-system.svc.cluster.local")
    assert f"Name:\tkube-dns.kube-system.svc.cluster.local\nAddress: {cluster.net.cluster_dns}" in out, out


def test_headless_service_and_statefulset_pod(cluster, dns_cluster):
    ip = dns_cluster["web_ip"]
    out = nslookup(cluster, dns_cluster, "nginx")
    assert f"Name:\tnginx.default.svc.cluster.local\nAddress: {ip}" in out, out
    out = nslookup(cluster, dns_cluster, "web-0.nginx.default.svc.cluster.local")
    assert f"Name:\tweb-0.nginx.default.svc.cluster.local\nAddress: {ip}" in out, out


def test_external_name_is_a_cname(cluster, dns_cluster):
    out = nslookup(cluster, dns_cluster, "ext")
    assert "ext.default.svc.cluster.local\tcanonical name = www.example.test" in out, out


def test_srv_for_a_named_port_and_a_pod_record_with_dig_in_the_pod(cluster, dns_cluster):
    srv = in_pod(cluster, dns_cluster, "dig", "+short", "SRV", "_http._tcp.my-nginx.default.svc.cluster.local").stdout
    assert srv.split() == ["0", "100", "80", "my-nginx.default.svc.cluster.local."]
    headless = in_pod(cluster, dns_cluster, "dig", "+short", "SRV", "_http._tcp.nginx.default.svc.cluster.local")
    assert headless.stdout.split() == ["0", "100", "80", "web-0.nginx.default.svc.cluster.local."]
    pod_name = dns_cluster["web_ip"].replace(".", "-") + ".default.pod.cluster.local"
    assert in_pod(cluster, dns_cluster, "dig", "+short", pod_name).stdout.split() == [dns_cluster["web_ip"]]
    ptr = in_pod(cluster, dns_cluster, "dig", "+short", "-x", dns_cluster["my_nginx"]).stdout
    assert ptr.split() == ["my-nginx.default.svc.cluster.local."]


def test_a_new_service_is_answered_from_the_host(cluster, dns_cluster):
    name = "fresh-" + uuid.uuid4().hex[:5]
    cluster.kubectl("create", "service", "clusterip", name, "--tcp=80:80")
    try:
        ip = cluster.kubectl_json("get", "svc", name)["spec"]["clusterIP"]
        fqdn = f"{name}.default.svc.cluster.local"
        eventually(lambda: host_dig(cluster, "+short", fqdn).split() == [ip], timeout=10)
        assert "status: NXDOMAIN" in host_dig(cluster, f"nope-{name}.default.svc.cluster.local")
    finally:
        cluster.kubectl("delete", "service", name, "--wait=false", check=False)


def test_explain_dns_from_a_pod(cluster, dns_cluster):
    cp = cluster.pocketkube("explain-dns", "my-nginx", "--from", dns_cluster["client"])
    assert cp.returncode == 0, cp.stderr
    out = cp.stdout
    assert f"from pod default/{dns_cluster['client']} (dnsPolicy ClusterFirst)" in out
    assert f"answers: the cluster DNS server {cluster.net.cluster_dns}:53 (Service kube-system/kube-dns), asked from this host" in out
    assert "1. my-nginx.default.svc.cluster.local. A → NOERROR" in out
    assert f"my-nginx.default.svc.cluster.local. 30 IN A {dns_cluster['my_nginx']}" in out
    assert "why: the ClusterIP of Service default/my-nginx" in out
    assert out.rstrip().endswith(f"resolved by query 1: my-nginx.default.svc.cluster.local → {dns_cluster['my_nginx']}")
    # a full name with fewer than 5 dots: the search list first, each a real NXDOMAIN from the server
    cp = cluster.pocketkube("explain-dns", "my-nginx.default.svc.cluster.local", "--from", dns_cluster["client"])
    assert "1. my-nginx.default.svc.cluster.local.default.svc.cluster.local. A → NXDOMAIN" in cp.stdout
    assert cp.stdout.rstrip().endswith(f"resolved by query 4: my-nginx.default.svc.cluster.local → "
                                       f"{dns_cluster['my_nginx']}")
    # 5 dots: asked as is first
    cp = cluster.pocketkube("explain-dns", "web-0.nginx.default.svc.cluster.local", "--from", dns_cluster["client"])
    assert '"web-0.nginx.default.svc.cluster.local" has 5 dots (>= ndots 5): asked as is first' in cp.stdout
    assert "why: the ready endpoint 'web-0' of Service default/nginx" in cp.stdout
    assert cp.stdout.rstrip().endswith(f"resolved by query 1: web-0.nginx.default.svc.cluster.local → "
                                       f"{dns_cluster['web_ip']}")
    missing = cluster.pocketkube("explain-dns", "my-nginx", "--from", "no-such-pod")
    assert missing.returncode == 1
    assert missing.stderr.strip() == 'Error from server (NotFound): pods "no-such-pod" not found'


def test_names_outside_the_cluster_get_servfail_at_once(cluster, dns_cluster):
    """Pods have no route out of the cluster, so the host's resolvers cannot be reached: the
    forward fails on the network's ICMP error and the upstream is skipped for a while (the kernel
    rate-limits that ICMP), so each name gets SERVFAIL within dig's 1 s, not the forward's 2 s
    timeout; the DNS pod lives through it (uvloop's datagram transport crashed on that error).
    busybox's nslookup sends `kubernetes.default` as it is, not through the search list, so on
    a real cluster too it gets the upstream's error (NXDOMAIN there)."""
    for name in ("example.test", "kubernetes.default", "www.example.test", "a.b.example", "c.example", "d.example"):
        out = in_pod(cluster, dns_cluster, "dig", "+time=1", "+tries=1", name, check=False).stdout
        assert "status: SERVFAIL" in out, out
    out = nslookup(cluster, dns_cluster, "kubernetes.default")
    assert "** server can't find kubernetes.default: SERVFAIL" in out, out
    pods = cluster.kubectl_json("get", "pods", "-n", "kube-system", "-l", "k8s-app=kube-dns")["items"]
    assert [s["restartCount"] for p in pods for s in p["status"]["containerStatuses"]] == [0]
