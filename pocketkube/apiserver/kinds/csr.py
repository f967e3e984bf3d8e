"""certificates.k8s.io/v1 CertificateSigningRequest: a PKCS#10 request, who made it, and the
signer's answer (status.certificate), as pkg/registry/certificates keeps it.

On create the API server fills `spec.username`, `spec.groups`, `spec.uid` from the requesting
user (`set_requestor`): a requestor cannot claim to be another. The spec is immutable; status
(conditions, certificate) is written through /status (the in-server approver and signer,
controllers/csrsigning.py). Served subresources: status (not yet `approval`: requests are
approved by the controller's auto-approval of node client certificates only).
"""

from __future__ import annotations

import base64

from pocketkube.apiserver.kinds.base import KindInfo, Strategy
from pocketkube.apiserver import validation as v
from pocketkube.core.errors import FieldError, invalid_value, required

KNOWN_USAGES = ("signing", "digital signature", "content commitment", "key encipherment", "key agreement",
                "data encipherment", "cert sign", "crl sign", "encipher only", "decipher only", "any",
                "server auth", "client auth", "code signing", "email protection", "s/mime", "ipsec end system",
                "ipsec tunnel", "ipsec user", "timestamping", "ocsp signing", "microsoft sgc", "netscape sgc")


def set_requestor(obj: dict, user) -> None:
    """spec.username / groups / uid / extra from the authenticated user (never from the body)."""
    spec = obj.setdefault("spec", {})
    spec["username"] = user.name
    spec["groups"] = list(user.groups)
    spec.pop("uid", None)
    spec.pop("extra", None)
    if user.uid:
        spec["uid"] = user.uid
    if user.extra:
        spec["extra"] = {k: list(vals) for k, vals in user.extra.items()}


class CSRStrategy(Strategy):
    has_status_subresource = True
    tracks_generation = False

    def validate(self, obj: dict) -> list[FieldError]:
        errs = v.validate_object_meta(obj.get("metadata") or {}, False, v.name_is_dns_subdomain)
        spec = obj.get("spec") or {}
        request = spec.get("request")
        if not request:
            errs.append(required("spec.request"))
        else:
            try:
                from cryptography import x509

                x509.load_pem_x509_csr(base64.b64decode(request))
            except (ValueError, TypeError):
                errs.append(invalid_value("spec.request", "<binary>", "PEM block type must be CERTIFICATE REQUEST"))
        if not spec.get("signerName"):
            errs.append(required("spec.signerName"))
        if not spec.get("usages"):
            errs.append(required("spec.usages"))
        for i, usage in enumerate(spec.get("usages") or []):
            if usage not in KNOWN_USAGES:
                errs.append(invalid_value(f"spec.usages[{i}]", usage, "unsupported usage"))
        return errs

    def validate_update(self, obj: dict, old: dict) -> list[FieldError]:
        errs = v.validate_object_meta_update(obj.get("metadata") or {}, old.get("metadata") or {})
        return errs + v.validate_immutable_field(obj.get("spec"), old.get("spec"), "spec")


INFO = KindInfo(
    group="certificates.k8s.io", version="v1", kind="CertificateSigningRequest", resource="certificatesigningrequests",
    singular="certificatesigningrequest", namespaced=False, strategy=CSRStrategy(), short_names=("csr",),
    subresources=("status",),
)
