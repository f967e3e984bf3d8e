"""CustomResourceDefinitions with the real kubectl: served at once (Established, discovery,
api-resources, explain), schema validation with the apiserver's messages, pruning and
defaults, status and scale subresources, printer columns, two versions (None conversion),
watch, and deleting the CRD deleting its objects. Bad CRDs get the real errors."""

from __future__ import annotations

import json
import subprocess
import time

import pytest
import yaml

from tests.integration.test_endpoints import eventually

pytestmark = pytest.mark.usefixtures("server")


def crd(group: str, scope: str = "Namespaced") -> dict:
    return yaml.safe_load(f"""
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {{name: widgets.{group}}}
spec:
  group: {group}
  scope: {scope}
  names: {{plural: widgets, singular: widget, kind: Widget, shortNames: [wd]}}
  versions:
  - name: v1
    served: true
    storage: true
    subresources:
      status: {{}}
      scale: {{specReplicasPath: .spec.replicas, statusReplicasPath: .status.replicas}}
    additionalPrinterColumns:
    - {{name: Size, type: integer, jsonPath: .spec.size}}
    - {{name: Color, type: string, jsonPath: .spec.color}}
    - {{name: Ready, type: string, jsonPath: '.status.conditions[?(@.type=="Ready")].status'}}
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
            type: object
            required: [size]
            properties:
              size: {{type: integer, minimum: 1, maximum: 10}}
              color: {{type: string, enum: [red, blue], default: red}}
              replicas: {{type: integer}}
              name: {{type: string, pattern: '^[a-z]+$'}}
          status:
            type: object
            properties:
              replicas: {{type: integer}}
              conditions:
                type: array
                items:
                  type: object
                  properties:
                    type: {{type: string}}
                    status: {{type: string}}
  - name: v1beta1
    served: true
    storage: false
    schema:
      openAPIV3Schema: {{type: object, x-kubernetes-preserve-unknown-fields: true}}
""")


@pytest.fixture
def group(server, ns):
    g = f"{ns}.example.com"
    server.kubectl("apply", "-f", "-", input=json.dumps(crd(g)))
    yield g
    server.kubectl("delete", "crd", f"widgets.{g}", "--ignore-not-found")


def widget(name: str, group: str, **spec) -> str:
    return json.dumps({"apiVersion": f"{group}/v1", "kind": "Widget", "metadata": {"name": name}, "spec": spec})


def test_crd_is_established_and_discovered_at_once(server, ns, group):
    got = server.kubectl_json("get", "crd", f"widgets.{group}")
    conditions = {c["type"]: c["status"] for c in got["status"]["conditions"]}
    assert conditions == {"NamesAccepted": "True", "Established": "True"}
    assert got["status"]["storedVersions"] == ["v1"]
    assert got["status"]["acceptedNames"]["kind"] == "Widget"
    rows = server.kubectl("api-resources", "--api-group", group).stdout.splitlines()
    assert rows[1].split() == ["widgets", "wd", f"{group}/v1", "true", "Widget"]
    explained = server.kubectl("explain", "widgets.spec", f"--api-version={group}/v1").stdout
    assert "size\t<integer> -required-" in explained


def test_objects_validated_pruned_defaulted_and_printed(server, ns, group):
    server.kubectl("apply", "-n", ns, "-f", "-", input=widget("w1", group, size=3))
    w = server.kubectl_json("get", f"widgets.{group}", "w1", "-n", ns)
    assert w["spec"] == {"size": 3, "color": "red"}
    assert w["metadata"]["generation"] == 1
    cp = server.kubectl("apply", "-n", ns, "-f", "-", input=widget("w2", group, size=3, extra=True), check=False)
    assert 'Widget in version "v1" cannot be handled as a Widget: strict decoding error: unknown field ' \
           '"spec.extra"' in cp.stderr
    server.kubectl("create", "-n", ns, "--validate=false", "-f", "-", input=widget("w2", group, size=2, extra=True))
    assert server.kubectl_json("get", f"widgets.{group}", "w2", "-n", ns)["spec"] == {"size": 2, "color": "red"}
    cp = server.kubectl("apply", "-n", ns, "-f", "-", input=widget("bad", group, size=30, color="pink"), check=False)
    assert cp.stderr.strip() == ('The Widget "bad" is invalid: \n'
                                 '* spec.color: Unsupported value: "pink": supported values: "red", "blue"\n'
                                 '* spec.size: Invalid value: 30: spec.size in body should be less than or equal to 10')
    cp = server.kubectl("apply", "-n", ns, "-f", "-", input=widget("bad", group, size="x"), check=False)
    assert cp.stderr.strip() == ('The Widget "bad" is invalid: spec.size: Invalid value: "string": spec.size in body '
                                 'must be of type integer: "string"')
    cp = server.kubectl("apply", "-n", ns, "-f", "-", input=widget("bad", group, color="red"), check=False)
    assert cp.stderr.strip() == 'The Widget "bad" is invalid: spec.size: Required value'
    lines = server.kubectl("get", "wd", "-n", ns).stdout.splitlines()
    assert lines[0].split() == ["NAME", "SIZE", "COLOR", "READY"]
    assert lines[1].split() == ["w1", "3", "red"]  # no Ready condition: an empty cell


def test_status_and_scale_subresources(server, ns, group):
    server.kubectl("apply", "-n", ns, "-f", "-", input=widget("w", group, size=1, replicas=1))
    # status is ignored on the main resource, written through /status
    server.kubectl("patch", f"widgets.{group}", "w", "-n", ns, "--type=merge", "-p", '{"status":{"replicas":5}}')
    assert "status" not in server.kubectl_json("get", f"widgets.{group}", "w", "-n", ns)
    server.kubectl("patch", f"widgets.{group}", "w", "-n", ns, "--subresource=status", "--type=merge",
                   "-p", '{"status":{"replicas":1,"conditions":[{"type":"Ready","status":"True"}]}}')
    w = server.kubectl_json("get", f"widgets.{group}", "w", "-n", ns)
    assert w["status"]["replicas"] == 1 and w["metadata"]["generation"] == 1
    assert server.kubectl("get", "wd", "w", "-n", ns).stdout.splitlines()[1].split()[3] == "True"
    server.kubectl("scale", f"widgets.{group}", "w", "-n", ns, "--replicas=3")
    w = server.kubectl_json("get", f"widgets.{group}", "w", "-n", ns)
    assert w["spec"]["replicas"] == 3 and w["metadata"]["generation"] == 2


def test_two_versions_and_watch(server, ns, group):
    watch = subprocess.Popen(["kubectl", "get", f"widgets.{group}", "-n", ns, "-w", "-o", "name"],
                             stdout=subprocess.PIPE, text=True, env=server.env)
    try:
        time.sleep(1)
        server.kubectl("apply", "-n", ns, "-f", "-", input=widget("w", group, size=4))
        assert watch.stdout.readline().strip() == f"widget.{group}/w"
    finally:
        watch.kill()
        watch.wait()
    old = server.kubectl_json("get", f"widgets.v1beta1.{group}", "w", "-n", ns)
    assert old["apiVersion"] == f"{group}/v1beta1" and old["spec"]["size"] == 4


def test_deleting_the_crd_deletes_its_objects(server, ns):
    g = f"gone-{ns}.example.com"
    server.kubectl("apply", "-f", "-", input=json.dumps(crd(g)))
    for i in range(3):
        server.kubectl("apply", "-n", ns, "-f", "-", input=widget(f"w{i}", g, size=1))
    server.kubectl("delete", "crd", f"widgets.{g}", "--timeout=30s")
    assert server.kubectl("get", "crd", f"widgets.{g}", check=False).returncode == 1
    eventually(lambda: g not in server.kubectl("api-resources", "-o", "name").stdout)
    server.kubectl("apply", "-f", "-", input=json.dumps(crd(g)))  # made again: empty
    assert server.kubectl_json("get", f"widgets.{g}", "-n", ns)["items"] == []
    server.kubectl("delete", "crd", f"widgets.{g}")


def test_bad_crds_get_the_real_errors(server):
    bad = crd("bad.example.com")
    bad["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"].pop("type")
    cp = server.kubectl("apply", "-f", "-", input=json.dumps(bad), check=False)
    assert cp.stderr.strip() == ('The CustomResourceDefinition "widgets.bad.example.com" is invalid: spec.versions[0]'
                                 '.schema.openAPIV3Schema.properties[spec].type: Required value: must not be empty for '
                                 'specified object fields')
    bad = crd("bad.example.com")
    bad["metadata"]["name"] = "gadgets.bad.example.com"
    cp = server.kubectl("apply", "-f", "-", input=json.dumps(bad), check=False)
    assert 'metadata.name: Invalid value: "gadgets.bad.example.com": must be spec.names.plural+"."+spec.group' \
        in cp.stderr


def test_a_thousand_objects_list_as_a_table(server, ns, group):
    items = [json.loads(widget(f"w{i:04d}", group, size=1 + i % 10)) for i in range(1000)]
    server.kubectl("create", "-n", ns, "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "List",
                                                                    "items": items}), timeout=300)
    lines = server.kubectl("get", "wd", "-n", ns, "--chunk-size=0").stdout.splitlines()
    assert len(lines) == 1001 and lines[1].split()[:3] == ["w0000", "1", "red"]
