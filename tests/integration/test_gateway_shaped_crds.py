"""CRDs shaped like the Gateway API's standard channel (our own, smaller: the same group, kinds,
structural schema style, list-map keys and CEL `x-kubernetes-validations` with their messages),
applied with the real kubectl: established at once, `kubectl explain gateway.spec` reads the
schema, a valid Gateway is stored, and invalid ones are refused with the schema's own messages."""

from __future__ import annotations

import json

import pytest
import yaml

from tests.integration.test_endpoints import eventually

pytestmark = pytest.mark.usefixtures("server")

GATEWAY_CRD = yaml.safe_load("""
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: gateways.gateway.networking.k8s.io
  annotations: {gateway.networking.k8s.io/bundle-version: v1.2.1, gateway.networking.k8s.io/channel: standard}
spec:
  group: gateway.networking.k8s.io
  scope: Namespaced
  names: {plural: gateways, singular: gateway, kind: Gateway, listKind: GatewayList, shortNames: [gtw], categories: [gateway-api]}
  versions:
  - name: v1
    served: true
    storage: true
    subresources: {status: {}}
    additionalPrinterColumns:
    - {name: Class, type: string, jsonPath: .spec.gatewayClassName}
    - {name: Address, type: string, jsonPath: '.status.addresses[*].value'}
    - {name: Programmed, type: string, jsonPath: '.status.conditions[?(@.type=="Programmed")].status'}
    - {name: Age, type: date, jsonPath: .metadata.creationTimestamp}
    schema:
      openAPIV3Schema:
        description: Gateway represents an instance of a service-traffic handling infrastructure.
        type: object
        required: [spec]
        properties:
          apiVersion: {type: string}
          kind: {type: string}
          metadata: {type: object}
          spec:
            description: Spec defines the desired state of Gateway.
            type: object
            required: [gatewayClassName, listeners]
            properties:
              gatewayClassName:
                description: GatewayClassName used for this Gateway.
                type: string
                minLength: 1
                maxLength: 253
              listeners:
                description: Listeners associated with this Gateway.
                type: array
                minItems: 1
                maxItems: 64
                x-kubernetes-list-type: map
                x-kubernetes-list-map-keys: [name]
                items:
                  type: object
                  required: [name, port, protocol]
                  properties:
                    name:
                      type: string
                      minLength: 1
                      maxLength: 253
                      pattern: '^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$'
                    hostname: {type: string, maxLength: 253}
                    port: {type: integer, format: int32, minimum: 1, maximum: 65535}
                    protocol:
                      type: string
                      maxLength: 255
                      pattern: '^[a-zA-Z0-9]([-a-zA-Z0-9]*[a-zA-Z0-9])?$|[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*\\/[A-Za-z0-9]+$'
                x-kubernetes-validations:
                - message: tls must not be specified for protocols ['HTTP', 'TCP', 'UDP']
                  rule: 'self.all(l, l.protocol in [''HTTP'', ''TCP'', ''UDP''] ? !has(l.tls) : true)'
                - message: Listener name must be unique within the Gateway
                  rule: self.all(l1, self.exists_one(l2, l1.name == l2.name))
                - message: Combination of port, protocol and hostname must be unique for each listener
                  rule: 'self.all(l1, self.exists_one(l2, l1.port == l2.port && l1.protocol == l2.protocol && (has(l1.hostname) && has(l2.hostname) ? l1.hostname == l2.hostname : !has(l1.hostname) && !has(l2.hostname))))'
          status:
            type: object
            properties:
              addresses:
                type: array
                items: {type: object, properties: {type: {type: string}, value: {type: string}}}
              conditions:
                type: array
                items: {type: object, x-kubernetes-preserve-unknown-fields: true}
""")


def gateway(name: str, *listeners: dict) -> str:
    return json.dumps({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway", "metadata": {"name": name},
                       "spec": {"gatewayClassName": "example", "listeners": list(listeners)}})


def test_gateway_shaped_crd_is_served_explained_and_validates_with_its_cel_rules(server, ns):
    server.kubectl("apply", "-f", "-", input=json.dumps(GATEWAY_CRD))
    try:
        eventually(lambda: "gateways" in server.kubectl("api-resources", "--api-group=gateway.networking.k8s.io").stdout)
        crd = server.kubectl_json("get", "crd", "gateways.gateway.networking.k8s.io")
        assert any(c["type"] == "Established" and c["status"] == "True" for c in crd["status"]["conditions"])
        explained = server.kubectl("explain", "gateway.spec").stdout
        assert "gatewayClassName\t<string> -required-" in explained and "listeners\t<[]Object> -required-" in explained
        assert "GatewayClassName used for this Gateway." in explained
        server.kubectl("apply", "-n", ns, "-f", "-",
                       input=gateway("web", {"name": "http", "port": 80, "protocol": "HTTP"},
                                     {"name": "https", "port": 443, "protocol": "HTTPS", "hostname": "a.example"}))
        row = server.kubectl("get", "gtw", "web", "-n", ns, "--no-headers").stdout.split()
        assert row[:2] == ["web", "example"], row
        bad = server.kubectl("apply", "-n", ns, "-f", "-", check=False,
                             input=gateway("dup", {"name": "http", "port": 80, "protocol": "HTTP"},
                                           {"name": "http", "port": 8080, "protocol": "HTTP"}))
        assert bad.returncode == 1
        assert "Listener name must be unique within the Gateway" in bad.stderr, bad.stderr
        bad = server.kubectl("apply", "-n", ns, "-f", "-", check=False,
                             input=gateway("same-port", {"name": "a", "port": 80, "protocol": "HTTP"},
                                           {"name": "b", "port": 80, "protocol": "HTTP"}))
        assert "Combination of port, protocol and hostname must be unique for each listener" in bad.stderr, bad.stderr
        bad = server.kubectl("apply", "-n", ns, "-f", "-", check=False,
                             input=gateway("port", {"name": "a", "port": 70000, "protocol": "HTTP"}))
        assert ('spec.listeners[0].port: Invalid value: 70000: spec.listeners[0].port in body should be less than '
                'or equal to 65535') in bad.stderr, bad.stderr
        bad = server.kubectl("apply", "-n", ns, "-f", "-", check=False,
                             input=json.dumps({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway",
                                               "metadata": {"name": "empty"}, "spec": {"gatewayClassName": "x",
                                                                                       "listeners": []}}))
        assert "spec.listeners: Invalid value: 0: spec.listeners in body should have at least 1 items" in bad.stderr, \
            bad.stderr
        assert server.kubectl("get", "gateways", "-n", ns, "-o", "name").stdout.split() == ["gateway.gateway.networking.k8s.io/web"]
    finally:
        server.kubectl("delete", "crd", "gateways.gateway.networking.k8s.io", "--wait=false", check=False)
