"""The certificate controller: approves node client certificate requests and signs approved
ones with the cluster CA, as kube-controller-manager's csrapproving and csrsigning do for the
signer `kubernetes.io/kube-apiserver-client-kubelet` (what a joining node's TLS bootstrap asks).

Approval (pkg/controller/certificates/approver): a request for that signer whose subject is
`CN=system:node:<name>, O=system:nodes`, with no SANs and only the usages digital signature,
key encipherment and client auth, is approved (condition Approved, reason AutoApproved) when a
SubjectAccessReview says its requestor may create `certificatesigningrequests/nodeclient`
(kubeadm binds that to the joining nodes' bootstrap group), or, when the requestor is that node
itself, `certificatesigningrequests/selfnodeclient`. Anything else waits for someone else.

Signing: an approved request of that signer without a certificate gets one signed by the
cluster CA for `spec.expirationSeconds` (default one year, --cluster-signing-duration).
"""

from __future__ import annotations

import base64
import datetime

from pocketkube.controllers.base import Controller
from pocketkube.core import errors
from pocketkube.core.objects import rfc3339

CERTS = "certificates.k8s.io/v1"
KUBELET_CLIENT_SIGNER = "kubernetes.io/kube-apiserver-client-kubelet"
NODE_PREFIX = "system:node:"
NODES_GROUP = "system:nodes"
ALLOWED_USAGES = {"digital signature", "key encipherment", "client auth"}
DEFAULT_SECONDS = 365 * 24 * 3600
MIN_SECONDS = 600


def _condition(csr: dict, type_: str) -> bool:
    return any(c.get("type") == type_ and c.get("status", "True") == "True"
               for c in (csr.get("status") or {}).get("conditions") or [])


def node_client_request(csr: dict):
    """The parsed x509 request if `csr` asks for a node client certificate, else None."""
    from cryptography import x509
    from cryptography.x509.oid import NameOID

    spec = csr.get("spec") or {}
    if spec.get("signerName") != KUBELET_CLIENT_SIGNER:
        return None
    try:
        request = x509.load_pem_x509_csr(base64.b64decode(spec.get("request") or ""))
    except ValueError:
        return None
    orgs = [a.value for a in request.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)]
    names = [a.value for a in request.subject.get_attributes_for_oid(NameOID.COMMON_NAME)]
    if orgs != [NODES_GROUP] or len(names) != 1 or not names[0].startswith(NODE_PREFIX):
        return None
    try:
        request.extensions.get_extension_for_class(x509.SubjectAlternativeName)
        return None  # a client certificate names no hosts
    except x509.ExtensionNotFound:
        pass
    usages = set(spec.get("usages") or [])
    if "client auth" not in usages or not usages <= ALLOWED_USAGES:
        return None
    return request


def sign(request, ca_cert_pem: bytes, ca_key_pem: bytes, seconds: int) -> bytes:
    """A client certificate for `request`'s subject and key, signed by the CA (PEM)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.x509.oid import ExtendedKeyUsageOID

    ca_cert = x509.load_pem_x509_certificate(ca_cert_pem)
    ca_key = serialization.load_pem_private_key(ca_key_pem, None)
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(request.subject).issuer_name(ca_cert.subject)
            .public_key(request.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(min(now + datetime.timedelta(seconds=seconds), ca_cert.not_valid_after_utc))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(True, True, False, False, False, False, False, False, False), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
            .sign(ca_key, hashes.SHA256()))
    return cert.public_bytes(serialization.Encoding.PEM)


class CertificateController(Controller):
    name = "certificate-controller"

    def setup(self) -> None:
        self.csrs = self.informers.informer(CERTS, "certificatesigningrequests")
        self.csrs.add_handlers(self.enqueue, lambda old, new: self.enqueue(new))

    async def sync(self, key: str) -> None:
        csr = self.csrs.get(key)
        if csr is None or _condition(csr, "Denied") or _condition(csr, "Failed"):
            return
        request = node_client_request(csr)
        if request is None:
            return
        if not _condition(csr, "Approved"):
            if await self._may_request(csr, request):
                conditions = list((csr.get("status") or {}).get("conditions") or [])
                await self._write_status(csr, {"conditions": [*conditions, {
                    "type": "Approved", "status": "True", "reason": "AutoApproved",
                    "message": "Auto approving kubelet client certificate after SubjectAccessReview.",
                    "lastUpdateTime": rfc3339(), "lastTransitionTime": rfc3339()}]})
            return
        if (csr.get("status") or {}).get("certificate") or not self.settings.root_ca or not self.settings.ca_key:
            return
        seconds = max(MIN_SECONDS, int((csr.get("spec") or {}).get("expirationSeconds") or DEFAULT_SECONDS))
        pem = sign(request, self.settings.root_ca, self.settings.ca_key, seconds)
        await self._write_status(csr, {**(csr.get("status") or {}), "certificate": base64.b64encode(pem).decode()})

    async def _may_request(self, csr: dict, request) -> bool:
        from cryptography.x509.oid import NameOID

        spec = csr.get("spec") or {}
        cn = request.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value
        subresource = "selfnodeclient" if spec.get("username") == cn else "nodeclient"
        review = {"apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview",
                  "spec": {"user": spec.get("username", ""), "groups": spec.get("groups") or [],
                           "uid": spec.get("uid", ""), "extra": spec.get("extra") or {},
                           "resourceAttributes": {"group": "certificates.k8s.io", "resource": "certificatesigningrequests",
                                                  "subresource": subresource, "verb": "create"}}}
        answer = await self.client.create("authorization.k8s.io/v1", "subjectaccessreviews", review)
        return bool((answer.get("status") or {}).get("allowed"))

    async def _write_status(self, csr: dict, status: dict) -> None:
        try:
            await self.client.update(CERTS, "certificatesigningrequests", {**csr, "status": status},
                                     subresource="status")
        except errors.APIError as exc:
            if exc.code not in (404, 409):
                raise
            self.enqueue(csr)
