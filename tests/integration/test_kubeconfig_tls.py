"""A kubeconfig's TLS settings as client-go reads them, by our client (from_kubeconfig, which
the agent and the add-on components use) and by the real kubectl beside it: the cluster's CA
verifies the server; insecure-skip-tls-verify without a CA verifies nothing; neither fails
verification (the cluster CA is no CA the machine trusts); both are refused before any request."""

from __future__ import annotations

import asyncio
import json
import os
import ssl
import subprocess

import pytest

from pocketkube.core.client import from_kubeconfig

BOTH = "specifying a root certificates file with the insecure flag is not allowed"


def kubeconfig(srv, directory, name: str, **cluster) -> str:
    config = {"apiVersion": "v1", "kind": "Config", "current-context": "c",
              "clusters": [{"name": "c", "cluster": {"server": srv.url, **cluster}}],
              "users": [{"name": "u", "user": {"token": srv.token}}],
              "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u"}}]}
    path = os.path.join(directory, name)
    with open(path, "w") as f:
        json.dump(config, f)
    return path


def namespace_via_client(path: str) -> str:
    async def get() -> str:
        client = from_kubeconfig(path)
        try:
            return (await client.get("v1", "namespaces", "default"))["metadata"]["name"]
        finally:
            await client.close()
    return asyncio.run(get())


def kubectl(path: str) -> subprocess.CompletedProcess:
    return subprocess.run(["kubectl", "--kubeconfig", path, "get", "namespace", "default", "-o", "name"],
                          capture_output=True, text=True, timeout=60)


def test_the_cluster_ca_verifies_the_server(server, tmp_path):
    path = kubeconfig(server, tmp_path, "ca", **{"certificate-authority": server.ca})
    assert namespace_via_client(path) == "default"
    assert kubectl(path).stdout.strip() == "namespace/default"


def test_insecure_skip_tls_verify_without_a_ca_verifies_nothing(server, tmp_path):
    path = kubeconfig(server, tmp_path, "insecure", **{"insecure-skip-tls-verify": True})
    assert namespace_via_client(path) == "default"
    assert kubectl(path).stdout.strip() == "namespace/default"


def test_without_either_the_server_is_not_trusted(server, tmp_path):
    path = kubeconfig(server, tmp_path, "neither")
    with pytest.raises(Exception) as raised:  # aiohttp's ClientConnectorCertificateError
        namespace_via_client(path)
    assert isinstance(getattr(raised.value, "certificate_error", None), ssl.SSLCertVerificationError), raised.value
    cp = kubectl(path)
    assert cp.returncode == 1 and "certificate signed by unknown authority" in cp.stderr


def test_a_ca_and_insecure_together_are_refused(server, tmp_path):
    path = kubeconfig(server, tmp_path, "both", **{"certificate-authority": server.ca, "insecure-skip-tls-verify": True})
    with pytest.raises(RuntimeError, match=BOTH):
        from_kubeconfig(path)
    cp = kubectl(path)
    assert cp.returncode == 1 and BOTH in cp.stderr
