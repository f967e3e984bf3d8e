"""The built-in add-ons are ordinary manifests: they apply to a real API server, twice
without harm, and look as kubeadm's do (kube-dns at 10.96.0.10, kube-proxy a hostNetwork
DaemonSet)."""

from __future__ import annotations

import asyncio

from pocketkube import addons
from pocketkube.core.client import from_kubeconfig

PARAMS = {"api_host": "172.18.0.1", "api_port": "6443", "cluster_name": "t", "proxy_mode": "nftables",
          "cluster_cidr": "10.244.0.0/16", "service_cidr": "10.96.0.0/12", "cluster_dns": "10.96.0.10"}


def test_addons_apply_twice_and_look_like_kubeadms(server):
    async def apply_all():
        client = from_kubeconfig(server.kubeconfig)
        try:
            for name in addons.ADDONS:
                await addons.apply(client, addons.render(name, **PARAMS))
        finally:
            await client.close()

    asyncio.run(apply_all())
    asyncio.run(apply_all())
    svc = server.kubectl_json("get", "svc", "kube-dns", "-n", "kube-system")
    assert svc["spec"]["clusterIP"] == "10.96.0.10"
    assert [(p["name"], p["port"], p["protocol"]) for p in svc["spec"]["ports"]] == [
        ("dns", 53, "UDP"), ("dns-tcp", 53, "TCP"), ("metrics", 9153, "TCP")]
    ds = server.kubectl_json("get", "ds", "kube-proxy", "-n", "kube-system")
    pod = ds["spec"]["template"]["spec"]
    assert pod["hostNetwork"] is True
    assert "--node-name=$(NODE_NAME)" in pod["containers"][0]["args"]
    env = {e["name"]: e.get("value") for e in pod["containers"][0]["env"]}
    assert env["KUBERNETES_SERVICE_HOST"] == "172.18.0.1" and env["KUBERNETES_SERVICE_PORT"] == "6443"
    deploy = server.kubectl_json("get", "deploy", "coredns", "-n", "kube-system")
    assert deploy["metadata"]["labels"] == {"k8s-app": "kube-dns"}
    assert deploy["metadata"]["generation"] == 1  # the second apply changed nothing
