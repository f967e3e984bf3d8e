"""`pocketkube trace` from the cluster state (a fake API client): which node's rules a packet
meets for each kind of source, the second hop to another node's NodePort, the errors; and
the in-cluster client configuration the proxy uses in its pod."""

from __future__ import annotations

import pytest

from pocketkube.core import errors
from pocketkube.core.client import from_in_cluster
from pocketkube.proxy.trace import TraceError, trace_in_cluster


def node(index: int) -> dict:
    return {"metadata": {"name": f"pk-node-{index}"}, "spec": {"podCIDR": f"10.244.{index}.0/24"},
            "status": {"addresses": [{"type": "InternalIP", "address": f"172.18.0.{index + 1}"},
                                     {"type": "Hostname", "address": f"pk-node-{index}"}]}}


SERVICES = [
    {"metadata": {"namespace": "default", "name": "web"},
     "spec": {"type": "NodePort", "clusterIP": "10.96.0.20", "externalTrafficPolicy": "Local",
              "ports": [{"name": "http", "port": 80, "protocol": "TCP", "nodePort": 30080}]}},
    {"metadata": {"namespace": "default", "name": "lb"},
     "spec": {"type": "LoadBalancer", "clusterIP": "10.96.0.22", "externalTrafficPolicy": "Local",
              "ports": [{"name": "http", "port": 80, "protocol": "TCP", "nodePort": 30081}]},
     "status": {"loadBalancer": {"ingress": [{"ip": "172.18.0.130", "ipMode": "VIP"}]}}},
    {"metadata": {"namespace": "default", "name": "empty"},
     "spec": {"type": "ClusterIP", "clusterIP": "10.96.0.21", "ports": [{"port": 80, "protocol": "TCP"}]}},
]
SLICES = [
    {"metadata": {"namespace": "default", "name": "web-1", "labels": {"kubernetes.io/service-name": "web"}},
     "addressType": "IPv4", "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
     "endpoints": [{"addresses": ["10.244.2.5"], "conditions": {"ready": True}, "nodeName": "pk-node-2"}]},
    {"metadata": {"namespace": "default", "name": "lb-1", "labels": {"kubernetes.io/service-name": "lb"}},
     "addressType": "IPv4", "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
     "endpoints": [{"addresses": ["10.244.2.6"], "conditions": {"ready": True}, "nodeName": "pk-node-2"}]},
]
PODS = {("default", "client"): {"metadata": {"name": "client", "namespace": "default"},
                                "spec": {"nodeName": "pk-node-1"}, "status": {"podIP": "10.244.1.9"}},
        ("default", "pending"): {"metadata": {"name": "pending", "namespace": "default"}, "spec": {}, "status": {}}}


class FakeClient:
    async def list(self, api_version, resource, namespace=None, label_selector="", field_selector=""):
        items = {"nodes": [node(1), node(2)], "services": SERVICES, "endpointslices": SLICES}[resource]
        return {"items": items, "metadata": {"resourceVersion": "1"}}

    async def get(self, api_version, resource, name, namespace=None, subresource=""):
        if (namespace, name) not in PODS:
            raise errors.APIError(404, "NotFound", f'pods "{name}" not found')
        return PODS[(namespace, name)]


async def trace(source: str, to: str, proto: str = "tcp") -> str:
    return await trace_in_cluster(FakeClient(), source=source, to=to, protocol=proto, cluster_name="pk")


async def test_pod_to_cluster_ip_uses_its_own_node():
    text = await trace("client", "10.96.0.20:80")
    assert text.splitlines()[0] == "on node pk-node-1, from pod default/client (10.244.1.9):"
    assert "DNAT to 10.244.2.5:8080" in text and "source kept" in text


async def test_host_enters_through_node_1_and_is_masqueraded():
    text = await trace("host", "10.96.0.20:80")
    assert text.splitlines()[0] == "on node pk-node-1, from the host:"
    assert "tcp 172.18.0.1 -> 10.96.0.20:80" in text and "masqueraded" in text


async def test_host_to_a_load_balancer_address_enters_the_announcing_node():
    text = await trace_in_cluster(FakeClient(), source="host", to="172.18.0.130:80", cluster_name="pk",
                                  announced={"172.18.0.130": ["pk-node-2"]})
    lines = text.splitlines()
    assert lines[0].startswith("172.18.0.130 is the load-balancer address of Service default/lb: node pk-node-2 "
                               "announces it")
    assert lines[1] == "on node pk-node-2, from the host:"
    assert "DNAT to 10.244.2.6:8080, source kept" in text
    silent = await trace_in_cluster(FakeClient(), source="host", to="172.18.0.130:80", cluster_name="pk")
    assert "no node announces it" in silent


async def test_local_nodeport_from_outside_the_node_without_endpoint_drops():
    text = await trace("host", "172.18.0.2:30080")
    assert "on node pk-node-1" in text and "DROP" in text
    text = await trace("host", "172.18.0.3:30080")
    assert "on node pk-node-2" in text and "DNAT to 10.244.2.5:8080, source kept" in text


async def test_pod_to_another_nodes_nodeport_is_traced_on_both_nodes():
    text = await trace("default/client", "172.18.0.3:30080")
    assert "on node pk-node-1, from pod default/client (10.244.1.9):" in text
    assert "on node pk-node-2, from pod default/client (10.244.1.9) via node pk-node-1:" in text
    assert text.rstrip().endswith("source kept, forwarded")


async def test_node_source_and_no_endpoints():
    text = await trace("node/pk-node-2", "10.96.0.21:80")
    assert "on node pk-node-2, from node pk-node-2:" in text
    assert "REJECT (tcp reset): the client sees connection refused at once" in text


@pytest.mark.parametrize("source,to,message", [
    ("client", "10.96.0.20", "--to must be IPv4ADDRESS:PORT"),
    ("node/nope", "10.96.0.20:80", 'node "nope" not found'),
    ("ghost", "10.96.0.20:80", 'pods "ghost" not found'),
    ("pending", "10.96.0.20:80", "is not running on a node yet"),
])
async def test_bad_input(source, to, message):
    with pytest.raises(TraceError, match=message):
        await trace(source, to)


async def test_in_cluster_client(tmp_path, monkeypatch):
    (tmp_path / "token").write_text("secret-token\n")
    (tmp_path / "ca.crt").write_text("")
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    with pytest.raises(RuntimeError, match="unable to load in-cluster configuration, KUBERNETES_SERVICE_HOST"):
        from_in_cluster(directory=str(tmp_path))
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "172.18.0.1")
    monkeypatch.setenv("KUBERNETES_SERVICE_PORT", "6443")
    made = []
    monkeypatch.setattr("pocketkube.core.client.HTTPTransport",
                        lambda *args, **kwargs: made.append((args, kwargs)) or args)
    client = from_in_cluster(field_manager="kube-proxy", directory=str(tmp_path))
    assert made == [(("https://172.18.0.1:6443", "secret-token", str(tmp_path / "ca.crt")),
                     {"token_file": str(tmp_path / "token")})]
    assert client.field_manager == "kube-proxy"
