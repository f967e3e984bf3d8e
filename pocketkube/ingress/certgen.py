"""What the kube-webhook-certgen image does for ingress-nginx's admission webhook (the two Jobs
of its install manifests), with the same subcommands and flags:

- `create --host=A,B --namespace=NS --secret-name=NAME`: unless the Secret exists already, make
  a CA and a serving certificate for the hosts, and store them in the Secret (keys `ca`,
  `cert`, `key`);
- `patch --webhook-name=NAME --namespace=NS --secret-name=NAME [--patch-validating=true]
  [--patch-mutating=true] [--patch-failure-policy=Fail|Ignore]`: put the Secret's CA into the
  caBundle of every webhook of the Validating (and Mutating) WebhookConfiguration NAME.

It runs in the Job's pod with its service account (in-cluster), and exits non-zero with the
error on failure, so the Job retries it.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import datetime as dt
import logging
import sys

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from pocketkube.core import errors
from pocketkube.core.client import Client, from_in_cluster, from_kubeconfig

log = logging.getLogger("kube-webhook-certgen")
ADMISSION = "admissionregistration.k8s.io/v1"


def _pem_key(key) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def generate(hosts: list[str], days: int = 365 * 100) -> tuple[bytes, bytes, bytes]:
    """(CA certificate, serving certificate, serving key) PEMs, the serving one for `hosts`."""
    now = dt.datetime.now(dt.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "nil1")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
          .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=5))
          .not_valid_after(now + dt.timedelta(days=days))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=True,
                                       data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                       crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "nil2")]))
            .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=days))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(h) for h in hosts]), critical=False)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .sign(ca_key, hashes.SHA256()))
    pem = serialization.Encoding.PEM
    return ca.public_bytes(pem), cert.public_bytes(pem), _pem_key(key)


async def create(client: Client, namespace: str, secret_name: str, hosts: list[str]) -> str:
    try:
        await client.get("v1", "secrets", secret_name, namespace=namespace)
        return f"secret {namespace}/{secret_name} already exists"
    except errors.APIError as exc:
        if exc.code != 404:
            raise
    ca, cert, key = generate(hosts)
    secret = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": secret_name, "namespace": namespace},
              "data": {k: base64.b64encode(v).decode() for k, v in (("ca", ca), ("cert", cert), ("key", key))}}
    await client.create("v1", "secrets", secret, namespace=namespace)
    return f"created secret {namespace}/{secret_name} for {', '.join(hosts)}"


async def patch(client: Client, namespace: str, secret_name: str, webhook: str, validating: bool, mutating: bool,
                failure_policy: str) -> str:
    secret = await client.get("v1", "secrets", secret_name, namespace=namespace)
    ca = (secret.get("data") or {}).get("ca")
    if not ca:
        raise RuntimeError(f"secret {namespace}/{secret_name} has no ca")
    done = []
    for wanted, resource in ((validating, "validatingwebhookconfigurations"),
                             (mutating, "mutatingwebhookconfigurations")):
        if not wanted:
            continue
        config = await client.get(ADMISSION, resource, webhook)
        for hook in config.get("webhooks") or []:
            hook.setdefault("clientConfig", {})["caBundle"] = ca
            if failure_policy:
                hook["failurePolicy"] = failure_policy
        await client.update(ADMISSION, resource, config)
        done.append(resource)
    return f"patched {' and '.join(done) or 'nothing'} {webhook} with the CA of {namespace}/{secret_name}"


def _go_bool(text: str) -> bool:
    return text.strip().lower() in ("1", "t", "true")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="kube-webhook-certgen")
    p.add_argument("--kubeconfig", default="")
    p.add_argument("--log-level", default="info")
    p.add_argument("--log-format", default="text")
    sub = p.add_subparsers(dest="command", required=True)
    c = sub.add_parser("create")
    c.add_argument("--host", required=True)
    c.add_argument("--namespace", required=True)
    c.add_argument("--secret-name", required=True)
    c.add_argument("--cert-name", default="cert")
    c.add_argument("--key-name", default="key")
    c = sub.add_parser("patch")
    c.add_argument("--webhook-name", required=True)
    c.add_argument("--namespace", required=True)
    c.add_argument("--secret-name", required=True)
    c.add_argument("--patch-validating", type=_go_bool, nargs="?", const=True, default=True)
    c.add_argument("--patch-mutating", type=_go_bool, nargs="?", const=True, default=True)
    c.add_argument("--patch-failure-policy", default="", choices=("", "Fail", "Ignore"))
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")

    async def run() -> str:
        client = from_kubeconfig(args.kubeconfig) if args.kubeconfig else from_in_cluster("kube-webhook-certgen")
        try:
            if args.command == "create":
                return await create(client, args.namespace, args.secret_name,
                                    [h for h in args.host.split(",") if h])
            return await patch(client, args.namespace, args.secret_name, args.webhook_name, args.patch_validating,
                               args.patch_mutating, args.patch_failure_policy)
        finally:
            await client.close()

    try:
        log.info(asyncio.run(run()))
    except (errors.APIError, RuntimeError, OSError) as exc:
        log.error("%s failed: %s", args.command, exc)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
