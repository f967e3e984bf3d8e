"""The cluster's certificate authority and the API server's serving certificate.

Generated once into DATA_DIR/pki and reused on restart, so kubeconfigs stay valid.
ECDSA P-256 keys: fast to make, accepted by kubectl and the Python client.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from pocketkube.core.linux import write_atomic


@dataclass(frozen=True)
class PKI:
    ca_cert: str  # paths
    ca_key: str
    server_cert: str
    server_key: str


def _write(path: str, data: bytes, private: bool = False) -> None:
    write_atomic(path, data, 0o600 if private else 0o644)


def _key_pem(key) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def new_ca(common_name: str, days: int = 3650):
    """A self-signed CA: (certificate, key)."""
    now = dt.datetime.now(dt.timezone.utc)
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=days))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
            .sign(key, hashes.SHA256()))
    return cert, key


def serving_cert(ca_cert, ca_key, hosts: list[str], common_name: str, days: int = 3650):
    """A serving certificate for `hosts` (IPs or DNS names) signed by the CA: (certificate, key)."""
    now = dt.datetime.now(dt.timezone.utc)
    key = ec.generate_private_key(ec.SECP256R1())
    sans: list[x509.GeneralName] = []
    for h in hosts:
        try:
            sans.append(x509.IPAddress(ipaddress.ip_address(h)))
        except ValueError:
            sans.append(x509.DNSName(h))
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
            .issuer_name(ca_cert.subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=days))
            .add_extension(x509.SubjectAlternativeName(sans), critical=False)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .sign(ca_key, hashes.SHA256()))
    return cert, key


def pem(cert=None, key=None) -> bytes:
    """A certificate's or a private key's PEM."""
    return cert.public_bytes(serialization.Encoding.PEM) if cert is not None else _key_pem(key)


def ensure_pki(directory: str, hosts: list[str]) -> PKI:
    """Make (or reuse) the CA and a serving certificate for `hosts` (IPs or DNS names).
    A serving certificate that lacks one of the hosts is made again."""
    os.makedirs(directory, exist_ok=True)
    pki = PKI(*(os.path.join(directory, n) for n in ("ca.crt", "ca.key", "apiserver.crt", "apiserver.key")))
    if os.path.exists(pki.ca_cert) and os.path.exists(pki.ca_key):
        with open(pki.ca_cert, "rb") as f:
            ca_cert = x509.load_pem_x509_certificate(f.read())
        with open(pki.ca_key, "rb") as f:
            ca_key = serialization.load_pem_private_key(f.read(), None)
    else:
        ca_cert, ca_key = new_ca("pocketkube-ca")
        _write(pki.ca_key, _key_pem(ca_key), private=True)
        _write(pki.ca_cert, pem(ca_cert))
    if _serving_cert_covers(pki.server_cert, hosts):
        return pki
    cert, key = serving_cert(ca_cert, ca_key, hosts, "kube-apiserver")
    _write(pki.server_key, _key_pem(key), private=True)
    _write(pki.server_cert, pem(cert))
    return pki


def _serving_cert_covers(path: str, hosts: list[str]) -> bool:
    if not os.path.exists(path):
        return False
    with open(path, "rb") as f:
        cert = x509.load_pem_x509_certificate(f.read())
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return False
    have = {str(v) for v in san.get_values_for_type(x509.IPAddress)} | set(san.get_values_for_type(x509.DNSName))
    return all(h in have for h in hosts)
