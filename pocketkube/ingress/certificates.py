"""TLS certificates for the Ingress controller: checking a TLS Secret's pair (it parses, the key
belongs to the certificate, the certificate names the host and is in date) and making the
default certificate, self-signed, with the subject ingress-nginx's fake certificate has
(`Kubernetes Ingress Controller Fake Certificate`, SAN `ingress.local`), which answers hosts
without a usable Secret.
"""

from __future__ import annotations

import datetime as dt

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

FAKE_SUBJECT = "Kubernetes Ingress Controller Fake Certificate"
FAKE_ORGANIZATION = "Acme Co"


def _names(cert: x509.Certificate) -> list[str]:
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        names = san.get_values_for_type(x509.DNSName)
    except x509.ExtensionNotFound:
        names = []
    if not names:  # no SAN: the Common Name, as Go's legacy check did
        names = [a.value for a in cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)]
    return [str(n) for n in names]


def check_pair(cert_pem: bytes, key_pem: bytes, host: str) -> str:
    """"" when the pair can serve `host`, else why not."""
    from pocketkube.ingress.routes import host_covered

    try:
        cert = x509.load_pem_x509_certificate(cert_pem)
    except ValueError:
        return "tls.crt is not a PEM certificate"
    try:
        key = serialization.load_pem_private_key(key_pem, password=None)
    except (ValueError, TypeError):
        return "tls.key is not a PEM private key"
    public = serialization.PublicFormat.SubjectPublicKeyInfo
    if key.public_key().public_bytes(serialization.Encoding.DER, public) != \
            cert.public_key().public_bytes(serialization.Encoding.DER, public):
        return "tls.key does not belong to the certificate in tls.crt"
    now = dt.datetime.now(dt.timezone.utc)
    if cert.not_valid_after_utc < now:
        return f"the certificate expired on {cert.not_valid_after_utc:%Y-%m-%d}"
    names = _names(cert)
    if not any(host_covered(name, host) for name in names):
        return f"the certificate is for {', '.join(names) or 'no name'}, not {host}"
    return ""


def make_self_signed(common_name: str, names: list[str], days: int = 365) -> tuple[bytes, bytes]:
    """(certificate PEM, key PEM), self-signed, for `names`."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, FAKE_ORGANIZATION),
                         x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = dt.datetime.now(dt.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=days))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in names]), critical=False)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .sign(key, hashes.SHA256()))
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    return cert.public_bytes(serialization.Encoding.PEM), key_pem


def fake_certificate() -> tuple[bytes, bytes]:
    """The default certificate, as ingress-nginx makes its fake one at start."""
    return make_self_signed(FAKE_SUBJECT, ["ingress.local"])
