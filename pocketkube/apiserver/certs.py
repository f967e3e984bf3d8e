"""The cluster's certificate authority and the API server's serving certificate; for an etcd
datastore, etcd's own CA, its serving certificate and the API server's client certificate
(kubeadm's layout: pki/etcd/ca.crt, pki/etcd/server.crt, pki/apiserver-etcd-client.crt).

Generated once into DATA_DIR/pki and reused on restart, so kubeconfigs stay valid.
ECDSA P-256 keys: fast to make, accepted by kubectl, the Python client and etcd.
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
    return _leaf(ca_cert, ca_key, common_name, hosts, [ExtendedKeyUsageOID.SERVER_AUTH], days)


def client_cert(ca_cert, ca_key, common_name: str, days: int = 3650):
    """A client certificate (CN = the user) signed by the CA: (certificate, key)."""
    return _leaf(ca_cert, ca_key, common_name, [], [ExtendedKeyUsageOID.CLIENT_AUTH], days)


def _leaf(ca_cert, ca_key, common_name: str, hosts: list[str], usages: list, days: int):
    now = dt.datetime.now(dt.timezone.utc)
    key = ec.generate_private_key(ec.SECP256R1())
    sans: list[x509.GeneralName] = []
    for h in hosts:
        try:
            sans.append(x509.IPAddress(ipaddress.ip_address(h)))
        except ValueError:
            sans.append(x509.DNSName(h))
    builder = (x509.CertificateBuilder()
               .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
               .issuer_name(ca_cert.subject).public_key(key.public_key())
               .serial_number(x509.random_serial_number())
               .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=days))
               .add_extension(x509.ExtendedKeyUsage(usages), critical=False))
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    return builder.sign(ca_key, hashes.SHA256()), key


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


@dataclass(frozen=True)
class EtcdPKI:
    ca_cert: str  # paths
    server_cert: str
    server_key: str
    client_cert: str  # the API server's, to etcd
    client_key: str
    peer_cert: str = ""  # between members (pki/etcd/peer.*), server and client auth as kubeadm's
    peer_key: str = ""


def make_etcd_pki(pki_dir: str, hosts: list[str]) -> EtcdPKI:
    """etcd's CA (pki/etcd/ca.*), etcd's serving certificate for `hosts` (pki/etcd/server.*),
    the members' peer certificate (pki/etcd/peer.*) and the API server's client certificate
    (pki/apiserver-etcd-client.*), made anew."""
    etcd_dir = os.path.join(pki_dir, "etcd")
    os.makedirs(etcd_dir, exist_ok=True)
    files = EtcdPKI(os.path.join(etcd_dir, "ca.crt"), os.path.join(etcd_dir, "server.crt"),
                    os.path.join(etcd_dir, "server.key"), os.path.join(pki_dir, "apiserver-etcd-client.crt"),
                    os.path.join(pki_dir, "apiserver-etcd-client.key"),
                    os.path.join(etcd_dir, "peer.crt"), os.path.join(etcd_dir, "peer.key"))
    ca_cert, ca_key = new_ca("etcd-ca")
    _write(os.path.join(etcd_dir, "ca.key"), _key_pem(ca_key), private=True)
    _write(files.ca_cert, pem(ca_cert))
    # Server and client auth, as kubeadm's: etcd's JSON gateway dials etcd itself with this certificate.
    cert, key = _leaf(ca_cert, ca_key, "etcd-server", hosts,
                      [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH], 3650)
    _write(files.server_key, _key_pem(key), private=True)
    _write(files.server_cert, pem(cert))
    cert, key = _leaf(ca_cert, ca_key, "etcd-peer", hosts,
                      [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH], 3650)
    _write(files.peer_key, _key_pem(key), private=True)
    _write(files.peer_cert, pem(cert))
    cert, key = client_cert(ca_cert, ca_key, "kube-apiserver-etcd-client")
    _write(files.client_key, _key_pem(key), private=True)
    _write(files.client_cert, pem(cert))
    return files
