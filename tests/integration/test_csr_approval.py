"""`kubectl certificate approve|deny` on CertificateSigningRequests (the /approval subresource),
with the real kubectl: the conditions kubectl writes, Approved and Denied never together, and the
`approve` verb on the request's signer that the approver needs (upstream's CertificateApproval
admission), refused with upstream's message to a user without it."""

from __future__ import annotations

import base64
import json
import uuid

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

SIGNER = "kubernetes.io/kube-apiserver-client"


def _request(user: str) -> str:
    key = ec.generate_private_key(ec.SECP256R1())
    csr = x509.CertificateSigningRequestBuilder().subject_name(x509.Name([
        x509.NameAttribute(NameOID.COMMON_NAME, user), x509.NameAttribute(NameOID.ORGANIZATION_NAME, "dev")])
    ).sign(key, hashes.SHA256())
    return base64.b64encode(csr.public_bytes(serialization.Encoding.PEM)).decode()


def _create(server, name: str) -> None:
    server.kubectl("apply", "-f", "-", input=json.dumps({
        "apiVersion": "certificates.k8s.io/v1", "kind": "CertificateSigningRequest", "metadata": {"name": name},
        "spec": {"request": _request(name), "signerName": SIGNER, "usages": ["client auth"],
                 "expirationSeconds": 86400}}))


def _conditions(server, name: str) -> list[dict]:
    return (server.kubectl_json("get", "csr", name).get("status") or {}).get("conditions", [])


def test_approve_and_deny_write_kubectls_conditions(server):
    jane, bob = f"jane-{uuid.uuid4().hex[:6]}", f"bob-{uuid.uuid4().hex[:6]}"
    _create(server, jane)
    _create(server, bob)
    cp = server.kubectl("certificate", "approve", jane)
    assert cp.stdout.strip() == f"certificatesigningrequest.certificates.k8s.io/{jane} approved"
    [approved] = _conditions(server, jane)
    assert (approved["type"], approved["status"], approved["reason"], approved["message"]) == \
        ("Approved", "True", "KubectlApprove", "This CSR was approved by kubectl certificate approve.")
    assert approved["lastUpdateTime"] and approved["lastTransitionTime"]
    assert server.kubectl_json("get", "csr", jane)["spec"]["signerName"] == SIGNER  # the spec untouched
    cp = server.kubectl("certificate", "deny", bob)
    assert cp.stdout.strip() == f"certificatesigningrequest.certificates.k8s.io/{bob} denied"
    assert [(c["type"], c["reason"]) for c in _conditions(server, bob)] == [("Denied", "KubectlDeny")]
    assert server.kubectl("get", "csr", bob).stdout.split("\n")[1].split()[-1] == "Denied"
    # Approving again changes nothing; approving a denied one kubectl refuses itself, and the
    # server too when asked (the two are mutually exclusive; a final condition stays).
    server.kubectl("certificate", "approve", jane)
    assert _conditions(server, jane) == [approved]
    cp = server.kubectl("certificate", "approve", bob, "--force", check=False)
    assert cp.returncode != 0 and f'certificate signing request "{bob}" is already Denied' in cp.stderr, cp.stderr
    path = f"/apis/certificates.k8s.io/v1/certificatesigningrequests/{bob}/approval"
    csr = server.kubectl_json("get", "csr", bob)
    csr["status"]["conditions"].append({"type": "Approved", "status": "True", "reason": "Mine"})
    cp = server.kubectl("replace", "--raw", path, "-f", "-", input=json.dumps(csr), check=False)
    assert cp.returncode != 0
    assert "Approved and Denied conditions are mutually exclusive" in cp.stderr, cp.stderr
    csr["status"]["conditions"] = []
    cp = server.kubectl("replace", "--raw", path, "-f", "-", input=json.dumps(csr), check=False)
    assert 'status.conditions: Forbidden: updates may not remove a condition of type "Denied"' in cp.stderr, cp.stderr
    assert [c["type"] for c in _conditions(server, bob)] == ["Denied"]


def test_approval_needs_the_approve_verb_on_the_signer(server, ns):
    name = f"carol-{uuid.uuid4().hex[:6]}"
    _create(server, name)
    server.kubectl("create", "serviceaccount", "approver", "-n", ns)
    role = f"csr-approver-{ns}"
    server.kubectl("create", "clusterrole", role, "--verb=get,list,update",
                   "--resource=certificatesigningrequests,certificatesigningrequests/approval")
    server.kubectl("create", "clusterrolebinding", role, f"--clusterrole={role}", f"--serviceaccount={ns}:approver")
    token = server.kubectl("create", "token", "approver", "-n", ns).stdout.strip()
    cp = server.kubectl("certificate", "approve", name, "--token", token, check=False)
    assert cp.returncode != 0
    assert (f'certificatesigningrequests.certificates.k8s.io "{name}" is forbidden: user not permitted to approve '
            f'requests with signerName "{SIGNER}"') in cp.stderr, cp.stderr
    assert _conditions(server, name) == []
    # `approve` on the signer's domain with /*, as upstream's wildcard
    server.kubectl("apply", "-f", "-", input=json.dumps({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "metadata": {"name": role},
        "rules": [{"apiGroups": ["certificates.k8s.io"], "verbs": ["get", "list", "update"],
                   "resources": ["certificatesigningrequests", "certificatesigningrequests/approval"]},
                  {"apiGroups": ["certificates.k8s.io"], "verbs": ["approve"], "resources": ["signers"],
                   "resourceNames": ["kubernetes.io/*"]}]}))
    server.kubectl("certificate", "approve", name, "--token", token)
    assert [c["type"] for c in _conditions(server, name)] == ["Approved"]
    server.kubectl("delete", "clusterrolebinding,clusterrole", role)
