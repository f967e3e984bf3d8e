"""`pocketkube webhook-certgen create|patch`: what the image
registry.k8s.io/ingress-nginx/kube-webhook-certgen does in the Jobs of install manifests
(ingress-nginx's admission webhook), run by the image catalog in a pod with its
ServiceAccount's token, so it has only the rights the manifest's Role and ClusterRole give.

- `create --host=H1,H2 --namespace=NS --secret-name=S`: a new CA and a serving certificate for
  the hosts, stored as Secret S (keys `ca`, `cert`, `key`); an existing Secret is kept.
- `patch --webhook-name=W --namespace=NS --secret-name=S [--patch-validating=true]
  [--patch-mutating=true] [--patch-failure-policy=Fail|Ignore]`: the Secret's CA becomes the
  `caBundle` of every webhook of the Validating- and/or MutatingWebhookConfiguration W.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import sys

from pocketkube.core import errors

ADMISSION = "admissionregistration.k8s.io/v1"


def _bool(text: str) -> bool:
    return text.lower() in ("1", "true", "yes")


def add_parser(sub) -> None:
    p = sub.add_parser("webhook-certgen", help="make and install an admission webhook's certificate "
                                               "(kube-webhook-certgen)")
    p.add_argument("action", choices=("create", "patch"))
    p.add_argument("--host", default="", help="create: comma-separated names the certificate is for")
    p.add_argument("--namespace", required=True)
    p.add_argument("--secret-name", required=True)
    p.add_argument("--cert-name", default="cert")
    p.add_argument("--key-name", default="key")
    p.add_argument("--ca-name", default="ca")
    p.add_argument("--webhook-name", default="", help="patch: the webhook configuration to patch")
    p.add_argument("--patch-validating", default="true")
    p.add_argument("--patch-mutating", default="true")
    p.add_argument("--patch-failure-policy", default="")
    p.add_argument("--kubeconfig", default="in-cluster")
    p.add_argument("--log-format", default="")
    p.add_argument("--log-level", default="")
    p.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    return asyncio.run(_run(args))


async def _run(args: argparse.Namespace) -> int:
    from pocketkube.core.client import from_in_cluster, from_kubeconfig

    client = (from_in_cluster(field_manager="kube-webhook-certgen") if args.kubeconfig == "in-cluster"
              else from_kubeconfig(args.kubeconfig, field_manager="kube-webhook-certgen"))
    try:
        if args.action == "create":
            return await _create(client, args)
        return await _patch(client, args)
    except errors.APIError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return 1
    finally:
        await client.close()


async def _create(client, args) -> int:
    from pocketkube.apiserver import certs

    try:
        await client.get("v1", "secrets", args.secret_name, args.namespace)
        print(f"secret {args.namespace}/{args.secret_name} already exists", flush=True)
        return 0
    except errors.APIError as exc:
        if exc.code != 404:
            raise
    hosts = [h for h in args.host.split(",") if h]
    ca_cert, ca_key = certs.new_ca("kube-webhook-certgen-ca", days=36500)
    cert, key = certs.serving_cert(ca_cert, ca_key, hosts, hosts[0] if hosts else "webhook", days=36500)
    data = {args.ca_name: certs.pem(ca_cert), args.cert_name: certs.pem(cert), args.key_name: certs.pem(key=key)}
    secret = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": args.secret_name},
              "data": {k: base64.b64encode(v).decode() for k, v in data.items()}}
    await client.create("v1", "secrets", secret, namespace=args.namespace)
    print(f"created secret {args.namespace}/{args.secret_name} for {', '.join(hosts)}", flush=True)
    return 0


async def _patch(client, args) -> int:
    secret = await client.get("v1", "secrets", args.secret_name, args.namespace)
    ca = (secret.get("data") or {}).get(args.ca_name)
    if not ca:
        print(f"error: secret {args.namespace}/{args.secret_name} has no {args.ca_name!r}", file=sys.stderr)
        return 1
    kinds = [k for k, on in (("validatingwebhookconfigurations", _bool(args.patch_validating)),
                             ("mutatingwebhookconfigurations", _bool(args.patch_mutating))) if on]
    for resource in kinds:
        for _ in range(5):
            try:
                config = await client.get(ADMISSION, resource, args.webhook_name)
            except errors.APIError as exc:
                if exc.code == 404 and resource == "mutatingwebhookconfigurations":
                    break  # the manifest has none
                raise
            for hook in config.get("webhooks") or []:
                hook.setdefault("clientConfig", {})["caBundle"] = ca
                if args.patch_failure_policy:
                    hook["failurePolicy"] = args.patch_failure_policy
            try:
                await client.update(ADMISSION, resource, config)
                print(f"patched {resource} {args.webhook_name}", flush=True)
                break
            except errors.APIError as exc:
                if exc.code != 409:
                    raise
    return 0
