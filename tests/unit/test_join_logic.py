"""Pure parts of joining machines: bootstrap tokens (as kube-apiserver's authenticator reads
them), the node client certificate check of the certificate controller, the overlay's plans,
and the node number a joining node takes."""

from __future__ import annotations

import base64
import ipaddress
import json

import pytest

from pocketkube.apiserver import authn
from pocketkube.cli import join
from pocketkube.controllers import certificates
from pocketkube.core import bootstraptoken
from pocketkube.node import network, overlay

TOKEN = "abcdef.0123456789abcdef"


def _secret(**changes) -> dict:
    secret = bootstraptoken.secret_for(TOKEN, ttl_seconds=3600, now=1_000_000)
    for key, value in changes.items():
        if value is None:
            secret["data"].pop(key, None)
        else:
            secret["data"][key] = base64.b64encode(value.encode()).decode()
    return secret


def test_token_shape_and_secret():
    token = bootstraptoken.generate()
    assert bootstraptoken.parse(token) is not None
    secret = _secret()
    assert secret["metadata"] == {"name": "bootstrap-token-abcdef", "namespace": "kube-system"}
    assert secret["type"] == "bootstrap.kubernetes.io/token"
    data = {k: base64.b64decode(v).decode() for k, v in secret["data"].items()}
    assert data["expiration"] == "1970-01-12T14:46:40Z"
    assert data["usage-bootstrap-authentication"] == "true"
    assert data["auth-extra-groups"] == "system:bootstrappers:kubeadm:default-node-token"
    for bad in ("abcdef.0123456789abcde", "ABCDEF.0123456789abcdef", "abcdef0123456789abcdef", ""):
        assert bootstraptoken.parse(bad) is None


def test_token_list_rows_as_kubeadm_prints_them():
    now = 1_800_000_000.0
    secret = bootstraptoken.secret_for("abcdef.0123456789abcdef", 7200, "for worker-2", now=now)
    assert bootstraptoken.list_row(secret, now + 1) == [
        "abcdef.0123456789abcdef", "1h", "2027-01-15T10:00:00Z", "authentication,signing", "for worker-2",
        bootstraptoken.DEFAULT_NODE_GROUP]
    forever = bootstraptoken.secret_for("zyxwvu.0123456789abcdef", 0, extra_groups=())
    assert bootstraptoken.list_row(forever)[1:] == ["<forever>", "<never>", "authentication,signing", "<none>",
                                                    "<none>"]
    assert bootstraptoken.list_row({"data": {}}) is None
    assert [bootstraptoken.short_human_duration(s) for s in (-5, -0.5, 59, 3599, 86399, 86400 * 3, 86400 * 400)] == \
        ["<invalid>", "0s", "59s", "59m", "23h", "3d", "1y"]


@pytest.mark.parametrize("changes,now,ok", [
    ({}, 1_000_000, True),
    ({}, 1_000_000 + 3601, False),  # expired
    ({"token-secret": "0123456789abcdeX"}, 1_000_000, False),
    ({"token-id": "zzzzzz"}, 1_000_000, False),
    ({"usage-bootstrap-authentication": None}, 1_000_000, False),
    ({"auth-extra-groups": "system:masters"}, 1_000_000, False),  # extra groups must be system:bootstrappers:*
    ({"expiration": None}, 10**12, True),  # no expiration: never expires
])
def test_authenticator_rules(changes, now, ok):
    found = bootstraptoken.user_of_secret(TOKEN, _secret(**changes), now=now)
    if ok:
        assert found == ("system:bootstrap:abcdef", ("system:bootstrappers",
                                                     "system:bootstrappers:kubeadm:default-node-token"))
    else:
        assert found is None


def test_authenticator_uses_the_secret_and_refuses_deleted_ones():
    secret = bootstraptoken.secret_for(TOKEN)
    a = authn.Authenticator("admin", None, lambda ns, name: None,
                            lambda ns, name: secret if (ns, name) == ("kube-system", "bootstrap-token-abcdef") else None)
    user = a.authenticate(f"Bearer {TOKEN}")
    assert user.name == "system:bootstrap:abcdef" and authn.AUTHENTICATED in user.groups
    assert a.authenticate("Bearer abcdef.0123456789abcdee") is None
    secret["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    assert a.authenticate(f"Bearer {TOKEN}") is None
    wrong_type = {**bootstraptoken.secret_for(TOKEN), "type": "Opaque"}
    assert bootstraptoken.user_of_secret(TOKEN, wrong_type) is None


def test_certificate_user():
    cert = {"subject": ((("organizationName", "system:nodes"),), (("commonName", "system:node:w1"),))}
    user = authn.certificate_user(cert)
    assert user.name == "system:node:w1" and user.groups == ("system:nodes", authn.AUTHENTICATED)
    assert authn.certificate_user(None) is None
    assert authn.certificate_user({"subject": ((("organizationName", "x"),),)}) is None


def _csr(cn: str, org: str = "system:nodes", usages=("digital signature", "client auth"),
         signer: str = certificates.KUBELET_CLIENT_SIGNER, san: bool = False) -> dict:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    builder = x509.CertificateSigningRequestBuilder().subject_name(x509.Name([
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, org), x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
    if san:
        builder = builder.add_extension(x509.SubjectAlternativeName([x509.DNSName("w1")]), critical=False)
    pem = builder.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)
    return {"spec": {"request": base64.b64encode(pem).decode(), "signerName": signer, "usages": list(usages)}}


def test_node_client_requests_are_recognised():
    assert certificates.node_client_request(_csr("system:node:w1")) is not None
    assert certificates.node_client_request(_csr("system:node:w1", org="system:masters")) is None
    assert certificates.node_client_request(_csr("admin")) is None
    assert certificates.node_client_request(_csr("system:node:w1", usages=("server auth",))) is None
    assert certificates.node_client_request(_csr("system:node:w1", signer="example.com/x")) is None
    assert certificates.node_client_request(_csr("system:node:w1", san=True)) is None


def test_signed_certificate_carries_the_request_subject(tmp_path):
    from cryptography import x509

    from pocketkube.apiserver import certs

    pki = certs.ensure_pki(str(tmp_path), ["127.0.0.1"])
    request = certificates.node_client_request(_csr("system:node:w1"))
    with open(pki.ca_cert, "rb") as f, open(pki.ca_key, "rb") as k:
        pem = certificates.sign(request, f.read(), k.read(), 3600)
    cert = x509.load_pem_x509_certificate(pem)
    assert cert.subject == request.subject
    with open(pki.ca_cert, "rb") as f:
        assert bootstraptoken.ca_cert_hash(f.read()).startswith("sha256:")


def _node(name: str, pod_cidr: str, ip: str, public_ip: str | None, vtep: str | None = None) -> dict:
    notes = overlay.annotations(public_ip, vtep or overlay.vtep_address(pod_cidr)) if public_ip else {}
    return {"metadata": {"name": name, "annotations": notes}, "spec": {"podCIDR": pod_cidr},
            "status": {"addresses": [{"type": "InternalIP", "address": ip}]}}


def test_overlay_plans():
    nodes = [_node("a1", "10.244.1.0/24", "172.18.0.2", "198.18.0.11"),
             _node("a2", "10.244.2.0/24", "172.18.0.3", "198.18.0.11", vtep="10.244.1.0"),
             _node("b", "10.244.3.0/24", "172.18.0.4", "198.18.0.12"),
             _node("new", "10.244.4.0/24", "172.18.0.5", None)]  # not annotated yet: left out
    peers = overlay.remotes(nodes, "198.18.0.12")
    assert [p.name for p in peers] == ["a1", "a2"]
    plan = overlay.machine_plan("pkx-c", peers)
    assert plan.routes["10.244.2.0/24"] == "10.244.2.0/24 via 10.244.1.0 dev pkx-c onlink proto 242"
    assert plan.routes["172.18.0.3/32"] == "172.18.0.3/32 via 10.244.1.0 dev pkx-c onlink proto 242"
    assert plan.neighbours == {"10.244.1.0": "02:01:0a:f4:01:00"}  # one VTEP per machine
    assert plan.fdb == {"02:01:0a:f4:01:00": "198.18.0.11"}
    routes = overlay.node_plan("172.18.0.1", 1450, peers)
    assert routes["10.244.1.0/24"] == "10.244.1.0/24 via 172.18.0.1 dev eth0 mtu 1450 proto 242"
    assert json.loads(nodes[0]["metadata"]["annotations"][overlay.BACKEND_DATA])["VNI"] == 1


def test_machine_table_sends_nodeports_to_the_first_node_and_leaves_vxlan_untracked():
    table = overlay.machine_table("c", "198.18.0.11", "172.18.0.2")
    assert "ip daddr 198.18.0.11 meta l4proto { tcp, udp } th dport 30000-32767 dnat to 172.18.0.2" in table
    assert "ct status dnat masquerade" in table
    assert table.count("udp dport 8472 notrack") == 2


def test_free_index_and_the_joined_machine_network():
    net = network.ClusterNetwork("c", network.MAX_NODES)
    nodes = [_node("c-node-1", "10.244.1.0/24", "172.18.0.2", None), _node("w", "10.244.3.0/24", "172.18.0.4", None)]
    assert join.free_index(nodes, "x", net) == 2
    assert join.free_index(nodes, "w", net) == 3  # a node joining again keeps its number
    joined = network.ClusterNetwork("w", 3, only=(3,))
    assert [n.index for n in joined.node_list()] == [3]
    batch = joined.host_batch()
    assert "route add 10.96.0.0/12 via 172.18.0.4 dev pk-w" in batch
    assert "netns add pk-w-n3" in batch and "pk-w-n1" not in batch
    assert ipaddress.ip_address(joined.node(3).ip) in joined.node_subnet


def test_forward_table():
    table = join.forward_table("w", "172.18.0.1", 6443, "198.18.0.11", 6443, ("172.18.0.0/24", "10.244.0.0/16"))
    assert "ip daddr 172.18.0.1 tcp dport 6443 dnat to 198.18.0.11:6443" in table
    assert "ip saddr { 172.18.0.0/24, 10.244.0.0/16 } ip daddr 198.18.0.11 tcp dport 6443 masquerade" in table


def test_csr_printed_as_kubectl_shows_it():
    import datetime

    from pocketkube.apiserver import printers

    csr = {"metadata": {"name": "node-csr-1", "creationTimestamp": "2026-01-01T00:00:00Z"},
           "spec": {"signerName": certificates.KUBELET_CLIENT_SIGNER, "username": "system:bootstrap:abcdef"},
           "status": {"conditions": [{"type": "Approved", "status": "True"}], "certificate": "eA=="}}
    now = datetime.datetime(2026, 1, 1, 0, 5, tzinfo=datetime.timezone.utc)
    assert printers._csr_cells(csr, now) == ["node-csr-1", "5m", certificates.KUBELET_CLIENT_SIGNER,
                                             "system:bootstrap:abcdef", "<none>", "Approved,Issued"]
    assert printers._csr_cells({"metadata": {"name": "x"}, "spec": {}}, now)[-1] == "Pending"
