"""A stand-in for `pocketkube agent` (stdlib only), for the e2e tests of `up`/`down` while the
real agent cannot run pods yet: it takes the agent's flags, registers its Node with a Ready
condition through the API server's node-bridge address (so it proves that the node's
namespace reaches 172.18.0.1), and then waits for SIGTERM."""

from __future__ import annotations

import argparse
import base64
import json
import signal
import ssl
import sys
import tempfile
import time
import urllib.error
import urllib.request

import yaml


def _client(kubeconfig: str):
    with open(kubeconfig) as f:
        cfg = yaml.safe_load(f)
    cluster = cfg["clusters"][0]["cluster"]
    token = cfg["users"][0]["user"]["token"]
    ca = tempfile.NamedTemporaryFile(suffix=".crt", delete=False)
    ca.write(base64.b64decode(cluster["certificate-authority-data"]))
    ca.close()
    ctx = ssl.create_default_context(cafile=ca.name)

    def request(method: str, path: str, body: dict | None = None) -> dict:
        req = urllib.request.Request(cluster["server"] + path, method=method,
                                     data=json.dumps(body).encode() if body is not None else None,
                                     headers={"Authorization": f"Bearer {token}",
                                              "Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=2, context=ctx) as resp:
            return json.load(resp)

    return request


def main() -> int:
    parser = argparse.ArgumentParser()
    for flag in ("--kubeconfig", "--node-name", "--node-ip", "--pod-cidr", "--state-dir", "--netns"):
        parser.add_argument(flag, required=True)
    args = parser.parse_args()
    request = _client(args.kubeconfig)
    node = {"apiVersion": "v1", "kind": "Node",
            "metadata": {"name": args.node_name, "labels": {"kubernetes.io/hostname": args.node_name}},
            "spec": {"podCIDR": args.pod_cidr, "podCIDRs": [args.pod_cidr]}}
    deadline = time.monotonic() + 30
    while True:
        try:
            created = request("POST", "/api/v1/nodes", node)
            break
        except (OSError, urllib.error.URLError):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    created["status"] = {
        "addresses": [{"type": "InternalIP", "address": args.node_ip}],
        "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady",
                        "message": "stand-in agent", "lastHeartbeatTime": now, "lastTransitionTime": now}]}
    request("PUT", f"/api/v1/nodes/{args.node_name}/status", created)
    print(f"stand-in agent: node {args.node_name} Ready", flush=True)
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM, signal.SIGINT})
    signal.sigwait({signal.SIGTERM, signal.SIGINT})
    return 0


if __name__ == "__main__":
    sys.exit(main())
