"""The real kubectl against a pocketkube API server: the commands of the Kubernetes books,
with the output a real cluster prints (columns, messages, exit codes)."""

from __future__ import annotations

import json
import os
import queue
import re
import subprocess
import textwrap
import threading

import pytest

pytestmark = pytest.mark.kubectl

DEPLOYMENT = """\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  labels: {app: web}
spec:
  replicas: 2
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
      - name: nginx
        image: nginx:1.27
        ports:
        - containerPort: 80
"""


def cols(line: str) -> list[str]:
    """Split a kubectl table line on runs of 2+ spaces (cells may hold single spaces)."""
    return re.split(r"\s{2,}", line.strip())


def table(out: str) -> list[list[str]]:
    return [cols(line) for line in out.strip().splitlines()]


def test_namespaces_that_every_cluster_has(server):
    rows = table(server.kubectl("get", "namespaces").stdout)
    assert rows[0] == ["NAME", "STATUS", "AGE"]
    names = {r[0]: r[1] for r in rows[1:]}
    for ns in ("default", "kube-system", "kube-public", "kube-node-lease"):
        assert names[ns] == "Active"


def test_apply_creates_then_unchanged_then_configured(server, ns, tmp_path):
    f = tmp_path / "web.yaml"
    f.write_text(DEPLOYMENT)
    assert server.kubectl("apply", "-n", ns, "-f", str(f)).stdout.strip() == "deployment.apps/web created"
    assert server.kubectl("apply", "-n", ns, "-f", str(f)).stdout.strip() == "deployment.apps/web unchanged"
    f.write_text(DEPLOYMENT.replace("nginx:1.27", "nginx:1.28").replace("replicas: 2", "replicas: 3"))
    assert server.kubectl("apply", "-n", ns, "-f", str(f)).stdout.strip() == "deployment.apps/web configured"
    d = server.kubectl_json("get", "-n", ns, "deployment", "web")
    assert d["spec"]["replicas"] == 3
    assert d["spec"]["template"]["spec"]["containers"][0]["image"] == "nginx:1.28"
    assert d["metadata"]["generation"] == 2
    last = json.loads(d["metadata"]["annotations"]["kubectl.kubernetes.io/last-applied-configuration"])
    assert last["spec"]["replicas"] == 3
    # defaults a real cluster fills in
    assert d["spec"]["strategy"] == {"type": "RollingUpdate",
                                     "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}}
    assert d["spec"]["revisionHistoryLimit"] == 10
    assert d["spec"]["progressDeadlineSeconds"] == 600
    c = d["spec"]["template"]["spec"]["containers"][0]
    assert c["imagePullPolicy"] == "IfNotPresent"
    assert c["ports"][0]["protocol"] == "TCP"
    assert d["spec"]["template"]["spec"]["restartPolicy"] == "Always"
    assert d["spec"]["template"]["spec"]["dnsPolicy"] == "ClusterFirst"


def test_apply_removes_a_port_dropped_from_the_file(server, ns, tmp_path):
    svc = textwrap.dedent("""\
        apiVersion: v1
        kind: Service
        metadata: {name: two}
        spec:
          selector: {app: web}
          ports:
          - {name: http, port: 80, targetPort: 8080}
          - {name: https, port: 443, targetPort: 8443}
        """)
    f = tmp_path / "svc.yaml"
    f.write_text(svc)
    server.kubectl("apply", "-n", ns, "-f", str(f))
    f.write_text(svc.replace("  - {name: https, port: 443, targetPort: 8443}\n", ""))
    assert server.kubectl("apply", "-n", ns, "-f", str(f)).stdout.strip() == "service/two configured"
    ports = server.kubectl_json("get", "-n", ns, "svc", "two")["spec"]["ports"]
    assert [p["port"] for p in ports] == [80]


def test_create_deployment_sends_protobuf_and_get_prints_columns(server, ns):
    out = server.kubectl("create", "deployment", "web", "--image=nginx", "--replicas=3", "-n", ns).stdout
    assert out.strip() == "deployment.apps/web created"
    rows = table(server.kubectl("get", "deploy", "-n", ns).stdout)
    assert rows[0] == ["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE"]
    # no node runs pods here: none is ready or available (UP-TO-DATE follows the controller)
    assert rows[1][:2] == ["web", "0/3"] and rows[1][3] == "0" and rows[1][2] in ("0", "3")
    assert re.fullmatch(r"\d+s", rows[1][4])
    wide = table(server.kubectl("get", "deploy", "-n", ns, "-o", "wide").stdout)
    assert wide[0] == ["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE", "CONTAINERS", "IMAGES", "SELECTOR"]
    assert wide[1][5:] == ["nginx", "nginx", "app=web"]
    again = server.kubectl("create", "deployment", "web", "--image=nginx", "-n", ns, check=False)
    assert again.returncode == 1
    assert again.stderr.strip() == 'error: failed to create deployment: deployments.apps "web" already exists'


def test_create_service_and_secret_tls_protobuf(server, ns, tmp_path):
    out = server.kubectl("create", "service", "clusterip", "mysql", "--clusterip=None", "-n", ns).stdout
    assert out.strip() == "service/mysql created"
    svc = server.kubectl_json("get", "svc", "mysql", "-n", ns)
    assert svc["spec"]["clusterIP"] == "None"
    assert svc["spec"]["clusterIPs"] == ["None"]
    assert svc["spec"]["selector"] == {"app": "mysql"}
    rows = table(server.kubectl("get", "svc", "mysql", "-n", ns).stdout)
    assert rows[0] == ["NAME", "TYPE", "CLUSTER-IP", "EXTERNAL-IP", "PORT(S)", "AGE"]
    assert rows[1][:5] == ["mysql", "ClusterIP", "None", "<none>", "<none>"]

    server.kubectl("create", "service", "nodeport", "np", "--tcp=80:8080", "--node-port=30080", "-n", ns)
    np = server.kubectl_json("get", "svc", "np", "-n", ns)
    assert np["spec"]["type"] == "NodePort"
    assert np["spec"]["ports"][0] == {"name": "80-8080", "port": 80, "targetPort": 8080, "nodePort": 30080,
                                      "protocol": "TCP"}
    assert np["spec"]["externalTrafficPolicy"] == "Cluster"

    server.kubectl("create", "service", "externalname", "ext", "--external-name=example.com", "-n", ns)
    rows = table(server.kubectl("get", "svc", "ext", "-n", ns).stdout)
    assert rows[1][:5] == ["ext", "ExternalName", "<none>", "example.com", "<none>"]

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID
    import datetime as dt

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "example.com")])
    now = dt.datetime.now(dt.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(1).not_valid_before(now).not_valid_after(now + dt.timedelta(days=1))
            .sign(key, hashes.SHA256()))
    (tmp_path / "tls.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "tls.key").write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                                         serialization.PrivateFormat.PKCS8,
                                                         serialization.NoEncryption()))
    out = server.kubectl("create", "secret", "tls", "tls1", f"--cert={tmp_path / 'tls.crt'}",
                         f"--key={tmp_path / 'tls.key'}", "-n", ns).stdout
    assert out.strip() == "secret/tls1 created"
    rows = table(server.kubectl("get", "secret", "tls1", "-n", ns).stdout)
    assert rows[0] == ["NAME", "TYPE", "DATA", "AGE"]
    assert rows[1][:3] == ["tls1", "kubernetes.io/tls", "2"]


def test_expose_scale_patch_and_describe(server, ns):
    server.kubectl("create", "deployment", "nginx", "--image=nginx", "-n", ns)
    out = server.kubectl("expose", "deployment", "nginx", "--port=80", "-n", ns).stdout
    assert out.strip() == "service/nginx exposed"
    assert server.kubectl("scale", "deployment", "nginx", "--replicas=2", "-n", ns).stdout.strip() == \
        "deployment.apps/nginx scaled"
    assert server.kubectl_json("get", "deploy", "nginx", "-n", ns)["spec"]["replicas"] == 2
    out = server.kubectl("patch", "svc", "nginx", "-n", ns, "-p", '{"spec":{"type":"NodePort"}}').stdout
    assert out.strip() == "service/nginx patched"
    svc = server.kubectl_json("get", "svc", "nginx", "-n", ns)
    assert svc["spec"]["type"] == "NodePort"
    assert svc["spec"]["externalTrafficPolicy"] == "Cluster"
    again = server.kubectl("patch", "svc", "nginx", "-n", ns, "-p", '{"spec":{"type":"NodePort"}}').stdout
    assert again.strip() == "service/nginx patched (no change)"
    desc = server.kubectl("describe", "svc", "nginx", "-n", ns).stdout
    fields = dict(re.findall(r"^([A-Za-z ]+):[ \t]*(.*)$", desc, re.M))
    assert fields["Name"] == "nginx"
    assert fields["Namespace"] == ns
    assert fields["Selector"] == "app=nginx"
    assert fields["Type"] == "NodePort"
    assert fields["Port"] == "<unset>  80/TCP"
    assert fields["TargetPort"] == "80/TCP"
    assert fields["Session Affinity"] == "None"
    assert fields["External Traffic Policy"] == "Cluster"
    assert fields["Internal Traffic Policy"] == "Cluster"
    assert "Events:" in desc


def test_get_output_formats_labels_and_all_namespaces(server, ns):
    server.kubectl("create", "deployment", "a", "--image=nginx", "-n", ns)
    server.kubectl("create", "deployment", "b", "--image=busybox", "-n", ns)
    server.kubectl("label", "deployment", "b", "tier=backend", "-n", ns)
    names = server.kubectl("get", "deploy", "-n", ns, "-o", "name").stdout.split()
    assert names == ["deployment.apps/a", "deployment.apps/b"]
    jp = server.kubectl("get", "deploy", "-n", ns, "-o", "jsonpath={.items[*].metadata.name}").stdout
    assert jp == "a b"
    rows = table(server.kubectl("get", "deploy", "-n", ns, "-l", "tier=backend").stdout)
    assert [r[0] for r in rows[1:]] == ["b"]
    rows = table(server.kubectl("get", "deploy", "-n", ns, "-l", "tier!=backend", "--show-labels").stdout)
    assert rows[0][-1] == "LABELS" and rows[1][0] == "a" and rows[1][-1] == "app=a"
    rows = table(server.kubectl("get", "deploy", "-A").stdout)
    assert rows[0][0] == "NAMESPACE"
    assert [ns, "a"] == rows[[r[1] for r in rows].index("a")][:2]
    y = server.kubectl("get", "deploy", "a", "-n", ns, "-o", "yaml").stdout
    assert "apiVersion: apps/v1" in y and "kind: Deployment" in y
    empty = server.kubectl("get", "svc", "-n", ns)
    assert empty.stdout == "" and empty.stderr.strip() == f"No resources found in {ns} namespace."
    bad = server.kubectl("get", "deploy", "-n", ns, "-l", "a in (", check=False)
    assert bad.returncode == 1 and "Error from server (BadRequest)" in bad.stderr


def test_get_several_kinds_and_all(server, ns):
    server.kubectl("create", "deployment", "web", "--image=nginx", "-n", ns)
    server.kubectl("expose", "deployment", "web", "--port=80", "-n", ns)
    out = server.kubectl("get", "all", "-n", ns).stdout
    assert "service/web" in out and "deployment.apps/web" in out
    out = server.kubectl("get", "svc,deploy", "-n", ns).stdout
    assert "service/web" in out and "deployment.apps/web" in out


def test_delete_and_not_found(server, ns):
    server.kubectl("create", "deployment", "gone", "--image=nginx", "-n", ns)
    out = server.kubectl("delete", "deployment", "gone", "-n", ns).stdout
    assert out.strip() == 'deployment.apps "gone" deleted'
    miss = server.kubectl("get", "deployment", "gone", "-n", ns, check=False)
    assert miss.returncode == 1
    assert miss.stderr.strip() == 'Error from server (NotFound): deployments.apps "gone" not found'
    miss = server.kubectl("delete", "svc", "nope", "-n", ns, check=False)
    assert miss.stderr.strip() == 'Error from server (NotFound): services "nope" not found'


def test_invalid_service_gets_422_with_causes(server, ns, tmp_path):
    f = tmp_path / "bad.yaml"
    f.write_text(textwrap.dedent("""\
        apiVersion: v1
        kind: Service
        metadata: {name: bad}
        spec:
          ports:
          - port: 70000
        """))
    cp = server.kubectl("apply", "-n", ns, "-f", str(f), check=False)
    assert cp.returncode == 1
    # targetPort defaults to port, so a real cluster reports both
    assert cp.stderr == ('The Service "bad" is invalid: \n'
                         '* spec.ports[0].port: Invalid value: 70000: must be between 1 and 65535, inclusive\n'
                         '* spec.ports[0].targetPort: Invalid value: 70000: must be between 1 and 65535, inclusive\n')
    f.write_text("apiVersion: v1\nkind: Service\nmetadata: {name: noports}\nspec: {selector: {app: x}}\n")
    cp = server.kubectl("create", "-n", ns, "-f", str(f), check=False)
    assert 'The Service "noports" is invalid: spec.ports: Required value' in cp.stderr
    assert server.kubectl("get", "svc", "-n", ns).stdout == ""  # nothing stored


def test_strict_field_validation_rejects_unknown_fields(server, ns, tmp_path):
    f = tmp_path / "typo.yaml"
    f.write_text(DEPLOYMENT.replace("  replicas: 2", "  replica: 2"))
    cp = server.kubectl("apply", "-n", ns, "-f", str(f), check=False)
    assert cp.returncode == 1
    assert 'strict decoding error: unknown field "spec.replica"' in cp.stderr
    cp = server.kubectl("apply", "-n", ns, "-f", str(f), "--validate=false")
    assert cp.stdout.strip() == "deployment.apps/web created"


LIST = """
apiVersion: v1
kind: List
items:
- apiVersion: v1
  kind: ConfigMap
  metadata: {name: settings}
  data: {mode: fast}
- apiVersion: v1
  kind: Service
  metadata: {name: web}
  spec: {ports: [{port: 80}], selector: {app: web}}
"""


def test_apply_a_list_of_objects(server, ns, tmp_path):
    """kubectl validates a `kind: List` through /openapi/v2, then sends each item."""
    f = tmp_path / "list.yaml"
    f.write_text(LIST)
    assert server.kubectl("apply", "-n", ns, "-f", str(f)).stdout == "configmap/settings created\nservice/web created\n"
    assert server.kubectl("apply", "-n", ns, "-f", str(f)).stdout == "configmap/settings unchanged\nservice/web unchanged\n"
    f.write_text(LIST.replace("  data: {mode: fast}", "  data: {mode: fast}\n  bogus: 1"))
    cp = server.kubectl("create", "-n", ns, "-f", str(f), check=False)
    assert cp.returncode == 1
    assert ('ConfigMap in version "v1" cannot be handled as a ConfigMap: strict decoding error: unknown field '
            '"bogus"') in cp.stderr
    assert server.kubectl_json("get", "-n", ns, "configmap", "settings")["data"] == {"mode": "fast"}


def test_a_kind_the_server_does_not_serve(server, ns, tmp_path):
    f = tmp_path / "crd-object.yaml"
    f.write_text("apiVersion: stable.example.com/v1\nkind: CronTab\nmetadata: {name: c}\n")
    cp = server.kubectl("apply", "-n", ns, "-f", str(f), check=False)
    assert cp.returncode == 1
    assert 'no matches for kind "CronTab" in version "stable.example.com/v1"' in cp.stderr


def test_dry_run_server_stores_nothing(server, ns):
    out = server.kubectl("create", "deployment", "dry", "--image=nginx", "-n", ns, "--dry-run=server").stdout
    assert out.strip() == "deployment.apps/dry created (server dry run)"
    assert server.kubectl("get", "deploy", "-n", ns).stdout == ""


def test_edit_with_kube_editor(server, ns, tmp_path):
    server.kubectl("create", "deployment", "ed", "--image=nginx", "-n", ns)
    editor = tmp_path / "editor.sh"
    editor.write_text("#!/bin/sh\nsed -i 's/replicas: 1/replicas: 4/' \"$1\"\n")
    editor.chmod(0o755)
    out = server.kubectl("edit", "deployment", "ed", "-n", ns, env={"KUBE_EDITOR": str(editor)}).stdout
    assert out.strip() == "deployment.apps/ed edited"
    assert server.kubectl_json("get", "deploy", "ed", "-n", ns)["spec"]["replicas"] == 4


def test_server_side_apply(server, ns, tmp_path):
    f = tmp_path / "cm.yaml"
    f.write_text("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: cfg}\ndata: {a: '1', b: '2'}\n")
    out = server.kubectl("apply", "--server-side", "-n", ns, "-f", str(f)).stdout
    assert out.strip() == "configmap/cfg serverside-applied"
    f.write_text("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: cfg}\ndata: {a: '1'}\n")
    server.kubectl("apply", "--server-side", "-n", ns, "-f", str(f))
    cm = server.kubectl_json("get", "cm", "cfg", "-n", ns, "--show-managed-fields")
    assert cm["data"] == {"a": "1"}
    managers = {(m["manager"], m["operation"]) for m in cm["metadata"]["managedFields"]}
    assert ("kubectl", "Apply") in managers


def test_wait_and_watch(server, ns):
    server.kubectl("create", "deployment", "w", "--image=nginx", "-n", ns)
    proc = subprocess.Popen(["kubectl", "get", "deploy", "-n", ns, "-w", "--request-timeout=0"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=server.env)
    try:
        first = proc.stdout.readline()
        assert cols(first) == ["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE"]
        assert cols(proc.stdout.readline())[0] == "w"
        server.kubectl("scale", "deployment", "w", "--replicas=5", "-n", ns)
        # Each modification is a line; the controller's own status writes (0/1) may come first.
        lines: queue.Queue = queue.Queue()
        threading.Thread(target=lambda: [lines.put(line) for line in proc.stdout], daemon=True).start()
        seen: list[list[str]] = []
        while ["w", "0/5"] not in seen:
            seen.append(cols(lines.get(timeout=20))[:2])
        assert ["w", "0/5"] in seen, seen
        assert all(row[0] == "w" for row in seen)
    finally:
        proc.kill()
        proc.wait()
    cp = server.kubectl("wait", "--for=jsonpath={.spec.replicas}=5", "deployment/w", "-n", ns, "--timeout=10s")
    assert cp.stdout.strip() == "deployment.apps/w condition met"
    cp = server.kubectl("wait", "--for=condition=Available", "deployment/w", "-n", ns, "--timeout=1s",
                        check=False)
    assert cp.returncode == 1
    assert "timed out waiting for the condition on deployments/w" in cp.stderr


def test_finalizers_hold_deletion(server, ns):
    server.kubectl("create", "configmap", "held", "--from-literal=a=b", "-n", ns)
    server.kubectl("patch", "cm", "held", "-n", ns, "--type=merge",
                   "-p", '{"metadata":{"finalizers":["example.com/hold"]}}')
    server.kubectl("delete", "cm", "held", "-n", ns, "--wait=false")
    cm = server.kubectl_json("get", "cm", "held", "-n", ns)
    assert cm["metadata"]["deletionTimestamp"]
    server.kubectl("patch", "cm", "held", "-n", ns, "--type=json",
                   "-p", '[{"op":"remove","path":"/metadata/finalizers"}]')
    assert server.kubectl("get", "cm", "held", "-n", ns, check=False).returncode == 1


def test_unauthenticated_requests_get_401(server):
    cp = subprocess.run(["kubectl", "get", "pods", "--token=wrong"], capture_output=True, text=True,
                        env=server.env)
    assert cp.returncode == 1
    assert "error: You must be logged in to the server (Unauthorized)" in cp.stderr
