"""certificates.k8s.io/v1 CertificateSigningRequest: a PKCS#10 request, who made it, and the
signer's answer (status.certificate), as pkg/registry/certificates keeps it.

On create the API server fills `spec.username`, `spec.groups`, `spec.uid` from the requesting
user (`set_requestor`): a requestor cannot claim to be another. The spec is immutable; status
(conditions, certificate) is written through /status (the in-server approver and signer,
controllers/certificates.py); the Approved/Denied conditions also through /approval (what
`kubectl certificate approve|deny` writes), which changes nothing but the conditions and asks
the `approve` verb on the request's signer (apiserver/handlers.py, as upstream's
CertificateApproval admission). Conditions, as pkg/apis/certificates/validation: a type and a
status each, Approved/Denied/Failed only "True", Approved and Denied never together, no type
twice, and no update removes an Approved, Denied or Failed condition.
"""

from __future__ import annotations

import base64

from pocketkube.apiserver.kinds.base import KindInfo, Strategy
from pocketkube.apiserver import validation as v
from pocketkube.core.errors import FieldError, duplicate, forbidden, invalid_value, not_supported, required
from pocketkube.core.objects import deep_copy, rfc3339

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


FINAL_CONDITIONS = ("Approved", "Denied", "Failed")  # only "True", and never removed


def validate_conditions(obj: dict) -> list[FieldError]:
    errs: list[FieldError] = []
    seen: set[str] = set()
    approved = denied = False
    for i, c in enumerate((obj.get("status") or {}).get("conditions") or []):
        path, kind, status = f"status.conditions[{i}]", c.get("type") or "", c.get("status") or ""
        if not kind:
            errs.append(required(f"{path}.type"))
        allowed = ["True"] if kind in FINAL_CONDITIONS else ["False", "True", "Unknown"]
        if not status:
            errs.append(required(f"{path}.status"))
        elif status not in allowed:
            errs.append(not_supported(f"{path}.status", status, allowed))
        if kind == "Approved":
            approved = True
            if denied:
                errs.append(invalid_value("status.conditions", kind, "Approved and Denied conditions are mutually exclusive"))
        elif kind == "Denied":
            denied = True
            if approved:
                errs.append(invalid_value("status.conditions", kind, "Approved and Denied conditions are mutually exclusive"))
        if kind in seen:
            errs.append(duplicate(f"{path}.type", kind))
        seen.add(kind)
    return errs


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
        return errs + validate_conditions(obj)

    def validate_update(self, obj: dict, old: dict) -> list[FieldError]:
        errs = v.validate_object_meta_update(obj.get("metadata") or {}, old.get("metadata") or {})
        errs += v.validate_immutable_field(obj.get("spec"), old.get("spec"), "spec") + validate_conditions(obj)
        for kind in FINAL_CONDITIONS:
            if _count(obj, kind) < _count(old, kind):
                errs.append(forbidden("status.conditions", f'updates may not remove a condition of type "{kind}"'))
        return errs

    def prepare_for_approval_update(self, obj: dict, old: dict) -> None:
        """A write to /approval changes the conditions only (their times filled in when left out:
        lastUpdateTime now, lastTransitionTime the old condition's of that type and status, or now)."""
        conditions = (obj.get("status") or {}).get("conditions") or []
        for key in list(obj):
            if key not in ("apiVersion", "kind", "metadata"):
                del obj[key]
        for key, value in old.items():
            if key not in ("apiVersion", "kind", "metadata"):
                obj[key] = deep_copy(value)
        before = {(c.get("type"), c.get("status")): c for c in (old.get("status") or {}).get("conditions") or []}
        now = rfc3339()
        for c in conditions:
            c.setdefault("lastUpdateTime", now)
            if not c.get("lastTransitionTime"):
                c["lastTransitionTime"] = (before.get((c.get("type"), c.get("status"))) or {}).get(
                    "lastTransitionTime") or now
        status = obj.setdefault("status", {})
        if conditions:
            status["conditions"] = conditions
        else:
            status.pop("conditions", None)


def _count(obj: dict, kind: str) -> int:
    return sum(1 for c in (obj.get("status") or {}).get("conditions") or [] if c.get("type") == kind)


INFO = KindInfo(
    group="certificates.k8s.io", version="v1", kind="CertificateSigningRequest", resource="certificatesigningrequests",
    singular="certificatesigningrequest", namespaced=False, strategy=CSRStrategy(), short_names=("csr",),
    subresources=("status", "approval"),
)
