"""CRD schemas, pure: structural checks, validation messages, pruning, defaults, printer-column
JSON paths and version ordering."""

from __future__ import annotations

from pocketkube.apiserver import crdschema
from pocketkube.apiserver.customresources import jsonpath
from pocketkube.apiserver.kinds.registry import version_priority

SCHEMA = {"type": "object", "properties": {
    "spec": {"type": "object", "required": ["size"], "properties": {
        "size": {"type": "integer", "minimum": 1, "exclusiveMaximum": True, "maximum": 10},
        "tags": {"type": "array", "maxItems": 2, "items": {"type": "string", "minLength": 2}},
        "mode": {"type": "string", "default": "fast"},
        "port": {"x-kubernetes-int-or-string": True},
        "labels": {"type": "object", "additionalProperties": {"type": "string"}},
        "free": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
        "opt": {"type": "string", "nullable": True}}}}}


def messages(value):
    return [str(e) for e in crdschema.validate(value, SCHEMA, "")]


def test_validation_messages():
    assert messages({"spec": {"size": 10}}) == [
        "spec.size: Invalid value: 10: spec.size in body should be less than 10"]
    assert messages({"spec": {"size": 0, "tags": ["a", "bb", "cc"]}}) == [
        "spec.size: Invalid value: 0: spec.size in body should be greater than or equal to 1",
        "spec.tags: Too many: 3: must have at most 2 items",
        'spec.tags[0]: Invalid value: "a": spec.tags[0] in body should be at least 2 chars long']
    assert messages({"spec": {"size": 1, "port": 1.5, "labels": {"a": 1}, "opt": None}}) == [
        'spec.port: Invalid value: "number": spec.port in body must be of type integer,string: "number"',
        'spec.labels[a]: Invalid value: "integer": spec.labels[a] in body must be of type string: "integer"']
    assert messages({"spec": {}}) == ["spec.size: Required value"]


def test_prune_and_defaults():
    obj = {"apiVersion": "x/v1", "kind": "W", "metadata": {"name": "a"}, "junk": 1,
           "spec": {"size": 1, "other": 2, "free": {"any": {"thing": 1}}, "labels": {"k": "v"}}}
    assert crdschema.prune(obj, SCHEMA) == ["junk", "spec.other"]
    crdschema.apply_defaults(obj, SCHEMA)
    assert obj == {"apiVersion": "x/v1", "kind": "W", "metadata": {"name": "a"},
                   "spec": {"size": 1, "free": {"any": {"thing": 1}}, "labels": {"k": "v"}, "mode": "fast"}}


def test_structural():
    assert crdschema.structural_errors(SCHEMA, "s") == []
    errs = [str(e) for e in crdschema.structural_errors(
        {"type": "object", "properties": {"a": {"properties": {}}, "b": {"type": "array"}}}, "s")]
    assert errs == ["s.properties[a].type: Required value: must not be empty for specified object fields",
                    "s.properties[b].items: Required value: must be specified"]
    assert [str(e) for e in crdschema.structural_errors({"type": "string"}, "s")] == [
        's.type: Invalid value: "string": must be object at the root']


def test_jsonpath_and_versions():
    obj = {"status": {"conditions": [{"type": "A", "status": "False"}, {"type": "Ready", "status": "True"}]},
           "spec": {"items": [1, 2]}}
    assert jsonpath(obj, '.status.conditions[?(@.type=="Ready")].status') == ["True"]
    assert jsonpath(obj, ".spec.items[1]") == [2]
    assert jsonpath(obj, ".spec.missing") == []
    assert sorted(["v1beta1", "v2", "v1", "v1alpha1", "foo"], key=version_priority) == [
        "v2", "v1", "v1beta1", "v1alpha1", "foo"]


def test_cel_rules_with_messages_paths_and_transitions():
    schema = {"type": "object", "properties": {"spec": {
        "type": "object",
        "x-kubernetes-validations": [
            {"rule": "self.min <= self.max", "message": "min must not exceed max"},
            {"rule": "self.mode == oldSelf.mode", "message": "mode is immutable", "fieldPath": ".mode"},
            {"rule": "!has(self.hostname) || self.protocol != 'TCP'", "reason": "FieldValueForbidden",
             "message": "hostname must not be set for TCP"},
            {"rule": "url(self.mode).getScheme() == 'https'"},  # a Kubernetes CEL function not here: skipped
            {"rule": "self.mode.split('/')[0].size() < 3", "message": "prefix too long"}],  # the strings extension
        "properties": {"min": {"type": "integer"}, "max": {"type": "integer"}, "mode": {"type": "string"},
                       "protocol": {"type": "string"}, "hostname": {"type": "string"},
                       "ports": {"type": "array", "items": {"type": "integer",
                                                            "x-kubernetes-validations": [{"rule": "self > 0"}]}}}}}}
    ok = {"spec": {"min": 1, "max": 2, "mode": "a", "protocol": "UDP", "hostname": "h", "ports": [1]}}
    assert crdschema.validate(ok, schema, "") == []
    bad = {"spec": {"min": 3, "max": 2, "mode": "bbbb/x", "protocol": "TCP", "hostname": "h", "ports": [1, 0]}}
    assert [str(e) for e in crdschema.validate(bad, schema, "")] == [
        'spec.ports[1]: Invalid value: "integer": failed rule: self > 0',
        'spec: Invalid value: "object": min must not exceed max',
        "spec: Forbidden: hostname must not be set for TCP",
        'spec: Invalid value: "object": prefix too long']
    assert [str(e) for e in crdschema.validate(bad, schema, "", ok)][2] == \
        'spec.mode: Invalid value: "object": mode is immutable'
