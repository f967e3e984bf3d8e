"""ClusterIP and NodePort allocation through the real kubectl (and 50 concurrent raw
requests): the `kubernetes` Service, exact refusals, type changes, release on delete, dry
run, and allocations that survive a restart of a sqlite-backed server.

The server is shared by the module and NodePorts are cluster-wide, so every test uses its
own requested ports."""

from __future__ import annotations

import asyncio
import ipaddress
import json
import ssl

import aiohttp
import pytest

from tests.conftest import start_server

pytestmark = pytest.mark.kubectl

SERVICE_CIDR = ipaddress.ip_network("10.96.0.0/12")


def spec_of(server, ns: str, name: str) -> dict:
    return server.kubectl_json("get", "svc", name, "-n", ns)["spec"]


def in_service_cidr(ip: str) -> bool:
    return ipaddress.ip_address(ip) in SERVICE_CIDR


def test_kubernetes_service(server):
    line = server.kubectl("get", "svc", "kubernetes", "-n", "default", "--no-headers").stdout.split()
    assert line[:5] == ["kubernetes", "ClusterIP", "10.96.0.1", "<none>", "443/TCP"]
    svc = server.kubectl_json("get", "svc", "kubernetes", "-n", "default")
    assert svc["metadata"]["labels"] == {"component": "apiserver", "provider": "kubernetes"}
    assert svc["spec"]["ports"] == [{"name": "https", "port": 443, "protocol": "TCP",
                                     "targetPort": int(server.url.rsplit(":", 1)[1])}]
    assert "selector" not in svc["spec"]
    assert svc["spec"]["clusterIPs"] == ["10.96.0.1"] and svc["spec"]["ipFamilies"] == ["IPv4"]


def test_expose_gets_an_ip_from_the_service_cidr(server, ns):
    server.kubectl("create", "deployment", "web", "--image=nginx", "-n", ns)
    server.kubectl("expose", "deployment", "web", "--port=80", "-n", ns)
    spec = spec_of(server, ns, "web")
    assert in_service_cidr(spec["clusterIP"]) and spec["clusterIP"] != "10.96.0.1"
    assert spec["clusterIPs"] == [spec["clusterIP"]]
    assert spec["ipFamilies"] == ["IPv4"] and spec["ipFamilyPolicy"] == "SingleStack"


def test_same_node_port_twice_is_refused(server, ns):
    server.kubectl("create", "service", "nodeport", "np", "--tcp=80:80", "--node-port=30080", "-n", ns)
    assert spec_of(server, ns, "np")["ports"][0]["nodePort"] == 30080
    cp = server.kubectl("create", "service", "nodeport", "np2", "--tcp=80:80", "--node-port=30080", "-n", ns,
                        check=False)
    assert cp.returncode == 1
    assert cp.stderr.strip() == ('error: failed to create NodePort service: Service "np2" is invalid: '
                                 'spec.ports[0].nodePort: Invalid value: 30080: provided port is already allocated')
    assert server.kubectl("get", "svc", "np2", "-n", ns, check=False).returncode == 1


def test_node_port_out_of_range_is_refused(server, ns):
    cp = server.kubectl("create", "service", "nodeport", "low", "--tcp=80:80", "--node-port=29999", "-n", ns,
                        check=False)
    assert cp.stderr.strip() == ('error: failed to create NodePort service: Service "low" is invalid: '
                                 'spec.ports[0].nodePort: Invalid value: 29999: provided port is not in the valid '
                                 'range. The range of valid ports is 30000-32767')


def test_cluster_ip_taken_or_out_of_range_is_refused(server, ns):
    server.kubectl("create", "service", "clusterip", "a", "--tcp=80", "--clusterip=10.96.0.50", "-n", ns)
    cp = server.kubectl("create", "service", "clusterip", "b", "--tcp=80", "--clusterip=10.96.0.50", "-n", ns,
                        check=False)
    assert cp.stderr.strip() == ('error: failed to create ClusterIP service: Service "b" is invalid: '
                                 'spec.clusterIPs: Invalid value: []string{"10.96.0.50"}: failed to allocate IP '
                                 '10.96.0.50: provided IP is already allocated')
    cp = server.kubectl("create", "service", "clusterip", "c", "--tcp=80", "--clusterip=10.0.0.5", "-n", ns,
                        check=False)
    assert cp.stderr.strip() == ('error: failed to create ClusterIP service: Service "c" is invalid: '
                                 'spec.clusterIPs: Invalid value: []string{"10.0.0.5"}: failed to allocate IP '
                                 '10.0.0.5: the provided IP (10.0.0.5) is not in the valid range. The range of '
                                 'valid IPs is 10.96.0.0/12')
    cp = server.kubectl("create", "service", "clusterip", "k", "--tcp=80", "--clusterip=10.96.0.1", "-n", ns,
                        check=False)
    assert "failed to allocate IP 10.96.0.1: provided IP is already allocated" in cp.stderr


def test_cluster_ip_to_node_port_and_back(server, ns):
    server.kubectl("create", "service", "clusterip", "web", "--tcp=80", "-n", ns)
    ip = spec_of(server, ns, "web")["clusterIP"]
    server.kubectl("patch", "svc", "web", "-n", ns, "-p", '{"spec":{"type":"NodePort"}}')
    spec = spec_of(server, ns, "web")
    assert spec["clusterIP"] == ip and spec["type"] == "NodePort"
    assert 30000 <= spec["ports"][0]["nodePort"] <= 32767
    server.kubectl("patch", "svc", "web", "-n", ns, "-p",
                   '{"spec":{"ports":[{"port":80,"protocol":"TCP","nodePort":30081}]}}')
    assert spec_of(server, ns, "web")["ports"][0]["nodePort"] == 30081
    server.kubectl("patch", "svc", "web", "-n", ns, "-p", '{"spec":{"type":"ClusterIP"}}')
    spec = spec_of(server, ns, "web")
    assert spec["type"] == "ClusterIP" and "nodePort" not in spec["ports"][0] and spec["clusterIP"] == ip
    # the released port can be taken again
    server.kubectl("create", "service", "nodeport", "again", "--tcp=80:80", "--node-port=30081", "-n", ns)


def test_external_name_to_cluster_ip_allocates(server, ns):
    server.kubectl("create", "service", "externalname", "ext", "--external-name=example.com", "-n", ns)
    assert "clusterIP" not in spec_of(server, ns, "ext")
    server.kubectl("patch", "svc", "ext", "-n", ns, "--type=merge", "-p",
                   '{"spec":{"type":"ClusterIP","externalName":null,"ports":[{"port":80}]}}')
    spec = spec_of(server, ns, "ext")
    assert spec["type"] == "ClusterIP" and in_service_cidr(spec["clusterIP"])
    assert spec["ipFamilies"] == ["IPv4"]


def test_headless_gets_no_cluster_ip(server, ns):
    server.kubectl("create", "service", "clusterip", "h", "--clusterip=None", "--tcp=80", "-n", ns)
    spec = spec_of(server, ns, "h")
    assert spec["clusterIP"] == "None" and spec["clusterIPs"] == ["None"]
    line = server.kubectl("get", "svc", "h", "-n", ns, "--no-headers").stdout.split()
    assert line[:3] == ["h", "ClusterIP", "None"]


def test_load_balancer_gets_node_ports(server, ns):
    server.kubectl("create", "service", "loadbalancer", "lb", "--tcp=80,443", "-n", ns)
    spec = spec_of(server, ns, "lb")
    ports = [p["nodePort"] for p in spec["ports"]]
    assert len(set(ports)) == 2 and all(30000 <= p <= 32767 for p in ports)
    assert in_service_cidr(spec["clusterIP"])


def test_delete_frees_ip_and_port(server, ns):
    server.kubectl("create", "service", "nodeport", "d", "--tcp=80:80", "--node-port=30082", "-n", ns)
    ip = spec_of(server, ns, "d")["clusterIP"]
    server.kubectl("delete", "svc", "d", "-n", ns)
    manifest = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "d2", "namespace": ns},
                "spec": {"type": "NodePort", "clusterIP": ip,
                         "ports": [{"port": 80, "nodePort": 30082}], "selector": {"app": "d"}}}
    server.kubectl("create", "-f", "-", input=json.dumps(manifest))
    assert spec_of(server, ns, "d2")["clusterIP"] == ip


def test_dry_run_allocates_nothing(server, ns):
    out = server.kubectl("create", "service", "nodeport", "dry", "--tcp=80:80", "--node-port=30083",
                         "--dry-run=server", "-o", "json", "-n", ns).stdout
    assert json.loads(out)["spec"]["ports"][0]["nodePort"] == 30083
    server.kubectl("create", "service", "nodeport", "real", "--tcp=80:80", "--node-port=30083", "-n", ns)


async def test_concurrent_creates_of_one_node_port_have_one_winner(server, ns):
    ctx = ssl.create_default_context(cafile=server.ca)
    headers = {"Authorization": f"Bearer {server.token}", "Content-Type": "application/json"}
    url = f"{server.url}/api/v1/namespaces/{ns}/services"

    def body(i: int) -> str:
        return json.dumps({"apiVersion": "v1", "kind": "Service", "metadata": {"name": f"race-{i}"},
                           "spec": {"type": "NodePort", "selector": {"app": "race"},
                                    "ports": [{"port": 80, "nodePort": 30084}]}})

    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=ctx, limit=50)) as session:
        async def post(i: int) -> tuple[int, dict]:
            async with session.post(url, data=body(i), headers=headers) as resp:
                return resp.status, await resp.json()

        results = await asyncio.gather(*(post(i) for i in range(50)))
    statuses = sorted(status for status, _ in results)
    assert statuses == [201] + [422] * 49
    assert all(b["message"].endswith("spec.ports[0].nodePort: Invalid value: 30084: provided port is already "
                                     "allocated") for status, b in results if status == 422)
    names = server.kubectl("get", "svc", "-n", ns, "-o", "name").stdout.split()
    assert len(names) == 1


def test_restart_keeps_allocations(tmp_path):
    srv = start_server(str(tmp_path), datastore="sqlite")
    try:
        srv.kubectl("create", "service", "nodeport", "keep", "--tcp=80:80")
        srv.kubectl("create", "service", "clusterip", "fixed", "--tcp=80", "--clusterip=10.96.0.60")
        before = srv.kubectl_json("get", "svc", "keep")["spec"]
    finally:
        srv.stop()
    again = start_server(str(tmp_path), datastore="sqlite")
    try:
        for ip in (before["clusterIP"], "10.96.0.60", "10.96.0.1"):
            cp = again.kubectl("create", "service", "clusterip", "steal", "--tcp=80", f"--clusterip={ip}", check=False)
            assert f"failed to allocate IP {ip}: provided IP is already allocated" in cp.stderr
        port = before["ports"][0]["nodePort"]
        cp = again.kubectl("create", "service", "nodeport", "steal", "--tcp=80:80", f"--node-port={port}", check=False)
        assert f"Invalid value: {port}: provided port is already allocated" in cp.stderr
        again.kubectl("create", "service", "nodeport", "new", "--tcp=80:80")
        new = again.kubectl_json("get", "svc", "new")["spec"]
        assert new["clusterIP"] not in (before["clusterIP"], "10.96.0.60", "10.96.0.1")
        assert new["ports"][0]["nodePort"] != port
        kube = again.kubectl_json("get", "svc", "kubernetes", "-n", "default")["spec"]
        assert kube["clusterIP"] == "10.96.0.1"
        assert kube["ports"][0]["targetPort"] == int(again.url.rsplit(":", 1)[1])
        again.kubectl("delete", "svc", "keep")
        again.kubectl("create", "service", "nodeport", "reuse", "--tcp=80:80", f"--node-port={port}")
    finally:
        again.stop()
