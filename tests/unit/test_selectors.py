"""Label and field selectors: parsing, matching, printing and the API's error messages."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pocketkube.core.errors import APIError
from pocketkube.apiserver.fieldsets import convert_field_selector, fields_for, supported_fields
from pocketkube.core.selectors import (
    FieldSelector,
    LabelSelector,
    check_field_selector_supported,
    escape_field_value,
    format_label_selector,
    parse_field_selector,
    parse_label_selector,
    selector_from_object,
    selector_from_set,
)

LABEL_VALUE_RULE = (
    "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', "
    "and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', "
    "regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')"
)
NAME_RULE = (
    "must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an "
    "alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', "
    "regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')"
)
SUBDOMAIN_RULE = (
    "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', "
    "and must start and end with an alphanumeric character (e.g. 'example.com', regex used for "
    "validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"
)


# --- label selectors: parse + match ---------------------------------------------------

@pytest.mark.parametrize("text, labels, expected", [
    ("", {"x": "y"}, True),
    ("", None, True),
    ("x=y", {"x": "y"}, True),
    ("x=y", {"x": "z"}, False),
    ("x=y", {}, False),
    ("x==y", {"x": "y"}, True),
    ("x!=y", {"x": "z"}, True),
    ("x!=y", {"x": "y"}, False),
    ("x!=y", {}, True),  # a missing key is "not equal"
    ("x=", {"x": ""}, True),
    ("x=", {}, False),
    ("x in (a,b)", {"x": "b"}, True),
    ("x in (a,b)", {"x": "c"}, False),
    ("x in (a,b)", {}, False),
    ("x notin (a,b)", {"x": "c"}, True),
    ("x notin (a,b)", {"x": "a"}, False),
    ("x notin (a,b)", {}, True),
    ("x in ()", {"x": ""}, True),
    ("x in (abc,)", {"x": ""}, True),
    ("x", {"x": ""}, True),
    ("x", {"y": "x"}, False),
    ("!x", {"y": "z"}, True),
    ("!x", {"x": ""}, False),
    ("x>1", {"x": "2"}, True),
    ("x>1", {"x": "1"}, False),
    ("x>1", {"x": "v2"}, False),  # not an integer: no match
    ("x>1", {}, False),
    ("x<1", {"x": "0"}, True),
    ("x<1", {"x": "-5"}, True),
    ("x<1", {"x": "1"}, False),
    ("notin=in", {"notin": "in"}, True),  # keywords are identifiers in key and value position
    ("in in (notin)", {"in": "notin"}, True),
    ("app=web,tier=front", {"app": "web", "tier": "front", "x": "y"}, True),
    ("app=web,tier=front", {"app": "web"}, False),
    ("example.com/app=web", {"example.com/app": "web"}, True),
    ("x notin (abc,,def),bar,z in (),w", {"bar": "1", "w": "", "z": ""}, True),
])
def test_label_selector_matches(text, labels, expected):
    assert parse_label_selector(text).matches(labels) is expected


@pytest.mark.parametrize("text, canonical", [
    ("", ""),
    ("x=a,y=b,z=c", "x=a,y=b,z=c"),
    ("z=c,x=a,y=b", "x=a,y=b,z=c"),  # sorted by key
    ("x!=a,y=b", "x!=a,y=b"),
    ("x=", "x="),
    ("x= ", "x="),
    ("x=,z= ", "x=,z="),
    ("x= ,z= ", "x=,z="),
    ("!x", "!x"),
    ("x>1", "x>1"),
    ("x>1,z<5", "x>1,z<5"),
    ("x==a", "x==a"),
    ("x in (b,a,b)", "x in (a,b)"),  # values sorted and deduplicated
    ("x in ( value )", "x in (value)"),
    ("foo  in\t (abc)", "foo in (abc)"),
    ("x notin\n (abc)", "x notin (abc)"),
    ("x  notin\t\t\t(abc,def)", "x notin (abc,def)"),
    ("\rx", "x"),
    ("  app = web , ! tier ", "app=web,!tier"),  # sorted by key, not by operator
    ("x in (abc,)", "x in (,abc)"),
    ("x in (,)", "x in ()"),
    ("x in (a,,b)", "x in (,a,b)"),
    ("x notin ()", "x notin ()"),
    ("0.1.2.domain/99 notin (10.10.100.1, tick.tack.clock)", "0.1.2.domain/99 notin (10.10.100.1,tick.tack.clock)"),
    ("x=a \0garbage((", "x=a"),  # a NUL where a token starts ends the input, as in Go
])
def test_label_selector_canonical_string(text, canonical):
    selector = parse_label_selector(text)
    assert str(selector) == canonical
    assert parse_label_selector(canonical) == selector


@pytest.mark.parametrize("text, message", [
    ("a=(", "unable to parse requirement: found '(', expected: identifier"),
    ("x=a||y=b", f'unable to parse requirement: values[0][x]: Invalid value: "a||y": {LABEL_VALUE_RULE}'),
    ("x==a==b", "found '==', expected: ',' or 'end of string'"),
    ("!x=a", "found '=', expected: ',' or 'end of string'"),
    ("x<a", "unable to parse requirement: values[0]: Invalid value: \"a\": "
            "for 'Gt', 'Lt' operators, the value must be an integer"),
    ("x>-1", f'unable to parse requirement: values[0][x]: Invalid value: "-1": {LABEL_VALUE_RULE}'),
    ("x>-a", "unable to parse requirement: [values[0]: Invalid value: \"-a\": for 'Gt', 'Lt' operators, "
             f'the value must be an integer, values[0][x]: Invalid value: "-a": {LABEL_VALUE_RULE}]'),
    ("a b", "unable to parse requirement: found 'b', expected: in, notin, =, ==, !=, gt, lt"),
    ("x notin", "unable to parse requirement: found '' expected: '('"),
    ("x in a", "unable to parse requirement: found 'a' expected: '('"),
    ("x in (a", "unable to parse requirement: found '', expected: ',' or ')'"),
    ("x in (a b)", "unable to parse requirement: found 'b', expected: ',' or ')'"),
    ("x in (a,,)", "unable to parse requirement: found ')', expected: ',', or identifier"),
    ("x in (=)", "unable to parse requirement: found '=', expected: ',', ')' or identifier"),
    ("x,", "found '', expected: identifier after ','"),
    ("x,,y", "found ',', expected: identifier after ','"),
    (",x", "found ',', expected: !, identifier, or 'end of string'"),
    ("(x)", "found '(', expected: !, identifier, or 'end of string'"),
    ("!", "unable to parse requirement: found '', expected: identifier"),
    ("x=a b", "found 'b', expected: ',' or 'end of string'"),
    ("a=-b", f'unable to parse requirement: values[0][a]: Invalid value: "-b": {LABEL_VALUE_RULE}'),
    ("a=" + "v" * 64, f'unable to parse requirement: values[0][a]: Invalid value: "{"v" * 64}": '
                      "must be no more than 63 characters"),
    ("A_=b", f'unable to parse requirement: <nil>: Invalid value: "A_": name part {NAME_RULE}'),
    ("k" * 64, f'unable to parse requirement: <nil>: Invalid value: "{"k" * 64}": '
               "name part must be no more than 63 characters"),
    ("/a", 'unable to parse requirement: <nil>: Invalid value: "/a": prefix part must be non-empty'),
    ("a/", 'unable to parse requirement: <nil>: Invalid value: "a/": name part must be non-empty; '
           f"name part {NAME_RULE}"),
    ("Example.com/a", f'unable to parse requirement: <nil>: Invalid value: "Example.com/a": prefix part {SUBDOMAIN_RULE}'),
    ("a/b/c", f'unable to parse requirement: <nil>: Invalid value: "a/b/c": a qualified name {NAME_RULE}'
              " with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')"),
])
def test_label_selector_errors(text, message):
    with pytest.raises(APIError) as caught:
        parse_label_selector(text)
    assert (caught.value.code, caught.value.reason, caught.value.message) == (400, "BadRequest", message)
    assert caught.value.status()["message"] == message


def test_label_selector_empty_and_exact_match():
    assert parse_label_selector("").empty
    assert not parse_label_selector("x").empty
    selector = parse_label_selector("kubernetes.io/service-name=web,tier in (a)")
    assert selector.requires_exact_match("kubernetes.io/service-name") == "web"
    assert selector.requires_exact_match("tier") == "a"
    assert parse_label_selector("x in (a,b)").requires_exact_match("x") is None
    assert parse_label_selector("x!=a").requires_exact_match("x") is None


# --- metav1.LabelSelector ---------------------------------------------------------------

def test_selector_from_object_nil_matches_nothing_and_empty_matches_everything():
    assert not selector_from_object(None).matches({"app": "web"})
    assert not selector_from_object(None).empty
    for empty in ({}, {"matchLabels": {}}, {"matchLabels": None, "matchExpressions": []}):
        assert selector_from_object(empty).empty
        assert selector_from_object(empty).matches({"app": "web"})
        assert selector_from_object(empty).matches(None)


@pytest.mark.parametrize("selector, labels, expected", [
    ({"matchLabels": {"app": "web"}}, {"app": "web", "x": "y"}, True),
    ({"matchLabels": {"app": "web"}}, {"app": "db"}, False),
    ({"matchExpressions": [{"key": "tier", "operator": "In", "values": ["a", "b"]}]}, {"tier": "b"}, True),
    ({"matchExpressions": [{"key": "tier", "operator": "In", "values": ["a", "b"]}]}, {}, False),
    ({"matchExpressions": [{"key": "tier", "operator": "NotIn", "values": ["a"]}]}, {}, True),
    ({"matchExpressions": [{"key": "tier", "operator": "NotIn", "values": ["a"]}]}, {"tier": "a"}, False),
    ({"matchExpressions": [{"key": "tier", "operator": "Exists"}]}, {"tier": ""}, True),
    ({"matchExpressions": [{"key": "tier", "operator": "DoesNotExist"}]}, {"tier": ""}, False),
    ({"matchLabels": {"app": "web"}, "matchExpressions": [{"key": "tier", "operator": "Exists"}]},
     {"app": "web"}, False),
])
def test_selector_from_object_matches(selector, labels, expected):
    assert selector_from_object(selector).matches(labels) is expected


@pytest.mark.parametrize("selector, message", [
    ({"matchExpressions": [{"key": "a", "operator": "Equals", "values": ["x"]}]},
     '"Equals" is not a valid label selector operator'),
    ({"matchExpressions": [{"key": "a", "operator": "In", "values": []}]},
     "values: Invalid value: null: for 'in', 'notin' operators, values set can't be empty"),
    ({"matchExpressions": [{"key": "a", "operator": "Exists", "values": ["x"]}]},
     'values: Invalid value: ["x"]: values set must be empty for exists and does not exist'),
    ({"matchLabels": {"a": "-x"}}, f'values[0][a]: Invalid value: "-x": {LABEL_VALUE_RULE}'),
    ({"matchLabels": {"A_": "x"}}, f'key: Invalid value: "A_": name part {NAME_RULE}'),
])
def test_selector_from_object_errors(selector, message):
    with pytest.raises(ValueError) as caught:
        selector_from_object(selector)
    assert str(caught.value) == message


@pytest.mark.parametrize("selector, text", [
    (None, "<none>"),
    ({}, "<none>"),
    ({"matchLabels": {}}, "<none>"),
    ({"matchLabels": {"app": "web"}}, "app=web"),
    ({"matchLabels": {"tier": "front", "app": "web"}}, "app=web,tier=front"),
    ({"matchLabels": {"app": "web"},
      "matchExpressions": [{"key": "tier", "operator": "In", "values": ["b", "a"]}]}, "app=web,tier in (a,b)"),
    ({"matchExpressions": [{"key": "env", "operator": "NotIn", "values": ["dev"]},
                           {"key": "canary", "operator": "DoesNotExist"},
                           {"key": "app", "operator": "Exists"}]}, "app,!canary,env notin (dev)"),
    ({"matchExpressions": [{"key": "a", "operator": "Bogus"}]}, "<error>"),
    ({"matchExpressions": [{"key": "a", "operator": "In"}]}, "<error>"),
])
def test_format_label_selector(selector, text):
    assert format_label_selector(selector) == text


@pytest.mark.parametrize("labels, text", [
    ({}, ""),
    (None, ""),
    ({"app": "web"}, "app=web"),
    ({"tier": "front", "app": "web", "app.kubernetes.io/name": "x"}, "app=web,app.kubernetes.io/name=x,tier=front"),
])
def test_selector_from_set(labels, text):
    assert selector_from_set(labels) == text
    assert parse_label_selector(text).matches(labels)


# --- field selectors ------------------------------------------------------------------------

@pytest.mark.parametrize("text, requirements, canonical", [
    ("", [], ""),
    ("metadata.name=web", [("metadata.name", "=", "web")], "metadata.name=web"),
    ("metadata.name==web", [("metadata.name", "=", "web")], "metadata.name=web"),
    ("status.phase!=Running", [("status.phase", "!=", "Running")], "status.phase!=Running"),
    ("b=2,a=1", [("a", "=", "1"), ("b", "=", "2")], "a=1,b=2"),  # terms are sorted
    (",,a=1,", [("a", "=", "1")], "a=1"),
    ("a=", [("a", "=", "")], "a="),
    ("=", [], ""),  # an empty field with an empty value drops out
    ("a=x\\,y", [("a", "=", "x,y")], "a=x\\,y"),
    ("a=x\\=y", [("a", "=", "x=y")], "a=x\\=y"),
    ("a=x\\\\y", [("a", "=", "x\\y")], "a=x\\\\y"),
    ("a!=x\\,y,b=2", [("a", "!=", "x,y"), ("b", "=", "2")], "a!=x\\,y,b=2"),
    ("involvedObject.kind=Service,involvedObject.name=web,involvedObject.namespace=default,"
     "involvedObject.uid=0b6e3a2e-8d1f-4c55-9c1a-2f5b0d1e7a11",
     [("involvedObject.kind", "=", "Service"), ("involvedObject.name", "=", "web"),
      ("involvedObject.namespace", "=", "default"),
      ("involvedObject.uid", "=", "0b6e3a2e-8d1f-4c55-9c1a-2f5b0d1e7a11")],
     "involvedObject.kind=Service,involvedObject.name=web,involvedObject.namespace=default,"
     "involvedObject.uid=0b6e3a2e-8d1f-4c55-9c1a-2f5b0d1e7a11"),
])
def test_field_selector_parse(text, requirements, canonical):
    selector = parse_field_selector(text)
    assert selector.requirements == requirements
    assert str(selector) == canonical
    assert selector.empty is (not requirements)
    assert parse_field_selector(canonical) == selector


@pytest.mark.parametrize("text, message", [
    ("foo", "invalid selector: 'foo'; can't understand 'foo'"),
    ("b=1,a", "invalid selector: 'b=1,a'; can't understand 'a'"),
    ("x in (a)", "invalid selector: 'x in (a)'; can't understand 'x in (a)'"),
    ("a=b=c", "invalid field selector: unescaped character in value: 61"),
    ("a=b\\q", "invalid field selector: invalid escape sequence: \\q"),
    ("a=b\\", "invalid field selector: invalid escape sequence: \\"),
])
def test_field_selector_errors(text, message):
    with pytest.raises(APIError) as caught:
        parse_field_selector(text)
    assert (caught.value.code, caught.value.reason, caught.value.message) == (400, "BadRequest", message)


@pytest.mark.parametrize("text, fields, expected", [
    ("metadata.name=web", {"metadata.name": "web"}, True),
    ("metadata.name=web", {"metadata.name": "db"}, False),
    ("status.phase!=Running", {"status.phase": "Pending"}, True),
    ("status.phase!=Running", {"status.phase": "Running"}, False),
    ("spec.nodeName=", {}, True),  # a missing field reads as ""
    ("spec.nodeName!=", {}, False),
    ("a=x\\,y,b!=2", {"a": "x,y", "b": "3"}, True),
    ("", {}, True),
])
def test_field_selector_matches(text, fields, expected):
    assert parse_field_selector(text).matches(fields) is expected


def test_field_selector_exact_match_and_rename():
    selector = parse_field_selector("metadata.name=web,spec.host=n1")
    assert selector.requires_exact_match("metadata.name") == "web"
    assert parse_field_selector("metadata.name!=web").requires_exact_match("metadata.name") is None
    assert selector.renamed({"spec.host": "spec.nodeName"}) == FieldSelector(
        (("metadata.name", "=", "web"), ("spec.nodeName", "=", "n1")))


# --- which fields a kind supports, and their values -----------------------------------

@pytest.mark.parametrize("kind, group, text, message", [
    ("Pod", "", "spec.foo=1", "field label not supported: spec.foo"),
    ("Pod", "", "metadata.name=a,spec.foo=1", "field label not supported: spec.foo"),
    ("Service", "", "spec.ports=1", "field label not supported: spec.ports"),
    ("Node", "", "metadata.namespace=x", "field label not supported: metadata.namespace"),
    ("Namespace", "", "metadata.namespace=x", "field label not supported: metadata.namespace"),
    ("Event", "events.k8s.io", "involvedObject.name=web", "field label not supported: involvedObject.name"),
    ("Deployment", "apps", "status.replicas=1",
     '"status.replicas" is not a known field selector: only "metadata.name", "metadata.namespace"'),
    ("ReplicaSet", "apps", "status.replicas=1",
     '"status.replicas" is not a known field selector: only "metadata.name", "metadata.namespace"'),
    ("ConfigMap", "", "data.x=1",
     '"data.x" is not a known field selector: only "metadata.name", "metadata.namespace"'),
    ("Job", "batch", "status.active=1", 'field label "status.active" not supported for batchv1.Job'),
])
def test_unsupported_field_labels(kind, group, text, message):
    with pytest.raises(APIError) as caught:
        convert_field_selector(parse_field_selector(text), kind, group)
    assert (caught.value.code, caught.value.reason, caught.value.message) == (400, "BadRequest", message)


def test_check_field_selector_supported_directly():
    check_field_selector_supported(parse_field_selector("metadata.name=x"), {"metadata.name"}, "Node")
    with pytest.raises(APIError) as caught:
        check_field_selector_supported(parse_field_selector("spec.foo=x"), {"metadata.name", "type"}, "Secret")
    assert caught.value.message == "field label not supported: spec.foo"


@pytest.mark.parametrize("kind, group, expected", [
    ("Pod", "", {"metadata.name", "metadata.namespace", "spec.nodeName", "spec.restartPolicy",
                 "spec.schedulerName", "spec.serviceAccountName", "spec.hostNetwork", "status.phase",
                 "status.podIP", "status.podIPs", "status.nominatedNodeName", "spec.host"}),
    ("Event", "", {"metadata.name", "metadata.namespace", "involvedObject.kind", "involvedObject.namespace",
                   "involvedObject.name", "involvedObject.uid", "involvedObject.apiVersion",
                   "involvedObject.resourceVersion", "involvedObject.fieldPath", "reason",
                   "reportingComponent", "source", "type"}),
    ("Secret", "", {"metadata.name", "metadata.namespace", "type"}),
    ("Namespace", "", {"metadata.name", "status.phase"}),
    ("Node", "", {"metadata.name", "spec.unschedulable"}),
    ("Service", "", {"metadata.name", "metadata.namespace", "spec.clusterIP", "spec.type"}),
    ("ReplicationController", "", {"metadata.name", "metadata.namespace", "status.replicas"}),
    ("Job", "batch", {"metadata.name", "metadata.namespace", "status.successful"}),
    ("CertificateSigningRequest", "certificates.k8s.io", {"metadata.name", "spec.signerName"}),
    ("Event", "events.k8s.io", {"metadata.name", "metadata.namespace", "reason", "type", "reportingController",
                                "regarding.kind", "regarding.namespace", "regarding.name", "regarding.uid",
                                "regarding.apiVersion", "regarding.resourceVersion", "regarding.fieldPath"}),
    ("Deployment", "apps", {"metadata.name", "metadata.namespace"}),
    ("EndpointSlice", "discovery.k8s.io", {"metadata.name", "metadata.namespace"}),
])
def test_supported_fields(kind, group, expected):
    assert supported_fields(kind, group) == expected


def test_pod_fields_and_selectors_kubectl_sends():
    pod = {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "web-1", "namespace": "default"},
        "spec": {"nodeName": "node-1", "restartPolicy": "Always", "schedulerName": "default-scheduler",
                 "serviceAccountName": "default"},
        "status": {"phase": "Running", "podIP": "10.244.1.5", "podIPs": [{"ip": "10.244.1.5"}]},
    }
    fields = fields_for("Pod", pod)
    assert fields == {
        "metadata.name": "web-1", "metadata.namespace": "default", "spec.nodeName": "node-1",
        "spec.restartPolicy": "Always", "spec.schedulerName": "default-scheduler",
        "spec.serviceAccountName": "default", "spec.hostNetwork": "false", "status.phase": "Running",
        "status.podIP": "10.244.1.5", "status.nominatedNodeName": "",
    }

    def select(text):
        return convert_field_selector(parse_field_selector(text), "Pod").matches(fields)

    assert select("metadata.name=web-1")
    assert not select("metadata.name=web-2")
    assert select("spec.host=node-1")  # the legacy alias selects spec.nodeName
    assert select("status.phase!=Pending,spec.nodeName=node-1")
    assert not select("status.podIPs=10.244.1.5")  # accepted but never in the field set
    assert fields_for("Pod", {"metadata": {"name": "h"}, "spec": {"hostNetwork": True}})["spec.hostNetwork"] == "true"


def test_event_fields_core_and_events_k8s_io():
    core_event = {
        "apiVersion": "v1", "kind": "Event",
        "metadata": {"name": "web.17f", "namespace": "default"},
        "involvedObject": {"kind": "Service", "name": "web", "namespace": "default", "uid": "u-1",
                           "apiVersion": "v1", "resourceVersion": "42"},
        "reason": "Created", "type": "Normal", "reportingComponent": "endpoint-controller",
        "source": {},
    }
    kubectl_describe = parse_field_selector(
        "involvedObject.kind=Service,involvedObject.name=web,involvedObject.namespace=default,involvedObject.uid=u-1")
    assert convert_field_selector(kubectl_describe, "Event").matches(fields_for("Event", core_event))
    assert fields_for("Event", core_event)["source"] == "endpoint-controller"  # falls back to the reporter
    assert fields_for("Event", {**core_event, "source": {"component": "kubelet"}})["source"] == "kubelet"

    new_event = {
        "apiVersion": "events.k8s.io/v1", "kind": "Event",
        "metadata": {"name": "web.17f", "namespace": "default"},
        "regarding": {"kind": "Service", "name": "web", "namespace": "default", "uid": "u-1"},
        "reason": "Created", "type": "Normal", "reportingController": "endpoint-controller",
    }
    fields = fields_for("Event", new_event)
    assert fields["involvedObject.name"] == "web"
    assert fields["reportingComponent"] == "endpoint-controller"
    selector = convert_field_selector(
        parse_field_selector("regarding.kind=Service,regarding.name=web,reportingController=endpoint-controller"),
        "Event", "events.k8s.io")
    assert selector.matches(fields)
    assert convert_field_selector(kubectl_describe, "Event").matches(fields)


@pytest.mark.parametrize("kind, obj, expected", [
    ("Secret", {"metadata": {"name": "s", "namespace": "d"}, "type": "kubernetes.io/tls"},
     {"type": "kubernetes.io/tls"}),
    ("Namespace", {"metadata": {"name": "d"}, "status": {"phase": "Active"}},
     {"status.phase": "Active", "metadata.namespace": ""}),
    ("Node", {"metadata": {"name": "n"}, "spec": {"unschedulable": True}}, {"spec.unschedulable": "true"}),
    ("Node", {"metadata": {"name": "n"}, "spec": {}}, {"spec.unschedulable": "false"}),
    ("Service", {"metadata": {"name": "web", "namespace": "d"}, "spec": {"clusterIP": "None", "type": "ClusterIP"}},
     {"spec.clusterIP": "None", "spec.type": "ClusterIP"}),
    ("ReplicaSet", {"metadata": {"name": "r", "namespace": "d"}, "status": {"replicas": 3}},
     {"status.replicas": "3"}),
    ("ReplicationController", {"metadata": {"name": "r", "namespace": "d"}, "status": {}}, {"status.replicas": "0"}),
    ("Job", {"metadata": {"name": "j", "namespace": "d"}, "status": {"succeeded": 1}}, {"status.successful": "1"}),
    ("CertificateSigningRequest", {"metadata": {"name": "c"}, "spec": {"signerName": "kubernetes.io/kubelet-serving"}},
     {"spec.signerName": "kubernetes.io/kubelet-serving"}),
    ("ConfigMap", {"metadata": {"name": "c", "namespace": "d"}, "data": {"x": "y"}},
     {"metadata.name": "c", "metadata.namespace": "d"}),
])
def test_fields_for_kinds(kind, obj, expected):
    fields = fields_for(kind, obj)
    assert fields["metadata.name"] == obj["metadata"]["name"]
    assert {name: fields[name] for name in expected} == expected


def test_headless_services_filtered_like_kube_proxy():
    selector = convert_field_selector(parse_field_selector("spec.clusterIP!=None"), "Service")
    headless = {"metadata": {"name": "db", "namespace": "d"}, "spec": {"clusterIP": "None"}}
    normal = {"metadata": {"name": "web", "namespace": "d"}, "spec": {"clusterIP": "10.96.0.20"}}
    assert [selector.matches(fields_for("Service", s)) for s in (headless, normal)] == [False, True]


# --- properties -------------------------------------------------------------------------------

SELECTOR_ALPHABET = "abxyz09-_./=!(),<> \tin"
selector_texts = st.one_of(
    st.text(alphabet=SELECTOR_ALPHABET, max_size=30),
    st.lists(st.sampled_from(["a", "b", "app", "x.io/k", "in", "notin", "=", "==", "!=", "!", "(", ")", ",",
                              ">", "<", " ", "1", "-2", "v", "", "Z_", "9"]), max_size=12).map("".join),
    st.text(max_size=20),
)


@settings(max_examples=400, deadline=None)
@given(selector_texts)
def test_parse_label_selector_raises_only_api_errors_and_round_trips(text):
    try:
        selector = parse_label_selector(text)
    except APIError as error:
        assert error.code == 400 and error.reason == "BadRequest" and error.message
        return
    assert isinstance(selector, LabelSelector)
    assert parse_label_selector(str(selector)) == selector


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.sampled_from(["a", "b", "c.io/d"]), st.sampled_from(["", "x", "1", "y.z"]), max_size=3),
       st.lists(st.tuples(st.sampled_from(["a", "b", "c.io/d"]), st.sampled_from(["=", "!="]),
                          st.text(alphabet="x1,=\\", max_size=4)), max_size=3))
def test_field_selector_round_trip_and_match(fields, terms):
    text = ",".join(f"{name}{operator}{escape_field_value(value)}" for name, operator, value in terms)
    selector = parse_field_selector(text)
    assert parse_field_selector(str(selector)) == selector
    expected = all((fields.get(name, "") == value) == (operator == "=") for name, operator, value in terms)
    assert selector.matches(fields) is expected
