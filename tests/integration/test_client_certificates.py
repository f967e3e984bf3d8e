"""Client certificates at the API server, with the real kubectl: one the cluster CA signed
authenticates (its CN the user), as with kube-apiserver's --client-ca-file; one of any other
CA is refused in the TLS handshake, even of a CA the machine trusts (here a CA named by
SSL_CERT_FILE in the server's environment: the machine's CAs never join the cluster's, however
the process is told to read them, core/tls.py)."""

from __future__ import annotations

import json
import os

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from pocketkube.apiserver import certs
from tests.conftest import start_server


@pytest.fixture
def server_trusting_another_ca(tmp_path, monkeypatch):
    """A server whose machine-wide trusted CAs are one CA of the test's; (server, that CA)."""
    other_ca = certs.new_ca("a CA this machine trusts")
    bundle = tmp_path / "machine-cas.pem"
    bundle.write_bytes(certs.pem(other_ca[0]))
    monkeypatch.setenv("SSL_CERT_FILE", str(bundle))
    data_dir = tmp_path / "server"
    data_dir.mkdir()
    srv = start_server(str(data_dir))
    try:
        yield srv, other_ca
    finally:
        srv.stop()


def kubeconfig_with_certificate(srv, directory, name: str, ca) -> str:
    """A kubeconfig whose user is a client certificate for `name` signed by `ca` (cert, key)."""
    cert, key = certs.client_cert(*ca, name)
    paths = {kind: os.path.join(directory, f"{name}.{kind}") for kind in ("crt", "key", "kubeconfig")}
    with open(paths["crt"], "wb") as f:
        f.write(certs.pem(cert))
    with open(paths["key"], "wb") as f:
        f.write(certs.pem(key=key))
    config = {"apiVersion": "v1", "kind": "Config", "current-context": "c",
              "clusters": [{"name": "c", "cluster": {"server": srv.url, "certificate-authority": srv.ca}}],
              "users": [{"name": name, "user": {"client-certificate": paths["crt"], "client-key": paths["key"]}}],
              "contexts": [{"name": "c", "context": {"cluster": "c", "user": name}}]}
    with open(paths["kubeconfig"], "w") as f:
        json.dump(config, f)
    return paths["kubeconfig"]


def cluster_ca(srv):
    with open(srv.ca, "rb") as f:
        cert = x509.load_pem_x509_certificate(f.read())
    with open(os.path.join(srv.data_dir, "pki", "ca.key"), "rb") as f:
        key = serialization.load_pem_private_key(f.read(), None)
    return cert, key


def test_only_the_cluster_ca_signs_client_certificates(server_trusting_another_ca, tmp_path):
    srv, other_ca = server_trusting_another_ca
    jane = kubeconfig_with_certificate(srv, tmp_path, "jane", cluster_ca(srv))
    who = json.loads(srv.kubectl("--kubeconfig", jane, "auth", "whoami", "-o", "json").stdout)
    assert who["status"]["userInfo"] == {"username": "jane", "groups": ["system:authenticated"]}

    mallory = kubeconfig_with_certificate(srv, tmp_path, "system:admin", other_ca)
    cp = srv.kubectl("--kubeconfig", mallory, "auth", "whoami", check=False)
    # refused in the handshake (kube-apiserver sends a bad_certificate alert, kubectl then says
    # "remote error: tls: bad certificate"; this server's TLS closes the connection: "EOF")
    assert cp.returncode == 1
    assert cp.stderr.startswith("Unable to connect to the server: "), cp.stderr
