"""Capture the request bodies the real kubectl sends for `kubectl create ...` subcommands.

Starts a tiny plain-HTTP server on 127.0.0.1 that serves legacy discovery and /version,
answers every POST with 201 and a JSON echo (kind, apiVersion, metadata.name), and records
each POST body with its Content-Type. Then runs kubectl against it with a throwaway
kubeconfig and discovery cache. Protobuf bodies of in-scope kinds are written to
tests/unit/fixtures/protobuf/<name>.bin (the TLS key pair there is generated once and reused,
so captures are byte-for-byte repeatable); a summary of which command used which content type
is printed. Expected JSON files are written by hand, not by this tool.

    .venv/bin/python tools/capture_kubectl_bodies.py [--kubectl /usr/bin/kubectl] [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

PROTOBUF = "application/vnd.kubernetes.protobuf"
FIXTURES = Path(__file__).resolve().parent.parent / "tests" / "unit" / "fixtures" / "protobuf"
VERBS = ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"]

# group version -> [(resource, kind, namespaced, short names)]
RESOURCES = {
    "v1": [("pods", "Pod", True, ["po"]), ("services", "Service", True, ["svc"]),
           ("secrets", "Secret", True, []), ("configmaps", "ConfigMap", True, ["cm"]),
           ("namespaces", "Namespace", False, ["ns"]), ("serviceaccounts", "ServiceAccount", True, ["sa"]),
           ("endpoints", "Endpoints", True, ["ep"]), ("nodes", "Node", False, ["no"]),
           ("resourcequotas", "ResourceQuota", True, ["quota"])],
    "apps/v1": [("deployments", "Deployment", True, ["deploy"]), ("replicasets", "ReplicaSet", True, ["rs"]),
                ("statefulsets", "StatefulSet", True, ["sts"]), ("daemonsets", "DaemonSet", True, ["ds"])],
    "networking.k8s.io/v1": [("ingresses", "Ingress", True, ["ing"]),
                             ("ingressclasses", "IngressClass", False, [])],
    "discovery.k8s.io/v1": [("endpointslices", "EndpointSlice", True, [])],
    "batch/v1": [("jobs", "Job", True, []), ("cronjobs", "CronJob", True, ["cj"])],
    "rbac.authorization.k8s.io/v1": [("roles", "Role", True, []), ("rolebindings", "RoleBinding", True, []),
                                     ("clusterroles", "ClusterRole", False, []),
                                     ("clusterrolebindings", "ClusterRoleBinding", False, [])],
    "policy/v1": [("poddisruptionbudgets", "PodDisruptionBudget", True, ["pdb"])],
    "scheduling.k8s.io/v1": [("priorityclasses", "PriorityClass", False, ["pc"])],
}
KIND_BY_RESOURCE = {(gv, r): k for gv, rs in RESOURCES.items() for r, k, _, _ in rs}


def resource_list(group_version: str) -> dict:
    return {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": group_version,
            "resources": [{"name": r, "singularName": r.rstrip("s"), "namespaced": ns, "kind": k,
                           "verbs": VERBS, "shortNames": short} for r, k, ns, short in RESOURCES[group_version]]}


def group_list() -> dict:
    groups = []
    for gv in RESOURCES:
        if "/" in gv:
            group, version = gv.split("/")
            ref = {"groupVersion": gv, "version": version}
            groups.append({"name": group, "versions": [ref], "preferredVersion": ref})
    return {"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}


def read_varint(data: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if byte < 0x80:
            return value, pos


def length_delimited_fields(data: bytes) -> dict[int, bytes]:
    """The first length-delimited value of each field number (enough to find names)."""
    found: dict[int, bytes] = {}
    pos = 0
    while pos < len(data):
        key, pos = read_varint(data, pos)
        wire = key & 7
        if wire == 0:
            _, pos = read_varint(data, pos)
        elif wire == 2:
            size, pos = read_varint(data, pos)
            found.setdefault(key >> 3, data[pos:pos + size])
            pos += size
        elif wire == 1:
            pos += 8
        elif wire == 5:
            pos += 4
        else:
            break
    return found


def object_name(body: bytes, content_type: str) -> str:
    """metadata.name of a JSON or protobuf body: Unknown.raw(2) -> metadata(1) -> name(1)."""
    if content_type.startswith(PROTOBUF):
        raw = length_delimited_fields(body[4:]).get(2, b"")
        metadata = length_delimited_fields(raw).get(1, b"")
        return length_delimited_fields(metadata).get(1, b"").decode()
    return json.loads(body).get("metadata", {}).get("name", "")


class Recorder(BaseHTTPRequestHandler):
    posts: list[dict] = []

    def log_message(self, *args) -> None:
        pass

    def reply(self, code: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        path = self.path.split("?")[0].rstrip("/")
        if path == "/version":
            self.reply(200, {"major": "1", "minor": "32", "gitVersion": "v1.32.0", "platform": "linux/amd64"})
        elif path == "/api":
            self.reply(200, {"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": [
                {"clientCIDR": "0.0.0.0/0", "serverAddress": self.headers.get("Host", "")}]})
        elif path == "/apis":
            self.reply(200, group_list())
        elif path == "/api/v1":
            self.reply(200, resource_list("v1"))
        elif path.startswith("/apis/") and path[len("/apis/"):] in RESOURCES:
            self.reply(200, resource_list(path[len("/apis/"):]))
        else:
            self.reply(404, {"kind": "Status", "apiVersion": "v1", "status": "Failure",
                             "message": "the server could not find the requested resource",
                             "reason": "NotFound", "code": 404})

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        content_type = self.headers.get("Content-Type", "")
        parts = self.path.split("?")[0].strip("/").split("/")
        group_version = parts[1] if parts[0] == "api" else "/".join(parts[1:3])
        kind = KIND_BY_RESOURCE.get((group_version, parts[-1]), "")
        Recorder.posts.append({"path": self.path, "content_type": content_type, "kind": kind,
                               "user_agent": self.headers.get("User-Agent", ""), "body": body})
        self.reply(201, {"kind": kind, "apiVersion": group_version,
                         "metadata": {"name": object_name(body, content_type)}})


def tls_pair(out: Path) -> tuple[Path, Path]:
    """The fixture's key pair; generated once, then reused so secret_tls.json stays valid."""
    cert, key = out / "secret_tls.crt", out / "secret_tls.key"
    if cert.exists() and key.exists():
        return cert, key
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                    "-nodes", "-subj", "/CN=pocketkube.test", "-days", "3650",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
    return cert, key


def commands(cert: Path, key: Path) -> list[tuple[str, list[str], bool]]:
    """(fixture name, kubectl args, in scope for the decoder)."""
    return [
        ("deployment_web", ["create", "deployment", "web", "--image=nginx", "--replicas=3", "--port=80"], True),
        ("deployment_zero", ["create", "deployment", "z", "--image=busybox", "--replicas=0", "--", "sleep", "3600"], True),
        ("service_clusterip", ["create", "service", "clusterip", "web", "--tcp=80:8080"], True),
        ("service_headless", ["create", "service", "clusterip", "mysql", "--clusterip=None"], True),
        ("service_nodeport", ["create", "service", "nodeport", "np", "--tcp=80:80", "--node-port=30080"], True),
        ("service_loadbalancer", ["create", "service", "loadbalancer", "lb", "--tcp=80:80"], True),
        ("service_externalname", ["create", "service", "externalname", "ext", "--external-name=example.com"], True),
        ("secret_tls", ["create", "secret", "tls", "tls1", f"--cert={cert}", f"--key={key}"], True),
        ("secret_generic", ["create", "secret", "generic", "s", "--from-literal=a=b"], True),
        ("secret_docker_registry", ["create", "secret", "docker-registry", "reg", "--docker-server=r.example.com",
                                    "--docker-username=u", "--docker-password=p"], True),
        ("configmap", ["create", "configmap", "cm", "--from-literal=k=v"], True),
        ("namespace", ["create", "namespace", "ns1"], True),
        ("serviceaccount", ["create", "serviceaccount", "sa1"], True),
        ("ingress", ["create", "ingress", "ing", "--rule=foo.com/bar=svc1:8080",
                     "--rule=bar.com/*=svc2:http,tls=my-cert"], True),
        ("job", ["create", "job", "j", "--image=busybox"], False),
        ("cronjob", ["create", "cronjob", "cj", "--image=busybox", "--schedule=*/1 * * * *"], False),
        ("role", ["create", "role", "r", "--verb=get", "--resource=pods"], False),
        ("rolebinding", ["create", "rolebinding", "rb", "--role=r", "--user=u"], False),
        ("clusterrole", ["create", "clusterrole", "cr", "--verb=get", "--resource=pods"], False),
        ("clusterrolebinding", ["create", "clusterrolebinding", "crb", "--clusterrole=cr", "--user=u"], False),
        ("quota", ["create", "quota", "q", "--hard=pods=2"], False),
        ("pdb", ["create", "poddisruptionbudget", "pdb", "--selector=app=web", "--min-available=1"], False),
        ("priorityclass", ["create", "priorityclass", "pc", "--value=10"], False),
    ]


def write_kubeconfig(path: Path, port: int) -> None:
    path.write_text(json.dumps({
        "apiVersion": "v1", "kind": "Config", "current-context": "capture",
        "clusters": [{"name": "capture", "cluster": {"server": f"http://127.0.0.1:{port}"}}],
        "users": [{"name": "capture", "user": {}}],
        "contexts": [{"name": "capture", "context": {"cluster": "capture", "user": "capture",
                                                     "namespace": "default"}}],
    }))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kubectl", default="/usr/bin/kubectl")
    parser.add_argument("--out", type=Path, default=FIXTURES)
    args = parser.parse_args()
    server = ThreadingHTTPServer(("127.0.0.1", 0), Recorder)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            workdir = Path(tmp)
            write_kubeconfig(workdir / "kubeconfig", server.server_address[1])
            args.out.mkdir(parents=True, exist_ok=True)
            cert, key = tls_pair(args.out)
            env = dict(os.environ, KUBECONFIG=str(workdir / "kubeconfig"), KUBECACHEDIR=str(workdir / "cache"))
            for name, argv, in_scope in commands(cert, key):
                before = len(Recorder.posts)
                run = subprocess.run([args.kubectl, *argv], env=env, capture_output=True, text=True, timeout=60)
                posts = Recorder.posts[before:]
                if not posts:
                    print(f"{name:24} no POST ({run.stderr.strip() or run.stdout.strip()})")
                    continue
                post = posts[-1]
                print(f"{name:24} {post['content_type']:40} {post['kind']:20} {run.stdout.strip()}")
                if in_scope and post["content_type"].startswith(PROTOBUF):
                    (args.out / f"{name}.bin").write_bytes(post["body"])
            agents = sorted({p["user_agent"] for p in Recorder.posts})
            print("user agents:", ", ".join(agents))
    finally:
        server.shutdown()
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
