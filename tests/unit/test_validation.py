"""Generic validators: exact Kubernetes 1.32 messages for names, labels, IPs, CIDRs, ports."""

import pytest

from pocketkube.apiserver import validation as v

LABEL_1123 = ("a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must "
              "start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for "
              "validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')")
SUBDOMAIN = ("a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and "
             "must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is "
             "'[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')")
LABEL_1035 = ("a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic "
              "character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', regex used for "
              "validation is '[a-z]([-a-z0-9]*[a-z0-9])?')")


@pytest.mark.parametrize("value, expected", [
    ("web", []),
    ("123-abc", []),
    ("Web", [LABEL_1123]),
    ("a.b", [LABEL_1123]),
    ("-a", [LABEL_1123]),
    ("a" * 64, ["must be no more than 63 characters"]),
])
def test_dns1123_label(value, expected):
    assert v.is_dns1123_label(value) == expected


@pytest.mark.parametrize("value, expected", [
    ("my.web-1", []),
    ("My.web", [SUBDOMAIN]),
    ("a" * 254, ["must be no more than 253 characters"]),
    ("a" * 300 + "_", ["must be no more than 253 characters", SUBDOMAIN]),
])
def test_dns1123_subdomain(value, expected):
    assert v.is_dns1123_subdomain(value) == expected


@pytest.mark.parametrize("value, expected", [
    ("web", []),
    ("1web", [LABEL_1035]),
    ("no-domain.com", [LABEL_1035]),
])
def test_dns1035_label(value, expected):
    assert v.is_dns1035_label(value) == expected


def test_qualified_name_messages():
    assert v.is_qualified_name("app.kubernetes.io/name") == []
    assert v.is_qualified_name("/name") == ["prefix part must be non-empty"]
    assert v.is_qualified_name("a/b/c") == [
        "a qualified name must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an "
        "alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is "
        "'([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]') with an optional DNS subdomain prefix and '/' "
        "(e.g. 'example.com/MyName')"]
    assert v.is_qualified_name("-bad") == [
        "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an "
        "alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is "
        "'([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')"]


def test_label_value():
    assert v.is_label_value("") == []
    assert v.is_label_value("a b") == [
        "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must "
        "start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used "
        "for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')"]


@pytest.mark.parametrize("value, ok", [
    ("10.96.0.1", True), ("2001:db8::1", True), ("010.0.0.1", True), ("::ffff:1.2.3.4", True),
    ("10.96.0", False), ("256.1.1.1", False), ("abc", False), ("", False), ("fe80::1%eth0", False),
])
def test_valid_ip(value, ok):
    errors = v.is_valid_ip("spec.clusterIP", value)
    if ok:
        assert errors == []
    else:
        assert [str(e) for e in errors] == [
            f'spec.clusterIP: Invalid value: "{value}": must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)']


@pytest.mark.parametrize("value, ok", [
    ("10.244.0.0/16", True), ("10.244.0.1/16", True), ("2001:db8::/64", True),
    ("10.244.0.0", False), ("10.244.0.0/33", False), ("x/8", False),
])
def test_valid_cidr(value, ok):
    errors = [str(e) for e in v.is_valid_cidr("spec.podCIDRs[0]", value)]
    expected = [] if ok else [f'spec.podCIDRs[0]: Invalid value: "{value}": must be a valid CIDR value, '
                              "(e.g. 10.9.8.0/24 or 2001:db8::/64)"]
    assert errors == expected


def test_non_special_ip():
    assert [e.detail for e in v.validate_non_special_ip("127.0.0.1", "ip")] == [
        "may not be in the loopback range (127.0.0.0/8, ::1/128)"]
    assert [e.detail for e in v.validate_non_special_ip("0.0.0.0", "ip")] == ["may not be unspecified (0.0.0.0)"]
    assert [e.detail for e in v.validate_non_special_ip("169.254.1.1", "ip")] == [
        "may not be in the link-local range (169.254.0.0/16, fe80::/10)"]
    assert v.validate_non_special_ip("10.244.1.5", "ip") == []


@pytest.mark.parametrize("port, expected", [
    (80, []), (65535, []), (0, ["must be between 1 and 65535, inclusive"]), (70000, ["must be between 1 and 65535, inclusive"]),
])
def test_port_numbers(port, expected):
    assert v.is_valid_port_num(port) == expected


@pytest.mark.parametrize("name, expected", [
    ("http", []),
    ("http-alt", []),
    ("HTTP", ["must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)",
              "must contain at least one letter (a-z)"]),
    ("8080", ["must contain at least one letter (a-z)"]),
    ("a--b", ["must not contain consecutive hyphens"]),
    ("-web", ["must not begin or end with a hyphen"]),
    ("a-very-long-port-name", ["must be no more than 15 characters"]),
])
def test_port_names(name, expected):
    assert v.is_valid_port_name(name) == expected


def test_port_num_or_name_paths():
    assert [str(e) for e in v.validate_port_num_or_name(0, "spec.ports[0].targetPort")] == [
        "spec.ports[0].targetPort: Invalid value: 0: must be between 1 and 65535, inclusive"]
    assert [str(e) for e in v.validate_port_num_or_name("web_port", "p")] == [
        'p: Invalid value: "web_port": must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)']


def test_object_meta_name_required_and_generate_name():
    errors = v.validate_object_meta({"namespace": "default"}, True, v.name_is_dns_subdomain)
    assert [str(e) for e in errors] == ["metadata.name: Required value: name or generateName is required"]
    ok = v.validate_object_meta({"generateName": "web-", "name": "web-x2k9f", "namespace": "default"}, True,
                                v.name_is_dns_subdomain)
    assert ok == []


def test_object_meta_namespace_rules():
    assert [str(e) for e in v.validate_object_meta({"name": "a"}, True, v.name_is_dns_subdomain)] == [
        "metadata.namespace: Required value"]
    assert [str(e) for e in v.validate_object_meta({"name": "a", "namespace": "x"}, False, v.name_is_dns_subdomain)] == [
        "metadata.namespace: Forbidden: not allowed on this type"]


def test_object_meta_labels_and_annotations():
    meta = {"name": "a", "namespace": "default", "labels": {"app": "bad value"},
            "annotations": {"big": "x" * (256 * 1024)}}
    errors = [str(e) for e in v.validate_object_meta(meta, True, v.name_is_dns_subdomain)]
    assert errors[0].startswith('metadata.labels: Invalid value: "bad value": a valid label must be an empty string')
    assert errors[1] == "metadata.annotations: Too long: may not be more than 262144 bytes"


def test_object_meta_update_immutable_name():
    errors = v.validate_object_meta_update({"name": "b", "namespace": "default"}, {"name": "a", "namespace": "default"})
    assert [str(e) for e in errors] == ['metadata.name: Invalid value: "b": field is immutable']


def test_selector_matching():
    selector = {"matchLabels": {"app": "web"}, "matchExpressions": [{"key": "tier", "operator": "In", "values": ["fe"]}]}
    assert v.selector_matches(selector, {"app": "web", "tier": "fe"})
    assert not v.selector_matches(selector, {"app": "web"})
    assert not v.selector_matches(None, {"app": "web"})
    assert v.selector_matches({}, {"x": "y"})


def test_go_rendering():
    assert v.go_string_map({"b": "2", "a": "1"}) == 'map[string]string{"a":"1", "b":"2"}'
    assert v.go_label_selector({"matchLabels": {"app": "web"}}) == (
        'v1.LabelSelector{MatchLabels:map[string]string{"app":"web"}, '
        "MatchExpressions:[]v1.LabelSelectorRequirement(nil)}")
