"""Field schema: unknown/duplicate fields, pruning, Go type errors, OpenAPI v3, the generated data."""

import importlib.util
import json
from pathlib import Path

import pytest

from pocketkube.apiserver import schema

ROOT = Path(__file__).resolve().parents[2]


def deployment(**spec_extra):
    spec = {
        "replicas": 2,
        "selector": {"matchLabels": {"app": "web"}},
        "template": {
            "metadata": {"labels": {"app": "web"}},
            "spec": {"containers": [{"name": "web", "image": "nginx", "ports": [{"containerPort": 80}]}]},
        },
    }
    spec.update(spec_extra)
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"}, "spec": spec}


# ---------------------------------------------------------------- unknown fields


def test_valid_deployment_has_no_unknown_fields():
    assert schema.unknown_fields("apps/v1", "Deployment", deployment()) == []


@pytest.mark.parametrize("mutate, expected", [
    (lambda d: d["spec"].update(replica=3), ["spec.replica"]),
    (lambda d: d.update(foo=1), ["foo"]),
    (lambda d: d["metadata"].update(nmae="x"), ["metadata.nmae"]),
    (lambda d: d["spec"]["template"]["spec"]["containers"][0].update(imagee="x"),
     ["spec.template.spec.containers[0].imagee"]),
    (lambda d: d["spec"]["template"]["spec"]["containers"][0]["ports"][0].update(hostport=1),
     ["spec.template.spec.containers[0].ports[0].hostport"]),
    (lambda d: d["spec"]["template"]["spec"]["containers"].append({"name": "b", "bogus": {"x": 1}}),
     ["spec.template.spec.containers[1].bogus"]),
    (lambda d: d["spec"].update(strategy={"rollingUpdate": {"maxSurge": "25%", "maxSurg": 1}}),
     ["spec.strategy.rollingUpdate.maxSurg"]),
    (lambda d: d["spec"]["selector"].update(matchExpressions=[{"key": "a", "operator": "In", "value": []}]),
     ["spec.selector.matchExpressions[0].value"]),
    # Case matters: the decoder is case-sensitive.
    (lambda d: d["spec"].update(Replicas=1), ["spec.Replicas"]),
])
def test_unknown_fields_at_every_depth(mutate, expected):
    obj = deployment()
    mutate(obj)
    assert schema.unknown_fields("apps/v1", "Deployment", obj) == expected


def test_unknown_fields_are_reported_in_document_order():
    obj = deployment()
    obj["spec"] = {"zeta": 1, **obj["spec"], "alpha": 2}
    obj["spec"]["template"]["spec"]["containers"][0]["x"] = 1
    assert schema.unknown_fields("apps/v1", "Deployment", obj) == [
        "spec.zeta", "spec.template.spec.containers[0].x", "spec.alpha"]


@pytest.mark.parametrize("api_version, kind, obj", [
    # map values are free-form: any label, annotation, selector or data key is fine
    ("v1", "ConfigMap", {"metadata": {"labels": {"anything": "x"}, "annotations": {"a/b": "c"}},
                         "data": {"whatever": "v"}}),
    ("v1", "Service", {"spec": {"selector": {"free": "form"}, "ports": [{"port": 80, "targetPort": "http"}]}}),
    # Quantities and IntOrStrings are opaque values, not structs
    ("v1", "Pod", {"spec": {"containers": [{"name": "c", "resources": {"limits": {"nvidia.com/gpu": "1"}}}]}}),
    # FieldsV1 (RawExtension-like): anything inside is accepted
    ("v1", "Pod", {"metadata": {"managedFields": [{"manager": "kubectl", "fieldsV1": {"f:spec": {"f:x": {}}}}]}}),
])
def test_free_form_values_are_never_unknown(api_version, kind, obj):
    assert schema.unknown_fields(api_version, kind, obj) == []


def test_values_of_the_wrong_type_are_not_walked():
    obj = deployment(template=["not", "a", "struct"])
    assert schema.unknown_fields("apps/v1", "Deployment", obj) == []


@pytest.mark.parametrize("api_version, kind, obj, expected", [
    ("v1", "Service", {"spec": {"ports": [{"port": 80, "nodeport": 30000}]}}, ["spec.ports[0].nodeport"]),
    ("v1", "Event", {"involvedObject": {"kind": "Pod", "nam": "x"}}, ["involvedObject.nam"]),
    ("events.k8s.io/v1", "Event", {"regarding": {"kind": "Pod"}, "involvedObject": {}}, ["involvedObject"]),
    ("discovery.k8s.io/v1", "EndpointSlice", {"endpoints": [{"addresses": ["10.0.0.1"], "ready": True}]},
     ["endpoints[0].ready"]),
    ("networking.k8s.io/v1", "Ingress",
     {"spec": {"rules": [{"http": {"paths": [{"backend": {"serviceName": "x"}}]}}]}},
     ["spec.rules[0].http.paths[0].backend.serviceName"]),
    ("autoscaling/v1", "Scale", {"spec": {"replicas": 3, "replica": 1}}, ["spec.replica"]),
    ("meta/v1", "DeleteOptions", {"propagationPolicy": "Foreground", "grace": 1}, ["grace"]),
    ("coordination.k8s.io/v1", "Lease", {"spec": {"holderIdentity": "a", "holder": "b"}}, ["spec.holder"]),
    ("unknown/v1", "Thing", {"anything": 1}, []),
])
def test_unknown_fields_of_other_kinds(api_version, kind, obj, expected):
    assert schema.unknown_fields(api_version, kind, obj) == expected


# ---------------------------------------------------------------- messages and duplicates


def test_strict_error_message_one_field():
    assert schema.strict_error_message("apps/v1", "Deployment", ["spec.replica"], []) == (
        'Deployment in version "v1" cannot be handled as a Deployment: '
        'strict decoding error: unknown field "spec.replica"')


def test_strict_error_message_several_fields_and_duplicates():
    message = schema.strict_error_message("v1", "Service", ["spec.foo", "bar"], ["metadata.name"])
    assert message == ('Service in version "v1" cannot be handled as a Service: strict decoding error: '
                       'unknown field "spec.foo", unknown field "bar", duplicate field "metadata.name"')


def test_parse_json_strict_keeps_last_value_and_reports_paths():
    body = b'{"metadata":{"name":"a","name":"b","labels":{"x":"1","x":"2"}},"items":[{"k":1,"k":2}],"z":1,"z":2}'
    obj, duplicates = schema.parse_json_strict(body)
    assert obj == {"metadata": {"name": "b", "labels": {"x": "2"}}, "items": [{"k": 2}], "z": 2}
    assert duplicates == ["metadata.name", "metadata.labels.x", "items[0].k", "z"]


def test_parse_json_strict_without_duplicates():
    assert schema.parse_json_strict('{"a": [1, {"b": null}]}') == ({"a": [1, {"b": None}]}, [])


def test_decode_json_interleaves_unknown_and_duplicate_in_document_order():
    body = (b'{"kind":"Deployment","spec":{"foo":1,"replicas":1,"replicas":2},'
            b'"metadata":{"labels":{"a":"1","a":"2"}},"kind":"Deployment","zz":1,"zz":2}')
    result = schema.decode_json("apps/v1", "Deployment", body)
    assert result.type_error is None
    assert result.obj["spec"] == {"foo": 1, "replicas": 2}
    # repeated unknown keys are reported once (Go deduplicates identical messages)
    assert result.strict_errors == [
        'unknown field "spec.foo"', 'duplicate field "spec.replicas"',
        'duplicate field "metadata.labels.a"', 'duplicate field "kind"', 'unknown field "zz"']
    assert schema.cannot_handle_message("apps/v1", "Deployment", schema.strict_decoding_error(
        result.strict_errors[:1])) == ('Deployment in version "v1" cannot be handled as a Deployment: '
                                       'strict decoding error: unknown field "spec.foo"')


def test_decode_json_walks_both_values_of_a_duplicated_field():
    body = b'{"spec":{"ports":[{"prot":1}]},"spec":{"ports":[{"port":80,"x":1}]}}'
    result = schema.decode_json("v1", "Service", body)
    assert result.strict_errors == [
        'unknown field "spec.ports[0].prot"', 'duplicate field "spec"', 'unknown field "spec.ports[0].x"']


def test_decode_json_ignores_duplicates_where_go_does_not_look():
    # inside an unknown field (skipped) and inside free-form FieldsV1 (raw bytes)
    body = (b'{"bogus":{"a":1,"a":2},"metadata":{"managedFields":[{"fieldsV1":{"f:a":{},"f:a":{}}}]}}')
    assert schema.decode_json("v1", "Pod", body).strict_errors == ['unknown field "bogus"']


def test_strict_errors_are_capped_at_100():
    body = json.dumps({f"f{i}": i for i in range(150)})
    assert len(schema.decode_json("v1", "ConfigMap", body).strict_errors) == 100


def test_decode_json_type_error_wins_over_strict_errors():
    result = schema.decode_json("apps/v1", "Deployment", b'{"spec":{"foo":1,"replicas":"3"}}')
    assert result.strict_errors == []
    assert result.type_error == (
        "json: cannot unmarshal string into Go struct field DeploymentSpec.spec.replicas of type int32")


def test_decode_json_rejects_malformed_json():
    with pytest.raises(ValueError):
        schema.decode_json("v1", "Pod", b'{"a":')
    with pytest.raises(ValueError):
        schema.decode_json("v1", "Pod", b'{"a": NaN}')


# ---------------------------------------------------------------- pruning


def test_prune_unknown_drops_unknown_fields_everywhere():
    obj = deployment(replica=3)
    obj["extra"] = True
    container = obj["spec"]["template"]["spec"]["containers"][0]
    container["imagee"] = "x"
    container["ports"][0]["bogus"] = 1
    pruned = schema.prune_unknown("apps/v1", "Deployment", obj)
    assert pruned == deployment()
    assert "imagee" in container  # the input is not modified


def test_prune_unknown_keeps_free_form_values_whole():
    obj = {"metadata": {"labels": {"any": "x"},
                        "managedFields": [{"manager": "m", "fieldsV1": {"f:x": {}}, "bogus": 1}]},
           "spec": {"containers": [{"name": "c", "resources": {"limits": {"cpu": "1", "x/y": 2}}}]}}
    pruned = schema.prune_unknown("v1", "Pod", obj)
    assert pruned["metadata"]["labels"] == {"any": "x"}
    assert pruned["metadata"]["managedFields"] == [{"manager": "m", "fieldsV1": {"f:x": {}}}]
    assert pruned["spec"]["containers"][0]["resources"] == {"limits": {"cpu": "1", "x/y": 2}}


def test_prune_unknown_of_unknown_kind_returns_the_object():
    obj = {"a": 1}
    assert schema.prune_unknown("x/v1", "Thing", obj) is obj


# ---------------------------------------------------------------- type errors

CTX = "spec.template.spec.containers"


@pytest.mark.parametrize("api_version, kind, obj, expected", [
    ("apps/v1", "Deployment", {"spec": {"replicas": "3"}},
     "json: cannot unmarshal string into Go struct field DeploymentSpec.spec.replicas of type int32"),
    ("apps/v1", "Deployment", {"spec": {"replicas": 1.5}},
     "json: cannot unmarshal number 1.5 into Go struct field DeploymentSpec.spec.replicas of type int32"),
    ("apps/v1", "Deployment", {"spec": {"replicas": 3000000000}},
     "json: cannot unmarshal number 3000000000 into Go struct field DeploymentSpec.spec.replicas of type int32"),
    ("apps/v1", "Deployment", {"spec": {"template": {"spec": {"containers": [{"env": [{"name": "A", "value": 1}]}]}}}},
     f"json: cannot unmarshal number into Go struct field EnvVar.{CTX}.env.value of type string"),
    ("apps/v1", "Deployment", {"spec": {"template": {"spec": {"containers": [{"command": "sh -c"}]}}}},
     f"json: cannot unmarshal string into Go struct field Container.{CTX}.command of type []string"),
    ("apps/v1", "Deployment", {"spec": {"template": {"spec": {"containers": [{"args": [1]}]}}}},
     f"json: cannot unmarshal number into Go struct field Container.{CTX}.args of type string"),
    ("apps/v1", "Deployment", {"spec": {"template": {"spec": {"containers": {"name": "a"}}}}},
     "json: cannot unmarshal object into Go struct field PodSpec.spec.template.spec.containers of type []v1.Container"),
    ("apps/v1", "Deployment", {"spec": {"template": "x"}},
     "json: cannot unmarshal string into Go struct field DeploymentSpec.spec.template of type v1.PodTemplateSpec"),
    ("apps/v1", "Deployment", {"spec": {"paused": "yes"}},
     "json: cannot unmarshal string into Go struct field DeploymentSpec.spec.paused of type bool"),
    ("v1", "Pod", {"metadata": {"labels": {"version": 1}}},
     "json: cannot unmarshal number into Go struct field ObjectMeta.metadata.labels of type string"),
    ("v1", "Pod", {"metadata": {"generation": "1"}},
     "json: cannot unmarshal string into Go struct field ObjectMeta.metadata.generation of type int64"),
    ("v1", "Pod", {"spec": {"terminationGracePeriodSeconds": True}},
     "json: cannot unmarshal bool into Go struct field PodSpec.spec.terminationGracePeriodSeconds of type int64"),
    ("v1", "Service", {"spec": {"ports": [{"port": "80"}]}},
     "json: cannot unmarshal string into Go struct field ServicePort.spec.ports.port of type int32"),
    ("v1", "Service", {"spec": {"ports": [{"nodePort": "x"}]}},
     "json: cannot unmarshal string into Go struct field ServicePort.spec.ports.nodePort of type int32"),
    ("v1", "Service", {"spec": {"ports": [{"protocol": 6}]}},
     "json: cannot unmarshal number into Go struct field ServicePort.spec.ports.protocol of type v1.Protocol"),
    ("v1", "Pod", {"spec": {"containers": [{"ports": [{"containerPort": "80"}]}]}},
     "json: cannot unmarshal string into Go struct field ContainerPort.spec.containers.ports.containerPort of type int32"),
    ("v1", "Pod", {"metadata": "x"},
     "json: cannot unmarshal string into Go struct field Pod.metadata of type v1.ObjectMeta"),
    ("v1", "Pod", {"spec": {"containers": [{"resources": {"limits": "1"}}]}},
     "json: cannot unmarshal string into Go struct field ResourceRequirements.spec.containers.resources.limits"
     " of type v1.ResourceList"),
])
def test_type_errors(api_version, kind, obj, expected):
    assert schema.type_errors(api_version, kind, obj) == [expected]
    assert schema.first_type_error(api_version, kind, obj) == expected


@pytest.mark.parametrize("api_version, kind, obj, expected", [
    # IntOrString: the inner int32 error carries the outer field context
    ("v1", "Service", {"spec": {"ports": [{"targetPort": True}]}},
     "json: cannot unmarshal bool into Go struct field ServicePort.spec.ports.targetPort of type int32"),
    ("apps/v1", "Deployment", {"spec": {"strategy": {"rollingUpdate": {"maxSurge": 1.5}}}},
     "json: cannot unmarshal number 1.5 into Go struct field RollingUpdateDeployment.spec.strategy.rollingUpdate"
     ".maxSurge of type int32"),
    # Quantity: ParseQuantity's own errors, no context
    ("v1", "Pod", {"spec": {"containers": [{"resources": {"limits": {"memory": "1Gb"}}}]}},
     "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'"),
    ("v1", "Pod", {"spec": {"containers": [{"resources": {"requests": {"cpu": "5ki"}}}]}},
     "unable to parse quantity's suffix"),
    ("v1", "Pod", {"spec": {"containers": [{"resources": {"requests": {"cpu": True}}}]}},
     "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'"),
    # metav1.Time: a non-string goes through json.Unmarshal into a string
    ("v1", "Pod", {"metadata": {"creationTimestamp": 5}},
     "json: cannot unmarshal number into Go struct field ObjectMeta.metadata.creationTimestamp of type string"),
    ("v1", "Pod", {"metadata": {"creationTimestamp": "yesterday"}},
     'parsing time "yesterday" as "2006-01-02T15:04:05Z07:00": cannot parse "yesterday" as "2006"'),
    ("coordination.k8s.io/v1", "Lease", {"spec": {"renewTime": "2024-01-01T00:00:00Z"}},
     'parsing time "2024-01-01T00:00:00Z" as "2006-01-02T15:04:05.000000Z07:00": cannot parse "Z" as ".000000"'),
    # []byte values are base64
    ("v1", "Secret", {"data": {"k": "not base64!"}}, "illegal base64 data at input byte 3"),
    ("v1", "Secret", {"data": {"k": 5}},
     "json: cannot unmarshal number into Go struct field Secret.data of type []uint8"),
])
def test_custom_unmarshaler_errors(api_version, kind, obj, expected):
    assert schema.first_type_error(api_version, kind, obj) == expected


@pytest.mark.parametrize("api_version, kind, obj", [
    ("v1", "Service", {"spec": {"ports": [{"port": 80, "targetPort": "http"}, {"port": 81, "targetPort": 8081}]}}),
    ("v1", "Pod", {"metadata": {"creationTimestamp": None, "labels": {"a": "b"}},
                   "spec": {"containers": [{"resources": {"limits": {"cpu": "500m", "memory": 128}}}]}}),
    ("v1", "Secret", {"data": {"k": "aGVsbG8=", "n": None}, "stringData": {"x": "y"}}),
    ("coordination.k8s.io/v1", "Lease", {"spec": {"renewTime": "2024-01-01T00:00:00.000000Z"}}),
    ("v1", "Pod", {"metadata": {"creationTimestamp": "2024-02-29T10:00:00+01:00"}, "spec": None}),
    ("apps/v1", "Deployment", deployment(bogus=[1, 2])),  # unknown fields are not type-checked
])
def test_well_typed_objects_have_no_type_errors(api_version, kind, obj):
    assert schema.type_errors(api_version, kind, obj) == []
    assert schema.type_error_message(api_version, kind, obj) is None


def test_first_saved_error_is_reported():
    obj = {"spec": {"replicas": "3", "minReadySeconds": "x"}}
    assert schema.type_errors("apps/v1", "Deployment", obj) == [
        "json: cannot unmarshal string into Go struct field DeploymentSpec.spec.replicas of type int32",
        "json: cannot unmarshal string into Go struct field DeploymentSpec.spec.minReadySeconds of type int32"]
    assert schema.type_error_message("apps/v1", "Deployment", obj) == (
        'Deployment in version "v1" cannot be handled as a Deployment: json: cannot unmarshal string into'
        ' Go struct field DeploymentSpec.spec.replicas of type int32')


def test_an_unmarshaler_error_stops_decoding_and_wins():
    obj = {"metadata": {"labels": {"a": 1}},
           "spec": {"ports": [{"targetPort": []}], "clusterIP": 5}}
    errors = schema.type_errors("v1", "Service", obj)
    assert errors == [
        "json: cannot unmarshal number into Go struct field ObjectMeta.metadata.labels of type string",
        "json: cannot unmarshal array into Go struct field ServicePort.spec.ports.targetPort of type int32"]
    assert schema.first_type_error("v1", "Service", obj) == errors[1]


@pytest.mark.parametrize("value, expected", [
    ("2024-01-01T00:00:00Z", None),
    ("2024-01-01T00:00:00.5-07:00", None),
    ("2024-13-01T00:00:00Z", 'parsing time "2024-13-01T00:00:00Z": month out of range'),
    ("2023-02-29T00:00:00Z", 'parsing time "2023-02-29T00:00:00Z": day out of range'),
    ("2024-01-01 00:00:00Z",
     'parsing time "2024-01-01 00:00:00Z" as "2006-01-02T15:04:05Z07:00": cannot parse " 00:00:00Z" as "T"'),
    ("2024-01-01T00:00:00", 'parsing time "2024-01-01T00:00:00" as "2006-01-02T15:04:05Z07:00": '
                            'cannot parse "" as "Z07:00"'),
    ("2024-01-01T00:00:00Zjunk", 'parsing time "2024-01-01T00:00:00Zjunk": extra text: "junk"'),
])
def test_time_parse_errors(value, expected):
    assert schema.time_parse_error(value) == expected


def _times_to_check() -> list[str]:
    """Times in and around the forms the fast path takes: every field at and past its limits,
    leap days, fractions, zones, and characters Python calls digits but Go does not."""
    values = []
    for year in ("2024", "2023", "0000", "1900", "2000", "9999"):
        for month in ("00", "01", "02", "12", "13"):
            for day in ("00", "01", "28", "29", "30", "31", "32"):
                values.append(f"{year}-{month}-{day}T12:30:45Z")
    for clock in ("00:00:00", "23:59:59", "24:00:00", "23:60:00", "23:59:60", "9:00:00", "09:0:00"):
        values.append(f"2024-06-15T{clock}Z")
    for tail in ("Z", ".5Z", ".123456Z", ",123456Z", ".1234567Z", ".Z", "z", "+01:00", ".123456+01:00", "", "ZZ"):
        values.append(f"2024-06-15T10:11:12{tail}")
    values += ["２０２４-06-15T10:11:12Z", "2024-06-15T10:11:1２Z", "2024-06-15t10:11:12Z", " 2024-06-15T10:11:12Z"]
    return values


@pytest.mark.parametrize("micro", [False, True])
def test_time_parse_errors_fast_path_agrees_with_the_layout_walk(micro, monkeypatch):
    values = _times_to_check()
    assert any(schema._plainly_valid_time(v, micro) for v in values)  # the fast path is taken
    fast = [schema.time_parse_error(v, micro) for v in values]
    monkeypatch.setattr(schema, "_plainly_valid_time", lambda value, micro: False)
    assert fast == [schema.time_parse_error(v, micro) for v in values]
    assert any(result is None for result in fast) and any(result is not None for result in fast)


@pytest.mark.parametrize("text, expected", [
    ("1", None), ("1.5Gi", None), ("500m", None), ("1e3", None), ("-2", None), ("0", None),
    ("abc", "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'"),
    ("5ki", "unable to parse quantity's suffix"),
    ("Gi", "unable to parse numeric part of quantity"),
])
def test_quantity_parse_errors(text, expected):
    assert schema.quantity_parse_error(text) == expected


# ---------------------------------------------------------------- OpenAPI v3


def test_openapi_components_for_apps():
    schemas = schema.openapi_v3_components("apps/v1")["schemas"]
    dep = schemas["io.k8s.api.apps.v1.Deployment"]
    assert dep["x-kubernetes-group-version-kind"] == [{"group": "apps", "kind": "Deployment", "version": "v1"}]
    assert dep["properties"]["spec"] == {"allOf": [{"$ref": "#/components/schemas/io.k8s.api.apps.v1.DeploymentSpec"}],
                                         "description": "Specification of the desired behavior of the Deployment."}
    spec = schemas["io.k8s.api.apps.v1.DeploymentSpec"]
    assert spec["properties"]["replicas"] == {
        "format": "int32", "type": "integer",
        "description": "Number of desired pods. This is a pointer to distinguish between explicit zero "
                       "and not specified. Defaults to 1."}
    assert spec["description"] == "DeploymentSpec is the specification of the desired behavior of the Deployment."
    protocol = schemas["io.k8s.api.core.v1.ContainerPort"]["properties"]["protocol"]
    assert protocol["enum"] == ["SCTP", "TCP", "UDP"]
    assert spec["required"] == ["selector", "template"]
    containers = dict(schemas["io.k8s.api.core.v1.PodSpec"]["properties"]["containers"])
    assert containers.pop("description").startswith("List of containers belonging to the pod.")
    assert containers == {"type": "array", "items": {
        "allOf": [{"$ref": "#/components/schemas/io.k8s.api.core.v1.Container"}], "default": {}}}
    assert schemas["io.k8s.apimachinery.pkg.util.intstr.IntOrString"]["format"] == "int-or-string"
    assert "io.k8s.apimachinery.pkg.apis.meta.v1.DeleteOptions" in schemas
    assert "io.k8s.api.core.v1.Service" not in schemas


def test_openapi_refs_all_resolve_and_no_patch_strategy():
    for gv in ("v1", "apps/v1", "discovery.k8s.io/v1", "networking.k8s.io/v1", "events.k8s.io/v1",
               "coordination.k8s.io/v1", "autoscaling/v1"):
        schemas = schema.openapi_v3_components(gv)["schemas"]
        text = json.dumps(schemas)
        assert "x-kubernetes-patch" not in text
        for ref in set(part.split('"')[0] for part in text.split("#/components/schemas/")[1:]):
            assert ref in schemas, (gv, ref)


def test_openapi_core_event_and_events_event_are_distinct():
    core = schema.openapi_v3_components("v1")["schemas"]["io.k8s.api.core.v1.Event"]
    events = schema.openapi_v3_components("events.k8s.io/v1")["schemas"]["io.k8s.api.events.v1.Event"]
    assert "involvedObject" in core["properties"] and "regarding" in events["properties"]
    assert events["x-kubernetes-group-version-kind"] == [
        {"group": "events.k8s.io", "kind": "Event", "version": "v1"}]


# ---------------------------------------------------------------- generated data

SERVED = [
    ("v1", "Namespace"), ("v1", "Pod"), ("v1", "Service"), ("v1", "Endpoints"), ("v1", "Node"),
    ("v1", "Secret"), ("v1", "ConfigMap"), ("v1", "ServiceAccount"), ("v1", "Event"),
    ("apps/v1", "Deployment"), ("apps/v1", "ReplicaSet"), ("apps/v1", "StatefulSet"),
    ("apps/v1", "DaemonSet"), ("discovery.k8s.io/v1", "EndpointSlice"),
    ("networking.k8s.io/v1", "Ingress"), ("networking.k8s.io/v1", "IngressClass"),
    ("events.k8s.io/v1", "Event"), ("coordination.k8s.io/v1", "Lease"), ("autoscaling/v1", "Scale"),
    ("meta/v1", "DeleteOptions"),
]


@pytest.mark.parametrize("api_version, kind", SERVED)
def test_every_served_kind_has_a_schema(api_version, kind):
    assert schema.has_schema(api_version, kind)
    assert (api_version, kind) in schema.served_kinds()
    if kind not in ("Scale", "DeleteOptions"):
        assert schema.unknown_fields(api_version, kind, {"apiVersion": api_version, "kind": kind,
                                                          "metadata": {"name": "x"}}) == []


def test_go_integer_widths_in_the_data():
    types = json.loads((ROOT / "pocketkube/apiserver/schema_data.json").read_text())["types"]
    assert types["io.k8s.api.core.v1.ServicePort"]["fields"]["nodePort"] == "int32"
    assert types["io.k8s.api.core.v1.ContainerPort"]["fields"]["containerPort"] == "int32"
    assert types["io.k8s.api.core.v1.PodSpec"]["fields"]["terminationGracePeriodSeconds"] == "int64"
    assert types["io.k8s.api.core.v1.ServicePort"]["fields"]["targetPort"] == "intstr"
    assert types["io.k8s.api.core.v1.ResourceRequirements"]["fields"]["limits"] == "{}quantity"
    assert types["io.k8s.api.core.v1.Secret"]["fields"]["data"] == "{}bytes"
    assert types["io.k8s.api.coordination.v1.LeaseSpec"]["fields"]["renewTime"] == "microtime"


def test_generator_is_deterministic_and_matches_the_committed_file():
    spec = importlib.util.spec_from_file_location("gen_schema", ROOT / "tools" / "gen_schema.py")
    gen = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gen)
    first = gen.render()
    assert first == gen.render()
    committed = (ROOT / "pocketkube/apiserver/schema_data.json").read_text()
    made_from = json.loads(committed)["source"]
    now_from = json.loads(first)["source"]
    assert made_from == now_from, (
        f"schema_data.json was generated from the {made_from}, but this environment has the "
        f"{now_from}. requirements.lock fixes the generator's inputs: run `scripts/setup` to get "
        "the locked version; if the lock moved on purpose, regenerate with "
        "`.venv/bin/python tools/gen_schema.py` and commit both files")
    regenerate = "the generator's output differs: run `.venv/bin/python tools/gen_schema.py` and commit the files"
    assert first == committed, regenerate
    assert gen.render_docs() == (ROOT / "pocketkube/apiserver/schema_docs.json").read_text(), regenerate
